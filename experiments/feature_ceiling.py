"""How far can any model of these features go? Fit per-arm regressions directly on the simulator's truth.

    .venv/bin/python -m experiments.feature_ceiling --home /tmp/w100k [--rows 150000]

A real model learns from noisy outcomes of one arm per decision. This benchmark cheats on purpose: for a
sample of training decisions it reads the *exact* expected incremental re-engagement, reward cost and
incremental net value of *every* arm from the truth (``truth/decision_arms.parquet``) and regresses each on
the same player and arm features the response model sees. Its predictions are close to the best any model
of these features could make (``E[truth | features]``), so the policies built from them bound what the
learned policy can reach on this world:

- the net-value policy's true value, its ratio to the best single arm and the headroom it captures;
- the re-engagement objective under each single arm's total cost as budget: the ratio of true incremental
  re-engagements to that arm's, and the true cost against the arm's;
- the re-engagement objective at the cost of random assignment (uniform over the arms, no offer included)
  and of the marketers' selection (the platform's historical rule: the most sent offer per segment), as the
  closed loop's ``equal_cost`` variant runs it: the ratio of the *total* re-engagement rates (what the
  experiment measures), within the baseline's total cost (a budget) and within each player's own share of it
  (a per-player cap, as served).

The oracle (the truth per player, which no feature reveals fully) is printed beside it.

``--reveal sensitivity,affinity`` adds the simulator's latent traits of each player (from the saved world,
``truth/world/players.parquet``; ``affinity`` is one column per event type) to the features: what the
policy could reach if the platform knew them, i.e. which missing information bounds it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from core.config import load_config
from simulator.population import Population
from training.baselines import historical_rule
from training.data import population
from training.design import fit_design
from training.fit import held_out, prepare
from training.policy import choose
from training.truth import decision_truth


def latent_traits(truth_dir: Path, rows: pd.DataFrame, traits: list[str]) -> np.ndarray:
    """The simulator's latent ``traits`` of each row's player, rows x columns."""
    if not traits:
        return np.zeros((len(rows), 0))
    frame = pd.read_parquet(truth_dir / "world" / "players.parquet")
    pop = Population.from_frame(frame[[c for c in frame.columns if not c.startswith("state_")]])
    known = {f.name for f in fields(Population)}
    unknown = sorted(set(traits) - known)
    if unknown:
        raise SystemExit(f"unknown traits {unknown}; the simulator's players have {sorted(known)}")
    idx = rows["player_id"].to_numpy(np.int64) - 1  # the simulator numbers players from 1
    cols = [np.asarray(getattr(pop, t), np.float64)[idx] for t in traits]
    cols = [c if c.ndim == 2 else c[:, None] for c in cols]
    return np.hstack(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--truth", type=Path, help="the simulator's truth (default <home>/truth)")
    ap.add_argument("--rows", type=int, default=150_000, help="training decisions sampled (noise-free labels)")
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--reveal", default="", help="latent traits to add, comma-separated (e.g. sensitivity,affinity)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(home=args.home)
    truth_dir = args.truth or args.home / "truth"
    prepared = prepare(cfg)
    cfg = prepared.cfg  # with the platform's games and event types
    fit = population(prepared.split.fit)
    fit = fit.sample(min(args.rows, len(fit)), random_state=cfg.training.seed).reset_index(drop=True)
    test = held_out(prepared, "test")
    truth_fit = decision_truth(truth_dir, fit, prepared.arms)
    truth_test = decision_truth(truth_dir, test, prepared.arms)
    test, truth_test = test[truth_test.matched].reset_index(drop=True), truth_test.subset(truth_test.matched)
    margin = cfg.business.margin
    design = fit_design(cfg, fit, prepared.arms, use_match=True)
    reveal = [t for t in args.reveal.split(",") if t]
    known_fit, known_test = (latent_traits(truth_dir, frame, reveal) for frame in (fit, test))
    columns = design.columns + [f"latent_{i}" for i in range(known_fit.shape[1])]
    arms = prepared.arms
    n, k = len(test), len(arms)
    labels = {
        "reengage": (truth_fit.incremental_reengage(), truth_test.incremental_reengage()),
        "cost": (truth_fit.cost, truth_test.cost),
        "net": (truth_fit.incremental_net(margin), truth_test.incremental_net(margin)),
    }
    pred = {name: np.zeros((n, k)) for name in labels}
    params = {"objective": "regression", "num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 100}
    params |= {"verbosity": -1, "num_threads": 2, "seed": cfg.training.seed}
    for j in range(1, k):
        event, reward = arms["event_type"].iloc[j], arms["reward"].iloc[j]
        x_fit = np.hstack([design.matrix(fit, event, reward), known_fit])
        x_test = np.hstack([design.matrix(test, event, reward), known_test])
        for name, (y_fit, _) in labels.items():
            y = np.asarray(y_fit[:, j], np.float64)
            ok = ~np.isnan(y)
            data = lgb.Dataset(x_fit[ok], y[ok], feature_name=columns, categorical_feature=design.categorical_indices)
            pred[name][:, j] = lgb.train(params, data, num_boost_round=args.trees).predict(x_test)
        print(f"  fitted {arms['arm'].iloc[j]}", flush=True)
    true_re, true_cost = (np.nan_to_num(labels[q][1]) for q in ("reengage", "cost"))
    true_net = np.nan_to_num(labels["net"][1])
    rows = np.arange(n)
    best = 1 + int(true_net[:, 1:].mean(axis=0).argmax())
    oracle = np.maximum(true_net.max(axis=1), 0).mean()
    policy = true_net[rows, choose(pred["net"], pred["cost"]).arm].mean()
    single = true_net[:, best].mean()
    print(f"\n{n:,} held-out decisions, {len(fit):,} training decisions with noise-free labels, {k - 1} arms")
    if reveal:
        print(f"revealed latent traits: {', '.join(reveal)}")
    print(
        f"net value: feature ceiling {policy:,.0f} KRW per candidate vs best single arm {arms['arm'].iloc[best]} "
        f"{single:,.0f} ({policy / single:.2f}x), oracle {oracle:,.0f}; "
        f"headroom captured {(policy - single) / (oracle - single):.3f}"
    )
    out = []
    for j in range(1, k):
        row = {"reference arm": arms["arm"].iloc[j]}
        for label, gain, cost in (("oracle", true_re, true_cost), ("feature ceiling", pred["reengage"], pred["cost"])):
            arm = choose(gain, cost, budget=float(cost[:, j].sum())).arm
            row[f"{label} re-eng x"] = true_re[rows, arm].mean() / true_re[:, j].mean()
            row[f"{label} cost x"] = true_cost[rows, arm].mean() / true_cost[:, j].mean()
        out.append(row)
    print("\nre-engagement objective within each single arm's total cost (true ratios to that arm):")
    print(pd.DataFrame(out).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nre-engagement objective at the cost of random assignment and of the marketers' rule (true ratios of the")
    print("total re-engagement rate and of the cost to the baseline's; 'budget': the baseline's total cost,")
    print("'per player': each player's expected cost under the baseline as his cap):")
    p_total = np.nan_to_num(truth_test.p_reengage)
    weights = baseline_weights(prepared.split.fit, test, arms)
    table = []
    for name, w in weights.items():
        base_re, base_cost = (w * p_total).sum(axis=1).mean(), (w * true_cost).sum(axis=1).mean()
        row = {"baseline": name, "re-engagement": base_re, "cost KRW": base_cost}
        for label, gain, cost in (("oracle", true_re, true_cost), ("feature ceiling", pred["reengage"], pred["cost"])):
            cap = (w * cost).sum(axis=1)
            budget = choose(gain, cost, budget=float(cap.sum())).arm
            capped = np.where(cost <= cap[:, None] + 1e-9, gain, -np.inf)
            capped[:, 0] = np.maximum(capped[:, 0], 0.0)  # no offer always fits
            per_player = capped.argmax(axis=1)
            for how, arm in (("budget", budget), ("per player", per_player)):
                row[f"{label} {how} x"] = p_total[rows, arm].mean() / base_re
                row[f"{label} {how} cost x"] = true_cost[rows, arm].mean() / base_cost
        table.append(row)
    print(pd.DataFrame(table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\ndone in {time.perf_counter() - t0:,.0f} s")


def baseline_weights(history: pd.DataFrame, rows: pd.DataFrame, arms: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per row, each arm's probability under random assignment (uniform, no offer included) and under the
    marketers' selection (the historical rule learned from ``history``: the most sent arm per segment)."""
    k = len(arms)
    out = {"random": np.full((len(rows), k), 1.0 / k)}
    rule = historical_rule(history["segment"], history["arm"], none=str(arms["arm"].iloc[0]), known=set(arms["arm"]))
    chosen = rows["segment"].astype(str).map(rule).fillna(arms["arm"].iloc[0])
    index = pd.Index(arms["arm"]).get_indexer(chosen)
    marketers = np.zeros((len(rows), k))
    marketers[np.arange(len(rows)), index] = 1.0
    out["marketers"] = marketers
    return out


if __name__ == "__main__":
    main()
