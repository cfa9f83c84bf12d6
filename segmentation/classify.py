"""The segmentation rules: pure, vectorised functions from activity to segments.

No I/O here: :func:`classify` takes the per-player aggregates of
:func:`segmentation.activity.load_player_activity` and the typed
configuration, and returns one row per player. The definitions are written
out in ``docs/segmentation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from core.config import Business, Segmentation
from core.timeutil import naive_utc
from segmentation.activity import ACTIVITY_COLUMNS

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


def bound_index(values: np.ndarray, bounds: list[int]) -> np.ndarray:
    """The index of the last bound at or below each value (values below the first bound get 0)."""
    idx = np.searchsorted(np.asarray(bounds), values, side="right") - 1
    return np.clip(idx, 0, None)


def idle_state(
    created: np.ndarray,
    last: np.ndarray,
    moment: np.ndarray | np.datetime64,
    window: np.timedelta64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days idle, registered long enough and dormant, element-wise.

    Parameters
    ----------
    created, last : numpy.ndarray
        datetime64 registration times and last session starts before ``moment`` (NaT: never played).
    moment : numpy.ndarray or numpy.datetime64
        The time(s) of the segmentation, broadcast against ``created``.
    window : numpy.timedelta64
        ``business.dormancy_days`` as a duration.

    Returns
    -------
    tuple of numpy.ndarray
        ``days_idle`` (int64, whole days from the last session, or from registration
        without one), ``registered`` (``created <= moment - window``) and ``is_dormant``
        (registered and no session in ``[moment - window, moment)``).
    """
    since = np.where(np.isnat(last), created, last)
    days_idle = np.floor_divide(moment - since, np.timedelta64(1, "D")).astype("int64")
    registered = created <= moment - window
    recent = last >= moment - window  # NaT compares False: never played = not recent
    return days_idle, registered, registered & ~recent


@dataclass(frozen=True)
class Labels:
    """The rules' verdicts, element-wise; names come from :meth:`stage_names` and ``segment``."""

    stage: np.ndarray  # int64 index into rules.stages; -1 when not dormant
    tier: np.ndarray  # int64 index into rules.value_tiers
    ratio: np.ndarray  # bonus / deposits: NaN with neither, inf with bonus only
    is_hunter: np.ndarray
    segment: np.ndarray  # object: the segment name


def label_players(
    status: np.ndarray | pd.Categorical,
    registered: np.ndarray,
    is_dormant: np.ndarray,
    days_idle: np.ndarray,
    deposits: np.ndarray,
    bonus: np.ndarray,
    claims: np.ndarray,
    rules: Segmentation,
) -> Labels:
    """Apply the stage, tier, bonus-hunter and naming rules element-wise.

    Shared by :func:`classify` (one row per player) and the feature snapshots
    (one row per player and snapshot time), so both name segments alike.

    Parameters
    ----------
    status : numpy.ndarray or pandas.Categorical
        Player statuses (object array, or a Categorical: much faster over millions of rows).
    registered, is_dormant, days_idle : numpy.ndarray
        As returned by :func:`idle_state`.
    deposits, bonus : numpy.ndarray
        Lifetime deposits and bonus paid, KRW.
    claims : numpy.ndarray
        Offers claimed.
    rules : Segmentation
        Dormancy stages, value tiers and the bonus-hunter rule.

    Returns
    -------
    Labels
        The stage and tier indices, the bonus ratio, the hunter flag and the segment name.
    """
    n = len(status)
    stage = np.where(is_dormant, bound_index(days_idle, [s.min_days for s in rules.stages]), -1)
    tier = bound_index(deposits, [t.min_deposits for t in rules.value_tiers])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(bonus, dtype="float64") / np.asarray(deposits, dtype="float64")  # 0/0 NaN, b/0 inf
    hunter = rules.bonus_hunter
    is_hunter = (claims >= hunter.min_claims) & (ratio >= hunter.min_bonus_ratio)

    # Names by integer code into one small table, so millions of rows cost no string work.
    codes, statuses = pd.factorize(status, use_na_sentinel=True)
    status_names = [s.replace("_", "-") if isinstance(s, str) else None for s in statuses]
    stages = [s.name for s in rules.stages]
    dormant_names = [f"{t.name} {s} dormant" for t in rules.value_tiers for s in stages]
    k = len(status_names) + 1  # code -1 (missing status) -> the None appended at index k - 1
    table = np.asarray(
        [*status_names, None, NEW_PLAYER_SEGMENT, ACTIVE_SEGMENT, BONUS_HUNTER_SEGMENT, *dormant_names], dtype=object
    )
    is_active = np.asarray(status == ACTIVE_STATUS, dtype=bool)
    code = np.select(
        [~is_active, ~registered, ~is_dormant, is_hunter],
        [np.where(codes < 0, k - 1, codes), np.full(n, k), np.full(n, k + 1), np.full(n, k + 2)],
        default=k + 3 + tier * len(stages) + np.clip(stage, 0, None),
    )
    return Labels(stage=stage, tier=tier, ratio=ratio, is_hunter=is_hunter, segment=table[code])


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
        :data:`~segmentation.activity.ACTIVITY_COLUMNS`, aggregated
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

    window = np.timedelta64(business.dormancy_days, "D")
    created_at = pd.to_datetime(frame["created_at"]).to_numpy()
    last = pd.to_datetime(frame["last_session"]).to_numpy()
    days_idle, registered, is_dormant = idle_state(created_at, last, moment.to_datetime64(), window)

    status = frame["status"].astype(object).to_numpy()
    deposits = frame["lifetime_deposits"].to_numpy(dtype="int64")
    claims = frame["claims"].to_numpy(dtype="int64")
    labels = label_players(
        status,
        registered,
        is_dormant,
        days_idle,
        deposits,
        frame["bonus_paid"].to_numpy(dtype="float64"),
        claims,
        rules,
    )
    stage_names = np.asarray([s.name for s in rules.stages], dtype=object)
    stage = np.where(labels.stage >= 0, stage_names[np.clip(labels.stage, 0, None)], None)
    tier = np.asarray([t.name for t in rules.value_tiers], dtype=object)[labels.tier]
    is_active = status == ACTIVE_STATUS

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
            "bonus_ratio": labels.ratio,
            "main_game": frame["main_game"].astype(object).where(frame["main_game"].notna(), None).to_numpy(),
            "is_bonus_hunter": labels.is_hunter,
            "segment": labels.segment,
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
