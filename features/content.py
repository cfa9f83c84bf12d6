"""Content features of the event types, as known at each snapshot.

A platform's event types are its own: their content comes from the user's
catalog where it says (``catalog`` in rekindle.yaml), and otherwise from the
platform's history up to the snapshot (offers sent, claimed and resolved
strictly before it), so a past decision never reads what was learnt later:

- ``type_claim_rate``: offers claimed in their window / resolved offers (resolved: claimed, or its window over);
- ``deposit_share``: share of the claims that came with a deposit in the offer's window;
- ``requires_deposit``: 1 when 95% of 20 or more claims came with a deposit;
- ``payout_ratio``: bonus paid / reward over the claimed offers with a reward, once their windows are over;
- ``min_deposit``: the smallest ``promotions.minDeposit`` of the type's promotions started (0 when none);
- ``reward_min``, ``reward_max``: the rewards offered;
- ``game``: the game of half or more of the sessions of its returners on the day they came back ("" any).

One row per (event type, snapshot time), with the columns of
:func:`features.families.event_type_content`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.config import Config
from features.families import EVENT_TYPE_KEY, TIMESTAMP

MIN_CLAIMS_FOR_DEPOSIT_RULE = 20
DEPOSIT_RULE_SHARE = 0.95
GAME_SHARE = 0.5


def _cumulative(at: np.ndarray, weight: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each of ``times``, the sum of ``weight`` over events strictly before it (``at`` NaT: never)."""
    ok = ~np.isnat(at)
    order = np.argsort(at[ok], kind="stable")
    stamps = at[ok][order]
    cum = np.concatenate([[0.0], np.cumsum(weight[ok][order].astype(np.float64))])
    return cum[np.searchsorted(stamps, times, side="left")]


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(len(a), np.nan), where=b > 0)


def _running_extreme(at: np.ndarray, value: np.ndarray, times: np.ndarray, *, largest: bool) -> np.ndarray:
    """For each of ``times``, the min (max) of ``value`` over events strictly before it (NaN: none)."""
    order = np.argsort(at, kind="stable")
    run = (np.fmax if largest else np.fmin).accumulate(value[order].astype(np.float64))  # NaN values skipped
    idx = np.searchsorted(at[order], times, side="left")
    return np.where(idx > 0, np.concatenate([[np.nan], run])[idx], np.nan)


def return_games(
    offers: pd.DataFrame, session_days: pd.DataFrame, games: Sequence[str], as_of: np.datetime64
) -> pd.DataFrame:
    """Per offer that brought its player back: its type, the time and the player's sessions per game on the
    day of the return (``sessions_<game>`` of the configured games and ``sessions_other``)."""
    cols = [c for c in (*(f"sessions_{g}" for g in games), "sessions_other") if c in session_days]
    back = offers.loc[offers["reengaged_at"].notna(), [EVENT_TYPE_KEY, "player_id", "reengaged_at"]]
    day = (back["reengaged_at"].to_numpy("datetime64[us]") - as_of) // np.timedelta64(1, "D")
    merged = back.assign(day=day.astype(np.int64)).merge(
        session_days[["player_id", "day", *cols]].astype({"day": np.int64}), on=["player_id", "day"], how="left"
    )
    return merged.fillna(dict.fromkeys(cols, 0))


def _returners_game(returns: pd.DataFrame, games: Sequence[str], times: np.ndarray) -> np.ndarray:
    """Per time, the game of at least :data:`GAME_SHARE` of the returners' sessions so far ("" when none)."""
    back_at = returns["reengaged_at"].to_numpy("datetime64[us]")
    cols = [f"sessions_{g}" for g in games if f"sessions_{g}" in returns]
    per_game = np.column_stack(
        [_cumulative(back_at, returns[c].to_numpy(np.float64), times) for c in cols] or [np.zeros(len(times))]
    )
    other = returns["sessions_other"].to_numpy(np.float64) if "sessions_other" in returns else np.zeros(len(back_at))
    total = per_game.sum(axis=1) + _cumulative(back_at, other, times)
    if not cols:
        return np.full(len(times), "", dtype=object)
    top = per_game.argmax(axis=1)
    share = _ratio(per_game[np.arange(len(times)), top], total)
    names = np.asarray([c.removeprefix("sessions_") for c in cols], dtype=object)
    return np.where(share >= GAME_SHARE, names[top], "")


def event_type_content(
    cfg: Config,
    offers: pd.DataFrame,
    promotions: pd.DataFrame,
    returns: pd.DataFrame,
    event_types: Sequence[str],
    times: np.ndarray,
) -> pd.DataFrame:
    """The content of every event type at every snapshot time (module docstring).

    Parameters
    ----------
    offers
        The facts' offers (``event_type``, ``reward``, ``sent_at``, ``claimed_at``, ``converted_at``,
        ``bonus_paid``, ``window_end``).
    promotions
        ``event_type``, ``starts_at``, ``min_deposit`` (NaN: none) of the platform's promotions.
    returns
        :func:`return_games` of the offers.
    event_types
        The event types to describe (those the platform offered).
    times
        Snapshot times (datetime64[us]).
    """
    times = np.asarray(times, dtype="datetime64[us]")
    games = cfg.features.games or []
    parts = []
    for t in event_types:
        o = offers[offers[EVENT_TYPE_KEY] == t]
        sent = o["sent_at"].to_numpy("datetime64[us]")
        claimed_at = o["claimed_at"].to_numpy("datetime64[us]")
        end = o["window_end"].to_numpy("datetime64[us]")
        converted_at = o["converted_at"].to_numpy("datetime64[us]")
        in_window = ~np.isnat(claimed_at) & (claimed_at <= end)  # a claim after its window does not count
        resolved_at = np.where(in_window, claimed_at, end)
        claimed = np.where(in_window, claimed_at, np.datetime64("NaT"))
        reward = o["reward"].to_numpy(np.float64)
        ones = np.ones(len(o))
        claims = _cumulative(claimed, ones, times)
        with_deposit = in_window & ~np.isnat(converted_at)
        both_at = np.where(with_deposit, np.maximum(claimed_at, converted_at), np.datetime64("NaT"))
        deposit_share = _ratio(_cumulative(both_at, ones, times), claims)
        # what a claim paid is known once its window is over (a bonus may follow the claim within it)
        priced = in_window & (reward > 0)
        settled = np.where(priced, end, np.datetime64("NaT"))
        paid = _cumulative(settled, o["bonus_paid"].to_numpy(), times)
        face = _cumulative(settled, reward, times)
        p = promotions[promotions[EVENT_TYPE_KEY] == t]
        min_dep = _running_extreme(
            p["starts_at"].to_numpy("datetime64[us]"), p["min_deposit"].fillna(0).to_numpy(np.float64), times,
            largest=False,
        )  # fmt: skip
        game = _returners_game(returns[returns[EVENT_TYPE_KEY] == t], games, times)
        enough = claims >= MIN_CLAIMS_FOR_DEPOSIT_RULE
        parts.append(
            pd.DataFrame(
                {
                    EVENT_TYPE_KEY: t,
                    TIMESTAMP: times,
                    "requires_deposit": (enough & (deposit_share >= DEPOSIT_RULE_SHARE)).astype(np.float32),
                    "min_deposit": np.nan_to_num(min_dep, nan=0.0).astype(np.float32),
                    "payout_ratio": _ratio(paid, face).astype(np.float32),
                    "type_claim_rate": _ratio(claims, _cumulative(resolved_at, ones, times)).astype(np.float32),
                    "deposit_share": deposit_share.astype(np.float32),
                    "reward_min": _running_extreme(sent, reward, times, largest=False).astype(np.float32),
                    "reward_max": _running_extreme(sent, reward, times, largest=True).astype(np.float32),
                    "game": pd.Series(game, dtype=object),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[EVENT_TYPE_KEY, TIMESTAMP])
    return apply_catalog(cfg, out)


def apply_catalog(cfg: Config, content: pd.DataFrame) -> pd.DataFrame:
    """What the user's catalog says of a type replaces what its history suggests, at every time."""
    if cfg.catalog is None or content.empty:
        return content
    out = content.copy()
    for e in cfg.catalog.event_types:
        rows = out[EVENT_TYPE_KEY] == e.name
        if not rows.any():
            continue
        given = {
            "requires_deposit": None if e.requires_deposit is None else float(e.requires_deposit),
            "min_deposit": None if e.min_deposit is None else float(e.min_deposit),
            "payout_ratio": e.payout_ratio,
            "type_claim_rate": e.claim_rate,
            "game": e.game,
            "reward_min": None if not e.rewards else float(min(e.rewards)),
            "reward_max": None if not e.rewards else float(max(e.rewards)),
        }
        for col, value in given.items():
            if value is not None:
                out.loc[rows, col] = value
    return out
