"""The pure parts of the roll-out: the canary carved from the policy's players (every other variant keeps
its own), the canary's verdict on known effects, and the outcome check that sees a world answering less
than the model predicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring.canary import Verdict, canary_verdict, undecided_after_drift
from monitoring.outcome_drift import (
    LiftChange,
    OngoingDrift,
    check_lift_change,
    check_outcomes,
    drifted_since,
    ongoing_drift,
)
from monitoring.rollout import DRIFT_FIGURE, drift_unknown_to
from serving.experiments import Experiment, assign, with_challenger, without_challenger

BASE = Experiment("e1", "salt", {"policy": 0.5, "random": 0.25, "holdout": 0.25})


def test_the_canary_takes_its_share_of_the_policys_players_and_no_one_else() -> None:
    ids = np.arange(200_000, dtype=np.int64)
    before = assign(ids, BASE)
    canary = with_challenger(BASE, 0.2, "e1+canary-v2")
    during = assign(ids, canary)
    assert (during[before != "policy"] == before[before != "policy"]).all()  # the other variants keep their players
    moved = during[before == "policy"]
    assert set(moved) == {"policy", "challenger"}
    assert (moved == "challenger").mean() == pytest.approx(0.2, abs=0.01)
    after = assign(ids, without_challenger(canary, "e1+after-v2"))
    assert (after == before).all()  # the verdict in, everyone is back where they were
    alone = with_challenger(None, 0.2, "canary-v2")
    assert alone.shares == {"policy": 0.8, "challenger": 0.2}


def players(effect: float, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    variant = np.where(np.arange(2 * n) < n, "policy", "challenger")
    pre = rng.gamma(0.5, 2000, 2 * n)
    net = 0.5 * pre + rng.normal(500, 1500, 2 * n) + np.where(variant == "challenger", effect, 0.0)
    return pd.DataFrame({"variant": variant, "net_value": net, "net_value_pre": pre})


def test_the_canary_verdict_promotes_a_better_model_rolls_back_a_worse_one_and_waits_for_players() -> None:
    shares = {"policy": 0.5, "challenger": 0.5}
    better = canary_verdict(players(300.0, 4000, 1), shares, margin=0.1, min_players=500)
    worse = canary_verdict(players(-600.0, 4000, 2), shares, margin=0.1, min_players=500)
    early = canary_verdict(players(300.0, 200, 3), shares, margin=0.1, min_players=500)
    assert better.action == "promote" and better.figures["effect_lower"] > -0.1 * abs(better.figures["champion_mean"])
    assert worse.action == "roll back" and worse.figures["effect_upper"] < 0
    assert early.action == "wait" and "too few" in early.reason


@pytest.mark.parametrize(("effect", "drifted", "action"), [(250.0, True, "promote"), (250.0, False, "roll back"),
                                                           (-250.0, True, "roll back")])  # fmt: skip
def test_an_undecided_canary_is_promoted_only_over_a_drifted_champion_and_only_when_it_measured_no_worse(
    effect: float, drifted: bool, action: str
) -> None:
    noisy = players(effect, 600, 10)
    noisy["net_value"] += np.random.default_rng(11).normal(0, 5000, len(noisy))  # too noisy to decide
    v = canary_verdict(noisy, {"policy": 0.5, "challenger": 0.5}, margin=0.1, min_players=500)
    assert v.action == "wait" and v.reason.startswith("undecided")
    assert np.sign(v.figures["effect"]) == np.sign(effect)
    out = undecided_after_drift(Verdict("roll back", f"no verdict after 3 runs ({v.reason})", v.figures),
                                champion_drifted=drifted)  # fmt: skip
    assert out.action == action


def decisions(n: int, realised_lift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    held = rng.random(n) < 0.2
    base = 0.03
    reengaged = rng.random(n) < np.where(held, base, base + realised_lift)
    return pd.DataFrame({
        "decided_at": pd.Timestamp("2026-01-05") + pd.to_timedelta(rng.integers(0, 7, n), unit="D"),
        "event_type": np.where(held, "none", "cashback"), "reward": np.where(held, 0, 10_000),
        "holdout": held, "explored": False, "policy_arm": "cashback@10000", "variant": None,
        "reengaged": reengaged, "incremental_reengage": 0.05,
    })  # fmt: skip


def test_the_outcome_check_alarms_when_offers_buy_far_less_than_predicted() -> None:
    kept = check_outcomes(decisions(20_000, 0.05, 1), days=7, z_alert=3, ratio_floor=0.6)
    lost = check_outcomes(decisions(20_000, 0.015, 2), days=7, z_alert=3, ratio_floor=0.6)
    assert kept is not None and lost is not None
    assert not kept.drifted and abs(kept.realised - 0.05) < 4 * kept.se
    assert lost.drifted and lost.z < -3
    assert check_outcomes(decisions(20_000, 0.05, 3).assign(holdout=False), days=7, z_alert=3, ratio_floor=0.6) is None


def weeks_of(lifts: list[dict[str, float]], n: int, seed: int) -> pd.DataFrame:
    """Weeks of decisions: a fifth held out, the rest offered one of the event types with its lift."""
    parts = []
    for i, by_type in enumerate(lifts):
        rng = np.random.default_rng(seed + i)
        types = list(by_type)
        held = rng.random(n) < 0.2
        event = np.where(held, "none", rng.choice(types, n))
        lift = np.array([0.0 if e == "none" else by_type[e] for e in event])
        parts.append(pd.DataFrame({
            "decided_at": pd.Timestamp("2026-01-05") + pd.Timedelta(days=7 * i), "event_type": event,
            "reward": np.where(held, 0, 10_000), "holdout": held, "explored": False, "variant": None,
            "policy_arm": "cashback@10000", "reengaged": rng.random(n) < 0.03 + lift,
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_the_lift_check_sees_one_event_type_lose_its_pull_but_not_players_tiring_of_all() -> None:
    kwargs = {"days": 7, "reference_weeks": 4, "z_alert": 3.0, "ratio_floor": 0.6}
    steady = {"cashback": 0.05, "free_spins": 0.04, "login_reward": 0.03}
    quiet = [check_lift_change(weeks_of([steady] * 5, 20_000, s), **kwargs) for s in range(0, 50, 10)]
    assert all(q is not None and not q.drifted for q in quiet)  # five quiet worlds: no alarm
    tired = [{k: v * f for k, v in steady.items()} for f in (1.0, 0.9, 0.8, 0.7, 0.5)]
    fatigue = check_lift_change(weeks_of(tired, 20_000, 3), **kwargs)  # every type loses pull alike
    assert fatigue is not None and not fatigue.drifted and fatigue.change_others < 0.7
    hit = check_lift_change(weeks_of([steady] * 4 + [{**steady, "cashback": 0.015}], 20_000, 7), **kwargs)
    assert hit is not None and hit.drifted and hit.event_type == "cashback" and hit.z < -3
    assert abs(hit.current - 0.015) < 4 * hit.se
    assert check_lift_change(weeks_of([steady], 20_000, 1), **kwargs) is None  # no week before: nothing to compare


def test_retraining_after_a_drift_is_judged_on_the_weeks_since_it_began() -> None:
    kwargs = {"days": 7, "reference_weeks": 4, "z_alert": 3.0, "ratio_floor": 0.6}
    steady = {"cashback": 0.05, "free_spins": 0.04, "login_reward": 0.03}
    hit = {**steady, "cashback": 0.015}
    checks = [check_lift_change(weeks_of([steady] * 4 + [hit] * k, 20_000, 7), **kwargs) for k in (0, 1, 2)]
    assert [c is not None and c.drifted for c in checks] == [False, True, True]
    # the window of each check is its latest week: decided after the week before it
    assert [pd.Timestamp(c.since) for c in checks] == [pd.Timestamp("2026-01-19") + pd.Timedelta(days=7 * k)
                                                     for k in (0, 1, 2)]  # fmt: skip

    def runs(*found: LiftChange | None) -> pd.DataFrame:
        figures = [json.dumps({f"lift_{k}": v for k, v in c.figures().items()} if c else {}) for c in found]
        return pd.DataFrame({"figures": figures})

    assert drifted_since(runs(checks[0], checks[1], checks[2])) == pd.Timestamp(checks[1].since)  # since it began
    assert ongoing_drift(runs(checks[0], checks[1], checks[2])) == OngoingDrift(pd.Timestamp(checks[1].since),
                                                                                ("cashback",))  # fmt: skip
    assert drifted_since(runs(checks[1], checks[0])) is None  # the latest run found none: the drift is over
    assert drifted_since(runs(checks[1], None)) is None  # nor can a run without a lift check say it goes on
    assert drifted_since(runs()) is None
    # a canary whose retraining did not know of the ongoing drift is withdrawn; one judged since it stays
    events = pd.DataFrame(
        {
            "kind": ["retrained", "retrained"],
            "version": [3, 4],
            "figures": [json.dumps({"gap": 1.0}), json.dumps({DRIFT_FIGURE: "since 2026-01-26"})],
        }
    )
    drifting = runs(checks[0], checks[1], checks[2])
    assert drift_unknown_to(drifting, events, 3) == pd.Timestamp(checks[1].since)
    assert drift_unknown_to(drifting, events, 4) is None
    assert drift_unknown_to(runs(checks[1], checks[0]), events, 3) is None  # the drift is over


def test_the_drifted_offers_stay_stale_evidence_while_campaigns_before_the_drift_are_held_out(tmp_path) -> None:
    """Retraining's configuration over a drift's life: nothing before it; the drifted type's rows before it
    stale (and a reason) while the alarm lasts, and while campaigns before it are held out, the alarm over or
    not; once every held-out campaign is since an ended drift, stale for the outcome model alone, no reason."""
    from conftest import as_built_config

    from core.config import sqlite_url
    from monitoring.rollout import judged_since_drift
    from system_db.model_events import LoopRecord
    from system_db.store import SystemStore

    cfg = as_built_config(tmp_path / "home")
    cfg = cfg.model_copy(update={"system_db_url": sqlite_url(tmp_path / "system.db")})
    record = LoopRecord(SystemStore(cfg.system_db_url))
    path = cfg.path("training", "training_set.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)

    def campaigns(n: int) -> None:
        at = pd.Timestamp("2026-01-05") + pd.to_timedelta(7 * np.arange(n), unit="D")
        pd.DataFrame({"campaign_at": at}).to_parquet(path)

    def run(day: str, drifted: bool) -> None:
        since = str(pd.Timestamp(day) - pd.Timedelta(days=7))
        figures = {"lift_drifted": drifted, "lift_since": since, "lift_event_type": "cashback"}
        record.monitor_run(pd.Timestamp(day).to_pydatetime(), drifted, [], figures, None)

    campaigns(5)
    run("2026-01-26", False)
    assert judged_since_drift(cfg) == (cfg, "")  # no drift yet
    run("2026-02-02", True)  # the campaign of 01-26 is the first after the drift (since 01-26 minus a week)
    run("2026-02-09", True)
    got, why = judged_since_drift(cfg)
    assert got.training.stale_evidence is not None
    assert got.training.stale_evidence.event_types == ["cashback"]
    assert got.training.stale_evidence.since == pd.Timestamp("2026-01-26")
    assert "1 campaign decided since" in why
    run("2026-02-16", True)
    campaigns(7)
    got, why = judged_since_drift(cfg)
    assert got.training.stale_evidence is not None and "3 campaigns decided since" in why
    campaigns(9)  # every held-out campaign is since the drift, which goes on: still the drift's retraining
    assert "all since" in judged_since_drift(cfg)[1]
    run("2026-02-23", False)  # the alarm is over (the lift check's reference weeks are past the drift too)
    got, why = judged_since_drift(cfg)
    assert got.training.stale_evidence is not None and why == ""
    campaigns(7)  # (were campaigns from before it still held out, they would still be stale)
    assert "3 campaigns decided since" in judged_since_drift(cfg)[1]
