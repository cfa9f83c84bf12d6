"""Exact interval queries over millions of timestamped events, vectorised: how many events (and how
much) each player had in ``(lo, hi]`` or ``[lo, hi)``, for query ends known in advance."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

US_PER_DAY = 86_400_000_000


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is far slower on tens of millions of int64)."""
    out = np.sort(values)
    return out[np.concatenate([[True], out[1:] != out[:-1]])] if len(out) else out


def lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position in ``keys`` (unique, any order) of each query value, and whether it is there."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    increasing = bool((keys[1:] > keys[:-1]).all())
    if increasing and keys[-1] - keys[0] + 1 == len(keys):  # contiguous ids, the usual case: no search
        pos = np.clip(query - keys[0], 0, len(keys) - 1)
    else:
        order = None if increasing else np.argsort(keys, kind="stable")
        pos = np.minimum(np.searchsorted(keys, query, sorter=order), len(keys) - 1)
        pos = pos if order is None else order[pos]
    return pos, keys[pos] == query


class Timeline:
    """Events (player index, time[, amount]) indexed for exact counts and sums over intervals
    whose ends are among ``bounds``. Each event gets a code: twice the number of bounds before
    it, plus one if it falls on a bound; ``player x stride + code`` then sorts events per player
    by time, and a query is two binary searches. Built without amounts, events with the same
    key are kept once: counts then only tell whether there is any."""

    def __init__(self, bounds: np.ndarray, player: np.ndarray, time: np.ndarray, amount: np.ndarray | None = None):
        self.bounds = unique_sorted(bounds)
        self.stride = 2 * len(self.bounds) + 2
        if (int(player.max(initial=0)) + 1) * self.stride >= 2**62:
            raise OverflowError(f"cannot index {player.max()} players x {len(self.bounds)} decision times")
        j = np.searchsorted(self.bounds, time)
        on_bound = self.bounds[np.minimum(j, len(self.bounds) - 1)] == time
        key = player * self.stride + 2 * j + on_bound
        self.cum: np.ndarray | None = None
        if amount is None:
            self.keys = unique_sorted(key)  # only existence is asked: one key per run of events
        else:
            order = np.argsort(key, kind="stable")
            self.keys, self.cum = key[order], np.concatenate([[0], np.cumsum(amount[order])])

    def _rank(self, player: np.ndarray, at: np.ndarray, through: bool) -> np.ndarray:
        """Index of the first event of ``player`` later than ``at`` (``through``) or at ``at`` or later."""
        k = np.searchsorted(self.bounds, at)
        return np.searchsorted(self.keys, player * self.stride + 2 * k + (2 if through else 1))

    def span(self, player: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_open: bool) -> tuple:
        """Index ranges of each player's events in ``(lo, hi]`` if ``left_open``, else in ``[lo, hi)``."""
        return self._rank(player, lo, left_open), self._rank(player, hi, left_open)

    def count(self, player: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_open: bool) -> np.ndarray:
        a, b = self.span(player, lo, hi, left_open=left_open)
        return b - a

    def total(self, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Sum of the amounts of the events in index ranges from :meth:`span`."""
        if self.cum is None:
            raise TypeError("this timeline has no amounts")
        return self.cum[stop] - self.cum[start]


def as_datetime64(us: np.ndarray) -> np.ndarray:
    return np.asarray(us).astype("datetime64[us]")


def to_us(moment: datetime) -> int:
    return int(np.datetime64(moment, "us").astype(np.int64))


def from_us(us: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(microseconds=us)
