"""The model's input: one row per (decision, arm), the player's features beside the arm's own.

A decision row holds the player's point-in-time features. Scoring an arm
appends that arm's columns: which event type (categorical, "none" included),
the reward (absolute and relative to the event type's ladder), the payout per
claim, the event type's content, and per event type the columns of the input
frame that describe the player's history with it (past offers, claim and
deposit rates) and the match scores. The same player block is reused for every
arm, so scoring 14 arms costs 14 cheap column fills, not 14 feature joins.

Everything the layout needs is plain data (:meth:`Design.to_dict`), stored in
the artefact beside the boosters: the player columns in order, the categorical
levels, the event types, their content, the payout of every arm, and the name
of every per-type source column (so no naming convention of the feature store
is compiled into this code).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NONE = "none"
CONTENT = ("requires_deposit", "min_deposit", "payout_ratio", "type_claim_rate", "deposit_share")
PER_TYPE = ("offers", "claim_rate", "deposit_rate")  # the player's history with one event type
MATCH_KINDS = ("collaborative", "content", "hybrid")
ARM_COLUMNS = (
    "arm_event",
    "arm_is_offer",
    "arm_reward",
    "arm_reward_rel",
    "arm_payout",
    *(f"arm_{c}" for c in CONTENT),
    *(f"arm_{c}_prev" for c in PER_TYPE),
)
MATCH_COLUMNS = tuple(f"arm_match_{k}" for k in MATCH_KINDS)
INCREASING_IN_REWARD = ("arm_reward", "arm_reward_rel", "arm_payout")


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(len(a), np.nan, np.float32), where=b > 0)


Columns = Mapping[str, np.ndarray]
# rates a tree would need many splits to approximate: a player's habits per unit of time or activity
DERIVED: dict[str, Callable[[Columns], np.ndarray]] = {
    "deposits_per_day": lambda f: _ratio(f["deposits_sum_lifetime"], f["tenure_days"]),
    "sessions_per_day": lambda f: _ratio(f["sessions_lifetime"], f["days_since_first_session"]),
    "deposits_per_session": lambda f: _ratio(f["deposits_n_lifetime"], f["sessions_lifetime"]),
    "idle_over_typical_gap": lambda f: _ratio(
        f["days_since_last_session"], _ratio(f["days_since_first_session"], f["sessions_lifetime"])
    ),
}


def derived_inputs(name: str) -> list[str]:
    """The player columns a derived rate reads (found by calling it on a recording mapping)."""
    seen: list[str] = []

    class Recorder(dict[str, np.ndarray]):
        def __missing__(self, key: str) -> np.ndarray:
            seen.append(key)
            return np.ones(1, np.float32)

    DERIVED[name](Recorder())
    return seen


class DesignError(ValueError):
    """The frame given to the model lacks the features it was trained on, or a design document is malformed."""


@dataclass
class Design:
    """Column layout, categorical levels and arm attributes of the model matrix."""

    player_numeric: list[str]
    categorical_levels: dict[str, list[str]]
    event_types: list[str]  # levels of arm_event, "none" first
    content: dict[str, dict[str, float]]  # per event type: CONTENT values and "ref_reward" (NaN: unknown)
    payout: dict[tuple[str, int], float]  # expected payout per claim of each arm
    per_type_columns: dict[str, dict[str, str]]  # per event type: arm column -> source column of the input frame
    use_match: bool = True
    derived: list[str] = field(default_factory=list)  # names of DERIVED rates appended to the player block
    columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        unknown = [d for d in self.derived if d not in DERIVED]
        if unknown:
            raise DesignError(f"unknown derived rates {unknown}; this code knows {list(DERIVED)}")
        self.columns = [
            *self.player_numeric,
            *self.derived,
            *self.categorical_levels,
            *self.arm_columns,
        ]

    @property
    def arm_columns(self) -> list[str]:
        return [*ARM_COLUMNS, *(MATCH_COLUMNS if self.use_match else ())]

    # ------------------------------------------------------------------------- data --
    def to_dict(self) -> dict[str, Any]:
        """The design as JSON-ready data (:meth:`from_dict` reverses it)."""
        return {
            "player_numeric": list(self.player_numeric),
            "derived": list(self.derived),
            "categorical_levels": {k: list(v) for k, v in self.categorical_levels.items()},
            "event_types": list(self.event_types),
            "content": {t: {k: _json_float(v) for k, v in c.items()} for t, c in self.content.items()},
            "payout": [[e, int(r), float(p)] for (e, r), p in self.payout.items()],
            "per_type_columns": {t: dict(c) for t, c in self.per_type_columns.items()},
            "use_match": bool(self.use_match),
            "columns": list(self.columns),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Design:
        try:
            design = cls(
                player_numeric=list(data["player_numeric"]),
                categorical_levels={k: list(v) for k, v in data["categorical_levels"].items()},
                event_types=list(data["event_types"]),
                content={t: {k: _float(v) for k, v in c.items()} for t, c in data["content"].items()},
                payout={(str(e), int(r)): float(p) for e, r, p in data["payout"]},
                per_type_columns={t: dict(c) for t, c in data["per_type_columns"].items()},
                use_match=bool(data["use_match"]),
                derived=list(data["derived"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DesignError(f"malformed design document: {exc!r}") from exc
        if "columns" in data and list(data["columns"]) != design.columns:
            raise DesignError("the design document's column order differs from the one this code builds")
        return design

    def input_columns(self) -> list[str]:
        """The columns of the input frame this design reads (``player_id`` first)."""
        cols = ["player_id", *self.player_numeric, *self.categorical_levels]
        return list(dict.fromkeys([*cols, *self.source_columns()]))

    def source_columns(self) -> list[str]:
        """The input frame's per-event-type history columns the arm columns read."""
        return list(dict.fromkeys(src for t in self.event_types for src in self.per_type_columns.get(t, {}).values()))

    # ----------------------------------------------------------------- player block --
    def player_block(self, frame: pd.DataFrame) -> np.ndarray:
        """The player columns of ``frame`` as float32 (categoricals as level codes, unknown levels NaN)."""
        missing = [c for c in [*self.player_numeric, *self.categorical_levels] if c not in frame]
        if missing:
            raise DesignError(f"the frame lacks the model's player features {missing[:8]} (of {len(missing)})")
        k = len(self.player_numeric)
        out = np.empty((len(frame), k + len(self.derived) + len(self.categorical_levels)), np.float32)
        values = frame[self.player_numeric].to_numpy(np.float32, na_value=np.nan)
        out[:, :k] = values
        named = {c: values[:, i] for i, c in enumerate(self.player_numeric)}
        for i, name in enumerate(self.derived):
            out[:, k + i] = DERIVED[name](named)
        for j, (col, levels) in enumerate(self.categorical_levels.items(), start=k + len(self.derived)):
            codes = pd.Categorical(frame[col].astype(str), categories=levels).codes.astype(np.float32)
            out[:, j] = np.where(codes < 0, np.nan, codes)
        return out

    # -------------------------------------------------------------------- arm block --
    def arm_block(self, frame: pd.DataFrame | Columns, event_type: Any, reward: Any) -> np.ndarray:
        """The arm columns for arm ``(event_type[i], reward[i])`` of row ``i`` (arrays, or one value broadcast);
        ``frame``: the input frame, or its per-type history columns as arrays (:meth:`source_columns`)."""
        n = len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()), []))
        event_type = np.broadcast_to(np.asarray(event_type, dtype=object), (n,))
        reward = np.broadcast_to(np.asarray(reward, dtype=np.float64), (n,))
        names = self.arm_columns
        out = np.full((n, len(names)), np.nan, np.float32)
        col = {c: j for j, c in enumerate(names)}
        offer = event_type != NONE
        codes = pd.Categorical(event_type, categories=self.event_types).codes.astype(np.float32)
        out[:, col["arm_event"]] = np.where(codes < 0, np.nan, codes)
        out[:, col["arm_is_offer"]] = offer
        out[:, col["arm_reward"]] = np.where(offer, reward, 0.0)
        out[:, col["arm_reward_rel"]] = 0.0
        out[:, col["arm_payout"]] = 0.0
        for t in np.unique(event_type[offer]) if offer.any() else []:
            m = event_type == t
            c = self.content.get(str(t))
            if c is not None:
                ref = c.get("ref_reward", np.nan)  # NaN or 0 for a type offered only without reward
                out[m, col["arm_reward_rel"]] = reward[m] / ref if ref > 0 else 0.0
                for name in CONTENT:
                    out[m, col[f"arm_{name}"]] = c.get(name, np.nan)
            uniq, inv = np.unique(reward[m].astype(np.int64), return_inverse=True)
            prices = np.array([self.payout.get((str(t), int(r)), float(r)) for r in uniq], np.float32)
            out[m, col["arm_payout"]] = prices[inv]
            for arm_col, src in self.per_type_columns.get(str(t), {}).items():
                if arm_col in col and src in frame:
                    values = frame[src]
                    values = values.to_numpy(np.float32, na_value=np.nan) if isinstance(values, pd.Series) else values
                    out[m, col[arm_col]] = np.asarray(values, np.float32)[m]
        return out

    def matrix(
        self, frame: pd.DataFrame | Columns, event_type: Any, reward: Any, player: np.ndarray | None = None
    ) -> np.ndarray:
        """The full model matrix; pass ``player`` (from :meth:`player_block`) to reuse it across arms (then
        ``frame`` may be the per-type history columns as arrays)."""
        if player is None:
            if not isinstance(frame, pd.DataFrame):
                raise DesignError("the player block is needed when the frame is given as history columns only")
            player = self.player_block(frame)
        block = player
        return np.hstack([block, self.arm_block(frame, event_type, reward)])

    @property
    def categorical_indices(self) -> list[int]:
        return [self.columns.index(c) for c in [*self.categorical_levels, "arm_event"]]

    def monotone(self, increasing: bool) -> list[int]:
        """LightGBM monotone constraints: +1 on the reward columns when ``increasing``, else none."""
        return [1 if increasing and c in INCREASING_IN_REWARD else 0 for c in self.columns]

    def payout_of(self, event_type: np.ndarray, reward: np.ndarray) -> np.ndarray:
        """Expected payout per claim of arm ``(event_type[i], reward[i])``; an arm never priced: its face value."""
        keys = pd.MultiIndex.from_arrays([event_type.astype(str), reward.astype(np.int64)])
        table = pd.Series(self.payout, dtype=np.float64)
        if not len(table):
            return reward.astype(np.float64)
        payout = table.reindex(keys).to_numpy(np.float64)
        return np.where(np.isnan(payout), reward, payout)


def _float(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _json_float(v: float) -> float | None:
    """NaN is not JSON: stored as null."""
    return None if v != v else float(v)
