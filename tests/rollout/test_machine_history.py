"""The evaluation history across versions, decided by the pure machine over the plain-data world: when the
stable pod's history is handed to a canary, when the promoted canary's is kept for new pods, and that both
are idempotent and survive an operator restart or a refused write."""

from __future__ import annotations

from poet_operator.rollout.actions import HandOffHistory, RemoveDeployment, StoreHistory
from poet_operator.rollout.machine import Policy, decide, rfc3339

from tests.rollout.world import World

SPEC = {"model": "credit", "rollout": {"canaryAnalysisSeconds": 60}}


def canary_world(*, stable_evaluations: int = 2, policy: Policy | None = None) -> World:
    """A running version 1 that evaluated `stable_evaluations` times, and a ready canary of version 2 that
    has not been reconciled since it became ready."""
    world = World(spec=dict(SPEC), policy=policy or Policy())
    world.settle()
    for _ in range(stable_evaluations):
        world.evaluate("stable")
        world.advance(5)
    world.annotations["poet.dev/regenerate"] = "true"
    world.step()
    world.finish_generations()
    world.step()
    assert world.status.canary_version == 2
    world.pods_ready("canary")
    return world


def promoted_world(**kwargs) -> World:
    """`canary_world` after the hand-off, one canary evaluation and the analysis time: ready to promote."""
    world = canary_world(**kwargs)
    world.step()
    world.evaluate("canary")
    world.advance(61)
    return world


def test_no_hand_off_when_the_stable_pod_has_no_history() -> None:
    world = canary_world(stable_evaluations=0)
    assert not world.step().of_type(HandOffHistory)
    world.evaluate("stable")  # its first evaluation: now there is something to hand over
    assert world.step().of_type(HandOffHistory) == [HandOffHistory("canary")]
    assert world.history_versions("canary") == [1]


def test_no_hand_off_without_both_reports() -> None:
    world = canary_world()
    world.reports_visible = False
    assert not world.step().of_type(HandOffHistory)
    world.reports_visible = True
    assert world.step().of_type(HandOffHistory)


def test_a_second_hand_off_brings_what_the_stable_pod_evaluated_after_the_canary_started() -> None:
    """The canary holds only entries from before its start: the stable pod's newer ones are handed over once
    more, and then never again, however often the stable pod evaluates."""
    world = canary_world()
    assert world.step().of_type(HandOffHistory)
    world.advance(5)
    world.evaluate("stable")
    assert world.step().of_type(HandOffHistory)
    assert world.history_versions("canary") == [1, 1, 1]
    for _ in range(3):
        world.advance(5)
        world.evaluate("stable")
        assert not world.step().of_type(HandOffHistory)


def test_the_next_canary_gets_what_the_promoted_version_evaluated_since_its_promotion() -> None:
    world = promoted_world()
    world.step()
    world.settle()
    assert world.status.stable_version == 2 and world.history_versions("stable") == [1, 1, 2]
    world.advance(5)
    world.evaluate("stable")  # version 2 evaluates as stable: the kept history does not hold this
    world.annotations["poet.dev/regenerate"] = "true"
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready("canary")
    # Version 3's pod started with the kept history (versions 1 and 2, from before the promotion) ...
    assert world.history_versions("canary") == [1, 1, 2]
    # ... and lacks version 2's later evaluation, so it is handed over.
    assert world.step().of_type(HandOffHistory)
    assert world.history_versions("canary") == [1, 1, 2, 2]


def test_the_promoted_history_is_stored_once_and_new_pods_start_with_it() -> None:
    world = promoted_world()
    decision = world.step()
    assert decision.rollout == "promoted" and decision.of_type(StoreHistory) == [StoreHistory(2)]
    assert world.history_stored_version == 2
    entry = world.status.version(2)
    assert entry is not None and entry.promoted == rfc3339(world.now)  # when the hold is counted from
    assert world.step().of_type(RemoveDeployment) == [RemoveDeployment("canary")]
    world.settle()
    assert world.history_versions("stable") == [1, 1, 2]
    assert [type(a) for a in world.history_actions].count(StoreHistory) == 1


def test_an_operator_restart_between_the_promotion_and_the_store_stores_it_on_the_next_pass() -> None:
    world = promoted_world()
    # The operator writes the promotion into the status and dies before carrying out any action.
    world.status = decide(world.status, world.observe(), world.policy).status
    assert world.status.stable_version == 2 and world.deployments == {"stable": 1, "canary": 2}
    decision = world.step()
    assert decision.of_type(StoreHistory) == [StoreHistory(2)]
    assert not decision.of_type(RemoveDeployment)
    assert world.history_stored_version == 2
    world.settle()
    assert world.deployments == {"stable": 2}
    assert world.history_versions("stable") == [1, 1, 2]


def test_a_refused_store_keeps_the_canary_for_a_while_then_lets_it_go() -> None:
    world = promoted_world(policy=Policy(history_hold_seconds=120))
    world.history_store_fails = True
    assert world.step().rollout == "promoted"
    for _ in range(3):  # retried, the canary's pod kept meanwhile
        world.advance(30)
        decision = world.step()
        assert decision.of_type(StoreHistory) and not decision.of_type(RemoveDeployment)
        assert "the promoted canary's pod stays until its history is stored" in decision.notes
        assert decision.requeue_after is not None and decision.requeue_after <= world.policy.poll_seconds
    world.advance(31)
    decision = world.step()
    assert decision.of_type(RemoveDeployment) == [RemoveDeployment("canary")]
    world.settle()
    assert world.deployments == {"stable": 2} and world.history_stored_version is None
    # No pod holds version 2's history any more: nothing is asked again.
    assert not any(world.step().of_type(StoreHistory) for _ in range(2))


def test_nothing_is_stored_for_a_first_version_a_rollback_or_a_canary_without_history() -> None:
    world = World(spec=dict(SPEC))
    world.settle()
    world.evaluate("stable")
    assert not any(world.step().of_type(StoreHistory) for _ in range(2))
    # A canary promoted before it evaluated anything: nothing of it to keep, and it goes at once.
    empty = canary_world(stable_evaluations=0)
    empty.step()
    empty.advance(61)
    decision = empty.step()
    assert decision.rollout == "promoted" and not decision.of_type(StoreHistory)
    assert decision.of_type(RemoveDeployment) == [RemoveDeployment("canary")]
    # A canary rolled back: the stable version stays, so nothing is stored.
    aborted = canary_world()
    aborted.step()
    aborted.evaluate("canary")
    aborted.annotations["poet.dev/abort"] = "true"
    decision = aborted.step()
    assert decision.rollout == "aborted" and not decision.of_type(StoreHistory)
    assert decision.of_type(RemoveDeployment) == [RemoveDeployment("canary")]
