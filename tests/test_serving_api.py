"""The recommendation API through a real server: `rekindle serve` started as its own process (two
workers) on a small simulated platform, called over HTTP like an event system would, stopped by its pid."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from playwright.sync_api import Page, expect

from app.cli import main
from tests.browser import in_browser, shot, sign_in
from tests.test_cli import run_main_job, small_model_configs
from tests.throwaway import free_port, started

pytestmark = pytest.mark.slow
REKINDLE = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "rekindle")


@dataclass
class Served:
    home: Path
    configs: Path
    url: str
    caller: str
    admin: str

    def post(self, path: str, body: object, key: str | None = "caller", **kw: object) -> httpx.Response:
        headers = (
            {}
            if key is None
            else {"Authorization": f"Bearer {getattr(self, key) if key in ('caller', 'admin') else key}"}
        )
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def get(self, path: str, key: str | None = "caller") -> httpx.Response:
        headers = {} if key is None else {"X-API-Key": getattr(self, key)}
        return httpx.get(self.url + path, headers=headers, timeout=30)

    def put(self, path: str, body: object, key: str = "admin") -> httpx.Response:
        return httpx.put(self.url + path, json=body, headers={"X-API-Key": getattr(self, key)}, timeout=30)

    def log(self) -> pd.DataFrame:
        engine = sa.create_engine(f"sqlite:///{self.home / 'rekindle.db'}")
        with engine.connect() as conn:
            return pd.read_sql("SELECT * FROM decisions", conn)

    def platform(self, sql: str) -> pd.DataFrame:
        engine = sa.create_engine(f"sqlite:///{self.home / 'platform.db'}")
        with engine.connect() as conn:
            return pd.read_sql(sql, conn)


def create_key(home: Path, configs: Path, role: str) -> str:
    result = CliRunner().invoke(
        main,
        ["--home", str(home), "--config", str(configs), "keys", "create", "--name", f"test-{role}", "--role", role],
    )
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@contextmanager
def server(home: Path, configs: Path, log_path: Path, workers: int) -> Iterator[str]:
    """`rekindle serve` in its own process group, ready (GET /ready 200); yields its URL; stopped by its pid."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [REKINDLE, "--home", str(home), "--config", str(configs), "serve", "--port", str(port),
            "--workers", str(workers)]  # fmt: skip
    with started(args, url + "/ready", log_path):
        yield url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serving")
    configs = small_model_configs(root)
    raw = yaml.safe_load((configs / "rekindle.yaml").read_text())
    raw["serving"].update({"model_poll_seconds": 2, "overrides_poll_seconds": 1})
    (configs / "rekindle.yaml").write_text(yaml.safe_dump(raw))
    home = root / "home"
    run_main_job(home, configs)
    caller, admin = create_key(home, configs, "caller"), create_key(home, configs, "admin")
    with server(home, configs, root / "serve.log", workers=2) as url:
        yield Served(home, configs, url, caller, admin)


def candidates(s: Served, n: int) -> list[int]:
    seg = pd.read_sql(
        "SELECT player_id FROM segments WHERE is_candidate", sa.create_engine(f"sqlite:///{s.home / 'rekindle.db'}")
    )
    return seg["player_id"].head(n).astype(int).tolist()


def test_health_ready_and_metrics_need_no_key(served: Served) -> None:
    assert served.get("/health", key=None).json() == {"status": "ok"}
    ready = served.get("/ready", key=None).json()
    assert ready["ready"] and ready["model_version"] == "rekindle-response/1" and ready["degraded"] == {}
    assert httpx.get(served.url + "/metrics", timeout=10).status_code == 200
    # the marketers' dashboard is mounted on the service: anonymous -> its sign-in page (tests/test_dashboard.py)
    page = httpx.get(served.url + "/dashboard/", timeout=10)
    assert page.status_code == 303 and page.headers["location"].endswith("/dashboard/signin")
    assert "Sign in" in httpx.get(served.url + "/dashboard/signin", timeout=10).text


def test_keys_roles_and_errors(served: Served) -> None:
    pid = candidates(served, 1)[0]
    assert served.post("/v1/recommendations", {"player_id": pid}, key=None).status_code == 401
    bad = served.post("/v1/recommendations", {"player_id": pid}, key="rk_000000000000_nope")
    assert bad.status_code == 401 and "unknown or revoked" in bad.json()["detail"]
    forbidden = served.put("/v1/overrides/exploration", {"value": 0.1}, key="caller")
    assert forbidden.status_code == 403 and "needs 'admin'" in forbidden.json()["detail"]
    assert served.get("/v1/overrides", key="caller").status_code == 403
    assert served.get("/v1/overrides", key="admin").status_code == 200
    missing = served.post("/v1/recommendations", {"player_id": 99_999_999})
    assert missing.status_code == 404 and "99999999" in missing.json()["detail"]
    for body in ({}, {"player_id": "seven"}, {"player_id": -1}, [1, 2], {"player_id": pid, "request_id": ""}):
        assert served.post("/v1/recommendations", body).status_code == 422, body
    too_many = {"requests": [{"player_id": pid}] * 1001}
    assert served.post("/v1/recommendations:batch", too_many).status_code == 422


def test_a_candidate_gets_a_logged_decision_with_everything_the_caller_needs(served: Served) -> None:
    pid = candidates(served, 3)[2]
    r = served.post("/v1/recommendations", {"player_id": pid})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["player_id"] == pid and isinstance(d["reward"], int) and 0 < d["propensity"] <= 1
    assert d["model_version"] == "rekindle-response/1" and d["policy_version"].startswith("policy-")
    assert d["reason"] and set(d["expected"]) >= {"cost", "incremental_net_value", "incremental_reengage", "roi"}
    logged = served.log().set_index("decision_id").loc[d["decision_id"]]
    assert logged["player_id"] == pid and logged["event_type"] == d["event_type"] and logged["reward"] == d["reward"]
    assert logged["propensity"] == pytest.approx(d["propensity"])


def test_offers_carry_their_confidence_reasons_and_why_the_runners_up_lost(served: Served) -> None:
    ids = candidates(served, 60)[10:60]
    asked = {"requests": [{"player_id": p} for p in ids[:25]], "explain": True}
    out = served.post("/v1/recommendations:batch", asked).json()["decisions"]
    offers = [d for d in out if d["offer"]]
    assert offers
    for d in offers:
        assert 0 <= d["confidence"] <= 1
        assert 1 <= len(d["reasons"]) <= 3 and all(r["direction"] in ("raises", "lowers") for r in d["reasons"])
        effects = [abs(r["effect"]) for r in d["reasons"]]
        assert effects == sorted(effects, reverse=True)  # the strongest first
        assert len(d["runners_up"]) == 2
        for r in d["runners_up"]:
            assert r["arm"] != f"{d['event_type']}@{d['reward']}" and 0 <= r["confidence"] <= 1
            assert set(r["expected"]) == {"incremental_reengage", "cost", "incremental_net_value", "roi"}
    assert all(d["reasons"] == [] for d in out if not d["offer"])
    plain = served.post("/v1/recommendations:batch", {"requests": [{"player_id": p} for p in ids[25:]]}).json()
    assert all(d["reasons"] == [] for d in plain["decisions"])  # the batch call explains only when asked
    one = served.post("/v1/recommendations", {"player_id": offers[0]["player_id"]}).json()  # frequency-capped now
    assert not one["offer"] and one["reasons"] == [] and one["confidence"] is None
    fresh = candidates(served, 100)[60:100]
    explained = [served.post("/v1/recommendations", {"player_id": p, "explain": True}).json() for p in fresh[:8]]
    assert any(d["offer"] for d in explained) and all(bool(d["reasons"]) == d["offer"] for d in explained)
    quiet = [served.post("/v1/recommendations", {"player_id": p}).json() for p in fresh[8:16]]
    assert any(d["offer"] for d in quiet) and all(d["reasons"] == [] for d in quiet)  # explained when asked


def test_players_who_are_not_candidates_get_no_offer_and_the_reason(served: Served) -> None:
    excluded = served.platform("SELECT id, status FROM players WHERE status != 'active'")
    assert {"self_excluded", "blocked"} <= set(excluded["status"])
    ids = excluded.groupby("status")["id"].first().astype(int).tolist()
    active = served.platform("SELECT id FROM players WHERE status = 'active'")["id"].astype(int)
    cands = set(candidates(served, 10_000))
    not_candidate = int(next(p for p in active if p not in cands))
    body = {"requests": [{"player_id": p} for p in [*ids, not_candidate]]}
    out = served.post("/v1/recommendations:batch", body).json()["decisions"]
    assert [d["player_id"] for d in out] == [*ids, not_candidate]  # in the order asked
    assert all(d["event_type"] == "none" and d["reward"] == 0 and not d["offer"] for d in out)
    assert [d["reason"].split(":")[0] for d in out[:-1]] == [f"status {s}" for s in sorted(set(excluded["status"]))]
    assert out[-1]["reason"].startswith("not a dormant candidate")


def test_a_retried_request_id_returns_the_same_decision(served: Served) -> None:
    pid = candidates(served, 5)[4]
    first = served.post("/v1/recommendations", {"player_id": pid, "request_id": "crm-42"}).json()
    again = [served.post("/v1/recommendations", {"player_id": pid, "request_id": "crm-42"}).json() for _ in range(3)]
    assert all(a == first for a in again)
    log = served.log()
    assert (log["request_id"] == "crm-42").sum() == 1


def test_a_segment_recommendation(served: Served) -> None:
    seg = served.platform("SELECT 1")  # noqa: F841 - the platform is there
    segments = pd.read_sql(
        "SELECT DISTINCT segment FROM segments WHERE is_candidate",
        sa.create_engine(f"sqlite:///{served.home / 'rekindle.db'}"),
    )
    name = segments["segment"].iloc[0]
    r = served.get(f"/v1/segments/{name}/recommendation")
    assert r.status_code == 200 and r.json()["segment"] == name and r.json()["best_arms"]
    unknown = served.get("/v1/segments/nobody/recommendation")
    assert unknown.status_code == 404 and "unknown segment 'nobody'" in unknown.json()["detail"]


def test_a_running_experiment_assigns_online_decisions_to_variants(served: Served) -> None:
    """An experiment started while the service runs: within seconds every decision carries it and the
    player's variant (logged the same), the holdout variant gets no offer; stopped, decisions are the
    policy's again."""
    code, out = cli_in(served, "experiment", "start", "online1", "--variants", "policy=0.5,holdout=0.5")
    assert code == 0, out
    pids = candidates(served, 700)[300:700]
    try:
        time.sleep(2.5)  # two polls
        got = []
        for chunk in (pids[:200], pids[200:]):  # both workers, most likely
            got += served.post("/v1/recommendations:batch", {"requests": [{"player_id": p} for p in chunk]}).json()[
                "decisions"
            ]
        assert {d["experiment"] for d in got} == {"online1"}
        held = [d for d in got if d["variant"] == "holdout"]
        assert 0.4 < len(held) / len(got) < 0.6 and not any(d["offer"] for d in held)
        logged = served.log().set_index("decision_id").loc[[d["decision_id"] for d in got]]
        assert (logged["variant"] == [d["variant"] for d in got]).all()
    finally:
        assert cli_in(served, "experiment", "stop", "online1")[0] == 0
    time.sleep(2.5)
    after = served.post("/v1/recommendations:batch", {"requests": [{"player_id": p} for p in pids[:50]]}).json()
    assert not any(d["experiment"] for d in after["decisions"])


def cli_in(s: Served, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from app.cli import main

    r = CliRunner().invoke(main, ["--home", str(s.home), "--config", str(s.configs), *args])
    return r.exit_code, r.output


def test_overrides_take_effect_in_every_worker_without_a_restart(served: Served) -> None:
    """Disable the event type being sent, pin nothing else: within seconds no worker sends it; the change is
    audited; a bad value is refused with 422 and changes nothing."""
    pids = candidates(served, 300)[100:300]
    sent = [
        d
        for d in served.post("/v1/recommendations:batch", {"requests": [{"player_id": p} for p in pids[:60]]}).json()[
            "decisions"
        ]
        if d["offer"]
    ]
    assert sent, "no offer to disable"
    event = pd.Series([d["event_type"] for d in sent]).mode()[0]
    bad = served.put("/v1/overrides/exploration", {"value": 2})
    assert bad.status_code == 422 and "exploration" in bad.text
    r = served.put("/v1/overrides/disabled_event_types", {"value": [event]})
    assert r.status_code == 200, r.text
    try:
        time.sleep(2.5)  # two polls of the overrides
        later = []
        for chunk in (pids[60:130], pids[130:200]):  # two calls: both workers, most likely
            later += served.post("/v1/recommendations:batch", {"requests": [{"player_id": p} for p in chunk]}).json()[
                "decisions"
            ]
        assert later and not any(d["event_type"] == event for d in later)
        assert len({d["policy_version"] for d in later}) == 1
        audit = served.get("/v1/overrides", key="admin").json()["audit"]
        assert audit[-1]["field"] == "disabled_event_types" and audit[-1]["who"].startswith("test-admin")
    finally:
        assert served.put("/v1/overrides/disabled_event_types", {"value": None}).status_code == 200


def test_a_marketer_pins_a_segment_on_the_dashboard_and_the_api_sends_it(served: Served) -> None:
    """End to end in Chromium on the service's own dashboard: look a player up (the policy's preview with its
    runners-up and reasons), pin the player's segment to an arm the policy does not send it, see the change in
    the audit log, and the next recommendations through the API send the pinned arm."""
    from core.config import load_config
    from system_db.store import SystemStore
    from system_db.users import Users

    cfg = load_config(served.configs, home=served.home)
    Users(SystemStore(cfg.system_db_url)).create("mara", "marketer", "marketer password")
    seg = pd.read_sql("SELECT player_id, segment FROM segments WHERE is_candidate",
                      sa.create_engine(f"sqlite:///{served.home / 'rekindle.db'}"))  # fmt: skip
    log = served.log()
    asked = set(log.loc[log["source"] == "online", "player_id"].astype(int))  # offered: under the frequency cap
    fresh = seg[~seg["player_id"].isin(asked)]
    segment = fresh["segment"].value_counts().index[0]
    players = fresh.loc[fresh["segment"] == segment, "player_id"].astype(int).tolist()
    assert len(players) >= 12, "too few unasked candidates in one segment"
    look, later = players[0], players[1:12]

    in_browser(lambda page: pin_and_ask(served, page, segment, look, later, log))


def pin_and_ask(served: Served, page: Page, segment: str, look: int, later: list[int], log: pd.DataFrame) -> None:
    dash = served.url + "/dashboard"
    sign_in(page, dash, "mara", "marketer password")
    page.get_by_role("link", name="Recommendations").click()
    page.get_by_label("Player id").fill(str(look))
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#player-decision")).to_contain_text(f"player {look} ({segment}")
    arms = [r.split("\t") for r in page.locator("#player-arms tr").all_inner_texts()[1:]]
    chosen = page.locator("#player-decision strong").inner_text()
    assert chosen in [a[0] for a in arms] and len(arms) >= 3 and arms[0][0] != arms[1][0]
    shot(page, "recommendations")  # a real model's preview, its runners-up and reasons
    pin = next(a[0] for a in reversed(arms) if a[1] == "yes" and a[0] not in (chosen, "none"))
    assert len(served.log()) == len(log)  # a preview logs nothing

    page.get_by_role("link", name="Adjustments").click()
    page.get_by_label("Setting").select_option("pins")
    page.get_by_label("Value").fill(json.dumps({segment: pin}))
    page.get_by_role("button", name="Apply").click()
    audit = page.locator("table").last.locator("tr").nth(1)
    expect(audit).to_contain_text("mara (dashboard)")
    expect(audit).to_contain_text(pin)
    try:
        time.sleep(2.5)  # two polls of the overrides
        got = served.post("/v1/recommendations:batch", {"requests": [{"player_id": p} for p in later]}).json()
        decided = got["decisions"]
        live = [d for d in decided if not d["holdout"] and "frequency" not in d["reason"]]
        assert len(live) >= 8 and all(d["event_type"] + "@" + str(d["reward"]) == pin for d in live)
        assert all(f"pinned to {pin}" in d["reason"] for d in live)
        page.get_by_role("link", name="Recommendations").click()  # the preview follows the pin too
        page.get_by_label("Player id").fill(str(look))
        page.get_by_role("button", name="Look up").click()
        expect(page.locator("#player-decision strong")).to_have_text(pin)
    finally:
        page.get_by_role("link", name="Adjustments").click()
        page.get_by_label("Setting").select_option("pins")
        page.get_by_label("Value").fill("")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("table").last.locator("tr").nth(1)).to_contain_text("(cleared)")


def test_concurrent_clients_lose_and_double_no_decision(served: Served) -> None:
    """50 clients at once, each with its own request ids, half of them sent twice: the log holds one row per
    request id and every answer's decision is in it."""
    pids = candidates(served, 500)
    before = len(served.log())
    answers: list[dict] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=served.url, headers={"X-API-Key": served.caller}, timeout=60) as c:
            for j in range(4):
                body = {"player_id": pids[(i * 4 + j) % len(pids)], "request_id": f"load-{i}-{j}"}
                for _ in range(2 if j % 2 else 1):
                    r = c.post("/v1/recommendations", json=body)
                    assert r.status_code == 200, r.text
                    with lock:
                        answers.append(r.json())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = served.log()
    assert len(log) - before == 200  # 50 clients x 4 request ids
    ours = log[log["request_id"].fillna("").str.startswith("load-")]
    assert ours["request_id"].is_unique and set(ours["decision_id"]) == {a["decision_id"] for a in answers}


def test_an_unreadable_online_store_degrades_to_segment_decisions_and_recovers(served: Served, tmp_path: Path) -> None:
    """A second server without prefetch or cache reads every player's features from the online store. With the
    store's file broken under it (really: its bytes overwritten), calls still get 200: the segment's decision,
    marked fallback, logged like any other; /ready names the degradation. With the file back, the model
    decides again."""
    import shutil as sh

    configs = tmp_path / "configs"
    sh.copytree(served.configs, configs)
    raw = yaml.safe_load((configs / "rekindle.yaml").read_text())
    raw["serving"].update({"prefetch": False, "feature_cache_seconds": 0})
    (configs / "rekindle.yaml").write_text(yaml.safe_dump(raw))
    store = served.home / "feast" / "online.db"
    original = store.read_bytes()
    pids = candidates(served, 900)[600:900]
    with server(served.home, configs, tmp_path / "serve.log", workers=1) as url:
        headers = {"X-API-Key": served.caller}

        def ask(chunk: list[int]) -> list[dict]:
            r = httpx.post(url + "/v1/recommendations:batch", json={"requests": [{"player_id": p} for p in chunk]},
                           headers=headers, timeout=60)  # fmt: skip
            assert r.status_code == 200, r.text
            return r.json()["decisions"]

        before = ask(pids[:50])
        assert not any(d["fallback"] for d in before)
        try:
            with store.open("r+b") as f:  # the store breaks under the running server
                f.write(b"\0" * min(len(original), 1 << 20))
            broken = ask(pids[50:150])
            live = [d for d in broken if not d["reason"].startswith(("frequency cap", "holdout"))]
            assert live and all(d["fallback"] for d in live)
            assert all("segment-level decision" in d["reason"] for d in live)
            assert all(d["propensity"] == 1.0 and not d["explored"] for d in live)  # no exploration on fallbacks
            ready = httpx.get(url + "/ready", timeout=10).json()
            assert ready["ready"] and "online_store" in ready["degraded"]
            store.write_bytes(original)
            # the worker's polling thread reads the store again within seconds; calls do not try it meanwhile
            deadline = time.monotonic() + 30
            while "online_store" in httpx.get(url + "/ready", timeout=10).json()["degraded"]:
                assert time.monotonic() < deadline, "the online store is still marked down 30 s after its repair"
                time.sleep(0.5)
            again = ask(pids[150:250])
            assert not any(d["fallback"] for d in again)
            logged = set(served.log()["decision_id"])
            assert {d["decision_id"] for d in before + broken + again} <= logged  # nothing lost while degraded
        finally:
            store.write_bytes(original)  # the file back, whatever failed


def test_schemathesis_finds_no_server_error(served: Served) -> None:
    """Schemathesis generates requests from the checked-in OpenAPI document (valid and invalid bodies, paths,
    override values) with an admin key: no answer is a server error. The overrides it set are cleared."""
    doc = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
    st = str(Path(REKINDLE).parent / "st")
    cmd = [st, "run", str(doc), "--url", served.url, "-H", f"X-API-Key: {served.admin}", "--checks",
           "not_a_server_error", "--max-examples", "25", "--seed", "1", "--generation-deterministic"]  # fmt: skip
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    finally:
        for field in served.get("/v1/overrides", key="admin").json()["overrides"]:
            assert served.put(f"/v1/overrides/{field}", {"value": None}).status_code == 200
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "not_a_server_error" in result.stdout or "passed" in result.stdout.lower()


def test_the_model_is_swapped_when_the_champion_alias_moves_without_dropping_a_request(served: Served) -> None:
    """A new version becomes champion while a client keeps calling: within a few polls every worker serves
    it, no call fails, and decisions name the version that made them. (Last: it changes the served model.)"""
    result = CliRunner().invoke(
        main, ["--home", str(served.home), "--config", str(served.configs), "train", "--defaults", "--ensemble", "1"]
    )
    assert result.exit_code == 0, result.output
    from mlflow import MlflowClient

    store = f"sqlite:///{served.home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    client.set_registered_model_alias("rekindle-response", "champion", "2")
    pids = candidates(served, 400)
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def keep_calling() -> None:
        with httpx.Client(base_url=served.url, headers={"X-API-Key": served.caller}, timeout=60) as c:
            i = 0
            while not stop.is_set():
                r = c.post("/v1/recommendations", json={"player_id": pids[i % len(pids)]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])
                i += 1

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and versions[-20:].count("rekindle-response/2") < 20:
            time.sleep(0.5)
    finally:
        stop.set()
        caller.join()
    assert statuses and set(statuses) == {200}  # no call dropped during the swap
    assert versions[0] == "rekindle-response/1" and versions[-20:] == ["rekindle-response/2"] * 20
    # version 2 was challenger (with the fallback rule) a moment before it became champion: a worker may
    # have loaded it as challenger first, and swaps again at its next poll
    deadline = time.monotonic() + 60
    while True:
        ready = [served.get("/ready", key=None).json() for _ in range(6)]  # both workers, most likely
        if all(r["model_alias"] == "champion" for r in ready) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(r["model_version"] == "rekindle-response/2" and r["model_alias"] == "champion" for r in ready)
    assert all(r["fallback_rule"] is None for r in ready)  # a champion decides by its own policy
