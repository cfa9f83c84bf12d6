"""The simulator's two entry points, with progress bars: build a platform with
history and ground truth, and move it forward with given decisions."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from platform_db.db import DatabaseError, connect, max_id, safe_url
from platform_db.schema import SOURCE_TABLES
from simulator.forward import as_of_of, plan_decisions, read_decisions, run_forward
from simulator.history import simulate_history
from simulator.plots import plot_calibration
from simulator.state import WorldStateError, commit_world, load_world, recover_world, save_world, stage_world
from simulator.tables import IdStart, PlatformTables, build_tables, status_on
from simulator.truth import asof_truth, calibration
from simulator.writer import append_to_platform, check_new_platform, write_new_platform


@dataclass
class SimulationSummary:
    as_of: datetime
    rows: dict[str, int]
    calibration: dict[str, Any]
    truth_dir: Path


def _announce_writes(tables: PlatformTables, progress: Progress) -> None:
    for name, frame in tables.items():
        progress.start(f"write {name}", len(frame))


def fingerprint(url: str) -> dict[str, int]:
    engine = connect(url)
    try:
        return {t: max_id(engine, t) for t in SOURCE_TABLES if t != "players"} | {"players": max_id(engine, "players")}
    finally:
        engine.dispose()


def simulate(config: Config, truth_dir: Path, *, overwrite: bool, progress: Progress = SILENT) -> SimulationSummary:
    """Simulate ``config.simulator`` and write the platform DB and the truth."""
    config.require_simulatable()
    sim = config.simulator
    if truth_dir.exists() and not truth_dir.is_dir():
        raise FileExistsError(f"--truth {truth_dir} is a file, not a directory")
    if truth_dir.exists() and any(truth_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{truth_dir} is not empty; pass --overwrite to replace the truth there")
    check_new_platform(config.db_url, overwrite=overwrite)  # before minutes of work, not after
    history = simulate_history(config, progress=progress)
    world = history.world
    progress.start("ground truth + tables", 2)
    truth = asof_truth(world, config)
    progress.advance("ground truth + tables")
    tables = build_tables(
        history.log,
        world.pop,
        sim,
        config.simulator.catalog,
        history.day0,
        world.day,
        np.random.default_rng(sim.seed + 1),
        window=config.business.attribution_days,
    )
    progress.advance("ground truth + tables")

    # the truth is built aside and swapped in whole, so a failure never leaves half of one
    staging = truth_dir.with_name(truth_dir.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    truth.to_parquet(staging / "truth.parquet", index=False)
    history.decisions.to_parquet(staging / "decisions.parquet", index=False)
    history.decision_arms.to_parquet(staging / "decision_arms.parquet", index=False)
    cal = calibration(truth, history.decisions, world, config)
    cal["as_of"] = history.as_of.isoformat()
    os.environ.setdefault("MPLCONFIGDIR", str(config.path("cache", "matplotlib")))  # keep state under the home
    plot_calibration(cal, history.decisions, staging / "calibration.png")
    (staging / "calibration.json").write_text(json.dumps(cal, indent=1, default=str))
    world.pop.to_frame().assign(player_id=np.arange(1, len(world.pop) + 1)).to_parquet(
        staging / "players.parquet", index=False
    )
    save_world(
        world,
        staging,
        day0=history.day0,
        db_fingerprint={name: int(frame["id"].max()) if len(frame) else 0 for name, frame in tables.items()},
        extra={"seed": sim.seed, "db_url": safe_url(config.db_url), "next_decision_id": world.n_decisions},
    )
    _announce_writes(tables, progress)
    write_new_platform(config.db_url, tables, overwrite=overwrite, progress=progress)
    if truth_dir.exists():
        shutil.rmtree(truth_dir)
    staging.rename(truth_dir)
    return SimulationSummary(history.as_of, {n: len(f) for n, f in tables.items()}, cal, truth_dir)


@dataclass
class ForwardSummary:
    decisions: int
    from_time: datetime
    as_of: datetime
    rows: dict[str, int]
    outcomes: pd.DataFrame
    outcomes_path: Path


def respond(config: Config, decisions_path: Path, truth_dir: Path, *, progress: Progress = SILENT) -> ForwardSummary:
    """Apply decisions to the saved world, append what happens to the database."""
    config.require_simulatable()
    current = fingerprint(config.db_url)
    recover_world(truth_dir, current)
    saved = load_world(truth_dir, config)
    world, day0 = saved.world, saved.day0
    if current != saved.meta["db_fingerprint"]:
        raise WorldStateError(
            f"the database {safe_url(config.db_url)} does not match the world in {truth_dir} "
            f"(last ids {current} vs {saved.meta['db_fingerprint']}): was it simulated with this --truth?"
        )
    frame = read_decisions(decisions_path)
    plan = plan_decisions(frame, world, day0)
    start_day = world.day
    vip_before = world.pop.vip.copy()
    log, outcomes, first_new = run_forward(world, plan, config, day0, progress=progress)
    ids = IdStart(**{t: current[t] + 1 for t in ("player_sessions", "promotions", "promotion_players", "money_flows")})
    if first_new != current["players"]:
        raise DatabaseError(
            f"player ids out of step: the world has {first_new} players, the database {current['players']}"
        )
    tables = build_tables(
        log,
        world.pop,
        config.simulator,
        config.simulator.catalog,
        day0,
        world.day,
        world.rng,
        window=config.business.attribution_days,
        ids=ids,
        first_player=first_new,
        send_jitter=False,  # at the decided time, so a window closes exactly a window after it
    )
    status_moved = (world.pop.status_day[:first_new] >= start_day) & (world.pop.status_day[:first_new] <= world.day)
    changed = np.flatnonzero(status_moved | (world.pop.vip[:first_new] != vip_before[:first_new]))
    tables.player_updates = pd.DataFrame(
        {
            "id": changed + 1,
            "status": status_on(world.pop, changed, world.day),
            "vipLevel": world.pop.vip[changed].astype(np.int64),
        }
    )
    first_decision = int(saved.meta.get("next_decision_id", 0))
    outcomes["decision_id"] += first_decision
    truth = asof_truth(world, config)
    expected = {name: int(frame["id"].max()) if len(frame) else current[name] for name, frame in tables.items()}
    meta = {k: v for k, v in saved.meta.items() if k in ("seed", "db_url")}
    meta["next_decision_id"] = first_decision + len(outcomes)
    # state first (beside the old one), then the database, then swap: a crash leaves a world that matches the DB
    staged = stage_world(world, truth_dir, day0=day0, db_fingerprint=expected, extra=meta)
    _announce_writes(tables, progress)
    append_to_platform(config.db_url, tables, progress=progress)
    commit_world(staged, truth_dir)
    out_dir = truth_dir / "responses"
    out_dir.mkdir(exist_ok=True)
    out_path = out_dir / f"responses-{as_of_of(day0, start_day):%Y%m%dT%H%M}.parquet"
    outcomes.to_parquet(out_path, index=False)
    archive = truth_dir / "history"
    archive.mkdir(exist_ok=True)
    (truth_dir / "truth.parquet").replace(archive / f"truth-{as_of_of(day0, start_day):%Y%m%dT%H%M}.parquet")
    truth.to_parquet(truth_dir / "truth.parquet", index=False)
    return ForwardSummary(
        len(frame),
        as_of_of(day0, start_day),
        as_of_of(day0, world.day),
        {n: len(f) for n, f in tables.items()},
        outcomes,
        out_path,
    )
