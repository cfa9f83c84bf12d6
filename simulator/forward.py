"""Forward mode: apply the system's decisions to the simulated world and move it on.

Decisions (player_id, event_type, reward, sent_at[, propensity]) are sent at the
first simulated day start at or after ``sent_at``; the world runs until every
decision's attribution window has closed, new players keep arriving, and the
drift knobs (channel mix, fatigue, a changed response to one event type) apply.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from core.progress import SILENT, Progress
from simulator.campaigns import SYSTEM
from simulator.engine import Decisions, Log, World
from simulator.history import finish_decisions, send_with_truth
from simulator.population import draw_population

REQUIRED = ("player_id", "event_type", "reward", "sent_at")


class DecisionFileError(RekindleError, ValueError):
    """The decisions file cannot be applied; the message names the bad values."""


def read_decisions(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DecisionFileError(f"decisions file not found: {path}")
    if path.suffix not in (".csv", ".parquet"):
        raise DecisionFileError(f"decisions file must be .csv or .parquet, got {path.name!r}")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:  # empty, malformed or corrupt files
        raise DecisionFileError(f"cannot read decisions from {path}: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DecisionFileError(f"{path} lacks columns {missing}; expected {list(REQUIRED)} (propensity optional)")
    return frame


def plan_decisions(frame: pd.DataFrame, world: World, day0: datetime) -> dict[int, Decisions]:
    """Check the decisions against the world and group them by simulated day."""
    if frame.empty:
        raise DecisionFileError("the decisions file holds no decisions: nothing to respond to")
    n_players = len(world.pop)
    pid = pd.to_numeric(frame["player_id"], errors="coerce")
    bad = frame.loc[pid.isna() | (pid < 1) | (pid > n_players) | (pid % 1 != 0), "player_id"]
    if len(bad):
        raise DecisionFileError(f"unknown player_id values {bad.head(5).tolist()} (the world has ids 1..{n_players})")
    reward = pd.to_numeric(frame["reward"], errors="coerce")
    none = frame["event_type"].astype(str) == "none"
    # 0 KRW is a reward too: a plain reminder (a catalog's 0-KRW rung), which the world answers with its message pull
    bad_r = frame.loc[reward.isna() | (reward % 1 != 0) | (none & (reward != 0)) | (reward < 0), "reward"]
    if len(bad_r):
        raise DecisionFileError(
            f"invalid reward values {bad_r.head(5).tolist()}: "
            "expected a whole KRW amount, 0 or more (0 with event_type 'none'; 0 for a reminder)"
        )
    try:
        event = world.events.index(frame["event_type"].astype(str).to_numpy())
    except ValueError as exc:
        raise DecisionFileError(str(exc)) from exc
    sent = pd.to_datetime(frame["sent_at"], errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
    if sent.isna().any():
        raise DecisionFileError(f"unparseable sent_at values {frame.loc[sent.isna(), 'sent_at'].head(5).tolist()}")
    now = pd.Timestamp(day0) + pd.Timedelta(days=world.day)
    early = sent < now
    if early.any():
        raise DecisionFileError(
            f"sent_at {sent[early].min()} is before the world's current time {now}: decisions cannot go to the past"
        )
    day = np.ceil(((sent - pd.Timestamp(day0)) / pd.Timedelta(days=1)).to_numpy(dtype=float)).astype(int)
    idx = pid.astype(np.int64).to_numpy() - 1
    order = np.lexsort((day, idx))
    gap = np.diff(day[order])
    overlap = (np.diff(idx[order]) == 0) & (gap < world.window)
    if overlap.any():
        players = sorted(set((idx[order][1:][overlap] + 1).tolist()))[:5]
        raise DecisionFileError(
            f"players {players} have decisions less than {world.window} days apart: "
            "a decision's attribution window must close before the next one for the same player"
        )
    prop = np.full(len(frame), np.nan)
    if "propensity" in frame:
        prop = pd.to_numeric(frame["propensity"], errors="coerce").to_numpy()
        bad_p = ~((prop > 0) & (prop <= 1)) & ~np.isnan(prop)
        if bad_p.any():
            raise DecisionFileError(f"propensity values {prop[bad_p][:5].tolist()} are not probabilities in (0, 1]")
    plan: dict[int, Decisions] = {}
    for d in np.unique(day):
        m = day == d
        plan[int(d)] = Decisions(
            day=int(d),
            player=idx[m],
            event=event[m],
            reward=np.where(event[m] < 0, 0.0, reward.to_numpy()[m]),
            group=np.full(int(m.sum()), SYSTEM, np.int8),
            propensity=prop[m],
        )
    return plan


def run_forward(
    world: World, plan: dict[int, Decisions], config: Config, day0: datetime, *, progress: Progress = SILENT
) -> tuple[Log, pd.DataFrame, int]:
    """Simulate until every planned decision's window has closed.
    Returns the log, the decisions' truth and outcomes, and the first new player's index."""
    sim = config.simulator
    log = Log()
    first_new = len(world.pop)
    last = max(plan) + world.window - 1 if plan else world.day
    arrivals_per_day = sim.players / max(sim.days - 1, 1)
    parts = []
    start = world.day
    task = f"respond to {sum(len(p.player) for p in plan.values()):,} decisions"
    progress.start(task, max(last + 1 - start, 1))
    for d in range(start, last + 1):
        k = int(world.rng.poisson(arrivals_per_day))
        if k:
            newcomers = draw_population(
                world.rng,
                np.full(k, d, np.int32),
                sim,
                config.simulator.catalog,
                last_day=d + 10 * sim.days,
                channel_mix=sim.drift.channel_mix,
            )
            world.grow(newcomers)
        if d in plan:
            dec = plan[d]
            dormant = np.isin(dec.player, world.candidates(d)) & ~world.engaged[dec.player]
            part = send_with_truth(world, dec, log)
            # offers to players still playing go out too, but the truth model covers lapsed players only
            truth_cols = [
                "p_reengage",
                "expected_deposits",
                "expected_cost",
                "p_reengage_none",
                "expected_deposits_none",
            ]
            part.loc[~dormant, truth_cols] = np.nan
            part["dormant_at_send"] = dormant
            parts.append(part)
        world.step(log)
        progress.advance(task)
    return log, finish_decisions(parts, world, day0), first_new


def as_of_of(day0: datetime, day: int) -> datetime:
    return day0 + timedelta(days=day)
