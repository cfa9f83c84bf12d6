"""Realised against predicted per cell (monitoring.roi): on rows whose true effects are known, the realised
incremental value finds them within its standard error, the accuracy is what the predictions' error makes
it, and a cell too small for its noise is not called reliable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.roi import pooled_accuracy, roi_cells, weekly

DAY0 = pd.Timestamp("2026-10-05")
EFFECT = {("a", "cashback@10000"): 3_000.0, ("a", "free_spins@5000"): 1_000.0, ("b", "cashback@10000"): -500.0}


def rows(n: int, bias: float, seed: int = 0) -> pd.DataFrame:
    """n decisions: the policy's arm per (segment, arm) cell, 10% held out, 5% explored; net value = a
    heavy-tailed base (the same distribution for offered and control) + the cell's true effect when offered;
    predictions = effect x (1 + bias)."""
    rng = np.random.default_rng(seed)
    cells = list(EFFECT)
    pick = rng.integers(len(cells), size=n)
    segment = np.array([cells[i][0] for i in pick], dtype=object)
    would = np.array([cells[i][1] for i in pick], dtype=object)
    effect = np.array([EFFECT[cells[i]] for i in pick])
    held = rng.random(n) < 0.1
    explored = ~held & (rng.random(n) < 0.05)
    sent = np.where(held, "none", np.where(explored, "free_spins@5000", would))
    base = rng.lognormal(7, 1.2, n) * (rng.random(n) < 0.4)
    value = base + np.where(~held & ~explored, effect, 0.0)
    event, reward = zip(*(s.split("@") if s != "none" else ("none", "0") for s in sent), strict=True)
    return pd.DataFrame(
        {
            "segment": segment, "event_type": event, "reward": np.array(reward, dtype=np.int64), "holdout": held,
            "explored": explored, "policy_arm": would, "net_value": value,
            "incremental_net_value": np.where(held, 0.0, effect * (1 + bias)), "expected_cost": 3_000.0,
            "reward_cost": 2_500, "decided_at": DAY0 + pd.to_timedelta(rng.integers(0, 21, n), "D"),
        }
    )  # fmt: skip


def test_the_realised_value_finds_the_true_effect_and_the_accuracy_the_prediction_error() -> None:
    cells = roi_cells(rows(200_000, bias=0.2)).set_index(["segment", "arm"])
    assert set(cells.index) == set(EFFECT)
    for key, effect in EFFECT.items():
        c = cells.loc[key]
        assert abs(c["realised"] - effect) < 4 * c["se"], (key, c["realised"], c["se"])
        assert c["predicted"] == pytest.approx(effect * 1.2)
    big = cells.loc[("a", "cashback@10000")]
    assert big["reliable"] and big["accuracy"] == pytest.approx(0.8, abs=0.05)
    assert pooled_accuracy(cells) == pytest.approx(0.8, abs=0.06)
    exact = roi_cells(rows(200_000, bias=0.0))
    assert pooled_accuracy(exact) > 0.93 > pooled_accuracy(roi_cells(rows(200_000, bias=0.5)))


def test_a_small_cell_is_not_reliable_and_weeks_pool_their_cells() -> None:
    small = roi_cells(rows(3_000, bias=0.0, seed=1)).set_index(["segment", "arm"])
    assert not small.loc[("b", "cashback@10000"), "reliable"]  # -500 under a base with sd ~2,000: noise wins
    w = weekly(rows(60_000, bias=0.0))
    assert len(w) >= 3 and w["n_offered"].sum() > 45_000
    true_mean = np.mean(list(EFFECT.values()))
    assert np.allclose(w["predicted"], true_mean, rtol=0.1)


def test_an_experiments_holdout_variant_is_a_control_like_the_policys_holdout() -> None:
    frame = rows(40_000, bias=0.0, seed=3)
    as_variant = frame.assign(variant=np.where(frame["holdout"], "holdout", "policy"), holdout=False)
    pd.testing.assert_frame_equal(roi_cells(as_variant), roi_cells(frame))
    without = roi_cells(as_variant.drop(columns="variant"))  # the same rows, no variant: no control at all
    assert without.empty
