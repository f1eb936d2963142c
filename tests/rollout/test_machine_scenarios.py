"""The rollout state machine through whole scenarios, driven by two backends: a plain-data world (no
server) and real local `poetmon serve` processes (tests/rollout/process_world.py). One suite: each scenario
runs against both, except where the plain-data world sets something processes cannot be made to do on
demand (an error rate); a crash the data world describes with a crash record is, for processes, a SIGKILL,
so the signature the next version answers is the one that kill produces."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from poet_operator.local.cage import make_cage, parse_memory
from poet_operator.rollout.actions import (
    EnsureDeployment,
    Generate,
    HandOffHistory,
    RemoveDeployment,
    StoreHistory,
)

from tests.rollout.process_world import ProcessWorld
from tests.rollout.world import CRASH_RECORD, World

SPEC = {"model": "credit", "rollout": {"canaryAnalysisSeconds": 60, "regenerationBackoffSeconds": 10}}
AnyWorld = World | ProcessWorld
MakeWorld = Callable[[dict[str, Any]], AnyWorld]


def _cgroup_available() -> bool:
    cage = make_cage(parse_memory("256M"), f"poetmon-scenario-probe-{os.getpid()}")
    cage.close()
    return cage.mechanism == "cgroup-v1"


@pytest.fixture(params=["data", "processes"])
def make_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeWorld]:
    """Worlds of the parametrised backend; process worlds are stopped after the test."""
    if request.param == "processes" and not _cgroup_available():
        pytest.skip("the process backend's crashes need a memory cgroup v1 (root and a memory controller)")
    made: list[ProcessWorld] = []

    def make(spec: dict[str, Any]) -> AnyWorld:
        if request.param == "data":
            return World(spec=spec)
        world = ProcessWorld(spec=spec, workdir=tmp_path / f"world-{len(made)}")
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


def crash_record_signature(world: AnyWorld) -> str:
    """What the next version answers for a canary crash: the record's signature in the data world, the
    signature of a kill without a record (the kubelet's reading: a failed liveness probe) for processes."""
    return "KeyError@monitor.py:monitor_features" if isinstance(world, World) else "ProbeTimeout"


def running_world(make_world: MakeWorld) -> AnyWorld:
    world = make_world(dict(SPEC))
    world.settle()
    assert world.status.phase == "Running", world.status.to_dict()
    return world


def test_apply_generates_version_one_and_deploys_it_as_stable(make_world: MakeWorld) -> None:
    world = make_world(dict(SPEC))
    first = world.step()
    assert world.status.phase == "Generating"
    assert [a.version for a in first.of_type(Generate)] == [1]
    assert world.status.pending is not None and world.status.pending.reason == "initial"
    world.finish_generations()
    world.step()
    assert world.status.stable_version == 1
    assert world.deployments == {"stable": 1}
    assert world.status.phase == "Deploying"
    world.pods_ready()
    world.step()
    assert world.status.phase == "Running"
    ready = world.status.condition("Ready")
    assert ready is not None and ready.status == "True"
    assert world.status.version(1).state == "stable"
    if isinstance(world, World):  # its runtime report says so; a fresh process has evaluated nothing
        assert world.status.health.overall == "warning" and world.status.health.drifted_count == 1
    assert world.event_reasons() == ["Generating", "Generated"]


def test_a_settled_monitor_is_a_fixed_point(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    before = world.status.to_dict()
    events = len(world.events)
    decision = world.step()
    assert world.status.to_dict() == before
    assert len(world.events) == events
    assert not decision.of_type(Generate)


def test_crash_regenerates_runs_a_canary_and_promotes_it(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable", reason="OOMKilled", exit_code=137)
    decision = world.step()
    assert world.status.last_failure is not None
    assert (
        world.status.last_failure.reason == "OOMKilled" and world.status.last_failure.signature == "OOMKilled"
    )
    generate = decision.of_type(Generate)
    assert len(generate) == 1 and generate[0].reason == "crash-feedback" and generate[0].previous == 1
    assert [f.signature for f in generate[0].feedback] == ["OOMKilled"]
    assert world.status.regenerations.used == 1
    world.finish_generations()
    world.step()
    assert world.status.phase == "Canary" and world.status.canary_version == 2
    assert world.deployments == {"stable": 1, "canary": 2}
    world.pods_ready("canary")
    world.step()
    assert world.status.canary is not None and world.status.canary.ready_since is not None
    world.advance(30)
    world.step()
    assert world.status.canary_version == 2, "promoted before the analysis time"
    world.advance(31)
    decision = world.step()
    assert decision.rollout == "promoted"
    assert world.status.stable_version == 2 and world.status.canary_version is None
    assert world.deployments == {"stable": 2}
    assert world.lessons_recorded == [2]
    assert decision.fixed_after_seconds is not None and decision.fixed_after_seconds >= 61
    assert world.status.version(1).state == "superseded"
    assert world.status.version(2).state == "promoted"
    assert world.status.version(2).feedback_answered == ["OOMKilled"]
    world.pods_ready()
    world.step()
    assert world.status.phase == "Running"


def test_canary_crash_rolls_back_and_the_next_version_answers_both_failures(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready("canary")
    world.step()
    for _ in range(3):  # tolerance is 2 restarts
        world.crash("canary", reason="Error", exit_code=1, message=CRASH_RECORD)
    world.advance(11)
    decision = world.step()
    assert decision.rollout == "rolled_back"
    assert world.status.version(2).state == "rolled-back"
    assert world.status.stable_version == 1 and "canary" not in world.deployments
    generate = decision.of_type(Generate)
    assert len(generate) == 1 and generate[0].version == 3 and generate[0].previous == 2
    signatures = sorted({f.signature for f in generate[0].feedback})
    assert signatures == sorted(["OOMKilled", crash_record_signature(world)])
    assert "RolledBack" in world.event_reasons()


def test_regeneration_waits_for_backoff_between_attempts(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready("canary")
    for _ in range(3):
        world.crash("canary", reason="Error", exit_code=1, message=CRASH_RECORD)
    decision = world.step()  # rolled back, but the second attempt must wait 10 s
    assert decision.rollout == "rolled_back"
    assert not decision.of_type(Generate)
    assert decision.requeue_after is not None and 1 <= decision.requeue_after <= 10
    world.advance(10)
    assert [g.version for g in world.step().of_type(Generate)] == [3]


def test_spent_budget_degrades_with_what_to_do_and_says_it_once(make_world: MakeWorld) -> None:
    world = make_world({**SPEC, "rollout": {**SPEC["rollout"], "regenerationBudget": 0}})
    world.settle()
    world.crash("stable")
    decision = world.step()
    assert not decision.of_type(Generate)
    assert world.status.phase == "Degraded"
    degraded = world.status.condition("Degraded")
    assert degraded.status == "True" and degraded.reason == "RegenerationBudgetSpent"
    assert "regenerationBudget" in degraded.message and "poet.dev/regenerate" in degraded.message
    count = world.event_reasons().count("RegenerationBudgetSpent")
    world.step()
    assert world.event_reasons().count("RegenerationBudgetSpent") == count == 1


def test_escalation_degrades_and_keeps_the_stable_version(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.reject_next = "escalated"
    world.step()
    world.finish_generations()
    world.step()
    assert world.status.version(2).state == "rejected"
    assert world.status.stable_version == 1
    degraded = world.status.condition("Degraded")
    assert degraded.status == "True" and degraded.reason == "Escalated"
    assert world.status.phase == "Degraded"


def test_a_refused_first_version_fails_the_monitor_without_a_loop(make_world: MakeWorld) -> None:
    world = make_world(dict(SPEC))
    world.reject_next = "enforce_failed"
    world.step()
    world.finish_generations()
    world.step()
    assert world.status.phase == "Failed"
    calls = len(world.generate_calls)
    world.step()
    world.step()
    assert len(world.generate_calls) == calls, "a refused spec must not be regenerated in a loop"
    world.with_spec(model="credit-2")
    world.step()
    assert len(world.generate_calls) == calls + 1


def test_invalid_spec_gets_a_condition_and_one_event_naming_the_field(make_world: MakeWorld) -> None:
    world = make_world({"model": "m", "window": {"size": 1}})
    world.step()
    world.step()
    assert world.status.phase == "Failed"
    ready = world.status.condition("Ready")
    assert ready.reason == "InvalidSpec" and "spec.window.size" in ready.message
    assert world.event_reasons() == ["InvalidSpec"]
    assert not world.generate_calls


def test_spec_change_goes_through_the_canary_path(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.with_spec(features=[{"name": "income", "type": "continuous"}])
    decision = world.step()
    generate = decision.of_type(Generate)
    assert len(generate) == 1 and generate[0].reason == "spec-change" and generate[0].previous == 1
    world.finish_generations()
    world.step()
    assert world.status.canary_version == 2
    assert world.status.observed_generation == 2


def test_rollout_only_changes_do_not_generate(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.with_spec(
        rollout={"canaryAnalysisSeconds": 5}, runtime={"resources": {"limits": {"memory": "2Gi"}}}
    )
    decision = world.step()
    assert not decision.of_type(Generate)
    assert world.status.observed_generation == 2


def test_restart_during_generation_redoes_it_without_a_second_version(make_world: MakeWorld) -> None:
    world = make_world(dict(SPEC))
    world.step()
    world.restart_operator()
    decision = world.step()
    assert [g.version for g in decision.of_type(Generate)] == [1]
    world.finish_generations()
    world.step()
    assert [v.number for v in world.status.versions] == [1]


def test_restart_after_the_configmap_was_written_adopts_it(make_world: MakeWorld) -> None:
    world = make_world(dict(SPEC))
    world.step()
    world.finish_generations()  # the ConfigMap exists, the status does not know yet
    world.restart_operator()
    decision = world.step()
    assert not decision.of_type(Generate)
    assert world.status.stable_version == 1 and len(world.status.versions) == 1


def test_manual_promote_abort_regenerate_and_pause_each_act_once(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.annotations["poet.dev/regenerate"] = "true"
    decision = world.step()
    assert [g.reason for g in decision.of_type(Generate)] == ["manual"]
    assert "poet.dev/regenerate" not in world.annotations
    world.finish_generations()
    world.step()
    world.pods_ready()
    world.annotations["poet.dev/promote"] = "true"
    decision = world.step()
    assert decision.rollout == "promoted" and world.status.stable_version == 2
    assert world.status.last_manual_action.annotation == "poet.dev/promote"
    world.annotations["poet.dev/abort"] = "true"
    world.step()
    assert world.status.hold is not None
    world.annotations["poet.dev/paused"] = "true"
    world.step()
    assert world.status.paused
    world.crash("stable")
    assert not world.step().of_type(Generate)
    del world.annotations["poet.dev/paused"]
    world.step()
    assert not world.status.paused
    assert world.event_reasons().count("Paused") == 1 and world.event_reasons().count("Resumed") == 1


def test_paused_time_is_not_analysis_time(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready()
    world.step()
    assert world.status.canary_version == 2 and world.status.canary.ready_since is not None
    world.annotations["poet.dev/paused"] = "true"
    world.step()
    world.advance(61)  # past the 60 s analysis, all of it paused
    assert world.step().rollout is None and world.status.canary_version == 2
    assert "paused" in world.status.canary.analysis
    del world.annotations["poet.dev/paused"]
    decision = world.step()
    assert decision.rollout is None and world.status.canary_version == 2  # the clock starts again
    assert world.status.canary.analysis.startswith("ready for 0 of 60 s")
    world.advance(61)
    assert world.step().rollout == "promoted" and world.status.stable_version == 2


def test_the_progress_deadline_counts_from_the_resume(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    assert world.status.canary_version == 2 and world.status.canary.ready_since is None  # not ready yet
    world.annotations["poet.dev/paused"] = "true"
    world.step()
    world.advance(601)  # past the 600 s progress deadline, all of it paused
    del world.annotations["poet.dev/paused"]
    assert world.step().rollout is None and world.status.canary_version == 2
    world.advance(601)
    decision = world.step()
    assert decision.rollout == "rolled_back"
    assert "progress deadline" in world.status.version(2).message


def test_a_version_generated_while_paused_starts_only_when_resumed(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    assert [g.version for g in world.step().of_type(Generate)] == [2]
    world.annotations["poet.dev/paused"] = "true"
    world.step()
    world.finish_generations()
    world.step()
    assert world.status.canary_version is None and world.deployments == {"stable": 1}
    assert world.status.pending is not None and world.status.pending.version == 2
    assert world.status.condition("Generated").reason == "GeneratedWhilePaused"
    del world.annotations["poet.dev/paused"]
    world.step()
    assert world.status.canary_version == 2 and world.deployments == {"stable": 1, "canary": 2}
    assert "CanaryStarted" in world.event_reasons()


def test_canary_worse_error_rate_is_rolled_back() -> None:
    # Plain-data world only: a process's error rate is what its generated code does, not a setting.
    world = World(spec=dict(SPEC))
    world.settle()
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready()
    world.error_rates = {"stable": 0.0, "canary": 0.5}
    decision = world.step()
    assert decision.rollout == "rolled_back"


def test_missed_progress_deadline_rolls_back(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    world.advance(601)
    decision = world.step()
    assert decision.rollout == "rolled_back"
    assert "progress deadline" in world.status.version(2).message


def test_old_configmaps_are_deleted_beyond_the_kept_history(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.policy = type(world.policy)(keep_versions=1)
    for model in ("a", "b", "c"):
        world.with_spec(model=model)
        world.settle()
        world.advance(61)
        world.settle()
    assert world.status.stable_version == 4
    assert set(world.configmaps) == {3, 4}
    assert world.status.version(1).config_map is None


def test_keeping_no_history_deletes_every_version_but_stable_and_canary(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.policy = type(world.policy)(keep_versions=0)
    world.with_spec(model="other")
    world.settle()
    world.advance(61)
    world.settle()
    assert world.status.stable_version == 2
    assert set(world.configmaps) == {2}


def test_restarts_tolerated_during_the_canary_do_not_regenerate_the_promoted_version(
    make_world: MakeWorld,
) -> None:
    world = running_world(make_world)
    world.crash("stable")
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready("canary")
    world.crash("canary", reason="Error", exit_code=1, message=CRASH_RECORD)  # 1 restart, tolerance 2
    world.pods_ready("canary")
    world.step()
    world.advance(61)
    decision = world.step()
    assert decision.rollout == "promoted"
    world.pods_ready()
    after = world.step()
    assert not after.of_type(Generate)
    assert world.status.phase == "Running"


def test_a_refused_spec_change_leaves_the_running_version_and_says_degraded(make_world: MakeWorld) -> None:
    world = running_world(make_world)
    world.with_spec(window={"size": 1})
    world.step()
    assert world.status.phase == "Degraded"
    assert world.status.stable_version == 1 and world.deployments == {"stable": 1}
    degraded = world.status.condition("Degraded")
    assert degraded.status == "True" and degraded.reason == "InvalidSpec"
    assert "keeps running" in world.status.condition("Ready").message


def test_the_history_follows_the_monitor_into_the_canary_and_the_promoted_version(
    make_world: MakeWorld,
) -> None:
    world = running_world(make_world)
    world.evaluate("stable")
    world.advance(5)
    world.evaluate("stable")
    assert not world.step().of_type(HandOffHistory), "no canary: nothing to hand over"
    world.annotations["poet.dev/regenerate"] = "true"
    world.step()
    world.finish_generations()
    world.step()
    assert world.status.canary_version == 2
    world.pods_ready("canary")
    decision = world.step()
    assert decision.of_type(HandOffHistory) == [HandOffHistory("canary")]
    assert world.history_versions("canary") == [1, 1]  # the canary's report now draws version 1 too
    assert not world.step().of_type(HandOffHistory), "handed over once, not on every pass"
    world.evaluate("canary")
    world.advance(61)
    decision = world.step()
    assert decision.rollout == "promoted"
    # Kept once, before the stable Deployment moves to the promoted version.
    kinds = [type(a) for a in decision.actions if isinstance(a, StoreHistory | EnsureDeployment)]
    assert decision.of_type(StoreHistory) == [StoreHistory(2)] and kinds[0] is StoreHistory
    assert not decision.of_type(RemoveDeployment), "the canary's pod stays until its history is kept"
    world.settle()
    assert world.status.phase == "Running" and world.deployments == {"stable": 2}
    # The promoted version's stable pod holds both versions: the report marks the change.
    assert world.history_versions("stable") == [1, 1, 2]
    later = [world.step() for _ in range(2)]
    assert not any(d.of_type(StoreHistory) or d.of_type(HandOffHistory) for d in later)
