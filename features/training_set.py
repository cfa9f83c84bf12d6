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
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import Config
from core.progress import SILENT, Progress
from features.decisions import build_decisions
from features.families import ENTITY, EVENT_TYPE_KEY, TIMESTAMP, UnbuiltError, all_families
from features.join import ROW_ID, historical_features
from features.layout import FeatureStoreError, layout
from features.manifest import as_built, business_window, check_business, read_manifest, vocabulary
from features.matching import add_match_scores
from features.offline import read_view
from features.store import open_store
from platform_db.db import connect
from validation.checks import filters_for_invalid_rows

LABELS = ("reengaged", "converted", "deposits", "reward_cost", "net_value")
GROUP_ROWS = 250_000  # decision rows joined and written at a time (1M players: 8.1 GiB with whole campaigns)


@dataclass
class TrainingSet:
    """A built training set: where it was written, its label means per arm, and (read on demand) its rows."""

    as_of: datetime
    open_windows: int
    campaigns: pd.DataFrame
    rates: pd.DataFrame  # per arm: rows and label means
    seconds: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    rows: int = 0
    _frame: pd.DataFrame | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """Every row (read from ``path`` when the set was written; a million players' set is gigabytes)."""
        if self._frame is None:
            if self.path is None:
                raise FeatureStoreError("this training set was neither kept nor written")
            self._frame = pd.read_parquet(self.path)
        return self._frame

    def label_rates(self) -> pd.DataFrame:
        """Per arm: rows and mean labels (the first look a data scientist takes)."""
        return self.rates


def _label_sums(frame: pd.DataFrame) -> pd.DataFrame:
    sums = frame.groupby("arm", sort=True)[list(LABELS)].sum(numeric_only=False).astype(np.float64)
    return sums.assign(rows=frame.groupby("arm", sort=True).size())


def _rates(sums: list[pd.DataFrame]) -> pd.DataFrame:
    if not sums:
        return pd.DataFrame(columns=["arm", "rows", *LABELS])
    total = pd.concat(sums).groupby(level=0).sum()
    out = total[list(LABELS)].div(total["rows"], axis=0).assign(rows=total["rows"].astype(np.int64))
    return out[["rows", *LABELS]].rename_axis("arm").reset_index()


def row_groups(campaign_id: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Row positions in campaign order (stable), cut into consecutive groups of at most ``max_rows`` rows.

    A group may end inside a campaign: the point-in-time join is per row, and a growing base makes the
    last campaigns the largest (up to 496,000 rows each at a million players, so whole-campaign groups
    could not stay small)."""
    order = np.argsort(campaign_id, kind="stable")
    return [order[i : i + max_rows] for i in range(0, len(order), max(max_rows, 1))]


BUSINESS_KEY = b"rekindle.business"  # Parquet metadata: the windows and dormancy the labels were made with
VOCABULARY_KEY = b"rekindle.vocabulary"  # Parquet metadata: the platform's games and event types of the features


def _metadata(cfg: Config, schema: pa.Schema) -> dict[bytes, bytes]:
    return {
        **(schema.metadata or {}),
        BUSINESS_KEY: json.dumps(business_window(cfg)).encode(),
        VOCABULARY_KEY: json.dumps(vocabulary(cfg)).encode(),
    }


def write_training_set(cfg: Config, frame: pd.DataFrame, out: Path) -> Path:
    """Write ``frame`` to ``out`` (Parquet, all or nothing) with the business window its labels were made with
    and the platform's games and event types its features were built for."""
    with _Writer(cfg, out, _arrow_types(cfg)) as writer:
        writer.write(frame)
    return out


def _arrow_types(cfg: Config) -> dict[str, pa.DataType]:
    """The Arrow type of every feature column (a group whose column is all null still writes its type)."""
    kinds = {"float": pa.float32(), "int": pa.int64(), "string": pa.string()}
    try:
        families = all_families(cfg)
    except UnbuiltError:  # a frame written without a feature build (tests, tools): its own types stand
        return {}
    return {f.name: kinds[f.kind] for fam in families for f in fam.features}


class _Writer:
    """Parquet row groups appended to a temporary file, renamed to ``out`` on success (all or nothing)."""

    def __init__(self, cfg: Config, out: Path, types: dict[str, pa.DataType]) -> None:
        self.cfg, self.out, self.types = cfg, out, types
        self.tmp = out.with_suffix(".parquet.tmp")
        self.writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            fields = [
                pa.field(f.name, self.types.get(f.name, pa.string())) if pa.types.is_null(f.type) else f
                for f in table.schema
            ]
            schema = pa.schema(fields).with_metadata(_metadata(self.cfg, table.schema))
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.writer is not None:
            self.writer.close()
        if kind is None and self.writer is not None:
            self.tmp.replace(self.out)
        else:
            self.tmp.unlink(missing_ok=True)


def build_training_set(
    cfg: Config,
    *,
    as_of: datetime | None = None,
    out: Path | None = None,
    progress: Progress = SILENT,
    now: datetime | None = None,
    row_checks: bool = True,
    group_rows: int = GROUP_ROWS,
) -> TrainingSet:
    """Decision rows with labels and point-in-time features; written to ``out`` (Parquet) if given, else kept.

    The rows are joined and written ``group_rows`` rows at a time (in campaign order), so
    the whole set is never held in memory when it is written."""
    bar = progress
    manifest = read_manifest(cfg)
    check_business(cfg, manifest, "build the training set")
    cfg = as_built(cfg)
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
    rows = decisions.rows
    if rows.empty:
        raise FeatureStoreError(
            f"no decision's attribution window closed before {as_of:%Y-%m-%dT%H:%M:%S} ({decisions.open_windows:,} "
            "still open): there is nothing to learn from yet; choose a later --as-of"
        )
    groups = row_groups(rows["campaign_id"].to_numpy(), group_rows)
    bar.start("point-in-time join", len(groups))
    store = open_store(cfg)
    views = {f.view: f for f in all_families(cfg)}
    lay = layout(cfg)
    event_emb, content = read_view(lay, views["event_type_cf"]), read_view(lay, views["event_type_content"])
    kept: list[pd.DataFrame] = []
    sums: list[pd.DataFrame] = []
    writer = _Writer(cfg, out, _arrow_types(cfg)) if out is not None else None
    try:
        for positions in groups:
            part = rows.iloc[positions]
            frame = _join(store, cfg, part, event_emb, content)
            sums.append(_label_sums(frame))
            if writer is not None:
                writer.write(frame)
            else:
                kept.append(frame)
            del frame
            bar.advance("point-in-time join", 1)
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc))
        raise
    if writer is not None:
        writer.__exit__(None)
    seconds["join"] = time.perf_counter() - t
    whole = pd.concat(kept, ignore_index=True) if kept else None
    return TrainingSet(as_of, decisions.open_windows, decisions.campaigns, _rates(sums), seconds, out, len(rows), whole)


def _join(store: Any, cfg: Config, rows: pd.DataFrame, event_emb: pd.DataFrame, content: pd.DataFrame) -> pd.DataFrame:
    """Decision rows with their point-in-time features and match scores."""
    entity_df = pd.DataFrame(
        {
            ROW_ID: rows[ROW_ID].to_numpy(),
            ENTITY: rows[ENTITY].to_numpy(),
            EVENT_TYPE_KEY: rows["event_type"].astype(object).to_numpy(),
            TIMESTAMP: pd.to_datetime(rows["decision_at"]).dt.tz_localize("UTC"),
        }
    )
    feats = historical_features(store, entity_df, all_families(cfg))
    feature_cols = [c for c in feats.columns if c not in (ENTITY, EVENT_TYPE_KEY, TIMESTAMP, ROW_ID)]
    frame = rows.merge(feats[[ROW_ID, *feature_cols]], on=ROW_ID, how="left", validate="one_to_one")
    del feats
    return add_match_scores(frame, cfg, event_emb, content)
