"""The Feast repository: entities, sources, feature views per family, versioned feature services.

The objects are built from the typed config and the store layout (paths and
tables differ between the embedded default and production), then applied to
the registry by :func:`features.store.open_store`. Names:

- entities ``player`` (key ``player_id``) and ``event_type`` (key ``event_type``);
- views ``player_<family>`` (activity, money, promotions, profile, segment, cf)
  and ``event_type_content``, ``event_type_cf``;
- services ``rekindle_player_v<N>`` (every player view) and
  ``rekindle_event_type_v<N>`` (both event-type views), versioned by name:
  change a family's features and bump :data:`SERVICE_VERSION`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.config import Config
from features.families import ENTITY, EVENT_TYPE_KEY, TIMESTAMP, Family, all_families
from features.layout import Layout

SERVICE_VERSION = 1
SNAPSHOT_TTL = timedelta(days=2)  # daily snapshots: the latest is never more than a day old
STATIC_VIEWS = {"player_profile", "event_type_content"}  # values that hold until replaced: never expire


def player_service_name(version: int = SERVICE_VERSION) -> str:
    return f"rekindle_player_v{version}"


def event_type_service_name(version: int = SERVICE_VERSION) -> str:
    return f"rekindle_event_type_v{version}"


def offline_table(family: Family) -> str:
    """The view's Parquet directory (embedded) or table (production)."""
    return family.view


def _dtype(kind: str) -> Any:
    from feast.types import Float32, Int64, String

    return {"float": Float32, "int": Int64, "string": String}[kind]


def _source(family: Family, lay: Layout) -> Any:
    name = f"{family.view}_source"
    if lay.production:
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

        return PostgreSQLSource(
            name=name, query=f"SELECT * FROM {lay.offline_schema}.{offline_table(family)}", timestamp_field=TIMESTAMP
        )
    from feast import FileSource
    from feast.data_format import ParquetFormat

    return FileSource(
        name=name, path=lay.parquet_glob(offline_table(family)), file_format=ParquetFormat(), timestamp_field=TIMESTAMP
    )


def definitions(cfg: Config, lay: Layout) -> list[Any]:
    """Every Feast object of the repository, ready for ``FeatureStore.apply``."""
    from feast import Entity, FeatureService, FeatureView, Field, ValueType
    from feast.types import Int64, String

    player = Entity(name="player", join_keys=[ENTITY], value_type=ValueType.INT64, description="a platform player")
    event_type = Entity(
        name="event_type", join_keys=[EVENT_TYPE_KEY], value_type=ValueType.STRING, description="a catalog event type"
    )
    views: list[Any] = []
    for fam in all_families(cfg):
        is_player = fam.key == ENTITY
        key_field = Field(name=fam.key, dtype=Int64 if is_player else String)
        views.append(
            FeatureView(
                name=fam.view,
                entities=[player if is_player else event_type],
                ttl=timedelta(0) if fam.view in STATIC_VIEWS else SNAPSHOT_TTL,
                schema=[
                    key_field,
                    *[Field(name=f.name, dtype=_dtype(f.kind), description=f.doc) for f in fam.features],
                ],
                source=_source(fam, lay),
                online=True,
                description=fam.doc,
                tags={"family": fam.name},
            )
        )
    player_views = [v for v in views if v.entities == ["player"]]
    event_views = [v for v in views if v.entities == ["event_type"]]
    services = [
        FeatureService(
            name=player_service_name(),
            features=player_views,
            description="every player feature the response and ROI models read",
            tags={"version": str(SERVICE_VERSION)},
        ),
        FeatureService(
            name=event_type_service_name(),
            features=event_views,
            description="content and collaborative features of each event type (the arm side)",
            tags={"version": str(SERVICE_VERSION)},
        ),
    ]
    return [player, event_type, *views, *services]
