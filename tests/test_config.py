"""Configuration: typed, validated once, with clear errors and documented precedence."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from core.config import ConfigError, load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_load_and_put_state_under_home(tmp_path: Path) -> None:
    cfg = load_config(CONFIG_DIR, home=tmp_path)
    assert cfg.home == tmp_path.resolve()
    assert cfg.db_url == f"sqlite:///{tmp_path.resolve() / 'platform.db'}"
    assert cfg.system_db_url == f"sqlite:///{tmp_path.resolve() / 'rekindle.db'}"
    assert cfg.catalog is None  # the platform's arms come from its history; a catalog is the user's choice
    assert cfg.features.games is None and cfg.features.event_types is None  # found in the history by a build
    sim = cfg.simulator.catalog  # the simulated platform's event types belong to the simulator
    assert len(sim.event_types) >= 5 and all(2 <= len(e.rewards) <= 4 for e in sim.event_types)


def test_precedence_yaml_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REKINDLE_HOME", str(tmp_path / "env"))
    monkeypatch.setenv("REKINDLE_DB_URL", "sqlite:///from-env.db")
    assert load_config(CONFIG_DIR).home == (tmp_path / "env").resolve()
    assert load_config(CONFIG_DIR).db_url == "sqlite:///from-env.db"
    cfg = load_config(CONFIG_DIR, home=tmp_path / "flag", db_url="postgresql://u@h/db")
    assert cfg.home == (tmp_path / "flag").resolve()
    assert cfg.system_db_url == "postgresql://u@h/db"  # system tables: own schema in the same PostgreSQL


def test_overrides_are_validated(tmp_path: Path) -> None:
    cfg = load_config(CONFIG_DIR, home=tmp_path, overrides={"business": {"margin": 0.2}})
    assert cfg.business.margin == 0.2
    with pytest.raises(ConfigError, match="margin"):
        load_config(CONFIG_DIR, home=tmp_path, overrides={"business": {"margin": 3}})
    with pytest.raises(ConfigError, match="Extra inputs are not permitted"):
        load_config(CONFIG_DIR, home=tmp_path, overrides={"business": {"margn": 0.2}})


def test_simulated_campaigns_cannot_overlap_their_windows(tmp_path: Path) -> None:
    cfg = load_config(CONFIG_DIR, home=tmp_path, overrides={"simulator": {"campaigns": {"every_days": 3}}})
    with pytest.raises(ConfigError, match=r"every_days is 3 but must be at least .* to simulate"):
        cfg.require_simulatable()
    # a long attribution window is fine on a real platform's history: only simulating needs the check
    cfg = load_config(CONFIG_DIR, home=tmp_path, overrides={"business": {"attribution_days": 14}})
    assert cfg.business.attribution_days == 14


def test_time_zone_of_the_as_of_time_becomes_utc(tmp_path: Path) -> None:
    cfg = load_config(CONFIG_DIR, home=tmp_path, overrides={"simulator": {"end": "2026-10-05T19:00:00+09:00"}})
    assert cfg.simulator.end == datetime(2026, 10, 5, 10, 0)


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        ("event_types: []", "at least 1 item"),
        ("event_types: [{name: x, rewards: [3, 2]}]", "strictly increasing"),
        ("event_types: [{name: x, rewards: [-5, 0]}]", "non-negative"),
        ("event_types: [{name: x}, {name: x}]", "duplicate event types"),
        ("event_types: [{name: box, new: true}]", "is new: give its rewards"),
        ("event_types: [{name: x, payout_ratio: 1.5}]", "payout_ratio"),
        ("event_types: [{name: x, colour: red}]", "Extra inputs are not permitted"),
        ("event_types: [: :", "not valid YAML"),
    ],
    ids=["empty", "decreasing-ladder", "negative-reward", "duplicate", "new-without-rewards", "ratio", "typo", "yaml"],
)
def test_bad_user_catalogs_are_refused_with_the_reason(tmp_path: Path, catalog: str, message: str) -> None:
    cdir = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, cdir)
    raw = (cdir / "rekindle.yaml").read_text().replace("\ncatalog: null", "\ncatalog: catalog.yaml")
    (cdir / "rekindle.yaml").write_text(raw)
    (cdir / "catalog.yaml").write_text(catalog)
    with pytest.raises(ConfigError, match=message):
        load_config(cdir, home=tmp_path)


def test_a_user_catalog_of_foreign_names_with_a_message_arm_loads(tmp_path: Path) -> None:
    cdir = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, cdir)
    raw = (cdir / "rekindle.yaml").read_text().replace("\ncatalog: null", "\ncatalog: catalog.yaml")
    (cdir / "rekindle.yaml").write_text(raw)
    (cdir / "catalog.yaml").write_text(
        "event_types: [{name: SMS Reminder, rewards: [0]}, {name: reload, payout_ratio: 0.5},"
        " {name: mystery_box, rewards: [5000], new: true}]"
    )
    cat = load_config(cdir, home=tmp_path).catalog
    assert cat is not None and [e.name for e in cat.event_types] == ["SMS Reminder", "reload", "mystery_box"]
    assert cat.get("SMS Reminder").rewards == [0] and cat.get("mystery_box").new and cat.get("nothing") is None


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        ("event_types: [{name: x, rewards: [1], requires_deposit: true}]", "has no min_deposit"),
        ("event_types: [{name: Bad Name, rewards: [1]}]", "pattern"),
        ("event_types: [{name: x, rewards: [-1, 1]}]", "non-negative"),
    ],
    ids=["deposit-without-minimum", "bad-name", "negative-reward"],
)
def test_bad_simulator_catalogs_are_refused_with_the_reason(tmp_path: Path, catalog: str, message: str) -> None:
    cdir = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, cdir)
    (cdir / "simulator_catalog.yaml").write_text(catalog)
    with pytest.raises(ConfigError, match=message):
        load_config(cdir, home=tmp_path)


def test_missing_config_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nowhere")
