"""``rekindle batch``: one decision for every dormant candidate at a time T.

Candidates are the players dormant at the snapshot in force at T (the latest
daily snapshot at or before T) whose status is active, as in the online
store. Their features come from Feast's point-in-time join at T, the same
retrieval the training set used, and the match scores are computed the same
way; the registered scorer then scores every arm and the policy picks one
per player. The output holds one row per candidate: player_id, segment, event_type,
reward ("none" and 0 for no offer), the expected values in whole KRW, the
interval and the confidence, and the model version that decided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.families import ENTITY, TIMESTAMP, all_families, player_families
from features.join import ROW_ID, historical_features
from features.layout import FeatureStoreError, layout
from features.manifest import read_manifest
from features.materialize import candidates_at
from features.offline import read_view
from features.store import open_store
from features.training_set import add_match_scores
from rekindle.config import Config
from rekindle.errors import RekindleError
from training.policy import Objective
from training.scorer import Scorer, round_money


class BatchError(RekindleError, ValueError):
    """The batch cannot run: a bad time, output path or empty candidate set."""


@dataclass
class BatchResult:
    decisions: pd.DataFrame
    as_of: datetime
    snapshot: datetime
    path: Path
    seconds: dict[str, float]


def snapshot_at(cfg: Config, as_of: datetime | None) -> tuple[datetime, datetime]:
    """(T, the daily snapshot in force at T) within the feature build."""
    manifest = read_manifest(cfg)
    built, first = manifest["as_of"], pd.Timestamp(manifest["first_snapshot"]).to_pydatetime()
    t = as_of or built
    if t > built:
        raise FeatureStoreError(
            f"--as-of {t:%Y-%m-%dT%H:%M} is after the feature build's as-of {built:%Y-%m-%dT%H:%M}: "
            "rebuild the features"
        )
    if t < first:
        raise BatchError(f"--as-of {t:%Y-%m-%dT%H:%M} is before the first snapshot {first:%Y-%m-%dT%H:%M}")
    days = int(np.ceil((built - t) / timedelta(days=1) - 1e-9))
    return t, built - timedelta(days=days)


def candidate_features(cfg: Config, as_of: datetime, snapshot: datetime) -> pd.DataFrame:
    """Every candidate at ``as_of`` with its point-in-time features and match scores."""
    lay = layout(cfg)
    families = {f.view: f for f in all_families(cfg)}
    segment = read_view(lay, families["player_segment"], at=snapshot)
    ids = candidates_at(segment, read_view(lay, families["player_profile"]))
    if len(ids) == 0:
        raise BatchError(f"no dormant candidate at {as_of:%Y-%m-%dT%H:%M}: nothing to decide")
    entity = pd.DataFrame(
        {
            ROW_ID: np.arange(len(ids)),
            ENTITY: ids,
            TIMESTAMP: pd.Timestamp(as_of).tz_localize("UTC"),
        }
    )
    frame = historical_features(open_store(cfg), entity, player_families(cfg))
    frame["decided_at"] = pd.Timestamp(as_of)
    event_emb = read_view(lay, families["event_type_cf"])
    return add_match_scores(frame, cfg, event_emb, time_column="decided_at")


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
    arm: str | None = None,
    say=lambda msg: None,
) -> BatchResult:
    if out.suffix not in (".csv", ".parquet"):  # before minutes of work
        raise BatchError(f"--out must end in .csv or .parquet, got {out.name!r}")
    if arm is not None and budget is not None:
        raise BatchError(f"--arm {arm} sends one arm to everyone; it takes no --budget (got {budget:,.0f} KRW)")
    if arm is not None:
        try:
            scorer.arm_column(arm)
        except ValueError as exc:
            raise BatchError(f"--arm: {exc}") from None
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    t, snap = snapshot_at(cfg, as_of)
    say(f"candidates and features at {t:%Y-%m-%dT%H:%M} (snapshot {snap:%Y-%m-%dT%H:%M})")
    frame = candidate_features(cfg, t, snap)
    seconds["features"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    say(f"scoring {len(frame):,} candidates x {len(scorer.arms)} arms")
    decisions = round_money(scorer.decide(frame, objective=objective, budget=budget, margin=margin, arm=arm))
    decisions.insert(1, "segment", frame["segment"].astype(str).to_numpy())
    decisions["as_of"] = pd.Timestamp(t)
    decisions["model_version"] = model_version
    seconds["score"] = time.perf_counter() - t1
    path = write_atomic(decisions, out)
    seconds["total"] = time.perf_counter() - t0
    return BatchResult(decisions, t, snap, path, seconds)
