"""Feedback: every logged decision gets exactly one outcome once its window has closed, measured from the
platform's rows as the simulator realised them; running it again, or after a crash, changes nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from core.config import load_config
from monitoring.attribution import OUTCOME_COLUMNS, attribute, match_sends
from monitoring.feedback import run_feedback
from system_db.decision_log import LOG_COLUMNS, DecisionLog, new_decision_id
from system_db.outcomes import Outcomes
from system_db.store import SystemStore

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
T0 = pd.Timestamp("2026-01-10 10:00")
WEEK = pd.Timedelta(days=7)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def log_rows(players: np.ndarray, arms: list[tuple[str, int]], at: datetime, campaign: str) -> pd.DataFrame:
    event, reward = zip(*(arms[i % len(arms)] for i in range(len(players))), strict=True)
    arm = [e if e == "none" else f"{e}@{r}" for e, r in zip(event, reward, strict=True)]
    # every other no-offer row is held out, where the policy would have sent cashback@10000
    held = [e == "none" and i % 8 == 2 for i, e in enumerate(event)]
    return pd.DataFrame(
        {
            "decision_id": [new_decision_id() for _ in players],
            "caller": "batch",
            "request_id": [f"{campaign}:{p}" for p in players],
            "player_id": players,
            "decided_at": at,
            "source": "batch",
            "segment": "s",
            "event_type": event,
            "reward": reward,
            "propensity": 1.0,
            "explored": False,
            "holdout": held,
            "fallback": False,
            "reason": "test",
            "incremental_net_value": 500.0,
            "expected_cost": 1000.0,
            "model_version": "m/1",
            "policy_version": "p-1",
            "policy_arm": np.where(held, "cashback@10000", arm),
        }
    ).reindex(columns=LOG_COLUMNS)


@pytest.fixture(scope="module")
def responded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A simulated platform, 400 decisions logged at its as-of time, the 300 sent ones applied by the simulator's
    forward mode (the 100 others were never sent), and the simulator's realised outcomes of the sent ones."""
    home = tmp_path_factory.mktemp("home")
    invoke("--home", str(home), "simulate", "--players", "2000", "--days", "60", "--seed", "4")
    as_of = datetime.fromisoformat(json.loads((home / "truth" / "calibration.json").read_text())["as_of"])
    truth = pd.read_parquet(home / "truth" / "truth.parquet")
    players = truth["player_id"].drop_duplicates().sample(400, random_state=1).to_numpy()
    arms = [("free_spins", 15_000), ("cashback", 10_000), ("none", 0), ("login_reward", 3_000)]
    logged = log_rows(players, arms, as_of, "b1")
    cfg = load_config(CONFIGS, home=home)
    DecisionLog(SystemStore(cfg.system_db_url)).write_batch("b1", logged)
    sent = logged.iloc[:300]
    path = home / "sent.parquet"
    sent.assign(sent_at=as_of)[["player_id", "event_type", "reward", "sent_at"]].to_parquet(path)
    invoke("--home", str(home), "simulate", "respond", "--decisions", str(path))
    realised = pd.read_parquet(next((home / "truth" / "responses").glob("*.parquet")))
    return home, logged, realised


def test_every_decision_gets_one_outcome_as_the_simulator_realised_it(responded) -> None:
    home, logged, realised = responded
    # the forward run stopped a week after the decisions; its sends went out over the first minute
    closed = (pd.Timestamp(logged["decided_at"].iloc[0]) + WEEK + pd.Timedelta(minutes=5)).isoformat()
    out = invoke("--home", str(home), "feedback", "--as-of", closed)
    assert "400 decisions measured" in out and "75 offers the platform has no send for" in out, out
    cfg = load_config(CONFIGS, home=home)
    got = Outcomes(SystemStore(cfg.system_db_url)).read()
    assert len(got) == 400 and got["decision_id"].is_unique
    assert set(got["decision_id"]) == set(logged["decision_id"])
    by_player = got.set_index("player_id")
    sent = logged.iloc[:300]
    unsent_offers = logged.iloc[300:].query("event_type != 'none'")
    assert by_player.loc[unsent_offers["player_id"], "sent"].eq(False).all()
    assert by_player.loc[unsent_offers["player_id"], "reward_cost"].eq(0).all()
    offers = sent.query("event_type != 'none'")
    assert by_player.loc[offers["player_id"], "sent"].all()
    assert by_player.loc[offers["player_id"], "offer_id"].notna().all()
    # measured from the platform's rows, the outcomes are the ones the simulator realised
    r = realised.set_index("player_id").loc[sent["player_id"]]
    mine = by_player.loc[sent["player_id"]]
    assert (mine["reengaged"].astype(bool).to_numpy() == r["realised_reengaged"].to_numpy()).all()
    assert np.allclose(mine["deposits"].to_numpy(), r["realised_deposits"].to_numpy(), atol=1)
    assert np.allclose(mine["reward_cost"].to_numpy(), r["realised_cost"].to_numpy(), atol=1)
    assert mine["reengaged"].astype(bool).any() and (mine["reward_cost"] > 0).any()  # not a trivially empty world
    margin = cfg.business.margin
    assert np.allclose(got["net_value"], margin * got["deposits"] - got["reward_cost"])
    # realised against predicted: the cashback offers against the held-out rows the policy would have sent it
    cells = Outcomes(SystemStore(cfg.system_db_url)).read_cells()
    assert list(zip(cells["segment"], cells["arm"], strict=True)) == [("s", "cashback@10000")]
    assert cells["n_offered"].iloc[0] == (logged["event_type"] == "cashback").sum()
    assert cells["n_control"].iloc[0] == logged["holdout"].sum() > 0
    assert "realised against predicted" in out and (home / "feedback").is_dir()
    assert len(list((home / "feedback").glob("roi-*.png"))) == 1
    # a second run measures nothing new and changes nothing
    again = invoke("--home", str(home), "feedback", "--as-of", closed)
    assert "0 decisions measured" in again and "0 waiting" in again, again
    assert (
        Outcomes(SystemStore(cfg.system_db_url))
        .read()
        .drop(columns="measured_at")
        .equals(got.drop(columns="measured_at"))
    )


def system_store_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """A system store of its own (the module's home stays as it is), on SQLite or the real PostgreSQL."""
    if request.node.callspec.params["backend"] == "sqlite":
        return f"sqlite:///{tmp_path / name}.db"
    return str(request.getfixturevalue("pg_database_factory")())


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_crashed_run_is_finished_by_the_next_and_counts_nothing_twice(
    responded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, backend: str
) -> None:
    home, logged, _ = responded
    cfg = load_config(CONFIGS, home=home)
    store_url = system_store_url(request, tmp_path, "system")
    small_chunks = cfg.feedback.model_copy(update={"chunk_decisions": 100})
    cfg = cfg.model_copy(update={"system_db_url": store_url, "feedback": small_chunks})
    DecisionLog(SystemStore(store_url)).write_batch("b1", logged)
    real_write, calls = Outcomes.write, []

    def crash_on_the_third_chunk(self: Outcomes, frame: pd.DataFrame, measured_at: datetime) -> int:
        calls.append(len(frame))
        if len(calls) == 3:
            raise OSError("disk gone")
        return real_write(self, frame, measured_at)

    monkeypatch.setattr(Outcomes, "write", crash_on_the_third_chunk)
    closed = pd.Timestamp(logged["decided_at"].iloc[0]).to_pydatetime() + WEEK + pd.Timedelta(minutes=5)
    with pytest.raises(OSError, match="disk gone"):
        run_feedback(cfg, closed)
    monkeypatch.setattr(Outcomes, "write", real_write)
    assert len(Outcomes(SystemStore(store_url)).read()) == 200  # the two chunks committed before the crash
    run = run_feedback(cfg, closed)
    assert run.measured == 200 and run.waiting == 0
    after = Outcomes(SystemStore(store_url)).read()
    assert len(after) == 400 and after["decision_id"].is_unique
    # written again (a second run racing the first), the outcomes already there are kept and not counted
    assert Outcomes(SystemStore(store_url)).write(after[OUTCOME_COLUMNS].head(50), closed) == 0
    reference_url = system_store_url(request, tmp_path, "reference")  # the same decisions, measured in one run
    DecisionLog(SystemStore(reference_url)).write_batch("b1", logged)
    run_feedback(cfg.model_copy(update={"system_db_url": reference_url}), closed)
    reference = Outcomes(SystemStore(reference_url)).read()
    cols = ["decision_id", "sent", "offer_id", "reengaged", "deposits", "reward_cost", "net_value"]
    assert (
        after[cols]
        .sort_values("decision_id")
        .reset_index(drop=True)
        .equals(reference[cols].sort_values("decision_id").reset_index(drop=True))
    )


def test_decisions_wait_until_their_window_and_the_sends_after_it_are_final(responded, tmp_path: Path) -> None:
    home, logged, _ = responded
    cfg = load_config(CONFIGS, home=home)
    store_url = f"sqlite:///{tmp_path / 'system.db'}"
    cfg = cfg.model_copy(update={"system_db_url": store_url})
    DecisionLog(SystemStore(store_url)).write_batch("b1", logged)
    decided = pd.Timestamp(logged["decided_at"].iloc[0]).to_pydatetime()  # the offers were sent then too
    week = timedelta(days=cfg.business.attribution_days)
    early = run_feedback(cfg, decided + week - timedelta(seconds=1))
    assert early.measured == 0 and early.waiting == 400
    unsent_late = cfg.model_copy(update={"feedback": cfg.feedback.model_copy(update={"send_within_hours": 24 * 9})})
    on_time = run_feedback(unsent_late, decided + week + timedelta(minutes=5))  # the sends' windows closed
    # the sent offers are closed; the rest could still be sent (within 9 days) and wait
    assert (
        on_time.measured == int((logged.iloc[:300]["event_type"] != "none").sum())
        and on_time.waiting == 400 - on_time.measured
    )
    later = run_feedback(unsent_late, decided + timedelta(days=9))
    assert later.measured == 400 - on_time.measured and later.waiting == 0


# ------------------------------------------------------------- attribution rules, on hand-made rows --
def _decisions(rows: list[tuple[str, int, pd.Timestamp, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["decision_id", "player_id", "decided_at", "event_type", "reward"])


def test_an_event_counts_once_for_the_latest_sent_offer_whose_window_holds_it() -> None:
    decisions = _decisions(
        [
            ("offer1", 1, T0, "cashback", 10_000),
            ("none1", 1, T0 + pd.Timedelta(days=1), "none", 0),  # a capped player asked again
            ("offer2", 1, T0 + pd.Timedelta(days=4), "free_spins", 5_000),
            ("lost", 2, T0, "cashback", 10_000),  # never sent
        ]
    )
    offers = pd.DataFrame(
        {
            "id": [11, 12, 13],
            "player_id": [1, 1, 2],
            "sent_at": [T0 + pd.Timedelta(hours=2), T0 + pd.Timedelta(days=4, hours=1), T0 + pd.Timedelta(days=3)],
            "event_type": ["cashback", "free_spins", "free_spins"],  # player 2 got another event type
            "reward": [10_000, 5_000, 10_000],
        }
    )
    matched = match_sends(decisions, offers, pd.Timedelta(hours=48))
    ids = matched.set_index("decision_id")["offer_id"]
    assert ids["offer1"] == 11 and ids["offer2"] == 12 and ids[["none1", "lost"]].isna().all()
    sent1, sent2 = offers["sent_at"].iloc[0], offers["sent_at"].iloc[1]
    sessions = pd.DataFrame(
        {"player_id": [1, 1, 1, 2], "at": [sent1, sent1 + pd.Timedelta(days=2), sent2 + WEEK, T0 + WEEK]}
    )
    deposits = pd.DataFrame(
        {
            "player_id": [1, 1, 1, 1, 2],
            "at": [sent1 + pd.Timedelta(days=1), sent1 + pd.Timedelta(days=5), sent2 + WEEK, sent2 + WEEK * 2, T0],
            "amount": [100.0, 200.0, 400.0, 800.0, 1600.0],
        }
    )
    bonuses = pd.DataFrame(
        {
            "offer_id": [11, 11, 12],
            "at": [sent1 + pd.Timedelta(days=1), sent1 + WEEK + pd.Timedelta(seconds=1), sent2 + pd.Timedelta(hours=1)],
            "amount": [10_000.0, 10_000.0, 5_000.0],
        }
    )
    got = attribute(matched, sessions, deposits, bonuses, window=WEEK, margin=0.5).set_index("decision_id")
    # offer1: its send instant is outside its window; the day-2 session and the day-1 deposit are its own; the
    # day-5 deposit falls after offer2's send, so it is offer2's; its bonus after the window is not its cost
    assert got.loc["offer1", ["reengaged", "deposits", "reward_cost"]].tolist() == [True, 100, 10_000]
    # offer2: the day-5 deposit and the one at the end of its window (inclusive), not the one after
    assert got.loc["offer2", ["reengaged", "deposits", "reward_cost"]].tolist() == [True, 600, 5_000]
    # the no-offer decision inside offer1's window gets nothing of it
    assert got.loc["none1", ["sent", "reengaged", "deposits"]].tolist() == [False, False, 0]
    # an offer never sent is measured from its decision: the deposit at that instant is outside its window
    assert got.loc["lost", ["sent", "reengaged", "deposits", "reward_cost"]].tolist() == [False, True, 0, 0]
    assert got.loc["offer2", "net_value"] == pytest.approx(0.5 * 600 - 5_000)
    assert got["deposits"].sum() == 700  # 100 + 600: no deposit counted twice, the two outside every window not at all


def test_an_experiment_report_compares_the_measured_variants(tmp_path: Path) -> None:
    """Decisions logged under an experiment, answered by the simulator, measured by feedback: the report
    counts every player once in the variant of their first exposure, its unadjusted difference is the
    plain difference of the variants' mean outcomes, and it writes the HTML with its plots."""
    from serving.experiments import Experiment, assign, definition
    from system_db.experiments import ExperimentStore

    home = tmp_path / "home"
    invoke("--home", str(home), "simulate", "--players", "3000", "--days", "60", "--seed", "7")
    as_of = datetime.fromisoformat(json.loads((home / "truth" / "calibration.json").read_text())["as_of"])
    cfg = load_config(CONFIGS, home=home)
    store = SystemStore(cfg.system_db_url)
    e = Experiment("x1", "x1", {"policy": 0.5, "random": 0.25, "holdout": 0.25})
    ExperimentStore(store).start("x1", definition(e), "test", as_of)
    truth = pd.read_parquet(home / "truth" / "truth.parquet")
    players = truth["player_id"].drop_duplicates().to_numpy()  # every candidate of the world
    variant = assign(players, e)
    rng = np.random.default_rng(0)
    random_arms = [("free_spins", 15_000), ("cashback", 10_000), ("login_reward", 3_000), ("none", 0)]
    arms = [
        ("cashback", 10_000) if v == "policy" else ("none", 0) if v == "holdout" else random_arms[rng.integers(4)]
        for v in variant
    ]
    logged = log_rows(players, arms, as_of, "x1").assign(experiment="x1", variant=variant)
    logged["holdout"] = False
    DecisionLog(store).write_batch("x1", logged)
    path = home / "sent.parquet"
    logged.assign(sent_at=as_of)[["player_id", "event_type", "reward", "sent_at"]].to_parquet(path)
    invoke("--home", str(home), "simulate", "respond", "--decisions", str(path))
    closed = (pd.Timestamp(as_of) + WEEK + pd.Timedelta(minutes=5)).isoformat()
    invoke("--home", str(home), "feedback", "--as-of", closed)
    out = invoke("--home", str(home), "experiment", "report", "x1")
    assert f"{len(players):,} players measured, 0 waiting" in out and len(players) > 800, out
    assert "policy vs holdout" in out and "policy vs random" in out and "Holm" in out
    report = home / "experiments" / "x1" / "report.html"
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2 and "Comparisons" in page
    # the unadjusted difference is the plain difference of the variants' means of the measured outcomes
    from monitoring.experiment_report import build_report

    outcomes = Outcomes(store).read()
    built = build_report("x1", e.shares, outcomes, DecisionLog(store).read(experiment="x1"), cfg)
    c = built.stats.comparisons.set_index(["control", "metric"])
    means = outcomes.groupby("variant")["net_value"].mean()
    assert c.loc[("holdout", "net_value"), "effect"] == pytest.approx(means["policy"] - means["holdout"])
    assert built.players["variant"].value_counts().to_dict() == pd.Series(variant).value_counts().to_dict()
    assert built.players["net_value_pre"].gt(0).any()  # the pre-period was read from the platform
