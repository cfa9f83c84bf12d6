"""``rekindle batch``: one decision for every dormant candidate at a time T.

The candidates and their features come from :mod:`features.candidates`; the
registered scorer then scores every arm and the policy picks one per player.
The output holds one row per candidate: player_id, segment, event_type,
reward ("none" and 0 for no offer), the expected values in whole KRW, the
interval and the confidence, and the model version that decided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.config import Config
from core.errors import RekindleError
from core.progress import SILENT, Progress
from features.candidates import candidate_features, snapshot_at
from training.policy import Objective
from training.scorer import ArmRule, Scorer, round_money


class BatchError(RekindleError, ValueError):
    """The batch cannot run: a bad time, output path or empty candidate set."""


@dataclass
class BatchResult:
    decisions: pd.DataFrame
    as_of: datetime
    snapshot: datetime
    path: Path
    seconds: dict[str, float]


def write_atomic(frame: pd.DataFrame, out: Path) -> Path:
    if out.suffix not in (".csv", ".parquet"):
        raise BatchError(f"--out must end in .csv or .parquet, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def run_batch(
    cfg: Config,
    scorer: Scorer,
    *,
    as_of: datetime | None,
    out: Path,
    model_version: str,
    margin: float | None = None,
    objective: Objective | None = None,
    budget: float | None = None,
    arm: ArmRule | None = None,
    progress: Progress = SILENT,
) -> BatchResult:
    if out.suffix not in (".csv", ".parquet"):  # before minutes of work
        raise BatchError(f"--out must end in .csv or .parquet, got {out.name!r}")
    if arm is not None and budget is not None:
        raise BatchError(f"--arm {arm} is a fixed rule; it takes no --budget (got {budget:,.0f} KRW)")
    if arm is not None:
        for one in [arm] if isinstance(arm, str) else list(arm.values()):
            try:
                scorer.arm_column(one)
            except ValueError as exc:
                raise BatchError(f"--arm: {exc}") from None
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    t, snap = snapshot_at(cfg, as_of)
    progress.note(f"candidates and features at {t:%Y-%m-%dT%H:%M} (snapshot {snap:%Y-%m-%dT%H:%M})")
    frame = candidate_features(cfg, t, snap)
    seconds["features"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    progress.note(f"scoring {len(frame):,} candidates x {len(scorer.arms)} arms")
    decisions = round_money(scorer.decide(frame, objective=objective, budget=budget, margin=margin, arm=arm))
    decisions.insert(1, "segment", frame["segment"].astype(str).to_numpy())
    decisions["as_of"] = pd.Timestamp(t)
    decisions["model_version"] = model_version
    seconds["score"] = time.perf_counter() - t1
    path = write_atomic(decisions, out)
    seconds["total"] = time.perf_counter() - t0
    return BatchResult(decisions, t, snap, path, seconds)
