"""The platform's own names: the games its players play and the event types it has offered.

A feature build finds them in the history (unless the configuration lists
them) and records them in its manifest; the feature names depend on them
(``share_<game>``, ``offers_<type>``, ...), so every later step reads the
configuration as built (:func:`features.manifest.as_built`). Games become
column names and SQL literals: only lower-case identifiers qualify; other
names count as "other".
"""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config import Config
from features.families import EVENT_TYPE_KEY, OTHER_GAME
from platform_db.db import read_sql, ts_param
from platform_db.filters import valid_rows

MIN_GAME_SHARE = 0.01  # a game needs this share of the sessions to get its own activity share
MAX_GAMES = 8


def pick_games(counts: pd.Series) -> list[str]:
    """The games (index) with at least :data:`MIN_GAME_SHARE` of the sessions (values), most played first, at
    most :data:`MAX_GAMES`; names that are not lower-case identifiers (or are "other") are left out."""
    total = float(counts.sum())
    if total <= 0:
        return []
    ranked = counts.sort_values(ascending=False, kind="stable")
    named = [(g, n) for g, n in ranked.items() if isinstance(g, str) and re.fullmatch(r"[a-z][a-z0-9_]*", g)]
    out = [g for g, n in named if g != OTHER_GAME and n / total >= MIN_GAME_SHARE]
    return out[:MAX_GAMES]


def session_games(engine: Engine, filters: dict[str, str] | None, as_of: datetime) -> pd.Series:
    """Sessions per game started before ``as_of`` (valid rows only, when filtered)."""
    sessions = valid_rows("player_sessions", "s", filters or {})
    sql = f'SELECT s.game AS game, COUNT(*) AS n FROM {sessions} WHERE s."startedAt" < :t GROUP BY s.game'
    frame = read_sql(engine, sa.text(sql), {"t": ts_param(engine, as_of)})
    return frame.set_index("game")["n"]


def offered_event_types(offers: pd.DataFrame) -> list[str]:
    """The event types of the offers sent (their promotions' types), sorted."""
    return sorted(str(t) for t in offers[EVENT_TYPE_KEY].dropna().unique())


def promotion_terms(engine: Engine, filters: dict[str, str] | None, as_of: datetime) -> pd.DataFrame:
    """The platform's promotions started before ``as_of``: ``event_type``, ``starts_at``, ``min_deposit``."""
    promos = valid_rows("promotions", "p", filters or {})
    sql = (
        f'SELECT p.type AS event_type, p."startsAt" AS starts_at, p."minDeposit" AS min_deposit FROM {promos} '
        'WHERE p."startsAt" < :t'
    )
    frame = read_sql(engine, sa.text(sql), {"t": ts_param(engine, as_of)})
    frame["starts_at"] = pd.to_datetime(frame["starts_at"])
    frame["min_deposit"] = pd.to_numeric(frame["min_deposit"], errors="coerce")
    return frame


def discover(cfg: Config, engine: Engine, filters: dict[str, str] | None, as_of: datetime) -> Config:
    """``cfg`` with the platform's games filled in where the configuration leaves them to the history."""
    if cfg.features.games is not None:
        return cfg
    games = pick_games(session_games(engine, filters, as_of))
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"games": games})})
