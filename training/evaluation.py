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

from training.baselines import best_arm_per_segment, best_single_arm, one_hot, oracle_arms, uniform_offer
from training.diagnostics import (
    calibration_bins,
    expected_calibration_error,
    reliability,
    roi_cells,
    uplift_curves,
)
from training.ope import ESTIMATORS, LoggedData, bootstrap_weights, dr_pseudo_outcomes, row_terms
from training.policy import choose
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


def policy_gaps(
    scores: Scores,
    data: EvalData,
    mine: np.ndarray,
    other: np.ndarray,
    w: np.ndarray,
    *,
    y_hurdle: np.ndarray | None = None,
) -> pd.DataFrame:
    """Paired difference of incremental net value per candidate, policy ``mine`` minus policy ``other``
    (an arm column per row each), by each of ``GAP_ESTIMATORS`` on the same bootstrap resamples ``w``:
    estimate and 95% interval. The plain doubly robust and SNIPS differences do not lean on the judged
    model's deposit sizes or on its answers where the logs hold no evidence, as "dr-hurdle" does.
    ``y_hurdle``: :func:`hurdle_outcome` of ``scores`` when the caller has it already."""
    k = scores.inc_net.shape[1]
    mu = outcome_models(scores, data.margin)["net_value"]
    hurdle = hurdle_outcome(scores, data) if y_hurdle is None else y_hurdle
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


def calibration_table(scores: Scores, data: EvalData) -> pd.DataFrame:
    """Calibration bins of the logged arm's predicted re-engagement, deposits and reward cost."""
    rows = np.arange(len(data.segment))
    ok, col = data.logged.in_table, data.logged.column
    mean = scores.point
    deposits = (data.y["net_value"] + data.y["reward_cost"]) / data.margin
    return pd.concat(
        [
            calibration_bins(mean.p_reengage[rows, col][ok], data.y["reengaged"][ok], "re-engagement"),
            calibration_bins(mean.deposits[rows, col][ok], deposits[ok], "deposits"),
            calibration_bins(mean.cost[rows, col][ok], data.y["reward_cost"][ok], "reward cost"),
        ],
        ignore_index=True,
    )


def estimator_errors(estimated: pd.DataFrame, true: pd.DataFrame) -> pd.DataFrame:
    """Each estimate beside the truth of the same policy and quantity: error and relative error."""
    merged = estimated.merge(
        true[["policy", "quantity", "estimate"]].rename(columns={"estimate": "truth"}), on=["policy", "quantity"]
    )
    merged["error"] = merged["estimate"] - merged["truth"]
    merged["relative_error"] = merged["error"] / merged["truth"].abs().where(merged["truth"].abs() > 0)
    return merged[["policy", "quantity", "estimator", "estimate", "truth", "error", "relative_error"]]


def recommendation_right(arm: np.ndarray, inc: np.ndarray, *, exact: bool) -> np.ndarray:
    """Per row, 1 where the recommendation was right by ``inc`` (rows x arms incremental values): the offer
    gains, or no offer where no offer gains. Without the truth (``exact`` False) a declined offer cannot be
    checked row by row (NaN)."""
    rows = np.arange(len(arm))
    offered = (inc[rows, arm] > 0).astype(float)
    declined = (np.nanmax(inc[:, 1:], axis=1) <= 0).astype(float) if exact else np.full(len(arm), np.nan)
    return np.where(arm == 0, declined, offered)


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
    y_hurdle = hurdle_outcome(scores, data)
    dr_net = dr_pseudo_outcomes(data.logged, mu["net_value"], y_hurdle)
    dr_inc = dr_net - dr_net[:, [0]]
    true_inc = truth.incremental_net(data.margin) if truth is not None else None
    judge_by = true_inc if true_inc is not None else dr_inc  # the baselines' arms: by the truth when known
    supported = scores.allowed  # an arm without support is never credited: no baseline picks it

    def credited(value: np.ndarray) -> np.ndarray:
        return np.where(supported, value, np.nan)

    single, single_by_estimate = best_single_arm(credited(judge_by)), best_single_arm(credited(dr_inc))
    per_segment = best_arm_per_segment(credited(judge_by), data.segment)
    policies = {
        LEARNED: one_hot(pick.arm, k),
        NO_OFFER: one_hot(np.zeros(n, int), k),
        RANDOM: uniform_offer(n, k),
        BEST_SINGLE: one_hot(np.full(n, single), k),
        PER_SEGMENT: one_hot(pd.Series(data.segment).map(per_segment).to_numpy(int), k),
    }
    estimated = estimated_values(data, mu, policies, w, y_hurdle)
    values = [estimated]
    gaps = policy_gaps(scores, data, pick.arm, np.full(n, single_by_estimate), w, y_hurdle=y_hurdle)
    errors = None
    if truth is not None and true_inc is not None:
        exact = true_values(truth, data.margin, {**policies, ORACLE: one_hot(oracle_arms(true_inc), k)}, w)
        exact_logged = true_values(truth, data.margin, {HISTORICAL: one_hot(data.logged.column, k)}, w)
        values += [exact, exact_logged]
        errors = estimator_errors(estimated, pd.concat([exact, exact_logged]))
        cells, acc = roi_cells(scores.inc_net, true_inc, data.segment, arms, min_cell)
        source = "simulator truth"
        curves = uplift_curves(scores.inc_net, {"truth": true_inc, "estimated": dr_inc}, arms)
    else:
        cells, acc = roi_cells(scores.inc_net, dr_inc, data.segment, arms, min_cell)
        source = "doubly robust estimate (no truth)"
        curves = uplift_curves(scores.inc_net, {"estimated": dr_inc}, arms)
    right = recommendation_right(pick.arm, judge_by, exact=true_inc is not None)
    calib = calibration_table(scores, data)
    shares = (
        pd.Series(arms["arm"].to_numpy()[pick.arm])
        .value_counts(normalize=True)
        .rename("share")
        .rename_axis("arm")
        .reset_index()
    )
    extra = {
        "expected_calibration_error_reengage": expected_calibration_error(
            calib[calib["quantity"] == "re-engagement"]
        ),
        "mean_confidence": float(judgement.confidence.mean()),
    }
    return Evaluation(
        values=pd.concat(values, ignore_index=True),
        arms_of_baselines={BEST_SINGLE: str(arms["arm"].iloc[single])}
        | {f"{PER_SEGMENT}: {s}": str(arms["arm"].iloc[a]) for s, a in per_segment.items()},
        roi_cells=cells,
        roi_accuracy=acc,
        roi_accuracy_source=source,
        reliability=reliability(judgement.confidence, right),
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
        pick = choose(scores.inc_reengage, scores.cost, budget=budget, allowed=scores.allowed)
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
