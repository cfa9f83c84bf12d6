"""The fallback rule in force is kept unless the evaluation's new choice beats it (training.promotion.
settle_fallback): picking the best of many equal arms on one slice of campaigns picks noise, and a rule that
serves should not be replaced by noise; a truly better arm still replaces it."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from scoring.ensemble import Spread
from scoring.heads import ArmPredictions
from training import evaluation as ev
from training.evaluation_report import verdict
from training.fit import Prepared
from training.judge import Judged
from training.ope import LoggedData
from training.policy import Choice
from training.promotion import promotion_decision, settle_fallback
from training.scorer import Judgement, Scores
from training.truth import ArmTruth

NO_CHAMPION = cast(Prepared, None)  # the promotion decision reads the prepared data only to compare a champion
NAMES = ["none", "cashback@10000", "deposit_bonus@10000", "login_reward@3000", "free_spins@5000"]


def judged(seed: int, pull: list[float], n: int = 8_000) -> Judged:
    """Uniformly random offers among the arms (propensity 1/5, known), re-engagement ``pull`` per arm, a
    returner deposits 500 KRW; the outcome model knows the pulls."""
    rng = np.random.default_rng(seed)
    arms = pd.DataFrame({"arm": NAMES, "event_type": [a.split("@")[0] for a in NAMES], "supported": True})
    k = len(NAMES)
    p = np.tile(np.asarray(pull), (n, 1))
    logged = rng.integers(0, k, n)
    back = rng.uniform(size=n) < p[np.arange(n), logged]
    point = ArmPredictions(arms, p, 500.0 * p, np.zeros((n, k)))
    scores = Scores(arms, point, 1.0)
    pick = np.full(n, 1)
    judgement = Judgement(Choice(pick, np.zeros(n), np.zeros(n), 0.0), pick, Spread(np.zeros(n), np.zeros(n)),
                          np.full(n, 0.5))  # fmt: skip
    y = {"reengaged": back.astype(float), "net_value": 500.0 * back, "reward_cost": np.zeros(n)}
    data = ev.EvalData(LoggedData(logged, np.full(n, 1 / k), np.arange(n)), y, np.full(n, "s"), 1.0, 20.0, 0.9)
    truth = ArmTruth(p, 500.0 * p, np.zeros((n, k)), np.ones(n, bool))
    evaluation = ev.evaluate(scores, judgement, data, truth=truth, n_boot=100, seed=seed)
    rows = pd.DataFrame({"player_id": np.arange(n), "segment": "s"})
    return Judged(evaluation, rows, data, scores, truth, point)


def test_a_new_choice_among_equal_arms_does_not_replace_the_rule_in_force() -> None:
    served = {"all": "cashback@10000"}
    changed, kept = 0, 0
    for seed in range(20):
        j = judged(seed, [0.10, 0.20, 0.20, 0.20, 0.20])
        settled = settle_fallback(j, served, bootstrap=100, seed=seed)
        new = j.evaluation.estimated_baselines[j.evaluation.fallback]
        if new != served:
            changed += 1
            kept += settled.kept and settled.rule == served
    assert changed >= 10  # the evaluation alone would have changed the rule in most worlds: noise
    assert kept >= changed - 2  # the guard kept the rule in force (a 5% test each, at most 2 slip)


def test_a_truly_better_arm_replaces_the_rule_in_force_and_the_reason_says_so() -> None:
    served = {"all": "cashback@10000"}
    replaced = 0
    for seed in range(10):
        j = judged(seed, [0.10, 0.20, 0.20, 0.30, 0.20])  # login_reward: +50 KRW per candidate
        settled = settle_fallback(j, served, bootstrap=100, seed=seed)
        replaced += settled.rule == {"all": "login_reward@3000"} and not settled.kept
    assert replaced == 10
    promotion = promotion_decision(NO_CHAMPION, j, None, None, settled)
    assert "replaces" in promotion.reason and promotion.kept_rule is None


def test_a_kept_rule_is_named_as_the_fallback() -> None:
    j = judged(3, [0.10, 0.20, 0.20, 0.20, 0.20])
    new = j.evaluation.estimated_baselines[j.evaluation.fallback]["all"]
    served = {"all": next(a for a in NAMES[1:] if a != new)}
    settled = settle_fallback(j, served, bootstrap=100, seed=3)
    assert settled.kept and settled.rule == served
    promotion = promotion_decision(NO_CHAMPION, j, None, None, settled)
    assert f"fall back to {served['all']} for everyone" in promotion.reason
    assert f"fall back to {new} for everyone" not in promotion.reason
    assert "is kept: the new choice does not beat it" in promotion.reason and promotion.kept_rule == served
    lines = verdict(j, promotion, 0.9)
    assert lines.headline.endswith(f"{served['all']} for everyone, the rule in force")
    assert lines.lines[-1].endswith("the fallback (the rule in force) 50 KRW per candidate.")  # 500 x (0.2 - 0.1)


def test_nothing_to_settle_without_a_rule_in_force_or_with_arms_the_model_lacks() -> None:
    j = judged(1, [0.10, 0.20, 0.20, 0.20, 0.20])
    new = j.evaluation.estimated_baselines[j.evaluation.fallback]
    assert settle_fallback(j, None, bootstrap=50, seed=1).rule == new
    gone = settle_fallback(j, {"all": "free_bet@1000"}, bootstrap=50, seed=1)
    assert gone.rule == new and not gone.kept and "free_bet@1000" in str(gone.reason)
