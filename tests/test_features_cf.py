"""Collaborative filtering, event-type content and matching: the factorisation recovers planted tastes, is
exactly the SVD of the response matrix, sees no future outcome, keeps its signs, and the scores blend as
documented."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import as_built_config
from scipy.stats import spearmanr

from core.config import Config
from features.cf import (
    CFInputError,
    event_type_embeddings,
    fit_event_factors,
    player_embeddings,
    resolved_offers,
)
from features.content import apply_catalog, event_type_content, return_games
from features.families import event_type_cf
from features.families import event_type_content as content_family
from features.matching import (
    MatchingInputError,
    collaborative_affinity,
    collaborative_score,
    content_score,
    hybrid_score,
)
from simulator.run import simulate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
AS_OF = datetime(2026, 3, 1, 10)
WINDOW = np.timedelta64(7, "D")
DAYS = np.arange(-30, 1)
LONG_AGO = np.datetime64("2020-01-01", "us")
SEED = 11
PLANTED_PLAYERS = 2_000
PLANTED_OFFERS = 12  # per player, over the 60 days before the as-of
LIKED, DISLIKED = 0.8, 0.2  # re-engagement chance of a group's preferred type, and of every other type


# ---------------------------------------------------------------- factories --
def offers_frame(player_id, event_type, sent_at, reengaged_at) -> pd.DataFrame:
    """A facts-like offers frame (the columns of features.facts.Facts.offers)."""
    sent = np.asarray(sent_at, dtype="datetime64[us]")
    n = len(sent)
    return pd.DataFrame(
        {
            "offer_id": np.arange(1, n + 1, dtype=np.int64),
            "player_id": np.asarray(player_id, dtype=np.int64),
            "promotion_id": np.ones(n, dtype=np.int64),
            "sent_at": sent,
            "event_type": np.asarray(event_type, dtype=object),
            "reward": np.full(n, 10_000.0),
            "claimed_at": np.full(n, np.datetime64("NaT"), dtype="datetime64[us]"),
            "reengaged_at": np.asarray(reengaged_at, dtype="datetime64[us]"),
            "converted_at": np.full(n, np.datetime64("NaT"), dtype="datetime64[us]"),
            "bonus_paid": np.zeros(n),
            "window_end": sent + WINDOW,
        }
    )


def planted(types: list[str], seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray]:
    """Two taste groups: group 0 re-engages with the first event type, group 1 with the second."""
    rng = np.random.default_rng(seed)
    n, per = PLANTED_PLAYERS, PLANTED_OFFERS
    group = rng.integers(0, 2, n)
    p = np.full((n, len(types)), DISLIKED)
    p[group == 0, 0] = LIKED
    p[group == 1, 1] = LIKED
    pid = np.repeat(np.arange(1, n + 1), per)
    et = rng.integers(0, len(types), n * per)
    sent = np.datetime64(AS_OF, "us") - rng.integers(3_600, 60 * 86_400, n * per).astype("timedelta64[s]")
    back = sent + rng.integers(1, 7 * 86_400, n * per).astype("timedelta64[s]")
    success = (rng.random(n * per) < p[pid - 1, et]) & (back < np.datetime64(AS_OF, "us"))
    reeng = np.where(success, back, np.datetime64("NaT"))
    return offers_frame(pid, np.array(types, dtype=object)[et], sent, reeng), group


def with_features(cfg: Config, **changes) -> Config:
    return cfg.model_copy(update={"features": cfg.features.model_copy(update=changes)})


def direct_response(offers: pd.DataFrame, cfg: Config, at: np.datetime64, ids: np.ndarray) -> np.ndarray:
    """R_T computed the slow, obvious way (pandas group-by over the resolved offers)."""
    types = list(cfg.features.event_types)
    k = cfg.features.cf_prior_strength
    o = offers[offers["event_type"].isin(types)]
    o = o[(o["reengaged_at"] < at) | (o["window_end"] < at)].assign(success=lambda d: (d["reengaged_at"] < at) * 1.0)
    mean = o.groupby("event_type")["success"].mean()
    g = o.groupby(["player_id", "event_type"])["success"].agg(["sum", "count"]).reset_index()
    m = mean.reindex(g["event_type"]).to_numpy()
    g["r"] = (g["sum"] + k * m) / (g["count"] + k) - m
    wide = g.pivot(index="player_id", columns="event_type", values="r")
    return wide.reindex(index=ids, columns=types).fillna(0.0).to_numpy()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return as_built_config(tmp_path_factory.mktemp("cf"))


@pytest.fixture(scope="module")
def types(cfg: Config) -> list[str]:
    return list(cfg.features.event_types)


@pytest.fixture(scope="module")
def world(cfg: Config, types: list[str]):
    offers, group = planted(types)
    factors = fit_event_factors(offers, cfg, AS_OF, DAYS)
    ids = np.arange(1, PLANTED_PLAYERS + 1)
    emb = player_embeddings(offers, factors, ids, DAYS, np.full(len(ids), LONG_AGO))
    return offers, group, factors, ids, emb


def event_type_cf_columns(k: int) -> list[str]:
    return [f"ev_cf_{i}" for i in range(k)]


def at_snapshot(frame: pd.DataFrame, day: int) -> pd.DataFrame:
    stamp = np.datetime64(AS_OF, "us") + np.timedelta64(day, "D")
    return frame[frame["event_timestamp"] == stamp].reset_index(drop=True)


# --------------------------------------------------------- factorisation --
def test_planted_taste_groups_are_separated_and_ranked(world, types) -> None:
    _, group, factors, _, emb = world
    last = at_snapshot(emb, 0)
    cols = [f"cf_{i}" for i in range(factors.dim)]
    e = last[cols].to_numpy(np.float64)
    c0, c1 = e[group == 0].mean(axis=0), e[group == 1].mean(axis=0)
    side = (e - (c0 + c1) / 2) @ (c0 - c1) > 0
    assert (side == (group == 0)).mean() >= 0.85  # 0.90-0.91 over seeds; chance is 0.5

    score = collaborative_score(last, event_type_embeddings(factors))
    gap = (score[types[0]] - score[types[1]]).to_numpy()
    assert gap[group == 0].mean() >= 0.1 and -gap[group == 1].mean() >= 0.1  # ~0.165 each; 0 without the structure
    assert (gap[group == 0] > 0).mean() >= 0.8 and (gap[group == 1] < 0).mean() >= 0.8


@pytest.mark.parametrize("day", [-20, -7, 0], ids=["d-20", "d-7", "d0"])
def test_factors_are_the_truncated_svd_of_the_response_matrix(world, cfg, day) -> None:
    offers, _, factors, ids, emb = world
    j = int(np.flatnonzero(factors.days == day)[0])
    r = direct_response(offers, cfg, factors.times[j], ids)
    u, s, vt = np.linalg.svd(r, full_matrices=False)
    k = factors.dim
    np.testing.assert_allclose(factors.singular_values[j], s[:k], rtol=1e-9)
    ev = event_type_embeddings(factors)
    score = collaborative_score(at_snapshot(emb, day), ev[ev["event_timestamp"] == factors.times[j]])
    np.testing.assert_allclose(score.to_numpy(), (u[:, :k] * s[:k]) @ vt[:k], atol=1e-6)


def test_full_rank_reconstructs_a_hand_computed_response_and_pads_with_zeros(cfg, types) -> None:
    wide = with_features(cfg, embedding_dim=len(types) + 3, cf_prior_strength=2.0)
    t0 = np.datetime64(AS_OF, "us") - np.timedelta64(20, "D")
    day = np.timedelta64(1, "D")
    nat = np.datetime64("NaT")
    # player 1: two deposit_bonus offers, one success; player 2: one free_spins success, one deposit_bonus failure;
    # player 3: one offer still open at the as-of (its window ends after it): no resolved offer.
    offers = offers_frame(
        [1, 1, 2, 2, 3],
        [types[0], types[0], types[1], types[0], types[1]],
        [t0, t0 + day, t0, t0 + 2 * day, np.datetime64(AS_OF, "us") - 2 * day],
        [t0 + day, nat, t0 + day, nat, nat],
    )
    factors = fit_event_factors(offers, wide, AS_OF, [0])
    emb = player_embeddings(offers, factors, [1, 2, 3], [0], np.full(3, LONG_AGO))
    score = collaborative_score(emb, event_type_embeddings(factors))
    m0, m1, k = 1 / 3, 1.0, 2.0  # deposit_bonus: 1 success in 3; free_spins: 1 in 1
    expected = np.zeros((3, len(types)))
    expected[0, 0] = (1 + k * m0) / (2 + k) - m0
    expected[1, 0] = (0 + k * m0) / (1 + k) - m0
    expected[1, 1] = (1 + k * m1) / (1 + k) - m1  # = 0: a success where everyone succeeds says nothing
    np.testing.assert_allclose(score.to_numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(factors.type_means[0, :2], [m0, m1])
    assert (factors.factors[:, :, len(types) :] == 0).all() and (emb.iloc[2, 2:] == 0).all()
    assert list(emb.columns[2:]) == [f"cf_{i}" for i in range(len(types) + 3)]


def test_outcomes_at_or_after_a_snapshot_do_not_move_it(world, cfg, types) -> None:
    offers, _, factors, ids, emb = world
    cut = -10
    t = np.datetime64(AS_OF, "us") + np.timedelta64(cut, "D")
    rng = np.random.default_rng(SEED + 1)
    changed = offers.copy()
    open_at_t = np.minimum(changed["reengaged_at"].fillna(changed["window_end"]), changed["window_end"]) >= t
    n_open = int(open_at_t.sum())
    assert n_open > 1_000  # the test changes something
    # every offer not resolved before T gets a new type and a new outcome, at or after T (some exactly at T)
    room = (changed.loc[open_at_t, "window_end"].to_numpy("datetime64[us]") - t) / np.timedelta64(1, "s")
    later = t + (rng.random(n_open) * room).astype(np.int64).astype("timedelta64[s]")
    later[: n_open // 10] = t
    changed.loc[open_at_t, "event_type"] = rng.choice(types, n_open)
    changed.loc[open_at_t, "reengaged_at"] = np.where(rng.random(n_open) < 0.5, later, np.datetime64("NaT"))
    extra = offers_frame(rng.integers(1, 100, 500), rng.choice(types, 500), np.full(500, t), np.full(500, t + 1))
    changed = pd.concat([changed, extra], ignore_index=True)

    refit = fit_event_factors(changed, cfg, AS_OF, DAYS)
    again = player_embeddings(changed, refit, ids, DAYS, np.full(len(ids), LONG_AGO))
    past = factors.days <= cut
    for name in ("factors", "singular_values", "type_means", "resolved"):
        np.testing.assert_array_equal(getattr(refit, name)[past], getattr(factors, name)[past], err_msg=name)
        assert not np.array_equal(getattr(refit, name)[~past], getattr(factors, name)[~past]), name
    before = emb["event_timestamp"] <= t
    pd.testing.assert_frame_equal(again[before.to_numpy()], emb[before])
    assert not again[~before.to_numpy()].equals(emb[~before])


def test_component_signs_hold_from_snapshot_to_snapshot(world, cfg) -> None:
    offers = world[0]
    factors = fit_event_factors(offers, cfg, AS_OF, np.arange(-70, 1))  # from before the first offer
    live = factors.singular_values[:, 0] > 0
    v = factors.factors[live]
    assert len(v) >= 50
    cos = np.einsum("sec,sec->sc", v[1:], v[:-1]) / (np.linalg.norm(v[1:], axis=1) * np.linalg.norm(v[:-1], axis=1))
    # the planted contrast (first component) has two loadings of equal size and opposite sign: a rule on each
    # snapshot alone flips it back and forth; carried from day to day it holds from the first week on
    assert (cos[7:, 0] > 0.9).all(), cos[:, 0].round(2)
    assert (cos > -0.5).all()  # the noise components may rotate, never flip
    # the first snapshot with data follows the rule: each component's largest loading is positive
    pick = np.argmax(np.abs(v[0]), axis=0)
    assert (v[0][pick, np.arange(v.shape[2])] > 0).all()


def test_factors_do_not_depend_on_the_other_snapshots_asked_for(world, cfg) -> None:
    offers, _, factors, _, _ = world
    few = fit_event_factors(offers, cfg, AS_OF, [-12, -3, 0])
    pick = np.searchsorted(factors.days, few.days)
    np.testing.assert_array_equal(few.factors, factors.factors[pick])
    np.testing.assert_array_equal(few.type_means, factors.type_means[pick])


def test_chunked_embeddings_equal_unchunked(world) -> None:
    offers, _, factors, ids, emb = world
    created = np.datetime64(AS_OF, "us") - np.arange(len(ids)).astype("timedelta64[h]") * 3  # some register late
    whole = player_embeddings(offers, factors, ids, DAYS, created)
    parts = [
        player_embeddings(offers[offers["player_id"].isin(chunk)], factors, chunk, DAYS, created[chunk - 1])
        for chunk in np.array_split(ids, 7)
    ]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    assert len(whole) < len(emb)


def test_rows_follow_registration_and_cold_players_sit_at_zero(world, types) -> None:
    offers, _, factors, _, _ = world
    created = np.array([LONG_AGO, np.datetime64(AS_OF, "us") - np.timedelta64(12, "h")])
    emb = player_embeddings(offers, factors, [1, 999_999], DAYS, created)
    assert (emb["player_id"] == 1).sum() == len(DAYS)
    newcomer = emb[emb["player_id"] == 999_999]
    assert list(newcomer["event_timestamp"]) == list(factors.times[-1:])  # registered half a day before T_0
    assert (newcomer.filter(like="cf_") == 0).all().all()
    assert emb.dtypes["cf_0"] == np.float32 and emb.dtypes["event_timestamp"] == "datetime64[us]"
    ev = event_type_embeddings(factors)
    assert len(ev) == len(DAYS) * len(types) and list(ev.columns[2:]) == event_type_cf_columns(factors.dim)


def test_resolved_offers_counts_only_outcomes_known_before(world) -> None:
    offers, _, factors, ids, _ = world
    at = np.datetime64(AS_OF, "us") - np.timedelta64(5, "D")
    got = resolved_offers(offers, ids, at.astype(datetime), factors.event_types)
    known = (offers["reengaged_at"] < at) | (offers["window_end"] < at)
    expected = offers[known].groupby("player_id").size().reindex(ids, fill_value=0).to_numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda o, f, c: fit_event_factors(o.drop(columns="window_end"), c, AS_OF, DAYS),
            r"lacks the columns \['window_end'\]",
        ),
        (lambda o, f, c: fit_event_factors(o, c, AS_OF, [0, -1]), "strictly increasing"),
        (lambda o, f, c: fit_event_factors(o, c, AS_OF, []), "non-empty"),
        (lambda o, f, c: player_embeddings(o, f, [1], [-40], np.full(1, LONG_AGO)), r"\[-40\] were not fitted"),
        (lambda o, f, c: player_embeddings(o, f, [1, 1], [0], np.full(2, LONG_AGO)), "duplicates"),
        (lambda o, f, c: player_embeddings(o, f, [1, 2], [0], np.full(1, LONG_AGO)), "aligned"),
    ],
    ids=["missing-column", "unsorted-days", "no-days", "unfitted-day", "duplicate-player", "misaligned-created"],
)
def test_bad_inputs_are_named(world, cfg, call, match) -> None:
    offers, _, factors, _, _ = world
    with pytest.raises(CFInputError, match=match):
        call(offers, factors, cfg)


# ------------------------------------------------------------------ content --
def _offers(rows: list[tuple]) -> pd.DataFrame:
    """(type, reward, sent, claimed, reengaged, converted, bonus paid, player) -> the facts' offers frame."""
    cols = ["event_type", "reward", "sent_at", "claimed_at", "reengaged_at", "converted_at", "bonus_paid", "player_id"]
    frame = pd.DataFrame(rows, columns=cols)
    for c in ("sent_at", "claimed_at", "reengaged_at", "converted_at"):
        frame[c] = pd.to_datetime(frame[c]).astype("datetime64[us]")
    return frame.assign(window_end=frame["sent_at"] + pd.Timedelta(days=7))


def test_content_comes_from_the_history_known_at_each_snapshot(cfg) -> None:
    """The platform's own event types get their content from what happened before each snapshot: claim rate,
    deposit share, payout, rewards, the promotions' minimum deposit, and the game its returners played."""
    t0 = AS_OF - timedelta(days=30)
    day = timedelta(days=1)
    offers = _offers(
        [  # "reload": 3 offers, 2 claimed (one with a deposit), 15,000 paid on 20,000 of rewards
            ("reload", 10_000, t0, t0 + day, t0 + day, t0 + day, 6_000.0, 1),
            ("reload", 10_000, t0, t0 + 2 * day, t0 + 2 * day, None, 9_000.0, 2),
            ("reload", 20_000, t0 + 10 * day, None, None, None, 0.0, 3),
            ("sms", 0, t0, None, t0 + day, None, 0.0, 4),  # a message: reward 0, never claimed
        ]
    )
    promotions = pd.DataFrame(
        {"event_type": ["reload", "sms"], "starts_at": [t0, t0], "min_deposit": [30_000.0, np.nan]}
    )
    session_days = pd.DataFrame(
        {"player_id": [1, 2, 4], "day": [-29, -28, -29], "sessions_bingo": [2, 1, 0], "sessions_other": [0, 0, 1]}
    )
    built = cfg.model_copy(update={"features": cfg.features.model_copy(update={"games": ["bingo"]})})
    returns = return_games(offers, session_days, ["bingo"], np.datetime64(AS_OF, "us"))
    times = np.array([t0 + 5 * day, AS_OF], dtype="datetime64[us]")
    frame = event_type_content(built, offers, promotions, returns, ["reload", "sms"], times)
    assert list(frame.columns) == ["event_type", "event_timestamp", *content_family(cfg).columns]
    at = frame.set_index(["event_type", "event_timestamp"])
    early, late = at.loc[("reload", pd.Timestamp(times[0]))], at.loc[("reload", pd.Timestamp(times[1]))]
    assert early["type_claim_rate"] == pytest.approx(1.0)  # 2 claimed of 2 resolved; the third not sent yet
    assert late["type_claim_rate"] == pytest.approx(2 / 3)  # its window has ended unclaimed
    assert late["deposit_share"] == pytest.approx(0.5) and late["payout_ratio"] == pytest.approx(15_000 / 20_000)
    assert (early["reward_min"], early["reward_max"]) == (10_000, 10_000)  # 20,000 was offered later
    assert late["reward_max"] == 20_000 and late["min_deposit"] == 30_000
    assert late["requires_deposit"] == 0  # too few claims for the rule
    assert late["game"] == "bingo"  # all its returners' sessions on the return day
    sms = at.loc[("sms", pd.Timestamp(times[1]))]
    assert sms["type_claim_rate"] == 0 and np.isnan(sms["payout_ratio"]) and sms["reward_max"] == 0
    assert sms["game"] == ""  # its returner played something else
    assert sms["min_deposit"] == 0


def test_the_users_catalog_says_what_the_history_cannot(cfg) -> None:
    from core.config import Catalog

    catalog = Catalog.model_validate(
        {"event_types": [{"name": "reload", "requires_deposit": True, "min_deposit": 5000, "game": "slots"}]}
    )
    content = pd.DataFrame(
        {
            "event_type": ["reload", "sms"],
            "requires_deposit": [0.0, 0.0],
            "min_deposit": [0.0, 0.0],
            "game": ["", ""],
            "payout_ratio": [0.5, np.nan],
        }
    )
    out = apply_catalog(cfg.model_copy(update={"catalog": catalog}), content).set_index("event_type")
    assert out.loc["reload", "requires_deposit"] == 1 and out.loc["reload", "min_deposit"] == 5000
    assert out.loc["reload", "game"] == "slots" and out.loc["reload", "payout_ratio"] == 0.5  # not given: kept
    assert out.loc["sms", "requires_deposit"] == 0  # not in the catalog: the history's
    assert event_type_cf(cfg).columns == event_type_cf_columns(cfg.features.embedding_dim)


def _simulated_content(cfg) -> pd.DataFrame:
    """The simulator's event types described as its catalog would (no time: one row each)."""
    types = cfg.simulator.catalog.event_types
    return pd.DataFrame(
        {
            "event_type": [e.name for e in types],
            "game": [e.game or "" for e in types],
            "requires_deposit": [float(e.requires_deposit) for e in types],
        }
    )


# ----------------------------------------------------------------- matching --
@pytest.fixture(scope="module")
def players() -> pd.DataFrame:
    """A slots fan who deposits, a poker fan who deposited long ago, a player who never played or deposited."""
    return pd.DataFrame(
        {
            "share_slots": [0.8, 0.0, np.nan],
            "share_table": [0.1, 0.1, np.nan],
            "share_sports": [0.0, 0.1, np.nan],
            "share_poker": [0.1, 0.8, np.nan],
            "share_casual": [0.0, 0.0, np.nan],
            "share_other": [0.0, 0.0, np.nan],
            "deposits_n_7d": [1.0, 0.0, 0.0],
            "deposits_n_90d": [2.0, 0.0, 0.0],
            "deposits_n_lifetime": [9.0, 3.0, 0.0],
        },
        index=pd.Index([11, 12, 13], name="player_id"),
    )


def test_content_score_follows_games_and_deposit_habit(cfg, players) -> None:
    score = content_score(players, _simulated_content(cfg))
    even = 1 / 6  # six share columns
    fan = 0.5 + 0.5 * (0.8 - even) / (1 - even)
    expected = pd.DataFrame(
        {
            "deposit_bonus": [0.5, 0.25, 0.0],  # requires a deposit, tied to no game: 0.5 x habit (1, 0.5, 0)
            "free_spins": [fan, 0.0, 0.5],  # slots
            "cashback": [0.5, 0.25, 0.0],
            "tournament_ticket": [0.5 * 0.1 / even, fan, 0.5],  # poker
            "login_reward": [0.5, 0.5, 0.5],
        },
        index=players.index,
    )
    pd.testing.assert_frame_equal(score, expected, check_names=False, atol=1e-12)
    assert score.idxmax(axis=1).tolist() == ["free_spins", "tournament_ticket", "free_spins"]


def test_content_score_needs_the_activity_and_money_columns(cfg, players) -> None:
    content = _simulated_content(cfg)
    with pytest.raises(MatchingInputError, match="share_<game>"):
        content_score(players.drop(columns=[c for c in players if c.startswith("share_")]), content)
    with pytest.raises(MatchingInputError, match="deposits_n_lifetime"):
        content_score(players.drop(columns="deposits_n_lifetime"), content)


def test_hybrid_leans_on_content_without_offers_and_on_collaboration_with_many(cfg, players) -> None:
    content = content_score(players, _simulated_content(cfg))
    rng = np.random.default_rng(SEED)
    collab = pd.DataFrame(rng.normal(0, 0.1, content.shape), index=content.index, columns=content.columns)
    cold = hybrid_score(collab, content, [0, 0, 0])
    pd.testing.assert_frame_equal(cold, content)
    warm = hybrid_score(collab, content, [1_000, 5, 1], prior_offers=5.0)
    aff = collaborative_affinity(collab)
    np.testing.assert_allclose(warm.iloc[0], aff.iloc[0], atol=0.01)
    np.testing.assert_allclose(warm.iloc[1], (aff.iloc[1] + content.iloc[1]) / 2)
    np.testing.assert_allclose(warm.iloc[2], aff.iloc[2] / 6 + content.iloc[2] * 5 / 6)
    assert ((warm >= 0) & (warm <= 1)).all().all()
    with pytest.raises(MatchingInputError, match="non-negative counts"):
        hybrid_score(collab, content, [1, -1, 0])


def test_collaborative_score_uses_the_factors_of_each_rows_snapshot(world) -> None:
    _, _, factors, _, emb = world
    ev = event_type_embeddings(factors)
    rows = emb[emb["player_id"] <= 50].reset_index(drop=True)
    all_at_once = collaborative_score(rows, ev)
    for day in (-25, -1, 0):
        at = at_snapshot(rows, day)
        one = collaborative_score(at, ev[ev["event_timestamp"] == at["event_timestamp"].iloc[0]])
        mask = (rows["event_timestamp"] == at["event_timestamp"].iloc[0]).to_numpy()
        np.testing.assert_allclose(all_at_once[mask].to_numpy(), one.to_numpy(), rtol=1e-12)
    early = rows.assign(event_timestamp=rows["event_timestamp"] - np.timedelta64(400, "D"))
    assert collaborative_score(early, ev).isna().all().all()  # no factors before the first snapshot
    with pytest.raises(MatchingInputError, match="need 'event_timestamp'"):
        collaborative_score(rows.drop(columns="event_timestamp"), ev)


# ---------------------------------------------------- a small simulated world --
@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("cf_world")
    cfg = as_built_config(home, overrides={"simulator": {"players": 4_000, "days": 90, "seed": 7}})
    simulate(cfg, home / "truth", overwrite=False)
    as_of = datetime.fromisoformat(json.loads((home / "truth" / "calibration.json").read_text())["as_of"])
    engine = sa.create_engine(cfg.db_url)
    sent = pd.read_sql(
        'SELECT pp."playerId" AS player_id, pp."createdAt" AS sent_at, p.type AS event_type '
        'FROM promotion_players pp JOIN promotions p ON p.id = pp."promotionId"',
        engine,
        parse_dates=["sent_at"],
    )
    sessions = pd.read_sql(
        'SELECT "playerId" AS player_id, "startedAt" AS started_at FROM player_sessions',
        engine,
        parse_dates=["started_at"],
    )
    engine.dispose()
    sent["sent_at"] = sent["sent_at"].astype("datetime64[us]")
    sessions["started_at"] = sessions["started_at"].astype("datetime64[us]")
    # the first session after each offer (the facts' re-engagement, rebuilt here independently)
    nxt = pd.merge_asof(
        sent.sort_values("sent_at"),
        sessions.sort_values("started_at"),
        left_on="sent_at",
        right_on="started_at",
        by="player_id",
        direction="forward",
        allow_exact_matches=False,
    )
    window = timedelta(days=cfg.business.attribution_days)
    back = nxt["started_at"].where((nxt["started_at"] <= nxt["sent_at"] + window) & (nxt["started_at"] < as_of))
    offers = offers_frame(nxt["player_id"], nxt["event_type"], nxt["sent_at"], back)
    truth = pd.read_parquet(home / "truth" / "players.parquet")
    return cfg, as_of, offers, truth


def test_embeddings_carry_the_simulated_players_responsiveness(simulated) -> None:
    """The simulator's players differ most in how strongly they answer any offer (``sensitivity``; bonus
    hunters x6). Their mean collaborative score over the event types must rank them that way. (The
    game-match boost of tied events is too weak a signal at this size: see the module's report.)"""
    cfg, as_of, offers, truth = simulated
    factors = fit_event_factors(offers, cfg, as_of, [-30, 0])
    ids = truth["player_id"].to_numpy()
    emb = player_embeddings(offers, factors, ids, [0], np.full(len(ids), LONG_AGO))
    score = collaborative_score(emb, event_type_embeddings(factors)).mean(axis=1).to_numpy()
    seen = resolved_offers(offers, ids, as_of, factors.event_types) >= 1
    assert seen.sum() > 1_000
    rho = spearmanr(truth["sensitivity"].to_numpy()[seen], score[seen]).statistic
    assert rho > 0.1  # ~0.2 (seeds 7, 8); one standard error is ~0.03
    hunters = truth["bonus_hunter"].to_numpy()
    assert score[seen & hunters].mean() > score[seen & ~hunters].mean() + 0.002  # ~0.0055 apart, se ~0.0015


def test_match_scores_before_the_first_snapshot_know_nothing(cfg) -> None:
    """One snapshot of content and of event-type factors: rows before it get the neutral score, not it."""
    stamp = pd.Timestamp(AS_OF)
    rows = pd.DataFrame(
        {
            "share_slots": [1.0, 1.0],
            "share_other": [0.0, 0.0],
            "deposits_n_7d": [1.0, 1.0],
            "deposits_n_lifetime": [1.0, 1.0],
            "cf_0": [1.0, 1.0],
            "event_timestamp": [stamp - pd.Timedelta(days=1), stamp + pd.Timedelta(days=1)],
        }
    )
    content = pd.DataFrame(
        {"event_type": ["spins"], "game": ["slots"], "requires_deposit": [0.0], "event_timestamp": [stamp]}
    )
    score = content_score(rows, content)["spins"].tolist()
    assert score[0] == 0.5 and score[1] == 1.0
    emb = pd.DataFrame({"event_type": ["spins"], "ev_cf_0": [0.3], "event_timestamp": [stamp]})
    collab = collaborative_score(rows[["cf_0", "event_timestamp"]], emb)["spins"].tolist()
    assert np.isnan(collab[0]) and collab[1] == pytest.approx(0.3)
