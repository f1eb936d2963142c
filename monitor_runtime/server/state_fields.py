"""Typed reads of a decoded checkpoint state for the `from_state` methods: ValueError naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def object_of(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def list_of(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def float_array(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64:
        raise ValueError(f"{where}: expected a float64 array, got {_describe(value)}")
    return value


def column(value: Any, where: str) -> np.ndarray:
    """A 1-D column as parsing makes them: float64, or object holding str and None."""
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype not in (np.float64, object):
        raise ValueError(
            f"{where}: expected a one-dimensional float64 or text column, got {_describe(value)}"
        )
    return value


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} with shape {value.shape}"
    return type(value).__name__
