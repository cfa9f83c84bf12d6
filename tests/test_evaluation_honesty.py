"""The evaluation judges a model with an outcome model that is not the judged one, says how much of each
estimate rests on evidence, and picks the fallback without being fooled by noise (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import as_built_config
from test_training_units import synthetic_decisions, synthetic_logs

from training import evaluation as ev
from training.baselines import one_hot
from training.ope import LoggedData, bootstrap_weights


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    return as_built_config(tmp_path_factory.mktemp("honesty"))


def test_the_evaluation_outcome_model_never_sees_the_rows_it_scores(cfg) -> None:
    """Cross-fitted: changing every outcome of one fold's players changes no prediction for that fold, and
    does change the other fold's (which learnt from them)."""
    from training.arms import discover_arms
    from training.data import player_folds
    from training.nuisance import MIN_FOLD_ROWS, cross_fitted_outcomes

    frame = synthetic_decisions(cfg, 8_000, seed=11)
    frame["player_id"] = np.arange(len(frame)) // 2  # two decisions per player
    arms = discover_arms(frame, None, min_support=10).table
    small = cfg.model_copy(
        update={
            "training": cfg.training.model_copy(
                update={"model": cfg.training.model.model_copy(update={"n_estimators": 30, "min_child_samples": 100})}
            )
        }
    )
    first = cross_fitted_outcomes(small, frame, arms)
    fold = player_folds(frame["player_id"].to_numpy(), 2, small.training.seed)
    assert set(pd.Series(fold).groupby(frame["player_id"]).nunique()) == {1}  # a player is in one fold
    flipped = frame.copy()
    zero = fold == 0
    flipped.loc[zero, "reengaged"] = ~flipped.loc[zero, "reengaged"]
    flipped.loc[zero, "deposits"] = np.where(flipped.loc[zero, "reengaged"], 50_000.0, 0.0)
    second = cross_fitted_outcomes(small, flipped, arms)
    assert first is not None and second is not None
    np.testing.assert_array_equal(first.predictions.p_reengage[zero], second.predictions.p_reengage[zero])
    assert np.abs(first.predictions.p_reengage[~zero] - second.predictions.p_reengage[~zero]).max() > 0.05
    assert cross_fitted_outcomes(small, frame.head(2 * MIN_FOLD_ROWS - 1), arms) is None
    # after a drift of login_reward from the second campaign, the rows that sent it before are not learnt from
    from core.config import StaleEvidence

    frame["campaign_at"] = pd.to_datetime(np.where(np.arange(len(frame)) < 4_000, "2026-01-05", "2026-01-12"))
    stale = StaleEvidence(since="2026-01-05", event_types=["login_reward"])
    drifted = small.model_copy(update={"training": small.training.model_copy(update={"stale_evidence": stale})})
    before = cross_fitted_outcomes(drifted, frame, arms)
    old = (frame["campaign_at"] <= "2026-01-05") & (frame["event_type"] == "login_reward")
    changed = frame.copy()
    changed.loc[old, "reengaged"] = ~changed.loc[old, "reengaged"]
    changed.loc[old, "deposits"] = np.where(changed.loc[old, "reengaged"], 50_000.0, 0.0)
    after = cross_fitted_outcomes(drifted, changed, arms)
    assert before is not None and after is not None and "stale" in before.note
    np.testing.assert_array_equal(before.predictions.p_reengage, after.predictions.p_reengage)
    assert np.abs(cross_fitted_outcomes(small, changed, arms).predictions.p_reengage - first.predictions.p_reengage
                  ).max() > 0.05  # fmt: skip  # without the stale evidence, the same change moves them


def mean_difference(value: np.ndarray, w: np.ndarray):
    """Bootstrap draws of the mean of ``value`` under one arm per row minus under another."""
    rows = np.arange(len(value))
    return lambda a, b: (w @ (value[rows, a] - value[rows, b])) / w.sum(axis=1)


def test_the_fallback_is_the_segment_rule_only_where_segments_really_differ() -> None:
    """Chosen and valued on the same noisy rows, the segment rule always looks better than the best single
    arm (it picks noise). Out of fold, over 20 worlds: where all segments share one best arm the simpler rule
    is kept in most (at least 16), and where each segment has its own best arm the segment rule is chosen
    in most (at least 16)."""
    n, k = 40_000, 6
    chosen = {"flat": 0, "distinct": 0}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        segment = rng.choice(list("abcdefgh"), n)
        player = np.arange(n)
        flat = np.tile([0.0, 10.0, 9.0, 9.0, 9.0, 9.0], (n, 1)) + rng.normal(0, 300, (n, k))
        if seed == 0:
            rule = pd.Series(segment).map(ev.best_arm_per_segment(flat, segment)).to_numpy(int)
            assert flat[np.arange(n), rule].mean() > flat[:, ev.best_single_arm(flat)].mean()  # the bias
        distinct = np.zeros((n, k))
        distinct[:, 1] = 10.0
        distinct[np.arange(n), np.searchsorted(list("abcdefgh"), segment) % 5 + 1] += 40.0
        distinct += rng.normal(0, 300, (n, k))
        w = bootstrap_weights(player, 200, seed)
        for name, value in (("flat", flat), ("distinct", distinct)):
            chosen[name] += (
                ev.fallback_rule(value, segment, player, mean_difference(value, w), level=0.9, seed=1)[0]
                == ev.PER_SEGMENT
            )
    assert chosen["flat"] <= 4
    assert chosen["distinct"] >= 16
    # a segment rule whose own estimate is unreliable is never the fallback, however clear its advantage
    unreliable = ev.fallback_rule(
        distinct, segment, player, mean_difference(distinct, w), level=0.9, seed=1, segment_rule_reliable=False
    )
    assert unreliable[0] == ev.BEST_SINGLE and unreliable[1]["advantage_low"] > 0


def test_support_says_when_an_estimate_rests_on_the_model_alone() -> None:
    data, y, _, k = synthetic_logs(20_000, seed=8)
    n = len(y)
    rare = int(np.argmin(np.bincount(data.logged, minlength=k)))
    eval_data = ev.EvalData(data, {"net_value": y}, np.zeros(n), 1.0, max_weight=3.0)
    policies = {"logged": one_hot(data.logged, k), "rare": one_hot(np.full(n, rare), k)}
    s = ev.support_table(eval_data, policies, np.ones(k, bool)).set_index("policy")
    heavy = 1.0 / data.propensity > 3.0
    at_rare = data.logged == rare
    w = 1.0 / data.propensity
    assert 0 < s.loc["rare", "uncorrected"] == pytest.approx(w[at_rare & heavy].sum() / w[at_rare].sum())
    assert s.loc["logged", "matched"] == n and s.loc["rare", "matched"] == at_rare.sum()
    assert s.loc["logged", "ess"] > s.loc["rare", "ess"]
    assert s.loc["logged", "reliable"] and s.loc["rare", "reliable"] == (s.loc["rare", "ess"] >= ev.MIN_ESS)
    without = np.ones(k, bool)
    without[rare] = False  # the same policies when the rare arm has no support
    s = ev.support_table(eval_data, policies, without).set_index("policy")
    assert s.loc["rare", "unsupported"] == 1.0 and not s.loc["rare", "reliable"]
    assert s.loc["logged", "unsupported"] == pytest.approx(at_rare.mean()) and not s.loc["logged", "reliable"]


def test_intervals_have_the_configured_coverage() -> None:
    """Over 200 independent logs, the 90% interval of the doubly robust value covers the true value in
    roughly 90% of them (binomial: 170 to 193), and the 50% one in roughly half."""
    covered = {0.9: 0, 0.5: 0}
    for s in range(200):
        data, y, mean, k = synthetic_logs(2_000, seed=100 + s, noise=1.0)
        target = one_hot(mean.argmax(axis=1), k)
        truth = (target * mean).sum(axis=1).mean()
        num, den = ev.row_terms(data, y, mean + 0.3, target)["dr"]
        w = ev.bootstrap_weights(data.cluster, 200, seed=s)
        draws = ev._draws(w, num, den)
        for level in covered:
            _, low, high = ev._summary(draws, level)
            covered[level] += bool(low <= truth <= high)
    assert 170 <= covered[0.9] <= 193
    assert 80 <= covered[0.5] <= 120


def test_logged_data_rejects_rows_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one entry per row"):
        LoggedData(np.zeros(3, int), np.ones(2), np.arange(3))


def hurdle_world(n: int, seed: int):
    """Logged decisions of three arms (0 = no offer) with a propensity that depends on ``x``; a player returns
    with ``p(x, a)`` and then deposits a heavy-tailed amount around ``habit(x) x factor(a)``. The outcome model
    knows ``p`` exactly but puts arm 1's deposit size 40% low: what a cross-fitted model on a small world did."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    logits = np.column_stack([np.ones(n), 1.5 * x, 1 - 1.5 * x])
    e = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a = (rng.uniform(size=n)[:, None] > np.cumsum(e, axis=1)).sum(axis=1)
    p = np.column_stack([0.05 + 0.05 * x, 0.12 + 0.1 * x, 0.10 + 0.05 * x])
    size = (20_000 + 40_000 * x)[:, None] * np.array([1.0, 1.6, 1.0])
    rows = np.arange(n)
    back = rng.uniform(size=n) < p[rows, a]
    deposits = np.where(back, size[rows, a] * np.exp(rng.normal(-0.5, 1.0, n)), 0.0)  # mean: the size
    arms = pd.DataFrame({"arm": ["none", "a", "b"]})
    model = ev.ArmPredictions(arms, p, p * size * np.array([1.0, 0.6, 1.0]), np.zeros((n, 3)))
    y = {"reengaged": back.astype(float), "net_value": deposits, "reward_cost": np.zeros(n)}
    data = ev.EvalData(LoggedData(a, e[rows, a], rows), y, np.zeros(n).astype(str), 1.0, 20.0, 0.9)
    truth = (p * size)[:, 1].mean() - (p * size)[:, 0].mean()  # arm 1 for everyone, against no offer
    return data, model, truth


def test_the_size_calibrated_estimate_covers_where_the_outcome_models_sizes_are_wrong() -> None:
    """Over 60 worlds, the 90% interval of "dr-sized" for sending arm 1 to everyone covers the truth in about
    90% of them (at least 48: binomial, 3 standard deviations), although the outcome model puts that arm's
    deposit size 40% low; "dr-hurdle", which takes the model's sizes, covers it in at most a tenth."""
    covered = {"dr-sized": 0, "dr-hurdle": 0}
    for s in range(60):
        data, model, truth = hurdle_world(6_000, seed=500 + s)
        n = len(data.segment)
        arm1, none = one_hot(np.ones(n, int), 3), one_hot(np.zeros(n, int), 3)
        w = ev.bootstrap_weights(data.logged.cluster, 200, seed=s)
        draws = {"dr-sized": ev.sized_draws(model, data, arm1, w) - ev.sized_draws(model, data, none, w)}
        mu = ev.outcome_models(model, 1.0)["net_value"]
        y = ev.hurdle_outcome(model, data)
        terms = [ev.row_terms(data.logged, y, mu, t, max_weight=20.0)["dr-switch"] for t in (arm1, none)]
        draws["dr-hurdle"] = ev._draws(w, *terms[0]) - ev._draws(w, *terms[1])
        for name, d in draws.items():
            _, low, high = ev._summary(d, 0.9)
            covered[name] += bool(low <= truth <= high)
    assert covered["dr-sized"] >= 48, covered
    assert covered["dr-hurdle"] <= 6, covered


def drifted_world(seed: int, *, post_rows: int = 1_000) -> tuple[dict, np.ndarray]:
    """Five weekly campaigns of uniformly random offers (four of 4,000 rows, the last of ``post_rows``) in which
    cashback lost most of its value in the last week; the judged model still believes the weeks before."""
    from scoring.ensemble import Spread
    from scoring.heads import ArmPredictions
    from training.policy import Choice
    from training.scorer import Judgement, Scores

    rng = np.random.default_rng(seed)
    names = ["none", "cashback@10000", "deposit_bonus@10000", "login_reward@3000", "free_spins@20"]
    arms = pd.DataFrame({"arm": names, "event_type": [a.split("@")[0] for a in names], "supported": True})
    campaign = np.repeat(np.arange(5), [4_000] * 4 + [post_rows])
    n, k = len(campaign), len(names)
    before = np.array([0.10, 0.30, 0.22, 0.18, 0.19])  # re-engagement; a returner deposits 500: cashback +100
    p = np.tile(before, (n, 1))
    p[campaign == 4, 1] = 0.16  # the drift: cashback keeps 30% of its pull (+30), deposit_bonus is best (+60)
    logged = rng.integers(0, k, n)
    reengaged = rng.uniform(size=n) < p[np.arange(n), logged]
    y = 500.0 * reengaged
    point = ArmPredictions(arms, np.tile(before, (n, 1)), 500.0 * np.tile(before, (n, 1)), np.zeros((n, k)))
    scores = Scores(arms, point, 1.0)
    pick = np.full(n, 1)  # the model believes in cashback still
    judgement = Judgement(Choice(pick, np.full(n, 100.0), np.zeros(n), 0.0), pick, Spread(np.zeros(n), np.zeros(n)),
                          np.full(n, 0.5))  # fmt: skip
    ys = {"reengaged": reengaged.astype(float), "net_value": y, "reward_cost": np.zeros(n)}
    logs = LoggedData(logged, np.full(n, 1 / k), np.arange(n))
    world = {"scores": scores, "judgement": judgement, "logs": logs, "y": ys, "arms": arms}
    return world, campaign


def evaluated(world: dict, rows: np.ndarray, current: np.ndarray | None) -> ev.Evaluation:
    from training.policy import Choice
    from training.scorer import Judgement

    j, logs = world["judgement"], world["logs"]
    data = ev.EvalData(
        LoggedData(logs.logged[rows], logs.propensity[rows], logs.cluster[rows]),
        {q: v[rows] for q, v in world["y"].items()},
        np.full(int(rows.sum()), "s"), 1.0, 20.0, 0.9, current,
    )  # fmt: skip
    c = j.choice
    judgement = Judgement(Choice(c.arm[rows], c.gain[rows], c.cost[rows], 0.0), j.judged_arm[rows],
                          type(j.spread)(j.spread.net[rows], j.spread.reengage[rows]), j.confidence[rows])  # fmt: skip
    return ev.evaluate(world["scores"].subset(rows), judgement, data, n_boot=20, seed=1)


def test_after_a_drift_the_other_offers_keep_their_evidence_and_policies_are_valued_on_the_weeks_since() -> None:
    """Cashback fell from +100 to +30 in the last of five campaigns; the best offer now is deposit_bonus (+60),
    then free_spins (+45). Over 20 worlds: valued on all five campaigns, cashback looks best in every one; on
    the last campaign alone (its 1,000 rows), the right offer is picked in some; with the weeks before the
    drift stale for cashback alone, in nearly all. And every policy's value is its value on the last
    campaign's rows: the stale weeks choose arms, they do not value policies."""
    right = {"everything": 0, "since only": 0, "stale marked": 0}
    for seed in range(20):
        world, campaign = drifted_world(seed)
        everywhere = np.ones(len(campaign), bool)
        current = ~((campaign < 4)[:, None] & (world["arms"]["event_type"] == "cashback").to_numpy()[None, :])
        runs = {
            "everything": evaluated(world, everywhere, None),
            "since only": evaluated(world, campaign == 4, None),
            "stale marked": evaluated(world, everywhere, current),
        }
        for name, e in runs.items():
            right[name] += e.estimated_baselines[ev.BEST_SINGLE]["all"] == "deposit_bonus@10000"
        if seed == 0:
            since, marked = runs["since only"].values, runs["stale marked"].values
            for policy in (ev.RANDOM, ev.LEARNED):
                a = since[(since["policy"] == policy) & (since["estimator"] == "dr")]
                b = marked[(marked["policy"] == policy) & (marked["estimator"] == "dr")]
                np.testing.assert_allclose(a["estimate"].to_numpy(), b["estimate"].to_numpy(), atol=1e-9)
            assert runs["stale marked"].support.set_index("policy").loc[ev.RANDOM, "matched"] == pytest.approx(
                runs["since only"].support.set_index("policy").loc[ev.RANDOM, "matched"]
            )
    assert right["everything"] == 0
    assert right["stale marked"] >= 19
    assert right["since only"] <= 15


def test_stale_evidence_marks_its_event_types_up_to_its_time_and_refuses_a_time_after_every_campaign() -> None:
    from core.config import ConfigError, StaleEvidence
    from training.stale import current_evidence

    rows = pd.DataFrame({"campaign_at": pd.to_datetime(["2026-01-05", "2026-01-12", "2026-01-19"])})
    arms = pd.DataFrame({"arm": ["none", "cashback@1", "cashback@2", "spins@5"],
                         "event_type": ["none", "cashback", "cashback", "spins"]})  # fmt: skip
    stale = StaleEvidence(since="2026-01-12T00:00:00+00:00", event_types=["cashback"])
    assert current_evidence(None, rows, arms) is None
    np.testing.assert_array_equal(
        current_evidence(stale, rows, arms),
        [[True, False, False, True], [True, False, False, True], [True, True, True, True]],
    )
    late = StaleEvidence(since="2026-01-19T00:00:00", event_types=["cashback"])
    with pytest.raises(ConfigError, match=r"since 2026-01-19 00:00 is at or after every held-out campaign"):
        current_evidence(late, rows, arms)


def test_an_arm_without_any_credited_row_is_never_the_best() -> None:
    """NaN marks a (row, arm) cell that is not evidence (no support, or stale): np.argmax of nanmeans took an
    all-NaN column for the best; an arm's mean is over its own cells."""
    value = np.array([[0.0, 5.0, np.nan, 1.0], [0.0, 3.0, np.nan, 9.0], [0.0, np.nan, np.nan, 5.0]])
    assert ev.best_single_arm(value) == 3  # arm 3: mean 5; arm 1: mean 4 over its two cells; arm 2: none
    value[2, 1] = 8.0
    assert ev.best_single_arm(value) == 1  # now 5.33 against 4
    assert ev.best_arm_per_segment(value, np.array(["a", "a", "b"])) == {"a": 3, "b": 1}
