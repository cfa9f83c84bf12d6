"""The service on the production stores, with Redis and PostgreSQL killed under it mid-run.

A small platform is built in production mode on throw-away servers (:mod:`tests.throwaway`: a PostgreSQL
cluster initdb'd into a temporary folder holds the feature registry, the offline store and the system
store with the decision log; a redis-server holds the online store), then `rekindle serve` answers a
client that keeps calling with request ids while first Redis, then PostgreSQL is killed and restarted:

- Redis down: every call is still answered, with the player's segment-level decision marked fallback
  and logged, and /ready names the online store; once Redis is back the model decides again.
- PostgreSQL down: no decision can be logged, so none is announced: 503 naming the decision log, and
  /ready says so; once it is back, the client's retries with the same request ids are answered.
- Nothing lost, nothing doubled: every request id answered 200 is in the log once, with the decision id
  the client was given.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from app.cli import main
from tests.test_cli import small_model_configs
from tests.test_serving_api import create_key, server
from tests.throwaway import Postgres, Redis

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    home: Path
    configs: Path
    pg: Postgres
    redis: Redis
    key: str
    candidates: list[int] = field(default_factory=list)


def cli(home: Path, configs: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--home", str(home), "--config", str(configs), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("outages")
    pg, redis = Postgres(root / "pg"), Redis(root / "redis")
    pg.start()
    redis.start()
    try:
        configs = small_model_configs(root)
        raw = yaml.safe_load((configs / "rekindle.yaml").read_text())
        raw["system_db_url"] = pg.url
        raw["features"]["store"].update({"mode": "production", "postgres_url": pg.url, "redis": redis.url})
        raw["serving"].update({"prefetch": False, "overrides_poll_seconds": 1, "model_poll_seconds": 2})
        (configs / "rekindle.yaml").write_text(yaml.safe_dump(raw))
        home = root / "home"
        for step in (
            ("simulate", "--players", "4000", "--days", "100"),
            ("segment",),
            ("features", "build", "--skip-row-checks"),
            ("features", "materialize"),
            ("features", "training-set", "--skip-row-checks"),
            ("train",),
        ):
            cli(home, configs, *step)
        with sa.create_engine(pg.url).connect() as conn:
            ids = pd.read_sql("SELECT player_id FROM rekindle.segments WHERE is_candidate", conn)["player_id"]
        yield Stack(home, configs, pg, redis, create_key(home, configs, "caller"), ids.astype(int).tolist())
    finally:
        redis.stop()
        pg.stop()


class Client:
    """Calls one candidate after another, each with a request id of its own, and keeps every answer."""

    def __init__(self, url: str, key: str, players: list[int]) -> None:
        self.url, self.players, self.n = url, iter(players), 0
        self.headers = {"Authorization": f"Bearer {key}"}
        self.answers: dict[str, list[httpx.Response]] = {}
        self.player_of: dict[str, int] = {}

    def call(self, rid: str | None = None) -> httpx.Response:
        if rid is None:
            self.n += 1
            rid = f"outage-{self.n}"
            self.player_of[rid] = next(self.players)
        r = httpx.post(
            self.url + "/v1/recommendations",
            json={"player_id": self.player_of[rid], "request_id": rid},
            headers=self.headers,
            timeout=60,
        )
        self.answers.setdefault(rid, []).append(r)
        return r

    def ready(self) -> dict:
        return httpx.get(self.url + "/ready", timeout=30).json()


def until(ok, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.5)


def test_redis_and_postgresql_killed_mid_run_degrade_and_lose_nothing(stack: Stack, tmp_path: Path) -> None:
    with server(stack.home, stack.configs, tmp_path / "serve.log", workers=1) as url:
        c = Client(url, stack.key, stack.candidates)
        before = [c.call() for _ in range(5)]
        assert all(r.status_code == 200 and not r.json()["fallback"] for r in before), [r.text for r in before]

        # ---- Redis killed: answered from the segment's decision, logged, marked; /ready says why
        stack.redis.stop()
        down = [c.call() for _ in range(5)]
        assert all(r.status_code == 200 for r in down), str([(r.status_code, r.elapsed.total_seconds()) for r in down])
        # no call waits out a Redis client's retries (5-10 s each with redis-py's defaults): the first finds it
        # down at once, the rest do not try until the polling thread reads it again
        assert max(r.elapsed.total_seconds() for r in down) < 3, [r.elapsed.total_seconds() for r in down]
        assert all(r.json()["fallback"] and "segment-level decision" in r.json()["reason"] for r in down)
        assert "online_store" in c.ready()["degraded"]
        metrics = httpx.get(url + "/metrics", timeout=30).text
        assert "rekindle_fallbacks_total" in metrics
        stack.redis.start()
        until(lambda: not c.call().json()["fallback"], "the model decides again once Redis is back")
        assert "online_store" not in c.ready()["degraded"]

        # ---- PostgreSQL killed: nothing can be logged, so nothing is announced
        stack.pg.stop()
        refused = [c.call() for _ in range(4)]
        assert all(r.status_code == 503 and "decision log" in r.json()["detail"] for r in refused), [
            r.text for r in refused
        ]
        assert "decision_log" in c.ready()["degraded"]
        stack.pg.start()
        failed = [rid for rid, rs in c.answers.items() if rs[-1].status_code != 200]
        until(lambda: c.call(failed[0]).status_code == 200, "answers again once PostgreSQL is back")
        retried = [c.call(rid) for rid in failed[1:]]  # the client's retries, same request ids
        assert all(r.status_code == 200 for r in retried), [r.text for r in retried]
        after = [c.call() for _ in range(3)]
        assert all(r.status_code == 200 for r in after)
        until(lambda: "decision_log" not in c.ready()["degraded"], "/ready clears the decision log")

    # ---- nothing lost, nothing doubled
    with sa.create_engine(stack.pg.url).connect() as conn:
        log = pd.read_sql("SELECT request_id, decision_id, player_id FROM rekindle.decisions", conn)
    log = log[log["request_id"].str.startswith("outage-", na=False)]
    answered = {rid: rs[-1].json() for rid, rs in c.answers.items() if rs[-1].status_code == 200}
    assert set(answered) == set(c.answers)  # every request was answered in the end
    assert len(log) == log["request_id"].nunique() == len(answered)  # each once in the log
    by_rid = log.set_index("request_id")
    for rid, d in answered.items():
        assert by_rid.loc[rid, "decision_id"] == d["decision_id"] and by_rid.loc[rid, "player_id"] == d["player_id"]
    # a retry answered after the outage returns the decision it logged, and the first answer of a request
    # answered 200 before is the one every later retry sees
    for rs in c.answers.values():
        ok = [r.json()["decision_id"] for r in rs if r.status_code == 200]
        assert len(set(ok)) == 1
