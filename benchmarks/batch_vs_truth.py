"""Score a batch of decisions (`rekindle batch --out FILE`) with the simulator's truth at the as-of time.

    .venv/bin/python -m benchmarks.batch_vs_truth var/decisions.csv var/truth

Prints the decisions' true incremental net value and re-engagements per candidate beside the best single arm
for everyone, the best arm per segment (the batch's own segment column) and the oracle, all by the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("decisions", type=Path)
    ap.add_argument("truth_dir", type=Path)
    args = ap.parse_args()
    d = pd.read_parquet(args.decisions) if args.decisions.suffix == ".parquet" else pd.read_csv(args.decisions)
    truth = pd.read_parquet(args.truth_dir / "truth.parquet")
    label = truth["event_type"] + "@" + truth["reward"].astype(str)
    truth["arm"] = np.where(truth["event_type"] == "none", "none", label)
    net = truth.pivot(index="player_id", columns="arm", values="incremental_net_value")
    re = truth.pivot(index="player_id", columns="arm", values="incremental_reengage")
    cost = truth.pivot(index="player_id", columns="arm", values="expected_cost")
    d["arm"] = np.where(d["event_type"] == "none", "none", d["event_type"] + "@" + d["reward"].astype(str))
    missing = set(d["player_id"]) ^ set(net.index)
    print(f"{len(d):,} decisions, {net.shape[0]:,} candidates in the truth, {len(missing):,} not in both")
    d = d[d["player_id"].isin(net.index)]
    ids = d["player_id"].to_numpy()
    cols = net.columns.get_indexer(pd.Index(d["arm"]))
    if (cols < 0).any():
        raise SystemExit(f"arms not in the truth: {sorted(set(d.loc[cols < 0, 'arm']))}")
    rows = net.index.get_indexer(pd.Index(ids))
    pol_net = net.to_numpy()[rows, cols].mean()
    pol_re = re.to_numpy()[rows, cols].mean()
    pol_cost = cost.to_numpy()[rows, cols].mean()
    mean = net.loc[ids].mean()
    best = str(mean.drop("none").idxmax())
    oracle = net.loc[ids].max(axis=1).mean()
    groups = d["segment"].to_numpy()
    by_group = net.loc[ids].groupby(groups).mean()
    per_group = float((net.loc[ids].groupby(groups).size() * by_group.max(axis=1).clip(lower=0)).sum() / len(ids))
    print(f"policy: incremental net {pol_net:,.0f} KRW, re-engagements {pol_re:.4f}, reward cost {pol_cost:,.0f} KRW")
    print(f"best single arm {best}: {mean[best]:,.0f} KRW   (policy / best single = {pol_net / mean[best]:.2f}x)")
    print(f"best arm per segment: {per_group:,.0f} KRW   oracle: {oracle:,.0f} KRW")
    print(f"headroom captured: {(pol_net - mean[best]) / (oracle - mean[best]):.3f}")
    print("choices:", d["arm"].value_counts(normalize=True).round(3).head(8).to_dict())


if __name__ == "__main__":
    main()
