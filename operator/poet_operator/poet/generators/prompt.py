"""Prompt building for the LLM generator: domain knowledge, the contract, the spec, the previous version and
the feedback, in that order, so the model sees the rules before the problem."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from poet_operator.poet.enforce.policy import ALLOWED_IMPORTS as POLICY_IMPORTS
from poet_operator.poet.train.feedback import Feedback

# Derived from Enforce's allow-list so the prompt can never promise an import the policy refuses.
ALLOWED_IMPORTS = (
    "monitor_runtime.toolkit (received as the `toolkit` argument; do not import it)",
    *sorted(POLICY_IMPORTS - {"monitor_runtime.toolkit", "__future__"}),
)

ML_MONITORING_KNOWLEDGE = """\
Domain: ML model monitoring (data and prediction drift).
- Compare a reference window (what the model was trained or validated on) with current batches.
- Continuous features: KS test or Wasserstein distance; categorical: chi-squared or PSI / Jensen-Shannon.
  Mostly-zero (sparse) columns need a test on the zero rate plus the non-zero values. The toolkit's drift
  engine already chooses and runs these tests: call it, never re-implement a statistic.
- Many features at once means many tests: control the false discovery rate (the engine does
  Benjamini-Hochberg when optimizing for accuracy).
- Verdicts need enough rows; constant and all-missing columns are reported, not alarmed on.
- Features can appear or disappear mid-stream, arrive with the wrong dtype, or contain NaN and inf: a monitor
  must keep working and report it rather than raise.
- Memory must stay bounded by the window settings; evaluation must finish within the latency asked for.
"""

CONTRACT_FALLBACK = """\
Contract version 1: `monitor.py` defines `CONTRACT = 1` and `class Monitor` constructed as
`Monitor(spec, toolkit)`, with methods detect_drift(current), monitor_features(batch) (returns features,
overall_health, overall_drift_score, recommendations, window_config), monitor_predictions(predictions,
actuals), update_reference_window(new_data), state() -> JSON-serialisable dict and restore(state).
Batches are mappings of column name -> 1-D numpy array. Drift results follow docs/drift-result.md.
"""

SYSTEM_PROMPT = """\
You write `monitor.py` for poet-monitor: a drift monitor that runs in a sandbox with no file, process or
network access. Your code is checked statically and by contract tests before it can ship; code that fails is
sent back to you with the reasons.
Rules:
- Allowed imports only: {imports}. No eval, exec, compile, open, __import__, dunder attribute tricks,
  files, processes or sockets.
- Compose the toolkit passed to `Monitor(spec, toolkit)`; never re-implement statistical tests.
- Keep memory bounded and every method total: bad input is reported in the result, never raised.
- Answer with exactly one ```python code block containing the whole file, and nothing else of substance.
"""


@dataclass
class PromptContext:
    """Everything the prompt says, gathered by the engine's Perceive phase."""

    spec: dict[str, Any]
    contract_text: str = CONTRACT_FALLBACK
    toolkit_text: str = ""
    domain_knowledge: str = ML_MONITORING_KNOWLEDGE
    previous_code: str | None = None
    previous_version: int | None = None
    feedback: Sequence[Feedback] = ()
    remedies: Sequence[dict[str, Any]] = ()
    lessons: Sequence[dict[str, Any]] = ()
    starting_point: str | None = None
    notes: list[str] = field(default_factory=list)


def build_messages(context: PromptContext) -> list[dict[str, str]]:
    """System and user messages for the first request."""
    system = SYSTEM_PROMPT.format(imports=", ".join(ALLOWED_IMPORTS))
    parts = [
        "## Domain knowledge\n" + context.domain_knowledge.strip(),
        "## The monitor contract\n" + context.contract_text.strip(),
    ]
    if context.toolkit_text.strip():
        parts.append("## The toolkit API\n" + context.toolkit_text.strip())
    parts.append(
        "## The spec\n```json\n" + json.dumps(context.spec, indent=2, sort_keys=True, default=str) + "\n```"
    )
    if context.previous_code:
        label = f"version {context.previous_version}" if context.previous_version is not None else "previous"
        code = context.previous_code.strip()
        parts.append(f"## The previous version ({label}) of monitor.py\n```python\n{code}\n```")
    if context.feedback:
        parts.append(
            "## Feedback on the previous version\n" + "\n\n".join(_feedback_text(f) for f in context.feedback)
        )
    if context.remedies:
        lines = [f"- {r['signature']}: {r['remedy']} ({r.get('description', '')})" for r in context.remedies]
        parts.append("## Remedies to apply\n" + "\n".join(lines))
    if context.lessons:
        lines = [f"- {entry['signature']}: {entry['remedy']}" for entry in context.lessons]
        parts.append("## Lessons from other monitors (apply them)\n" + "\n".join(lines))
    if context.starting_point:
        parts.append(
            "## A known-good starting point (passes every check; improve on it for this spec and feedback)\n"
            f"```python\n{context.starting_point.strip()}\n```"
        )
    parts.extend(context.notes)
    parts.append("Write the complete monitor.py now, as one ```python code block.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def repair_message(reasons: Sequence[str]) -> str:
    """The follow-up that sends a rejection back with its reasons."""
    listed = "\n".join(f"- {reason}" for reason in reasons) or "- (no reason given)"
    return (
        "Your code was rejected by the checks:\n"
        f"{listed}\n"
        "Fix every problem and answer again with the complete monitor.py as one ```python code block."
    )


def _feedback_text(feedback: Feedback) -> str:
    """One feedback record as prompt text: signature, message, termination message, traceback, profile."""
    evidence = feedback.evidence
    lines = [
        f"Signature: {feedback.signature}",
        f"Source: {feedback.source.value}",
        f"Version hit: {feedback.version if feedback.version is not None else 'unknown'}",
    ]
    if evidence.get("message"):
        lines.append(f"Message: {evidence['message']}")
    if evidence.get("termination_message"):
        lines.append("Termination message:\n" + _clip(str(evidence["termination_message"]), 3000))
    if evidence.get("traceback"):
        lines.append("Traceback:\n" + _clip(str(evidence["traceback"]), 4000))
    if evidence.get("log_tail"):
        lines.append("Log tail:\n" + _clip(str(evidence["log_tail"]), 2000))
    if feedback.data_profile:
        profile = json.dumps(feedback.data_profile, indent=1, sort_keys=True, default=str)
        lines.append("Data profile of the offending batch:\n" + _clip(profile, 4000))
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    """Keep the end of long text: the last lines of a traceback or log say the most."""
    return text if len(text) <= limit else "...\n" + text[-limit:]
