"""Training data: the feature store's training set, split by time (or by player).

The split follows the campaigns: the latest ``test_campaigns`` are held out
(evaluation and promotion), the ``validation_campaigns`` before them are
tuning's objective, everything earlier trains. A row belongs to the slice of
its campaign, and a training row's attribution window closes before the slice
after it starts, so no label reaches across a boundary.

A platform with too few campaigns for that (one large randomised test, say) is
split by player instead: each player's rows, in every campaign, go to one part
(``player_test_share``, ``player_validation_share``, the rest trains), so no
player is in two. The split says which it is; the time split stays the default
wherever the history allows it.

The policy's population in a campaign is its eligible rows (dormant, active,
registered long enough); offers the marketers sent to other players still
train the response model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.config import Config, SplitConfig
from core.errors import RekindleError
from features.manifest import business_changes
from features.training_set import BUSINESS_KEY, VOCABULARY_KEY

LABEL_COLUMNS = ("reengaged", "converted", "deposits", "reward_cost", "net_value")


class TrainingDataError(RekindleError, ValueError):
    """The training set is missing, or too short for the split asked for."""


def training_set_path(cfg: Config) -> Path:
    return cfg.path("training", "training_set.parquet")


def load_training_set(cfg: Config, path: Path | None = None) -> pd.DataFrame:
    path = path or training_set_path(cfg)
    if not path.is_file():
        raise TrainingDataError(
            f"no training set at {path}: run `rekindle features build` and `rekindle features training-set` first"
        )
    _check_business(cfg, path)  # from the footer, before reading every row
    frame = pd.read_parquet(path)
    missing = [
        c for c in ("campaign_at", "player_id", "event_type", "reward", "eligible", *LABEL_COLUMNS) if c not in frame
    ]
    if missing:
        raise TrainingDataError(f"{path} is not a training set: it lacks the columns {missing}")
    # The margin is only a price: net value follows the configured one, whatever the build used.
    frame["net_value"] = cfg.business.margin * frame["deposits"] - frame["reward_cost"]
    return frame


def training_set_vocabulary(path: Path) -> dict[str, list[str]]:
    """The platform's games and event types the training set's features were built for (its footer)."""
    raw = (pq.read_schema(path).metadata or {}).get(VOCABULARY_KEY)
    if raw is None:
        raise TrainingDataError(
            f"{path} predates recording the platform's games and event types: rebuild it "
            "(`rekindle features build` then `rekindle features training-set`)"
        )
    words: dict[str, list[str]] = json.loads(raw)
    return words


def _check_business(cfg: Config, path: Path) -> None:
    """The labels' attribution window and the eligibility's dormancy must be the configured ones."""
    raw = (pq.read_schema(path).metadata or {}).get(BUSINESS_KEY)
    differ, flags = business_changes(cfg, None if raw is None else json.loads(raw))
    if differ:
        said = ", ".join(f"{k} {new} but the training set was built with {old}" for k, (old, new) in differ.items())
        raise TrainingDataError(
            f"{said}: rebuild it (`rekindle features build {flags}` then `rekindle features training-set {flags}`), "
            "or drop the override"
        )


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    validation_start: datetime
    test_start: datetime
    first: datetime
    last: datetime
    kind: str = "time"  # "time", or "player" when the history holds too few campaigns
    note: str = ""

    @property
    def fit(self) -> pd.DataFrame:
        """Everything before the test slice: the final model's training data."""
        return pd.concat([self.train, self.validation], ignore_index=True)

    def describe(self) -> dict[str, str | int]:
        def span(f: pd.DataFrame) -> str:
            if f.empty:
                return "-"
            return f"{f['campaign_at'].min():%Y-%m-%d} .. {f['campaign_at'].max():%Y-%m-%d}"

        return {
            "split": self.kind if not self.note else f"{self.kind} ({self.note})",
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "test_rows": len(self.test),
            "train_campaigns": span(self.train),
            "validation_campaigns": span(self.validation),
            "test_campaigns": span(self.test),
        }


def split_rows(frame: pd.DataFrame, split: SplitConfig, seed: int) -> Split:
    """The time split where the history holds enough campaigns, else the split by player (module docstring)."""
    campaigns = pd.to_datetime(frame["campaign_at"]).nunique()
    need = split.validation_campaigns + split.test_campaigns + 2
    if campaigns >= need:
        return time_split(frame, validation_campaigns=split.validation_campaigns, test_campaigns=split.test_campaigns)
    note = (
        f"{campaigns} campaign{'s' if campaigns != 1 else ''}: fewer than the {need} a time split needs "
        f"({split.test_campaigns} test + {split.validation_campaigns} validation + 2 to train on)"
    )
    return player_split(
        frame, validation_share=split.player_validation_share, test_share=split.player_test_share, seed=seed, note=note
    )


def player_split(
    frame: pd.DataFrame, *, validation_share: float, test_share: float, seed: int, note: str = ""
) -> Split:
    """Split ``frame`` by player: every row of a player in one part, shares of the players at random."""
    if len(frame) == 0:
        raise TrainingDataError("the training set is empty: there is nothing to split")
    players = np.unique(frame["player_id"].to_numpy())
    u = np.random.default_rng(seed).random(len(players))
    part = np.where(u < test_share, 2, np.where(u < test_share + validation_share, 1, 0))
    where = part[np.searchsorted(players, frame["player_id"].to_numpy())]
    at = pd.to_datetime(frame["campaign_at"])
    first, last = at.min().to_pydatetime(), at.max().to_pydatetime()
    return Split(
        frame[where == 0].reset_index(drop=True),
        frame[where == 1].reset_index(drop=True),
        frame[where == 2].reset_index(drop=True),
        first,
        first,
        first,
        last,
        kind="player",
        note=note,
    )


def time_split(frame: pd.DataFrame, *, validation_campaigns: int, test_campaigns: int) -> Split:
    """Split ``frame`` by campaign time (module docstring)."""
    campaigns = np.sort(pd.to_datetime(frame["campaign_at"]).unique())
    need = validation_campaigns + test_campaigns + 2
    if len(campaigns) < need:
        raise TrainingDataError(
            f"the training set holds {len(campaigns)} campaigns; the time split needs at least {need} "
            f"({test_campaigns} test + {validation_campaigns} validation + 2 to train on)"
        )
    test_start = pd.Timestamp(campaigns[-test_campaigns])
    validation_start = pd.Timestamp(campaigns[-test_campaigns - validation_campaigns])
    at = pd.to_datetime(frame["campaign_at"])
    ends = pd.to_datetime(frame["window_end"]) if "window_end" in frame else at
    train = frame[(at < validation_start) & (ends <= validation_start)]
    validation = frame[(at >= validation_start) & (at < test_start) & (ends <= test_start)]
    test = frame[at >= test_start]
    return Split(
        train.reset_index(drop=True),
        validation.reset_index(drop=True),
        test.reset_index(drop=True),
        validation_start.to_pydatetime(),
        test_start.to_pydatetime(),
        pd.Timestamp(campaigns[0]).to_pydatetime(),
        pd.Timestamp(campaigns[-1]).to_pydatetime(),
    )


def population(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a policy decides for: eligible players of each campaign."""
    return frame[frame["eligible"].to_numpy(bool)].reset_index(drop=True)


def player_folds(players: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold label per row; every row of a player is in the same fold (a random label per player)."""
    _, inverse = np.unique(players, return_inverse=True)
    rng = np.random.default_rng(seed)
    return rng.integers(0, folds, inverse.max() + 1 if len(inverse) else 0)[inverse]
