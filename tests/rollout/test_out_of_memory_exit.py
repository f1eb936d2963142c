"""The runtime's own out-of-memory exit (status 3, a record whose reason is OOMKilled) is read exactly as the
kernel's OOM kill: the same shown reason, the same signature, the same remedy. In a cluster the kubelet
reports such a container as `Error` (it was not killed); the record decides."""

from __future__ import annotations

from datetime import UTC, datetime

from poet_operator.poet.train.feedback import Feedback
from poet_operator.poet.train.remedies import Remedy, remedy_for
from poet_operator.rollout.machine import feedback_from_pod
from poet_operator.rollout.observations import PodObservation, Terminated
from poet_operator.rollout.status import FeedbackRecord

from monitor_runtime.server.crash import (
    EXIT_OUT_OF_MEMORY,
    OUT_OF_MEMORY_REASON,
    encode_record,
    feedback_record,
)

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _pod(terminated: Terminated, waiting: str = "") -> PodObservation:
    return PodObservation(
        name="fraud-abc", role="stable", version=1, last_terminated=terminated, waiting_reason=waiting
    )


def _record(reason: str | None) -> str:
    record = feedback_record(
        phase="run",
        signature={"exception": "MemoryError", "location": "monitor.py:80 in monitor_features"},
        version=1,
        monitor="fraud",
        message="out of memory: monitor_features could not allocate memory; last: MemoryError",
        traceback_text="Traceback (most recent call last):\n  ...\nMemoryError\n",
        profile={"rows": 2000, "n_columns": 3, "columns": {}},
        reason=reason,
    )
    return encode_record(record).decode()


def test_the_runtimes_out_of_memory_exit_is_an_oom_kill_to_the_machine() -> None:
    kernel_failure, kernel_feedback = feedback_from_pod(_pod(Terminated(137, "OOMKilled")), NOW)
    # What the kubelet says of the runtime's own exit: Error (crash-looping), status 3, the record.
    pod = _pod(Terminated(EXIT_OUT_OF_MEMORY, "Error", _record(OUT_OF_MEMORY_REASON)), "CrashLoopBackOff")
    failure, feedback = feedback_from_pod(pod, NOW)
    assert failure.reason == kernel_failure.reason == "OOMKilled"
    assert failure.signature == kernel_failure.signature == "OOMKilled" and failure.exit_code == 3
    assert feedback is not None and kernel_feedback is not None
    assert feedback.source == kernel_feedback.source == "oom_killed"
    # Unlike the kernel's kill, it says what could not be allocated, and where.
    assert failure.message.startswith("out of memory: monitor_features could not allocate memory")
    assert feedback.evidence["data_profile"]["rows"] == 2000
    assert "MemoryError" in feedback.evidence["traceback"]
    assert remedy_for(_as_feedback(feedback)) is remedy_for(_as_feedback(kernel_feedback))
    assert remedy_for(_as_feedback(feedback)) is Remedy.BOUNDED_MEMORY


def test_a_memory_error_record_without_the_out_of_memory_reason_stays_a_crash() -> None:
    # Records of older runtimes (no `reason`): the exception's own signature, as before.
    failure, feedback = feedback_from_pod(_pod(Terminated(1, "Error", _record(None))), NOW)
    assert failure.reason == "Error" and failure.signature == "MemoryError@monitor.py:monitor_features"
    assert feedback is not None and feedback.source == "crash"


def _as_feedback(record: FeedbackRecord) -> Feedback:
    """The status's feedback record as Train reads it back for the next generation."""
    return Feedback.from_dict(
        {
            "source": record.source,
            "signature": record.signature,
            "version": record.version,
            "evidence": record.evidence,
        }
    )
