"""Save and load the world (traits and dynamic state) beside the truth, so
``rekindle simulate respond`` can move the same world forward later."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from simulator.engine import RECENT_OFFERS, World
from simulator.population import Population
from simulator.response import EventTable

STATE_DIR = "world"
STAGED_DIR = "world.staged"
DYNAMIC = ("engaged", "lapse_day", "last_session", "cum_deposits")


class WorldStateError(RekindleError, RuntimeError):
    """The saved world is missing or does not match the database."""


@dataclass
class SavedWorld:
    world: World
    day0: datetime
    meta: dict[str, Any]


def stage_world(
    world: World, truth_dir: Path, *, day0: datetime, db_fingerprint: dict[str, int], extra: dict[str, Any]
) -> Path:
    """Write the world's state beside the current one (``world.staged``); :func:`commit_world` swaps it in."""
    out = truth_dir / STAGED_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    frame = world.pop.to_frame()
    for name in DYNAMIC:
        frame[f"state_{name}"] = getattr(world, name)
    for j in range(RECENT_OFFERS):
        frame[f"state_recent_{j}"] = world.recent_offers[:, j]
    frame.to_parquet(out / "players.parquet", index=False)
    meta = {
        "day": world.day,
        "day0": day0.isoformat(),
        "rng_state": world.rng.bit_generator.state,
        "db_fingerprint": db_fingerprint,
        **extra,
    }
    (out / "world.json").write_text(json.dumps(meta, indent=1, default=str))
    return out


def commit_world(staged: Path, truth_dir: Path) -> None:
    """Swap a staged state in for the current one."""
    current, old = truth_dir / STATE_DIR, truth_dir / (STATE_DIR + ".old")
    if old.exists():
        shutil.rmtree(old)
    if current.exists():
        current.rename(old)
    staged.rename(current)
    if old.exists():
        shutil.rmtree(old)


def save_world(
    world: World, truth_dir: Path, *, day0: datetime, db_fingerprint: dict[str, int], extra: dict[str, Any]
) -> None:
    commit_world(stage_world(world, truth_dir, day0=day0, db_fingerprint=db_fingerprint, extra=extra), truth_dir)


def recover_world(truth_dir: Path, db_fingerprint: dict[str, int]) -> None:
    """Finish or discard a forward run interrupted between its database commit and its state swap."""
    staged = truth_dir / STAGED_DIR
    if not (staged / "world.json").is_file():
        return
    meta = json.loads((staged / "world.json").read_text())
    if meta.get("db_fingerprint") == db_fingerprint:
        commit_world(staged, truth_dir)  # the database has the run's rows: keep its state
    else:
        shutil.rmtree(staged)  # the database never got them


def load_world(truth_dir: Path, config: Config) -> SavedWorld:
    src = truth_dir / STATE_DIR
    if not (src / "world.json").is_file() or not (src / "players.parquet").is_file():
        raise WorldStateError(
            f"no simulated world in {src}: run `rekindle simulate --truth {truth_dir}` first "
            "(forward mode needs its state)"
        )
    meta = json.loads((src / "world.json").read_text())
    frame = pd.read_parquet(src / "players.parquet")
    trait_cols = [c for c in frame.columns if not c.startswith("state_")]
    pop = Population.from_frame(frame[trait_cols])
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng_state"]
    world = World(
        cfg=config.simulator,
        events=EventTable.from_catalog(config.simulator.catalog),
        pop=pop,
        rng=rng,
        dormancy_days=config.business.dormancy_days,
        window=config.business.attribution_days,
        drift=config.simulator.drift,
    )
    if pop.affinity.shape[1] != len(world.events.names):
        raise WorldStateError(
            f"the saved world knows {pop.affinity.shape[1]} event types but the catalog has {len(world.events.names)}; "
            "use the catalog the world was simulated with"
        )
    world.day = int(meta["day"])
    for name in DYNAMIC:
        setattr(world, name, frame[f"state_{name}"].to_numpy().copy())
    world.recent_offers = frame[[f"state_recent_{j}" for j in range(RECENT_OFFERS)]].to_numpy().copy()
    return SavedWorld(world=world, day0=datetime.fromisoformat(meta["day0"]), meta=meta)
