"""Shared fixtures: throw-away platform databases on SQLite and on the real
PostgreSQL at 127.0.0.1:5432 (one database per test session, dropped after)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("REKINDLE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _pg_up() -> str | None:
    """None if PostgreSQL answers, else why not (after one attempt to start it)."""

    def ping() -> str | None:
        try:
            with sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(sa.text("SELECT 1"))
            return None
        except Exception as exc:
            return str(exc).splitlines()[0]

    why = ping()
    if why is None:
        return None
    try:  # the machine's own start command (see the environment notes)
        versions = os.listdir("/etc/postgresql")
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return ping()


@pytest.fixture(scope="session")
def pg_server() -> str:
    why = _pg_up()
    if why is not None:
        msg = f"PostgreSQL at {PG_ADMIN_URL} is DOWN and could not be started: {why}"
        print(f"\n!!! SKIPPING POSTGRESQL TESTS: {msg}\n")
        pytest.skip(msg)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_database_factory(pg_server: str) -> Iterator:
    """Creates throw-away databases; drops them all at the end of the session."""
    created: list[str] = []
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")

    def make() -> str:
        name = f"rekindle_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)

    yield make
    with admin.connect() as c:
        for name in created:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    factory = request.getfixturevalue("pg_database_factory")
    return factory()


SIM_GAMES = ["slots", "table", "sports", "poker", "casual"]


def as_built_config(home: Path, **kw):
    """The default configuration as a feature build of a simulated platform leaves it: the simulator's games
    and event types are the platform's (what `features build` finds in its history)."""
    from core.config import load_config

    cfg = load_config(CONFIG_DIR, home=home, **kw)
    types = [e.name for e in cfg.simulator.catalog.event_types]
    return cfg.model_copy(
        update={"features": cfg.features.model_copy(update={"games": SIM_GAMES, "event_types": types})}
    )


@pytest.fixture()
def config(tmp_path: Path):
    return as_built_config(tmp_path / "home")


REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
    "--save", "", "--appendonly", "no",
]  # fmt: skip


def _redis_up() -> str | None:
    """None if Redis answers, else why not (after one attempt to start it)."""
    import redis

    def ping() -> str | None:
        try:
            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2).ping()
            return None
        except redis.RedisError as exc:
            return str(exc)

    why = ping()
    if why is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(REDIS_START, check=False, capture_output=True, timeout=30)
    return ping()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A Redis database number of its own for this session (flushed before and after), as a Feast connection string."""
    import redis

    why = _redis_up()
    if why is not None:
        msg = f"Redis at {REDIS_HOST}:{REDIS_PORT} is DOWN and could not be started: {why}"
        print(f"\n!!! SKIPPING REDIS TESTS: {msg}\n")
        pytest.skip(msg)
    db = 11
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    yield f"{REDIS_HOST}:{REDIS_PORT},db={db}"
    client.flushdb()


PG_FIXTURES = {"pg_server", "pg_database_factory"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs PostgreSQL (through a fixture, or the postgresql case of ``empty_db_url``)
    ``postgres``, so ``-m "not postgres"`` leaves exactly those out."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("empty_db_url") == "postgresql"
        if names & PG_FIXTURES or on_pg:
            item.add_marker(pytest.mark.postgres)


# ---------------------------------------------------------------- browser --
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:  # pytest-playwright's launch options
    from tests.browser import chromium

    return {**browser_type_launch_args, "executable_path": chromium(), "args": ["--no-sandbox"]}
