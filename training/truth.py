"""The simulator's ground truth, lined up with evaluation rows and arms.

A real platform has no truth; the simulator writes, for every past campaign
decision, the exact expected outcome of every arm (``decision_arms.parquet``)
and, for the as-of time, of every candidate and arm (``truth.parquet``). This
module matches them to decision rows (player and campaign day) and to the
arm table, so any policy can be scored exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from core.errors import RekindleError
from training.arms import arm_name


class TruthError(RekindleError, ValueError):
    """The truth directory is missing files, or does not match the rows."""


@dataclass(frozen=True)
class ArmTruth:
    """Exact expectations per row and arm (NaN where the truth lacks an arm or a row)."""

    p_reengage: np.ndarray
    deposits: np.ndarray
    cost: np.ndarray
    matched: np.ndarray  # rows that have a truth

    def incremental_net(self, margin: float) -> np.ndarray:
        net = margin * self.deposits - self.cost
        return net - net[:, [0]]

    def incremental_reengage(self) -> np.ndarray:
        return self.p_reengage - self.p_reengage[:, [0]]

    def subset(self, rows: np.ndarray) -> ArmTruth:
        return ArmTruth(self.p_reengage[rows], self.deposits[rows], self.cost[rows], self.matched[rows])


def _require(truth_dir: Path, name: str) -> Path:
    path = truth_dir / name
    if not path.is_file():
        raise TruthError(f"{truth_dir} holds no {name}: is it a truth directory written by `rekindle simulate`?")
    return path


def _pivot(long: pd.DataFrame, key: str, keys: np.ndarray, arms: pd.DataFrame) -> ArmTruth:
    long = long.assign(
        arm=[arm_name(e, r) for e, r in zip(long["event_type"].astype(str), long["reward"], strict=True)]
    )
    out = []
    for col in ("p_reengage", "expected_deposits", "expected_cost"):
        wide = long.pivot(index=key, columns="arm", values=col).reindex(columns=arms["arm"])
        out.append(wide.reindex(keys).to_numpy(np.float64))
    matched = ~np.isnan(out[0][:, 0])
    return ArmTruth(out[0], out[1], out[2], matched)


def decision_truth(truth_dir: Path, rows: pd.DataFrame, arms: pd.DataFrame) -> ArmTruth:
    """The truth of every arm for decision rows (``player_id``, ``campaign_at``) of past campaigns."""
    decisions = pd.read_parquet(
        _require(truth_dir, "decisions.parquet"), columns=["decision_id", "player_id", "sent_at"]
    )
    arms_path = _require(truth_dir, "decision_arms.parquet")
    decisions["day"] = pd.to_datetime(decisions["sent_at"]).dt.floor("D")
    keyed = rows[["player_id"]].assign(day=pd.to_datetime(rows["campaign_at"]).dt.floor("D").to_numpy())
    ids = keyed.merge(decisions[["player_id", "day", "decision_id"]], on=["player_id", "day"], how="left")
    if len(ids) != len(rows):
        raise TruthError("the truth holds several decisions for one player and campaign day: not a simulator's truth")
    keys = ids["decision_id"].to_numpy(np.float64)
    wanted = np.unique(keys[~np.isnan(keys)]).astype(np.int64)
    table = ds.dataset(arms_path).to_table(filter=ds.field("decision_id").isin(wanted))
    out = _pivot(table.to_pandas(), "decision_id", keys, arms)
    return _with_forward_campaigns(out, truth_dir, rows, arms)


_TRUTH_COLUMNS = ["player_id", "event_type", "reward", "p_reengage", "expected_deposits", "expected_cost"]


def _with_forward_campaigns(found: ArmTruth, truth_dir: Path, rows: pd.DataFrame, arms: pd.DataFrame) -> ArmTruth:
    """``found``, completed for the rows of campaigns decided after the simulation (the closed loop's weeks):
    forward mode archives the as-of truth it held when each week's decisions were made
    (``history/truth-<decision time>.parquet``), every candidate's expectation for every arm at that moment.
    (A drift applied in a week is not in the truth archived at its start.)"""
    missing = ~found.matched
    archive = truth_dir / "history"
    if not missing.any() or not archive.is_dir():
        return found
    at = pd.to_datetime(rows["campaign_at"]).to_numpy()
    arrays = [found.p_reengage.copy(), found.deposits.copy(), found.cost.copy()]
    for t in np.unique(at[missing]):
        path = archive / f"truth-{pd.Timestamp(t):%Y%m%dT%H%M}.parquet"
        if not path.is_file():
            continue
        sel = np.flatnonzero(missing & (at == t))
        players = rows["player_id"].to_numpy(np.float64)[sel]
        got = _pivot(pd.read_parquet(path, columns=_TRUTH_COLUMNS), "player_id", players, arms)
        for whole, part in zip(arrays, (got.p_reengage, got.deposits, got.cost), strict=True):
            whole[sel] = part
    return ArmTruth(arrays[0], arrays[1], arrays[2], ~np.isnan(arrays[0][:, 0]))


def asof_truth(truth_dir: Path, player_ids: np.ndarray, arms: pd.DataFrame) -> ArmTruth:
    """The truth of every arm for the candidates ``player_ids`` at the truth's as-of time."""
    long = pd.read_parquet(_require(truth_dir, "truth.parquet"), columns=_TRUTH_COLUMNS)
    return _pivot(long, "player_id", np.asarray(player_ids, np.float64), arms)
