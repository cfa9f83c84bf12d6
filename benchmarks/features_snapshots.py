"""Speed of the daily snapshots (features/snapshots.py): rows per second, seconds and peak memory.

    .venv/bin/python benchmarks/features_snapshots.py --db sqlite:////tmp/snap100k/platform.db
    .venv/bin/python benchmarks/features_snapshots.py --db ... --chunk 25000 --history-days 180
    .venv/bin/python benchmarks/features_snapshots.py --replicate 10 --db ...   # 10x the players

Simulate the world first, e.g. ``rekindle --home /tmp/snap100k simulate --players 100000 --days 180 --seed 1``.
``--replicate k`` stacks k copies of the loaded facts under new player ids (a 1,000,000-player
run from a 100,000-player world without simulating it). The frames are computed and dropped,
not written.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace
from datetime import datetime

import pandas as pd

from core.config import load_config
from features.facts import Facts, load_facts
from features.snapshots import player_snapshots, snapshot_days
from platform_db.db import connect, safe_url
from segmentation.service import event_time_range


def replicate(facts: Facts, k: int) -> Facts:
    """``k`` copies of ``facts``, copy ``i`` with player ids shifted by ``i`` times the largest id."""
    if k <= 1:
        return facts
    step = int(facts.players["player_id"].max()) + 1

    def stack(frame: pd.DataFrame, sort: list[str]) -> pd.DataFrame:
        parts = [frame.assign(player_id=frame["player_id"] + i * step) for i in range(k)]
        return pd.concat(parts, ignore_index=True).sort_values(sort, ignore_index=True)

    offers = stack(facts.offers, ["player_id", "offer_id"])
    offers["offer_id"] = range(1, len(offers) + 1)
    return replace(
        facts,
        players=stack(facts.players, ["player_id"]),
        session_days=stack(facts.session_days, ["player_id", "day"]),
        money_days=stack(facts.money_days, ["player_id", "day"]),
        offers=offers,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="platform database URL")
    ap.add_argument("--as-of", type=datetime.fromisoformat, help="default: just after the latest event")
    ap.add_argument("--chunk", type=int, help="players per chunk (default: features.chunk_players)")
    ap.add_argument("--history-days", type=int, help="override features.history_days")
    ap.add_argument("--replicate", type=int, default=1, help="stack this many copies of the players")
    args = ap.parse_args()
    overrides = {"features": {"history_days": args.history_days}} if args.history_days else None
    cfg = load_config(overrides=overrides)
    engine = connect(args.db)
    as_of = args.as_of or event_time_range(engine)[1]
    t0 = time.perf_counter()
    facts = replicate(load_facts(engine, cfg, as_of), args.replicate)
    loaded = time.perf_counter() - t0
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    days = snapshot_days(facts, cfg)
    rows = chunks = 0
    start = time.perf_counter()
    for chunk in player_snapshots(facts, cfg, days, chunk_players=args.chunk):
        rows += len(chunk["activity"])
        chunks += 1
        del chunk  # the consumer's reference would otherwise live on while the next chunk is computed
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"database: {safe_url(args.db)}   as-of: {as_of:%Y-%m-%dT%H:%M:%S}   replicate: {args.replicate}")
    chunk_players = args.chunk or cfg.features.chunk_players
    print(f"players: {len(facts.players):,}   snapshots: {len(days)}   chunk: {chunk_players:,}")
    print(f"load (+ replicate): {loaded:.1f} s   peak RSS after load: {base_rss:.2f} GiB")
    print(f"snapshots: {rows:,} rows per family x 4 families in {chunks} chunks: {elapsed:.1f} s")
    print(f"  {rows / elapsed:,.0f} (player, snapshot) rows/s   peak RSS: {peak:.2f} GiB (+{peak - base_rss:.2f})")


if __name__ == "__main__":
    main()
