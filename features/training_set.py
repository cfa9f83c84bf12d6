"""Training sets: decision rows (:mod:`features.decisions`) x features as of each decision (Feast's point-in-time join).

Each row is one decision: an offer sent, or an eligible player who got no offer
in that campaign. Its features come from ``get_historical_features``: for every
view, the latest snapshot at or before the decision time, whose values use only
platform rows strictly before that snapshot. Labels come from events strictly
after the decision, within the attribution window.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import Config
from core.progress import SILENT, Progress
from features.decisions import build_decisions
from features.families import ENTITY, EVENT_TYPE_KEY, TIMESTAMP, all_families
from features.join import ROW_ID, historical_features
from features.layout import FeatureStoreError, layout
from features.manifest import business_window, check_business, read_manifest
from features.matching import add_match_scores
from features.offline import read_view
from features.store import open_store
from platform_db.db import connect
from validation.checks import filters_for_invalid_rows


@dataclass
class TrainingSet:
    frame: pd.DataFrame
    as_of: datetime
    open_windows: int
    campaigns: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    def label_rates(self) -> pd.DataFrame:
        """Per arm: rows and mean labels (the first look a data scientist takes)."""
        g = self.frame.groupby("arm", sort=True)
        out = g.agg(
            rows=(ROW_ID, "size"),
            reengaged=("reengaged", "mean"),
            converted=("converted", "mean"),
            deposits=("deposits", "mean"),
            reward_cost=("reward_cost", "mean"),
            net_value=("net_value", "mean"),
        )
        return out.reset_index()


BUSINESS_KEY = b"rekindle.business"  # Parquet metadata: the windows and dormancy the labels were made with


def write_training_set(cfg: Config, frame: pd.DataFrame, out: Path) -> Path:
    """Write ``frame`` to ``out`` (Parquet, all or nothing) with the business window its labels were made with."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".parquet.tmp")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}), BUSINESS_KEY: json.dumps(business_window(cfg)).encode()}
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(out)
    return out


def build_training_set(
    cfg: Config,
    *,
    as_of: datetime | None = None,
    out: Path | None = None,
    progress: Progress = SILENT,
    now: datetime | None = None,
    row_checks: bool = True,
) -> TrainingSet:
    """Decision rows with labels and point-in-time features; written to ``out`` (Parquet) if given."""
    bar = progress
    manifest = read_manifest(cfg)
    check_business(cfg, manifest, "build the training set")
    built = manifest["as_of"]
    as_of = as_of or built
    if as_of > built:
        raise FeatureStoreError(
            f"--as-of {as_of:%Y-%m-%dT%H:%M:%S} is after the feature build's as-of {built:%Y-%m-%dT%H:%M:%S}: "
            "rebuild the features up to it first"
        )
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    engine = connect(cfg.db_url)
    clock = now or datetime.now(UTC).replace(tzinfo=None)
    filters = filters_for_invalid_rows(engine, max(clock, as_of))[0] if row_checks else None
    decisions = build_decisions(engine, cfg, as_of, filters=filters, progress=bar)
    engine.dispose()
    seconds["decisions"] = time.perf_counter() - t

    t = time.perf_counter()
    bar.start("point-in-time join", 1)
    rows = decisions.rows
    store = open_store(cfg)
    entity_df = pd.DataFrame(
        {
            ROW_ID: rows[ROW_ID].to_numpy(),
            ENTITY: rows[ENTITY].to_numpy(),
            EVENT_TYPE_KEY: rows["event_type"].astype(object).to_numpy(),
            TIMESTAMP: pd.to_datetime(rows["decision_at"]).dt.tz_localize("UTC"),
        }
    )
    feats = historical_features(store, entity_df, all_families(cfg))
    bar.advance("point-in-time join", 1)
    seconds["join"] = time.perf_counter() - t
    feature_cols = [c for c in feats.columns if c not in (ENTITY, EVENT_TYPE_KEY, TIMESTAMP, ROW_ID)]
    frame = rows.merge(feats[[ROW_ID, *feature_cols]], on=ROW_ID, how="left", validate="one_to_one")
    event_emb = read_view(layout(cfg), next(f for f in all_families(cfg) if f.view == "event_type_cf"))
    frame = add_match_scores(frame, cfg, event_emb)
    path = None
    if out is not None:
        path = write_training_set(cfg, frame, out)
    return TrainingSet(frame, as_of, decisions.open_windows, decisions.campaigns, seconds, path)
