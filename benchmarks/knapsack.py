"""The batch budget's knapsack against its LP bound, at scale.

    .venv/bin/python -m benchmarks.knapsack --home var --rows 100000

The candidates of a built world are scored by its registered model and resampled (with replacement) to
--rows rows, so the gains and costs are a real model's; the policy (serving.policy.decide, exploration and
holdout off) then allocates budgets of 5%, 20% and 50% of what the unconstrained policy would spend.
The Lagrangian dual is an upper bound on the LP relaxation's optimum, itself an upper bound on any policy:
the gap to it bounds how far from optimal the allocation is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import PolicySettings, load_config
from features.candidates import candidate_features, snapshot_at
from serving.policy import Rows, decide
from training import registry
from training.scorer import Scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--model", default="challenger")
    args = ap.parse_args()
    cfg = load_config(home=args.home)
    with registry.tracking(cfg):
        uri, version = registry.resolve(cfg.training.model_name, args.model)
        scorer = Scorer(registry.load_model(uri), cfg.business.margin, cfg.training.objective)
    t, snap = snapshot_at(cfg, None)
    frame = candidate_features(cfg, t, snap)
    s = scorer.score(frame)
    pick = np.random.default_rng(0).integers(0, len(frame), args.rows)
    gain, cost, net = s.gain("net_value")[pick], s.cost[pick], s.inc_net[pick]
    rows = Rows(np.arange(args.rows, dtype=np.int64), frame["segment"].astype(str).to_numpy(object)[pick],
                np.full(args.rows, "", dtype=object))  # fmt: skip
    settings = PolicySettings(exploration=0.0, holdout=0.0, frequency_cap_days=0)
    free = decide(gain, cost, net, scorer.arms, rows, settings, np.random.default_rng(0))
    spend = float(cost[np.arange(args.rows), free.arm].sum())
    print(
        f"{args.rows:,} rows resampled from {len(frame):,} candidates of {version}; "
        f"unconstrained spend {spend:,.0f} KRW"
    )
    out = []
    for share in (0.05, 0.2, 0.5):
        budget = share * spend
        t0 = time.perf_counter()
        d = decide(gain, cost, net, scorer.arms, rows, settings, np.random.default_rng(0), budget=budget)
        secs = time.perf_counter() - t0
        used = float(cost[np.arange(args.rows), d.arm].sum())
        assert d.lp_bound is not None and d.knapsack_value is not None
        gap = (d.lp_bound - d.knapsack_value) / d.lp_bound
        out.append({"budget share": share, "budget KRW": round(budget), "spent KRW": round(used),
                    "value": round(d.knapsack_value), "LP bound": round(d.lp_bound), "gap": f"{gap:.4%}",
                    "seconds": round(secs, 2)})  # fmt: skip
    print(pd.DataFrame(out).to_string(index=False))


if __name__ == "__main__":
    main()
