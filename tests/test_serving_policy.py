"""The serving policy (serving.policy): rules that can never be broken, exploration whose logged
propensities are the real frequencies, a deterministic holdout, a budget never overrun."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import PolicySettings
from serving.policy import PolicyError, Rows, arm_names, check_settings, decide, holdout_draw

ARMS = pd.DataFrame(
    {
        "event_type": ["none", "reminder", "cashback", "cashback", "free_spins", "mystery_box"],
        "reward": [0, 0, 10000, 30000, 5000, 5000],
        "supported": [True, True, True, True, True, False],
    }
)


def world(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, Rows]:
    rng = np.random.default_rng(seed)
    k = len(ARMS)
    gain = rng.normal(50, 200, (n, k))
    cost = np.tile(ARMS["reward"].to_numpy(float) * 0.3, (n, 1)) * rng.uniform(0.5, 1.5, (n, k))
    gain[:, 0] = cost[:, 0] = 0.0
    segment = rng.choice(["a", "b", "c"], n).astype(object)
    rows = Rows(np.arange(n, dtype=np.int64) * 7 + 3, segment, np.full(n, "", dtype=object))
    return gain, cost, gain.copy(), rows


def test_exploration_frequencies_match_the_logged_propensities() -> None:
    """With exploration 0.3 over 60,000 rows of one greedy arm, each arm's share is what the logged
    propensities say (a z-test per arm, |z| < 4), and the propensities of all arms of a row sum to one."""
    n = 60_000
    gain, cost, net, rows = world(n)
    gain[:] = -10.0
    gain[:, 2] = 100.0  # cashback@10000 is the greedy arm everywhere
    gain[:, 0] = 0.0
    s = PolicySettings(exploration=0.3, holdout=0.0, frequency_cap_days=0)
    d = decide(gain, cost, net, ARMS, rows, s, np.random.default_rng(1))
    allowed = len(ARMS)  # no rule removes an arm here
    expected = {j: (0.7 if j == 2 else 0.0) + 0.3 / allowed for j in range(allowed)}
    for j, p in expected.items():
        got = (d.arm == j).mean()
        z = (got - p) / np.sqrt(p * (1 - p) / n)
        assert abs(z) < 4, (j, got, p)
        assert np.allclose(d.propensity[d.arm == j], p)
    assert d.explored.mean() == pytest.approx(0.3, abs=0.01)
    assert (d.arm[~d.explored] == 2).all()
    # the unsupported arm is reached only through exploration
    assert (d.arm == 5).any() and d.explored[d.arm == 5].all()


def test_holdout_is_a_fixed_share_and_the_same_players_every_time() -> None:
    n = 100_000
    gain, cost, net, rows = world(n)
    s = PolicySettings(exploration=0.1, holdout=0.05, frequency_cap_days=0)
    a = decide(gain, cost, net, ARMS, rows, s, np.random.default_rng(1))
    b = decide(gain, cost, net, ARMS, rows, s, np.random.default_rng(2))
    assert a.holdout.mean() == pytest.approx(0.05, abs=0.003)
    assert (a.holdout == b.holdout).all()  # the hash, not the random draw
    assert (a.arm[a.holdout] == 0).all() and (a.propensity[a.holdout] == 1).all()
    other = decide(gain, cost, net, ARMS, rows, s.model_copy(update={"holdout_salt": "x"}), np.random.default_rng(1))
    assert 0.0 < (other.holdout & a.holdout).mean() < 0.01  # a new salt draws a new group
    u = holdout_draw(np.arange(200_000, dtype=np.int64), "salt")
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 19_000  # uniform


@pytest.mark.parametrize("budget", [None, 2_000_000.0])
def test_a_held_out_row_logs_the_arm_it_would_have_been_sent(budget: float | None) -> None:
    """The control group's arm is what the policy would have sent it: the same rows decided with no holdout
    (and no exploration) send every held-out row the arm its ``would`` names; a pin counts too."""
    gain, cost, net, rows = world(20_000)
    base = PolicySettings(exploration=0.0, holdout=0.2, frequency_cap_days=0, pins={"c": "reminder@0"})
    held = decide(gain, cost, net, ARMS, rows, base, np.random.default_rng(1), budget=budget)
    free = decide(gain, cost, net, ARMS, rows, base.model_copy(update={"holdout": 0.0}), np.random.default_rng(1),
                  budget=budget)  # fmt: skip
    h = held.holdout
    assert h.sum() > 3_000 and (held.arm[h] == 0).all()
    if budget is None:  # with a budget the knapsack of the other rows sets a slightly different price
        assert (held.would == free.arm).all()
    assert (held.would[h] == free.arm[h]).mean() > (0.999 if budget is None else 0.95)
    assert (held.would[~h] == held.arm[~h]).all()  # no exploration: the rest were sent what they would be
    assert set(held.would[h & (rows.segment == "c")]) == {1}  # the pinned segment's arm
    assert len(set(held.would[h])) > 2  # the model's picks, not one arm


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    exploration=st.floats(0, 0.95),
    cap=st.sampled_from([None, 0, 5000, 10000]),
    disabled=st.lists(st.sampled_from(["reminder", "cashback", "free_spins", "mystery_box"]), max_size=2),
    pin=st.sampled_from([None, "cashback@30000", "reminder@0", "none"]),
    budget=st.sampled_from([None, 0.0, 5_000.0, 200_000.0]),
)
def test_rules_hold_whatever_is_configured(seed, exploration, cap, disabled, pin, budget) -> None:
    """Blocked rows never get an offer; exploration, pins and the model never break a cap or send a disabled
    type; the budget is never exceeded; propensities are probabilities."""
    n = 400
    gain, cost, net, rows = world(n, seed)
    blocked = np.where(np.arange(n) % 5 == 0, "status self_excluded: never offered", "").astype(object)
    rows = Rows(rows.player_id, rows.segment, blocked)
    s = PolicySettings(
        exploration=exploration,
        holdout=0.1,
        reward_cap=cap,
        disabled_event_types=list(set(disabled)),
        segment_reward_caps={"b": 5000},
        pins={"a": pin} if pin else {},
    )
    d = decide(gain, cost, net, ARMS, rows, s, np.random.default_rng(seed), budget=budget)
    event = ARMS["event_type"].to_numpy()[d.arm]
    reward = ARMS["reward"].to_numpy()[d.arm]
    assert (d.arm[blocked != ""] == 0).all()
    assert not np.isin(event, list(set(disabled))).any()
    if cap is not None:
        assert (reward <= cap).all()
    assert (reward[rows.segment == "b"] <= 5000).all()
    assert ((d.propensity > 0) & (d.propensity <= 1 + 1e-12)).all()
    if budget is not None:
        assert cost[np.arange(n), d.arm].sum() <= budget + 1e-6


def test_the_greedy_arm_respects_the_minimum_roi_and_a_pin_wins_within_the_rules() -> None:
    gain, cost, net, rows = world(5000)
    s = PolicySettings(exploration=0.0, holdout=0.0, min_roi=0.5)
    d = decide(gain, cost, net, ARMS, rows, s, np.random.default_rng(0))
    r = np.arange(len(d.arm))
    offered = (d.arm > 0) & (cost[r, d.arm] > 0)
    assert offered.any() and (net[r, d.arm][offered] / cost[r, d.arm][offered] >= 0.5).all()
    pinned = decide(
        gain, cost, net, ARMS, rows, s.model_copy(update={"pins": {"a": "cashback@30000"}}), np.random.default_rng(0)
    )
    a = rows.segment == "a"
    assert (ARMS["reward"].to_numpy()[pinned.arm[a]] == 30000).all() and pinned.pinned[a].all()
    capped = s.model_copy(update={"pins": {"a": "cashback@30000"}, "reward_cap": 10000})
    d = decide(gain, cost, net, ARMS, rows, capped, np.random.default_rng(0))
    assert not d.pinned.any() and (ARMS["reward"].to_numpy()[d.arm] <= 10000).all()
    assert "outside the rules" in d.reason[np.flatnonzero(a)[0]]


def test_runners_up_are_the_next_best_allowed_arms() -> None:
    gain, cost, net, rows = world(300)
    d = decide(gain, cost, net, ARMS, rows, PolicySettings(exploration=0.0, holdout=0.0), np.random.default_rng(0))
    r = np.arange(300)
    supported = ARMS["supported"].to_numpy()
    for i in r[:50]:
        others = [j for j in range(len(ARMS)) if j != d.arm[i] and supported[j]]
        g = {j: (0.0 if j == 0 else gain[i, j]) for j in others}
        best_two = sorted(others, key=lambda j: -g[j])[:2]
        assert list(d.runners_up[i]) == best_two


def test_settings_naming_unknown_arms_are_refused() -> None:
    assert arm_names(ARMS)[2] == "cashback@10000"
    with pytest.raises(PolicyError, match=r"cashback@99.*unknown arms"):
        check_settings(PolicySettings(pins={"a": "cashback@99"}), ARMS)
    with pytest.raises(PolicyError, match=r"\['sms'\] are not event types"):
        check_settings(PolicySettings(disabled_event_types=["sms"]), ARMS)


def test_the_frequency_cap_takes_the_latest_offer_from_either_source() -> None:
    from serving.policy import frequency_capped

    platform = np.array([1.0, 5.0, np.nan, np.inf, 2.99])
    logged = np.array([np.inf, 0.5, 4.0, np.nan, np.inf])
    out = frequency_capped(platform, logged, 3)
    assert [bool(r) for r in out] == [True, True, False, False, True]
    assert out[1] == "frequency cap: last offer 0.50 days ago, fewer than 3"
    assert not frequency_capped(platform, logged, 0).any()


class _ArmsOnly:
    """A scorer's arms and rule columns (what the canary's merge looks at); ``score`` marks its own scores."""

    def __init__(self, arms: list[str]) -> None:
        self.arms = pd.DataFrame({"arm": arms})

    def arm_column(self, arm: str) -> int:
        return list(self.arms["arm"]).index(arm)

    def rule_columns(self, frame: pd.DataFrame, rule: object) -> np.ndarray:
        from training.scorer import Scorer

        return Scorer.rule_columns(self, frame, rule)  # type: ignore[arg-type]

    def score(self, frame: pd.DataFrame, margin: float | None = None) -> str:
        return f"scores of {len(self.arms)} arms"


def test_a_canaried_rule_is_served_on_the_served_models_scores_when_the_arms_changed() -> None:
    from serving.batch import BatchError, _canary_scores

    frame = pd.DataFrame({"segment": ["a", "b", "c"]})
    served = _ArmsOnly(["none", "cashback@10000", "deposit_bonus@10000"])
    grown = _ArmsOnly(["none", "cashback@10000", "deposit_bonus@10000", "free_spins@5000"])
    same = _ArmsOnly(list(served.arms["arm"]))
    own = "the served model's scores"
    # the same arms: the canary's own scores (and rule, or its policy)
    assert _canary_scores(frame, served, own, (same, "m/2", None), "m/1", None) == ("scores of 3 arms", None)
    # other arms, a rule the served model can send: the rule's columns in the served model's arms
    s, cols = _canary_scores(frame, served, own, (grown, "m/2", {"a": "deposit_bonus@10000", "all": "cashback@10000"}),
                             "m/1", None)  # fmt: skip
    assert s == own and list(cols) == [2, 1, 1]
    # other arms and its own policy, or a rule with an arm the served model lacks: refused, named
    with pytest.raises(BatchError, match="canary m/2 has other arms than m/1"):
        _canary_scores(frame, served, own, (grown, "m/2", None), "m/1", None)
    with pytest.raises(BatchError, match="canary m/2"):
        _canary_scores(frame, served, own, (grown, "m/2", {"all": "free_spins@5000"}), "m/1", None)
