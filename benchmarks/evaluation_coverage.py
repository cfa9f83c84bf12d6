"""Do the evaluation's intervals cover the truth, and does the promotion guard choose right, over many worlds?

    .venv/bin/python -m benchmarks.evaluation_coverage --work /tmp/cov20k --seeds 1-10
    .venv/bin/python -m benchmarks.evaluation_coverage --work /tmp/cov100k --seeds 1-3 --players 100000 --days 180
    .venv/bin/python -m benchmarks.evaluation_coverage --work /tmp/covalt --seeds 1-10 --config experiments/worlds/alt
    .venv/bin/python -m benchmarks.evaluation_coverage --work /tmp/cov20k --retrain --param deposit_model=tree
    .venv/bin/python -m benchmarks.evaluation_coverage --work /tmp/cov20k --retrain --set training.ope_max_weight=100
    .venv/bin/python -m benchmarks.evaluation_coverage --work /tmp/loop --seeds 1-4 --weeks 6 --drift-week 99 \
        [--set training.logged_propensities=false]

Each world is the main command's (`rekindle run --seed S`, 20,000 players and 150 days by default): a world
whose home under ``--work`` holds no trained model is built by running that command. Then, with the code as it
is now, the registered model (or, with ``--retrain``, one fitted again with the current training code) is
judged on the held-out campaigns against the simulator's truth, and the promotion guard decides. Printed per
seed and policy (learned, best single arm, best arm per segment, random): each estimator's estimate, its
interval (``training.interval``, 90% by default) and the truth; then, over the seeds, how often each
estimator's interval covered the truth, whether the guard ever promoted a policy worth less than the best
single arm in truth, and how often the fallback it names (the best single arm, or the segment rule when that
is estimated better) was the better of the two in truth. ``--out FILE.csv`` keeps the rows.

The main command plays the closed loop after its first training, so its latest campaigns, the held-out ones,
are Rekindle's own decisions: the evaluation weights them by the propensities logged with them
(``training.logged_propensities``; the random variant and the exploration give every arm exact support), and
their truth is the as-of truth the simulator archived at each decision. Each seed also prints the fallback
rule in force and whether the new choice replaced it (:func:`training.promotion.settle_fallback`), and how
many held-out rows telling the truly best single arm from the next two would take. ``--set
training.logged_propensities=false`` judges the same rows with estimated propensities, for comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.config import ConfigError, load_config
from training import evaluation as ev
from training import registry
from training.fit import fit_scorer, prepare
from training.judge import Judged, judge
from training.ope import dr_pseudo_outcomes
from training.promotion import promotion_decision, settle_fallback
from training.scorer import Scorer

POLICIES = (ev.LEARNED, ev.BEST_SINGLE, ev.PER_SEGMENT, ev.RANDOM)
ESTIMATORS = ("dr-hurdle", "dr-sized", "dr", "snips", "dm", "model")


def seeds(text: str) -> list[int]:
    """``1-10`` or ``1,3,5``."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def build(home: Path, seed: int, players: int, days: int, config: Path | None, loop: list[str] | None = None) -> None:
    """The main command on this world (``loop``: its options for the closed loop, e.g. ``--weeks 6``), unless
    its home already holds a trained model."""
    if (home / "mlflow.db").exists() and (home / "training" / "training_set.parquet").exists():
        return
    cmd = [sys.executable, "-m", "app.cli", "--home", str(home)]
    cmd += ["--config", str(config)] if config else []
    cmd += ["run", "--seed", str(seed), "--players", str(players), "--days", str(days), *(loop or [])]
    print(f"building seed {seed}: {' '.join(cmd)}", flush=True)
    log = home.with_suffix(".log")
    home.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


def overrides(settings: list[str]) -> dict[str, object]:
    """``["training.ope_max_weight=100"]`` -> ``{"training": {"ope_max_weight": 100}}`` (values read as YAML)."""
    out: dict[str, object] = {}
    for item in settings:
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = yaml.safe_load(value)
    return out


def judge_world(
    home: Path,
    config: Path | None,
    retrain: bool,
    params: dict[str, str] | None = None,
    settings: dict[str, object] | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    cfg = load_config(config, home=home, overrides=settings)
    prepared = prepare(cfg)
    cfg = prepared.cfg
    name = cfg.training.model_name
    with registry.tracking(cfg):
        challenger = registry.alias_version(name, registry.CHALLENGER)
        # the fallback in force: the challenger's (a canaried rule that was rolled back never became it), the
        # rule the next retraining weighs its new choice against
        tag = registry.version_tag(name, challenger, registry.FALLBACK_TAG) if challenger else None
    in_force = json.loads(tag) if tag else None
    if retrain:
        chosen = cfg.training.model.model_validate(cfg.training.model.model_dump() | (params or {}))
        scorer = fit_scorer(cfg, prepared.split.fit, prepared.arms, chosen, members=cfg.training.ensemble)
    else:
        with registry.tracking(cfg):
            model = registry.load_model(registry.model_uri(name, registry.CHALLENGER))
        scorer = Scorer(model, cfg.business.margin, cfg.training.objective)
        prepared.arms = scorer.arms
    j = judge(prepared, scorer, truth_dir=home / "truth")
    promotion = promotion_decision(prepared, j, None, None)
    t = cfg.training
    settled = settle_fallback(j, in_force, bootstrap=t.bootstrap, seed=t.seed)
    v = j.evaluation.values
    v = v[(v["quantity"] == "net_value") & v["policy"].isin(POLICIES)]
    truth = v[v["estimator"] == "truth"].set_index("policy")["estimate"]
    rows = v[v["estimator"].isin(ESTIMATORS)].copy()
    rows["truth"] = rows["policy"].map(truth)
    rows["covered"] = (rows["low"] <= rows["truth"]) & (rows["truth"] <= rows["high"])
    e = j.evaluation
    support = e.support.set_index("policy")
    rows["reliable"] = rows["policy"].map(support["reliable"])
    rows["ess"] = rows["policy"].map(support["ess"])
    rows["logged"] = rows["policy"].map(support["logged"])  # of the correction, on Rekindle's logged propensities
    true_single, true_segment = truth[ev.BEST_SINGLE], truth[ev.PER_SEGMENT]
    fallback_truth = float(e.fallback_truth) if e.fallback_truth is not None else float("nan")
    rules = {b: rule_truth(j, e.estimated_baselines.get(b, {})) for b in (ev.BEST_SINGLE, ev.PER_SEGMENT)}
    summary: dict[str, object] = {
        "promoted": promotion.promoted,
        "reason": promotion.reason,
        "learned_truth": truth[ev.LEARNED],
        "best_single_truth": true_single,
        "per_segment_truth": true_segment,
        "fallback": e.fallback,
        "fallback_truth": fallback_truth,
        # the two rules the fallback chooses between, as the estimate picks their arms, by the truth
        "estimated_single_truth": rules[ev.BEST_SINGLE],
        "estimated_segment_truth": rules[ev.PER_SEGMENT],
        "outcome_model": e.outcome_model,
        "logged_rows": float(j.data.logged.is_known[j.data.fresh].mean()),
        "in_force": json.dumps(in_force) if in_force else "",
        "settled": json.dumps(settled.rule),
        "settled_reason": settled.reason or "",
        # the fallback registered once the rule in force had its say (training.promotion.settle_fallback)
        "settled_truth": rule_truth(j, settled.rule),
    }
    summary["power"] = " ".join(arms_power(j, t.bootstrap, t.seed))
    return rows, summary


def arms_power(j: Judged, bootstrap: int, seed: int) -> list[str]:
    """How many held-out rows telling the truly best single arm from the next two would take (80% power at 5%,
    two-sided: rows x (s.e. / (gap / 2.8))^2), by the capped doubly robust scores and by plain DR, from the
    bootstrap of their paired difference on these rows."""
    if j.truth is None:
        return []
    d = j.data
    mu = ev.outcome_models(j.mean, d.margin)["net_value"]
    scores = {
        "capped DR": dr_pseudo_outcomes(d.logged, mu, ev.hurdle_outcome(j.mean, d), max_weight=d.max_weight),
        "plain DR": dr_pseudo_outcomes(d.logged, mu, d.y["net_value"]),
    }
    w = ev.resample_weights(d, bootstrap, seed)[1:]
    true = np.nanmean(j.truth.incremental_net(d.margin)[d.fresh], axis=0)
    names = list(j.scores.arms["arm"])
    order = [a for a in np.argsort(-np.nan_to_num(true, nan=-np.inf)) if a != 0][:3]
    rows = int(d.fresh.sum())
    out = []
    for other in order[1:]:
        gap = true[order[0]] - true[other]
        parts = []
        for name, v in scores.items():
            se = float(((w @ (v[:, order[0]] - v[:, other])) / w.sum(axis=1)).std())
            parts.append(f"{name} {(se / (gap / 2.8)) ** 2:,.1f}x")
        out.append(f"{names[order[0]]} vs {names[other]} (true gap {gap:,.0f}): " + ", ".join(parts))
    return [f"rows needed to tell them apart, as multiples of the {rows:,} held-out rows: " + "; ".join(out)]


def rule_truth(j: Judged, arms: dict[str, str]) -> float:
    """The true incremental net value per candidate of a segment -> arm rule ("all" for everyone)."""
    if j.truth is None or not arms:
        return float("nan")
    names = list(j.scores.arms["arm"])
    segment = pd.Series(j.data.segment)
    column = (segment.map(arms) if "all" not in arms else pd.Series(arms["all"], index=segment.index)).map(
        {a: i for i, a in enumerate(names)}
    )
    true_inc = j.truth.incremental_net(j.data.margin)
    ok = column.notna().to_numpy()
    return float(np.nanmean(true_inc[np.flatnonzero(ok), column[ok].to_numpy(int)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="one home per seed is kept here (seed1, seed2, ...)")
    ap.add_argument("--seeds", default="1-10", help="e.g. 1-10 or 1,4,7")
    ap.add_argument("--players", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=150)
    ap.add_argument("--config", type=Path, help="configuration directory (default ./configs)")
    ap.add_argument("--retrain", action="store_true", help="fit the model again with the current code")
    ap.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="with --retrain: a model parameter"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a configuration override for the judging, e.g. training.ope_max_weight=100",
    )
    ap.add_argument("--weeks", type=int, help="weeks of the main command's closed loop (its default: 8)")
    ap.add_argument("--drift-week", type=int, help="the loop's drift week (past --weeks: no drift)")
    ap.add_argument("--out", type=Path, help="write every row to this CSV")
    args = ap.parse_args()
    for flag, given, example in (
        ("--param", args.param, "deposit_model=tree"),
        ("--set", args.set, "training.bootstrap=400"),
    ):
        bad = [p for p in given if "=" not in p]
        if bad:
            ap.error(f"{flag} {bad[0]!r}: expected KEY=VALUE, e.g. {example}")
    params = dict(p.split("=", 1) for p in args.param)
    settings = overrides(args.set)
    try:  # a bad --set or --config is refused now, not after the first world's build
        load_config(args.config, home=args.work, overrides=settings)
    except ConfigError as exc:
        ap.error(str(exc))
    frames, summaries = [], []
    for s in seeds(args.seeds):
        home = args.work / f"seed{s}"
        loop = [*(["--weeks", str(args.weeks)] if args.weeks is not None else [])]
        loop += ["--drift-week", str(args.drift_week)] if args.drift_week is not None else []
        build(home, s, args.players, args.days, args.config, loop)
        t0 = time.perf_counter()
        rows, summary = judge_world(home, args.config, args.retrain, params, settings)
        rows.insert(0, "seed", s)
        frames.append(rows)
        summaries.append({"seed": s, **summary})
        print(
            f"\nseed {s} ({time.perf_counter() - t0:.0f} s; outcome model: {summary['outcome_model']}; "
            f"{summary['logged_rows']:.0%} of the held-out rows with logged propensities)"
        )
        shown = rows.assign(interval=[f"[{a:,.0f}, {b:,.0f}]" for a, b in zip(rows["low"], rows["high"], strict=True)])
        print(
            shown.pivot_table(index=["policy", "truth"], columns="estimator", values="estimate", aggfunc="first")
            .round(0)
            .to_string()
        )
        for _, r in shown[shown["estimator"].isin(["dr-hurdle", "dr-sized"])].iterrows():
            print(
                f"  {r['policy']:<22} {r['estimator']:<9} {r['estimate']:>7,.0f} {r['interval']:<18} "
                f"truth {r['truth']:>7,.0f}"
                f"  {'covered' if r['covered'] else 'MISSED '}  ess {r['ess']:>8,.0f}"
                f"  {'reliable' if r['reliable'] else 'UNRELIABLE'}  logged e {r['logged']:.0%}"
            )
        print(f"  promoted: {summary['reason']}")
        if summary["power"]:
            print(f"  {summary['power']}")
        if summary["settled_reason"]:
            print(f"  fallback in force {summary['in_force']}: {summary['settled_reason']}")
        print(
            f"  rules by the estimate, in truth: single arm {summary['estimated_single_truth']:,.0f}, "
            f"segment rule {summary['estimated_segment_truth']:,.0f}\n"
            f"  fallback: {summary['fallback']} (truth {summary['fallback_truth']:,.0f}; best single "
            f"{summary['best_single_truth']:,.0f}, per segment {summary['per_segment_truth']:,.0f})"
        )
    allrows = pd.concat(frames, ignore_index=True)
    if args.out:
        allrows.to_csv(args.out, index=False)
    report(allrows, pd.DataFrame(summaries))


def report(rows: pd.DataFrame, summaries: pd.DataFrame) -> None:
    n = len(summaries)
    print(f"\n=== over {n} seeds ===")
    cover = rows.pivot_table(index="policy", columns="estimator", values="covered", aggfunc="sum")
    print(f"intervals that covered the truth (of {n}):")
    print(cover.to_string())
    err = rows.assign(rel=(rows["estimate"] - rows["truth"]) / rows["truth"].abs())
    print("mean relative error:")
    print(err.pivot_table(index="policy", columns="estimator", values="rel", aggfunc="mean").round(3).to_string())
    s = summaries
    wrong = (s["promoted"] & (s["learned_truth"] < s["best_single_truth"])).sum()
    # right: the fallback is the better in truth of the two rules it chooses between (arms as the estimate picks)
    better = np.maximum(s["estimated_single_truth"], s["estimated_segment_truth"])
    fallback_right = (s["fallback_truth"] >= better - 1e-9).sum()
    deployed = np.where(s["promoted"], s["learned_truth"], s["settled_truth"])
    ratio = deployed / s["best_single_truth"]
    chosen = np.where(s["promoted"], s["learned_truth"], s["fallback_truth"]) / s["best_single_truth"]
    print(
        "without the rule in force (the evaluation's own fallback) / best single arm (truth): "
        + ", ".join(f"{r:.2f}" for r in chosen)
        + f"; mean {chosen.mean():.3f}"
    )
    print(f"promoted: {int(s['promoted'].sum())} of {n}; promoted below the best single arm in truth: {int(wrong)}")
    print(f"fallback the better in truth of the two rules it chose between: {int(fallback_right)} of {n}")
    print(
        "deployed policy / best single arm (truth): "
        + ", ".join(f"{r:.2f}" for r in ratio)
        + f"; >= 1.05 in {int((ratio >= 1.05).sum())} of {n}; mean {ratio.mean():.3f}"
    )
    print(
        f"deployed vs best arm per segment (truth), mean: {deployed.mean():,.0f} "
        f"vs {s['per_segment_truth'].mean():,.0f}"
    )


if __name__ == "__main__":
    main()
