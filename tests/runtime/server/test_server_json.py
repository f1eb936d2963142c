"""Report bodies stay strict JSON whatever generated code returns."""

import json

import numpy as np

from monitor_runtime.json_safe import dumps as _dumps


def test_non_finite_numbers_and_odd_keys_become_json() -> None:
    body = json.loads(_dumps({"a": {(1, 2): float("nan"), 3: np.float64(2.5)}, "b": np.array([1.0, np.inf])}))
    assert body == {"a": {"(1, 2)": None, "3": 2.5}, "b": [1.0, None]}
