"""The build manifest, ``<home>/feast/build.json``: what the last committed build holds.

Written after the offline store is committed; read by ``materialize`` (the
as-of to load), the training-set builder and the online reader.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from features.layout import FeatureStoreError, layout
from rekindle.config import Config
from rekindle.platform.db import safe_url


def store_description(cfg: Config) -> str:
    lay = layout(cfg)
    if lay.production:
        assert lay.postgres_url is not None
        where = f"{safe_url(lay.postgres_url)} (schemas {lay.offline_schema}, {lay.registry_schema})"
        return f"production: PostgreSQL {where} + Redis {lay.redis}"
    return f"embedded: DuckDB over Parquet + SQLite online under {lay.root}"


def write_manifest(cfg: Config, data: dict[str, Any]) -> None:
    lay = layout(cfg)
    tmp = lay.manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(lay.manifest_path)


def read_manifest(cfg: Config) -> dict[str, Any]:
    lay = layout(cfg)
    if not lay.manifest_path.is_file():
        raise FeatureStoreError(f"no feature build in {lay.root}: run `rekindle features build` first")
    data: dict[str, Any] = json.loads(lay.manifest_path.read_text())
    data["as_of"] = datetime.fromisoformat(data["as_of"])
    return data
