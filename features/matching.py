"""Event-type matching: collaborative, content-based and hybrid scores of (player, event type) pairs.

Every function takes frames and returns a wide frame: one row per player row
given (same index), one column per event type, so ranking the types of a
player is a row-wise ``idxmax``.

- collaborative: the dot product of the player and event-type embeddings
  (:mod:`features.cf`), the rank-k reconstruction of the player's centred,
  shrunk re-engagement rate for the type (> 0: responds better than average).
- content-based, in [0, 1]: how well the type's catalog attributes
  (:mod:`features.content`) fit the player's own behaviour, for players with
  no offer history too. The game fit ``g`` maps the player's share of sessions
  on the event's game piecewise linearly onto [0, 1] with the share of an
  indifferent player (``1 / number of share_* columns``) at 0.5; events tied to
  no game, games without a share column and players who never played get 0.5.
  Events that require a deposit are multiplied by the deposit habit ``h``: 0
  for a player who never deposited, 0.5 with a deposit before ``T`` but none in
  the longest window, 1 with a deposit in it (``deposits_n_<w>d``).
- hybrid, in [0, 1]: ``w a + (1 - w) c`` with ``c`` the content score, ``a =
  (1 + tanh(collaborative / scale)) / 2`` the collaborative score on the same
  [0, 1] scale (0.5: an average response), and ``w = n / (n + prior_offers)``
  growing with the player's ``n`` resolved offers: a player with no history
  gets the content score alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from features.families import EVENT_TYPE_KEY, TIMESTAMP, type_suffix

NEUTRAL = 0.5
DEFAULT_SCALE = 0.1  # a typical spread of centred re-engagement rates between event types
_LIFETIME = "deposits_n_lifetime"


class MatchingInputError(RekindleError, ValueError):
    """The frames given to a matching score lack what it needs."""


def _components(frame: pd.DataFrame, prefix: str) -> list[str]:
    pattern = re.compile(rf"^{prefix}(\d+)$")
    found = sorted((int(m.group(1)), c) for c in frame.columns if (m := pattern.match(str(c))))
    if not found or [i for i, _ in found] != list(range(len(found))):
        raise MatchingInputError(f"expected columns {prefix}0 .. {prefix}<k-1>, got {list(frame.columns)}")
    return [c for _, c in found]


def collaborative_score(player_emb: pd.DataFrame, event_emb: pd.DataFrame) -> pd.DataFrame:
    """Dot products of player embeddings and event-type embeddings.

    Parameters
    ----------
    player_emb
        Rows of ``cf_0 .. cf_{k-1}`` (and ``event_timestamp`` when ``event_emb`` spans several snapshots).
    event_emb
        ``event_type``, ``ev_cf_0 .. ev_cf_{k-1}`` and, optionally, ``event_timestamp``. With several
        snapshots, each player row uses the latest one at or before its own timestamp (NaN when none).

    Returns
    -------
    pandas.DataFrame
        Index of ``player_emb``, one float64 column per event type (order of first appearance).
    """
    pcols, ecols = _components(player_emb, "cf_"), _components(event_emb, "ev_cf_")
    if len(pcols) != len(ecols):
        raise MatchingInputError(f"player embeddings have {len(pcols)} components, event-type ones {len(ecols)}")
    types = pd.Index(pd.unique(event_emb[EVENT_TYPE_KEY]))
    emb = player_emb[pcols].to_numpy(np.float64)
    stamps = np.unique(event_emb[TIMESTAMP].to_numpy("datetime64[us]")) if TIMESTAMP in event_emb else np.array([])
    ev_stamp = event_emb[TIMESTAMP].to_numpy("datetime64[us]") if len(stamps) else np.zeros(len(event_emb), "M8[us]")
    if len(stamps) > 1 and TIMESTAMP not in player_emb:
        raise MatchingInputError(f"event embeddings span {len(stamps)} snapshots: player rows need {TIMESTAMP!r}")
    pos_s = np.searchsorted(stamps, ev_stamp) if len(stamps) else np.zeros(len(event_emb), np.int64)
    pos_e = types.get_indexer(pd.Index(event_emb[EVENT_TYPE_KEY]))
    if pd.Series(list(zip(pos_s, pos_e, strict=True))).duplicated().any():
        raise MatchingInputError("event embeddings hold more than one row per event type and snapshot")
    table = np.full((max(len(stamps), 1), len(types), len(ecols)), np.nan)
    table[pos_s, pos_e] = event_emb[ecols].to_numpy(np.float64)
    if len(stamps) and TIMESTAMP in player_emb:  # each row: the latest snapshot at or before it (NaN: none)
        at = np.searchsorted(stamps, player_emb[TIMESTAMP].to_numpy("datetime64[us]"), side="right") - 1
        score = np.einsum("nk,nek->ne", emb, table[np.maximum(at, 0)])
        score[at < 0] = np.nan
    else:
        score = emb @ table[0].T
    return pd.DataFrame(score, index=player_emb.index, columns=types)


def _game_fit(share: np.ndarray, n_shares: int) -> np.ndarray:
    """Share of sessions on a game -> [0, 1], piecewise linear with an indifferent player's share at 0.5."""
    even = 1.0 / n_shares
    low = NEUTRAL * share / even
    high = NEUTRAL + (1 - NEUTRAL) * (share - even) / (1 - even) if n_shares > 1 else np.ones_like(share)
    return np.where(np.isnan(share), NEUTRAL, np.clip(np.where(share <= even, low, high), 0.0, 1.0))


def deposit_habit(player_features: pd.DataFrame) -> np.ndarray:
    """0 never deposited, 0.5 deposited but not in the longest ``deposits_n_<w>d`` window, 1 deposited in it."""
    windows = sorted(
        (int(m.group(1)), c) for c in player_features.columns if (m := re.match(r"^deposits_n_(\d+)d$", str(c)))
    )
    if _LIFETIME not in player_features or not windows:
        raise MatchingInputError(
            f"the deposit habit needs {_LIFETIME!r} and a deposits_n_<w>d column, got {list(player_features.columns)}"
        )
    ever = player_features[_LIFETIME].fillna(0).to_numpy(np.float64) > 0
    recent = player_features[windows[-1][1]].fillna(0).to_numpy(np.float64) > 0
    return NEUTRAL * ever + (1 - NEUTRAL) * (recent & ever)


def content_score(player_features: pd.DataFrame, content: pd.DataFrame) -> pd.DataFrame:
    """Content-based affinity of each player for each event type, in [0, 1] (see the module docstring).

    Parameters
    ----------
    player_features
        One row per player (at a time): the activity family's ``share_<game>`` columns and, when an event
        requires a deposit, ``deposits_n_lifetime`` and ``deposits_n_<w>d``; with ``event_timestamp`` when
        ``content`` spans several snapshots.
    content
        The event types' content (the event_type_content view): ``event_type``, ``game``,
        ``requires_deposit`` and, optionally, ``event_timestamp``. With several snapshots, each player row
        uses the latest one at or before its own timestamp (an event type not described yet: 0.5).

    Returns
    -------
    pandas.DataFrame
        Index of ``player_features``, one column per event type of ``content`` (order of first appearance).
    """
    missing = [c for c in (EVENT_TYPE_KEY, "game", "requires_deposit") if c not in content]
    if missing:
        raise MatchingInputError(f"the content frame lacks the columns {missing}")
    shares = [c for c in player_features.columns if str(c).startswith("share_")]
    if not shares:
        raise MatchingInputError("content scores need the activity family's share_<game> columns, got none")
    n = len(player_features)
    types = pd.Index(pd.unique(content[EVENT_TYPE_KEY]))
    stamps = np.unique(content[TIMESTAMP].to_numpy("datetime64[us]")) if TIMESTAMP in content else np.array([])
    if len(stamps) > 1 and TIMESTAMP not in player_features:
        raise MatchingInputError(f"the content spans {len(stamps)} snapshots: player rows need {TIMESTAMP!r}")
    pos_s = np.searchsorted(stamps, content[TIMESTAMP].to_numpy("datetime64[us]")) if len(stamps) else 0
    pos_e = types.get_indexer(pd.Index(content[EVENT_TYPE_KEY]))
    game_names = pd.Index([s.removeprefix("share_") for s in shares])
    game_of = np.full((max(len(stamps), 1), len(types)), -2, np.int64)  # -2: not described yet, -1: no game
    game_of[pos_s, pos_e] = game_names.get_indexer(pd.Index(content["game"].fillna("").astype(str)))
    needs = np.zeros(game_of.shape, bool)
    needs[pos_s, pos_e] = content["requires_deposit"].fillna(0).to_numpy().astype(bool)
    if len(stamps) and TIMESTAMP in player_features:  # each row: the latest content at or before it
        at = np.searchsorted(stamps, player_features[TIMESTAMP].to_numpy("datetime64[us]"), side="right") - 1
    else:
        at = np.zeros(n, np.int64)
    known = at >= 0
    at = np.maximum(at, 0)
    share = player_features[shares].to_numpy(np.float64)
    habit = deposit_habit(player_features) if needs.any() else np.ones(n)
    rows = np.arange(n)
    out = np.empty((n, len(types)))
    for j in range(len(types)):  # per event type, vectorised over players
        g = game_of[at, j]
        fit = np.where(g >= 0, _game_fit(share[rows, np.maximum(g, 0)], len(shares)), NEUTRAL)
        fit = np.where(known & (g != -2), fit, NEUTRAL)
        out[:, j] = fit * np.where(known & needs[at, j], habit, 1.0)
    return pd.DataFrame(out, index=player_features.index, columns=types)


def collaborative_affinity(collaborative: pd.DataFrame, scale: float = DEFAULT_SCALE) -> pd.DataFrame:
    """Collaborative scores on [0, 1]: ``(1 + tanh(score / scale)) / 2`` (0.5: average response; NaN -> 0.5)."""
    if scale <= 0:
        raise MatchingInputError(f"scale must be positive, got {scale}")
    aff = 0.5 * (1.0 + np.tanh(collaborative.to_numpy(np.float64) / scale))
    return pd.DataFrame(np.where(np.isnan(aff), NEUTRAL, aff), index=collaborative.index, columns=collaborative.columns)


def hybrid_score(
    collaborative: pd.DataFrame,
    content: pd.DataFrame,
    n_resolved: Sequence[float] | np.ndarray | pd.Series,
    *,
    prior_offers: float = 5.0,
    scale: float = DEFAULT_SCALE,
) -> pd.DataFrame:
    """Blend of the collaborative and content scores, the collaborative weight growing with the evidence.

    Parameters
    ----------
    collaborative, content
        From :func:`collaborative_score` and :func:`content_score`, same index and event types.
    n_resolved
        Resolved offers per row (e.g. :func:`features.cf.resolved_offers`), aligned with the rows.
    prior_offers
        Resolved offers at which both scores weigh the same (e.g. ``features.cf_prior_strength``).
    scale
        Collaborative score mapped to an affinity of ``(1 + tanh(1)) / 2 = 0.88``.

    Returns
    -------
    pandas.DataFrame
        ``w a + (1 - w) c`` in [0, 1], with ``w = n / (n + prior_offers)``; the index and columns of ``collaborative``.
    """
    if prior_offers < 0:
        raise MatchingInputError(f"prior_offers must be >= 0, got {prior_offers}")
    if not collaborative.index.equals(content.index) or set(collaborative.columns) != set(content.columns):
        raise MatchingInputError(
            f"collaborative and content scores must share rows and event types; got {list(collaborative.columns)} "
            f"and {list(content.columns)}"
        )
    n = np.asarray(n_resolved, dtype=np.float64)
    if n.shape != (len(collaborative),) or (n < 0).any():
        raise MatchingInputError(f"n_resolved must hold {len(collaborative)} non-negative counts, got shape {n.shape}")
    w = np.divide(n, n + prior_offers, out=np.zeros_like(n), where=n > 0)[:, None]
    aff = collaborative_affinity(collaborative, scale).to_numpy()
    blend = w * aff + (1 - w) * content[collaborative.columns].to_numpy(np.float64)
    return pd.DataFrame(blend, index=collaborative.index, columns=collaborative.columns)


def own_type(wide: pd.DataFrame, event_types: pd.Series) -> np.ndarray:
    """From a rows x event types frame, each row's value for its own event type (NaN for none or unknown)."""
    idx = wide.columns.get_indexer(pd.Index(event_types))
    values = wide.to_numpy(np.float64)[np.arange(len(wide)), np.maximum(idx, 0)]
    return np.where(idx >= 0, values, np.nan)


MATCH_KINDS = ("collaborative", "content", "hybrid")


def match_column(kind: str, event_type: str) -> str:
    """The training set's column of the ``kind`` match score of every row's player for ``event_type``."""
    return f"match_{kind}__{type_suffix(event_type)}"


def add_match_scores(
    frame: pd.DataFrame,
    cfg: Config,
    event_emb: pd.DataFrame,
    content: pd.DataFrame,
    *,
    time_column: str = "decision_at",
) -> pd.DataFrame:
    """The collaborative, content-based and hybrid match scores of each row's player for every event type
    (``match_<kind>__<type>``, so a model can score any arm) and of its own event type (``match_<kind>``,
    NaN for no offer).

    ``event_emb`` and ``content`` are the event_type_cf and event_type_content views (every snapshot); each
    row uses the latest snapshot at or before its ``time_column``, like the point-in-time join. Columns are
    named with :func:`features.families.type_suffix` of each event type.
    """
    k = cfg.features.embedding_dim
    when = frame[time_column].to_numpy()
    player = frame[[f"cf_{i}" for i in range(k)]].fillna(0.0).assign(**{TIMESTAMP: when})
    collaborative = collaborative_score(player, event_emb)
    shares = [c for c in frame.columns if str(c).startswith("share_") or str(c).startswith("deposits_n_")]
    content_scores = content_score(frame[shares].assign(**{TIMESTAMP: when}), content)
    content_scores = content_scores.reindex(columns=collaborative.columns, fill_value=NEUTRAL)
    hybrid = hybrid_score(
        collaborative,
        content_scores,
        frame["offers_resolved"].fillna(0).to_numpy(),
        prior_offers=cfg.features.cf_prior_strength,
    )
    columns: dict[str, np.ndarray] = {}
    for name, wide in zip(MATCH_KINDS, (collaborative, content_scores, hybrid), strict=True):
        if "event_type" in frame:
            columns[f"match_{name}"] = own_type(wide, frame["event_type"])
        for event_type in wide.columns:
            columns[match_column(name, str(event_type))] = wide[event_type].to_numpy(np.float32)
    return pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)
