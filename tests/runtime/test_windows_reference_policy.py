"""Reference policies: static never moves; accepted windows fold in (or replace) up to a size limit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor_runtime.windows import (
    AcceptedWindowsReference,
    ReferencePolicy,
    StaticReference,
    make_reference_policy,
)


def test_static_reference_never_changes() -> None:
    policy = make_reference_policy({"refresh": "static"}, reference={"x": [1.0, 2.0]})
    assert isinstance(policy, StaticReference)
    assert policy.observe({"x": [5.0, 6.0]}, drift_detected=False) is False
    np.testing.assert_array_equal(policy.reference["x"], [1.0, 2.0])
    assert policy.version == 1


def test_accepted_windows_fold_in_keep_the_newest_rows_and_skip_drifted_windows() -> None:
    policy = make_reference_policy(
        {"refresh": "accepted_windows", "size": 5}, reference={"x": [0.0, 1.0, 2.0]}
    )
    assert policy.observe({"x": [3.0, 4.0]}, drift_detected=False) is True
    np.testing.assert_array_equal(policy.reference["x"], [0, 1, 2, 3, 4])
    assert policy.observe({"x": [99.0, 99.0]}, drift_detected=True) is False
    assert policy.observe({"x": [5.0, 6.0], "new": ["a", "b"]}, drift_detected=False) is True
    np.testing.assert_array_equal(policy.reference["x"], [2, 3, 4, 5, 6])
    assert policy.reference["new"].tolist() == [None, None, None, "a", "b"]
    assert policy.n_rows == 5 and policy.version == 3


def test_replace_mode_makes_the_accepted_window_the_reference() -> None:
    policy = AcceptedWindowsReference(3, mode="replace", reference={"x": np.arange(10.0)})
    np.testing.assert_array_equal(policy.reference["x"], [7, 8, 9])
    policy.observe({"x": [1.0, 2.0]}, drift_detected=False)
    np.testing.assert_array_equal(policy.reference["x"], [1, 2])


def test_memory_is_bounded_by_size() -> None:
    policy = AcceptedWindowsReference(1000)
    rng = np.random.default_rng(0)
    for _ in range(50):
        policy.observe({"x": rng.normal(size=700), "y": rng.normal(size=700)}, drift_detected=False)
    assert policy.n_rows == 1000
    assert policy.nbytes == 2 * 8 * 1000


def test_state_round_trip() -> None:
    policy = AcceptedWindowsReference(4, reference={"x": [1.0, np.nan], "c": ["a", None]})
    policy.observe({"x": [3.0]}, drift_detected=False)
    again = ReferencePolicy.from_state(json.loads(json.dumps(policy.state(), allow_nan=False)))
    assert isinstance(again, AcceptedWindowsReference) and again.config() == policy.config()
    np.testing.assert_array_equal(again.reference["x"], [1.0, np.nan, 3.0])
    assert again.reference["c"].tolist() == ["a", None, None]
    assert again.version == policy.version and again.n_rows == 3


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"refresh": "sometimes"}, "refresh"),
        ({"refresh": "accepted_windows"}, "size"),
        ({"refresh": "accepted_windows", "size": 0}, "size"),
        ({"refresh": "accepted_windows", "size": 10, "mode": "merge"}, "mode"),
        ({"refresh": "static", "size": 10}, "size"),
        ({"refresh": "static", "window": 10}, "window"),
    ],
)
def test_bad_configs_name_the_key(config: dict, key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        make_reference_policy(config)
