"""The candidate segment rules of experiments/policy_candidates.py: each segment's arm means shrunk toward the
arm's overall mean, and an experiment's plain difference in means (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.policy_candidates import difference_in_means, shrunk_arm_per_segment
from training.baselines import best_arm_per_segment

SEGMENTS = list("abcdefgh")


def world(seed: int, *, distinct: bool, n: int = 40_000, k: int = 6, noise: float = 700.0):
    """Arm 1 is worth 30 everywhere, the others 9; with ``distinct``, each segment has its own arm worth 60
    more. Values are one noisy draw per row, as doubly robust scores are. Returns the segments, each
    row's own arm, the true means and the noisy values."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(SEGMENTS, n)
    mean = np.tile([0.0, 30.0, 9.0, 9.0, 9.0, 9.0], (n, 1))
    own = np.searchsorted(SEGMENTS, segment) % (k - 1) + 1
    if distinct:
        mean[np.arange(n), own] += 60.0
    return segment, own, mean, mean + rng.normal(0, noise, (n, k))


def worth(rule: dict[str, int], segment: np.ndarray, mean: np.ndarray) -> float:
    arm = np.array([rule[s] for s in segment])
    return float(mean[np.arange(len(arm)), arm].mean())


def test_where_segments_differ_only_by_noise_the_rule_is_worth_the_best_single_arm() -> None:
    """The raw per-segment argmax picks noise in some segments and loses value to the best single arm;
    the shrunk one keeps (nearly) all of it in every world."""
    shrunk, raw = [], []
    for seed in range(20):
        segment, _, mean, value = world(seed, distinct=False)
        shrunk.append(worth(shrunk_arm_per_segment(value, segment), segment, mean))
        raw.append(worth(best_arm_per_segment(value, segment), segment, mean))
    assert min(shrunk) >= 0.95 * 30.0
    assert np.mean(raw) < np.mean(shrunk) - 1.0  # what shrinking repairs


def test_where_a_segment_really_differs_it_gets_its_own_arm() -> None:
    right = 0
    for seed in range(20):
        segment, own, _, value = world(seed, distinct=True)
        rule = shrunk_arm_per_segment(value, segment)
        truth = dict(zip(segment, own, strict=True))
        right += sum(rule[s] == truth[s] for s in SEGMENTS)
    assert right >= 0.9 * 20 * len(SEGMENTS)


def test_no_unsupported_arm_and_no_offer_where_every_arm_loses() -> None:
    segment, _, _, value = world(0, distinct=True)
    value[:, 3] = np.nan  # an arm without support: never chosen
    value[segment == "a", 1:] -= 1_000.0  # every offer loses money in segment a
    rule = shrunk_arm_per_segment(value, segment)
    assert 3 not in rule.values()
    assert rule["a"] == 0
    assert all(rule[s] > 0 for s in SEGMENTS if s != "a")


def test_the_difference_in_means_finds_each_segments_arm_in_a_randomised_history() -> None:
    """Arms drawn uniformly: each row's net value less its segment's no-offer mean, in its own arm's column,
    recovers each segment's best arm (and no offer where every arm loses), and NaN everywhere else."""
    rng = np.random.default_rng(3)
    n = 30_000
    arms = pd.DataFrame({"arm": ["none", "a@1", "b@2"], "event_type": ["none", "a", "b"], "reward": [0, 1, 2]})
    segment = rng.choice(["s", "t", "u"], n)
    arm = rng.integers(0, 3, n)
    base = pd.Series(segment).map({"s": 100.0, "t": 500.0, "u": 300.0}).to_numpy()
    effect = pd.DataFrame({"s": [0, 40, 10], "t": [0, 5, 60], "u": [0, -30, -20]}).to_numpy().T  # segment x arm
    net = base + effect[np.searchsorted(["s", "t", "u"], segment), arm] + rng.normal(0, 50, n)
    frame = pd.DataFrame(
        {
            "event_type": arms["event_type"].to_numpy()[arm],
            "reward": arms["reward"].to_numpy()[arm],
            "segment": segment,
            "net_value": net,
        }
    )
    value, seg = difference_in_means(frame, arms)
    assert np.isnan(value).sum(axis=1).tolist() == [2] * n
    assert best_arm_per_segment(value, seg) == {"s": 1, "t": 2, "u": 0}
    in_t = (seg == "t") & (arm == 2)
    assert abs(np.nanmean(value[in_t, 2]) - 60) < 3
