"""Players and their latent traits.

Every trait is drawn once per player from the simulator's configuration; the
traits drive everything the platform database later shows (see
docs/simulator.md for the generative story).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from core.config import Simulator, SimulatorCatalog

STATUS_CODES = ("active", "self_excluded", "blocked")
NEVER = np.iinfo(np.int32).max


@dataclass
class Population:
    """Latent traits, one array entry per player (index = player id - 1)."""

    created_day: np.ndarray  # int32, simulation day of registration
    created_offset: np.ndarray  # int32, seconds after that day's start
    channel: np.ndarray  # int8 index into config channels
    bonus_hunter: np.ndarray  # bool
    status: np.ndarray  # int8 index into STATUS_CODES (final status)
    status_day: np.ndarray  # int32 day the status stops play (NEVER when active)
    holdout: np.ndarray  # bool, never receives an offer from the platform's campaigns
    game_cum: np.ndarray  # float32 (n, games) cumulative game preferences
    main_game: np.ndarray  # int8
    session_prob: np.ndarray  # float32, chance of a session day while engaged
    lapse: np.ndarray  # float32, daily lapse hazard while engaged
    return_rate: np.ndarray  # float32, natural return intensity just after lapsing
    deposit_prob: np.ndarray  # float32, chance of a deposit on a session day
    deposit_mu: np.ndarray  # float32, log-mean of the player's deposit size
    vip: np.ndarray  # int8 0..5
    sensitivity: np.ndarray  # float32, overall responsiveness to offers
    size_sensitivity: np.ndarray  # float32, how fast extra reward stops mattering
    affinity: np.ndarray  # float32 (n, event types)

    def __len__(self) -> int:
        return len(self.created_day)

    def concat(self, other: Population) -> Population:
        return Population(
            **{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)}
        )

    def to_frame(self) -> pd.DataFrame:
        data: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value.ndim == 2:
                for j in range(value.shape[1]):
                    data[f"{f.name}__{j}"] = value[:, j]
            else:
                data[f.name] = value
        return pd.DataFrame(data)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Population:
        kwargs: dict[str, np.ndarray] = {}
        for f in fields(cls):
            if f.name in frame.columns:
                kwargs[f.name] = frame[f.name].to_numpy()
            else:
                cols = sorted(
                    (c for c in frame.columns if c.startswith(f"{f.name}__")), key=lambda c: int(c.split("__")[1])
                )
                kwargs[f.name] = frame[cols].to_numpy()
        return cls(**kwargs)


def _sorted_within_day(created_day: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Registration times in id order: offsets ascending within each (non-decreasing) day."""
    if len(created_day) and (np.diff(created_day) < 0).any():
        raise ValueError("players must be drawn in order of registration day")
    return offsets[np.lexsort((offsets, created_day))].astype(np.int32)


def _probs(mapping: dict[str, float], what: str) -> np.ndarray:
    p = np.asarray(list(mapping.values()), dtype=float)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"{what} must be non-negative weights with a positive sum, got {mapping}")
    return p / p.sum()


def _beta(rng: np.random.Generator, a: float, b: float, floor: float, n: int) -> np.ndarray:
    return np.maximum(rng.beta(a, b, n), floor).astype(np.float32)


def draw_population(
    rng: np.random.Generator,
    created_day: np.ndarray,
    cfg: Simulator,
    catalog: SimulatorCatalog,
    *,
    last_day: int,
    channel_mix: dict[str, float] | None = None,
) -> Population:
    """Draw traits for players registering on ``created_day`` (one entry each).

    ``last_day`` bounds when a self-exclusion or block can happen; ``channel_mix``
    replaces the configured acquisition mix (drift).
    """
    n = len(created_day)
    pop_cfg, act, money, resp = cfg.population, cfg.activity, cfg.money, cfg.response
    channels = list(pop_cfg.channels)
    mix = dict(pop_cfg.channels)
    if channel_mix:
        unknown = sorted(set(channel_mix) - set(channels))
        if unknown:
            raise ValueError(f"drift.channel_mix names unknown channels {unknown}; known: {channels}")
        mix = {c: channel_mix.get(c, 0.0) for c in channels}
    channel = rng.choice(len(channels), size=n, p=_probs(mix, "channel mix")).astype(np.int8)
    hunter_share = np.array([pop_cfg.bonus_hunter_share[c] for c in channels])
    bonus_hunter = rng.random(n) < hunter_share[channel]

    # Game taste: a Dirichlet around a main game drawn from the platform's game mix.
    games = list(pop_cfg.games)
    main = rng.choice(len(games), size=n, p=_probs(pop_cfg.games, "games"))
    alpha = np.full((n, len(games)), 0.3)
    alpha[np.arange(n), main] += pop_cfg.game_concentration
    prefs = rng.gamma(alpha)
    prefs /= prefs.sum(axis=1, keepdims=True)
    main_game = prefs.argmax(axis=1).astype(np.int8)

    # Value: heavy-tailed deposit size; VIP level follows value with noise.
    value_z = rng.standard_normal(n)
    deposit_mu = np.log(money.deposit_size.median) + money.deposit_size.player_sigma * value_z
    deposit_prob = _beta(rng, money.deposit_prob.a, money.deposit_prob.b, money.deposit_prob.min, n)
    deposit_prob = np.where(bonus_hunter, deposit_prob * money.bonus_hunter_deposit_factor, deposit_prob)
    vip_score = (
        value_z
        + 0.8 * (deposit_prob - deposit_prob.mean()) / (deposit_prob.std() + 1e-9)
        + 0.4 * rng.standard_normal(n)
    )
    vip = np.digitize(vip_score, [0.0, 0.8, 1.5, 2.1, 2.7]).astype(np.int8)

    session_prob = _beta(rng, act.session_prob.a, act.session_prob.b, act.session_prob.min, n)
    lapse = act.lapse_hazard.median * np.exp(
        act.lapse_hazard.sigma * rng.standard_normal(n) - act.value_lapse_elasticity * value_z
    )
    lapse = np.where(bonus_hunter, lapse * pop_cfg.bonus_hunter_lapse_factor, lapse)
    lapse = np.clip(lapse, 0.002, 0.5).astype(np.float32)
    return_rate = (act.return_rate.median * np.exp(act.return_rate.sigma * rng.standard_normal(n))).astype(np.float32)

    # Response to offers: overall sensitivity, size sensitivity, taste per event type.
    sensitivity = np.exp(resp.sensitivity_sigma * rng.standard_normal(n) - resp.sensitivity_sigma**2 / 2)
    sensitivity = np.where(bonus_hunter, sensitivity * resp.bonus_hunter_pull, sensitivity).astype(np.float32)
    size_sensitivity = (
        resp.size_sensitivity.median * np.exp(resp.size_sensitivity.sigma * rng.standard_normal(n))
    ).astype(np.float32)
    affinity = event_affinity(rng, prefs, games, cfg, catalog)

    # Status: some players self-exclude or get blocked at some point after registering.
    u = rng.random(n)
    p_blocked = np.where(bonus_hunter, pop_cfg.blocked_bonus_hunter_share, pop_cfg.blocked_share)
    status = np.zeros(n, dtype=np.int8)
    status[u < pop_cfg.self_excluded_share] = 1
    status[(u >= pop_cfg.self_excluded_share) & (u < pop_cfg.self_excluded_share + p_blocked)] = 2
    span = np.maximum(last_day - created_day, 1)
    status_day = np.where(status > 0, created_day + 1 + (rng.random(n) * span).astype(np.int32), NEVER).astype(np.int32)
    status = np.where(status_day > last_day, 0, status).astype(np.int8)
    status_day = np.where(status == 0, NEVER, status_day).astype(np.int32)

    return Population(
        created_day=created_day.astype(np.int32),
        created_offset=_sorted_within_day(created_day, rng.integers(60, 80_000, n)),
        channel=channel,
        bonus_hunter=bonus_hunter,
        status=status,
        status_day=status_day,
        holdout=rng.random(n) < cfg.campaigns.holdout_share,
        game_cum=np.cumsum(prefs, axis=1).astype(np.float32),
        main_game=main_game,
        session_prob=session_prob,
        lapse=lapse,
        return_rate=return_rate,
        deposit_prob=deposit_prob.astype(np.float32),
        deposit_mu=deposit_mu.astype(np.float32),
        vip=vip,
        sensitivity=sensitivity,
        size_sensitivity=size_sensitivity,
        affinity=affinity,
    )


def event_affinity(
    rng: np.random.Generator, prefs: np.ndarray, games: list[str], cfg: Simulator, catalog: SimulatorCatalog
) -> np.ndarray:
    """Player x event-type taste: a base level per event type, a boost when the
    event is tied to a game the player likes, and idiosyncratic noise."""
    resp = cfg.response
    n = len(prefs)
    out = np.empty((n, len(catalog.event_types)), dtype=np.float32)
    for j, event in enumerate(catalog.event_types):
        base = resp.event_base_affinity.get(event.name, 1.0)
        game_share = prefs[:, games.index(event.game)] if event.game in games else np.full(n, 1.0 / len(games))
        # a tied event pleases in proportion to how much of the play is that game
        match = 1.0 + (resp.game_match_boost - 1.0) * (game_share * len(games) - 1.0).clip(-1, 3) / 3
        noise = np.exp(resp.affinity_sigma * rng.standard_normal(n) - resp.affinity_sigma**2 / 2)
        out[:, j] = base * match * noise
    return out
