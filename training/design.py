"""The model's input: one row per (decision, arm), player features beside the arm's own features.

A decision row holds the player's point-in-time features (the training set of
:mod:`features.training_set`, or the candidates of a batch). Scoring an arm
appends that arm's columns: which event type (categorical, "none" included),
the reward (absolute and relative to the event type's ladder), the event
type's catalog content, the player's own past response to that event type, and
the event-type match scores (collaborative, content-based, hybrid). The same
player block is reused for every arm, so scoring 14 arms costs 14 cheap column
fills, not 14 feature joins.

:class:`Design` is fitted once on a training set (it learns the categorical
levels and the arm table) and is pickled with the model, so serving builds
exactly the matrix training saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from features.families import player_families
from features.matching import MATCH_KINDS, match_column
from training.arms import NONE

CATEGORICAL = ("channel", "dormancy_stage", "value_tier")
DROPPED = ("status", "segment", "is_dormant")  # constant among candidates, or a combination of other columns
CONTENT = ("requires_deposit", "min_deposit", "payout_ratio", "catalog_claim_rate")
PER_TYPE = ("offers", "claim_rate", "deposit_rate")  # the player's history with one event type: <name>_<type>
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


# rates a tree would need many splits to approximate: a player's habits per unit of time or activity
DERIVED = {
    "deposits_per_day": lambda f: _ratio(f["deposits_sum_lifetime"], f["tenure_days"]),
    "sessions_per_day": lambda f: _ratio(f["sessions_lifetime"], f["days_since_first_session"]),
    "deposits_per_session": lambda f: _ratio(f["deposits_n_lifetime"], f["sessions_lifetime"]),
    "idle_over_typical_gap": lambda f: _ratio(
        f["days_since_last_session"], _ratio(f["days_since_first_session"], f["sessions_lifetime"])
    ),
}


def _inputs(name: str) -> list[str]:
    """The player columns a derived rate reads (found by calling it on a recording mapping)."""
    seen: list[str] = []

    class Recorder(dict):
        def __missing__(self, key: str) -> np.ndarray:
            seen.append(key)
            return np.ones(1, np.float32)

    DERIVED[name](Recorder())
    return seen


class DesignError(RekindleError, ValueError):
    """The frame given to the model lacks the features it was trained on."""


@dataclass
class Design:
    """Column layout and categorical levels of the model matrix."""

    player_numeric: list[str]
    categorical_levels: dict[str, list[str]]
    event_types: list[str]  # levels of arm_event, "none" first
    content: pd.DataFrame  # per event type: CONTENT columns and ref_reward (index event_type)
    payout: dict[tuple[str, int], float]  # expected payout per claim of each arm
    use_match: bool = True
    derived: list[str] = field(default_factory=list)  # names of DERIVED rates appended to the player block
    columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.columns = [
            *self.player_numeric,
            *self.derived,
            *self.categorical_levels,
            *ARM_COLUMNS,
            *(MATCH_COLUMNS if self.use_match else ()),
        ]

    @classmethod
    def fit(cls, cfg: Config, frame: pd.DataFrame, arms: pd.DataFrame, *, use_match: bool = True) -> Design:
        """Learn the layout from a training frame and the arm table (:func:`training.arms.discover_arms`)."""
        names = [f.name for fam in player_families(cfg) for f in fam.features]
        missing = [c for c in names if c not in frame]
        if missing:
            raise DesignError(f"the training frame lacks player features {missing[:8]} (of {len(missing)})")
        numeric = [c for c in names if c not in CATEGORICAL and c not in DROPPED]
        levels = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in CATEGORICAL}
        offers = arms[arms["event_type"] != NONE]
        types = [NONE, *sorted(offers["event_type"].unique().tolist())]
        ref = offers.groupby("event_type")["reward"].apply(lambda r: float(np.exp(np.log(r.astype(float)).mean())))
        catalog = {e.name: e for e in cfg.catalog.event_types}
        rows = []
        for t in types[1:]:
            e = catalog.get(t)
            rows.append(
                {
                    "event_type": t,
                    "requires_deposit": float(e.requires_deposit) if e else np.nan,
                    "min_deposit": float(e.min_deposit or 0) if e else np.nan,
                    "payout_ratio": e.payout_ratio if e else np.nan,
                    "catalog_claim_rate": e.claim_rate if e else np.nan,
                    "ref_reward": ref[t],
                }
            )
        content = pd.DataFrame(rows).set_index("event_type")
        payout = {
            (str(e), int(r)): float(p)
            for e, r, p in zip(arms["event_type"], arms["reward"], arms["payout"], strict=True)
        }
        derived = [name for name in DERIVED if all(c in numeric for c in _inputs(name))]
        return cls(numeric, levels, types, content, payout, use_match, derived)

    # ---------------------------------------------------------------- player block --
    def player_block(self, frame: pd.DataFrame) -> np.ndarray:
        """The player columns of ``frame`` as float32 (categoricals as level codes, unknown levels NaN)."""
        missing = [c for c in [*self.player_numeric, *self.categorical_levels] if c not in frame]
        if missing:
            raise DesignError(f"the frame lacks the model's player features {missing[:8]} (of {len(missing)})")
        derived = getattr(self, "derived", [])  # designs pickled before the derived rates have none
        k = len(self.player_numeric)
        out = np.empty((len(frame), k + len(derived) + len(self.categorical_levels)), np.float32)
        values = frame[self.player_numeric].to_numpy(np.float32, na_value=np.nan)
        out[:, :k] = values
        named = {c: values[:, i] for i, c in enumerate(self.player_numeric)}
        for i, name in enumerate(derived):
            out[:, k + i] = DERIVED[name](named)
        for j, (col, levels) in enumerate(self.categorical_levels.items(), start=k + len(derived)):
            codes = pd.Categorical(frame[col].astype(str), categories=levels).codes.astype(np.float32)
            out[:, j] = np.where(codes < 0, np.nan, codes)
        return out

    # ------------------------------------------------------------------- arm block --
    def arm_block(self, frame: pd.DataFrame, event_type: np.ndarray, reward: np.ndarray) -> np.ndarray:
        """The arm columns for arm ``(event_type[i], reward[i])`` of row ``i`` (arrays, or one value broadcast)."""
        n = len(frame)
        event_type = np.broadcast_to(np.asarray(event_type, dtype=object), (n,))
        reward = np.broadcast_to(np.asarray(reward, dtype=np.float64), (n,))
        k = len(ARM_COLUMNS) + (len(MATCH_COLUMNS) if self.use_match else 0)
        out = np.full((n, k), np.nan, np.float32)
        col = {c: j for j, c in enumerate([*ARM_COLUMNS, *(MATCH_COLUMNS if self.use_match else ())])}
        offer = event_type != NONE
        codes = pd.Categorical(event_type, categories=self.event_types).codes.astype(np.float32)
        out[:, col["arm_event"]] = np.where(codes < 0, np.nan, codes)
        out[:, col["arm_is_offer"]] = offer
        out[:, col["arm_reward"]] = np.where(offer, reward, 0.0)
        out[:, col["arm_reward_rel"]] = 0.0
        out[:, col["arm_payout"]] = 0.0
        for t in np.unique(event_type[offer]) if offer.any() else []:
            m = event_type == t
            if t in self.content.index:
                c = self.content.loc[t]
                out[m, col["arm_reward_rel"]] = reward[m] / c["ref_reward"]
                for name in CONTENT:
                    out[m, col[f"arm_{name}"]] = c[name]
            uniq, inv = np.unique(reward[m].astype(np.int64), return_inverse=True)
            prices = np.array([self.payout.get((str(t), int(r)), float(r)) for r in uniq], np.float32)
            out[m, col["arm_payout"]] = prices[inv]
            for name in PER_TYPE:
                src = f"{name}_{t}"
                if src in frame:
                    out[m, col[f"arm_{name}_prev"]] = frame[src].to_numpy(np.float32, na_value=np.nan)[m]
            if self.use_match:
                for kind in MATCH_KINDS:
                    src = match_column(kind, str(t))
                    if src in frame:
                        out[m, col[f"arm_match_{kind}"]] = frame[src].to_numpy(np.float32, na_value=np.nan)[m]
        return out

    def matrix(self, frame: pd.DataFrame, event_type, reward, player: np.ndarray | None = None) -> np.ndarray:
        """The full model matrix; pass ``player`` (from :meth:`player_block`) to reuse it across arms."""
        block = self.player_block(frame) if player is None else player
        return np.hstack([block, self.arm_block(frame, event_type, reward)])

    @property
    def categorical_indices(self) -> list[int]:
        return [self.columns.index(c) for c in [*self.categorical_levels, "arm_event"]]

    def monotone(self, increasing: bool) -> list[int]:
        """LightGBM monotone constraints: +1 on the reward columns when ``increasing``, else none."""
        return [1 if increasing and c in INCREASING_IN_REWARD else 0 for c in self.columns]
