"""What reading today's values of the players row for past decisions would add (and why it is not done).

    .venv/bin/python -m experiments.current_values --home /tmp/w100k [--put-back channel vip_level]

The platform keeps only the current channel, VIP level and status, so the
features of a past decision carry none of them before the system first
observed the player (docs/features.md). This experiment joins today's values
back onto every training and held-out row, as the code before issue 11 did,
fits one member with the tuned parameters (or the defaults) and judges it by
the simulator's truth: the gap is the value of that leak on this world.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from core.config import load_config
from training.evaluation_report import headline
from training.fit import fit_scorer, prepare
from training.judge import judge
from training.tune import read_best_params

SHOWN = ("learned_net_value_truth", "best_single_net_value_truth", "headroom_captured", "roi_accuracy")
COLUMNS = {"channel": "channel", "vip_level": '"vipLevel"'}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="a simulated world's home, built and tuned")
    ap.add_argument("--put-back", nargs="*", default=[], choices=sorted(COLUMNS), help="today's values to join back")
    args = ap.parse_args()
    cfg = load_config(home=args.home)
    prepared = prepare(cfg)
    cfg = prepared.cfg
    if args.put_back:
        select = ", ".join(f"{COLUMNS[c]} AS {c}" for c in args.put_back)
        today = pd.read_sql(f"SELECT id AS player_id, {select} FROM players", sa.create_engine(cfg.db_url))
        for part in (prepared.split.train, prepared.split.validation, prepared.split.test):
            joined = part[["player_id"]].merge(today, on="player_id", how="left")
            for c in args.put_back:
                part[c] = joined[c].to_numpy(dtype=float if c == "vip_level" else object)
    params = read_best_params(cfg) or cfg.training.model
    start = time.perf_counter()
    scorer = fit_scorer(cfg, prepared.split.fit, prepared.arms, params, members=1)
    figures = headline(judge(prepared, scorer, truth_dir=cfg.path("truth")))
    said = ", ".join(f"{k} {figures[k]:,.3f}" for k in SHOWN)
    error = figures.get("dr_hurdle_relative_error", float("nan"))
    took = time.perf_counter() - start
    print(f"today's {args.put_back or 'nothing'}: {said}, dr-hurdle error {error:+.1%} ({took:.0f} s)")


if __name__ == "__main__":
    main()
