"""The evaluation of a training or evaluate run as figures, a flat table of headline numbers (the
MLflow metrics) and one self-contained HTML report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from training import evaluation as ev
from training.diagnostics import qini_areas
from training.judge import Judged
from training.scorer import Scorer


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
        "policy values with intervals": e.values,
        "baselines' arms": pd.DataFrame(list(e.arms_of_baselines.items()), columns=["baseline", "arm"]),
        "learned policy's choices": e.choice_shares,
        **{f"learned policy minus the {b} as the estimate picks it, paired": g for b, g in e.gaps.items()},
        "support of each policy's estimate": e.support,
        f"ROI accuracy cells (against the {e.roi_accuracy_source})": e.roi_cells,
        "reliability of the confidence": e.reliability,
        "Qini areas per arm (KRW per candidate above random targeting)": qini_areas(e.uplift),
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
