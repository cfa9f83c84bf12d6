"""Open the Feast feature store of a config: write its YAML, apply the repository, hand back the store."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import sqlalchemy as sa

from core.config import Config
from features.layout import FeatureStoreError, Layout, layout, write_yaml
from features.repo import definitions
from platform_db.db import safe_url


def ensure_schemas(lay: Layout) -> None:
    """Create the PostgreSQL schemas of the registry and the offline tables (production)."""
    if not lay.production:
        return
    try:
        engine = sa.create_engine(lay.database)
        with engine.begin() as conn:
            for schema in (lay.registry_schema, lay.offline_schema):
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        engine.dispose()
    except sa.exc.OperationalError as exc:
        raise FeatureStoreError(
            f"cannot reach the feature store database {safe_url(lay.database)}: {exc.orig}"
        ) from exc


def check_redis(lay: Layout) -> None:
    """Fail now, with the address, if the Redis online store does not answer (production)."""
    if not lay.production:
        return
    import redis

    host_port, *params = lay.redis.split(",")
    host, _, port = host_port.partition(":")
    kwargs: dict[str, Any] = dict(p.split("=", 1) for p in params if "=" in p)
    try:
        redis.Redis(host=host, port=int(port or 6379), socket_connect_timeout=3, **kwargs).ping()
    except (redis.RedisError, ValueError) as exc:
        raise FeatureStoreError(f"the Redis online store at {lay.redis!r} does not answer: {exc}") from exc


def quiet_feast() -> None:
    """Feast and ibis are chatty (deprecation warnings on every retrieval, INFO logs); keep our output readable.

    Feast's modules call ``warnings.simplefilter("once", DeprecationWarning)`` when imported, which goes in
    front of earlier filters: import them first, then filter."""
    import feast.feature_store
    import feast.feature_view  # noqa: F401

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(ibis|feast)(\..*)?")
    warnings.filterwarnings("ignore", message=r".*fetch_arrow_table.*")
    for name in ("feast", "ibis"):
        logging.getLogger(name).setLevel(logging.ERROR)


JOIN_MEMORY = "2GB"  # 1M players: 3GB peaked at 8.3 GiB RSS for the whole training-set build, over its 8 GiB


def bound_duckdb(cfg: Config) -> None:
    """Feast's embedded offline store joins in ibis's DuckDB: cap its memory (it spills to a folder under
    the home beyond :data:`JOIN_MEMORY`), so a million players' point-in-time join does not take the
    machine."""
    import ibis

    spill = cfg.path("cache", "duckdb")
    spill.mkdir(parents=True, exist_ok=True)
    con = ibis.get_backend()
    con.raw_sql(f"SET memory_limit='{JOIN_MEMORY}'")
    current = con.raw_sql("SELECT current_setting('temp_directory')").fetchone()
    if current is None or current[0] != str(spill):
        try:  # DuckDB refuses to move its spill folder once it has spilled (a long process, e.g. the loop)
            con.raw_sql(f"SET temp_directory='{spill}'")
        except Exception as exc:  # the folder it already uses stays: still bounded, still under a home
            if "temporary directory" not in str(exc):
                raise
    con.raw_sql("SET preserve_insertion_order=false")  # the join restores its order from row_id


def open_store(cfg: Config, *, apply: bool = True) -> Any:
    """The config's ``feast.FeatureStore``, its repository applied (idempotent; ~0.1 s)."""
    quiet_feast()
    lay = layout(cfg)
    if not lay.production:
        bound_duckdb(cfg)
    ensure_schemas(lay)
    check_redis(lay)
    path = write_yaml(lay)
    from feast import FeatureStore

    store = FeatureStore(fs_yaml_file=path, repo_path=str(lay.root))
    if apply:
        store.apply(definitions(cfg, lay))
    return store
