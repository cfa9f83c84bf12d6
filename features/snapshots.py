"""Daily point-in-time snapshots of the player feature families, from the per-day facts.

Pure numpy/pandas, no I/O. A snapshot ``s`` (an int <= 0) is taken at
``T = as_of + s days`` and sees the day buckets ``d < s`` only, i.e. exactly the
platform rows before ``T`` (:mod:`features.facts`). Per chunk of players the
daily facts are scattered into dense ``[players, days]`` arrays whose running
sums (or running maxima) along the days give every lifetime value at every
snapshot at once; a rolling window ``[T - w, T)`` is the difference of two
running sums ``w`` columns apart. Definitions: :mod:`features.families`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import Config
from core.timeutil import naive_utc
from features.families import (
    ENTITY,
    OTHER_GAME,
    TIMESTAMP,
    activity,
    event_types,
    games,
    money,
    promotions,
    segment,
    type_suffix,
)
from segmentation.classify import ACTIVE_STATUS, idle_state, label_players

if TYPE_CHECKING:
    from features.facts import Facts

DAY_US = 86_400_000_000
NONE = np.iinfo(np.int64).min  # "no such time" in int64 microseconds (the bit pattern of NaT)
OFFERS_WINDOW = 30  # offers_30d
RATIO_CAP = 1e6  # bonus_to_deposit_ratio with bonus and no deposits
CHUNK_CELLS = 50_000 * 181  # (player, snapshot) cells per chunk at most, unless chunk_players is given


# ------------------------------------------------------------ the snapshots --
def snapshot_days(facts: Facts, cfg: Config, since: datetime | None = None) -> np.ndarray:
    """The snapshot indices ``s`` (time ``as_of + s days``) of a build, ascending, ending at 0.

    Parameters
    ----------
    facts : Facts
        The per-day facts; only ``as_of`` and the players' ``created_at`` are read.
    cfg : Config
        ``features.history_days`` (null: the whole history) bounds the first snapshot.
    since : datetime, optional
        The first snapshot is the first one at or after this time (naive UTC; aware values are converted).

    Returns
    -------
    numpy.ndarray
        int64 indices, daily from the first snapshot at which a player exists (registered
        strictly before it), or from ``-history_days``, or from ``since``, whichever is
        latest, up to 0 (the as-of itself). Empty without players or with ``since`` after
        the as-of.
    """
    if facts.players.empty:
        return np.empty(0, dtype=np.int64)
    as_of = np.datetime64(naive_utc(facts.as_of), "us")
    first = _us_between(as_of, facts.players["created_at"].min())
    lo = first // DAY_US + 1  # the first whole day after the first registration
    if cfg.features.history_days is not None:
        lo = max(lo, -cfg.features.history_days)
    if since is not None:
        start = _us_between(as_of, naive_utc(since))
        lo = max(lo, -(-start // DAY_US))  # ceil: at or after since
    return np.arange(lo, 1, dtype=np.int64)


def profile_frame(observed: pd.DataFrame) -> pd.DataFrame:
    """The ``profile`` family from the system's observations of the players' mutable attributes
    (:meth:`system_db.store.SystemStore.read_attributes`): one row per observation, dated when it was
    seen, so a decision before a player's first observation reads no profile at all.

    Returns
    -------
    pandas.DataFrame
        ``player_id``, ``event_timestamp`` (the observation time), ``channel``, ``vip_level`` (float32),
        ``status`` (strings, "" when missing), sorted by ``player_id`` and time.
    """
    o = observed.sort_values([ENTITY, "observed_at"], kind="stable")
    return pd.DataFrame(
        {
            ENTITY: o[ENTITY].to_numpy(dtype=np.int64),
            TIMESTAMP: o["observed_at"].to_numpy(dtype="datetime64[us]"),
            "channel": _strings(o["channel"]),
            "vip_level": o["vip_level"].to_numpy(dtype=np.float32, na_value=np.nan),
            "status": _strings(o["status"]),
        }
    )


def player_snapshots(
    facts: Facts,
    cfg: Config,
    days: np.ndarray,
    *,
    chunk_players: int | None = None,
    on_chunk: Callable[[int], Any] | None = None,
    observed: pd.DataFrame | None = None,
) -> Iterator[dict[str, pd.DataFrame]]:
    """The ``activity``, ``money``, ``promotions`` and ``segment`` families at every snapshot, per chunk of players.

    Parameters
    ----------
    facts : Facts
        The per-day facts of :mod:`features.facts`.
    cfg : Config
        Games, windows, catalog event types, dormancy and segmentation rules, ``features.chunk_players``.
    days : numpy.ndarray
        The snapshot indices (ints <= 0), e.g. from :func:`snapshot_days`.
    chunk_players : int, optional
        Players per chunk; the result does not depend on it. Default: ``cfg.features.chunk_players``,
        fewer when there are so many snapshots that a chunk would exceed :data:`CHUNK_CELLS`
        (player, snapshot) cells: memory grows with players x snapshots.
    on_chunk : callable, optional
        Called with the number of players of each chunk once it is computed.
    observed : pandas.DataFrame, optional
        The system's observations of the players' status (``player_id``, ``observed_at``, ``status``).
        The segment at a snapshot reads the status last observed at or before it; where none was observed
        yet, the platform's current status says nothing about that time, and the player is labelled by
        behaviour alone (as if active).

    Yields
    ------
    dict of str to pandas.DataFrame
        Family name -> frame with ``player_id`` (int64), ``event_timestamp`` (datetime64[us],
        ``as_of + s days``) and the family's columns in order (float32, int64 or str). One row
        per player and snapshot at which the player is registered (``created_at < T``), by
        player then time.

    Raises
    ------
    ValueError
        If ``days`` holds a positive index or a facts frame lacks a column the configuration needs.
    """
    days = np.unique(np.asarray(days, dtype=np.int64))
    if len(days) and days[-1] > 0:
        raise ValueError(f"snapshot indices must be <= 0 (at or before the as-of), got {days[-1]}")
    _require_columns(facts, cfg)
    if len(days) == 0 or facts.players.empty:
        return
    size = chunk_players or max(1, min(cfg.features.chunk_players, CHUNK_CELLS // len(days)))
    players = facts.players.sort_values(ENTITY, kind="stable", ignore_index=True)
    ids = players[ENTITY].to_numpy(dtype=np.int64)
    as_of = np.datetime64(naive_utc(facts.as_of), "us")
    ctx = _Context(
        cfg=cfg,
        days=days,
        base=int(days[0]) - max(*cfg.features.windows_days, OFFERS_WINDOW),
        created=_rel_us(players["created_at"], as_of),
        status=_ObservedStatus(observed, as_of),
        as_of=as_of,
    )
    sources = {name: _Rows(getattr(facts, name)) for name in ("session_days", "money_days", "offers")}
    for lo in range(0, len(ids), size):
        chunk = ids[lo : lo + size]
        frames = {name: rows.chunk(chunk) for name, rows in sources.items()}
        yield _snapshot_chunk(ctx, chunk, slice(lo, lo + len(chunk)), frames)
        if on_chunk is not None:
            on_chunk(len(chunk))


# ------------------------------------------------------------- the machinery --
@dataclass(frozen=True)
class _Context:
    cfg: Config
    days: np.ndarray
    base: int  # the day bucket of grid column 1; column 0 gathers every earlier bucket
    created: np.ndarray  # registration, us from the as-of, per player (all chunks)
    status: _ObservedStatus
    as_of: np.datetime64


class _ObservedStatus:
    """The status last observed at or before each snapshot (``active`` where nothing was observed yet)."""

    def __init__(self, observed: pd.DataFrame | None, as_of: np.datetime64) -> None:
        o = observed if observed is not None else pd.DataFrame(columns=[ENTITY, "observed_at", "status"])
        o = o.sort_values([ENTITY, "observed_at"], kind="stable")
        self.player = o[ENTITY].to_numpy(dtype=np.int64)
        seen = _rel_us(o["observed_at"], as_of)
        self.day = -(-seen // DAY_US)  # the first snapshot (day index from the as-of) that sees it
        names = o["status"].astype(str)
        self.status = pd.Categorical(names, categories=sorted({ACTIVE_STATUS, *names}))

    def at(self, player: np.ndarray, t: np.ndarray) -> Any:
        """Per row, the status of ``player`` at the snapshot ``t`` (us from the as-of, whole days)."""
        codes = np.full(len(player), self.status.categories.get_loc(ACTIVE_STATUS), dtype=np.int64)
        if len(self.player):
            lo = np.searchsorted(self.player, player, side="left")
            hi = np.searchsorted(self.player, player, side="right")
            has = hi > lo
            day = t // DAY_US
            # a player's observations are sorted by time: the last one visible at the row's day wins
            for k in range(int((hi - lo).max(initial=0))):  # a few observations per player at most
                idx = np.minimum(lo + k, len(self.player) - 1)
                visible = has & (lo + k < hi) & (self.day[idx] <= day)
                codes = np.where(visible, self.status.codes[idx], codes)
        return pd.Categorical.from_codes(codes, dtype=self.status.dtype)


class _Rows:
    """A facts frame, cut per chunk of player ids without copying it whole (sorted by player or not)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        pid = frame[ENTITY].to_numpy(dtype=np.int64)
        self.order = None if bool(np.all(pid[1:] >= pid[:-1])) else np.argsort(pid, kind="stable")
        self.pid = pid if self.order is None else pid[self.order]

    def chunk(self, ids: np.ndarray) -> pd.DataFrame:
        a = int(np.searchsorted(self.pid, ids[0], side="left"))
        b = int(np.searchsorted(self.pid, ids[-1], side="right"))
        return self.frame.iloc[a:b] if self.order is None else self.frame.take(self.order[a:b])


class _Grid:
    """The players of one chunk x day columns, and the (player, snapshot) rows the chunk emits.

    Grid column ``c >= 1`` holds day bucket ``base + c - 1`` and column 0 every earlier
    bucket, so after a running sum (or maximum) along the columns, the cell of bucket
    ``s - 1`` holds everything before ``T = as_of + s days``, and the cell ``w`` columns
    to its left everything before ``T - w days`` (``base`` leaves room for the longest window).
    """

    def __init__(self, ctx: _Context, created: np.ndarray) -> None:
        self.n = len(created)
        self.base = ctx.base
        self.width = -ctx.base + 1  # buckets < base, base, ..., -1
        self.seen = created[:, None] < ctx.days[None, :] * DAY_US  # [player, snapshot]: registered before T
        self.player, k = np.nonzero(self.seen)  # the rows, by player then snapshot
        self.t = ctx.days[k] * DAY_US  # T, us from the as-of
        self.columns = ctx.days - self.base  # per snapshot, the column of bucket s - 1
        first, last = int(self.columns[0]), int(self.columns[-1])
        self.contiguous = last - first + 1 == len(self.columns)
        self._scratch: dict[type, np.ndarray] = {}

    def _cells(self, player: np.ndarray, when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat cells of the events at ``when`` (us from the as-of); NONE and times at/after the as-of are dropped."""
        keep = (when != NONE) & (when < 0)
        column = when[keep] // DAY_US - (self.base - 1)
        np.maximum(column, 0, out=column)  # buckets before base -> column 0
        return player[keep] * self.width + column, keep

    def _zeros(self, dtype: type, fill: float = 0) -> np.ndarray:
        """The chunk's scratch grid of ``dtype``, flat and reset to ``fill``.

        One buffer per dtype is reused for every feature: a fresh 50 MB array per
        feature costs more in page faults than the whole computation on it.
        """
        flat = self._scratch.get(dtype)
        if flat is None:
            flat = self._scratch[dtype] = np.empty(self.n * self.width, dtype=dtype)
        flat.fill(fill)
        return flat

    def counts(
        self, player: np.ndarray, when: np.ndarray, weights: np.ndarray | None = None, windows: Sequence[int] = ()
    ) -> list[np.ndarray]:
        """Per row, the events (or their integer ``weights``) before T, then in each window ``[T - w days, T)``."""
        cell, keep = self._cells(player, when)
        flat = self._zeros(np.int32)  # int32: exact for counts and the fastest to scatter and sum
        np.add.at(flat, cell, np.int32(1) if weights is None else weights[keep].astype(np.int32, copy=False))
        return self._running(flat, windows)

    def amounts(
        self, player: np.ndarray, when: np.ndarray, weights: np.ndarray, windows: Sequence[int] = ()
    ) -> list[np.ndarray]:
        """Per row, the sum of ``weights`` (KRW, float64) before T, then in each window ``[T - w days, T)``."""
        cell, keep = self._cells(player, when)
        flat = self._zeros(np.float64)
        np.add.at(flat, cell, weights[keep])
        return self._running(flat, windows)

    def _running(self, flat: np.ndarray, windows: Sequence[int]) -> list[np.ndarray]:
        grid = flat.reshape(self.n, -1)
        np.add.accumulate(grid, axis=1, out=grid)
        lifetime = self.at(grid)
        out = [lifetime]
        for w in windows:
            earlier = self.at(grid, w)
            out.append(np.subtract(lifetime, earlier, out=earlier))
        return out

    def largest(self, player: np.ndarray, when: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per row, the largest of ``values`` (float, NaN ignored) among the events before T (NaN: none)."""
        cell, keep = self._cells(player, when)
        flat = self._zeros(np.float64, -np.inf)
        np.fmax.at(flat, cell, values[keep])
        grid = flat.reshape(self.n, -1)
        top = self.at(np.maximum.accumulate(grid, axis=1, out=grid))
        top[np.isneginf(top)] = np.nan
        return top

    def latest(self, player: np.ndarray, when: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Per row, the index of the last event before T in ``order`` (-1: none).

        ``order`` sorts the events by player and then time (ties: the later one last).
        """
        cell, keep = self._cells(player, when)
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
        flat = self._zeros(np.int32)
        np.maximum.at(flat, cell, rank[keep])
        grid = flat.reshape(self.n, -1)
        return np.append(order, -1)[self.at(np.maximum.accumulate(grid, axis=1, out=grid)) - 1]

    def at(self, running: np.ndarray, back: int = 0) -> np.ndarray:
        """Per row, the running value before T (``back`` > 0: before ``T - back`` days)."""
        if self.contiguous:  # a strided view, then the mask: no index arrays (daily snapshots)
            first = int(self.columns[0]) - back
            return running[:, first : first + len(self.columns)][self.seen]
        return running[:, self.columns - back][self.seen]

    def days_since(self, when: np.ndarray) -> np.ndarray:
        """Per row, days from ``when`` (us from the as-of; NONE: NaN) to T."""
        out = (self.t - when) / DAY_US
        out[when == NONE] = np.nan
        return out


def _snapshot_chunk(ctx: _Context, ids: np.ndarray, where: slice, facts: dict[str, pd.DataFrame]) -> dict[str, Any]:
    grid = _Grid(ctx, ctx.created[where])
    # Float features are stored as float32 as soon as they are computed (memory); names
    # starting with "_" are exact intermediates shared between families.
    values: dict[str, np.ndarray] = {"_created": ctx.created[where][grid.player]}
    values |= _activity(ctx, grid, _local(ids, facts["session_days"]), values)
    values |= _money(ctx, grid, _local(ids, facts["money_days"]))
    values |= _promotions(ctx, grid, _local(ids, facts["offers"]), values)
    status = ctx.status.at(ids[grid.player], grid.t)
    values |= _segment(ctx, grid, status, values)

    head = {ENTITY: ids[grid.player], TIMESTAMP: ctx.as_of + grid.t.astype("timedelta64[us]")}
    del grid
    out = {}
    for family in (activity(ctx.cfg), money(ctx.cfg), promotions(ctx.cfg), segment(ctx.cfg)):
        out[family.name] = pd.DataFrame(head | {c: values.pop(c) for c in family.columns}, copy=False)
    return out


def _local(ids: np.ndarray, frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The facts rows of the chunk's players, and each one's chunk row."""
    pid = frame[ENTITY].to_numpy(dtype=np.int64)
    row = np.clip(np.searchsorted(ids, pid), 0, max(len(ids) - 1, 0))
    mine = ids[row] == pid
    return row[mine], frame[mine] if not mine.all() else frame


def _f32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float32, NaN where ``den`` is 0 (integer ratios are divided in float32 directly)."""
    exact = np.float32 if num.dtype.kind == den.dtype.kind == "i" else np.float64
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.true_divide(num, den, dtype=exact).astype(np.float32, copy=False)
    out[den == 0] = np.nan
    return out


# ------------------------------------------------------------- the families --
def _activity(
    ctx: _Context, grid: _Grid, local: tuple[np.ndarray, pd.DataFrame], values: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    row, days = local
    when = days["day"].to_numpy(dtype=np.int64) * DAY_US  # the bucket's start stands for its rows
    out: dict[str, np.ndarray] = {}
    latest = grid.latest(row, when, np.lexsort((when, row)))
    last = np.append(_rel_us(days["last_at"], ctx.as_of), NONE)[latest]
    out["_last_session"] = last
    out["days_since_last_session"] = _f32(grid.days_since(last))
    first_at = _rel_us(days["first_at"], ctx.as_of)
    ok = first_at != NONE
    first = np.full(grid.n, np.iinfo(np.int64).max)
    np.minimum.at(first, row[ok], first_at[ok])
    first_row = first[grid.player]
    out["days_since_first_session"] = _f32(grid.days_since(np.where(first_row < grid.t, first_row, NONE)))
    out["tenure_days"] = _f32(grid.days_since(values["_created"]))

    windows = ctx.cfg.features.windows_days
    lifetime, *counts = grid.counts(row, when, days["sessions"].to_numpy(), windows)
    for w, c in zip(windows, counts, strict=True):
        out[f"sessions_{w}d"] = _f32(c)
    out["sessions_lifetime"] = _f32(lifetime)
    for g in [*games(ctx.cfg), OTHER_GAME]:
        out[f"share_{g}"] = _ratio(grid.counts(row, when, days[f"sessions_{g}"].to_numpy())[0], lifetime)
    return out


def _money(ctx: _Context, grid: _Grid, local: tuple[np.ndarray, pd.DataFrame]) -> dict[str, np.ndarray]:
    row, flows = local
    when = flows["day"].to_numpy(dtype=np.int64) * DAY_US
    out: dict[str, np.ndarray] = {}
    windows = ctx.cfg.features.windows_days
    n, *counts = grid.counts(row, when, flows["deposits_n"].to_numpy(), windows)
    total, *sums = grid.amounts(row, when, flows["deposits_sum"].to_numpy(dtype=np.float64), windows)
    for w, c in zip(windows, counts, strict=True):
        out[f"deposits_n_{w}d"] = _f32(c)
    for w, c in zip(windows, sums, strict=True):
        out[f"deposits_sum_{w}d"] = _f32(c)
    out["deposits_n_lifetime"] = _f32(n)
    out["deposits_sum_lifetime"] = _f32(total)
    out["deposit_avg"] = _ratio(total, n)
    out["deposit_max"] = _f32(grid.largest(row, when, flows["deposit_max"].to_numpy(dtype=np.float64)))
    withdrawn = grid.amounts(row, when, flows["withdrawals_sum"].to_numpy(dtype=np.float64))[0]
    out["withdrawals_n_lifetime"] = _f32(grid.counts(row, when, flows["withdrawals_n"].to_numpy())[0])
    out["withdrawals_sum_lifetime"] = _f32(withdrawn)
    out["net_deposits_lifetime"] = _f32(total - withdrawn)
    deposited = _rel_us(flows["last_deposit_at"], ctx.as_of)
    mine = deposited != NONE
    latest = grid.latest(row[mine], when[mine], np.lexsort((when[mine], row[mine])))
    out["days_since_last_deposit"] = _f32(grid.days_since(np.append(deposited[mine], NONE)[latest]))
    out["_deposits"] = total
    out["_bonus"] = grid.amounts(row, when, flows["bonus_sum"].to_numpy(dtype=np.float64))[0]
    return out


def _promotions(
    ctx: _Context, grid: _Grid, local: tuple[np.ndarray, pd.DataFrame], values: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    row, offers = local
    sent = _rel_us(offers["sent_at"], ctx.as_of)
    end = _rel_us(offers["window_end"], ctx.as_of)
    outcomes = {k: _rel_us(offers[f"{k}_at"], ctx.as_of) for k in ("claimed", "converted", "reengaged")}

    def resolved_at(kind: str, subset: np.ndarray | slice) -> np.ndarray:
        # An offer is resolved at its outcome, or when its window ends without one: an open
        # window is neither a success nor a failure yet.
        hit, stop = outcomes[kind][subset], end[subset]
        return np.where(hit == NONE, stop, np.where(stop == NONE, hit, np.minimum(hit, stop)))

    def outcome(kind: str, subset: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Offers with the outcome before T, and their share of the offers resolved before T."""
        yes = grid.counts(row[subset], outcomes[kind][subset])[0]
        return yes, _ratio(yes, grid.counts(row[subset], resolved_at(kind, subset))[0])

    out: dict[str, np.ndarray] = {}
    count, recent = grid.counts(row, sent, windows=[OFFERS_WINDOW])
    out["offers_lifetime"] = _f32(count)
    out["offers_30d"] = _f32(recent)
    out["_claims"], out["claim_rate"] = outcome("claimed", slice(None))
    out["deposit_rate"] = outcome("converted", slice(None))[1]
    out["reengage_rate"] = outcome("reengaged", slice(None))[1]
    # The last offer: latest sent, then highest offer id.
    latest = grid.latest(row, sent, np.lexsort((offers["offer_id"].to_numpy(), sent, row)))
    out["days_since_last_offer"] = _f32(grid.days_since(np.append(sent, NONE)[latest]))
    out["last_reward"] = _f32(np.append(offers["reward"].to_numpy(dtype=np.float64), np.nan)[latest])
    bonus, deposits = values["_bonus"], values["_deposits"]
    out["bonus_sum_lifetime"] = _f32(bonus)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(deposits > 0, bonus / deposits, np.where(bonus > 0, RATIO_CAP, np.nan))
    out["bonus_to_deposit_ratio"] = _f32(np.minimum(ratio, RATIO_CAP))
    types = offers["event_type"].to_numpy(dtype=object)
    known = np.isin(types, event_types(ctx.cfg))
    out["offers_resolved"] = _f32(grid.counts(row[known], resolved_at("reengaged", known))[0])
    for t in event_types(ctx.cfg):
        mine, x = types == t, type_suffix(t)
        out[f"offers_{x}"] = _f32(grid.counts(row[mine], sent[mine])[0])
        out[f"claim_rate_{x}"] = outcome("claimed", mine)[1]
        out[f"deposit_rate_{x}"] = outcome("converted", mine)[1]
    return out


def _segment(
    ctx: _Context, grid: _Grid, status: pd.Categorical, values: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    rules = ctx.cfg.segmentation
    window = np.timedelta64(ctx.cfg.business.dormancy_days, "D")
    # Times relative to the as-of, read as datetimes: the rules only subtract and compare them.
    created, last = values["_created"].view("datetime64[us]"), values["_last_session"].view("datetime64[us]")
    days_idle, registered, dormant = idle_state(created, last, grid.t.view("datetime64[us]"), window)
    labels = label_players(
        status, registered, dormant, days_idle, values["_deposits"], values["_bonus"], values["_claims"], rules
    )
    stages = np.asarray([*(s.name for s in rules.stages), ""], dtype=object)  # stage -1 (not dormant) -> ""
    return {
        "segment": labels.segment,
        "dormancy_stage": stages[labels.stage],
        "value_tier": np.asarray([t.name for t in rules.value_tiers], dtype=object)[labels.tier],
        "is_dormant": dormant.astype(np.int64),
        "is_bonus_hunter": labels.is_hunter.astype(np.int64),
    }


# ------------------------------------------------------------------ helpers --
def _rel_us(values: pd.Series, as_of: np.datetime64) -> np.ndarray:
    """Microseconds from ``as_of`` (int64; NaT -> NONE)."""
    stamps = values.to_numpy(dtype="datetime64[us]")
    nat = np.isnat(stamps)
    out = stamps.view(np.int64) - as_of.astype(np.int64)
    out[nat] = NONE
    return out


def _us_between(as_of: np.datetime64, moment: Any) -> int:
    """Microseconds from ``as_of`` to ``moment``."""
    return int(np.datetime64(moment, "us").astype(np.int64) - as_of.astype(np.int64))


def _strings(values: pd.Series) -> np.ndarray:
    """Object array of str ("" for missing)."""
    return values.astype(object).where(values.notna(), "").astype(str).astype(object).to_numpy()


def _require_columns(facts: Facts, cfg: Config) -> None:
    per_game = [f"sessions_{g}" for g in [*games(cfg), OTHER_GAME]]
    needs = {
        "players": [ENTITY, "created_at", "status"],
        "session_days": [ENTITY, "day", "sessions", *per_game, "first_at", "last_at"],
        "money_days": [ENTITY, "day", "deposits_n", "deposits_sum", "deposit_max", "withdrawals_n",
                       "withdrawals_sum", "bonus_sum", "last_deposit_at"],
        "offers": [ENTITY, "offer_id", "sent_at", "event_type", "reward", "claimed_at", "reengaged_at",
                   "converted_at", "window_end"],
    }  # fmt: skip
    for name, columns in needs.items():
        have = getattr(facts, name).columns
        missing = [c for c in columns if c not in have]
        if missing:
            raise ValueError(f"facts.{name} lacks the columns {missing} (configured games: {cfg.features.games})")
