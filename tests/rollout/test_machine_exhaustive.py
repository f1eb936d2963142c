"""The rollout state machine, exhaustively: every scenario replayed with an operator restart between any two
steps and in the middle of any step, every decision made twice, and random event sequences that must keep
the machine's invariants. Driven by the plain-data world (no server)."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from poet_operator.rollout.actions import ClearAnnotation, Decision, Emit, Generate, RecordLessons
from poet_operator.rollout.machine import ABORT, PAUSED, PROMOTE, REGENERATE, Policy, decide, parse_time
from poet_operator.rollout.observations import VersionInfo, as_jsonable
from poet_operator.rollout.status import CONDITION_TYPES, MonitorStatus

from tests.rollout.world import CRASH_RECORD, World

SPEC: dict[str, Any] = {
    "model": "credit",
    "rollout": {"canaryAnalysisSeconds": 60, "regenerationBackoffSeconds": 10},
}
FEATURES = [{"name": "income", "type": "continuous"}]
# Events that say a version moved, each at most once per version however often the operator restarts.
ONCE_PER_VERSION = (
    "Generating",
    "Generated",
    "CanaryStarted",
    "Promoted",
    "RolledBack",
    "EnforceRejected",
    "Escalated",
    "Superseded",
    "CanaryRemoved",
)
REQUEST_TIME = "2026-12-01T12:30:00Z"  # what `kubectl poet promote` and friends write as the value


# -- scenarios as lists of operations on the world ---------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One thing that happens: a reconcile, or the world changing between reconciles."""

    label: str
    run: Callable[[World], Any]
    is_step: bool = False

    def __repr__(self) -> str:
        return self.label


STEP = Op("step", lambda w: w.step(), is_step=True)
FINISH = Op("generations finish", lambda w: w.finish_generations())


def ready(role: str | None = None) -> Op:
    return Op(f"{role or 'all'} pods ready", lambda w: w.pods_ready(role))


CRASHES: dict[str, dict[str, Any]] = {
    "oom": {"reason": "OOMKilled", "exit_code": 137},
    "error": {"reason": "Error", "exit_code": 1, "message": CRASH_RECORD},
    "clean": {"reason": "Completed", "exit_code": 0},
}


def crash(role: str, kind: str = "oom", times: int = 1) -> Op:
    def run(world: World) -> None:
        for _ in range(times):
            world.crash(role, **CRASHES[kind])

    return Op(f"{role} crashes ({kind} x{times})", run)


def advance(seconds: float) -> Op:
    return Op(f"{seconds} s pass", lambda w: w.advance(seconds))


def annotate(key: str, value: str = REQUEST_TIME) -> Op:
    return Op(f"{key}={value}", lambda w: w.annotations.__setitem__(key, value))


def unannotate(key: str) -> Op:
    return Op(f"{key} removed", lambda w: w.annotations.pop(key, None))


def change_spec(**changes: Any) -> Op:
    return Op(f"spec {sorted(changes)} changed", lambda w: w.with_spec(**changes))


def restore_spec(spec: dict[str, Any]) -> Op:
    def run(world: World) -> None:
        world.spec = copy.deepcopy(spec)
        world.generation += 1

    return Op("spec restored", run)


def error_rate(role: str, rate: float) -> Op:
    return Op(f"{role} error rate {rate}", lambda w: w.error_rates.__setitem__(role, rate))


@dataclass(frozen=True)
class Scenario:
    ops: tuple[Op, ...]
    spec: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SPEC))
    rejections: dict[int, str] = field(default_factory=dict)
    expect: Callable[[World], None] = lambda world: None
    # False where a restart rightly takes another path to the same versions (a generation for an old spec
    # that finishes is discarded; one lost in a restart is dropped before it is stored): compared loosely.
    exact: bool = True

    def world(self) -> World:
        world = World(spec=copy.deepcopy(self.spec))
        world.rejections = dict(self.rejections)
        return world


DEPLOY = (STEP, FINISH, STEP, ready(), STEP)
CRASH_TO_CANARY = (crash("stable"), STEP, FINISH, STEP, ready("canary"), STEP)
PROMOTION = (advance(61), STEP, ready(), STEP)


def states(world: World) -> dict[int, str]:
    return {v.number: v.state for v in world.status.versions}


def reasons(world: World) -> Counter[str]:
    return Counter(e.reason for e in world.events)


def expect_initial(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 1
    assert states(world) == {1: "stable"} and world.deployments == {"stable": 1}


def expect_spec_change(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 2
    assert states(world) == {1: "superseded", 2: "promoted"}
    assert world.status.version(2).reason == "spec-change"
    assert world.lessons_recorded == [], "a spec change teaches nothing"


def expect_promotion(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 2
    assert states(world) == {1: "superseded", 2: "promoted"}
    assert world.lessons_recorded == [2] and world.status.healing_since is None
    assert world.deployments == {"stable": 2}


def expect_rollback_then_fix(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 3
    assert states(world) == {1: "superseded", 2: "rolled-back", 3: "promoted"}
    assert world.lessons_recorded == [3]
    assert sorted(world.status.version(3).feedback_answered) == [
        "KeyError@monitor.py:monitor_features",
        "OOMKilled",
    ]


def expect_budget_spent(world: World) -> None:
    assert world.status.phase == "Degraded" and world.status.stable_version == 1
    assert states(world) == {1: "stable", 2: "rolled-back"}
    degraded = world.status.condition("Degraded")
    assert degraded is not None and degraded.reason == "RegenerationBudgetSpent"
    assert reasons(world)["RegenerationBudgetSpent"] == 1
    assert [g.version for g in world.generate_calls if g.reason == "crash-feedback"] == [2]


def expect_escalation(world: World) -> None:
    assert world.status.phase == "Degraded" and world.status.stable_version == 1
    assert states(world) == {1: "stable", 2: "rejected"}
    degraded = world.status.condition("Degraded")
    assert degraded is not None and degraded.reason == "Escalated"
    assert reasons(world)["Escalated"] == 1
    assert world.status.pending is None, "an escalation says regenerating would not help: no retry"
    assert max(g.version for g in world.generate_calls) == 2


def expect_enforce_retry(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 3
    assert states(world) == {1: "superseded", 2: "rejected", 3: "promoted"}
    assert reasons(world)["EnforceRejected"] == 1


def expect_manual_promote(world: World) -> None:
    assert world.status.stable_version == 2 and states(world) == {1: "superseded", 2: "promoted"}
    assert world.status.last_manual_action.annotation == PROMOTE
    assert world.status.last_manual_action.outcome == "version 2 promoted"
    assert PROMOTE not in world.annotations and reasons(world)["ManualAction"] == 1


def expect_manual_abort(world: World) -> None:
    assert world.status.stable_version == 3
    assert states(world) == {1: "superseded", 2: "rolled-back", 3: "promoted"}
    assert world.status.version(3).reason == "manual" and world.status.hold is None
    assert reasons(world)["ManualAction"] == 2
    # held after the abort: the stable crash in between regenerated nothing
    assert [g.reason for g in world.generate_calls if g.version > 1] == ["crash-feedback", "manual"]


def expect_abort_generation(world: World) -> None:
    assert world.status.stable_version == 1 and world.status.pending is None
    assert states(world) == {1: "stable", 2: "superseded"}
    assert world.status.hold is not None and 2 not in world.configmaps


def expect_manual_regenerate(world: World) -> None:
    assert world.status.stable_version == 3
    assert states(world) == {1: "superseded", 2: "superseded", 3: "promoted"}
    assert world.status.regenerations.used == 0
    assert reasons(world)["CanaryRemoved"] == 1 and reasons(world)["ManualAction"] == 2


def expect_pause(world: World) -> None:
    assert world.status.stable_version == 2 and not world.status.paused
    assert states(world) == {1: "superseded", 2: "promoted"}
    assert reasons(world)["Paused"] == 1 and reasons(world)["Resumed"] == 1


def expect_pause_in_canary(world: World) -> None:
    assert world.status.stable_version == 2 and not world.status.paused
    assert reasons(world)["Paused"] == 1 and reasons(world)["Resumed"] == 1


def expect_spec_change_in_canary(world: World) -> None:
    assert world.status.stable_version == 3 and world.status.phase == "Running"
    assert states(world) == {1: "superseded", 2: "superseded", 3: "promoted"}
    assert reasons(world)["CanaryRemoved"] == 1 and world.lessons_recorded == []
    assert world.status.healing_since is None, "the failing version is gone: nothing is healing any more"


def expect_spec_change_in_generation(world: World) -> None:
    assert world.status.stable_version == 3 and world.status.phase == "Running"
    assert states(world) == {1: "superseded", 2: "superseded", 3: "promoted"}
    assert world.status.version(3).reason == "spec-change"


def expect_refused_spec(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 1
    assert states(world) == {1: "stable"} and len(world.generate_calls) == 1
    assert reasons(world)["InvalidSpec"] == 1
    degraded, ready = world.status.condition("Degraded"), world.status.condition("Ready")
    assert degraded.status == "False" and ready.status == "True" and ready.observed_generation == 3


def expect_deadline_rollback(world: World) -> None:
    assert world.status.stable_version == 3
    assert states(world) == {1: "superseded", 2: "rolled-back", 3: "promoted"}
    assert "progress deadline" in world.status.version(2).message


def expect_error_rate_rollback(world: World) -> None:
    assert world.status.stable_version == 3
    assert states(world) == {1: "superseded", 2: "rolled-back", 3: "promoted"}
    assert "error rate" in world.status.version(2).message


def expect_rollout_only(world: World) -> None:
    assert world.status.observed_generation == 2 and len(world.generate_calls) == 1
    assert world.status.phase == "Running" and states(world) == {1: "stable"}


def expect_refused_first_version(world: World) -> None:
    assert world.status.phase == "Running" and world.status.stable_version == 2
    assert states(world) == {1: "rejected", 2: "stable"}
    assert reasons(world)["EnforceRejected"] == 1


SCENARIOS: dict[str, Scenario] = {
    "initial deploy": Scenario(DEPLOY, expect=expect_initial),
    "spec change": Scenario(
        (*DEPLOY, change_spec(features=FEATURES), STEP, FINISH, STEP, ready("canary"), STEP, *PROMOTION),
        expect=expect_spec_change,
    ),
    "crash, regeneration, canary, promotion": Scenario(
        (*DEPLOY, *CRASH_TO_CANARY, advance(30), STEP, advance(31), STEP, ready(), STEP),
        expect=expect_promotion,
    ),
    "canary crash, rollback, next attempt": Scenario(
        (
            *DEPLOY,
            *CRASH_TO_CANARY,
            crash("canary", "error", times=3),
            advance(11),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_rollback_then_fix,
    ),
    "budget spent": Scenario(
        (
            *DEPLOY,
            *CRASH_TO_CANARY,
            crash("canary", "error", times=3),
            advance(11),
            STEP,
            STEP,
            advance(60),
            crash("stable", "clean"),
            STEP,
        ),
        spec={**SPEC, "rollout": {**SPEC["rollout"], "regenerationBudget": 1}},
        expect=expect_budget_spent,
    ),
    "escalation": Scenario(
        (*DEPLOY, crash("stable"), STEP, FINISH, STEP, STEP, advance(60), STEP, crash("stable"), STEP),
        rejections={2: "escalated"},
        expect=expect_escalation,
    ),
    "enforce rejection, retried after backoff": Scenario(
        (
            *DEPLOY,
            crash("stable"),
            STEP,
            FINISH,
            STEP,
            advance(11),
            STEP,
            FINISH,
            STEP,
            ready(),
            STEP,
            *PROMOTION,
        ),
        rejections={2: "enforce_failed"},
        expect=expect_enforce_retry,
    ),
    "manual promote": Scenario(
        (*DEPLOY, *CRASH_TO_CANARY, annotate(PROMOTE), STEP, ready(), STEP), expect=expect_manual_promote
    ),
    "manual abort of a canary, then regenerate": Scenario(
        (
            *DEPLOY,
            *CRASH_TO_CANARY,
            annotate(ABORT),
            STEP,
            advance(60),
            crash("stable"),
            STEP,
            annotate(REGENERATE),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_manual_abort,
    ),
    "manual abort of a generation": Scenario(
        (*DEPLOY, crash("stable"), STEP, annotate(ABORT), STEP, FINISH, STEP, advance(60), STEP),
        expect=expect_abort_generation,
    ),
    "manual regenerate, twice": Scenario(
        (
            *DEPLOY,
            annotate(REGENERATE),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            annotate(REGENERATE, "2026-12-01T12:31:00Z"),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_manual_regenerate,
    ),
    "pause and resume": Scenario(
        (
            *DEPLOY,
            annotate(PAUSED, "true"),
            STEP,
            crash("stable"),
            STEP,
            advance(60),
            STEP,
            unannotate(PAUSED),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_pause,
    ),
    "pause during canary analysis": Scenario(
        (
            *DEPLOY,
            *CRASH_TO_CANARY,
            annotate(PAUSED, "true"),
            STEP,
            advance(120),
            STEP,
            unannotate(PAUSED),
            STEP,
            advance(61),
            STEP,
            ready(),
            STEP,
        ),
        expect=expect_pause_in_canary,
    ),
    "spec change during a canary": Scenario(
        (
            *DEPLOY,
            *CRASH_TO_CANARY,
            change_spec(features=FEATURES),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_spec_change_in_canary,
    ),
    "spec change during a generation": Scenario(
        (
            *DEPLOY,
            crash("stable"),
            STEP,
            change_spec(features=FEATURES),
            STEP,
            FINISH,
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_spec_change_in_generation,
        exact=False,
    ),
    "refused spec while running, then fixed": Scenario(
        (*DEPLOY, change_spec(window={"size": 1}), STEP, advance(30), STEP, restore_spec(SPEC), STEP),
        expect=expect_refused_spec,
    ),
    "canary misses its progress deadline": Scenario(
        (
            *DEPLOY,
            crash("stable"),
            STEP,
            FINISH,
            STEP,
            advance(601),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_deadline_rollback,
    ),
    "canary error rate worse than stable's": Scenario(
        (
            *DEPLOY,
            crash("stable"),
            STEP,
            FINISH,
            STEP,
            error_rate("canary", 0.5),
            ready(),
            STEP,
            error_rate("canary", 0.0),
            advance(11),
            STEP,
            FINISH,
            STEP,
            ready("canary"),
            STEP,
            *PROMOTION,
        ),
        expect=expect_error_rate_rollback,
    ),
    "rollout-only spec change": Scenario(
        (*DEPLOY, change_spec(rollout={"canaryAnalysisSeconds": 5}), STEP), expect=expect_rollout_only
    ),
    "refused first version, then a new spec": Scenario(
        (STEP, FINISH, STEP, STEP, change_spec(model="credit-2"), STEP, FINISH, STEP, ready(), STEP),
        rejections={1: "enforce_failed"},
        expect=expect_refused_first_version,
    ),
}


# -- playing scenarios, with and without restarts ----------------------------------------------------------


@dataclass
class Run:
    """A world and what the test remembers across its operator restarts."""

    world: World
    written: dict[int, VersionInfo] = field(default_factory=dict)  # every ConfigMap ever written

    def do(self, op: Op) -> None:
        op.run(self.world)
        self.check_writes()

    def check_writes(self) -> None:
        for number, info in self.world.configmaps.items():
            first = self.written.setdefault(number, info)
            assert first == info, f"version {number} was written twice, differently: {first} then {info}"

    def restart(self) -> None:
        """The operator dies and comes back: it reconciles at once, and what it lost is redone."""
        lost = bool(self.world.generating) or self.world.outcome is not None
        self.world.restart_operator()
        self.do(STEP)
        if lost:
            self.do(FINISH)

    def step_interrupted(self, done: int) -> None:
        """A reconcile whose status patch landed but only the first `done` actions were carried out."""
        world = self.world
        decision = decide(world.status, world.observe(), world.policy)
        world.decisions.append(decision)
        world.status = decision.status
        world.outcome = None
        for action in decision.actions[:done]:
            world.apply(action)
        self.check_writes()
        self.restart()

    def fork(self) -> Run:
        """An independent copy. Statuses, decisions and frozen records are never changed in place, so the
        copy shares them (deep-copying pydantic statuses would make the suite slow)."""
        world = self.world
        shared: list[Any] = [world.status, world.outcome, *world.events, *world.generate_calls]
        shared += [*world.configmaps.values(), *world.generating.values(), *self.written.values()]
        memo: dict[int, Any] = {id(item): item for item in shared}
        memo[id(world.decisions)] = list(world.decisions)
        return copy.deepcopy(self, memo)

    def play(self, ops: tuple[Op, ...]) -> Run:
        for op in ops:
            self.do(op)
        return self


Interrupt = Callable[[Run, Op], Iterator[tuple[Run, bool]]]  # yields (branch, whether `op` was done)


def branches(scenario: Scenario, interrupt: Interrupt) -> Iterator[tuple[str, Run]]:
    """Every run of the scenario with one interruption: the prefix is played once and copied."""
    run = Run(scenario.world())
    for index, op in enumerate(scenario.ops):
        for branch, done in interrupt(run, op):
            yield f"op {index} ({op.label})", branch.play(scenario.ops[index + 1 if done else index :])
        run.do(op)
    for branch, _ in interrupt(run, STEP):
        yield "the end", branch


def restart_before(run: Run, op: Op) -> Iterator[tuple[Run, bool]]:
    """The operator restarts just before a reconcile (the world may have moved since the last one: a
    generation finished, pods crashed, time passed). Restarting at any other moment is the same to it."""
    if op.is_step:
        branch = run.fork()
        branch.restart()
        yield branch, False


def restart_during(run: Run, op: Op) -> Iterator[tuple[Run, bool]]:
    if not op.is_step:
        return
    actions = decide(run.world.status, run.world.observe(), run.world.policy).actions
    for done in range(len(actions)):
        if done and isinstance(actions[done - 1], Emit):
            continue  # the same as one action fewer, besides an Event that was not sent
        branch = run.fork()
        branch.step_interrupted(done)
        yield branch, True


def version_of(event: Emit) -> int | None:
    found = re.search(r"version (\d+)", event.message)
    return int(found.group(1)) if found else None


def once_events(world: World) -> Counter[tuple[str, int | None]]:
    return Counter((e.reason, version_of(e)) for e in world.events if e.reason in ONCE_PER_VERSION)


def snapshot(world: World) -> dict[str, Any]:
    return {
        "status": world.status.to_dict(),
        "configmaps": as_jsonable(world.configmaps),
        "deployments": dict(world.deployments),
        "pods": [(p.name, p.role, p.version, p.ready, p.restarts) for p in world.pods.values()],
        "annotations": dict(world.annotations),
        "events": [(e.type, e.reason, e.message) for e in world.events],
        "lessons": list(world.lessons_recorded),
    }


def check_generations(world: World) -> None:
    """New version numbers only rise; a number seen again is the same generation redone."""
    first: dict[int, tuple[Any, ...]] = {}
    highest = 0
    for call in world.generate_calls:
        key = (call.reason, call.spec_hash, call.previous, sorted({f.signature for f in call.feedback}))
        if call.version in first:
            assert first[call.version] == key, f"version {call.version} generated twice, differently"
        else:
            assert call.version > highest, f"version {call.version} generated after {highest}"
            first[call.version] = key
            highest = call.version


def check_run(world: World) -> None:
    check_generations(world)
    repeated = {k: n for k, n in once_events(world).items() if n > 1}
    assert not repeated, f"events said more than once: {repeated}"
    assert len(world.lessons_recorded) == len(set(world.lessons_recorded)), world.lessons_recorded


# -- the scenarios as they should end ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_ends_as_expected(name: str) -> None:
    scenario = SCENARIOS[name]
    run = Run(scenario.world()).play(scenario.ops)
    scenario.expect(run.world)
    check_run(run.world)
    before = snapshot(run.world)
    run.do(STEP)
    assert snapshot(run.world) == before, "the end of a scenario is a fixed point"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_restart_before_any_step_ends_the_same(name: str) -> None:
    scenario = SCENARIOS[name]
    expected = snapshot(Run(scenario.world()).play(scenario.ops).world)
    for where, run in branches(scenario, restart_before):
        check_run(run.world)
        if scenario.exact:
            assert snapshot(run.world) == expected, f"restart before {where}"
        else:
            assert_same_versions(run.world, expected, f"restart before {where}", configmaps=False)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_restart_in_the_middle_of_any_step_ends_the_same(name: str) -> None:
    """The status patch landed, then the operator died before carrying out all actions. What is level-
    triggered (Deployments, ConfigMaps, generations) is completed; an Event not sent is not sent later, and
    never twice."""
    scenario = SCENARIOS[name]
    baseline = Run(scenario.world()).play(scenario.ops).world
    expected = snapshot(baseline)
    for where, run in branches(scenario, restart_during):
        world = run.world
        check_run(world)
        assert_same_versions(world, expected, f"restart in the middle of {where}", configmaps=scenario.exact)
        assert set(once_events(world)) <= set(once_events(baseline)), where
        assert world.lessons_recorded == baseline.lessons_recorded, f"lessons after a restart in {where}"


def assert_same_versions(world: World, expected: dict[str, Any], where: str, *, configmaps: bool) -> None:
    """The same versions in the same states, run the same way, whatever Events were lost on the way (and,
    when `configmaps`, the same ConfigMaps kept)."""
    got = snapshot(world)
    for key in ("deployments", "annotations"):
        assert got[key] == expected[key], f"{key} after a {where}"
    if configmaps:
        assert set(got["configmaps"]) == set(expected["configmaps"]), f"ConfigMaps after a {where}"
    expected_states = {v["number"]: v["state"] for v in expected["status"]["versions"]}
    assert states(world) == expected_states, f"versions after a {where}"
    for key in ("stableVersion", "canaryVersion", "phase", "regenerations", "paused", "hold"):
        assert got["status"].get(key) == expected["status"].get(key), f"{key} after a {where}"


# -- every decision made twice -------------------------------------------------------------------------------


def assert_second_decision_adds_nothing(first: Decision, second: Decision, where: str) -> None:
    assert second.status.to_dict() == first.status.to_dict(), f"status moved again at {where}"
    events = [(e.reason, e.message) for e in second.of_type(Emit)]
    assert not events, f"events emitted again at {where}: {events}"
    pending = first.status.pending
    for call in second.of_type(Generate):
        assert pending is not None and call.version == pending.version, f"a new generation at {where}"
    # The stable fix's lessons are stated on every pass (the backend records them once), nothing else.
    lessons = {a.version for a in second.of_type(RecordLessons)}
    assert lessons <= {first.status.stable_version}, f"lessons of {lessons} asked for again at {where}"
    assert second.rollout is None and not second.regenerated, where


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_decision_made_twice_changes_nothing_more(name: str) -> None:
    """Deciding the same observation again on the status just written (a retry after a write conflict, a
    watch event that arrives before the world moved) is a fixed point."""
    scenario = SCENARIOS[name]
    run = Run(scenario.world())
    for index, op in enumerate(scenario.ops):
        if op.is_step:
            world = run.world
            status, observation = world.status, world.observe()
            frozen = status.to_dict()
            first = decide(status, observation, world.policy)
            second = decide(first.status, observation, world.policy)
            assert status.to_dict() == frozen, "decide modified its input"
            assert_second_decision_adds_nothing(first, second, f"op {index}")
        run.do(op)


def test_a_request_seen_again_is_not_acted_on_again() -> None:
    """The annotation's removal did not land (the operator died after writing the status): the same request,
    seen again, is removed without acting twice and without overwriting what was done."""
    run = Run(SCENARIOS["manual promote"].world()).play((*DEPLOY, *CRASH_TO_CANARY, annotate(PROMOTE)))
    world = run.world
    observation = world.observe()
    first = decide(world.status, observation, world.policy)
    assert first.rollout == "promoted"
    second = decide(first.status, observation, world.policy)
    assert second.of_type(ClearAnnotation) == [ClearAnnotation(PROMOTE)]
    assert second.status.last_manual_action == first.status.last_manual_action
    assert not second.of_type(Emit)


def test_the_same_value_set_again_later_is_a_new_request() -> None:
    """A person who writes `true` twice (not through kubectl poet) asks twice: the second one is acted on."""
    run = Run(World(spec=copy.deepcopy(SPEC))).play((*DEPLOY, annotate(REGENERATE, "true"), STEP))
    assert [g.reason for g in run.world.generate_calls][-1] == "manual"
    run.play((FINISH, STEP, ready(), STEP, *PROMOTION, annotate(REGENERATE, "true"), STEP))
    assert [g.reason for g in run.world.generate_calls].count("manual") == 2


# -- random event sequences ----------------------------------------------------------------------------------

EVENTS = st.one_of(
    st.tuples(st.just("crash"), st.sampled_from(["stable", "canary"]), st.sampled_from(sorted(CRASHES))),
    st.tuples(st.just("ready"), st.sampled_from(["stable", "canary", "all"])),
    st.tuples(st.just("advance"), st.sampled_from([1, 5, 11, 30, 61, 700])),
    st.tuples(
        st.just("spec"),
        st.sampled_from(
            ["model-a", "model-b", "features", "rollout-only", "budget-0", "manual-only", "invalid", "fixed"]
        ),
    ),
    st.tuples(
        st.just("annotate"),
        st.sampled_from([PROMOTE, ABORT, REGENERATE, PAUSED]),
        st.sampled_from(["true", "false", REQUEST_TIME]),
    ),
    st.tuples(st.just("unpause")),
    st.tuples(
        st.just("finish"), st.sampled_from(["written", "written", "enforce_failed", "escalated", "error"])
    ),
    st.tuples(st.just("restart")),
    st.tuples(st.just("platform"), st.sampled_from(["stable", "canary"])),
    st.tuples(st.just("canary-error-rate"), st.sampled_from([0.0, 0.5])),
)

SPEC_CHANGES: dict[str, dict[str, Any]] = {
    "model-a": {"model": "a"},
    "model-b": {"model": "b"},
    "features": {"features": FEATURES},
    "rollout-only": {"rollout": {"canaryAnalysisSeconds": 5, "regenerationBackoffSeconds": 10}},
    "budget-0": {"rollout": {**SPEC["rollout"], "regenerationBudget": 0}},
    "manual-only": {"rollout": {**SPEC["rollout"], "autoRegenerate": False}},
    "invalid": {"window": {"size": 1}},
}


def happen(run: Run, event: tuple[Any, ...]) -> None:
    world = run.world
    kind = event[0]
    if kind == "crash":
        crash(event[1], event[2]).run(world)
    elif kind == "ready":
        world.pods_ready(None if event[1] == "all" else event[1])
    elif kind == "advance":
        world.advance(event[1])
    elif kind == "spec" and event[1] == "fixed":
        world.with_spec(window=None)
        world.spec.pop("window")
    elif kind == "spec":
        world.with_spec(**SPEC_CHANGES[event[1]])
    elif kind == "annotate":
        world.annotations[event[1]] = event[2]
    elif kind == "unpause":
        world.annotations.pop(PAUSED, None)
    elif kind == "finish":
        if event[1] != "written":
            world.reject_next = event[1]
        world.finish_generations()
        world.reject_next = None
    elif kind == "restart":
        world.restart_operator()
    elif kind == "platform":  # the image cannot be pulled: not the code's fault
        for pod in world.pods.values():
            if pod.role == event[1]:
                pod.ready, pod.waiting = False, "ImagePullBackOff"
    elif kind == "canary-error-rate":
        world.error_rates["canary"] = event[1]
    run.check_writes()


def check_invariants(before: MonitorStatus, decision: Decision, world: World) -> None:
    status = decision.status
    by_number = {v.number: v for v in status.versions}
    assert len(by_number) == len(status.versions), "a version listed twice"
    canaries = [v.number for v in status.versions if v.state == "canary"]
    assert canaries == ([] if status.canary_version is None else [status.canary_version])
    assert set(world.deployments) <= {"stable", "canary"}
    # The actions carried out leave the Deployments running what the status says.
    assert world.deployments.get("stable") == status.stable_version, (
        world.deployments,
        status.stable_version,
    )
    assert world.deployments.get("canary") == status.canary_version, (
        world.deployments,
        status.canary_version,
    )
    for number, allowed in (
        (status.stable_version, ("stable", "promoted")),
        (status.canary_version, ("canary",)),
    ):
        if number is not None:
            assert number in by_number and by_number[number].state in allowed, (number, by_number.get(number))
    assert status.pending is None or status.canary_version is None, "generating beside a canary"
    if status.pending is not None:
        assert status.pending.version > max(by_number, default=0)
    if status.regenerations.used > before.regenerations.used:
        assert status.regenerations.used <= status.regenerations.budget, status.regenerations
    ready = status.condition("Ready")
    if ready is not None and ready.reason == "InvalidSpec":
        # Nothing moves while the spec is refused; the phase says Failed when nothing runs.
        assert status.stable_version is not None or status.phase == "Failed", status.phase
    elif status.pending is not None:
        assert status.phase == "Generating"
    elif status.canary_version is not None:
        assert status.phase == "Canary"
    elif status.stable_version is None:
        assert status.phase in ("Pending", "Failed")
    else:
        assert status.phase in ("Running", "Deploying", "Degraded")
    kinds = [c.type for c in status.conditions]
    assert len(kinds) == len(set(kinds)) and set(kinds) <= set(CONDITION_TYPES), kinds
    assert {"Ready", "Degraded"} <= set(kinds), kinds
    for cond in status.conditions:
        assert 1 <= cond.observed_generation <= world.generation, cond
    assert status.observed_generation == world.generation
    assert MonitorStatus.from_obj(json.loads(json.dumps(status.to_dict()))) == status
    assert decision.requeue_after is None or decision.requeue_after >= 1


@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(start_running=st.booleans(), events=st.lists(EVENTS, min_size=1, max_size=25))
def test_random_event_sequences_keep_the_invariants(
    start_running: bool, events: list[tuple[Any, ...]]
) -> None:
    run = Run(World(spec=copy.deepcopy(SPEC)))
    if start_running:
        run.play(DEPLOY)
    for index, event in enumerate(events):
        happen(run, event)
        world = run.world
        observation = world.observe()
        if not plain_requests(observation.annotations):
            first = decide(world.status, observation, world.policy)
            second = decide(first.status, observation, world.policy)
            assert_second_decision_adds_nothing(first, second, f"event {index}")
        before = world.status
        decision = world.step()
        run.check_writes()
        check_invariants(before, decision, world)
    check_run(run.world)


def plain_requests(annotations: dict[str, str]) -> list[str]:
    """One-shot requests whose value is not a request time: acted on each time they are seen, by design."""
    return [
        k for k in (PROMOTE, ABORT, REGENERATE) if k in annotations and parse_time(annotations[k]) is None
    ]


def test_a_restart_right_after_a_promotion_was_written_still_records_its_lesson() -> None:
    scenario = SCENARIOS["crash, regeneration, canary, promotion"]
    run = Run(scenario.world())
    for index, op in enumerate(scenario.ops):
        world = run.world
        if op.is_step and decide(world.status, world.observe(), world.policy).rollout == "promoted":
            run.step_interrupted(0)
            run.play(scenario.ops[index + 1 :])
            break
        run.do(op)
    assert run.world.status.stable_version == 2
    assert run.world.lessons_recorded == [2]


# -- found by the random sequences, kept as plain examples ------------------------------------------------


def test_a_version_refused_for_a_spec_no_longer_asked_for_is_superseded_not_rejected() -> None:
    world = World(spec=copy.deepcopy(SPEC))
    world.step()
    world.with_spec(model="a")
    world.step()  # version 1 is still being generated for the old spec
    world.reject_next = "enforce_failed"
    world.finish_generations()
    world.step()
    assert world.status.version(1).state == "superseded"
    assert world.status.pending is not None and world.status.pending.version == 2
    assert "EnforceRejected" not in reasons(world)
    assert world.status.condition("Degraded").status == "False"


def test_degraded_after_a_rejection_is_the_same_in_the_next_step() -> None:
    run = Run(World(spec=copy.deepcopy(SPEC))).play(DEPLOY)
    world = run.world
    world.with_spec(model="a")
    world.step()
    world.crash("stable", **CRASHES["clean"])
    world.step()
    world.reject_next = "enforce_failed"
    world.finish_generations()
    rejecting = world.step()
    assert world.status.version(2).state == "rejected" and world.status.pending.version == 3
    assert world.step().status.condition("Degraded") == rejecting.status.condition("Degraded")
    assert reasons(world)["EnforceRejected"] == 1


def test_keep_versions_zero_keeps_only_stable_and_canary() -> None:
    world = World(spec=copy.deepcopy(SPEC), policy=Policy(keep_versions=0))
    Run(world).play((*DEPLOY, *CRASH_TO_CANARY, *PROMOTION))
    assert world.status.stable_version == 2
    assert set(world.configmaps) == {2}, "a history of 0 versions keeps none besides stable and canary"
    assert world.status.version(1).config_map is None
