"""The campaign planner (serving.planner): the knapsack's curve over budgets, the plan at one budget and the
what-if knobs, on a synthetic sample whose best plans are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import PolicySettings
from serving import planner

ARMS = pd.DataFrame({
    "event_type": ["none", "reminder", "cashback", "cashback", "free_spins"],
    "reward": [0, 0, 5000, 10000, 3000],
    "supported": [True, True, True, True, False],
})  # fmt: skip


def sample(n: int = 4000, seed: int = 0, candidates: int = 40_000) -> planner.Sample:
    rng = np.random.default_rng(seed)
    k = len(ARMS)
    base = rng.uniform(0.05, 0.2, n)
    lift = rng.uniform(0, 0.15, (n, k)) * np.array([0, 0.2, 0.7, 1.0, 1.2])
    p = np.clip(base[:, None] + lift, 0, 1)
    deposits = p * rng.uniform(20_000, 80_000, n)[:, None]
    cost = p * ARMS["reward"].to_numpy(float)[None, :]
    seg = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    return planner.sample_of(ARMS, seg, p, deposits, cost, np.ones(n, bool), seed=1, holdout=0.1, campaign="c1",
                             as_of=pd.Timestamp("2026-11-30 10:00"), model_version="m/1", margin=0.3,
                             objective="net_value") if candidates == n else planner.Sample(
        ARMS, seg, p, deposits, cost, candidates, 0.1, "c1", pd.Timestamp("2026-11-30 10:00"), "m/1", 0.3,
        "net_value")  # fmt: skip


RULES = PolicySettings()


def test_curve_rises_with_the_budget_and_ends_at_the_unconstrained_plan() -> None:
    s = sample()
    what = planner.WhatIf(margin=0.3)
    points = planner.curve(s, RULES, what)
    assert len(points) > 10
    assert (np.diff(points["budget"]) > 0).all()
    # more budget never buys less: the curve is the knapsack's frontier (up to the Lagrangian's integrality)
    assert (np.diff(points["net_value"]) >= -1e-6 * abs(points["net_value"]).max()).all()
    unlimited, _ = planner.plan(s, RULES, what, None)
    assert points["net_value"].iloc[-1] == pytest.approx(unlimited["net_value"], rel=1e-9)
    assert points["budget"].iloc[-1] == pytest.approx(unlimited["cost"], rel=1e-9)
    assert points["budget"].iloc[0] < 0.05 * unlimited["cost"]  # down to where almost nothing is worth sending


def test_the_plan_keeps_to_its_budget_and_beats_a_random_plan_of_that_cost() -> None:
    s = sample()
    what = planner.WhatIf(margin=0.3)
    unlimited, _ = planner.plan(s, RULES, what, None)
    budget = unlimited["cost"] / 3
    totals, table = planner.plan(s, RULES, what, budget)
    one_offer = s.cost.max() * s.scale  # the Lagrangian is exact up to one player's arm
    assert totals["cost"] <= budget + one_offer
    assert totals["cost"] >= 0.9 * budget
    assert table["players"].sum() == pytest.approx(s.candidates * (1 - s.holdout))
    assert table["expected_cost"].sum() == pytest.approx(totals["cost"])
    # a random plan with the same number of offers of the same arms spends about as much and wins less
    _gain, inc_net, _ = s.gain("net_value", 0.3)
    rng = np.random.default_rng(3)
    arm = np.zeros(len(s.segment), int)
    offers = round(totals["offers"] / s.scale)
    arm[rng.choice(len(arm), offers, replace=False)] = rng.choice([1, 2, 3], offers)
    assert inc_net[np.arange(len(arm)), arm].sum() * s.scale < totals["net_value"]


def test_what_if_cap_switch_off_unsupported_and_margin() -> None:
    s = sample()
    _, capped = planner.plan(s, RULES, planner.WhatIf(margin=0.3, reward_cap=5000), None)
    assert "cashback@10000" not in set(capped["arm"]) and "cashback@5000" in set(capped["arm"])
    _, off = planner.plan(s, RULES, planner.WhatIf(margin=0.3, disabled_event_types=("cashback",)), None)
    assert not off["arm"].str.startswith("cashback").any() and "reminder@0" in set(off["arm"])
    _, plain = planner.plan(s, RULES, planner.WhatIf(margin=0.3), None)
    assert not plain["arm"].str.startswith("free_spins").any()  # unsupported: only exploration sends it
    # the rules in force bind too: a configured cap is not lifted by a looser what-if
    _, ruled = planner.plan(s, PolicySettings(reward_cap=0), planner.WhatIf(margin=0.3, reward_cap=10000), None)
    assert set(ruled["arm"]) <= {"none", "reminder@0"}
    low, _ = planner.plan(s, RULES, planner.WhatIf(margin=0.1), None)
    high, _ = planner.plan(s, RULES, planner.WhatIf(margin=0.5), None)
    assert high["net_value"] > low["net_value"] and high["cost"] > 1.5 * low["cost"]  # a dearer reward pays then


@pytest.mark.parametrize(
    ("what", "named"),
    [
        (planner.WhatIf(margin=1.5), "margin must be in (0, 1], got 1.5"),
        (planner.WhatIf(margin=0.3, reward_cap=-1), "got -1"),
        (planner.WhatIf(margin=0.3, disabled_event_types=("bingo",)), "'bingo'"),
        (planner.WhatIf(margin=0.3, objective="clicks"), "'clicks'"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_what_if_is_refused_naming_the_value(what: planner.WhatIf, named: str) -> None:
    with pytest.raises(planner.PlannerError, match=named.replace("(", r"\(").replace(")", r"\)")):
        planner.curve(sample(500), RULES, what)


def test_sample_keeps_the_eligible_rows_and_survives_a_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n, k = 30_000, len(ARMS)
    p = rng.random((n, k))
    eligible = rng.random(n) < 0.8
    s = planner.sample_of(ARMS, np.array(["a"] * n, object), p, p * 1000, p * 10, eligible, seed=5, rows=5000,
                          holdout=0.05, campaign="c", as_of=pd.Timestamp("2026-12-01"), model_version="m/2",
                          margin=0.25, objective="reengagement")  # fmt: skip
    assert len(s.segment) == 5000 and s.candidates == int(eligible.sum())
    assert s.scale == pytest.approx(eligible.sum() * 0.95 / 5000)
    back = planner.load(planner.save(s, tmp_path / "d" / "planner.npz"))
    assert back is not None
    np.testing.assert_allclose(back.p_reengage, s.p_reengage)
    assert (back.segment == s.segment).all() and back.arms.equals(s.arms)
    assert (back.campaign, back.model_version, back.margin, back.objective) == ("c", "m/2", 0.25, "reengagement")
    assert planner.load(tmp_path / "missing.npz") is None
    # the sampled rows are eligible ones: their predictions are rows of the eligible part
    keep = {tuple(r) for r in np.round(p[eligible, :2].astype(np.float32), 6)}
    assert all(tuple(r) in keep for r in np.round(s.p_reengage[:, :2], 6))


def test_a_batch_without_eligible_candidates_is_refused_not_divided_by() -> None:
    k = len(ARMS)
    empty = planner.sample_of(ARMS, np.array([], object), np.zeros((0, k)), np.zeros((0, k)), np.zeros((0, k)),
                              np.zeros(0, bool), seed=1, holdout=0.05, campaign="batch-x",
                              as_of=pd.Timestamp("2026-12-01"), model_version="m/1", margin=0.3,
                              objective="net_value")  # fmt: skip
    with pytest.raises(planner.PlannerError, match="batch-x had no eligible candidate"):
        planner.plan(empty, RULES, planner.WhatIf(margin=0.3), 1_000_000)
