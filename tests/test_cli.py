"""The command line as a user meets it: help everywhere, the main job, the
validate exit codes with planted faults, segment outputs, clear errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from app.cli import main

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and subcommand of ``group``, as argument lists (the group itself first)."""
    out = [list(path)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += every_command(command, (*path, name))
        else:
            out.append([*path, name])
    return out


COMMANDS = every_command(main)
SIMULATE_OUTPUT: dict[Path, str] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated platform (3,000 players, 60 days) under a home directory."""
    home = tmp_path_factory.mktemp("home")
    result = CliRunner().invoke(
        main, ["--home", str(home), "simulate", "--players", "3000", "--days", "60", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    SIMULATE_OUTPUT[home] = result.output
    return home


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_the_help_covers_every_command() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in (
        "run",
        "tune",
        "train",
        "evaluate",
        "batch",
        "features build",
        "features training-set",
        "features materialize",
        "features show",
        "simulate respond",
        "db init",
        "segment",
        "validate",
        "feedback",
        "experiment start",
        "experiment status",
        "experiment stop",
    ):
        assert expected in names, expected
    assert len(COMMANDS) >= 17  # the group and its 16 commands and subcommands


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rekindle")
def test_every_command_has_help(command: list[str]) -> None:
    code, out = invoke(*command, "--help")
    assert code == 0
    assert f"Usage: main {' '.join(command)}".rstrip() in " ".join(out.split())  # its own usage, not the group's
    doc = main if not command else main.commands[command[0]]
    for part in command[1:]:
        doc = doc.commands[part]  # type: ignore[attr-defined]
    first = (doc.help or "").strip().splitlines()[0].split(":")[0].split(".")[0][:40]
    assert first and first in " ".join(out.split()), first


def test_installed_entry_point_runs() -> None:
    exe = Path(sys.executable).parent / "rekindle"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "simulate" in out.stdout and "segment" in out.stdout


def test_simulate_prints_the_as_of_time_and_writes_truth(world: Path) -> None:
    as_of = json.loads((world / "truth" / "calibration.json").read_text())["as_of"]
    assert f"as-of time: {datetime.fromisoformat(as_of):%Y-%m-%dT%H:%M:%S} (UTC)" in SIMULATE_OUTPUT[world]
    truth = pd.read_parquet(world / "truth" / "truth.parquet")
    assert {"player_id", "event_type", "reward", "p_reengage", "expected_deposits", "expected_cost"} <= set(
        truth.columns
    )
    assert (world / "platform.db").is_file()


def test_validate_passes_on_simulated_data(world: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, out = invoke("--home", str(world), "validate", "--report", str(report))
    assert code == 0, out
    data = json.loads(report.read_text())
    assert data["ok"] is True


PLANTS = [
    ("negative amount", "UPDATE money_flows SET amount = -5 WHERE id = 1", "money_flows.amount_positive"),
    ("orphan session", 'UPDATE player_sessions SET "playerId" = 999999 WHERE id = 1', "player_sessions.player_exists"),
    (
        "claim before send",
        "UPDATE promotion_players SET \"appliedAt\" = '2000-01-01 00:00:00.000000' WHERE id = 1",
        "promotion_players.applied_before_created",
    ),
    (
        "future session",
        "UPDATE player_sessions SET \"startedAt\" = '2099-01-01 00:00:00.000000' WHERE id = 2",
        "player_sessions.in_future",
    ),
    ("unknown status", "UPDATE players SET status = 'zombie' WHERE id = 1", "players.status_known"),
]


def test_validate_fails_on_planted_faults_and_names_each(world: Path, tmp_path: Path) -> None:
    db = tmp_path / "faulty.db"
    db.write_bytes((world / "platform.db").read_bytes())
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        for _, sql, _ in PLANTS:
            conn.exec_driver_sql(sql)
    report = tmp_path / "report.json"
    code, out = invoke("--home", str(tmp_path / "h"), "validate", "--db", f"sqlite:///{db}", "--report", str(report))
    assert code == 1
    failed = {r["name"]: r["count"] for r in json.loads(report.read_text())["checks"] if r["count"]}
    for what, _, check in PLANTS:
        assert failed.get(check) == 1, f"{what}: {check} not caught ({failed})"
        assert check in out


def test_segment_writes_store_and_file_and_matches_the_truth(world: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "segments.csv"
    as_of = json.loads((world / "truth" / "world" / "world.json").read_text())
    code, out = invoke("--home", str(world), "segment", "--out", str(out_file), "--as-of", _as_of(world))
    assert code == 0, out
    seg = pd.read_csv(out_file)
    truth = pd.read_parquet(world / "truth" / "truth.parquet")
    # the segmentation's candidates are exactly the simulator's dormant candidates
    assert set(seg.loc[seg["is_candidate"], "player_id"]) == set(truth["player_id"])
    stored = pd.read_sql("SELECT COUNT(*) AS n FROM segments", sa.create_engine(f"sqlite:///{world / 'rekindle.db'}"))
    assert stored["n"].iloc[0] == len(seg)
    assert as_of["day"] > 0


def test_segment_leaves_out_invalid_rows_and_says_how_many(world: Path, tmp_path: Path) -> None:
    db = tmp_path / "faulty.db"
    db.write_bytes((world / "platform.db").read_bytes())
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:
        conn.exec_driver_sql("UPDATE money_flows SET amount = -5 WHERE id IN (1, 2)")
    code, out = invoke("--home", str(tmp_path / "h"), "segment", "--db", f"sqlite:///{db}", "--as-of", _as_of(world))
    assert code == 0, out
    assert "left out invalid rows" in out
    assert "money_flows 2" in out


def _as_of(home: Path) -> str:
    return json.loads((home / "truth" / "calibration.json").read_text()).get("as_of") or "2026-10-05T10:00:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "--db", "sqlite:////nonexistent/x.db"], "no SQLite database"),
        (["validate", "--db", "postgresql://postgres@127.0.0.1:5432/no_such_db_rekindle"], "cannot connect"),
        (["validate", "--db", "not a url"], "not a database URL"),
        (["segment", "--as-of", "yesterday"], "not an ISO time"),
    ],
    ids=["missing-sqlite", "unknown-postgres-db", "bad-url", "bad-time"],
)
def test_clear_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--home", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_segment_on_empty_platform_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert invoke("--home", str(tmp_path), "db", "init", "--db", url)[0] == 0
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "segment", "--db", url])
    assert result.exit_code == 2
    assert "holds no players" in result.output


def small_model_configs(root: Path, **model: object) -> Path:
    """The default configs with a model small enough for a 4,000-player world (and ``model`` overrides)."""
    configs = root / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    raw = yaml.safe_load((configs / "rekindle.yaml").read_text())
    raw["training"]["arms"]["min_support"] = 30
    raw["training"].update(
        {"ensemble": 2, "bootstrap": 50, "min_cell": 100, "split": {"validation_campaigns": 2, "test_campaigns": 2}}
    )
    raw["training"]["model"].update({"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 200, **model})
    (configs / "rekindle.yaml").write_text(yaml.safe_dump(raw))
    return configs


def run_main_job(home: Path, configs: Path) -> tuple[str, pd.DataFrame, dict[str, str]]:
    code, out = invoke(
        "--home", str(home), "--config", str(configs), "run", "--players", "4000", "--days", "100", "--weeks", "0"
    )
    assert code == 0, out
    from mlflow import MlflowClient

    store = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("rekindle-response", "1")
    aliases = client.get_registered_model("rekindle-response").aliases
    return out, pd.read_csv(home / "decisions.csv"), {"promotion": version.tags["promotion"], **aliases}


@pytest.mark.slow
def test_main_job_trains_promotes_and_decides_with_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's promoted branch. A 4,000-player world holds too little evidence for the guard to trust a
    learned policy (the next test), so the real decision is overruled here: when a model earns trust is the
    promotion tests' and the coverage benchmark's business."""
    from training import train
    from training.promotion import Promotion

    real = train.promotion_decision

    def accept(*args: object, **kwargs: object) -> Promotion:
        decided = real(*args, **kwargs)  # type: ignore[arg-type]
        return Promotion(True, f"promoted: first champion (forced by the test; it said: {decided.reason})")

    monkeypatch.setattr(train, "promotion_decision", accept)
    out, decisions, registry = run_main_job(tmp_path / "home", small_model_configs(tmp_path))
    flat = " ".join(out.split())
    assert "PASSED" in out and "materialised" in out and (tmp_path / "home" / "feast" / "online.db").is_file()
    assert "registered rekindle-response version 1 as challenger" in flat
    assert registry["promotion"].startswith("promoted: first champion (forced by the test")
    assert " ".join(registry["promotion"].split()) in flat  # the reason printed is the one recorded
    assert str(registry["champion"]) == "1"  # the alias moved with the decision
    assert (decisions["model_version"] == "rekindle-response/1").all()  # the version the alias resolved to
    assert decisions["event_type"].nunique() >= 3  # the learned policy, not one arm for everyone
    truth = pd.read_parquet(tmp_path / "home" / "truth" / "truth.parquet")
    assert set(decisions["player_id"]) == set(truth["player_id"])


@pytest.mark.slow
def test_main_job_falls_back_when_no_model_earns_trust(tmp_path: Path) -> None:
    """On a 4,000-player world the guard refuses the learned policy (too little evidence, or it does not beat
    both baselines), and every candidate gets the fallback the refusal names: one arm for everyone, or the
    best arm of its segment, with the challenger's expected values."""
    out, decisions, registry = run_main_job(tmp_path / "home", small_model_configs(tmp_path))
    flat = " ".join(out.split())
    assert registry["promotion"].startswith("not promoted: ") and "champion" not in registry
    assert (decisions["model_version"] == "rekindle-response/1").all()  # the challenger's expected values
    assert decisions["expected_cost"].ge(0).all()
    arm = decisions["event_type"] + "@" + decisions["reward"].astype(str)
    one = re.search(r"every candidate gets (\w+@\d+)", flat)
    rule = re.search(r"every candidate gets the best arm per segment \(([^)]*)\)", flat)
    assert (one is None) != (rule is None), flat[-2000:]
    ruled = (
        ~decisions["explored"] & ~decisions["holdout"] & ~decisions["reason"].str.startswith("frequency")
    ).to_numpy()
    assert ruled.mean() > 0.8 and (decisions.loc[decisions["holdout"], "event_type"] == "none").all()
    decisions, arm = decisions[ruled], arm[ruled]
    if one is not None:
        assert (arm == one.group(1)).all()
        assert f"fall back to {one.group(1)} for everyone" in flat
    else:
        assert rule is not None
        mapping = dict(part.split(": ") for part in rule.group(1).split(", "))
        mapped = decisions["segment"].map(mapping)
        sent = np.where(decisions["event_type"] == "none", "none", arm)
        assert (sent == np.where(mapped.isna(), "none", mapped)).all()


def test_respond_moves_the_world_and_the_database_stays_valid(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert invoke("--home", home, "simulate", "--players", "2000", "--days", "60", "--seed", "4")[0] == 0
    truth = pd.read_parquet(tmp_path / "truth" / "truth.parquet")
    players = truth["player_id"].drop_duplicates().head(200).to_numpy()
    decisions = pd.DataFrame(
        {
            "player_id": players,
            "event_type": ["free_spins", "cashback", "none", "login_reward"] * 50,
            "reward": [15_000, 10_000, 0, 3_000] * 50,
            "sent_at": _as_of(tmp_path),
        }
    )
    path = tmp_path / "decisions.parquet"
    decisions.to_parquet(path)
    code, out = invoke(
        "--home",
        home,
        "simulate",
        "respond",
        "--decisions",
        str(path),
        "--drift-event",
        "free_spins=0.5",
        "--drift-fatigue",
        "0.7",
        "--drift-channel-mix",
        '{"affiliate": 0.7, "organic": 0.3}',
    )
    assert code == 0, out
    assert "200 decisions applied" in out
    responses = list((tmp_path / "truth" / "responses").glob("*.parquet"))
    assert len(responses) == 1 and len(pd.read_parquet(responses[0])) == 200
    code, out = invoke("--home", home, "validate", "--now", "2030-01-01T00:00:00")
    assert code == 0, out
    result = CliRunner().invoke(
        main, ["--home", home, "simulate", "respond", "--decisions", str(path), "--drift-event", "free_spins"]
    )
    assert result.exit_code == 2
    assert "TYPE=MULTIPLIER" in result.output


@pytest.mark.postgres
def test_production_path_on_postgresql(pg_database_factory, tmp_path: Path) -> None:
    """simulate -> validate -> segment against the real PostgreSQL; the system's
    tables land in its own schema, the platform's tables are left alone."""
    url = pg_database_factory()
    home = str(tmp_path)
    assert invoke("--home", home, "--db", url, "simulate", "--players", "1500", "--days", "60")[0] == 0
    code, out = invoke("--home", home, "--db", url, "validate")
    assert code == 0, out
    code, out = invoke("--home", home, "--db", url, "segment", "--as-of", "2026-10-05T10:00:00")
    assert code == 0, out
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    stored = pd.read_sql("SELECT COUNT(*) AS n FROM rekindle.segments", engine)["n"].iloc[0]
    assert stored == 1500
    public = set(sa.inspect(engine).get_table_names(schema="public"))
    assert public == {"players", "player_sessions", "promotions", "promotion_players", "money_flows"}


def test_run_never_touches_a_database_given_with_db(tmp_path: Path) -> None:
    other = tmp_path / "platform-of-record.db"
    code, out = invoke(
        "--home",
        str(tmp_path / "h"),
        "--db",
        f"sqlite:///{other}",
        "run",
        "--players",
        "500",
        "--days",
        "40",
        "--weeks",
        "0",
    )
    assert code == 0, out
    assert "uses the embedded default" in out
    assert not other.exists()
    assert (tmp_path / "h" / "platform.db").is_file()


def test_segment_checks_out_path_before_any_work(world: Path, tmp_path: Path) -> None:
    home = tmp_path / "h"
    code, out = invoke(
        "--home",
        str(home),
        "--db",
        f"sqlite:///{world / 'platform.db'}",
        "segment",
        "--as-of",
        _as_of(world),
        "--out",
        str(tmp_path / "segments.xlsx"),
    )
    assert code == 2
    assert "'.xlsx' is not one of" in out
    assert not (home / "rekindle.db").exists(), "nothing stored when the file cannot be written"


def test_segment_refuses_an_as_of_before_the_first_player(world: Path) -> None:
    code, out = invoke("--home", str(world), "segment", "--as-of", "1990-01-01T00:00:00")
    assert code == 2
    assert "before the first player registered" in out


def test_default_as_of_ignores_invalid_future_rows(world: Path, tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    db.write_bytes((world / "platform.db").read_bytes())
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:
        conn.exec_driver_sql("UPDATE player_sessions SET \"startedAt\" = '2099-01-01 00:00:00.000000' WHERE id = 3")
    code, out = invoke("--home", str(tmp_path / "h"), "segment", "--db", f"sqlite:///{db}")
    assert code == 0, out
    assert "player_sessions 1" in out
    assert "2099" not in out.split("latest valid event")[1].splitlines()[0]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("", ".csv", "cannot read decisions"),
        ('not,a\n"broken', ".csv", "cannot read decisions"),
        ("garbage", ".parquet", "cannot read decisions"),
        ("", ".xlsx", "must be .csv or .parquet"),
    ],
    ids=["empty-csv", "malformed-csv", "corrupt-parquet", "wrong-suffix"],
)
def test_respond_reports_unreadable_decision_files(
    world: Path, tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"decisions{suffix}"
    path.write_text(content)
    result = CliRunner().invoke(main, ["--home", str(world), "simulate", "respond", "--decisions", str(path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_respond_refuses_unknown_drift_settings(world: Path, tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("player_id,event_type,reward,sent_at\n")
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(world),
            "simulate",
            "respond",
            "--decisions",
            str(path),
            "--drift-channel-mix",
            '{"martians": 1}',
        ],
    )
    assert result.exit_code == 2
    assert "unknown: ['martians']" in result.output
    result = CliRunner().invoke(
        main, ["--home", str(world), "simulate", "respond", "--decisions", str(path), "--drift-event", "bogus=0.5"]
    )
    assert result.exit_code == 2
    assert "unknown: ['bogus']" in result.output


def test_simulate_refuses_an_existing_database_before_simulating(world: Path) -> None:
    truth_before = (world / "truth" / "truth.parquet").stat().st_mtime
    result = CliRunner().invoke(main, ["--home", str(world), "simulate", "--players", "3000", "--days", "60"])
    assert result.exit_code == 2
    assert "not empty" in result.output or "already exists" in result.output
    assert "simulate 3,000 players" not in result.output, "refused before any work"
    assert (world / "truth" / "truth.parquet").stat().st_mtime == truth_before


def test_db_init_names_missing_contract_columns(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    with sa.create_engine(f"sqlite:///{db}").begin() as conn:
        conn.exec_driver_sql('CREATE TABLE players (id INTEGER PRIMARY KEY, "createdAt" TEXT)')
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "db", "init", "--db", f"sqlite:///{db}"])
    assert result.exit_code == 2
    assert "lack contract columns" in result.output and "vipLevel" in result.output


def test_negative_seed_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "simulate", "--seed", "-1"])
    assert result.exit_code == 2
    assert "-1" in result.output


@pytest.mark.parametrize(
    ("variants", "message"),
    [("policy=0.5,bogus=0.5", "unknown variants ['bogus']"), ("policy=0.5,holdout=0.6", "sum to 1"),
     ("policy", "'policy' is not VARIANT=SHARE")],
)  # fmt: skip
def test_run_refuses_bad_loop_variants_before_any_work(tmp_path: Path, variants: str, message: str) -> None:
    code, out = invoke("--home", str(tmp_path / "h"), "run", "--variants", variants)
    assert code == 2 and message in out, out
    assert not (tmp_path / "h").exists()  # refused before the simulation: nothing written
