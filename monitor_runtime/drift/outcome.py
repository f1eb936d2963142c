"""What one feature comparison yields before the batch-wide decision step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    """A feature's statistics, with its p-value parts left for the vectorised batch step.

    ``ks`` holds ``(d, n1, n2)`` of a KS part and ``chi2`` holds ``(statistic, dof)`` of a
    chi-squared part; ``extra_p`` holds p-values already known (proportion tests). The batch step
    turns the parts into one p-value per feature (Fisher's method when there are several parts).
    """

    method: str
    data_type: str
    effect: float
    n_reference: int
    n_current: int
    ks: tuple[float, int, int] | None = None
    chi2: tuple[float, int] | None = None
    extra_p: list[float] = field(default_factory=list)
    status: str = "ok"
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def testable(self) -> bool:
        return self.ks is not None or self.chi2 is not None or bool(self.extra_p)
