"""The propensities Rekindle logged with its decisions, matched to the training set's decision rows, and what
they give the evaluation: an unbiased correction where the estimated propensities of a rule-driven history
are wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.logged_propensity import LoggedPropensityError, match_decisions
from training.ope import LoggedData, row_terms

T = pd.Timestamp("2026-01-05 09:00")
WITHIN = pd.Timedelta(hours=48)


def _rows(*spec: tuple[int, int | None, str, int]) -> pd.DataFrame:
    """(player, offer id, event type, reward) per row of one campaign at ``T``."""
    player, offer, event, reward = zip(*spec, strict=True)
    return pd.DataFrame(
        {
            "player_id": player,
            "campaign_at": T,
            "offer_id": pd.array(offer, dtype="Int64"),
            "event_type": event,
            "reward": reward,
            "is_offer": [o is not None for o in offer],
        }
    )


def _decisions(*spec: tuple[int, pd.Timestamp, str, int, float, bool, int | None]) -> pd.DataFrame:
    player, at, event, reward, p, sent, offer = zip(*spec, strict=True)
    return pd.DataFrame(
        {
            "player_id": player,
            "decided_at": at,
            "event_type": event,
            "reward": reward,
            "propensity": p,
            "sent": sent,
            "offer_id": pd.array(offer, dtype="Int64"),
        }
    )


def test_each_row_gets_the_propensity_of_the_decision_that_caused_it_or_none() -> None:
    rows = _rows(
        (1, 10, "cashback", 5000),  # sent as decided
        (2, None, "none", 0),  # decided: no offer
        (3, 11, "free_spins", 100),  # the offer's arm is not the decision's (a different reward)
        (4, None, "none", 0),  # decided an offer the platform did not send: its "none" was never decided
        (5, None, "none", 0),  # a no-offer decision too long before the campaign
        (6, 12, "cashback", 5000),  # the platform's own offer: no decision of Rekindle's
        (7, None, "none", 0),  # two decisions: the latest (no offer, an hour later) is the one in force
    )
    decisions = _decisions(
        (1, T - pd.Timedelta(hours=1), "cashback", 5000, 0.9, True, 10),
        (2, T, "none", 0, 0.05, False, None),
        (3, T, "free_spins", 200, 0.3, True, 11),
        (4, T, "cashback", 5000, 0.4, False, None),
        (5, T - pd.Timedelta(days=3), "none", 0, 1.0, False, None),
        (7, T - pd.Timedelta(hours=2), "cashback", 5000, 0.2, False, None),
        (7, T - pd.Timedelta(hours=1), "none", 0, 0.125, False, None),
    )
    got = match_decisions(rows, decisions, WITHIN).propensity
    np.testing.assert_array_equal(got, [0.9, 0.05, np.nan, np.nan, np.nan, np.nan, 0.125])


def test_an_offer_claimed_by_two_decisions_is_left_to_the_estimate() -> None:
    rows = _rows((1, 10, "cashback", 5000))
    twice = _decisions(
        (1, T, "cashback", 5000, 0.9, True, 10),
        (1, T - pd.Timedelta(hours=1), "cashback", 5000, 0.5, True, 10),
    )
    assert np.isnan(match_decisions(rows, twice, WITHIN).propensity).all()


def test_rows_of_a_variant_that_sends_by_a_fixed_rule_are_marked() -> None:
    rows = _rows((1, None, "none", 0), (2, 10, "cashback", 5000), (3, 11, "cashback", 5000), (4, None, "none", 0))
    decisions = _decisions(
        (1, T, "none", 0, 1.0, False, None),  # the holdout: every decision of it has propensity 1
        (2, T, "cashback", 5000, 1.0, True, 10),  # the policy's pinned arm: 1, but the variant explores elsewhere
        (3, T, "cashback", 5000, 0.25, True, 11),  # random
        (4, T, "none", 0, 1.0, False, None),  # no experiment
        (5, T, "cashback", 5000, 0.96, False, None),  # the policy's greedy arm (not sent)
    ).assign(variant=["holdout", "policy", "random", None, "policy"])
    matched = match_decisions(rows, decisions, WITHIN)
    np.testing.assert_array_equal(matched.propensity, [1.0, 1.0, 0.25, 1.0])
    assert list(matched.variant) == ["holdout", "policy", "random", None]
    np.testing.assert_array_equal(matched.fixed_variant(decisions), [True, False, False, False])


def test_a_propensity_outside_0_1_is_refused_naming_it() -> None:
    rows = _rows((1, None, "none", 0))
    with pytest.raises(LoggedPropensityError, match=r"in \(0, 1\], found 0\.0"):
        match_decisions(rows, _decisions((1, T, "none", 0, 0.0, False, None)), WITHIN)


def test_no_decisions_leave_every_row_to_the_estimate() -> None:
    rows = _rows((1, None, "none", 0), (2, 10, "cashback", 5000))
    assert np.isnan(
        match_decisions(rows, _decisions((9, T, "none", 0, 1.0, False, None)).iloc[:0], WITHIN).propensity
    ).all()


def test_logged_propensities_correct_what_an_estimate_of_a_rule_driven_history_gets_wrong() -> None:
    """A history like the loop's: 70% of players get the marketers' rule (arm 1 for the players who would
    re-engage anyway, else no offer; propensity 1), 30% a uniform random arm (1/3). The estimated propensity
    of a model that cannot see the rule's driver (the share of each arm overall) biases the doubly robust
    value of "arm 1 for everyone"; the logged one does not, over 40 seeds, whatever the (wrong) outcome model."""
    n, k = 20_000, 3
    errors: dict[str, list[float]] = {"logged": [], "estimated": []}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        keen = rng.random(n) < 0.4  # what the marketers see and the model does not
        base = np.where(keen, 0.5, 0.1)
        effect = np.array([0.0, 0.05, 0.10])
        random_variant = rng.random(n) < 0.3
        rule = np.where(keen, 1, 0)
        arm = np.where(random_variant, rng.integers(0, k, n), rule)
        logged_p = np.where(arm == rule, 0.7 + 0.3 / k, 0.3 / k)  # over the variant's draw, as logged
        y = (rng.random(n) < base + effect[arm]).astype(float)
        shares = np.bincount(arm, minlength=k) / n
        mu = np.full((n, k), y.mean())  # an outcome model that knows nothing
        target = np.zeros((n, k))
        target[:, 1] = 1.0
        truth = float((base + effect[1]).mean())
        for name, p in (("logged", logged_p), ("estimated", shares[arm])):
            num, _ = row_terms(LoggedData(arm, p, np.arange(n)), y, mu, target)["dr"]
            errors[name].append(float(num.mean()) - truth)
    logged, estimated = np.array(errors["logged"]), np.array(errors["estimated"])
    se = logged.std(ddof=1) / np.sqrt(len(logged))
    assert abs(logged.mean()) < 3 * se  # unbiased
    assert abs(estimated.mean()) > 10 * se and abs(estimated.mean()) > 0.05  # biased by the rule's driver
