"""Collaborative filtering: event-type factors and player embeddings from past offers, at every snapshot.

At snapshot ``s`` (time ``T = as_of + s days``) an offer is *resolved* once its
outcome is known before ``T``: re-engaged (``reengaged_at < T``, a success) or
its attribution window over (``window_end < T``, a failure). Unresolved offers
do not count. The response matrix over the catalog's event types is

    R_T[p, e] = (successes + k m_e) / (resolved + k) - m_e = (successes - resolved m_e) / (resolved + k)

(the player's re-engagement rate shrunk towards the type's global rate ``m_e``
at ``T`` by ``k = features.cf_prior_strength`` pseudo-offers, centred on it;
0 where the player has no resolved offer of that type). Its truncated SVD
``R_T ~ U S V'`` (PureSVD: missing entries are the type mean) gives the
event-type factors ``V sqrt(S)`` and the player embeddings ``R_T V / sqrt(S)``
``= U sqrt(S)``, so their dot product is the rank-``k`` reconstruction of the
centred response.

With few event types the SVD is exact and cheap through the ``E x E`` Gram
matrix ``R_T' R_T``. Its entries expand into sums over players that depend
only on each player's own counts (not on the type means), so they are
accumulated over the offers once, updated only where a player's counts change,
for all snapshots together.

Signs: a component is carried over from the day before when it still points
roughly the same way (else, as on the first day with data, its largest loading
is positive). The chain runs over every day from the first resolved offer, so a
snapshot's factors depend only on outcomes before it, never on which other
snapshots were asked for. (The per-snapshot rule alone flips a contrast between
two event types back and forth as their loadings trade places.) Components are
ordered by singular value; two of nearly equal size may swap places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from features.families import ENTITY, EVENT_TYPE_KEY, TIMESTAMP, event_types

OFFER_COLUMNS = ("player_id", "event_type", "reengaged_at", "window_end")
_REL_EIG_TOL = 1e-12  # eigenvalues below this share of the largest are numerical zeros (rank-deficient R)
_ALIGN_MIN = 0.5  # |cosine| with the previous snapshot's component above which its sign is carried over


class CFInputError(RekindleError, ValueError):
    """The offers, snapshots or players given to the collaborative filter are not as expected."""


@dataclass(frozen=True)
class EventFactors:
    """The event-type factors of every snapshot (``S`` snapshots, ``E`` catalog types, ``k`` components)."""

    as_of: datetime
    days: np.ndarray  # (S,) int64 snapshot offsets in days, increasing
    event_types: tuple[str, ...]  # (E,) catalog order
    factors: np.ndarray  # (S, E, k) float64: V sqrt(sigma); zero columns past the rank of R_T
    singular_values: np.ndarray  # (S, k) float64, decreasing, 0 past the rank
    type_means: np.ndarray  # (S, E) float64: global re-engagement rate of each type at T (0: none resolved)
    resolved: np.ndarray  # (S, E) int64: resolved offers of each type at T
    prior_strength: float

    @property
    def dim(self) -> int:
        return int(self.factors.shape[2])

    @property
    def times(self) -> np.ndarray:
        """(S,) datetime64[us]: the snapshot times ``as_of + days``."""
        return _times(self.as_of, self.days)

    @property
    def projection(self) -> np.ndarray:
        """(S, E, k): ``V / sqrt(sigma)``, mapping a centred response row to its embedding."""
        sv = self.singular_values[:, None, :]
        return np.divide(self.factors, sv, out=np.zeros_like(self.factors), where=sv > 0)


def _times(as_of: datetime, days: np.ndarray) -> np.ndarray:
    return np.datetime64(as_of, "us") + days.astype("timedelta64[D]").astype("timedelta64[us]")


def _check_days(days: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(days)
    if arr.ndim != 1 or len(arr) == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise CFInputError(f"snapshot days must be a non-empty 1-d sequence of integers, got {arr!r}")
    if (np.diff(arr) <= 0).any():
        raise CFInputError(f"snapshot days must be strictly increasing, got {arr.tolist()[:10]}...")
    return arr.astype(np.int64)


def _offer_times(
    offers: pd.DataFrame, event_types: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per offer of a catalog type: player, type index, when its outcome is known (a return or the window's
    end) and when it re-engaged (NaT: never)."""
    missing = [c for c in OFFER_COLUMNS if c not in offers.columns]
    if missing:
        raise CFInputError(f"the offers frame lacks the columns {missing}; expected at least {list(OFFER_COLUMNS)}")
    etype = pd.Categorical(offers["event_type"], categories=list(event_types)).codes
    keep = etype >= 0  # types outside the catalog have no column in R
    reeng = offers["reengaged_at"].to_numpy("datetime64[us]")[keep]
    wend = offers["window_end"].to_numpy("datetime64[us]")[keep]
    resolved_at = np.where(np.isnat(reeng), wend, np.minimum(reeng, wend))
    return offers["player_id"].to_numpy(np.int64)[keep], etype[keep].astype(np.int64), resolved_at, reeng


def _first_after(times: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Index of the first snapshot with ``T > when`` (``len(times)``: none; NaT sorts last, so never)."""
    return np.searchsorted(times, when, side="right")


@dataclass(frozen=True)
class _States:
    """Each player's resolved/success counts per type from every snapshot where they change on.

    States are sorted by player, then snapshot; counts are stored type-major ``(E, G)`` so the running sums
    run along contiguous memory.
    """

    player: np.ndarray  # (G,) int64
    snap: np.ndarray  # (G,) int64 snapshot index where this state starts
    n: np.ndarray  # (E, G) int64 resolved offers
    s: np.ndarray  # (E, G) int64 successes
    first: np.ndarray  # (G,) bool: the player's first state


def _states(
    player: np.ndarray, etype: np.ndarray, i_res: np.ndarray, i_succ: np.ndarray, n_types: int, n_snaps: int
) -> _States:
    ok_r, ok_s = i_res < n_snaps, i_succ < n_snaps
    p = np.concatenate([player[ok_r], player[ok_s]])
    i = np.concatenate([i_res[ok_r], i_succ[ok_s]])
    e = np.concatenate([etype[ok_r], etype[ok_s]])
    is_succ = np.concatenate([np.zeros(ok_r.sum(), bool), np.ones(ok_s.sum(), bool)])
    if len(p) and int(p.min()) >= 0 and int(p.max()) < np.iinfo(np.int64).max // (n_snaps + 1):
        order = np.argsort(p * (n_snaps + 1) + i, kind="stable")  # far faster than lexsort
    else:
        order = np.lexsort((i, p))
    p, i, e, is_succ = p[order], i[order], e[order], is_succ[order]
    new = np.ones(len(p), bool)
    new[1:] = (p[1:] != p[:-1]) | (i[1:] != i[:-1])
    g = np.cumsum(new) - 1
    n_groups = int(g[-1]) + 1 if len(g) else 0
    gp, gi = p[new], i[new]
    first = np.ones(n_groups, bool)
    first[1:] = gp[1:] != gp[:-1]
    starts = np.flatnonzero(first)
    lengths = np.diff(np.append(starts, n_groups))

    def running(mask: np.ndarray) -> np.ndarray:
        # per (type, state) counts, summed along each player's states: global running sum minus the player's start
        delta = np.bincount(e[mask] * n_groups + g[mask], minlength=n_types * n_groups).reshape(n_types, n_groups)
        total = np.cumsum(delta, axis=1)
        before = np.zeros((n_types, len(starts)), dtype=total.dtype)
        before[:, 1:] = total[:, starts[1:] - 1]
        return total - np.repeat(before, lengths, axis=1)

    return _States(gp, gi, running(~is_succ), running(is_succ), first)


def _scaled(st: _States, k: float) -> tuple[np.ndarray, np.ndarray]:
    """``x = s / (n + k)`` and ``y = n / (n + k)``, ``(E, G)``, 0 where ``n = 0``: ``R[p, e] = x - y m_e``."""
    d = (st.n + k).astype(np.float64)
    x = np.divide(st.s, d, out=np.zeros(d.shape), where=st.n > 0)
    y = np.divide(st.n, d, out=np.zeros(d.shape), where=st.n > 0)
    return x, y


def fit_event_factors(
    offers: pd.DataFrame, cfg: Config, as_of: datetime, days: Sequence[int] | np.ndarray
) -> EventFactors:
    """Fit the event-type factors at every snapshot ``as_of + days``.

    Parameters
    ----------
    offers
        One row per offer sent before ``as_of`` (the facts' ``offers`` frame): ``player_id``,
        ``event_type``, ``reengaged_at`` (NaT: none), ``window_end``; types outside ``features.event_types``
        are ignored.
    cfg
        ``features.embedding_dim`` (k), ``features.cf_prior_strength``, ``features.event_types``.
    as_of
        Naive UTC time of snapshot 0.
    days
        Strictly increasing snapshot offsets in days (ints <= 0).

    Returns
    -------
    EventFactors
        Per snapshot: factors ``(E, k)``, singular values, type means and resolved counts.
    """
    day_arr = _check_days(days)
    types = tuple(event_types(cfg))
    n_e, dim, k = len(types), cfg.features.embedding_dim, cfg.features.cf_prior_strength
    player, etype, resolved_at, reeng = _offer_times(offers, types)
    grid = _grid(as_of, day_arr, resolved_at)
    times = _times(as_of, grid)
    n_s = len(grid)
    i_res, i_succ = _first_after(times, resolved_at), _first_after(times, reeng)

    # type means: cumulative resolved and successful offers per (snapshot, type)
    resolved = np.cumsum(_count(i_res, etype, n_s, n_e), axis=0)
    success = np.cumsum(_count(i_succ, etype, n_s, n_e), axis=0)
    means = np.divide(success, resolved, out=np.zeros((n_s, n_e)), where=resolved > 0)

    # G = A - B diag(m) - diag(m) B' + diag(m) C diag(m), with A = X'X, B = X'Y, C = Y'Y over players: the blocks
    # of M = [X Y]'[X Y], changed at a snapshot only by the players whose counts change there.
    st = _states(player, etype, i_res, i_succ, n_e, n_s)
    x, y = _scaled(st, k)
    z = np.vstack([x, y])  # (2E, G)
    z_prev = np.zeros_like(z)
    z_prev[:, 1:] = np.where(st.first[None, 1:], 0.0, z[:, :-1])
    order = np.argsort(st.snap, kind="stable")
    bounds = np.searchsorted(st.snap[order], np.arange(n_s + 1))
    delta = np.zeros((n_s, 2 * n_e, 2 * n_e))
    for j in range(n_s):  # one small matrix product per snapshot, over the players changing there
        rows = order[bounds[j] : bounds[j + 1]]
        if len(rows):
            zj, pj = z[:, rows], z_prev[:, rows]
            delta[j] = zj @ zj.T - pj @ pj.T
    mom = np.cumsum(delta, axis=0)
    a, b, c = mom[:, :n_e, :n_e], mom[:, :n_e, n_e:], mom[:, n_e:, n_e:]
    mr, mc = means[:, None, :], means[:, :, None]
    gram = a - b * mr - mc * b.transpose(0, 2, 1) + mc * c * mr
    gram = (gram + gram.transpose(0, 2, 1)) / 2

    factors, sv = _factorise(gram, dim)
    pick = np.searchsorted(grid, day_arr)
    return EventFactors(
        as_of, day_arr, types, factors[pick], sv[pick], means[pick], resolved[pick].astype(np.int64), float(k)
    )


def _grid(as_of: datetime, days: np.ndarray, resolved_at: np.ndarray) -> np.ndarray:
    """The snapshots to fit: ``days`` plus every day from the first with a resolved offer to the last of ``days``.

    Each component's sign is carried from day to day along this grid, so a snapshot's factors depend on the
    outcomes before it and not on which other snapshots were asked for.
    """
    known = resolved_at[~np.isnat(resolved_at)]
    if not len(known):
        return days
    first = int((known.min() - np.datetime64(as_of, "us")) // np.timedelta64(1, "D")) + 1
    return np.union1d(days, np.arange(first, days[-1] + 1)) if first <= days[-1] else days


def _count(snap: np.ndarray, etype: np.ndarray, n_s: int, n_e: int) -> np.ndarray:
    ok = snap < n_s
    return np.bincount(snap[ok] * n_e + etype[ok], minlength=n_s * n_e).reshape(n_s, n_e).astype(np.float64)


def _factorise(gram: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``dim`` eigenpairs of each Gram matrix (snapshots in time order) as factors ``V sqrt(sigma)``."""
    n_s, n_e, _ = gram.shape
    lam, vec = np.linalg.eigh(gram)  # ascending
    lam, vec = lam[:, ::-1], vec[:, :, ::-1]
    top = np.max(lam, axis=1, keepdims=True)
    lam = np.where(lam > _REL_EIG_TOL * np.maximum(top, np.finfo(float).tiny), lam, 0.0)
    vec = _orient(vec, lam > 0)
    sv = np.sqrt(lam)
    factors = vec * np.sqrt(sv)[:, None, :]
    keep = min(dim, n_e)
    out_f, out_s = np.zeros((n_s, n_e, dim)), np.zeros((n_s, dim))
    out_f[:, :, :keep], out_s[:, :keep] = factors[:, :, :keep], sv[:, :keep]
    return out_f, out_s


def _orient(vec: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Signs of the unit eigenvectors ``(S, E, c)``: each component points the way it pointed the snapshot
    before (when the two are at least ``_ALIGN_MIN`` alike); otherwise its largest loading is positive."""
    pick = np.argmax(np.abs(vec), axis=1)
    rule = np.sign(np.take_along_axis(vec, pick[:, None, :], axis=1))[:, 0, :]
    rule[rule == 0] = 1.0
    out = vec * rule[:, None, :]
    for j in range(1, len(vec)):  # sequential by nature; E x c numbers per snapshot
        cos = np.einsum("ec,ec->c", out[j - 1], out[j])
        flip = valid[j - 1] & valid[j] & (cos <= -_ALIGN_MIN)
        out[j, :, flip] *= -1.0
    return out


def player_embeddings(
    offers: pd.DataFrame,
    factors: EventFactors,
    player_ids: Sequence[int] | np.ndarray,
    days: Sequence[int] | np.ndarray,
    created_at: Sequence[datetime] | np.ndarray,
) -> pd.DataFrame:
    """The player embeddings ``R_T V_T / sqrt(sigma_T)`` of ``player_ids`` at the snapshots ``days``.

    Parameters
    ----------
    offers
        The offers frame (all players or only these; others are ignored).
    factors
        From :func:`fit_event_factors`; ``days`` must be among its snapshots.
    player_ids, created_at
        The players (unique) and their registration times (aligned).
    days
        Strictly increasing snapshot offsets in days.

    Returns
    -------
    pandas.DataFrame
        ``player_id`` int64, ``event_timestamp`` datetime64[us], ``cf_0 .. cf_{k-1}`` float32: one row per
        player and snapshot with ``created_at < T``, ordered by player then time; 0 without a resolved offer.
    """
    day_arr = _check_days(days)
    snap = np.searchsorted(factors.days, day_arr)
    if (snap >= len(factors.days)).any() or (factors.days[np.minimum(snap, len(factors.days) - 1)] != day_arr).any():
        raise CFInputError(
            f"snapshot days {sorted(set(day_arr.tolist()) - set(factors.days.tolist()))} were not fitted"
        )
    ids = np.asarray(player_ids, dtype=np.int64)
    created = np.asarray(created_at, dtype="datetime64[us]")
    if len(created) != len(ids):
        raise CFInputError(f"{len(ids)} player ids but {len(created)} created_at values: they must be aligned")
    index = pd.Index(ids)
    if not index.is_unique:
        raise CFInputError(f"player ids must be unique, got duplicates {index[index.duplicated()][:5].tolist()}")
    times = _times(factors.as_of, day_arr)
    n_p, n_s, dim = len(ids), len(day_arr), factors.dim

    mine = offers[offers["player_id"].isin(index)] if len(offers) else offers
    player, etype, resolved_at, reeng = _offer_times(mine, factors.event_types)
    st = _states(
        player, etype, _first_after(times, resolved_at), _first_after(times, reeng), len(factors.event_types), n_s
    )
    x, y = _scaled(st, factors.prior_strength)
    # the state of each player at each snapshot: its latest state starting at or before it (-1: none yet)
    state = np.full((n_p, n_s), -1, dtype=np.int64)
    state[index.get_indexer(pd.Index(st.player)), st.snap] = np.arange(len(st.player))
    state = np.maximum.accumulate(state, axis=1)

    emb = np.zeros((n_p, n_s, dim), dtype=np.float32)
    proj, means = factors.projection[snap], factors.type_means[snap]
    for j in range(n_s):  # per snapshot; elementwise so a player's value never depends on its chunk
        rows = np.flatnonzero(state[:, j] >= 0)
        if not len(rows):
            continue
        g = state[rows, j]
        r = x[:, g] - y[:, g] * means[j][:, None]  # the centred response rows R_T[p, :], (E, rows)
        acc = np.zeros((len(rows), dim))
        for e in range(len(r)):
            acc += r[e][:, None] * proj[j, e][None, :]
        emb[rows, j] = acc
    alive = (created[:, None] < times[None, :]).ravel()
    out = pd.DataFrame(
        {
            ENTITY: np.repeat(ids, n_s)[alive],
            TIMESTAMP: np.tile(times, n_p)[alive],
        }
    )
    flat = emb.reshape(n_p * n_s, dim)[alive]
    for c in range(dim):
        out[f"cf_{c}"] = flat[:, c]
    return out


def event_type_embeddings(factors: EventFactors) -> pd.DataFrame:
    """The event-type factors as rows: ``event_type``, ``event_timestamp``, ``ev_cf_0 ..`` float32 (per snapshot)."""
    n_s, n_e, dim = factors.factors.shape
    out = pd.DataFrame(
        {
            EVENT_TYPE_KEY: np.tile(np.asarray(factors.event_types, dtype=object), n_s),
            TIMESTAMP: np.repeat(factors.times, n_e),
        }
    )
    flat = factors.factors.reshape(n_s * n_e, dim).astype(np.float32)
    for c in range(dim):
        out[f"ev_cf_{c}"] = flat[:, c]
    return out


def resolved_offers(
    offers: pd.DataFrame, player_ids: Sequence[int] | np.ndarray, at: datetime, event_types: Sequence[str]
) -> np.ndarray:
    """Offers of ``event_types`` resolved before ``at``, per player of ``player_ids`` (int64, aligned).

    The collaborative evidence behind a player's embedding: :func:`features.matching.hybrid_score` weighs the
    collaborative score by it.
    """
    player, _, resolved_at, _ = _offer_times(offers, event_types)
    index = pd.Index(np.asarray(player_ids, dtype=np.int64))
    pos = index.get_indexer(pd.Index(player[resolved_at < np.datetime64(at, "us")]))
    return np.bincount(pos[pos >= 0], minlength=len(index)).astype(np.int64)
