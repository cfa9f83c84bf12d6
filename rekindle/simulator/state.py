"""Save and load the world (traits and dynamic state) beside the truth, so
``rekindle simulate respond`` can move the same world forward later."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rekindle.config import Config
from rekindle.simulator.engine import RECENT_OFFERS, World
from rekindle.simulator.population import Population
from rekindle.simulator.response import EventTable

STATE_DIR = "world"
DYNAMIC = ("engaged", "lapse_day", "last_session", "cum_deposits")


class WorldStateError(RuntimeError):
    """The saved world is missing or does not match the database."""


@dataclass
class SavedWorld:
    world: World
    day0: datetime
    meta: dict[str, Any]


def save_world(
    world: World, truth_dir: Path, *, day0: datetime, db_fingerprint: dict[str, int], extra: dict[str, Any]
) -> None:
    out = truth_dir / STATE_DIR
    out.mkdir(parents=True, exist_ok=True)
    frame = world.pop.to_frame()
    for name in DYNAMIC:
        frame[f"state_{name}"] = getattr(world, name)
    for j in range(RECENT_OFFERS):
        frame[f"state_recent_{j}"] = world.recent_offers[:, j]
    frame.to_parquet(out / "players.parquet.tmp", index=False)
    (out / "players.parquet.tmp").replace(out / "players.parquet")
    meta = {
        "day": world.day,
        "day0": day0.isoformat(),
        "rng_state": world.rng.bit_generator.state,
        "db_fingerprint": db_fingerprint,
        **extra,
    }
    (out / "world.json").write_text(json.dumps(meta, indent=1, default=str))


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
        events=EventTable.from_catalog(config.catalog),
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
