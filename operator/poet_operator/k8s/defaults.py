"""Operator-wide defaults (the chart's `llm` and `rolloutDefaults` values) laid under each monitor's spec.

A field the monitor sets always wins; the defaults only fill what it leaves out. Applied to the raw spec
before validation, so the result is checked like any spec and the status names the same fields.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SpecDefaults:
    """What the operator fills in when a monitor's spec leaves it out."""

    llm_base_url: str | None = None
    llm_model: str | None = None
    rollout: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SpecDefaults:
        """From `POET_LLM_BASE_URL`, `POET_LLM_MODEL` and `POET_ROLLOUT_DEFAULTS` (a JSON object of
        `spec.rollout` fields), as the chart sets them."""
        env = os.environ if env is None else env
        rollout_text = env.get("POET_ROLLOUT_DEFAULTS") or ""
        try:
            rollout = json.loads(rollout_text) if rollout_text.strip() else {}
        except ValueError as exc:
            raise ValueError(f"POET_ROLLOUT_DEFAULTS is not JSON: {exc}") from None
        if not isinstance(rollout, dict):
            raise ValueError("POET_ROLLOUT_DEFAULTS must be a JSON object of spec.rollout fields")
        return cls(env.get("POET_LLM_BASE_URL") or None, env.get("POET_LLM_MODEL") or None, rollout)

    def apply(self, spec: Any) -> Any:
        """`spec` with the defaults under it; what is not a mapping is left for validation to refuse."""
        if not isinstance(spec, Mapping):
            return spec
        out = dict(spec)
        rollout = spec.get("rollout")
        if self.rollout and (rollout is None or isinstance(rollout, Mapping)):
            out["rollout"] = {**self.rollout, **(rollout or {})}
        generator = spec.get("generator")
        if isinstance(generator, Mapping) and generator.get("kind") == "llm":
            llm = generator.get("llm")
            if llm is None or isinstance(llm, Mapping):
                filled = {
                    **({"baseUrl": self.llm_base_url} if self.llm_base_url else {}),
                    **({"model": self.llm_model} if self.llm_model else {}),
                    **(llm or {}),
                }
                out["generator"] = {**generator, "llm": filled}
        return out


__all__ = ["SpecDefaults"]
