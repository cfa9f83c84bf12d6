"""`rekindle features materialize`: the latest features of the dormant candidates into the online store.

Feast's ``materialize`` writes every entity of a time window and cannot filter
them; serving only ever asks about candidates (dormant, active players), so we
read their as-of rows from the offline store and write just those with
``write_to_online_store`` in chunks. The online store is emptied first, so a
player who is no longer a candidate cannot be served stale features.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from features.families import ENTITY, TIMESTAMP, all_families
from features.layout import FeatureStoreError, layout
from features.manifest import as_built, read_manifest, store_description
from features.offline import read_view
from features.online_sqlite import write_view
from features.store import open_store

ACTIVE = "active"


def _marker(cfg: Config) -> Any:
    return layout(cfg).root / "online.json"


def clear_marker(cfg: Config) -> None:
    _marker(cfg).unlink(missing_ok=True)


def write_marker(cfg: Config, as_of: datetime, candidates: int) -> None:
    """Record what the online store holds (written only after a complete materialisation)."""
    data = {"as_of": as_of.isoformat(), "candidates": candidates, "store": store_description(cfg)}
    _marker(cfg).write_text(json.dumps(data, indent=2))


def read_marker(cfg: Config) -> dict[str, Any] | None:
    path = _marker(cfg)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    data["as_of"] = datetime.fromisoformat(data["as_of"])
    return data


@dataclass
class MaterializeSummary:
    as_of: Any
    candidates: int
    rows: dict[str, int]
    seconds: float
    store: str

    @property
    def players_per_second(self) -> float:
        return self.candidates / self.seconds if self.seconds else float("nan")


def numpy_backed(frame: pd.DataFrame) -> pd.DataFrame:
    """Feast converts only the first Arrow batch of a frame: arrow-backed, chunked columns lose rows
    without an error (docs/notes/feast-0.67.md section 7). Plain numpy columns are one batch."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, (pd.ArrowDtype, pd.StringDtype)):
            out[col] = out[col].astype(object)
    return out


def candidates_at(segment: pd.DataFrame, profile: pd.DataFrame) -> np.ndarray:
    """Players dormant at the as-of whose current status is active."""
    status = profile.sort_values(TIMESTAMP).drop_duplicates(ENTITY, keep="last").set_index(ENTITY)["status"]
    dormant = segment.loc[segment["is_dormant"] == 1, ENTITY].to_numpy()
    return np.sort(dormant[status.reindex(dormant).to_numpy() == ACTIVE])


def reset_online(store: Any, views: list[Any]) -> None:
    """Drop and recreate the online tables (SQLite) or keys (Redis) of ``views``."""
    provider = store._get_provider()  # the provider API Feast's own apply/teardown use
    entities = store.list_entities()
    provider.teardown_infra(store.project, views, entities)
    provider.update_infra(store.project, [], views, [], entities, partial=False)


def materialize(
    cfg: Config, *, chunk_rows: int = 20_000, bulk: bool = True, progress: Progress = SILENT
) -> MaterializeSummary:
    """Write the as-of rows of every candidate (and every event type) to the online store.

    ``bulk`` (embedded store only): insert Feast's rows with :mod:`features.online_sqlite` instead of
    Feast's row-by-row upserts (same bytes, about twice as fast).
    """
    bar = progress
    manifest = read_manifest(cfg)
    cfg = as_built(cfg)
    as_of = manifest["as_of"]
    lay = layout(cfg)
    store = open_store(cfg)
    families = {f.view: f for f in all_families(cfg)}
    t0 = time.perf_counter()
    profile = read_view(lay, families["player_profile"])
    segment = read_view(lay, families["player_segment"], at=as_of)
    if segment.empty:
        raise FeatureStoreError(
            f"the offline store holds no snapshot at the build's as-of {as_of}: rebuild the features"
        )
    ids = candidates_at(segment, profile)
    frames: dict[str, pd.DataFrame] = {}  # every view read before the online store is touched
    for name, fam in families.items():
        if name == "player_profile":
            frame = profile.sort_values(TIMESTAMP, kind="stable").drop_duplicates(ENTITY, keep="last")
        else:
            frame = read_view(lay, fam, at=as_of)
        if fam.key == ENTITY:
            frame = frame[frame[ENTITY].isin(ids)]
        frames[name] = numpy_backed(frame.reset_index(drop=True))
    total = sum(len(f) for f in frames.values())
    bar.start("online store", total)
    rows = dict.fromkeys(families, 0)
    clear_marker(cfg)  # until the write completes, readers are told the online store is not materialised
    try:
        reset_online(store, [store.get_feature_view(name) for name in families])
        for name, frame in frames.items():
            if bulk and not lay.production:
                rows[name] = write_view(
                    str(lay.root / "online.db"),
                    lay.project,
                    families[name],
                    frame,
                    chunk_rows=chunk_rows,
                    progress=bar,
                )
                continue
            for start in range(0, len(frame), chunk_rows):
                part = frame.iloc[start : start + chunk_rows]
                store.write_to_online_store(name, part)
                rows[name] += len(part)
                bar.advance("online store", len(part))
    except Exception as exc:
        import redis

        if isinstance(exc, redis.RedisError | sqlite3.Error):
            raise FeatureStoreError(
                f"writing the online store failed ({exc}); it is incomplete: run `rekindle features materialize` again"
            ) from exc
        raise
    write_marker(cfg, as_of, len(ids))
    seconds = time.perf_counter() - t0
    return MaterializeSummary(as_of, len(ids), rows, seconds, store_description(cfg))
