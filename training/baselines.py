"""The policies the learned one is compared with, as rows x arms matrices of arm probabilities.

No offer for everyone, a uniformly random offer, the best single arm for
everyone, the best arm per segment (no offer in a segment whose best arm loses
money; :func:`shrunk_arm_per_segment` first shrinks each segment's arm means
toward the arm's overall mean), and, with the simulator's truth, the oracle
(each row's best arm, or no offer when none gains). Which arm is "best" is judged on a rows x arms
value matrix given by the caller: the truth, or the doubly robust estimate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def one_hot(arm: np.ndarray, k: int) -> np.ndarray:
    """A deterministic policy as a rows x arms probability matrix."""
    out = np.zeros((len(arm), k))
    out[np.arange(len(arm)), arm] = 1.0
    return out


def uniform_offer(n: int, k: int) -> np.ndarray:
    """The random-arm baseline: every offer arm with the same probability, never no offer."""
    out = np.full((n, k), 1.0 / (k - 1))
    out[:, 0] = 0.0
    return out


def best_single_arm(value: np.ndarray) -> int:
    """The offer arm (column >= 1) with the highest mean ``value`` (rows x arms; NaN ignored)."""
    return int(np.nanmean(value[:, 1:], axis=0).argmax()) + 1


def best_arm_per_segment(value: np.ndarray, segment: np.ndarray) -> dict[str, int]:
    """Per segment, its best single arm, or no offer (0) where that arm's mean ``value`` is not positive."""
    best: dict[str, int] = {}
    for s, idx in pd.Series(segment).groupby(segment).indices.items():
        j = best_single_arm(value[idx])
        best[str(s)] = j if np.nanmean(value[idx, j]) > 0 else 0
    return best


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


def oracle_arms(value: np.ndarray) -> np.ndarray:
    """Each row's best arm by ``value`` (the truth), or no offer where no arm gains."""
    best = np.nanargmax(np.nan_to_num(value, nan=-np.inf), axis=1)
    return np.where(np.nanmax(value, axis=1) > 0, best, 0)
