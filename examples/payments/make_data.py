"""Write the `poetmon dev` example's data (seeded, so every run gets the same bytes).

    python examples/payments/make_data.py [--out DIR] [--burst ROWS] [--trickle ROWS] [--reference ROWS]

- `reference.csv`: transactions of a normal week (no timestamp).
- `stream.csv`: a timestamped stream: a traffic burst at 2,000 transactions a second, then a quiet period at
  100 a second. Part-way through the burst the drift event starts: amounts grow by 60% and Germany's share
  of transactions doubles. `merchant_id` is a fresh 16-hex-digit id on nearly every row (a feature declared
  categorical that is in truth an identifier: hundreds of thousands of distinct values).

The default stream is about 20 MB, so it is generated when needed rather than stored in the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 20261201
COUNTRIES = np.array(["US", "GB", "DE", "FR", "ES"])
SHARES = np.array([0.40, 0.20, 0.15, 0.15, 0.10])
DRIFTED_SHARES = np.array([0.32, 0.18, 0.30, 0.12, 0.08])


def transactions(rng: np.random.Generator, n: int, drift_from: int | None) -> dict[str, np.ndarray]:
    amount = rng.lognormal(3.5, 0.8, n)
    country = rng.choice(COUNTRIES, n, p=SHARES)
    if drift_from is not None and drift_from < n:
        k = n - drift_from
        amount[drift_from:] *= 1.6
        country[drift_from:] = rng.choice(COUNTRIES, k, p=DRIFTED_SHARES)
    merchant = rng.integers(0, 2**62, n, dtype=np.int64)
    return {
        "amount": np.char.mod("%.2f", amount),
        "merchant_id": np.char.add("mch_", np.char.mod("%016x", merchant)),
        "country": country,
    }


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    names = list(columns)
    joined = columns[names[0]].astype(object)
    for name in names[1:]:
        joined = joined + "," + columns[name].astype(object)
    path.write_text(",".join(names) + "\n" + "\n".join(joined.tolist()) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".poetmon-dev/data", help="directory to write (created)")
    parser.add_argument("--burst", type=int, default=450_000, help="rows at 2,000 a second")
    parser.add_argument("--trickle", type=int, default=150_000, help="rows at 100 a second after the burst")
    parser.add_argument("--reference", type=int, default=20_000, help="reference rows")
    parser.add_argument("--drift-from", type=int, default=None, help="first drifted row (default burst/2)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    write_csv(out / "reference.csv", transactions(rng, args.reference, None))
    n = args.burst + args.trickle
    drift_from = args.burst // 2 if args.drift_from is None else args.drift_from
    stream = transactions(rng, n, drift_from)
    start = 1_796_130_000.0  # 2026-12-01T12:20:00Z
    times = np.concatenate(
        [np.arange(args.burst) / 2000.0, args.burst / 2000.0 + np.arange(args.trickle) / 100.0]
    )
    write_csv(out / "stream.csv", {"timestamp": np.char.mod("%.3f", start + times), **stream})
    print(f"wrote {out / 'reference.csv'} ({args.reference} rows) and {out / 'stream.csv'} ({n} rows)")


if __name__ == "__main__":
    main()
