"""Experiments in the policy (serving.experiments): a player's variant is fixed by hash at the configured
shares; each variant sends what it says and the rules still hold; the policy variant is the policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import PolicySettings
from serving.experiments import (
    Experiment,
    ExperimentError,
    apply_variants,
    assign,
    definition,
    from_definition,
    variant_arms,
)
from serving.policy import arm_names, decide, rule_mask
from tests.test_serving_policy import ARMS, world

SHARES = {"policy": 0.4, "random": 0.2, "marketers": 0.15, "best_arm": 0.15, "holdout": 0.1}
EXP = Experiment(
    "e1", "salt-1", SHARES, best_arm="cashback@10000", marketers={"a": "reminder@0", "b": "cashback@30000"}
)


def test_players_are_assigned_at_the_shares_and_stay_in_their_variant() -> None:
    ids = np.arange(300_000, dtype=np.int64) * 13 + 5
    v = assign(ids, EXP)
    for name, share in SHARES.items():
        got = (v == name).mean()
        assert abs(got - share) < 4 * np.sqrt(share * (1 - share) / len(ids)), (name, got)
    assert (assign(ids[::-1], EXP)[::-1] == v).all()  # the id decides, not the order or the call
    other = assign(ids, Experiment("e2", "salt-2", SHARES, best_arm="cashback@10000", marketers=EXP.marketers))
    both = ((v == "policy") & (other == "policy")).mean()
    assert both == pytest.approx(0.4 * 0.4, abs=0.005)  # a new salt: an independent assignment


def decided(settings: PolicySettings, n: int = 60_000):
    gain, cost, net, rows = world(n, seed=3)
    rows.blocked[::17] = "self-excluded"
    names = arm_names(ARMS)
    d = decide(gain, cost, net, ARMS, rows, settings, np.random.default_rng(1))
    variant = assign(rows.player_id, EXP)
    allowed = rule_mask(ARMS, rows.segment.astype(str), settings)
    eligible = rows.blocked == ""
    codes = variant_arms(variant, rows.segment, EXP, names)
    return d, apply_variants(d, variant, codes, allowed, eligible, np.random.default_rng(2), EXP, names), variant, rows


def test_each_variant_sends_what_it_says_and_the_rules_hold() -> None:
    settings = PolicySettings(exploration=0.05, holdout=0.05, frequency_cap_days=0, disabled_event_types=["free_spins"])
    policy, d, variant, rows = decided(settings)
    eligible = rows.blocked == ""
    assert (d.arm[~eligible] == 0).all()  # a self-excluded player is never offered, whatever the variant
    p = variant == "policy"
    assert (d.arm[p] == policy.arm[p]).all() and (d.propensity[p] == policy.propensity[p]).all()
    assert (d.arm[variant == "holdout"] == 0).all()
    best = eligible & (variant == "best_arm")
    assert (d.arm[best] == 2).all() and (d.propensity[best] == 1).all()
    m = eligible & (variant == "marketers")
    seg = rows.segment
    assert (d.arm[m & (seg == "a")] == 1).all() and (d.arm[m & (seg == "b")] == 3).all()
    assert (d.arm[m & (seg == "c")] == 0).all()  # a segment the table does not name: no offer
    r = eligible & (variant == "random")
    assert not (d.arm[r] == 4).any()  # free_spins is disabled: never drawn
    allowed_arms = [0, 1, 2, 3, 5]  # free_spins disabled; the unsupported arm may be drawn, as exploration does
    for j in allowed_arms:  # uniform among the allowed: each frequency is its logged propensity
        got, p_j = (d.arm[r] == j).mean(), 1 / len(allowed_arms)
        assert abs(got - p_j) < 4 * np.sqrt(p_j * (1 - p_j) / r.sum()), (j, got)
    assert np.allclose(d.propensity[r], 1 / len(allowed_arms))
    assert not d.explored[~p].any() and not d.holdout[~p].any()
    assert all(str(x).startswith("experiment e1, variant ") for x in d.reason[eligible & ~p])


def test_a_variant_arm_outside_the_rules_is_not_sent() -> None:
    settings = PolicySettings(exploration=0.0, holdout=0.0, frequency_cap_days=0, reward_cap=20_000)
    _, d, variant, rows = decided(settings, 20_000)
    m = (rows.blocked == "") & (variant == "marketers") & (rows.segment == "b")  # cashback@30000 is over the cap
    assert m.sum() > 100 and (d.arm[m] == 0).all()
    assert all("outside the rules" in str(x) for x in d.reason[m])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shares": {"policy": 0.5, "bogus": 0.5}}, "unknown variants ['bogus']"),
        ({"shares": {"policy": 0.5, "holdout": 0.4}}, "sum to 1"),
        ({"shares": {"policy": 1.0}}, "two variants or more"),
        ({"shares": {"policy": 0.5, "best_arm": 0.5}}, "best_arm variant needs its arm"),
        ({"shares": {"policy": 0.5, "marketers": 0.5}}, "segment -> arm table"),
        ({"shares": {"policy": 0.5, "marketers": 0.5}, "marketers": ["a"]}, "must map segment names to arms"),
    ],
)
def test_an_experiment_that_cannot_run_is_refused_with_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Experiment("x", "s", **kwargs)


def test_an_experiment_naming_an_unknown_arm_is_refused() -> None:
    e = Experiment("x", "s", {"policy": 0.5, "best_arm": 0.5}, best_arm="cashback@7")
    with pytest.raises(ExperimentError, match="cashback@7"):
        variant_arms(np.array(["policy"], dtype=object), np.array(["a"], dtype=object), e, arm_names(ARMS))


@pytest.mark.parametrize("to", ["random", "marketers", "best_arm"])
def test_equal_cost_buys_the_most_reengagement_within_the_baselines_cost_as_a_budget(to: str) -> None:
    settings = PolicySettings(exploration=0.0, holdout=0.0, frequency_cap_days=0, disabled_event_types=["free_spins"])
    gain, cost, net, rows = world(20_000, seed=5)
    reengage = np.abs(np.random.default_rng(6).normal(0.02, 0.02, gain.shape)) * (1 + cost / cost.max())
    reengage[:, 0] = 0.0
    names = arm_names(ARMS)
    e = Experiment("eq", "s", {"policy": 0.5, "equal_cost": 0.5}, best_arm="cashback@10000",
                   marketers=EXP.marketers, equal_cost_to=to)  # fmt: skip
    variant = assign(rows.player_id, e)
    allowed = rule_mask(ARMS, rows.segment.astype(str), settings)
    eligible = rows.blocked == ""
    policy = decide(gain, cost, net, ARMS, rows, settings, np.random.default_rng(1))
    codes = variant_arms(variant, rows.segment, e, names)
    d = apply_variants(policy, variant, codes, allowed, eligible, np.random.default_rng(2), e, names,
                       reengage, cost, rows.segment)  # fmt: skip
    q = variant == "equal_cost"
    i = np.arange(len(d.arm))
    if to == "random":  # the mean over the allowed arms, no offer included (free_spins is disabled: not counted)
        cap = (cost * allowed).sum(axis=1) / allowed.sum(axis=1)
    else:
        col = np.full(len(i), 2) if to == "best_arm" else np.select([rows.segment == "a", rows.segment == "b"], [1, 3])
        cap = np.where(allowed[i, col] & (col > 0), cost[i, col], 0.0)
    spent = cost[i, d.arm]
    assert spent[q].sum() <= cap[q].sum() + 1e-6 and allowed[i[q], d.arm[q]].all()  # within the baseline's budget
    # more re-engagement than any player's best arm within his own share of the budget (a feasible choice)
    affordable = allowed & (cost <= cap[:, None] + 1e-9)
    own = np.where(affordable, reengage, -np.inf)
    own[:, 0] = 0.0
    assert reengage[i[q], d.arm[q]].sum() > 1.02 * own[q].max(axis=1).sum()
    # no budget-neutral swap gains: every chosen arm is the best for its row at the knapsack's shadow price
    from training.policy import choose

    lam = choose(reengage[q], cost[q], budget=float(cap[q].sum()), allowed=allowed[q]).lam
    assert lam == 0 or spent[q].sum() > 0.98 * cap[q].sum()  # a binding budget is spent: it does not underspend
    score = np.where(allowed[q], reengage[q] - lam * cost[q], -np.inf)
    score[:, 0] = 0.0
    assert np.allclose(score[np.arange(q.sum()), d.arm[q]], score.max(axis=1))
    assert (d.arm[q] > 0).mean() > 0.5  # it does offer: not a variant that sends nothing
    p = variant == "policy"
    assert (d.arm[p] == policy.arm[p]).all()
    assert from_definition("eq", definition(e)) == e


def test_the_marketers_default_is_the_offer_the_platform_sent_most_per_segment() -> None:
    from training.baselines import historical_rule

    segment = pd.Series(["a"] * 6 + ["b"] * 4 + ["c"] * 3)
    arm = pd.Series(["none", "none", "none", "x@1", "y@2", "x@1"] + ["y@2", "z@3", "z@3", "none"] + ["none"] * 3)
    assert historical_rule(segment, arm) == {"a": "x@1", "b": "z@3"}  # no offer is not a rule; c never got one
    # among the arms a model can send only: b's most sent arm is unknown, its next one is taken
    assert historical_rule(segment, arm, known={"x@1", "y@2"}) == {"a": "x@1", "b": "y@2"}
