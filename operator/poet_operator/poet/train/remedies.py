"""Known failure signatures and the remedy each one gets from the template generator.

A remedy is a named, documented change to the generated code (see docs/poet.md):

- `bounded_memory` (OOMKilled, MemoryError): windows become fixed-size reservoirs and sketches, the window is
  halved, and the reference is capped, so memory no longer grows with traffic.
- `sampled_evaluation` (probe timeouts, slow batches): batches are subsampled to a row budget and evaluated
  with vectorised tests under a latency budget.
- `dynamic_features` (errors on unknown features): features not in the spec are registered as they appear
  instead of being looked up in a fixed table.
- `dtype_coercion` (dtype errors): columns are coerced to the declared kind (numbers for continuous, strings
  for categorical) before any statistic runs; values that cannot be coerced become missing.
- `sparse_path` (sparse-data failures): numeric features are declared `auto`, so the drift engine detects
  mostly-zero columns and applies its sparse test instead of a dense one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from poet_operator.poet.train.feedback import (
    OOM_SIGNATURE,
    PROBE_TIMEOUT_SIGNATURE,
    SLOW_BATCH_SIGNATURE,
    Feedback,
    FeedbackSource,
)


class Remedy(StrEnum):
    """A documented change the template generator knows how to make."""

    BOUNDED_MEMORY = "bounded_memory"
    SAMPLED_EVALUATION = "sampled_evaluation"
    DYNAMIC_FEATURES = "dynamic_features"
    DTYPE_COERCION = "dtype_coercion"
    SPARSE_PATH = "sparse_path"


REMEDY_DESCRIPTIONS: dict[Remedy, str] = {
    Remedy.BOUNDED_MEMORY: "bounded-memory reservoir window, halved window size, capped reference",
    Remedy.SAMPLED_EVALUATION: "subsampled, vectorised evaluation under a per-batch latency budget",
    Remedy.DYNAMIC_FEATURES: "features outside the spec are registered when they first appear",
    Remedy.DTYPE_COERCION: "columns coerced to the declared kind first; what cannot be coerced is missing",
    Remedy.SPARSE_PATH: "numeric features declared auto so the drift engine's sparse test applies",
}

_UNKNOWN_FEATURE_RE = re.compile(
    r"unknown feature|new feature|not in (the )?reference|unexpected (column|feature)", re.I
)
_DTYPE_RE = re.compile(
    r"could not convert|dtype|ufunc|unsupported operand|not supported between instances|"
    r"must be real number|invalid literal|cannot cast|object arrays? (are|is) not supported",
    re.I,
)
_SPARSE_RE = re.compile(r"sparse|all[- ]zero|zero variance|mostly zero", re.I)
_MEMORY_TYPES = {"MemoryError"}
_TIMEOUT_TYPES = {"TimeoutError", "DeadlineExceeded"}


def exception_type_of(signature: str) -> str:
    """`KeyError@monitor.py:f` -> `KeyError`."""
    return signature.split("@", 1)[0]


def remedy_for(feedback: Feedback) -> Remedy | None:
    """The remedy for a feedback record, or None when no known remedy applies.

    A user may name a remedy explicitly (`evidence.remedy`); otherwise the signature decides, and for generic
    exception types the message and the data profile break the tie.
    """
    requested = feedback.evidence.get("remedy")
    if requested:
        try:
            return Remedy(str(requested))
        except ValueError:
            return None
    signature = feedback.signature
    exc = exception_type_of(signature)
    if feedback.source is FeedbackSource.OOM_KILLED or signature == OOM_SIGNATURE or exc in _MEMORY_TYPES:
        return Remedy.BOUNDED_MEMORY
    if signature in (PROBE_TIMEOUT_SIGNATURE, SLOW_BATCH_SIGNATURE) or exc in _TIMEOUT_TYPES:
        return Remedy.SAMPLED_EVALUATION
    if feedback.source is FeedbackSource.PROBE_FAILURE:
        return Remedy.SAMPLED_EVALUATION
    message = feedback.message
    if _SPARSE_RE.search(message) or profile_looks_sparse(feedback.data_profile):
        return Remedy.SPARSE_PATH
    if exc == "KeyError" or _UNKNOWN_FEATURE_RE.search(message):
        return Remedy.DYNAMIC_FEATURES
    text_seen = profile_has_text(feedback.data_profile)
    if exc in {"TypeError", "ValueError"} and (_DTYPE_RE.search(message) or text_seen):
        return Remedy.DTYPE_COERCION
    return None


def profile_columns(profile: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Per-column entries of a data profile, whether given as a mapping or a list of {name: ...}."""
    if not profile:
        return {}
    columns = profile.get("columns", {})
    if isinstance(columns, list):
        return {str(c.get("name", i)): c for i, c in enumerate(columns) if isinstance(c, Mapping)}
    if isinstance(columns, Mapping):
        return {str(k): v for k, v in columns.items() if isinstance(v, Mapping)}
    return {}


def profile_looks_sparse(profile: Mapping[str, Any] | None, *, zero_rate: float = 0.7) -> bool:
    """True when the profile shows a column that is mostly zeros or flagged sparse."""
    if profile and profile.get("sparse") is True:
        return True
    for column in profile_columns(profile).values():
        if column.get("sparse") is True:
            return True
        rate = column.get("zero_rate", column.get("zero_fraction"))
        if isinstance(rate, int | float) and rate >= zero_rate:
            return True
    return False


def profile_has_text(profile: Mapping[str, Any] | None) -> bool:
    """True when a column arrived as text or objects (a numeric column fed strings, usually)."""
    for column in profile_columns(profile).values():
        dtype = str(column.get("dtype", ""))
        if dtype.startswith(("object", "str", "<U", "|S", "bytes")) or dtype == "O":
            return True
    return False
