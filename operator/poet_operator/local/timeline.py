"""What `poetmon dev` prints: a progress bar while the stream is replayed, one line per decision of the
rollout machine (its Events) and per thing the processes did, and the final report.

On a terminal the progress bar redraws in place under the lines; otherwise (a pipe, a log file, a test) it is
printed as a line at every tenth of the stream, so the output reads the same top to bottom.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from poet_operator.local.dev_backend import Clock, ProcessEvent
from poet_operator.poet.produce import ProducedVersion
from poet_operator.rollout.actions import Emit
from poet_operator.rollout.render import Style

BAR_WIDTH = 30
_MARKS = {
    "Normal": ("●", "green"),
    "Warning": ("▲", "yellow"),
    "info": ("·", "dim"),
    "process": ("○", "cyan"),
}


class Timeline:
    """Lines stamped with the seconds since `poetmon dev` started."""

    def __init__(self, out: TextIO | None = None, *, clock: Clock | None = None, tty: bool | None = None):
        self.out = out or sys.stdout
        self.clock = clock or Clock()
        self.tty = self.out.isatty() if tty is None else tty
        self.style = Style(self.tty)
        self.lines: list[str] = []  # everything printed, without colour (tests read it)
        self._bar_shown = False
        self._last_tenth = -1
        self._drifted: tuple[str, ...] = ()

    # -- output ----------------------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if self._bar_shown:
            self.out.write("\r\x1b[2K")
            self._bar_shown = False
        self.out.write(text + "\n")
        self.out.flush()

    def line(self, text: str, kind: str = "info") -> None:
        mark, color = _MARKS.get(kind, _MARKS["info"])
        stamp = f"[{self.clock.elapsed():6.1f}s]"
        plain = f"{stamp} {mark} {text}"
        self.lines.append(plain)
        self._write(f"{self.style(stamp, 'dim')} {self.style(mark, color)} {text}")

    def progress(self, fraction: float, detail: str) -> None:
        fraction = max(0.0, min(1.0, fraction))
        filled = round(fraction * BAR_WIDTH)
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} {detail}"
        if self.tty:
            self.out.write("\r\x1b[2K" + self.style(bar, "dim"))
            self.out.flush()
            self._bar_shown = True
            return
        tenth = int(fraction * 10)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.line(f"replay {bar}")

    # -- what happened ---------------------------------------------------------------------------------------

    def decision(self, emit: Emit) -> None:
        self.line(f"{emit.reason}: {emit.message}", emit.type)

    def process(self, event: ProcessEvent) -> None:
        who = f"{event.role} v{event.version} ({event.pod})"
        if event.kind == "started":
            self.line(f"started {who}: {event.detail}", "process")
        elif event.kind == "promoted":
            self.line(f"process {event.pod} now serves as the stable v{event.version}", "process")
        elif event.kind == "ready":
            self.line(f"{who} is ready ({event.detail})", "process")
        elif event.kind == "exited" and event.terminated is not None:
            term = event.terminated
            why = {
                "OOMKilled": "out of memory",
                "Completed": "exited cleanly",
                "Error": "crashed",
            }.get(term.reason, term.reason)
            self.line(f"{who} {why}: reason {term.reason}, exit code {term.exit_code}", "Warning")

    def generated(self, produced: ProducedVersion) -> None:
        if produced.status != "written":
            self.line(
                f"POET did not write version {produced.version}: {produced.status}: {produced.message}",
                "Warning",
            )
            return
        text = f"POET wrote version {produced.version} ({produced.generator})"
        changes = remedy_lines(produced.manifest_json)
        if changes:
            text += ": " + "; ".join(changes)
        if produced.lessons_applied:
            text += f"; lessons applied: {', '.join(produced.lessons_applied)}"
        self.line(text + f"; enforce passed {produced.enforce_checks} checks")

    def drift(self, role: str, version: int | None, features: Iterable[str], score: float | None) -> None:
        names = tuple(sorted(features))
        if names == self._drifted:
            return
        self._drifted = names
        if names:
            shown = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            score_text = f", drift score {score:.3f}" if score is not None else ""
            self.line(f"drift detected in {shown} ({role} v{version}{score_text})", "Warning")
        else:
            self.line(f"no drift ({role} v{version})")

    def final(
        self,
        report_table: str | None,
        html_path: Path | None,
        versions: Mapping[int, Path],
        diff_text: str | None,
        summary: str,
    ) -> None:
        self._write("")
        self._write(self.style("RESULT", "bold") + f"  {summary}")
        self._write("")
        if report_table:
            self._write(self.style("REPORT", "bold") + " (stable version)")
            for row in report_table.rstrip("\n").splitlines():
                self._write("  " + row)
        else:
            self._write("REPORT: the stable version has not evaluated any rows yet (the stream ended first)")
        self._write("")
        if html_path is not None:
            self._write(f"HTML report:  {html_path}")
        for number, path in sorted(versions.items()):
            self._write(f"version {number}:    {path}")
        if diff_text:
            self._write("")
            self._write(self.style("WHAT THE REMEDY CHANGED", "bold") + " (poetmon diff)")
            for row in diff_text.rstrip("\n").splitlines():
                self._write("  " + row)
        self.lines.append(summary)


def remedy_lines(manifest_json: str) -> list[str]:
    """`bounded_memory for OOMKilled (window 400000 -> 200000 rows, reservoir storage)` per remedy."""
    try:
        poet = (json.loads(manifest_json) or {}).get("poet") or {}
    except ValueError:
        return []
    notes = [str(n) for n in (poet.get("choices") or {}).get("notes") or []]
    out = []
    for remedy in poet.get("remedies") or []:
        name = str(remedy.get("remedy"))
        detail = next((n.split(": ", 1)[1] for n in notes if n.startswith(name + ": ")), "")
        out.append(f"{name} for {remedy.get('signature')}" + (f" ({detail})" if detail else ""))
    return out


def summary_of(status: Mapping[str, Any]) -> str:
    """One sentence about where the rollout ended."""
    versions = status.get("versions") or []
    shown = ", ".join(f"v{v.get('number')} {v.get('state')}" for v in versions)
    return f"phase {status.get('phase')}, stable version {status.get('stableVersion')} ({shown})"


__all__ = ["Timeline", "summary_of"]
