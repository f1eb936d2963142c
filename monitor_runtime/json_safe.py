"""Strict JSON for results that may hold numpy values, NaN or keys JSON cannot hold.

Drift results, reports and generated code's return values all cross a JSON boundary (HTTP bodies,
files, termination messages); JSON has no NaN or infinity, so those become null, and numpy scalars and
arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None and every mapping key made text."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    return value


def json_default(value: Any) -> Any:
    """`json.dumps` fallback: numpy scalars and arrays as Python values, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``obj``; the cleaning pass runs only when the fast path refuses."""
    try:
        return json.dumps(obj, default=json_default, allow_nan=False, **kwargs)
    except (ValueError, TypeError):
        return json.dumps(finite(obj), default=json_default, allow_nan=False, **kwargs)


def plain(obj: Any) -> Any:
    """``obj`` as it reads back from its strict JSON text (what a client of the runtime sees)."""
    return json.loads(dumps(obj))
