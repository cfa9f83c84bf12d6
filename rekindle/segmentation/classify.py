"""The segmentation rules: pure, vectorised functions from activity to segments.

No I/O here: :func:`classify` takes the per-player aggregates of
:func:`rekindle.segmentation.activity.load_player_activity` and the typed
configuration, and returns one row per player. The definitions are written
out in ``docs/segmentation.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from rekindle.config import Business, Segmentation
from rekindle.segmentation.activity import ACTIVITY_COLUMNS, naive_utc

SEGMENT_COLUMNS = (
    "player_id",
    "status",
    "is_candidate",
    "is_dormant",
    "days_idle",
    "dormancy_stage",
    "value_tier",
    "lifetime_deposits",
    "deposit_count",
    "claims",
    "bonus_ratio",
    "main_game",
    "is_bonus_hunter",
    "segment",
)
"""The columns of a segmentation, as in the system store's ``segments`` table (less ``as_of``)."""

ACTIVE_STATUS = "active"
ACTIVE_SEGMENT = "active"
NEW_PLAYER_SEGMENT = "new player"
BONUS_HUNTER_SEGMENT = "bonus hunter"
SUMMARY_COLUMNS = ("segment", "players", "candidates", "share")


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}; it has {list(frame.columns)}")


def _lookup(values: np.ndarray, bounds: list[int], names: list[str]) -> np.ndarray:
    """The name of the last bound at or below each value (values below the first get the first)."""
    idx = np.searchsorted(np.asarray(bounds), values, side="right") - 1
    return np.asarray(names, dtype=object)[np.clip(idx, 0, None)]


def empty_segments() -> pd.DataFrame:
    """A segmentation without players, with the columns and dtypes of a full one."""
    dtypes: dict[str, Any] = {
        "player_id": "int64",
        "status": object,
        "is_candidate": bool,
        "is_dormant": bool,
        "days_idle": "int64",
        "dormancy_stage": object,
        "value_tier": object,
        "lifetime_deposits": "int64",
        "deposit_count": "int64",
        "claims": "int64",
        "bonus_ratio": "float64",
        "main_game": object,
        "is_bonus_hunter": bool,
        "segment": object,
    }
    return pd.DataFrame(columns=list(SEGMENT_COLUMNS)).astype(dtypes)


def classify(
    activity: pd.DataFrame,
    as_of: datetime,
    business: Business,
    rules: Segmentation,
) -> pd.DataFrame:
    """Segment every player from their aggregated activity.

    Parameters
    ----------
    activity : pandas.DataFrame
        One row per player with the columns of
        :data:`~rekindle.segmentation.activity.ACTIVITY_COLUMNS`, aggregated
        strictly before ``as_of``. Players created at or after ``as_of`` are dropped.
    as_of : datetime
        The time of the segmentation (UTC; naive values are taken as UTC).
    business : Business
        ``dormancy_days``: the idle window and the minimum age of a dormant player.
    rules : Segmentation
        Dormancy stages, value tiers and the bonus-hunter rule.

    Returns
    -------
    pandas.DataFrame
        One row per player, sorted by ``player_id``, with the columns of
        :data:`SEGMENT_COLUMNS`. ``bonus_ratio`` is bonus paid / deposits: NaN
        with neither, ``inf`` with bonus but no deposits. ``dormancy_stage`` is
        None for players who are not dormant.

    Raises
    ------
    ValueError
        If ``activity`` lacks a required column.
    """
    _require(activity, ACTIVITY_COLUMNS, "the activity frame")
    moment = pd.Timestamp(naive_utc(as_of))
    created = pd.to_datetime(activity["created_at"])
    frame = activity.loc[(created < moment).to_numpy()].sort_values("player_id", ignore_index=True)
    if frame.empty:
        return empty_segments()

    window = pd.Timedelta(days=business.dormancy_days)
    created = pd.to_datetime(frame["created_at"])
    last = pd.to_datetime(frame["last_session"])
    days_idle = ((moment - last.fillna(created)) // pd.Timedelta(days=1)).to_numpy(dtype="int64")
    registered = (created <= moment - window).to_numpy()
    recent = (last >= moment - window).to_numpy()  # NaT compares False: never played = not recent
    is_dormant = registered & ~recent

    status = frame["status"].astype(object).to_numpy()
    is_active = status == ACTIVE_STATUS
    stage = np.full(len(frame), None, dtype=object)
    stage_names = _lookup(days_idle, [s.min_days for s in rules.stages], [s.name for s in rules.stages])
    stage[is_dormant] = stage_names[is_dormant]
    deposits = frame["lifetime_deposits"].to_numpy(dtype="int64")
    tier = _lookup(deposits, [t.min_deposits for t in rules.value_tiers], [t.name for t in rules.value_tiers])

    bonus = frame["bonus_paid"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = bonus / deposits.astype("float64")  # 0/0 -> NaN, bonus/0 -> inf
    claims = frame["claims"].to_numpy(dtype="int64")
    hunter_rule = rules.bonus_hunter
    is_hunter = (claims >= hunter_rule.min_claims) & (ratio >= hunter_rule.min_bonus_ratio)

    n = len(frame)
    dormant_name = pd.Series(tier).str.cat(pd.Series(stage).fillna(""), sep=" ").add(" dormant").to_numpy(object)
    status_name = pd.Series(status).str.replace("_", "-", regex=False).to_numpy(object)
    segment = np.select(
        [~is_active, ~registered, ~is_dormant, is_hunter],
        [
            status_name,
            np.full(n, NEW_PLAYER_SEGMENT, dtype=object),
            np.full(n, ACTIVE_SEGMENT, dtype=object),
            np.full(n, BONUS_HUNTER_SEGMENT, dtype=object),
        ],
        default=dormant_name,
    )

    out = pd.DataFrame(
        {
            "player_id": frame["player_id"].to_numpy(dtype="int64"),
            "status": status,
            "is_candidate": is_active & is_dormant,
            "is_dormant": is_dormant,
            "days_idle": days_idle,
            "dormancy_stage": stage,
            "value_tier": tier,
            "lifetime_deposits": deposits,
            "deposit_count": frame["deposit_count"].to_numpy(dtype="int64"),
            "claims": claims,
            "bonus_ratio": ratio,
            "main_game": frame["main_game"].astype(object).where(frame["main_game"].notna(), None).to_numpy(),
            "is_bonus_hunter": is_hunter,
            "segment": segment,
        }
    )
    return out[list(SEGMENT_COLUMNS)]


def summarise(segments: pd.DataFrame) -> pd.DataFrame:
    """Players and candidates per segment, largest segment first.

    Parameters
    ----------
    segments : pandas.DataFrame
        A segmentation (at least ``player_id``, ``segment`` and ``is_candidate``).

    Returns
    -------
    pandas.DataFrame
        Columns ``segment``, ``players``, ``candidates`` (integers) and
        ``share`` (players / all players, a fraction), sorted by ``players``
        descending, then ``segment``.

    Raises
    ------
    ValueError
        If ``segments`` lacks one of the columns above.
    """
    _require(segments, ("player_id", "segment", "is_candidate"), "the segments frame")
    if segments.empty:
        dtypes: dict[str, Any] = {"segment": object, "players": "int64", "candidates": "int64", "share": "float64"}
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS)).astype(dtypes)
    counts = segments.groupby("segment", sort=False).agg(
        players=("player_id", "size"), candidates=("is_candidate", "sum")
    )
    counts = counts.astype("int64").reset_index()
    counts["share"] = counts["players"] / len(segments)
    return counts.sort_values(["players", "segment"], ascending=[False, True], ignore_index=True)[list(SUMMARY_COLUMNS)]
