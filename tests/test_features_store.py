"""The Feast plumbing on synthetic snapshots: generated YAML, offline writers (all or nothing,
--since), Feast's point-in-time join and the online store, embedded and production."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import as_built_config

from core.config import Config
from features.families import ENTITY, TIMESTAMP, Family, all_families
from features.join import ROW_ID, historical_features
from features.layout import FeatureStoreError, layout, repo_config_dict, write_yaml
from features.materialize import numpy_backed, reset_online
from features.offline import VIEW_MODES, read_view, writer
from features.store import open_store

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
AS_OF = datetime(2026, 10, 5, 10)
N_PLAYERS, N_DAYS = 40, 6


def store_config(home: Path, mode: str = "embedded", **store: object) -> Config:
    over = {"features": {"store": {"mode": mode, **store}}}
    return as_built_config(home, overrides=over)


def synthetic(family: Family, *, seed: int = 0, days: int = N_DAYS, last: datetime = AS_OF) -> pd.DataFrame:
    """Snapshots whose every float is ``player + day / 100`` (so a joined value names its row)."""
    rng = np.random.default_rng(seed)
    if family.key == ENTITY:
        keys = np.repeat(np.arange(1, N_PLAYERS + 1), days)
    else:
        keys = np.repeat(np.array(["deposit_bonus", "cashback"], dtype=object), days)
    back = np.tile(np.arange(days), len(keys) // days)
    frame = pd.DataFrame({family.key: keys, TIMESTAMP: pd.Timestamp(last) - pd.to_timedelta(back, unit="D")})
    frame[TIMESTAMP] = frame[TIMESTAMP].astype("datetime64[us]")
    code = (keys if family.key == ENTITY else np.arange(len(keys)) // days + 1).astype(float) + back / 100
    for f in family.features:
        if f.kind == "float":
            frame[f.name] = code.astype(np.float32)
        elif f.kind == "int":
            frame[f.name] = back.astype(np.int64)
        else:
            frame[f.name] = rng.choice(["a", "b"], len(frame)).astype(object)
    return frame


def write_all(cfg: Config, since: datetime | None = None, **kw: object) -> None:
    lay = layout(cfg)
    out = writer(lay, all_families(cfg), VIEW_MODES, since)
    for fam in all_families(cfg):
        out.write(fam, synthetic(fam, **kw))  # type: ignore[arg-type]
    out.commit()


# ------------------------------------------------------------------- yaml --
def test_embedded_yaml_keeps_everything_under_the_home(tmp_path: Path) -> None:
    cfg = store_config(tmp_path / "home")
    data = yaml.safe_load(write_yaml(layout(cfg)).read_text())
    assert data["offline_store"] == {"type": "duckdb"}  # never the `file` store: it drops entity rows
    assert data["online_store"]["type"] == "sqlite"
    assert data["registry"]["registry_type"] == "file"
    for path in (data["online_store"]["path"], data["registry"]["path"]):
        assert Path(path).is_absolute() and Path(path).is_relative_to(tmp_path / "home")


def test_production_yaml_points_at_postgres_and_redis(tmp_path: Path) -> None:
    url = "postgresql://feast:pw@db.example:6543/warehouse"
    cfg = store_config(tmp_path, "production", postgres_url=url, redis="cache:6380,db=2")
    data = repo_config_dict(layout(cfg))
    assert data["registry"]["registry_type"] == "sql"
    assert data["registry"]["path"].startswith("postgresql+psycopg://feast:pw@db.example:6543/warehouse?")
    assert "search_path%3Dfeast" in data["registry"]["path"] or "search_path=feast" in data["registry"]["path"]
    off = data["offline_store"]
    assert (off["type"], off["host"], off["port"], off["database"]) == ("postgres", "db.example", 6543, "warehouse")
    assert (off["user"], off["password"], off["db_schema"], off["sslmode"]) == ("feast", "pw", "features", "disable")
    assert data["online_store"] == {"type": "redis", "connection_string": "cache:6380,db=2"}


def test_production_needs_postgres(tmp_path: Path) -> None:
    cfg = store_config(tmp_path, "production", postgres_url=f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(FeatureStoreError, match="not PostgreSQL"):
        layout(cfg)


def test_store_mode_typo_is_refused(tmp_path: Path) -> None:
    from core.config import ConfigError

    with pytest.raises(ConfigError, match="mode"):
        store_config(tmp_path, "prodution")


# ---------------------------------------------------------------- writers --
@pytest.fixture(params=["embedded", "production"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    if request.param == "embedded":
        return store_config(tmp_path / "home", project="storetest")
    url = request.getfixturevalue("pg_database_factory")()
    redis = request.getfixturevalue("redis_server")
    return store_config(tmp_path / "home", "production", postgres_url=url, redis=redis, project="storetest")


def test_abort_leaves_the_previous_store_untouched(any_store: Config) -> None:
    cfg = any_store
    write_all(cfg)
    fam = all_families(cfg)[0]
    before = read_view(layout(cfg), fam)
    out = writer(layout(cfg), all_families(cfg), VIEW_MODES, None)
    out.write(fam, synthetic(fam, days=2).assign(**{fam.columns[0]: np.float32(-1)}))
    out.abort()
    after = read_view(layout(cfg), fam)
    pd.testing.assert_frame_equal(
        before.sort_values([ENTITY, TIMESTAMP], ignore_index=True),
        after.sort_values([ENTITY, TIMESTAMP], ignore_index=True),
    )
    assert len(after) == N_PLAYERS * N_DAYS


def test_since_keeps_older_snapshots_and_replaces_the_rest(any_store: Config) -> None:
    cfg = any_store
    write_all(cfg)
    since = AS_OF - timedelta(days=1)
    write_all(cfg, since=since, days=3, last=AS_OF + timedelta(days=1))  # snapshots at as_of - 1 .. as_of + 1
    lay = layout(cfg)
    fam = next(f for f in all_families(cfg) if f.view == "player_activity")
    got = read_view(lay, fam)
    stamps = sorted(got[TIMESTAMP].unique())
    assert len(stamps) == N_DAYS + 1  # as_of - 5 .. as_of + 1, none twice
    assert got.groupby([ENTITY, TIMESTAMP]).size().max() == 1
    content = next(f for f in all_families(cfg) if f.view == "event_type_content")
    assert len(read_view(lay, content)) == 2 * (N_DAYS + 1)  # a snapshot view too: per type and snapshot
    profile = next(f for f in all_families(cfg) if f.view == "player_profile")
    assert len(read_view(lay, profile)) == N_PLAYERS * 3  # a replace view holds only the new rows


# -------------------------------------------------- Feast join and online --
def test_point_in_time_join_and_online_roundtrip(any_store: Config) -> None:
    cfg = any_store
    write_all(cfg)
    store = open_store(cfg)
    fams = all_families(cfg)
    rng = np.random.default_rng(3)
    n = 300
    # decision times between snapshots; some players unknown; some event types unknown
    offsets = rng.integers(0, N_DAYS * 24, n)
    entity = pd.DataFrame(
        {
            ROW_ID: np.arange(n),
            ENTITY: rng.integers(1, N_PLAYERS + 6, n),
            "event_type": rng.choice(["cashback", "none"], n),
            TIMESTAMP: (pd.Timestamp(AS_OF) - pd.to_timedelta(offsets, unit="h")).tz_localize("UTC"),
        }
    )
    out = historical_features(store, entity, fams)
    assert len(out) == n and out[ROW_ID].tolist() == list(range(n))
    # the value must come from the latest snapshot at or before the decision (player + days back / 100)
    back = np.ceil(offsets / 24).astype(int)
    known = (entity[ENTITY] <= N_PLAYERS) & (back < N_DAYS)  # before the first snapshot: nothing known
    expect = entity[ENTITY] + back / 100
    got = out["days_since_last_session"].to_numpy(dtype=float)
    np.testing.assert_allclose(got[known], expect[known], rtol=1e-6)
    assert np.isnan(got[~known]).all()
    assert out.loc[entity["event_type"] == "none", "ev_cf_0"].isna().all()

    views = [store.get_feature_view(f.view) for f in fams]
    reset_online(store, views)
    for fam in fams:
        latest = read_view(layout(cfg), fam, at=AS_OF)
        store.write_to_online_store(fam.view, numpy_backed(latest))
    resp = store.get_online_features(
        features=store.get_feature_service("rekindle_player_v1"), entity_rows=[{ENTITY: 7}, {ENTITY: 999}]
    ).to_dict()
    assert resp["days_since_last_session"][0] == pytest.approx(7.0)
    assert resp["days_since_last_session"][1] is None
    reset_online(store, views)  # emptied: nothing stale survives
    resp = store.get_online_features(
        features=store.get_feature_service("rekindle_player_v1"), entity_rows=[{ENTITY: 7}]
    ).to_dict()
    assert resp["days_since_last_session"][0] is None


def test_every_feature_is_documented(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "features.md").read_text()
    missing = [
        f"{fam.view}.{f.name}"
        for fam in all_families(store_config(tmp_path))
        for f in fam.features
        if f"`{f.name}`" not in docs
    ]
    assert not missing, f"docs/features.md does not document {missing}"


def test_bulk_sqlite_writer_writes_the_rows_feast_writes(tmp_path: Path) -> None:
    """features.online_sqlite must stay byte-for-byte what Feast's SQLite writer stores (NaN, ints, strings too)."""
    import sqlite3

    from features.online_sqlite import write_view

    tables = {}
    for how in ("feast", "bulk"):
        cfg = store_config(tmp_path / how, project="bulktest")
        write_all(cfg)
        store = open_store(cfg)
        fams = all_families(cfg)
        reset_online(store, [store.get_feature_view(f.view) for f in fams])
        for fam in fams:
            frame = read_view(layout(cfg), fam, at=AS_OF)
            frame.loc[frame.index[::3], fam.columns[0]] = np.nan if fam.features[0].kind == "float" else None
            if how == "feast":
                store.write_to_online_store(fam.view, numpy_backed(frame))
            else:
                write_view(str(layout(cfg).root / "online.db"), "bulktest", fam, frame, chunk_rows=7)
        con = sqlite3.connect(layout(cfg).root / "online.db")
        tables[how] = {
            fam.view: sorted(
                con.execute(
                    f'SELECT entity_key, feature_name, value, value_text, event_ts FROM "bulktest_{fam.view}"'
                ).fetchall()
            )
            for fam in fams
        }
        con.close()
    for view, rows in tables["feast"].items():
        assert len(rows) > 0
        assert rows == tables["bulk"][view], view
