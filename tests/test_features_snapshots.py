"""Feature snapshots: every family's definitions on hand-computed cases, the
segment family against the segmentation's own classify(), and the properties
a point-in-time table must have (no row before registration, chunking and the
as-of never change a value, the families' columns and dtypes exactly)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import as_built_config

from core.config import Config
from features.facts import Facts, load_facts
from features.families import ENTITY, OTHER_GAME, TIMESTAMP, activity, money, profile, promotions, segment
from features.snapshots import player_snapshots, profile_frame, snapshot_days
from platform_db.db import connect
from segmentation import classify, load_player_activity, segment_players
from simulator.run import simulate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
AS_OF = datetime(2024, 6, 1, 12, 0, 0)
DAY = timedelta(days=1)
NAN = float("nan")
FAMILIES = ("activity", "money", "promotions", "segment")


def at(days: float = 0, **parts: float) -> datetime:
    """AS_OF + ``days`` days (negative: before)."""
    return AS_OF + timedelta(days=days, **parts)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return as_built_config(tmp_path_factory.mktemp("home"))


# ------------------------------------------------ raw events -> the facts --
def facts_from_events(
    as_of: datetime,
    cfg: Config,
    players: Sequence[tuple],
    sessions: Sequence[tuple] = (),
    flows: Sequence[tuple] = (),
    offers: Sequence[tuple] = (),
) -> Facts:
    """The facts contract of features/facts.py, built in plain pandas from event lists.

    players (id, created_at, status[, channel, vip_level]); sessions (player_id, started_at, game);
    flows (player_id, type, amount, created_at, offer_id); offers (offer_id, player_id, event_type,
    reward, sent_at, claimed_at).
    """
    ts = pd.Timestamp(as_of)
    attribution = pd.Timedelta(days=cfg.business.attribution_days)

    def day(t: pd.Series) -> pd.Series:
        return ((t - ts) // pd.Timedelta(days=1)).astype("int32")

    columns = [ENTITY, "created_at", "status", "channel", "vip_level"]
    p = pd.DataFrame([(*r, "organic", 0)[:5] for r in players], columns=columns)
    p["created_at"] = p["created_at"].astype("datetime64[us]")
    p = p[p["created_at"] < ts].astype({ENTITY: "int64", "vip_level": "int64"}).sort_values(ENTITY, ignore_index=True)

    s = pd.DataFrame(list(sessions), columns=[ENTITY, "started_at", "game"]).astype({"started_at": "datetime64[us]"})
    s = s[s["started_at"] < ts]
    s["day"] = day(s["started_at"])
    games = cfg.features.games
    s["bucket"] = s["game"].where(s["game"].isin(games), OTHER_GAME)
    g = s.groupby([ENTITY, "day"])
    sd = g.agg(sessions=("game", "size"), first_at=("started_at", "min"), last_at=("started_at", "max"))
    for name in [*games, OTHER_GAME]:
        sd[f"sessions_{name}"] = (s["bucket"] == name).groupby([s[ENTITY], s["day"]]).sum()
    per_game = [f"sessions_{n}" for n in [*games, OTHER_GAME]]
    sd = sd.reset_index()[[ENTITY, "day", "sessions", *per_game, "first_at", "last_at"]]
    sd = sd.astype({ENTITY: "int64", "day": "int32", "sessions": "int32", **dict.fromkeys(per_game, "int32")})

    f = pd.DataFrame(list(flows), columns=[ENTITY, "type", "amount", "created_at", "offer_id"])
    f = f.astype({"created_at": "datetime64[us]", "amount": "float64"})
    f = f[f["created_at"] < ts]
    f["day"] = day(f["created_at"])
    dep, wd, bon = (f.where(f["type"] == k) for k in ("deposit", "withdrawal", "bonus"))
    keys = [f[ENTITY], f["day"]]
    md = pd.DataFrame(
        {
            "deposits_n": dep["amount"].notna().groupby(keys).sum(),
            "deposits_sum": dep["amount"].fillna(0).groupby(keys).sum(),
            "deposit_max": dep["amount"].groupby(keys).max(),
            "withdrawals_n": wd["amount"].notna().groupby(keys).sum(),
            "withdrawals_sum": wd["amount"].fillna(0).groupby(keys).sum(),
            "bonus_sum": bon["amount"].fillna(0).groupby(keys).sum(),
            "last_deposit_at": dep["created_at"].groupby(keys).max(),
        }
    ).reset_index()
    md = md.astype({ENTITY: "int64", "day": "int32", "deposits_n": "int32", "withdrawals_n": "int32"})
    md["last_deposit_at"] = md["last_deposit_at"].astype("datetime64[us]")

    o = pd.DataFrame(list(offers), columns=["offer_id", ENTITY, "event_type", "reward", "sent_at", "applied_at"])
    o = o.astype({"sent_at": "datetime64[us]", "applied_at": "datetime64[us]", "reward": "float64"})
    o = o[o["sent_at"] < ts].reset_index(drop=True)
    o["promotion_id"] = 1
    o["claimed_at"] = o["applied_at"].where(o["applied_at"] < ts)
    o["window_end"] = o["sent_at"] + attribution

    def first_after(events: pd.DataFrame, column: str) -> pd.Series:
        out = []
        for r in o.itertuples():
            times = events.loc[events[ENTITY] == r.player_id, column]
            t = times[(times > r.sent_at) & (times <= r.window_end) & (times < ts)]
            out.append(t.min() if len(t) else pd.NaT)
        return pd.Series(out, index=o.index, dtype="datetime64[us]")

    o["reengaged_at"] = first_after(s, "started_at")
    o["converted_at"] = first_after(f[f["type"] == "deposit"], "created_at")
    paid = f[f["type"] == "bonus"].groupby("offer_id")["amount"].sum()
    o["bonus_paid"] = o["offer_id"].map(paid).fillna(0.0)
    order = ["offer_id", ENTITY, "promotion_id", "sent_at", "event_type", "reward", "claimed_at"]
    order += ["reengaged_at", "converted_at", "bonus_paid", "window_end"]
    o = o[order].astype({"offer_id": "int64", ENTITY: "int64"})
    return Facts(as_of=as_of, players=p, session_days=sd, money_days=md, offers=o)


def snapshots(facts: Facts, cfg: Config, days: np.ndarray | None = None, **kw) -> dict[str, pd.DataFrame]:
    """All chunks concatenated per family."""
    days = snapshot_days(facts, cfg) if days is None else days
    chunks = list(player_snapshots(facts, cfg, days, **kw))
    return {name: pd.concat([c[name] for c in chunks], ignore_index=True) for name in FAMILIES}


def value(frames: dict[str, pd.DataFrame], family: str, player: int, s: int, column: str) -> float:
    f = frames[family]
    row = f[(f[ENTITY] == player) & (f[TIMESTAMP] == pd.Timestamp(AS_OF + s * DAY))]
    assert len(row) == 1, f"player {player} has {len(row)} rows at s={s}"
    return row[column].iloc[0]


def check(frames: dict[str, pd.DataFrame], family: str, player: int, expected: dict[tuple[int, str], float]) -> None:
    got = {k: value(frames, family, player, *k) for k in expected}
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-6, err_msg=str(got))


# ------------------------------------------------------------- snapshot days --
def test_snapshot_days_start_after_the_first_registration_and_end_at_the_as_of(cfg: Config) -> None:
    facts = facts_from_events(AS_OF, cfg, [(1, at(-3.5), "active"), (2, at(-1), "active")])
    np.testing.assert_array_equal(snapshot_days(facts, cfg), [-3, -2, -1, 0])
    # registered exactly at a snapshot time: not yet a player then
    facts = facts_from_events(AS_OF, cfg, [(1, at(-3), "active")])
    np.testing.assert_array_equal(snapshot_days(facts, cfg), [-2, -1, 0])


def test_snapshot_days_honour_history_days_and_since(cfg: Config) -> None:
    facts = facts_from_events(AS_OF, cfg, [(1, at(-40.2), "active")])
    assert snapshot_days(facts, cfg)[0] == -40
    short = cfg.model_copy(update={"features": cfg.features.model_copy(update={"history_days": 7})})
    np.testing.assert_array_equal(snapshot_days(facts, short), np.arange(-7, 1))
    np.testing.assert_array_equal(snapshot_days(facts, cfg, since=at(-2)), [-2, -1, 0])  # at since
    np.testing.assert_array_equal(snapshot_days(facts, cfg, since=at(-2, microseconds=1)), [-1, 0])  # after
    assert snapshot_days(facts, cfg, since=at(-100))[0] == -40
    assert len(snapshot_days(facts, cfg, since=at(1))) == 0
    assert len(snapshot_days(facts_from_events(AS_OF, cfg, []), cfg)) == 0


# ------------------------------------------------------------------ activity --
def test_activity_windows_include_the_bucket_at_t_minus_w_and_exclude_t(cfg: Config) -> None:
    sessions = [
        (1, at(-18, hours=-1), "slots"),  # bucket -19
        (1, at(-17), "slots"),  # exactly T - 7 days at s = -10: inside the 7-day window
        (1, at(-10), "table"),  # exactly T at s = -10: not yet seen
    ]
    facts = facts_from_events(AS_OF, cfg, [(1, at(-100), "active")], sessions)
    fr = snapshots(facts, cfg)
    check(fr, "activity", 1, {
        (-10, "sessions_7d"): 1, (-10, "sessions_30d"): 2, (-10, "sessions_lifetime"): 2,
        (-9, "sessions_7d"): 1, (-9, "sessions_lifetime"): 3,  # bucket -17 left the window, -10 entered
        (-17, "sessions_lifetime"): 1, (-16, "sessions_7d"): 2, (0, "sessions_7d"): 0, (0, "sessions_30d"): 3,
    })  # fmt: skip


def test_activity_days_since_and_tenure_are_fractional_days(cfg: Config) -> None:
    sessions = [(1, at(-6, hours=-6), "slots"), (1, at(-3, hours=-6), "poker"), (1, at(-3, hours=-1), "slots")]
    facts = facts_from_events(AS_OF, cfg, [(1, at(-10, hours=-12), "active")], sessions)
    fr = snapshots(facts, cfg)
    check(fr, "activity", 1, {
        (0, "days_since_last_session"): 3 + 1 / 24, (-1, "days_since_last_session"): 2 + 1 / 24,
        (-3, "days_since_last_session"): 1 / 24,  # bucket -4 holds both sessions; the later one counts
        (-4, "days_since_last_session"): 2.25, (0, "days_since_first_session"): 6.25,
        (-6, "days_since_first_session"): 0.25, (0, "tenure_days"): 10.5, (-10, "tenure_days"): 0.5,
    })  # fmt: skip
    for s in (-7, -8, -9, -10):  # registered, never played yet
        assert np.isnan(value(fr, "activity", 1, s, "days_since_last_session"))
        assert np.isnan(value(fr, "activity", 1, s, "days_since_first_session"))
    assert value(fr, "activity", 1, -10, "sessions_lifetime") == 0


def test_activity_shares_per_game_and_other(cfg: Config) -> None:
    sessions = [(1, at(-5), "slots"), (1, at(-4), "slots"), (1, at(-3), "table"), (1, at(-2), "bingo"),
                (2, at(-2), None)]  # fmt: skip
    players = [(1, at(-30), "active"), (2, at(-30), "active"), (3, at(-30), "active")]
    fr = snapshots(facts_from_events(AS_OF, cfg, players, sessions), cfg)
    check(fr, "activity", 1, {
        (0, "share_slots"): 0.5, (0, "share_table"): 0.25, (0, "share_other"): 0.25, (0, "share_poker"): 0.0,
        (-3, "share_slots"): 1.0, (-2, "share_table"): 1 / 3,
    })  # fmt: skip
    check(fr, "activity", 2, {(0, "share_other"): 1.0, (0, "share_slots"): 0.0})
    never = fr["activity"][fr["activity"][ENTITY] == 3]
    assert never[[f"share_{g}" for g in [*cfg.features.games, OTHER_GAME]]].isna().all().all()
    assert (never["sessions_lifetime"] == 0).all()


# --------------------------------------------------------------------- money --
def test_money_counts_sums_and_last_deposit(cfg: Config) -> None:
    flows = [
        (1, "deposit", 100, at(-40), None),
        (1, "deposit", 300, at(-5, hours=-12), None),
        (1, "deposit", 200, at(-5, hours=-1), None),  # same bucket -6 as the 300
        (1, "withdrawal", 50, at(-1), None),
        (1, "bonus", 70, at(-1), None),
    ]
    players = [(1, at(-60), "active"), (2, at(-60), "active")]
    fr = snapshots(facts_from_events(AS_OF, cfg, players, flows=flows), cfg)
    check(fr, "money", 1, {
        (0, "deposits_n_7d"): 2, (0, "deposits_sum_7d"): 500, (0, "deposits_n_30d"): 2,
        (0, "deposits_n_90d"): 3, (0, "deposits_sum_90d"): 600, (0, "deposits_n_lifetime"): 3,
        (0, "deposits_sum_lifetime"): 600, (0, "deposit_avg"): 200, (0, "deposit_max"): 300,
        (0, "withdrawals_n_lifetime"): 1, (0, "withdrawals_sum_lifetime"): 50, (0, "net_deposits_lifetime"): 550,
        (0, "days_since_last_deposit"): 5 + 1 / 24, (-5, "days_since_last_deposit"): 1 / 24,
        (-6, "deposit_max"): 100, (-6, "deposits_n_30d"): 0, (-6, "days_since_last_deposit"): 34,
        (-1, "net_deposits_lifetime"): 600,
    })  # fmt: skip
    never = fr["money"][fr["money"][ENTITY] == 2]
    assert never[["deposit_avg", "deposit_max", "days_since_last_deposit"]].isna().all().all()
    assert (never["deposits_sum_lifetime"] == 0).all()
    assert np.isnan(value(fr, "money", 1, -40, "deposit_max"))  # the first deposit is at T: not yet seen


# ---------------------------------------------------------------- promotions --
def test_rates_count_resolved_offers_only(cfg: Config) -> None:
    offers = [  # offer_id, player, type, reward, sent, claimed
        (1, 1, "deposit_bonus", 10_000, at(-30), at(-29)),  # claimed, window ends -23
        (2, 1, "free_spins", 5_000, at(-20), None),  # unclaimed: resolved when its window ends at -13
        (3, 1, "free_spins", 15_000, at(-4), None),  # window open at the as-of: never resolved
        (4, 1, "mystery", 1_000, at(-3), at(-2, hours=-1)),  # claimed before its window ends; other type
    ]
    flows = [(1, "deposit", 50_000, at(-28), None), (1, "bonus", 10_000, at(-28), 1)]
    sessions = [(1, at(-29, hours=-1), "slots"), (1, at(-18), "poker")]
    facts = facts_from_events(AS_OF, cfg, [(1, at(-60), "active")], sessions, flows, offers)
    fr = snapshots(facts, cfg)
    nan = NAN
    check(fr, "promotions", 1, {
        (-30, "offers_lifetime"): 0, (-29, "offers_lifetime"): 1,
        (-29, "claim_rate"): nan,  # claimed exactly at T: not yet; window still open
        (-28, "claim_rate"): 1.0, (-28, "deposit_rate"): nan,  # the deposit at -28 is at T
        (-27, "deposit_rate"): 1.0, (-27, "reengage_rate"): 1.0,
        (-14, "claim_rate"): 1.0,  # offer 2 still open
        (-12, "claim_rate"): 0.5, (-12, "claim_rate_free_spins"): 0.0, (-12, "claim_rate_deposit_bonus"): 1.0,
        (-12, "reengage_rate"): 1.0,  # offer 2: the session at -18 is in its window
        (-12, "deposit_rate"): 0.5, (-12, "deposit_rate_free_spins"): 0.0,
        (0, "offers_lifetime"): 4, (0, "offers_30d"): 4,  # offer 1 at exactly T - 30 days
        (0, "offers_free_spins"): 2, (0, "offers_deposit_bonus"): 1,
        (0, "claim_rate"): 2 / 3,  # offers 1, 2 and 4 resolved; 3 open
        (0, "claim_rate_free_spins"): 0.0,
        (0, "deposit_rate"): 0.5,  # offer 4 is claimed but its deposit window is still open: 1 of offers 1, 2
        (0, "days_since_last_offer"): 3.0, (0, "last_reward"): 1_000, (-3, "last_reward"): 15_000,
        (-3, "days_since_last_offer"): 1.0, (-3, "claim_rate"): 0.5, (-2, "claim_rate"): 2 / 3,
        # re-engagement outcomes of catalog offers: 1 at -29d-1h, 2 at -18 (exactly at T: not yet);
        # offer 3 is open at the as-of and offer 4 is not a catalog type
        (-30, "offers_resolved"): 0, (-29, "offers_resolved"): 1, (-18, "offers_resolved"): 1,
        (-17, "offers_resolved"): 2, (0, "offers_resolved"): 2,
    })  # fmt: skip


def test_deposit_rate_resolves_at_the_deposit_or_the_window_end(cfg: Config) -> None:
    offers = [(1, 1, "cashback", 10_000, at(-10), None), (2, 1, "cashback", 10_000, at(-9), None)]
    flows = [(1, "deposit", 20_000, at(-8, hours=1), None)]  # in both windows: converts both
    facts = facts_from_events(AS_OF, cfg, [(1, at(-60), "active")], flows=flows, offers=offers)
    fr = snapshots(facts, cfg)
    check(fr, "promotions", 1, {
        (-8, "deposit_rate"): NAN, (-7, "deposit_rate"): 1.0, (-7, "deposit_rate_cashback"): 1.0,
        (-7, "claim_rate"): NAN, (-2, "claim_rate"): 0.0,  # offer 1's window ended at -3: unclaimed
        (-2, "claim_rate_cashback"): 0.0, (-1, "claim_rate"): 0.0,
    })  # fmt: skip


def test_bonus_to_deposit_ratio_nan_capped_and_plain(cfg: Config) -> None:
    flows = [(1, "bonus", 5_000, at(-5), None), (1, "deposit", 10_000, at(-3), None), (2, "deposit", 100, at(-5), None)]
    players = [(1, at(-10), "active"), (2, at(-10), "active")]
    fr = snapshots(facts_from_events(AS_OF, cfg, players, flows=flows), cfg)
    check(fr, "promotions", 1, {(-5, "bonus_to_deposit_ratio"): NAN, (-4, "bonus_to_deposit_ratio"): 1e6,
                                (-2, "bonus_to_deposit_ratio"): 0.5, (0, "bonus_sum_lifetime"): 5_000})  # fmt: skip
    check(fr, "promotions", 2, {(0, "bonus_to_deposit_ratio"): 0.0, (-5, "bonus_to_deposit_ratio"): NAN})
    never = fr["promotions"][fr["promotions"][ENTITY] == 2]
    assert never[["claim_rate", "days_since_last_offer", "last_reward"]].isna().all().all()


def test_last_offer_is_the_latest_sent_whatever_its_id(cfg: Config) -> None:
    offers = [(10, 1, "cashback", 10_000, at(-4, hours=1), None), (5, 1, "login_reward", 3_000, at(-4, hours=5), None),
              (7, 1, "cashback", 30_000, at(-4, hours=5), None)]  # fmt: skip
    fr = snapshots(facts_from_events(AS_OF, cfg, [(1, at(-9), "active")], offers=offers), cfg)
    # bucket -4 holds all three; the later sending time wins, then the higher offer id
    check(fr, "promotions", 1, {(-3, "last_reward"): 30_000, (-3, "days_since_last_offer"): 1 - 5 / 24,
                                (-3, "offers_cashback"): 2, (-3, "offers_login_reward"): 1})  # fmt: skip
    assert np.isnan(value(fr, "promotions", 1, -4, "last_reward"))


def test_segment_dormancy_boundaries_are_those_of_the_segmentation(cfg: Config) -> None:
    players = [(1, at(-100), "active"), (2, at(-20), "active"), (3, at(-100), "active"), (4, at(-100), "blocked")]
    sessions = [(1, at(-20), "slots"), (3, at(-20, seconds=-1), "slots"), (4, at(-20), "slots")]
    flows = [(3, "deposit", 200_000, at(-50), None)]
    observed = pd.DataFrame({ENTITY: [4], "observed_at": [at(-100)], "status": ["blocked"]})  # seen blocked early
    fr = snapshots(facts_from_events(AS_OF, cfg, players, sessions, flows), cfg, observed=observed)

    def seg(player: int, s: int) -> tuple:
        f = fr["segment"]
        row = f[(f[ENTITY] == player) & (f[TIMESTAMP] == pd.Timestamp(at(s)))].iloc[0]
        return row["segment"], row["dormancy_stage"], row["value_tier"], row["is_dormant"]

    assert seg(1, -6) == ("active", "", "non-depositor", 0)  # last session exactly 14 days before T
    assert seg(1, -5) == ("non-depositor new dormant", "new", "non-depositor", 1)
    assert seg(2, -7) == ("new player", "", "non-depositor", 0)  # registered 13 days before T
    assert seg(2, -6) == ("non-depositor new dormant", "new", "non-depositor", 1)  # exactly 14 days
    assert seg(3, -6) == ("mid-value new dormant", "new", "mid-value", 1)  # 14 days and 1 second
    assert seg(3, 0) == ("mid-value new dormant", "new", "mid-value", 1)  # idle 20 days
    assert seg(4, -6) == ("blocked", "", "non-depositor", 0)
    assert seg(4, 0) == ("blocked", "new", "non-depositor", 1)  # dormant, named by its status


# ---------------------------------------------------------- a random world --
def random_world(cfg: Config, seed: int, n_players: int = 40, horizon: int = 120) -> tuple[Facts, dict[str, list]]:
    rng = np.random.default_rng(seed)

    def moment(lo: float, hi: float) -> datetime:
        return AS_OF + timedelta(seconds=float(rng.uniform(lo, hi) * 86_400))

    statuses = ["active"] * 8 + ["self_excluded", "blocked"]
    players = [(i, moment(-horizon, 0.5), statuses[rng.integers(10)]) for i in range(1, n_players + 1)]
    games = [*cfg.features.games, "bingo", None]
    types = [*cfg.features.event_types, "mystery"]
    sessions, flows, offers = [], [], []
    for pid, created, _ in players:
        c = (created - AS_OF) / DAY
        if c >= 0:
            continue
        for _ in range(rng.integers(0, 25)):
            sessions.append((pid, moment(c, 0.2), games[rng.integers(len(games))]))
        for _ in range(rng.integers(0, 6)):
            kind = ["deposit", "deposit", "withdrawal", "bonus"][rng.integers(4)]
            flows.append((pid, kind, int(rng.choice([1, 5_000, 60_000, 250_000, 900_000])), moment(c, 0.2), None))
        for _ in range(rng.integers(0, 5)):
            oid = len(offers) + 1
            sent = moment(c, 0.2)
            claimed = sent + timedelta(days=float(rng.uniform(0, 10))) if rng.random() < 0.6 else None
            offers.append((oid, pid, types[rng.integers(len(types))], int(rng.choice([1_000, 10_000])), sent, claimed))
            if claimed is not None and rng.random() < 0.8:
                flows.append((pid, "bonus", int(rng.choice([5_000, 80_000])), claimed, oid))
    events = {"players": players, "sessions": sessions, "flows": flows, "offers": offers}
    return facts_from_events(AS_OF, cfg, players, sessions, flows, offers), events


@pytest.fixture(scope="module")
def world(cfg: Config) -> tuple[Facts, dict[str, list]]:
    return random_world(cfg, seed=11)


def classify_at(events: dict[str, list], cfg: Config, moment: datetime) -> pd.DataFrame:
    """The segmentation's own path: activity aggregated from the raw events before ``moment``, then classify()."""
    players = pd.DataFrame(events["players"], columns=[ENTITY, "created_at", "status"])
    s = pd.DataFrame(events["sessions"], columns=[ENTITY, "started_at", "game"])
    s = s[s["started_at"] < moment]
    f = pd.DataFrame(events["flows"], columns=[ENTITY, "type", "amount", "created_at", "offer_id"])
    f = f[f["created_at"] < moment]
    o = pd.DataFrame(events["offers"], columns=["offer_id", ENTITY, "event_type", "reward", "sent_at", "claimed_at"])
    dep, bonus = f[f["type"] == "deposit"].groupby(ENTITY)["amount"], f[f["type"] == "bonus"].groupby(ENTITY)["amount"]
    act = players.set_index(ENTITY)
    act["last_session"] = s.groupby(ENTITY)["started_at"].max()
    act["main_game"] = None
    act["lifetime_deposits"] = dep.sum()
    act["deposit_count"] = dep.size()
    act["bonus_paid"] = bonus.sum()
    act["claims"] = o[o["claimed_at"].notna() & (o["claimed_at"] < moment)].groupby(ENTITY).size()
    act = act.fillna({"lifetime_deposits": 0, "deposit_count": 0, "bonus_paid": 0, "claims": 0}).reset_index()
    return classify(act, moment, cfg.business, cfg.segmentation)


def test_segment_family_agrees_with_classify_at_every_snapshot(cfg: Config, world) -> None:
    facts, events = world
    players = pd.DataFrame(events["players"], columns=[ENTITY, "created_at", "status"])
    # the status was observed before every snapshot, as classify() assumes of the status it is given
    observed = players.assign(observed_at=at(-10_000))[[ENTITY, "observed_at", "status"]]
    fr = snapshots(facts, cfg, observed=observed)["segment"]
    days = snapshot_days(facts, cfg)
    compared = 0
    seen_segments: set[str] = set()
    for s in days[::3]:
        moment = AS_OF + int(s) * DAY
        want = classify_at(events, cfg, moment)
        got = fr[fr[TIMESTAMP] == pd.Timestamp(moment)].reset_index(drop=True)
        assert got[ENTITY].tolist() == want[ENTITY].tolist(), f"players at s={s}"
        assert got["segment"].tolist() == want["segment"].tolist(), f"s={s}"
        assert got["dormancy_stage"].tolist() == want["dormancy_stage"].fillna("").tolist(), f"s={s}"
        assert got["value_tier"].tolist() == want["value_tier"].tolist(), f"s={s}"
        assert got["is_dormant"].tolist() == want["is_dormant"].astype(int).tolist(), f"s={s}"
        assert got["is_bonus_hunter"].tolist() == want["is_bonus_hunter"].astype(int).tolist(), f"s={s}"
        compared += len(got)
        seen_segments |= set(got["segment"])
    assert compared > 500
    # the world exercises the rules, not just one branch
    assert {"new player", "active", "bonus hunter", "blocked"} <= seen_segments
    assert any(name.endswith(" dormant") for name in seen_segments)


# ---------------------------------------------------------------- properties --
def test_no_row_at_the_registration_instant(cfg: Config) -> None:
    players = [(1, at(-10, hours=-12), "active"), (2, at(-5), "active"), (3, at(-5, microseconds=-1), "active")]
    fr = snapshots(facts_from_events(AS_OF, cfg, players), cfg)
    for name in FAMILIES:
        first = fr[name].groupby(ENTITY)[TIMESTAMP].min()
        assert first.to_dict() == {1: pd.Timestamp(at(-10)), 2: pd.Timestamp(at(-4)), 3: pd.Timestamp(at(-5))}, name


def test_no_row_before_registration_and_one_per_later_snapshot(cfg: Config, world) -> None:
    facts, _ = world
    days = snapshot_days(facts, cfg)
    times = pd.to_datetime([AS_OF + int(s) * DAY for s in days])
    fr = snapshots(facts, cfg, days)
    created = facts.players.set_index(ENTITY)["created_at"]
    for name in FAMILIES:
        f = fr[name]
        assert (f[TIMESTAMP].to_numpy() > created.loc[f[ENTITY]].to_numpy()).all(), name
        counts = f.groupby(ENTITY).size()
        expected = pd.Series({pid: int((times > c).sum()) for pid, c in created.items()})
        pd.testing.assert_series_equal(counts, expected[expected > 0], check_names=False, check_index_type=False)
        assert not f.duplicated([ENTITY, TIMESTAMP]).any()
        assert f[[ENTITY, TIMESTAMP]].equals(fr["activity"][[ENTITY, TIMESTAMP]])


def test_chunking_does_not_change_the_result(cfg: Config, world) -> None:
    facts, _ = world
    calls: list[int] = []
    small = snapshots(facts, cfg, chunk_players=3, on_chunk=calls.append)
    large = snapshots(facts, cfg, chunk_players=1000)
    assert sum(calls) == len(facts.players) and max(calls) == 3
    for name in FAMILIES:
        pd.testing.assert_frame_equal(small[name], large[name], check_exact=True)


def test_unsorted_facts_give_the_same_result(cfg: Config, world) -> None:
    facts, _ = world
    shuffled = Facts(
        as_of=facts.as_of,
        players=facts.players.sample(frac=1, random_state=1),
        session_days=facts.session_days.sample(frac=1, random_state=2),
        money_days=facts.money_days.sample(frac=1, random_state=3),
        offers=facts.offers.sample(frac=1, random_state=4),
    )
    a, b = snapshots(facts, cfg, chunk_players=7), snapshots(shuffled, cfg, chunk_players=7)
    for name in FAMILIES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)


def test_values_at_t_do_not_depend_on_the_as_of(cfg: Config, world) -> None:
    """Facts cut at an as-of 10 days earlier give the same snapshots at the times both cover."""
    facts, events = world
    early = AS_OF - 10 * DAY
    cut = facts_from_events(early, cfg, events["players"], events["sessions"], events["flows"], events["offers"])
    late = snapshots(facts, cfg)
    days = snapshot_days(cut, cfg)
    before = snapshots(cut, cfg, days)
    for name in FAMILIES:
        want = late[name][late[name][TIMESTAMP] <= pd.Timestamp(early)].reset_index(drop=True)
        pd.testing.assert_frame_equal(before[name], want, check_exact=False, rtol=1e-6)
        assert len(want) > 200


def test_columns_and_dtypes_follow_the_families_contract(cfg: Config, world) -> None:
    facts, _ = world
    chunk = next(player_snapshots(facts, cfg, snapshot_days(facts, cfg)))
    assert list(chunk) == list(FAMILIES)
    dtype = {"float": np.dtype("float32"), "int": np.dtype("int64"), "string": np.dtype(object)}
    for make in (activity, money, promotions, segment):
        family = make(cfg)
        frame = chunk[family.name]
        assert list(frame.columns) == [ENTITY, TIMESTAMP, *family.columns]
        assert frame[ENTITY].dtype == np.int64
        assert frame[TIMESTAMP].dtype == np.dtype("datetime64[us]")
        for feat in family.features:
            assert frame[feat.name].dtype == dtype[feat.kind], feat.name
            if feat.kind == "string":
                assert frame[feat.name].map(type).eq(str).all(), feat.name


def test_the_profile_is_what_the_system_observed_dated_when_seen(cfg: Config, tmp_path) -> None:
    """The platform keeps only current values: the system records them when it sees them (only changes
    after the first time), and the profile is dated at those observations, never at registration."""
    from system_db.store import SystemStore

    players = [(2, at(-30), "blocked", None, 4), (1, at(-50), "active", "ads", 0), (3, at(-1), "active", "ads", 1)]
    facts = facts_from_events(AS_OF, cfg, players)
    store = SystemStore(f"sqlite:///{tmp_path / 'rekindle.db'}")
    assert store.record_attributes(facts.players, at(-10)) == 3
    assert store.record_attributes(facts.players, at(-10)) == 3  # the same observation again: replaced, not doubled
    moved = facts.players.assign(vip_level=np.where(facts.players[ENTITY] == 1, 2, facts.players["vip_level"]))
    assert store.record_attributes(moved, at(-2)) == 1  # only the player whose values changed
    frame = profile_frame(store.read_attributes())
    assert list(frame.columns) == [ENTITY, TIMESTAMP, *profile(cfg).columns]
    assert frame[ENTITY].tolist() == [1, 1, 2, 3]
    by_player = frame.groupby(ENTITY)[TIMESTAMP].apply(list).to_dict()
    assert by_player == {
        1: [pd.Timestamp(at(-10)), pd.Timestamp(at(-2))],
        2: [pd.Timestamp(at(-10))],
        3: [pd.Timestamp(at(-10))],
    }
    assert frame.loc[frame[ENTITY] == 1, "vip_level"].tolist() == [0, 2]
    assert frame.loc[frame[ENTITY] == 2, "channel"].tolist() == [""]  # missing strings: ""
    assert frame["vip_level"].dtype == np.float32 and frame[TIMESTAMP].dtype == np.dtype("datetime64[us]")


def test_the_segment_reads_the_status_observed_at_or_before_each_snapshot(cfg: Config) -> None:
    """Player 2 is blocked now; the system saw it blocked 3 days ago. Before that observation its
    segment comes from its behaviour, as if active (today's status says nothing about that time)."""
    players = [(1, at(-60), "active", "ads", 0), (2, at(-60), "blocked", "ads", 0)]
    facts = facts_from_events(AS_OF, cfg, players, sessions=[(1, at(-40), 1), (2, at(-40), 1)])
    observed = pd.DataFrame({ENTITY: [1, 2], "observed_at": [at(-3), at(-3)], "status": ["active", "blocked"]})
    frames = snapshots(facts, cfg, observed=observed)
    assert value(frames, "segment", 2, -5, "segment") == value(frames, "segment", 1, -5, "segment")
    assert str(value(frames, "segment", 2, -5, "segment")).endswith("dormant")
    assert value(frames, "segment", 2, -3, "segment") == "blocked"
    assert value(frames, "segment", 2, 0, "segment") == "blocked"
    unseen = snapshots(facts, cfg)  # nothing observed: behaviour alone at every snapshot
    assert value(unseen, "segment", 2, 0, "segment") == value(unseen, "segment", 1, 0, "segment")


def test_positive_snapshot_index_is_refused(cfg: Config, world) -> None:
    facts, _ = world
    with pytest.raises(ValueError, match="must be <= 0"):
        next(player_snapshots(facts, cfg, np.array([-1, 2])))


def test_sparse_snapshot_days_match_the_daily_ones(cfg: Config, world) -> None:
    facts, _ = world
    daily = snapshots(facts, cfg)
    sparse = snapshots(facts, cfg, np.array([-60, -31, -30, -7, 0]), chunk_players=5)
    times = pd.to_datetime([AS_OF + s * DAY for s in (-60, -31, -30, -7, 0)])
    for name in FAMILIES:
        want = daily[name][daily[name][TIMESTAMP].isin(times)].reset_index(drop=True)
        pd.testing.assert_frame_equal(sparse[name], want, check_exact=True)
        assert len(want) > 50


# ------------------------------------------------- the simulator, end to end --
@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("sim")
    cfg = as_built_config(home, overrides={"simulator": {"players": 3_000, "days": 75, "seed": 5}})
    summary = simulate(cfg, home / "truth", overwrite=False)
    engine = connect(cfg.db_url)
    return cfg, engine, load_facts(engine, cfg, summary.as_of)


def test_segments_on_a_simulated_platform_match_the_segmentation_command(simulated) -> None:
    """The loader's facts and the snapshots give, at every sampled time, what `rekindle segment` gives then."""
    cfg, engine, facts = simulated
    days = snapshot_days(facts, cfg)
    sample = days[::9]
    # `rekindle segment` classifies with the status the platform holds: as if observed before every snapshot
    observed = facts.players.assign(observed_at=facts.as_of - 10_000 * DAY)[[ENTITY, "observed_at", "status"]]
    got = snapshots(facts, cfg, sample, observed=observed)["segment"]
    seen: set[str] = set()
    for s in sample:
        moment = facts.as_of + int(s) * DAY
        want = segment_players(engine, moment, cfg)
        at_t = got[got[TIMESTAMP] == pd.Timestamp(moment)].reset_index(drop=True)
        assert at_t[ENTITY].tolist() == want[ENTITY].tolist(), f"s={s}"
        for column in ("segment", "value_tier", "dormancy_stage"):
            assert at_t[column].tolist() == want[column].fillna("").tolist(), f"{column} at s={s}"
        assert at_t["is_dormant"].tolist() == want["is_dormant"].astype(int).tolist(), f"s={s}"
        assert at_t["is_bonus_hunter"].tolist() == want["is_bonus_hunter"].astype(int).tolist(), f"s={s}"
        seen |= set(at_t["segment"])
    assert len(seen) >= 6, seen


def test_activity_and_money_on_a_simulated_platform_match_the_segmentation_sql(simulated) -> None:
    cfg, engine, facts = simulated
    sample = snapshot_days(facts, cfg)[::15]
    got = snapshots(facts, cfg, sample)
    for s in sample:
        moment = pd.Timestamp(facts.as_of + int(s) * DAY)
        want = load_player_activity(engine, moment.to_pydatetime())
        want = want[want["created_at"] < moment].sort_values(ENTITY, ignore_index=True)
        act = got["activity"][got["activity"][TIMESTAMP] == moment].reset_index(drop=True)
        mon = got["money"][got["money"][TIMESTAMP] == moment].reset_index(drop=True)
        promo = got["promotions"][got["promotions"][TIMESTAMP] == moment].reset_index(drop=True)
        assert act[ENTITY].tolist() == want[ENTITY].tolist()
        idle = ((moment - pd.to_datetime(want["last_session"])) / pd.Timedelta(days=1)).astype("float32")
        np.testing.assert_array_equal(act["days_since_last_session"].to_numpy(), idle.to_numpy())
        np.testing.assert_array_equal(mon["deposits_sum_lifetime"], want["lifetime_deposits"].astype("float32"))
        np.testing.assert_array_equal(mon["deposits_n_lifetime"], want["deposit_count"].astype("float32"))
        np.testing.assert_array_equal(promo["bonus_sum_lifetime"], want["bonus_paid"].astype("float32"))
        assert act["sessions_lifetime"].gt(0).sum() == want["last_session"].notna().sum()
