"""Training-set decision rows: wall time per step, rows and peak memory of
`features.decisions.build_decisions` on an existing platform database.

    .venv/bin/rekindle --home /tmp/dec100k simulate --players 100000 --days 180 --seed 1
    .venv/bin/python benchmarks/features_decisions.py --home /tmp/dec100k
    .venv/bin/python benchmarks/features_decisions.py --db postgresql://postgres@127.0.0.1:5432/platform
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from pathlib import Path

from core.config import load_config
from core.progress import Recorder
from features.decisions import build_decisions
from platform_db.db import connect, safe_url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("var"), help="the Rekindle home holding platform.db")
    ap.add_argument("--db", help="platform database URL (default: the home's SQLite file)")
    args = ap.parse_args()
    cfg = load_config(home=args.home, db_url=args.db)
    engine = connect(cfg.db_url)
    rec = Recorder()
    start = time.perf_counter()
    ds = build_decisions(engine, cfg, progress=rec)
    steps = [(str(name), at) for _, name, at in rec.steps]
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    marks = [("default as-of + checks", start), *steps, ("end", start + elapsed)]
    print(f"database: {safe_url(cfg.db_url)}   as-of: {ds.as_of:%Y-%m-%dT%H:%M:%S}")
    for (name, t0), (_, t1) in itertools.pairwise(marks):
        print(f"  {name:<24} {t1 - t0:7.1f} s")
    rows, camp = ds.rows, ds.campaigns
    print(
        f"rows: {len(rows):,} ({int(rows['is_offer'].sum()):,} offers, {int((~rows['is_offer']).sum()):,} no-offer) "
        f"in {len(camp)} campaigns; open windows left out: {ds.open_windows:,}"
    )
    print(f"frame memory: {rows.memory_usage(deep=False).sum() / 2**30:.2f} GiB (object columns share their strings)")
    print(f"wall time: {elapsed:.1f} s   peak RSS: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
