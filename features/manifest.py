"""The build manifest, ``<home>/feast/build.json``: what the last committed build holds.

Written after the offline store is committed; read by ``materialize`` (the
as-of to load), the training-set builder and the online reader.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.config import Config
from features.layout import FeatureStoreError, layout
from platform_db.db import safe_url


def store_description(cfg: Config) -> str:
    lay = layout(cfg)
    if lay.production:
        where = f"{safe_url(lay.database)} (schemas {lay.offline_schema}, {lay.registry_schema})"
        return f"production: PostgreSQL {where} + Redis {lay.redis}"
    return f"embedded: DuckDB over Parquet + SQLite online under {lay.root}"


def business_window(cfg: Config) -> dict[str, int]:
    """The business parameters a feature build depends on (windows and dormancy), as recorded in its manifest."""
    return {"attribution_days": cfg.business.attribution_days, "dormancy_days": cfg.business.dormancy_days}


def business_changes(cfg: Config, built: dict[str, Any] | None) -> tuple[dict[str, tuple[Any, int]], str]:
    """What differs between the business window a build recorded and ``cfg``'s: ``{key: (built, now)}`` and
    the flags that would rebuild with ``cfg``'s (nothing when the build recorded none)."""
    now = business_window(cfg)
    differ = {k: (built.get(k), now[k]) for k in now if built is not None and built.get(k) != now[k]}
    return differ, " ".join(f"--{k.replace('_', '-')} {new}" for k, (_, new) in differ.items())


def check_business(cfg: Config, manifest: dict[str, Any], doing: str) -> None:
    """Refuse to ``doing`` with business parameters other than the feature build's (which they would contradict)."""
    differ, flags = business_changes(cfg, manifest.get("business"))
    if differ:
        said = ", ".join(f"{k} {new} (the build used {old})" for k, (old, new) in differ.items())
        raise FeatureStoreError(
            f"cannot {doing} with {said}: rebuild the features first (`rekindle features build {flags}`), "
            "or drop the override"
        )


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


def vocabulary(cfg: Config) -> dict[str, list[str]]:
    """The platform's own names the features of ``cfg`` are built for (games, event types)."""
    return {"games": list(cfg.features.games or []), "event_types": list(cfg.features.event_types or [])}


def with_vocabulary(cfg: Config, words: dict[str, Any]) -> Config:
    """``cfg`` whose ``features.games`` and ``features.event_types`` are ``words``' (a build's)."""
    update = {k: list(words[k]) for k in ("games", "event_types") if words.get(k) is not None}
    return cfg.model_copy(update={"features": cfg.features.model_copy(update=update)})


def as_built(cfg: Config) -> Config:
    """``cfg`` as the last feature build saw the platform: its games and event types (the feature names
    depend on them). Every step after a build reads the features through this."""
    manifest = read_manifest(cfg)
    if "vocabulary" not in manifest:
        raise FeatureStoreError(
            f"the feature build in {layout(cfg).root} predates recording the platform's games and event types: "
            "run `rekindle features build` again"
        )
    return with_vocabulary(cfg, manifest["vocabulary"])
