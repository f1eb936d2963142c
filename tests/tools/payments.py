"""The bundled payments example's data (examples/payments/make_data.py), for tests and benchmarks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_payments_data(out: Path, *, burst: int, trickle: int, reference: int = 5000) -> Path:
    """Run the example's own generator (seeded): `out/reference.csv` and `out/stream.csv`."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "payments" / "make_data.py"),
            "--out",
            str(out),
            "--burst",
            str(burst),
            "--trickle",
            str(trickle),
            "--reference",
            str(reference),
        ],
        check=True,
        capture_output=True,
    )
    return out


def stream_batches(path: Path, rows: int) -> Iterator[str]:
    """The stream file as CSV batches of ``rows`` rows, without its timestamp column."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, column in enumerate(header) if column != "timestamp"]

    def cut(line: str) -> str:
        cells = line.split(",")
        return ",".join(cells[i] for i in keep)

    head = cut(lines[0])
    for start in range(1, len(lines), rows):
        yield head + "\n" + "\n".join(cut(x) for x in lines[start : start + rows]) + "\n"
