"""The toolkit facade: every name it promises is importable and callable, and events reach the sink."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from monitor_runtime import toolkit


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in toolkit.__all__:
        obj = getattr(toolkit, name)
        assert obj.__doc__, name


def test_a_monitor_can_compose_the_toolkit_end_to_end() -> None:
    rng = np.random.default_rng(0)
    reference = toolkit.Reference.fit({"x": rng.normal(size=2000)})
    window = toolkit.make_window({"strategy": "fixed", "size": 1000})
    policy = toolkit.make_reference_policy({"refresh": "accepted_windows", "size": 4000})
    verdicts = []
    for shift in (0.0, 0.0, 1.0):
        for ready in window.add({"x": rng.normal(shift, 1.0, 1000)}):
            result = reference.detect(ready)
            verdicts.append(result["features"]["x"]["drift_detected"])
            policy.observe(ready, drift_detected=result["features"]["x"]["drift_detected"])
    assert verdicts == [False, False, True]
    assert policy.n_rows == 2000 and policy.version == 2
    d, p = toolkit.sliding_ks(rng.normal(size=500), rng.normal(size=3000), 1000, 500)
    assert d.shape == p.shape == (5,)
    assert toolkit.evaluate_predictions([1, 0], [1, 1], task="classification")["accuracy"] == 0.5


def test_emit_forwards_to_the_installed_sink_and_defaults_to_dropping() -> None:
    toolkit.emit("ignored", a=1)  # no sink: nothing happens
    received: list[tuple[str, dict]] = []
    toolkit.set_event_sink(lambda event_type, details: received.append((event_type, details)))
    try:
        toolkit.emit("drift_detected", features=["x"], score=0.4)
        assert received == [("drift_detected", {"features": ["x"], "score": 0.4})]
        with pytest.raises(ValueError, match="event_type"):
            toolkit.emit("")
        with pytest.raises(ValueError, match="callable"):
            toolkit.set_event_sink("not a function")  # type: ignore[arg-type]
    finally:
        toolkit.set_event_sink(None)
    toolkit.emit("dropped again")
    assert len(received) == 1


def test_clock_is_monotonic_seconds() -> None:
    first = toolkit.clock()
    second = toolkit.clock()
    assert isinstance(first, float) and second >= first


def test_toolkit_does_not_import_the_operator() -> None:
    code = (
        "import sys, monitor_runtime.toolkit; print(any(m.startswith('poet_operator') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("storage", ["reservoir", "sketch"])
def test_bounded_windows_feed_the_drift_engine(storage: str) -> None:
    rng = np.random.default_rng(1)
    reference = toolkit.Reference.fit(
        {"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])}
    )
    window = toolkit.make_window(
        {"strategy": "sliding", "size": 20_000, "step": 10_000, "storage": storage, "capacity": 1000}
    )
    verdicts = []
    for shift in (0.0, 0.0, 0.0, 0.5, 0.5):
        batch = {
            "x": rng.normal(shift, 1.0, 10_000),
            "c": rng.choice(["a", "b", "c"], 10_000, p=[0.5, 0.3, 0.2]),
        }
        for ready in window.add(batch):
            result = reference.detect(ready)
            verdicts.append(
                (result["features"]["x"]["drift_detected"], result["features"]["c"]["drift_detected"])
            )
    assert verdicts == [(False, False), (False, False), (True, False), (True, False)]


def test_generated_code_cannot_patch_the_toolkit_for_others() -> None:
    import pytest

    from monitor_runtime import toolkit

    with pytest.raises(AttributeError, match="read-only"):
        toolkit.detect_drift = lambda *a, **k: {}
    with pytest.raises(AttributeError, match="read-only"):
        del toolkit.emit
    seen = []
    toolkit.set_event_sink(lambda kind, details: seen.append(kind))  # the module's own setters still work
    toolkit.emit("checked")
    toolkit.set_event_sink(None)
    assert seen == ["checked"]
