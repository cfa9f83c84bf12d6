"""Which policy to deploy, when the per-player argmax is not trusted? The truth of the candidates, per world.

    .venv/bin/python -m experiments.policy_candidates --home /tmp/cov20k/seed1 [--config experiments/worlds/alt]

Issue 12, section 3: the per-player argmax of a response model fitted on 20,000 players is often worth less
than sending everyone the best single arm, and the fallback the evaluation picks is the best single arm or a
segment rule. This fits the model with the current code on a world the main command built, judges it on the
held-out campaigns and prints, for each candidate policy, its true value per candidate (the simulator's
truth) and its ratio to the truly best single arm:

- the references: the truly best single arm, the truly best arm per segment, the oracle;
- the judged model's argmax, and its predictions averaged per segment with weight ``1 - alpha`` before the
  argmax (``alpha = 0``: the model's own segment rule) — shrinkage of per-player uplift toward the segment;
- the evaluation's outcome model (cross-fitted, fitted on the other players' rows of every campaign, the
  held-out ones included): its argmax and its segment rule — what a model refitted on the latest campaigns
  would do;
- the segment rules chosen on the capped doubly robust scores, raw and with each segment's arm means shrunk
  toward the arm's overall mean (:func:`shrunk_arm_per_segment`, which did not win: it stays here, with
  its tests, as a candidate);
- the fallback the evaluation chose.

Nothing here is estimated from the truth except the printed values: a candidate that wins over seeds, by
the truth, is one worth building into the product.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import ConfigError, load_config
from training.baselines import best_arm_per_segment, best_single_arm, oracle_arms
from training.data import TrainingDataError
from training.evaluation import LEARNED, hurdle_outcome, outcome_models
from training.fit import fit_scorer, prepare
from training.judge import Judged, judge
from training.ope import dr_pseudo_outcomes
from training.policy import choose
from training.propensity import logged_arm_index

ALPHAS = (0.5, 0.0)


def segment_means(value: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Each row's value replaced by its segment's mean (rows x arms)."""
    seg = pd.Series(segment).astype(str)
    means = pd.DataFrame(value).groupby(seg.to_numpy()).transform("mean")
    return means.to_numpy()


def shrunk_arm_per_segment(value: np.ndarray, segment: np.ndarray) -> dict[str, int]:
    """Per segment, its best arm by an empirical-Bayes estimate of each arm's mean ``value`` there (rows x
    arms; NaN ignored), or no offer (0) where that estimate is not positive.

    A segment's own mean of an arm is noisy (a few hundred rows, heavy-tailed values), and the arm that
    looks best in a segment is often the one whose noise came out highest. Each (segment, arm) mean is
    therefore shrunk toward the arm's mean over all rows by ``tau2 / (tau2 + v)``: ``v`` the variance of the
    segment's mean, ``tau2`` how much the arm's true means differ between segments (the spread of the
    segments' means less their average noise, by moments; 0 when the noise explains all of it). Where the
    segments are alike, or the data thin, every segment gets the best single arm; where a segment differs
    by more than its noise, it gets its own.
    """
    seg = pd.Series(segment).astype(str)
    groups = seg.groupby(seg).indices
    names = [str(s) for s in groups]
    ok = ~np.isnan(value)
    x = np.where(ok, value, 0.0)
    count = np.array([ok[groups[s]].sum(axis=0) for s in names], dtype=float)  # segments x arms
    total = np.array([x[groups[s]].sum(axis=0) for s in names])
    square = np.array([(x[groups[s]] ** 2).sum(axis=0) for s in names])
    supported = count.sum(axis=0) > 0
    overall = np.divide(total.sum(axis=0), count.sum(axis=0), out=np.zeros(value.shape[1]), where=supported)
    mean = np.divide(total, count, out=np.broadcast_to(overall, count.shape).copy(), where=count > 0)
    spread_sq = np.divide(square - count * mean**2, count - 1, out=np.zeros_like(count), where=count > 1)
    var = np.divide(spread_sq, count, out=np.full_like(count, np.inf), where=count > 1)  # of each segment's mean
    seen = np.isfinite(var)
    n_seen = seen.sum(axis=0)
    noise = np.divide(np.where(seen, var, 0.0).sum(axis=0), n_seen, out=np.zeros_like(overall), where=n_seen > 0)
    dev = np.where(seen, mean - overall, 0.0)
    spread = np.divide((dev**2).sum(axis=0), n_seen - 1, out=np.zeros_like(overall), where=n_seen > 1)
    tau2 = np.maximum(spread - noise, 0.0)
    weight = np.divide(tau2, tau2 + var, out=np.zeros_like(var), where=seen & (tau2 > 0))
    post = np.where(supported, overall + weight * (mean - overall), -np.inf)
    best = post[:, 1:].argmax(axis=1) + 1
    gain = post[np.arange(len(names)), best]
    return {s: int(b) if g > 0 else 0 for s, b, g in zip(names, best, gain, strict=True)}


def difference_in_means(frame: pd.DataFrame, arms: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's realised net value in its logged arm's column, less its segment's mean with no offer (rows x
    arms, NaN elsewhere), and the rows' segments: the plain analysis of an experiment. Unbiased per arm and
    segment where the arms were drawn at random (a world whose every campaign is randomised); biased by the
    marketers' targeting elsewhere."""
    arm = logged_arm_index(frame, arms)
    segment = frame["segment"].astype(str).to_numpy()
    net = frame["net_value"].to_numpy(np.float64)
    value = np.full((len(frame), len(arms)), np.nan)
    ok = arm >= 0
    value[np.flatnonzero(ok), arm[ok]] = net[ok]
    none_mean = pd.Series(value[:, 0]).groupby(segment).transform("mean").to_numpy()
    return value - np.nan_to_num(none_mean)[:, None], segment


def candidates(j: Judged, history: pd.DataFrame | None = None, arms: pd.DataFrame | None = None) -> dict[str, float]:
    """The true incremental net value per candidate of each candidate policy on the judged rows; with the
    whole ``history`` (every campaign's rows) and its ``arms``, also the rules its difference in means picks."""
    if j.truth is None:
        raise ValueError("the world has no simulator truth: build it with `rekindle run`")
    data, scores, mean = j.data, j.scores, j.mean
    segment = np.asarray(data.segment).astype(str)
    true = j.truth.incremental_net(data.margin)
    rows = np.arange(len(true))
    allowed = scores.allowed

    def worth(arm: np.ndarray) -> float:
        return float(np.nanmean(true[rows, arm]))

    def rule(by_segment: dict[str, int]) -> np.ndarray:
        return pd.Series(segment).map(by_segment).to_numpy(int)

    credited_truth = np.where(allowed, true, np.nan)
    mu = outcome_models(mean, data.margin)
    switch = dr_pseudo_outcomes(data.logged, mu["net_value"], hurdle_outcome(mean, data), max_weight=data.max_weight)
    capped = np.where(allowed, switch - switch[:, [0]], np.nan)
    out = {
        "best single arm (truth)": worth(np.full(len(rows), best_single_arm(credited_truth))),
        "best arm per segment (truth)": worth(rule(best_arm_per_segment(credited_truth, segment))),
        "oracle": worth(oracle_arms(credited_truth)),
        "judged model: argmax (the learned policy)": j.evaluation.value(LEARNED, "net_value", "truth"),
    }
    gain = scores.inc_net
    for alpha in ALPHAS:
        shrunk = alpha * gain + (1 - alpha) * segment_means(gain, segment)
        out[f"judged model: argmax, alpha {alpha}"] = worth(choose(shrunk, scores.cost, allowed=allowed).arm)
    evaluation_gain = mean.incremental_net(data.margin)
    out["evaluation model: argmax"] = worth(choose(evaluation_gain, mean.cost, allowed=allowed).arm)
    out["evaluation model: segment rule"] = worth(
        choose(segment_means(evaluation_gain, segment), mean.cost, allowed=allowed).arm
    )
    out["capped DR: single arm"] = worth(np.full(len(rows), best_single_arm(capped)))
    out["capped DR: segment rule"] = worth(rule(best_arm_per_segment(capped, segment)))
    out["capped DR: shrunk segment rule"] = worth(rule(shrunk_arm_per_segment(capped, segment)))
    if history is not None and arms is not None:
        diff, diff_segment = difference_in_means(history, arms)
        out["every campaign, difference in means: single arm"] = worth(np.full(len(rows), best_single_arm(diff)))
        out["every campaign, difference in means: segment rule"] = worth(rule(best_arm_per_segment(diff, diff_segment)))
    out[f"fallback chosen ({j.evaluation.fallback})"] = float(j.evaluation.fallback_truth or np.nan)
    return out


def show(values: dict[str, float]) -> str:
    single = values["best single arm (truth)"]
    return "\n".join(f"  {name:<52} {v:>8,.0f}  {v / single:5.2f}x" for name, v in values.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="a world built by `rekindle run` (with its truth)")
    ap.add_argument("--config", type=Path, help="its configuration directory (default ./configs)")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config, home=args.home)
        prepared = prepare(cfg)
    except (ConfigError, TrainingDataError) as exc:
        ap.error(str(exc))
    cfg = prepared.cfg
    scorer = fit_scorer(cfg, prepared.split.fit, prepared.arms, cfg.training.model, members=cfg.training.ensemble)
    j = judge(prepared, scorer, truth_dir=args.home / "truth")
    print(f"{args.home}: true incremental net value per candidate (KRW), and / the best single arm")
    print(show(candidates(j, prepared.frame, prepared.arms)))


if __name__ == "__main__":
    main()
