"""Simulator speed: wall time and peak memory of `rekindle simulate` (history,
truth, tables and the SQLite write) at a given size.

    .venv/bin/python benchmarks/simulate.py                 # 100,000 players x 180 days
    .venv/bin/python benchmarks/simulate.py --players 1000000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from core.config import load_config
from simulator.run import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--home", type=Path, help="keep the output here (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp)
        cfg = load_config(
            home=home, overrides={"simulator": {"players": args.players, "days": args.days, "seed": args.seed}}
        )
        start = time.perf_counter()
        summary = simulate(cfg, home / "truth", overwrite=True)
        elapsed = time.perf_counter() - start
        size = (home / "platform.db").stat().st_size / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows = sum(summary.rows.values())
    print(f"players={args.players:,} days={args.days} seed={args.seed}")
    print(f"rows written: {rows:,} ({', '.join(f'{k} {v:,}' for k, v in summary.rows.items())})")
    print(f"wall time: {elapsed:.1f} s   peak RSS: {peak:.2f} GiB   SQLite file: {size:,.0f} MiB")
    print(f"truth rows: {summary.calibration['candidates'] * (summary.calibration['arms'] + 1):,}")


if __name__ == "__main__":
    main()
