"""Ablations of the response model, judged by the simulator's truth on the held-out test slice.

    .venv/bin/python -m experiments.ablations --home /tmp/w100k [--base best|config] [--only NAME ...]

Each variant changes one thing of the base parameters (the tuned ones in ``<home>/training/best_params.json``
with ``--base best``, else the configured defaults), is fitted once (one member, no bootstrap) on every
campaign before the test slice, and is judged exactly as ``rekindle train`` judges: the truth's incremental
net value per candidate of its policy against the best single arm, the best arm per segment and the oracle,
the headroom it captures, the ROI accuracy, the re-engagement ratio under the best single arm's budget, and
the doubly robust (dr-hurdle) estimate's error. Nothing is logged to MLflow; a CSV goes to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from core.config import ModelParams, load_config
from training.evaluation_report import headline
from training.fit import fit_scorer, prepare
from training.judge import judge
from training.tune import read_best_params

VARIANTS: dict[str, dict[str, object]] = {
    "base": {},
    "no match scores": {"use_match": False},
    "match scores": {"use_match": True},
    "ipw weighting": {"weighting": "ipw"},
    "no weighting": {"weighting": "none"},
    "S-learner": {"learner": "s"},
    "T-learner": {"learner": "t"},
    "offset learner": {"learner": "offset"},
    "not monotone": {"monotone": False},
}
COLUMNS = {
    "learned_net_value_truth": "policy",
    "best_single_net_value_truth": "best single",
    "per_segment_net_value_truth": "per segment",
    "oracle_net_value_truth": "oracle",
    "headroom_captured": "headroom",
    "roi_accuracy": "ROI acc",
    "budget_reengage_ratio": "re-eng x",
    "budget_policy_cost": "cost",
    "budget_arm_cost": "arm cost",
    "dr_hurdle_relative_error": "DR err",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--truth", type=Path, help="the simulator's truth (default <home>/truth)")
    ap.add_argument("--base", choices=("best", "config"), default="best")
    ap.add_argument("--only", nargs="*", help="variants to run (default: all)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides of the base")
    ap.add_argument("--bootstrap", type=int, default=20, help="bootstrap resamples of the evaluation")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = load_config(home=args.home, overrides={"training": {"bootstrap": args.bootstrap}})
    base = (read_best_params(cfg) if args.base == "best" else None) or cfg.training.model
    extra = dict(kv.split("=", 1) for kv in args.set)
    base = ModelParams.model_validate(base.model_dump() | extra)
    print("base parameters:", base.model_dump())
    prepared = prepare(cfg)
    cfg = prepared.cfg  # with the platform's games and event types
    truth_dir = args.truth or args.home / "truth"
    out = []
    for name in args.only or list(VARIANTS):
        params = ModelParams.model_validate(base.model_dump() | VARIANTS[name])
        t0 = time.perf_counter()
        scorer = fit_scorer(cfg, prepared.split.fit, prepared.arms, params, members=1)
        fit_s = time.perf_counter() - t0
        figures = headline(judge(prepared, scorer, truth_dir=truth_dir))
        row = {"variant": name, **{v: figures.get(k, float("nan")) for k, v in COLUMNS.items()}, "fit s": fit_s}
        out.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:,.3f}"), flush=True)
    table = pd.DataFrame(out)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
