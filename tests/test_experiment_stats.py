"""Experiment statistics (monitoring.experiment_stats, tea-tasting underneath): a real effect is found and
called significant, a null one is not (over seeds, at about the configured rate), CUPED narrows the
interval, a broken split is flagged, and the power analysis is consistent with the size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.experiment_stats import Metric, analyse

SHARES = {"holdout": 0.1, "policy": 0.5, "random": 0.2, "marketers": 0.2}
LIFT = {"holdout": 0.0, "policy": 0.04, "random": 0.0, "marketers": 0.01}
METRICS = [
    Metric("reengaged", "re-engagement rate", covariate="reengaged_pre", primary=True),
    Metric("net_value", "net value per player", covariate="net_value_pre", primary=True),
]


def players(n: int, seed: int, lift: dict[str, float] = LIFT, shares: dict[str, float] = SHARES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(shares)
    variant = rng.choice(names, n, p=np.array(list(shares.values())) / sum(shares.values()))
    taste = rng.beta(1, 6, n)  # a player's own propensity to come back, seen in the pre-period too
    reengaged_pre = rng.random(n) < taste
    reengaged = rng.random(n) < np.clip(taste + pd.Series(variant).map(lift).to_numpy(), 0, 1)
    spend = rng.lognormal(8, 1.0, n)
    net_value_pre = reengaged_pre * spend * 0.3
    net_value = reengaged * spend * 0.3 * rng.lognormal(0, 0.3, n)
    return pd.DataFrame(
        {"variant": variant, "reengaged": reengaged.astype(float), "reengaged_pre": reengaged_pre.astype(float),
         "net_value": net_value, "net_value_pre": net_value_pre}
    )  # fmt: skip


def report(frame: pd.DataFrame):
    return analyse(frame, SHARES, treatments=["policy"], controls=["holdout", "random", "marketers"], metrics=METRICS)


def test_a_real_lift_is_significant_and_cuped_narrows_its_interval() -> None:
    r = report(players(40_000, seed=1))
    c = r.comparisons.set_index(["control", "metric"])
    assert r.sample_ratio_ok
    for control in ("holdout", "random"):  # +4 points of re-engagement on ~14%
        row = c.loc[(control, "reengaged_cuped")]
        assert row["significant"] and row["effect_lower"] < 0.04 < row["effect_upper"]
        plain = c.loc[(control, "reengaged")]
        assert row["effect_upper"] - row["effect_lower"] < plain["effect_upper"] - plain["effect_lower"]
    assert set(c.index.get_level_values("metric")) == {"reengaged", "reengaged_cuped", "net_value", "net_value_cuped"}
    assert c["pvalue_adj"].dropna().ge(c.loc[c["primary"], "pvalue"]).all()  # Holm never lowers a p-value
    v = r.variants.set_index("variant")
    assert (v["reengaged_lower"] < v["reengaged"]).all() and (v["reengaged"] < v["reengaged_upper"]).all()
    assert any("policy vs holdout" in s and "significant at" in s for s in r.sentences)


def test_no_lift_is_called_significant_about_as_often_as_alpha_allows() -> None:
    null = {v: 0.0 for v in SHARES}
    called = sum(report(players(4_000, seed=s, lift=null)).comparisons["significant"].any() for s in range(40))
    assert called <= 5  # family-wise 5% over 40 seeds: about 2 expected; 6 or more would be p < 0.01
    r = report(players(4_000, seed=3, lift=null))
    assert any("NOT significant" in s for s in r.sentences)


def test_a_broken_split_is_flagged_before_anything_else() -> None:
    frame = players(20_000, seed=2)
    broken = frame[~((frame["variant"] == "policy") & (np.arange(len(frame)) % 10 == 0))]  # 10% of policy lost
    r = report(broken)
    assert not r.sample_ratio_ok and r.sentences[0].startswith("SAMPLE RATIO MISMATCH")
    assert report(frame).sample_ratio_ok


def test_power_says_what_the_size_can_detect() -> None:
    small, large = report(players(4_000, seed=4)), report(players(40_000, seed=4))
    key = ["control", "metric"]
    s, big = small.power.set_index(key), large.power.set_index(key)
    row = ("holdout", "reengaged")
    assert big.loc[row, "detectable_rel_effect"] < s.loc[row, "detectable_rel_effect"]
    assert s.loc[row, "detectable_rel_effect"] / big.loc[row, "detectable_rel_effect"] == pytest.approx(
        np.sqrt(10), rel=0.15
    )
    assert s.loc[("holdout", "reengaged_cuped"), "players_needed"] < s.loc[row, "players_needed"]
