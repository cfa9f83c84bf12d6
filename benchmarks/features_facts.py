"""Speed of the facts load (features/facts.py): wall time per step, rows and peak memory.

    .venv/bin/python -m benchmarks.features_facts --db sqlite:////tmp/facts100k/platform.db
    .venv/bin/python -m benchmarks.features_facts --db postgresql+psycopg://postgres@127.0.0.1:5432/bench \\
        --as-of 2026-10-05T10:00:00

(``-m`` from the repository root: run by path, benchmarks/features.py would shadow the features package.)

Simulate the world first, e.g. ``rekindle --home /tmp/facts100k simulate --players 100000 --days 180 --seed 1``.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import datetime

from core.config import load_config
from core.progress import Recorder
from features.facts import load_facts
from platform_db.db import connect, safe_url
from segmentation.service import event_time_range


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="platform database URL")
    ap.add_argument("--as-of", type=datetime.fromisoformat, help="default: just after the latest event")
    args = ap.parse_args()
    cfg = load_config()
    engine = connect(args.db)
    as_of = args.as_of or event_time_range(engine)[1]
    rec = Recorder()
    start = time.perf_counter()
    facts = load_facts(engine, cfg, as_of, progress=rec)
    marks = [(str(name), at) for _, name, at in rec.steps]
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"database: {safe_url(args.db)} ({engine.dialect.name})   as-of: {as_of:%Y-%m-%dT%H:%M:%S}")
    before = start
    for name, at in marks:
        frame = getattr(facts, name)
        size = frame.memory_usage(deep=True).sum() / 2**20
        print(f"  {name:<13} {at - before:7.1f} s   {len(frame):>12,} rows   {size:9,.0f} MiB")
        before = at
    print(f"load_facts: {elapsed:.1f} s   peak RSS: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
