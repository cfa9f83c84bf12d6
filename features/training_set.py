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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.build import CONTENT_SINCE
from features.content import event_type_content
from features.decisions import STEPS as DECISION_STEPS
from features.decisions import build_decisions
from features.families import ENTITY, EVENT_TYPE_KEY, TIMESTAMP, all_families
from features.join import ROW_ID, historical_features
from features.layout import FeatureStoreError, layout
from features.manifest import business_window, check_business, read_manifest
from features.matching import collaborative_score, content_score, hybrid_score
from features.offline import read_view
from features.progress import Progress
from features.store import open_store
from rekindle.config import Config
from rekindle.platform.db import connect
from rekindle.validation.checks import filters_for_invalid_rows


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


def own_type(wide: pd.DataFrame, event_types: pd.Series) -> np.ndarray:
    """From a rows x event types frame, each row's value for its own event type (NaN for none or unknown)."""
    idx = wide.columns.get_indexer(pd.Index(event_types))
    values = wide.to_numpy(np.float64)[np.arange(len(wide)), np.maximum(idx, 0)]
    return np.where(idx >= 0, values, np.nan)


MATCH_KINDS = ("collaborative", "content", "hybrid")


def match_column(kind: str, event_type: str) -> str:
    """The training set's column of the ``kind`` match score of every row's player for ``event_type``."""
    return f"match_{kind}__{event_type}"


def add_match_scores(
    frame: pd.DataFrame, cfg: Config, event_emb: pd.DataFrame, *, time_column: str = "decision_at"
) -> pd.DataFrame:
    """The collaborative, content-based and hybrid match scores of each row's player for every event type
    (``match_<kind>__<type>``, so a model can score any arm) and of its own event type (``match_<kind>``,
    NaN for no offer).

    ``event_emb`` is the event_type_cf view (every snapshot); each row uses the latest snapshot at or before
    its ``time_column``, like the point-in-time join.
    """
    k = cfg.features.embedding_dim
    player = frame[[f"cf_{i}" for i in range(k)]].fillna(0.0).assign(**{TIMESTAMP: frame[time_column].to_numpy()})
    collaborative = collaborative_score(player, event_emb)
    content = content_score(frame, event_type_content(cfg, CONTENT_SINCE))[collaborative.columns]
    hybrid = hybrid_score(
        collaborative,
        content,
        frame["offers_resolved"].fillna(0).to_numpy(),
        prior_offers=cfg.features.cf_prior_strength,
    )
    columns: dict[str, np.ndarray] = {}
    for name, wide in zip(MATCH_KINDS, (collaborative, content, hybrid), strict=True):
        if "event_type" in frame:
            columns[f"match_{name}"] = own_type(wide, frame["event_type"])
        for event_type in wide.columns:
            columns[match_column(name, str(event_type))] = wide[event_type].to_numpy(np.float32)
    return pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)


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
    progress: Progress | None = None,
    now: datetime | None = None,
    row_checks: bool = True,
) -> TrainingSet:
    """Decision rows with labels and point-in-time features; written to ``out`` (Parquet) if given."""
    bar = progress or Progress()
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
    bar.start("decisions", len(DECISION_STEPS))
    decisions = build_decisions(engine, cfg, as_of, filters=filters, on_step=lambda name: bar.advance("decisions", 1))
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
