"""The evaluation of a training or evaluate run as figures, a flat table of headline numbers (the
MLflow metrics) and one self-contained HTML report.

The report reads top down as a data scientist decides: the verdict (promoted or not, against what, by how
much, with its interval and what that interval does not cover), one table of the policies by estimators with
intervals (and the truth where known), the warnings about thin evidence, the plots, the detail tables, and
last every metric of the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from training import evaluation as ev
from training.baselines import rule_arms
from training.diagnostics import qini_areas
from training.judge import Judged
from training.promotion import Promotion, describe_rule
from training.report import Verdict
from training.scorer import Scorer

TABLE_POLICIES = (ev.LEARNED, ev.BEST_SINGLE, ev.PER_SEGMENT, ev.RANDOM, ev.HISTORICAL, ev.ORACLE)
TABLE_ESTIMATORS = ("truth", "dr-sized", "dr-hurdle", "dr", "snips", "dm", "model", "on-policy")  # ips: details
UNCORRECTED_WARNING = 0.5  # warn when more of a policy's matched weight than this is past the weight cap


def feature_importance(scorer: Scorer) -> pd.DataFrame:
    out = []
    for head, booster in scorer.model.point.boosters.items():
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
        for est in ("dr", "dr-hurdle", "dr-sized", "snips", "ips", "dm", "truth", "on-policy"):
            for q in ("net_value", "reengaged", "reward_cost", "roi"):
                v = e.value(policy, q, est)
                if not np.isnan(v):
                    out[f"{key}_{q}_{est.replace('-', '_')}"] = v
    out["roi_accuracy"] = e.roi_accuracy
    out["logged_propensity_rows"] = float(j.data.logged.is_known.mean()) if len(j.data.segment) else 0.0
    out["fixed_rule_rows_left_out"] = float(j.fixed_rows)
    for r in e.support.to_dict("records"):  # the share of each estimate's correction on logged propensities
        name = {ev.LEARNED: "learned", ev.BEST_SINGLE: "best_single", ev.PER_SEGMENT: "per_segment"}.get(r["policy"])
        if name:
            out[f"{name}_logged_share"] = float(r["logged"])
    if "learned_net_value_truth" in out:
        best, oracle, pol = (
            out["best_single_net_value_truth"],
            out["oracle_net_value_truth"],
            out["learned_net_value_truth"],
        )
        out["headroom_captured"] = (pol - best) / (oracle - best) if oracle > best else float("nan")
        out["learned_over_best_single"] = pol / best if best else float("nan")
        for est in ("dr", "dr_hurdle", "dr_sized"):
            out[f"{est}_relative_error"] = (out[f"learned_net_value_{est}"] - pol) / abs(pol) if pol else float("nan")
    if j.budget is not None and len(j.budget):
        b = j.budget.iloc[0]
        out["budget_reengage_ratio"] = float(b["ratio"])
        out["budget_policy_cost"] = float(b["policy_cost"])
        out["budget_arm_cost"] = float(b["arm_cost"])
    out |= e.extra
    return out


def _interval(estimate: Any, low: Any, high: Any, *, signed: bool = False) -> str:
    """``818 [700, 903]`` (with ``signed``, ``+85 [-12, +160]``); NaN bounds are left out."""
    estimate, low, high = float(estimate), float(low), float(high)
    f = "{:+,.0f}" if signed else "{:,.0f}"
    if np.isnan(estimate):
        return "\u2014"
    if np.isnan(low) or np.isnan(high):
        return f.format(estimate)
    return f"{f.format(estimate)} [{f.format(low)}, {f.format(high)}]"


def policy_table(j: Judged) -> pd.DataFrame:
    """Policies by estimators: incremental net value per candidate with its interval (one text cell each),
    the truth where known, and how much of each estimate rests on evidence (:func:`ev.support_table`)."""
    e = j.evaluation
    v = e.values[(e.values["quantity"] == "net_value") & e.values["policy"].isin(TABLE_POLICIES)]
    estimators = [x for x in TABLE_ESTIMATORS if x in set(v["estimator"])]
    cells = v.assign(cell=[_interval(a, b, c) for a, b, c in zip(v["estimate"], v["low"], v["high"], strict=True)])
    table = cells.pivot_table(index="policy", columns="estimator", values="cell", aggfunc="first")
    table = table.reindex(index=[p for p in TABLE_POLICIES if p in table.index], columns=estimators)
    support = e.support.set_index("policy")
    table["effective rows"] = support["ess"].reindex(table.index).round(0)
    table["uncorrected"] = (
        support["uncorrected"].reindex(table.index).map(lambda x: f"{x:.0%}" if pd.notna(x) else None)
    )
    table["logged e"] = support["logged"].reindex(table.index).map(lambda x: f"{x:.0%}" if pd.notna(x) else None)
    table["reliable"] = (
        support["reliable"].reindex(table.index).map(lambda x: ("yes" if x else "NO") if pd.notna(x) else None)
    )
    names = {ev.BEST_SINGLE: f"{ev.BEST_SINGLE} ({e.arms_of_baselines.get(ev.BEST_SINGLE, '?')})"}
    return table.rename(index=names).rename_axis(columns=None).reset_index()


def warnings(j: Judged) -> list[str]:
    """What a reader must know before trusting the estimates: thin support, uncorrected rows, unsupported arms,
    an outcome model that is the judged one."""
    e = j.evaluation
    out = []
    if not e.outcome_model.startswith("cross-fitted"):
        out.append(
            f"The doubly robust estimates use {e.outcome_model}: its errors favour its own policy, so the learned "
            "policy's advantage is likely overstated."
        )
    cap = j.data.max_weight
    for r in e.support.to_dict("records"):
        name = str(r["policy"])
        if name == ev.NO_OFFER:
            continue
        if float(r["unsupported"]) > 0:
            out.append(
                f"{float(r['unsupported']):.0%} of the {name}'s choices are arms without support in the logs: no "
                "estimator can check them; its estimate is marked unreliable."
            )
        if float(r["ess"]) < ev.MIN_ESS:
            out.append(
                f"The {name}'s estimate rests on {float(r['ess']):,.0f} effective rows (fewer than {ev.MIN_ESS:,.0f}):"
                " marked unreliable."
            )
        if float(r["uncorrected"]) > UNCORRECTED_WARNING and np.isfinite(cap):
            out.append(
                f"{float(r['uncorrected']):.0%} of the {name}'s matched weight is on rows whose weight 1/e exceeds "
                f"{cap:,.0f}: there dr-sized and dr-hurdle take the outcome model's word for the re-engagement; the "
                "plain DR column corrects every row (and its interval is wider)."
            )
    return out


def evidence_line(j: Judged) -> str:
    """How much of the evidence has a known propensity (Rekindle's own decisions) rather than an estimated one."""
    known = j.data.logged.is_known & j.data.fresh
    n = int(j.data.fresh.sum())
    if not known.any():
        return (
            f"None of the {n:,} held-out rows is a decision Rekindle logged: every correction rests on propensities "
            "estimated from the marketers' history, and a bias there is not in the intervals."
        )
    s = j.evaluation.support.set_index("policy")["logged"]
    shares = ", ".join(f"{p} {s[p]:.0%}" for p in (ev.LEARNED, ev.BEST_SINGLE, ev.PER_SEGMENT) if p in s.index)
    fixed = (
        f" ({j.fixed_rows:,} rows of experiment variants that send by a fixed rule are left out: they had no chance"
        " of another arm, and the variants are drawn at random)"
        if j.fixed_rows
        else ""
    )
    return (
        f"{int(known.sum()):,} of the {n:,} held-out rows ({known.sum() / max(n, 1):.0%}) are Rekindle's decisions, "
        f"weighted by the propensity logged with them (exact: the random variant and the exploration){fixed}; the "
        f"share of each estimate's correction resting on them: {shares}."
    )


def verdict(j: Judged, promotion: Promotion | None, level: float) -> Verdict:
    """The opening of the report: the decision (or, for an evaluation, the comparison), the paired differences
    against both baselines with their intervals, what those intervals do not cover, and the truth when known."""
    e = j.evaluation
    fallback = describe_rule(e.fallback, e.estimated_baselines.get(e.fallback, {}))
    short = {ev.BEST_SINGLE: fallback, ev.PER_SEGMENT: f"the {ev.PER_SEGMENT} (the rule below)"}
    if promotion is not None and promotion.kept_rule:  # the rule in force, kept over the evaluation's choice
        kind = ev.BEST_SINGLE if set(promotion.kept_rule) == {"all"} else ev.PER_SEGMENT
        fallback = describe_rule(kind, promotion.kept_rule)
        short = {e.fallback: f"{fallback}, the rule in force"}
    if promotion is None:
        headline_ = "Evaluation of the learned policy against the baselines (no promotion decided here)"
        passed = None
    elif promotion.promoted:
        headline_ = "Promoted: the learned policy beats the best single arm and the best arm per segment"
        passed = True
    else:
        headline_ = f"Not promoted: fall back to {short.get(e.fallback, fallback)}"
        passed = False
    lines = []
    for baseline, gaps in e.gaps.items():
        arms = e.estimated_baselines.get(baseline, {})
        rule = describe_rule(baseline, arms) if set(arms) == {"all"} else f"the {baseline} as the estimate picks it"
        parts = [
            f"{_interval(r['estimate'], r['low'], r['high'], signed=True)} ({r['estimator']})"
            for r in gaps.to_dict("records")
            if r["estimator"] in ("dr-hurdle", "dr-sized", "dr")
        ]
        lines.append(
            f"Learned policy minus {rule}: " + ", ".join(parts) + f" KRW per candidate ({level:.0%} intervals)."
        )
    if promotion is not None:
        lines.append(f"Decision: {promotion.reason}.")
    if promotion is None or promotion.promoted:  # a refusal names the fallback itself
        lines.append(f"Fallback when no model is trusted: {fallback}.")
    learned = e.support[e.support["policy"] == ev.LEARNED].to_dict("records")
    if learned:
        uncorrected, unsupported = float(learned[0]["uncorrected"]), float(learned[0]["unsupported"])
        lines.append(
            f"The intervals cover the sampling noise of these held-out players only. They do not cover: the outcome "
            f"model's error on the {uncorrected:.0%} of the learned policy's matched weight past the weight cap, "
            f"arms without support ({unsupported:.0%} of its choices), or a world that changes after these campaigns."
        )
    lines.append(evidence_line(j))
    truth = {p: e.value(p, "net_value", "truth") for p in (ev.LEARNED, ev.BEST_SINGLE, ev.PER_SEGMENT)}
    if not np.isnan(truth[ev.LEARNED]):
        fb = f"; the fallback {e.fallback_truth:,.0f}" if e.fallback_truth is not None else ""
        if promotion is not None and promotion.kept_rule and j.truth is not None:  # the rule in force, kept
            names = list(j.scores.arms["arm"])
            kept = rule_arms(promotion.kept_rule, j.data.segment, names)
            true_inc = j.truth.incremental_net(j.data.margin)
            value = float(np.nanmean(true_inc[np.arange(len(kept)), kept][j.data.fresh]))
            fb = f"; the fallback (the rule in force) {value:,.0f}"
        lines.append(
            f"Simulator's truth: learned policy {truth[ev.LEARNED]:,.0f}, best single arm {truth[ev.BEST_SINGLE]:,.0f} "
            f"({truth[ev.LEARNED] / truth[ev.BEST_SINGLE]:.2f}x), best arm per segment {truth[ev.PER_SEGMENT]:,.0f}"
            f"{fb} KRW per candidate."
        )
    return Verdict(headline_, passed, tuple(lines))


def write_report(
    cfg: Config,
    j: Judged,
    scorer: Scorer,
    out_dir: Path,
    *,
    title: str,
    summary: dict[str, Any],
    promotion: Promotion | None = None,
) -> Judged:
    from training import plots, report

    os.environ.setdefault("MPLCONFIGDIR", str(cfg.path("cache", "matplotlib")))
    out_dir.mkdir(parents=True, exist_ok=True)
    e = j.evaluation
    values = e.values[e.values["quantity"] == "net_value"]
    figures = {
        "policy values (incremental net value per candidate)": plots.plot_policy_values(
            values, out_dir / "policy_values.png", level=cfg.training.interval
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
    level = cfg.training.interval
    tables = {
        f"incremental net value per candidate (KRW) by policy and estimator, {level:.0%} intervals": policy_table(j),
    }
    details = {
        "every quantity by policy and estimator (incremental against no offer; ROI = net / cost)": table,
        "policy values with intervals": e.values,
        "baselines' arms (chosen on the held-out rows)": pd.DataFrame(
            list(e.arms_of_baselines.items()), columns=["baseline", "arm"]
        ),
        "learned policy's choices": e.choice_shares,
        **{f"learned policy minus the {b} as the estimate picks it, paired": g for b, g in e.gaps.items()},
        "support of each policy's estimate": e.support,
        f"ROI accuracy cells (against the {e.roi_accuracy_source})": e.roi_cells,
        "reliability of the confidence": e.reliability,
        "Qini areas per arm (KRW per candidate above random targeting)": qini_areas(e.uplift),
        "calibration bins": e.calibration,
    }
    if e.estimator_errors is not None:
        details["off-policy estimates against the truth"] = e.estimator_errors
    if j.budget is not None:
        details["re-engagement objective under the best single arm's budget (truth)"] = j.budget
    notes = [
        "Baselines' arms are chosen on the held-out rows themselves (by the truth when given, else by the doubly "
        "robust estimate), which favours the baselines.",
        "The truth is the simulator's exact expectation per decision and arm; "
        "it is never used to fit, tune or promote.",
        f"Intervals: {level:.0%} of {cfg.training.bootstrap} cluster-bootstrap resamples by player.",
        f"Outcome model of the doubly robust estimates: {e.outcome_model}.",
    ]
    path = report.write_report(
        out_dir / "evaluation.html",
        title=title,
        summary=summary,
        tables=tables,
        figures=figures,
        notes=notes,
        verdict=verdict(j, promotion, level),
        warnings=warnings(j),
        details=details,
    )
    j.report, j.figures = path, figures
    return j
