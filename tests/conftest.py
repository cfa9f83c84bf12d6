"""Shared fixtures: throw-away platform databases on SQLite and on the real
PostgreSQL at 127.0.0.1:5432 (one database per test session, dropped after)."""

from __future__ import annotations

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


@pytest.fixture()
def config(tmp_path: Path):
    from rekindle.config import load_config

    return load_config(CONFIG_DIR, home=tmp_path / "home")
