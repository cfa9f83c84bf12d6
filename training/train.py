"""``rekindle train`` and ``rekindle evaluate``: fit, judge, log, register, promote.

Train fits the bootstrap ensemble with the tuned parameters (or the configured
defaults) on every campaign before the test slice, evaluates it on the test
slice (:mod:`training.evaluation`), logs parameters, metrics, plots and the
HTML report in one MLflow run, registers the scorer and makes it the
``challenger``. It becomes ``champion`` only when, on the same held-out rows,
its policy's doubly robust incremental net value beats both the best single arm
for everyone and the current champion's policy; otherwise the champion stays
and the reason is recorded on the version (tag ``promotion``).

The simulator's truth (``--truth``) is only ever reported, never used to
choose, fit or promote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, ModelParams
from training import evaluation as ev
from training.fit import FEATURE_SERVICE, Prepared, eval_data, fit_scorer, held_out, logging_propensity, prepare
from training.ope import bootstrap_weights
from training.policy import choose
from training.scorer import Scorer
from training.truth import ArmTruth, decision_truth

Say = Callable[[str], None]
PROMOTION_ESTIMATOR = "dr-hurdle"  # the doubly robust estimate with the lowest variance (docs/training.md)


@dataclass
class Judged:
    """A scorer evaluated on the held-out rows."""

    evaluation: ev.Evaluation
    rows: pd.DataFrame
    data: ev.EvalData
    scores: Any
    truth: ArmTruth | None
    budget: pd.DataFrame | None = None
    report: Path | None = None
    figures: dict[str, Path] = field(default_factory=dict)


@dataclass
class TrainResult:
    version: int
    run_id: str
    judged: Judged
    promoted: bool
    reason: str
    seconds: dict[str, float]
    params: ModelParams


def _quiet(msg: str) -> None:
    return None


def judge(
    prepared: Prepared, scorer: Scorer, *, truth_dir: Path | None = None, say: Say = _quiet, propensity=None
) -> Judged:
    """Score the test slice with ``scorer`` and evaluate its policy against the baselines (and the truth)."""
    cfg = prepared.cfg
    rows = held_out(prepared, "test")
    truth = None
    if truth_dir is not None:
        say(f"matching the simulator's truth in {truth_dir}")
        truth = decision_truth(truth_dir, rows, prepared.arms)
        if not truth.matched.all():  # only rows with a truth, so estimates and truth talk about the same rows
            rows = rows[truth.matched].reset_index(drop=True)
            truth = truth.subset(truth.matched)
    say(f"propensities of the logging policy ({len(prepared.split.fit):,} earlier rows)")
    propensity = propensity or logging_propensity(cfg, prepared.split.fit, prepared.arms)
    data = eval_data(cfg, rows, prepared.arms, propensity)
    say(f"scoring {len(rows):,} held-out decisions x {len(prepared.arms)} arms")
    scores = scorer.score(rows)
    judgement = scorer.judge(rows, scores, objective="net_value")
    say("evaluating (bootstrap intervals)")
    t = cfg.training
    evaluation = ev.evaluate(scores, judgement, data, truth=truth, n_boot=t.bootstrap, seed=t.seed, min_cell=t.min_cell)
    budget = None
    if truth is not None:
        true_net = truth.incremental_net(cfg.business.margin)
        true_re = truth.incremental_reengage()
        reference = {
            "best single arm (net value)": int(np.nanmean(true_net[:, 1:], axis=0).argmax()) + 1,
            "best single arm (re-engagement)": int(np.nanmean(true_re[:, 1:], axis=0).argmax()) + 1,
        }
        budget = ev.budget_check(scores, truth, cfg.business.margin, reference)
    return Judged(evaluation, rows, data, scores, truth, budget)


# ------------------------------------------------------------------ figures + report --
def feature_importance(scorer: Scorer) -> pd.DataFrame:
    member = scorer.ensemble.point
    out = []
    for head, booster in member.heads_.items():
        gain = booster.feature_importance(importance_type="gain")
        out.append(pd.DataFrame({"head": head, "feature": booster.feature_name(), "gain": gain}))
    return pd.concat(out, ignore_index=True)


def headline(j: Judged) -> dict[str, float]:
    """The figures the issue asks for, flat (also MLflow metrics)."""
    e = j.evaluation
    out: dict[str, float] = {}
    for policy, key in (
        (ev.LEARNED, "learned"),
        (ev.BEST_SINGLE, "best_single"),
        (ev.PER_SEGMENT, "per_segment"),
        (ev.RANDOM, "random"),
        (ev.HISTORICAL, "historical"),
        (ev.ORACLE, "oracle"),
    ):
        for est in ("dr", "dr-hurdle", "snips", "ips", "dm", "truth", "on-policy"):
            for q in ("net_value", "reengaged", "reward_cost", "roi"):
                v = e.value(policy, q, est)
                if not np.isnan(v):
                    out[f"{key}_{q}_{est.replace('-', '_')}"] = v
    out["roi_accuracy"] = e.roi_accuracy
    if "learned_net_value_truth" in out:
        best, oracle, pol = (
            out["best_single_net_value_truth"],
            out["oracle_net_value_truth"],
            out["learned_net_value_truth"],
        )
        out["headroom_captured"] = (pol - best) / (oracle - best) if oracle > best else float("nan")
        out["learned_over_best_single"] = pol / best if best else float("nan")
        for est in ("dr", "dr_hurdle"):
            out[f"{est}_relative_error"] = (out[f"learned_net_value_{est}"] - pol) / abs(pol) if pol else float("nan")
    if j.budget is not None and len(j.budget):
        b = j.budget.iloc[0]
        out["budget_reengage_ratio"] = float(b["ratio"])
        out["budget_policy_cost"] = float(b["policy_cost"])
        out["budget_arm_cost"] = float(b["arm_cost"])
    out |= e.extra
    return out


def write_report(
    cfg: Config, j: Judged, scorer: Scorer, out_dir: Path, *, title: str, summary: dict[str, Any]
) -> Judged:
    from training import plots, report

    os.environ.setdefault("MPLCONFIGDIR", str(cfg.path("cache", "matplotlib")))
    out_dir.mkdir(parents=True, exist_ok=True)
    e = j.evaluation
    values = e.values[e.values["quantity"] == "net_value"]
    figures = {
        "policy values (incremental net value per candidate)": plots.plot_policy_values(
            values, out_dir / "policy_values.png"
        ),
        "uplift curves per arm": plots.plot_uplift_curves(e.uplift, out_dir / "uplift_curves.png"),
        "calibration": plots.plot_calibration(e.calibration, out_dir / "calibration.png"),
        "predicted vs actual incremental net value by segment and arm": plots.plot_roi_cells(
            e.roi_cells, out_dir / "roi_cells.png", accuracy=e.roi_accuracy
        ),
        "reliability of the confidence": plots.plot_reliability(e.reliability, out_dir / "reliability.png"),
        "feature importance": plots.plot_feature_importance(
            feature_importance(scorer), out_dir / "feature_importance.png"
        ),
    }
    table = e.values.pivot_table(index=["policy", "estimator"], columns="quantity", values="estimate").reset_index()
    tables = {
        "policy values per candidate (incremental against no offer; ROI = net / cost)": table,
        "policy values with 95% intervals": e.values,
        "baselines' arms": pd.DataFrame(list(e.arms_of_baselines.items()), columns=["baseline", "arm"]),
        "learned policy's choices": e.choice_shares,
        f"learned policy minus the best single arm by the estimate ({e.estimated_best_single}), paired": (
            e.gaps if e.gaps is not None else pd.DataFrame()
        ),
        f"ROI accuracy cells (against the {e.roi_accuracy_source})": e.roi_cells,
        "reliability of the confidence": e.reliability,
        "Qini areas per arm (KRW per candidate above random targeting)": ev.qini_areas(e.uplift),
        "calibration bins": e.calibration,
    }
    if e.estimator_errors is not None:
        tables["off-policy estimates against the truth"] = e.estimator_errors
    if j.budget is not None:
        tables["re-engagement objective under the best single arm's budget (truth)"] = j.budget
    notes = [
        "Baselines' arms are chosen on the held-out rows themselves (by the truth when given, else by the doubly "
        "robust estimate), which favours the baselines.",
        "The truth is the simulator's exact expectation per decision and arm; "
        "it is never used to fit, tune or promote.",
        f"Intervals: {cfg.training.bootstrap} cluster-bootstrap resamples by player.",
    ]
    path = report.write_report(
        out_dir / "evaluation.html", title=title, summary=summary, tables=tables, figures=figures, notes=notes
    )
    j.report, j.figures = path, figures
    return j


# ------------------------------------------------------------------------ promotion --
def _verdict(gaps: pd.DataFrame) -> tuple[bool, str]:
    """A policy beats another when the low-variance estimate ("dr-hurdle") of the paired difference is
    positive and the plain doubly robust one, which does not lean on the judged model, does not find it
    worse (the upper end of its 95% interval is above zero)."""
    by: dict[str, dict[str, Any]] = {
        str(r["estimator"]): {str(k): v for k, v in r.items()} for r in gaps.to_dict("records")
    }
    main, plain = by[PROMOTION_ESTIMATOR], by["dr"]
    ok = bool(main["estimate"] > 0 and plain["high"] > 0)

    def fmt(r: dict[str, Any]) -> str:
        return f"{r['estimate']:+,.0f} [{r['low']:+,.0f}, {r['high']:+,.0f}]"

    return ok, f"difference {fmt(main)} KRW per candidate ({PROMOTION_ESTIMATOR}), {fmt(plain)} (plain DR)"


def _gap_figures(gaps: pd.DataFrame, prefix: str) -> dict[str, float]:
    pairs = zip(gaps["estimator"], gaps["estimate"], strict=True)
    return {f"{prefix}_{str(e).replace('-', '_')}": float(v) for e, v in pairs}


def promotion_decision(
    prepared: Prepared, j: Judged, champion: Scorer | None, champion_version: int | None
) -> tuple[bool, str, dict[str, float]]:
    """Whether the new model's policy may become champion, and why (estimates only, never the truth: the
    best single arm it must beat is the one the doubly robust estimate picks)."""
    e = j.evaluation
    assert e.gaps is not None
    arm = e.estimated_best_single
    ok, text = _verdict(e.gaps)
    figures = _gap_figures(e.gaps, "gap_best_single")
    if not ok:
        return False, f"not promoted: does not beat the best single arm {arm} ({text}); fall back to {arm}", figures
    if champion is None:
        return True, f"promoted: first champion; beats the best single arm {arm} ({text})", figures
    if list(champion.arms["arm"]) != list(prepared.arms["arm"]):
        return (
            False,
            "not promoted: the champion's arms differ from the new model's; compare them with `rekindle evaluate`",
            figures,
        )
    try:
        scores = champion.score(j.rows)
    except Exception as exc:  # a champion pickled by older code, or trained on other features
        return False, f"not promoted: the champion v{champion_version} cannot score these rows ({exc!r})", figures
    t = prepared.cfg.training
    w = bootstrap_weights(j.data.logged.cluster, t.bootstrap, t.seed)
    mine, theirs = choose(j.scores.inc_net, j.scores.cost).arm, choose(scores.inc_net, scores.cost).arm
    gaps = ev.policy_gaps(j.scores, j.data, mine, theirs, w)  # one outcome model (the new one's) for both
    figures |= _gap_figures(gaps, "gap_champion")
    ok, text = _verdict(gaps)
    verdict = "promoted: beats" if ok else "not promoted: does not beat"
    return ok, f"{verdict} champion v{champion_version} on the same held-out rows ({text})", figures


# ------------------------------------------------------------------------------ train --
def run_train(
    cfg: Config,
    *,
    params: ModelParams | None = None,
    params_source: str = "config",
    truth_dir: Path | None = None,
    say: Say = _quiet,
    on_member: Callable[[int], None] | None = None,
) -> TrainResult:
    import mlflow

    from training import registry

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    say("loading the training set")
    prepared = prepare(cfg)
    params = params or cfg.training.model
    split = prepared.split
    seconds["load"] = time.perf_counter() - t0
    with registry.tracking(cfg):
        run = mlflow.start_run(run_name=f"train {datetime.now(UTC):%Y-%m-%d %H:%M}")
        try:
            t = time.perf_counter()
            say(f"fitting {cfg.training.ensemble} bootstrap members on {len(split.fit):,} rows")
            scorer = fit_scorer(
                cfg, split.fit, prepared.arms, params, members=cfg.training.ensemble, on_member=on_member
            )
            seconds["fit"] = time.perf_counter() - t
            t = time.perf_counter()
            j = judge(prepared, scorer, truth_dir=truth_dir, say=say)
            seconds["evaluate"] = time.perf_counter() - t
            figures = headline(j)
            summary = {
                "model": cfg.training.model_name,
                "feature service": FEATURE_SERVICE,
                "parameters from": params_source,
                **split.describe(),
                **{k: v for k, v in figures.items() if not k.startswith(("random_", "historical_"))},
            }
            out_dir = cfg.path("reports", f"train-{run.info.run_id[:8]}")
            write_report(cfg, j, scorer, out_dir, title="Rekindle: training run evaluation", summary=summary)
            mlflow.set_tags(
                {
                    "kind": "train",
                    "feature_service": FEATURE_SERVICE,
                    "data_from": str(split.first),
                    "data_to": str(split.last),
                    "test_from": str(split.test_start),
                    "params_from": params_source,
                    "truth": str(truth_dir) if truth_dir else "none",
                }
            )
            mlflow.log_params(
                {
                    **params.model_dump(),
                    "ensemble": cfg.training.ensemble,
                    "arms": len(prepared.arms),
                    **split.describe(),
                }
            )
            mlflow.log_metrics({k: float(v) for k, v in figures.items() if np.isfinite(v)})
            mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
            _log_tables(j, out_dir)
            uri = registry.log_scorer(scorer, j.rows)
            name = cfg.training.model_name
            version = registry.register(uri, name, tags={"run_id": run.info.run_id})
            registry.set_alias(name, registry.CHALLENGER, version)
            champ_version = registry.alias_version(name, registry.CHAMPION)
            champion = registry.load_scorer(registry.model_uri(name, registry.CHAMPION)) if champ_version else None
            promoted, reason, figs = promotion_decision(prepared, j, champion, champ_version)
            if promoted:
                registry.set_alias(name, registry.CHAMPION, version)
            registry.version_tags(name, version, {"promotion": reason})
            mlflow.set_tag("promotion", reason)
            mlflow.log_metrics({f"promotion_{k}": v for k, v in figs.items() if np.isfinite(v)})
        finally:
            mlflow.end_run()
    seconds["total"] = time.perf_counter() - t0
    return TrainResult(version, run.info.run_id, j, promoted, reason, seconds, params)


def _log_tables(j: Judged, out_dir: Path) -> None:
    import mlflow

    e = j.evaluation
    for name, frame in {
        "policy_values": e.values,
        "roi_cells": e.roi_cells,
        "reliability": e.reliability,
        "estimator_errors": e.estimator_errors,
        "budget_check": j.budget,
    }.items():
        if frame is not None:
            path = out_dir / f"{name}.csv"
            frame.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="evaluation")


# --------------------------------------------------------------------------- evaluate --
@dataclass
class EvaluateResult:
    uri: str
    judged: Judged
    figures: dict[str, float]
    run_id: str


def run_evaluate(cfg: Config, *, model: str | None, truth_dir: Path | None, say: Say = _quiet) -> EvaluateResult:
    """Evaluate a registered model on this home's held-out slice; logs an evaluation run with the report."""
    import mlflow

    from training import registry

    prepared = prepare(cfg)
    with registry.tracking(cfg):
        uri = registry.model_uri(cfg.training.model_name, model or registry.CHALLENGER)
        say(f"loading {uri}")
        scorer = registry.load_scorer(uri)
        if list(scorer.arms["arm"]) != list(prepared.arms["arm"]):
            prepared.arms = scorer.arms  # judge the model on its own arms
        j = judge(prepared, scorer, truth_dir=truth_dir, say=say)
        figures = headline(j)
        with mlflow.start_run(run_name=f"evaluate {uri}") as run:
            out_dir = cfg.path("reports", f"evaluate-{run.info.run_id[:8]}")
            summary = {"model": uri, **prepared.split.describe(), **figures}
            write_report(cfg, j, scorer, out_dir, title=f"Rekindle: evaluation of {uri}", summary=summary)
            mlflow.set_tags({"kind": "evaluate", "model": uri, "truth": str(truth_dir) if truth_dir else "none"})
            mlflow.log_metrics({k: float(v) for k, v in figures.items() if np.isfinite(v)})
            mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
            _log_tables(j, out_dir)
    return EvaluateResult(uri, j, figures, run.info.run_id)
