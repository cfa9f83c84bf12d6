"""The marketers' dashboard in a real headless Chromium (Debian's, driven by Playwright): sign-in, roles,
CSRF, the overview and the adjustments page with its audit log (issue 15, first part).

``rekindle dashboard`` runs in its own process on a free 127.0.0.1 port and is stopped by its pid. With
``REKINDLE_SCREENSHOTS=DIR`` the pages are also saved there as PNG (docs/dashboard/ holds the committed ones).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from core.config import Config
from tests.browser import shot, sign_in
from tests.throwaway import free_port, started

REKINDLE = str(Path(sys.executable).parent / "rekindle")
HOSTILE = "<script>window.hacked = 1</script>"  # a segment name from the platform: shown, never run


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
    users.create("ada", "admin", "admin password 12")
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
    # outcomes of that batch: 64 of the 160 offers re-engaged, 28 of the 140 without (a lift of +20 points)
    from system_db.outcomes import Outcomes

    Outcomes(store).write(pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)], "sent": policy, "offer_id": None, "measured_from": at,
        "window_end": datetime(2026, 12, 7, 10), "reengaged": [i < 64 or 160 <= i < 188 for i in range(n)],
        "converted": False, "deposits": 0, "reward_cost": 0, "net_value": 0.0,
    }), datetime(2026, 12, 7, 11))  # fmt: skip
    seed_planner(cfg)
    seed_report(cfg, policy)
    # two feedback runs' realised-against-predicted cells, and a monitoring run's Evidently report
    cells = pd.DataFrame({"segment": ["a", "b"], "arm": "cashback@10000", "n_offered": [600, 400],
                          "n_control": 50, "predicted_cost": None, "realised_cost": None, "accuracy": None,
                          "reliable": True})  # fmt: skip
    Outcomes(store).write_cells(cells.assign(predicted=[500.0, 500.0], realised=[400.0, 700.0], se=[50.0, 80.0]),
                                datetime(2026, 11, 23, 11))  # fmt: skip
    Outcomes(store).write_cells(cells.assign(predicted=[450.0, 450.0], realised=[200.0, 450.0], se=[50.0, 80.0]),
                                datetime(2026, 11, 30, 11))  # fmt: skip
    cfg.path("monitor").mkdir(parents=True, exist_ok=True)
    cfg.path("monitor", "data-drift-20261130T100500.html").write_text("<html><body>an Evidently report</body></html>")
    cfg.path("monitor", "data-drift-20261130T100500.json").write_text("{}")  # beside it, not a page
    record = LoopRecord(store)
    record.monitor_run(datetime(2026, 11, 23, 10), False, [], {"roi_accuracy": 0.91}, None)
    record.monitor_run(datetime(2026, 11, 30, 10), True, ["outcome drift: cashback lost its pull"],
                       {"roi_accuracy": 0.62, "lift_z": -4.4}, None)  # fmt: skip
    record.event(datetime(2026, 11, 30, 11), "retrained", 2, "not promoted: judged on the weeks since", {})


PLAN_ARMS = pd.DataFrame({"event_type": ["none", "reminder", "cashback"], "reward": [0, 0, 10_000],
                          "supported": True})  # fmt: skip


def seed_planner(cfg: Config) -> None:
    """The latest batch's sample for the planner: 1,000 candidates of one segment, standing for 10,000."""
    from serving import planner

    rng = np.random.default_rng(7)
    n = 1000
    p = np.column_stack([np.full(n, 0.2), np.full(n, 0.22), rng.uniform(0.2, 0.6, n)])
    deposits = p * 60_000  # cashback pays (over reminder's +360 KRW) where p > 0.495: ~26% of them
    cost = p * PLAN_ARMS["reward"].to_numpy(float)
    eligible = np.ones(n, bool)
    s = planner.sample_of(PLAN_ARMS, np.full(n, "mid-value new dormant", object), p, deposits, cost, eligible,
                          seed=1, holdout=0.0, campaign="batch-1", as_of=pd.Timestamp("2026-11-30 10:00"),
                          model_version="m/1", margin=0.3, objective="net_value")  # fmt: skip
    s.candidates = 10_000
    planner.save(s, planner.sample_path(cfg))


def seed_report(cfg: Config, policy: list[bool]) -> None:
    """The summary `rekindle experiment report spring` writes, from the seeded players' outcomes."""
    from monitoring.experiment_report import METRICS, ExperimentReport, write_summary
    from monitoring.experiment_stats import analyse

    rng = np.random.default_rng(3)
    n = len(policy)
    reengaged = np.array([i < 64 or 160 <= i < 188 for i in range(n)], float)
    players = pd.DataFrame({
        "variant": ["policy" if p else "holdout" for p in policy], "reengaged": reengaged, "converted": reengaged,
        "deposits": reengaged * 60_000, "reward_cost": np.array(policy, float) * reengaged * 10_000,
        "sessions_pre": rng.poisson(3, n), "net_value_pre": rng.normal(1000, 300, n),
    })  # fmt: skip
    players["net_value"] = 0.3 * players["deposits"] - players["reward_cost"] + rng.normal(0, 100, n)
    stats = analyse(players, {"policy": 0.5, "holdout": 0.5}, treatments=["policy"], controls=["holdout"],
                    metrics=METRICS)  # fmt: skip
    write_summary(ExperimentReport("spring", players, 12, stats), cfg.path("experiments", "spring", "summary.json"))


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dashboard")
    seed(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}/dashboard"
    args = [REKINDLE, "--home", str(home), "dashboard", "--port", str(port)]
    with started(args, url + "/signin", home / "dashboard.log", timeout=60):
        yield url


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
    assert page.locator(".plotly-graph-div").count() == 2  # the charts, drawn by the locally served plotly.js
    campaign = page.locator("table").last.locator("tr").nth(1).inner_text().split("\t")
    assert campaign[1:7] == ["300", "160", "1,600,000 KRW", "300", "40.0%", "20.0%"]  # offered vs held out
    assert campaign[0].endswith("19:00 KST")  # 10:00 UTC in the platform's time zone
    batch = page.locator("table").nth(1).locator("tr").all_inner_texts()  # the latest batch by arm
    assert batch[1].split("\t")[:3] == ["cashback@10000", "160", "1,600,000 KRW"]
    assert batch[2].split("\t")[:3] == ["none", "140", "0 KRW"]
    shot(page, "overview")

    page.get_by_role("link", name="Experiments").click()
    expect(page.get_by_role("heading", name="spring")).to_be_visible()
    exposed = page.locator("table").first.locator("tr").all_inner_texts()
    assert [r.split("\t")[:3] for r in exposed[1:]] == [["policy", "160", "53.3%"], ["holdout", "140", "46.7%"]]
    expect(page.locator("main")).to_contain_text("Sample ratio: p = 0.248 — as configured")  # chi-square, 1 dof
    expect(page.locator("main")).to_contain_text("300 players measured, 12 waiting")
    variants = {r.split("\t")[0]: r.split("\t") for r in page.locator("table").nth(1).locator("tr").all_inner_texts()}
    assert variants["policy"][1:3] == ["160", "40.0%"] and variants["holdout"][1:3] == ["140", "20.0%"]
    compared = page.locator("table").nth(2).locator("tr").all_inner_texts()
    lift = next(r.split("\t") for r in compared if r.startswith("policy vs holdout\treengaged"))
    assert lift[-1] == "yes" and abs(float(lift[2]) - 0.20) < 0.01  # 20 points (CUPED-adjusted), significant
    assert page.locator(".plotly-graph-div").count() == 1  # the comparisons' forest plot
    shot(page, "experiments")
    page.get_by_role("link", name="Model health").click()
    expect(page.get_by_role("heading", name="Models in service")).to_be_visible()
    models = page.locator("table").first.locator("tr").all_inner_texts()
    assert [m.split()[0] for m in models[1:]] == ["champion", "challenger", "canary"]  # none registered yet
    runs = page.locator("table").nth(1).locator("tr").all_inner_texts()
    assert "ALERT" in runs[1] and "0.62" in runs[1] and "cashback lost its pull" in runs[1] and "0.91" in runs[2]
    assert "not promoted: judged on the weeks since" in page.locator("table").nth(2).inner_text()
    assert page.locator(".plotly-graph-div").count() == 2  # realised against predicted; the monitoring runs
    roi = page.evaluate("document.querySelectorAll('.plotly-graph-div')[0].data.map(t => t.y)")
    assert roi == [[500, 450], [520, 300]]  # pooled by offers, by hand: (600 x 400 + 400 x 700) / 1,000 = 520
    page.get_by_role("link", name="data-drift-20261130T100500.html").click()
    expect(page.locator("body")).to_contain_text("an Evidently report")
    page.go_back()
    # a file in the folder but not a listed report (the report's JSON), or a made-up name: not served
    for unlisted in ("data-drift-20261130T100500.json", "secret.html"):
        assert page.request.get(dashboard + "/health/reports/" + unlisted).status == 404
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


def test_preferences_planner_and_recommendations_read_the_measured_and_the_planned(dashboard: str, page: Page) -> None:
    sign_in(page, dashboard, "ana", "correct horse battery")
    page.get_by_role("link", name="Player preferences").click()
    expect(page.get_by_role("heading", name="Player preferences")).to_be_visible()
    rows = {r.split("\t")[0]: r.split("\t") for r in page.locator("table").first.locator("tr").all_inner_texts()}
    # 64 of 160 re-engaged: 40.0%, Wilson 95% [32.7%, 47.7%] (by hand), +20 points over no offer's 28 of 140
    assert rows["cashback@10000"][1:5] == ["160", "40.0%", "32.7% – 47.7%", "+20.0%"]
    assert rows["none"][1:3] == ["140", "20.0%"]
    assert rows["reminder@0"][1] == "-" and rows["reminder@0"][6] == "22.0%"  # predicted, never measured
    assert 0.38 < float(rows["cashback@10000"][6].rstrip("%")) / 100 < 0.42  # the sample's mean p: U(0.2, 0.6)
    assert page.locator(".plotly-graph-div").count() == 1
    shot(page, "preferences")

    page.get_by_role("link", name="Campaign planner").click()
    expect(page.locator(".plotly-graph-div")).to_have_count(1)
    page.get_by_label("Budget").fill("5000000")
    page.get_by_role("button", name="Plan").click()
    expect(page.get_by_role("heading", name="The plan for 5,000,000 KRW")).to_be_visible()
    totals = page.locator("table").first.locator("tr").nth(1).inner_text().split("\t")
    cost = float(totals[1].replace(" KRW", "").replace(",", ""))
    assert 5_000_000 - 60_000 <= cost <= 5_000_000 + 60_000  # one sample row (10 players x 6,000 KRW) either way
    shot(page, "planner")
    export = page.request.get(dashboard + "/planner/export.csv?budget=5000000")
    assert export.ok and "attachment" in export.headers["content-disposition"]
    plan = pd.read_csv(__import__("io").StringIO(export.text()))
    assert plan["players"].sum() == 10_000 and abs(plan["expected_cost"].sum() - cost) <= 1
    assert set(plan["arm"]) == {"cashback@10000", "reminder@0"}
    page.get_by_label("cashback").check()  # what if cashback is switched off: everyone gets the free reminder
    page.get_by_role("button", name="Plan").click()
    totals = page.locator("table").first.locator("tr").nth(1).inner_text().split("\t")
    assert totals[:2] == ["10,000", "0 KRW"] and totals[3] == "3,600,000 KRW"  # 10,000 x 0.3 x 0.02 x 60,000
    bad = page.request.get(dashboard + "/planner?margin=1.5")
    assert bad.status == 422 and "margin must be in (0, 1], got 1.5" in bad.text()

    page.get_by_role("link", name="Recommendations").click()
    expect(page.locator(".plotly-graph-div")).to_have_count(1)
    page.get_by_label("Player id").fill("5")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("alert")).to_contain_text("no SQLite database")  # this home has no platform or model
    logged = page.locator("#player-log tr").all_inner_texts()
    assert len(logged) == 2 and "cashback@10000" in logged[1] and "batch" in logged[1]
    assert page.request.get(dashboard + "/recommendations?player=1%3Cb%3E").status == 422


def test_an_admin_manages_users_and_keys_others_are_refused(dashboard: str, page: Page) -> None:
    sign_in(page, dashboard, "ada", "admin password 12")
    page.get_by_role("link", name="Users").click()
    names = page.locator("table").first.locator("tr").all_inner_texts()
    assert {r.split("\t")[0] for r in names[1:]} >= {"ana", "vic", "ada"}
    shot(page, "users")
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("crm-prod")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("main")).to_contain_text("not shown again")
    shot(page, "keys")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, dashboard, "ana", "correct horse battery")
    assert page.get_by_role("link", name="Users").count() == 0
    assert page.request.get(dashboard + "/admin/users").status == 403
