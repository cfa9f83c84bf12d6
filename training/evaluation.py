"""Honest evaluation of a scorer on a held-out time slice.

Everything here is computed from arrays; nothing is read or written. For the
learned policy and the baselines (no offer, random arm, best single arm for
everyone, best arm per segment, the historical logged policy):

- off-policy estimates from the logs (IPS, SNIPS, doubly robust) of the
  incremental re-engagements, incremental net value, reward cost and ROI per
  candidate, with cluster-bootstrap intervals (:mod:`training.ope`);
- with the simulator's truth: the same quantities exactly, the oracle's value,
  and each estimate's error against the truth;
- ROI accuracy per (segment, arm) cell: 1 - weighted absolute percentage error
  of the predicted incremental net value against the true one (without truth,
  against the doubly robust estimate of the cell);
- a reliability table of the recommendations' confidence;
- uplift curves per arm, calibration bins and the data of the plots.

The baselines' arms are chosen on the same held-out rows (by their doubly
robust value, or by the truth when it is given), which favours the baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.ope import ESTIMATORS, LoggedData, bootstrap_weights, row_terms
from training.policy import choose, one_hot, uniform_offer
from training.scorer import Judgement, Scores
from training.truth import ArmTruth

OUTCOMES = ("reengaged", "net_value", "reward_cost")
LEARNED = "learned policy"
NO_OFFER = "no offer"
RANDOM = "random arm"
BEST_SINGLE = "best single arm"
PER_SEGMENT = "best arm per segment"
HISTORICAL = "historical (logged)"
ORACLE = "oracle"


@dataclass
class EvalData:
    """The held-out rows as arrays."""

    logged: LoggedData
    y: dict[str, np.ndarray]  # realised outcome per row: reengaged, net_value, reward_cost
    segment: np.ndarray
    margin: float
    max_weight: float = np.inf  # SWITCH-DR threshold of the "dr-hurdle" estimator


@dataclass
class Evaluation:
    values: pd.DataFrame  # policy x quantity x estimator: estimate, low, high
    arms_of_baselines: dict[str, str]
    roi_cells: pd.DataFrame
    roi_accuracy: float
    roi_accuracy_source: str
    reliability: pd.DataFrame
    uplift: pd.DataFrame
    calibration: pd.DataFrame
    choice_shares: pd.DataFrame
    estimator_errors: pd.DataFrame | None = None
    extra: dict[str, float] = field(default_factory=dict)
    # the learned policy minus the best single arm chosen by the estimate (never by the truth): promotion's test
    gaps: pd.DataFrame | None = None
    estimated_best_single: str = ""

    def value(self, policy: str, quantity: str, estimator: str) -> float:
        v = self.values
        hit = v[(v["policy"] == policy) & (v["quantity"] == quantity) & (v["estimator"] == estimator)]
        return float(hit["estimate"].iloc[0]) if len(hit) else float("nan")


def outcome_models(scores: Scores, margin: float) -> dict[str, np.ndarray]:
    """The direct-method outcome per arm (rows x arms) for each outcome."""
    mean = scores.point
    return {
        "reengaged": mean.p_reengage,
        "net_value": margin * mean.deposits - mean.cost,
        "reward_cost": mean.cost,
    }


def _summary(draws: np.ndarray) -> tuple[float, float, float]:
    """The estimate and its 95% bootstrap interval (NaN when undefined, e.g. the ROI of spending nothing)."""
    if len(draws) > 1 and not np.isnan(draws[1:]).all():
        return float(draws[0]), float(np.nanquantile(draws[1:], 0.025)), float(np.nanquantile(draws[1:], 0.975))
    return float(draws[0]), np.nan, np.nan


def _draws(w: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return (w @ num) / np.maximum(w @ den, 1e-12)


def _rows(policy: str, quantity: str, estimator: str, draws: np.ndarray) -> dict[str, object]:
    est, low, high = _summary(draws)
    return {"policy": policy, "quantity": quantity, "estimator": estimator, "estimate": est, "low": low, "high": high}


def hurdle_outcome(scores: Scores, data: EvalData) -> np.ndarray:
    """The realised net value with each returner's deposits replaced by the model's expected deposits of a
    returner given the logged arm: ``margin x re-engaged x E[deposits | re-engaged, x, A] - reward cost``.

    It has the same expectation as the realised net value wherever the deposit-size model is right, and
    far less variance (7-day deposits are heavy-tailed): the doubly robust estimator on it ("dr-hurdle")
    stays robust to errors of the re-engagement and cost models, and relies on the deposit-size model.
    """
    rows = np.arange(len(data.segment))
    ok, col = data.logged.in_table, data.logged.column
    p = scores.point.p_reengage[rows, col]
    size = np.divide(scores.point.deposits[rows, col], p, out=np.zeros(len(p)), where=p > 0)
    hurdle = data.margin * data.y["reengaged"] * size - data.y["reward_cost"]
    return np.where(ok, hurdle, data.y["net_value"])


def estimated_values(
    data: EvalData,
    mu: dict[str, np.ndarray],
    policies: dict[str, np.ndarray],
    w: np.ndarray,
    y_hurdle: np.ndarray | None = None,
) -> pd.DataFrame:
    """Off-policy incremental values (against no offer) and ROI of every policy, every estimator
    (with ``y_hurdle``, also the doubly robust estimate on it: :func:`hurdle_outcome`)."""
    out = []
    k = mu["net_value"].shape[1]
    none = one_hot(np.zeros(len(data.segment), int), k)
    estimators = (*ESTIMATORS, "dm") + (("dr-hurdle",) if y_hurdle is not None else ())

    def terms_of(q: str, target: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        terms = row_terms(data.logged, data.y[q], mu[q], target)
        if y_hurdle is not None:
            y = y_hurdle if q == "net_value" else data.y[q]
            terms["dr-hurdle"] = row_terms(data.logged, y, mu[q], target, max_weight=data.max_weight)["dr-switch"]
        return terms

    base = {q: terms_of(q, none) for q in OUTCOMES}
    for name, target in policies.items():
        draws_by = {}
        for q in OUTCOMES:
            terms = terms_of(q, target)
            for est in estimators:
                num, den = terms[est]
                d = _draws(w, num, den)
                if q != "reward_cost":  # incremental against no offer (no offer costs nothing)
                    bnum, bden = base[q][est]
                    d = d - _draws(w, bnum, bden)
                draws_by[(q, est)] = d
                out.append(_rows(name, q, est, d))
        for est in estimators:
            cost = draws_by[("reward_cost", est)]
            roi = np.divide(draws_by[("net_value", est)], cost, out=np.full_like(cost, np.nan), where=cost > 0)
            out.append(_rows(name, "roi", est, roi))
    # the logged policy is on-policy: its value is the mean realised outcome
    for q in OUTCOMES:
        d = _draws(w, data.y[q], np.ones(len(data.y[q])))
        if q != "reward_cost":
            d = d - _draws(w, *base[q]["dr"])
        out.append(_rows(HISTORICAL, q, "on-policy", d))
    return pd.DataFrame(out)


GAP_ESTIMATORS = ("dr-hurdle", "dr", "snips")


def policy_gaps(scores: Scores, data: EvalData, mine: np.ndarray, other: np.ndarray, w: np.ndarray) -> pd.DataFrame:
    """Paired difference of incremental net value per candidate, policy ``mine`` minus policy ``other``
    (an arm column per row each), by each of ``GAP_ESTIMATORS`` on the same bootstrap resamples ``w``:
    estimate and 95% interval. The plain doubly robust and SNIPS differences do not lean on the judged
    model's deposit sizes or on its answers where the logs hold no evidence, as "dr-hurdle" does."""
    k = scores.inc_net.shape[1]
    mu = outcome_models(scores, data.margin)["net_value"]
    hurdle = hurdle_outcome(scores, data)
    out = []
    for est in GAP_ESTIMATORS:
        y = hurdle if est == "dr-hurdle" else data.y["net_value"]
        cap = data.max_weight if est == "dr-hurdle" else np.inf
        kind = "dr-switch" if est == "dr-hurdle" else est
        a = row_terms(data.logged, y, mu, one_hot(mine, k), max_weight=cap)[kind]
        b = row_terms(data.logged, y, mu, one_hot(other, k), max_weight=cap)[kind]
        draws = _draws(w, *a) - _draws(w, *b)
        est_, low, high = _summary(draws)
        out.append({"estimator": est, "estimate": est_, "low": low, "high": high})
    return pd.DataFrame(out)


def true_values(truth: ArmTruth, margin: float, policies: dict[str, np.ndarray], w: np.ndarray) -> pd.DataFrame:
    out = []
    n = w.sum(axis=1)
    quantities = {
        "reengaged": truth.incremental_reengage(),
        "net_value": truth.incremental_net(margin),
        "reward_cost": truth.cost,
    }
    for name, target in policies.items():
        per = {q: w @ np.nansum(target * v, axis=1) / n for q, v in quantities.items()}
        for q, d in per.items():
            out.append(_rows(name, q, "truth", d))
        cost = per["reward_cost"]
        out.append(
            _rows(
                name, "roi", "truth", np.divide(per["net_value"], cost, out=np.full_like(cost, np.nan), where=cost > 0)
            )
        )
    return pd.DataFrame(out)


def dr_pseudo_outcomes(data: EvalData, mu: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row and arm, the doubly robust score ``mu(x, a) + 1{A = a} / e(A | x) (y - mu(x, A))``."""
    rows = np.arange(len(y))
    ok, col = data.logged.in_table, data.logged.column
    resid = np.where(ok, (y - mu[rows, col]) / data.logged.propensity, 0.0)
    out = mu.copy()
    out[rows[ok], col[ok]] += resid[ok]
    return out


def roi_cells(
    pred_inc: np.ndarray, actual_inc: np.ndarray, segment: np.ndarray, arms: pd.DataFrame, min_cell: int
) -> tuple[pd.DataFrame, float]:
    """Per (segment, arm) with at least ``min_cell`` rows: predicted and actual mean incremental net value,
    and ``1 - sum n |pred - actual| / sum n |actual|``."""
    frame = pd.DataFrame({"segment": segment})
    rows = []
    for s, idx in frame.groupby("segment").indices.items():
        if len(idx) < min_cell:
            continue
        for j in range(1, len(arms)):
            a = actual_inc[idx, j]
            if np.isnan(a).all():
                continue
            rows.append(
                {
                    "segment": s,
                    "arm": arms["arm"].iloc[j],
                    "n": len(idx),
                    "predicted": float(np.nanmean(pred_inc[idx, j])),
                    "actual": float(np.nanmean(a)),
                }
            )
    cells = pd.DataFrame(rows, columns=["segment", "arm", "n", "predicted", "actual"])
    if cells.empty:
        return cells, float("nan")
    err = (cells["n"] * (cells["predicted"] - cells["actual"]).abs()).sum()
    scale = (cells["n"] * cells["actual"].abs()).sum()
    return cells, float(1 - err / scale) if scale > 0 else float("nan")


def reliability(conf: np.ndarray, right: np.ndarray, edges=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)) -> pd.DataFrame:
    """Per confidence bin: rows, mean confidence, share of recommendations that were right."""
    e = np.asarray(edges)
    b = np.clip(np.searchsorted(e, conf, side="right") - 1, 0, len(e) - 2)
    out = []
    for i in range(len(e) - 1):
        m = b == i
        out.append(
            {
                "bin_low": e[i],
                "bin_high": e[i + 1],
                "n": int(m.sum()),
                "mean_confidence": float(conf[m].mean()) if m.any() else np.nan,
                "share_right": float(np.nanmean(right[m])) if m.any() else np.nan,
            }
        )
    return pd.DataFrame(out)


def uplift_curves(
    pred_inc: np.ndarray, actual: dict[str, np.ndarray], arms: pd.DataFrame, points: int = 50
) -> pd.DataFrame:
    """Per arm: the cumulative actual incremental net value per candidate when the top fraction of rows by
    the predicted gain get the arm (``actual``: source name -> rows x arms), and the random line."""
    n = len(pred_inc)
    cut = np.unique(np.linspace(0, n, points + 1).astype(int))
    out = []
    for j in range(1, len(arms)):
        order = np.argsort(-pred_inc[:, j], kind="stable")
        for source, act in actual.items():
            col = np.nan_to_num(act[order, j])
            cum = np.concatenate([[0.0], np.cumsum(col)])[cut] / n
            total = cum[-1]
            out.append(
                pd.DataFrame(
                    {
                        "arm": arms["arm"].iloc[j],
                        "source": source,
                        "fraction": cut / n,
                        "cumulative_gain": cum,
                        "random": cut / n * total,
                    }
                )
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def qini_areas(curves: pd.DataFrame) -> pd.DataFrame:
    """Area between each uplift curve and its random line (KRW per candidate; > 0: better than random)."""
    if curves.empty:
        return pd.DataFrame(columns=["arm", "source", "qini_area"])

    def area(g: pd.DataFrame) -> float:
        return float(np.trapezoid(g["cumulative_gain"] - g["random"], g["fraction"]))

    return (
        curves.groupby(["arm", "source"], sort=False)[["fraction", "cumulative_gain", "random"]]
        .apply(area)
        .rename("qini_area")
        .reset_index()
    )


def calibration_bins(pred: np.ndarray, realised: np.ndarray, quantity: str, bins: int = 10) -> pd.DataFrame:
    """Quantile bins of a prediction with the mean realised outcome in each."""
    order = np.argsort(pred, kind="stable")
    parts = np.array_split(order, bins)
    return pd.DataFrame(
        [
            {
                "quantity": quantity,
                "predicted": float(pred[p].mean()),
                "realised": float(realised[p].mean()),
                "n": len(p),
            }
            for p in parts
            if len(p)
        ]
    )


def evaluate(
    scores: Scores,
    judgement: Judgement,
    data: EvalData,
    *,
    truth: ArmTruth | None = None,
    n_boot: int = 200,
    seed: int = 0,
    min_cell: int = 300,
) -> Evaluation:
    """Evaluate the learned policy (``judgement``: its choices and their confidence) and the baselines."""
    arms = scores.arms
    n, k = scores.inc_net.shape
    mu = outcome_models(scores, data.margin)
    w = bootstrap_weights(data.logged.cluster, n_boot, seed)
    pick = judgement.choice
    learned = one_hot(pick.arm, k)
    dr_net = dr_pseudo_outcomes(data, mu["net_value"], hurdle_outcome(scores, data))
    dr_inc = dr_net - dr_net[:, [0]]
    true_inc = truth.incremental_net(data.margin) if truth is not None else None

    def best_single(value: np.ndarray) -> int:
        return int(np.nanmean(value[:, 1:], axis=0).argmax()) + 1

    judge = true_inc if true_inc is not None else dr_inc
    single = best_single(judge)
    single_by_estimate = best_single(dr_inc)
    gaps = policy_gaps(scores, data, pick.arm, np.full(n, single_by_estimate), w)
    seg_best: dict[object, int] = {}
    for s, idx in pd.Series(data.segment).groupby(data.segment).indices.items():
        j = best_single(judge[idx])
        seg_best[s] = j if np.nanmean(judge[idx, j]) > 0 else 0  # a segment whose best arm loses money: no offer
    seg_arm = pd.Series(data.segment).map(seg_best).to_numpy(int)
    policies = {
        LEARNED: learned,
        NO_OFFER: one_hot(np.zeros(n, int), k),
        RANDOM: uniform_offer(n, k),
        BEST_SINGLE: one_hot(np.full(n, single), k),
        PER_SEGMENT: one_hot(seg_arm, k),
    }
    values = [estimated_values(data, mu, policies, w, hurdle_outcome(scores, data))]
    errors = None
    extra: dict[str, float] = {}
    if truth is not None and true_inc is not None:
        oracle = np.where(
            np.nanmax(true_inc, axis=1) > 0, np.nanargmax(np.nan_to_num(true_inc, nan=-np.inf), axis=1), 0
        )
        with_oracle = {**policies, ORACLE: one_hot(oracle, k)}
        tv = true_values(truth, data.margin, with_oracle, w)
        hist = one_hot(data.logged.column, k)
        tv_hist = true_values(truth, data.margin, {HISTORICAL: hist}, w)
        values += [tv, tv_hist]
        est = pd.concat(values[:1])
        merged = est.merge(
            pd.concat([tv, tv_hist])[["policy", "quantity", "estimate"]].rename(columns={"estimate": "truth"}),
            on=["policy", "quantity"],
        )
        merged["error"] = merged["estimate"] - merged["truth"]
        merged["relative_error"] = merged["error"] / merged["truth"].abs().where(merged["truth"].abs() > 0)
        errors = merged[["policy", "quantity", "estimator", "estimate", "truth", "error", "relative_error"]]
        right = np.where(pick.arm == 0, np.nanmax(true_inc[:, 1:], axis=1) <= 0, true_inc[np.arange(n), pick.arm] > 0)
        cells, acc = roi_cells(scores.inc_net, true_inc, data.segment, arms, min_cell)
        source = "simulator truth"
        curves = uplift_curves(scores.inc_net, {"truth": true_inc, "estimated": dr_inc}, arms)
    else:
        right = np.where(pick.arm == 0, np.nan, (dr_inc[np.arange(n), pick.arm] > 0).astype(float))
        cells, acc = roi_cells(scores.inc_net, dr_inc, data.segment, arms, min_cell)
        source = "doubly robust estimate (no truth)"
        curves = uplift_curves(scores.inc_net, {"estimated": dr_inc}, arms)
    conf = judgement.confidence
    rel = reliability(conf, right.astype(float))
    rows = np.arange(n)
    ok, col = data.logged.in_table, data.logged.column
    mean = scores.point
    calib = pd.concat(
        [
            calibration_bins(mean.p_reengage[rows, col][ok], data.y["reengaged"][ok], "re-engagement"),
            calibration_bins(
                mean.deposits[rows, col][ok],
                (data.y["net_value"] + data.y["reward_cost"])[ok] / data.margin,
                "deposits",
            ),
            calibration_bins(mean.cost[rows, col][ok], data.y["reward_cost"][ok], "reward cost"),
        ],
        ignore_index=True,
    )
    shares = (
        pd.Series(arms["arm"].to_numpy()[pick.arm])
        .value_counts(normalize=True)
        .rename("share")
        .rename_axis("arm")
        .reset_index()
    )
    extra["expected_calibration_error_reengage"] = float(
        np.average(
            (
                calib.loc[calib["quantity"] == "re-engagement", "predicted"]
                - calib.loc[calib["quantity"] == "re-engagement", "realised"]
            ).abs(),
            weights=calib.loc[calib["quantity"] == "re-engagement", "n"],
        )
    )
    extra["mean_confidence"] = float(conf.mean())
    return Evaluation(
        values=pd.concat(values, ignore_index=True),
        arms_of_baselines={BEST_SINGLE: str(arms["arm"].iloc[single])}
        | {f"{PER_SEGMENT}: {s}": str(arms["arm"].iloc[a]) for s, a in seg_best.items()},
        roi_cells=cells,
        roi_accuracy=acc,
        roi_accuracy_source=source,
        reliability=rel,
        uplift=curves,
        calibration=calib,
        choice_shares=shares,
        estimator_errors=errors,
        extra=extra,
        gaps=gaps,
        estimated_best_single=str(arms["arm"].iloc[single_by_estimate]),
    )


def budget_check(scores: Scores, truth: ArmTruth, margin: float, reference: dict[str, int]) -> pd.DataFrame:
    """The re-engagement objective under a budget: for each reference single arm, the policy that maximises
    predicted incremental re-engagements with that arm's predicted total cost as its budget, against the
    arm itself, both scored by the truth (per candidate)."""
    n = len(scores.inc_net)
    rows = np.arange(n)
    true_re = truth.incremental_reengage()
    true_net = truth.incremental_net(margin)
    out = []
    for label, j in reference.items():
        budget = float(scores.cost[:, j].sum())
        pick = choose(scores.inc_reengage, scores.cost, budget=budget)
        arm = pick.arm
        out.append(
            {
                "reference": label,
                "arm": str(scores.arms["arm"].iloc[j]),
                "arm_incremental_reengage": float(np.nanmean(true_re[:, j])),
                "arm_cost": float(np.nanmean(truth.cost[:, j])),
                "policy_incremental_reengage": float(np.nanmean(true_re[rows, arm])),
                "policy_cost": float(np.nanmean(truth.cost[rows, arm])),
                "policy_incremental_net": float(np.nanmean(true_net[rows, arm])),
                "ratio": float(np.nanmean(true_re[rows, arm]) / np.nanmean(true_re[:, j])),
                "predicted_budget_per_candidate": budget / n,
            }
        )
    return pd.DataFrame(out)
