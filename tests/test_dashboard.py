"""The marketers' dashboard in a real headless Chromium (Debian's, driven by Playwright): sign-in, roles,
CSRF, the overview and the adjustments page with its audit log (issue 15, first part).

``rekindle dashboard`` runs in its own process on a free 127.0.0.1 port and is stopped by its pid. With
``REKINDLE_SCREENSHOTS=DIR`` the pages are also saved there as PNG (docs/dashboard/ holds the committed ones).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.throwaway import free_port, started

REKINDLE = str(Path(sys.executable).parent / "rekindle")
HOSTILE = "<script>window.hacked = 1</script>"  # a segment name from the platform: shown, never run


def chromium() -> str:
    given = os.environ.get("REKINDLE_CHROMIUM") or shutil.which("chromium")
    if not given:
        subprocess.run(["bash", str(Path(__file__).parents[1] / "scripts" / "ensure-chromium")], check=True)
        given = shutil.which("chromium")
    assert given, "no chromium: scripts/ensure-chromium could not install Debian's package"
    return given


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:  # pytest-playwright's launch options
    return {**browser_type_launch_args, "executable_path": chromium(), "args": ["--no-sandbox"]}


def seed(home: Path) -> None:
    """Users and a segmentation in the home's system store."""
    from core.config import load_config
    from system_db.store import SystemStore
    from system_db.users import Users

    cfg = load_config(home=home)
    store = SystemStore(cfg.system_db_url)
    users = Users(store)
    users.create("ana", "marketer", "correct horse battery")
    users.create("vic", "viewer", "viewer password 1")
    at = datetime(2026, 11, 30, 10)
    rows = [(1, "mid-value new dormant"), (2, "mid-value new dormant"), (3, HOSTILE)]
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(store.segments),
            [{"as_of": at, "player_id": p, "status": "active", "is_candidate": True, "is_dormant": True,
              "days_idle": 30, "dormancy_stage": "new", "value_tier": "mid-value", "lifetime_deposits": 10_000,
              "deposit_count": 1, "claims": 0, "bonus_ratio": 0.0, "main_game": "slots", "is_bonus_hunter": False,
              "segment": s} for p, s in rows],
        )  # fmt: skip
    # an experiment with a batch under it, two monitoring runs (one alerting) and a retraining
    import pandas as pd

    from system_db.decision_log import DecisionLog
    from system_db.experiments import ExperimentStore
    from system_db.model_events import LoopRecord

    shares = {"policy": 0.5, "holdout": 0.5}
    ExperimentStore(store).start("spring", {"salt": "spring", "variants": [[v, x] for v, x in shares.items()]},
                                 "test", at)  # fmt: skip
    n = 300
    policy = [i < 160 for i in range(n)]
    DecisionLog(store).write_batch("batch-1", pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)], "caller": "batch", "request_id": [f"batch-1:{i}" for i in range(n)],
        "player_id": range(n), "decided_at": at, "source": "batch", "segment": "mid-value new dormant",
        "event_type": ["cashback" if p else "none" for p in policy], "reward": [10_000 if p else 0 for p in policy],
        "propensity": 1.0, "explored": False, "holdout": [not p for p in policy], "fallback": False, "reason": "r",
        "expected_cost": [10_000.0 if p else 0.0 for p in policy], "incremental_net_value": 0.0,
        "incremental_reengage": 0.0, "model_version": "m/1", "policy_version": "0",
        "policy_arm": "cashback@10000", "experiment": "spring",
        "variant": ["policy" if p else "holdout" for p in policy],
    }))  # fmt: skip
    record = LoopRecord(store)
    record.monitor_run(datetime(2026, 11, 23, 10), False, [], {"roi_accuracy": 0.91}, None)
    record.monitor_run(datetime(2026, 11, 30, 10), True, ["outcome drift: cashback lost its pull"],
                       {"roi_accuracy": 0.62, "lift_z": -4.4}, None)  # fmt: skip
    record.event(datetime(2026, 11, 30, 11), "retrained", 2, "not promoted: judged on the weeks since", {})


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dashboard")
    seed(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}/dashboard"
    args = [REKINDLE, "--home", str(home), "dashboard", "--port", str(port)]
    with started(args, url + "/signin", home / "dashboard.log", timeout=60):
        yield url


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("REKINDLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(page: Page, url: str, name: str, password: str) -> None:
    page.goto(url + "/signin")
    page.get_by_label("User").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_marketer_signs_in_reads_the_overview_and_adjusts_with_an_audit_trail(dashboard: str, page: Page) -> None:
    page.goto(dashboard + "/")  # not signed in: sent to sign in
    expect(page).to_have_url(re.compile(r"/dashboard/signin$"))
    shot(page, "signin")
    sign_in(page, dashboard, "ana", "wrong password here")
    expect(page.get_by_role("alert")).to_have_text("unknown user or wrong password")
    sign_in(page, dashboard, "ana", "correct horse battery")
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    rows = page.locator("table tr").all_inner_texts()
    assert any("mid-value new dormant" in r and "2" in r for r in rows)
    assert any(HOSTILE in r for r in rows)  # shown as text ...
    assert page.evaluate("window.hacked") is None  # ... never run
    assert "&lt;script&gt;" in page.content()
    assert page.locator(".plotly-graph-div").count() == 1  # the chart, drawn by the locally served plotly.js
    batch = page.locator("table").nth(1).locator("tr").all_inner_texts()  # the latest batch by arm
    assert batch[1].split("\t")[:3] == ["cashback@10000", "160", "1,600,000 KRW"]
    assert batch[2].split("\t")[:3] == ["none", "140", "0 KRW"]
    shot(page, "overview")

    page.get_by_role("link", name="Experiments").click()
    expect(page.get_by_role("heading", name="spring")).to_be_visible()
    exposed = page.locator("table").first.locator("tr").all_inner_texts()
    assert [r.split("\t")[:3] for r in exposed[1:]] == [["policy", "160", "53.3%"], ["holdout", "140", "46.7%"]]
    expect(page.locator("main")).to_contain_text("Sample ratio: p = 0.248 — as configured")  # chi-square, 1 dof
    page.get_by_role("link", name="Model health").click()
    expect(page.get_by_role("heading", name="Models in service")).to_be_visible()
    models = page.locator("table").first.locator("tr").all_inner_texts()
    assert [m.split()[0] for m in models[1:]] == ["champion", "challenger", "canary"]  # none registered yet
    runs = page.locator("table").nth(1).locator("tr").all_inner_texts()
    assert "ALERT" in runs[1] and "0.62" in runs[1] and "cashback lost its pull" in runs[1] and "0.91" in runs[2]
    assert "not promoted: judged on the weeks since" in page.locator("table").nth(2).inner_text()
    assert page.locator(".plotly-graph-div").count() == 1
    shot(page, "health")

    page.get_by_role("link", name="Adjustments").click()
    expect(page.get_by_role("heading", name="Change a setting")).to_be_visible()
    page.get_by_label("Setting").select_option("exploration")
    page.get_by_label("Value").fill("0.1")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table").last.locator("tr")).to_have_count(2)
    audit = page.locator("table").last.locator("tr").all_inner_texts()
    assert len(audit) == 2 and "ana (dashboard)" in audit[1] and "exploration" in audit[1] and "0.1" in audit[1]
    page.get_by_label("Setting").select_option("exploration")
    page.get_by_label("Value").fill("2")  # not a share: refused, nothing written
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("alert")).to_contain_text("exploration")
    assert len(page.locator("table").last.locator("tr").all_inner_texts()) == 2
    shot(page, "adjustments")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/signin$"))


def test_a_viewer_reads_but_is_refused_changes_and_forms_need_their_csrf_token(dashboard: str, page: Page) -> None:
    sign_in(page, dashboard, "vic", "viewer password 1")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(dashboard + "/adjustments")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    assert page.get_by_role("button", name="Apply").count() == 0  # no form for a viewer
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    change = {"field": "exploration", "value": "0.2"}
    refused = page.request.post(dashboard + "/adjustments", form={"csrf": token or "", **change})
    assert refused.status == 403 and "needs a marketer" in refused.text()
    forged = page.request.post(dashboard + "/adjustments", form=change)
    assert forged.status == 403 and "CSRF" in forged.text()
    anonymous = httpx.get(dashboard + "/adjustments", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].endswith("/dashboard/signin")
