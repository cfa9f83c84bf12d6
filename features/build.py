"""`rekindle features build`: platform database -> point-in-time snapshots -> offline store -> registry.

Steps: leave out invalid rows (the validator's filters), load the per-day facts
(:mod:`features.facts`), compute the daily snapshots of every family per chunk
of players (:mod:`features.snapshots`, :mod:`features.cf`), write them to the
offline store (:mod:`features.offline`, all or nothing) and apply the Feast
repository. A manifest (``<home>/feast/build.json``) records what was built.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from core.progress import SILENT, Progress
from features import vocabulary
from features.cf import event_type_embeddings, fit_event_factors, player_embeddings
from features.content import event_type_content, return_games
from features.facts import Facts, load_facts
from features.families import ENTITY, all_families
from features.families import games as families_games
from features.layout import FeatureStoreError, layout
from features.manifest import (
    business_window,
    check_business,
    read_manifest,
    store_description,
    with_vocabulary,
    write_manifest,
)
from features.manifest import (
    vocabulary as vocabulary_of,
)
from features.offline import VIEW_MODES, writer
from features.repo import event_type_service_name, player_service_name
from features.snapshots import player_snapshots, profile_frame, snapshot_days
from features.store import open_store
from platform_db.db import connect, require_tables, safe_url
from segmentation.service import event_time_range
from system_db.store import SystemStore
from validation.checks import filters_for_invalid_rows


class BuildError(RekindleError, ValueError):
    """The build's arguments do not fit the data."""


@dataclass
class BuildSummary:
    as_of: datetime
    since: datetime | None
    first_snapshot: datetime
    snapshots: int
    players: int
    rows: dict[str, int]
    seconds: dict[str, float]
    store: str
    left_out: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    games: list[str] = field(default_factory=list)  # the platform's, as the build found or was told them
    event_types: list[str] = field(default_factory=list)


def default_as_of(after_latest: datetime) -> datetime:
    """The first full hour at or after the latest event (so daily snapshots fall on round times)."""
    hour = after_latest.replace(minute=0, second=0, microsecond=0)
    return hour if hour == after_latest else hour + timedelta(hours=1)


def previous_build(cfg: Config) -> dict[str, Any] | None:
    """The manifest of the last build, if it was of the same platform database into the same store."""
    lay = layout(cfg)
    if not lay.manifest_path.is_file():
        return None
    manifest = read_manifest(cfg)
    if manifest.get("db") != safe_url(cfg.db_url) or manifest.get("store") != store_description(cfg):
        return None
    if manifest.get("business", business_window(cfg)) != business_window(cfg):
        return None  # other windows or dormancy: every snapshot changes, so nothing carries over
    return manifest


def observe_attributes(cfg: Config, facts: Facts, observed_at: datetime) -> pd.DataFrame:
    """Record the players' current channel, VIP level and status in the system store as seen at
    ``observed_at`` (the platform's latest event: its rows hold the values of that time, not of any
    earlier one), and return every observation recorded so far."""
    store = SystemStore(cfg.system_db_url)
    try:
        store.record_attributes(facts.players, observed_at)
        return store.read_attributes()
    finally:
        store.engine.dispose()


def build_features(
    cfg: Config,
    *,
    as_of: datetime | None = None,
    since: datetime | None = None,
    progress: Progress = SILENT,
    now: datetime | None = None,
    row_checks: bool = True,
) -> BuildSummary:
    """Build the offline store of ``cfg`` from its platform database; see the module docstring."""
    bar = progress
    seconds: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    engine = connect(cfg.db_url)
    require_tables(engine)
    clock = now or datetime.now(UTC).replace(tzinfo=None)
    filters: dict[str, str] | None = None
    left_out: dict[str, int] = {}
    if row_checks:  # the validator's row checks cost more than the build itself on large platforms
        filters, left_out = filters_for_invalid_rows(engine, max(clock, as_of) if as_of else clock)
    else:
        notes.append("row checks skipped (--skip-row-checks): every platform row is used")
    if left_out:
        notes.append(
            "left out invalid rows (see `rekindle validate`): " + ", ".join(f"{t} {n:,}" for t, n in left_out.items())
        )
    first, after_latest = event_time_range(engine, filters)
    if as_of is None:
        as_of = default_as_of(after_latest)
        notes.append(
            f"--as-of not given: using the first full hour after the latest valid event, {as_of:%Y-%m-%dT%H:%M}"
        )
    elif as_of <= first:
        raise BuildError(
            f"--as-of {as_of:%Y-%m-%dT%H:%M:%S} is not after the first registration ({first:%Y-%m-%dT%H:%M:%S}): "
            "there is no history to build features from"
        )
    if since is not None and since > as_of:
        raise BuildError(f"--since {since:%Y-%m-%dT%H:%M:%S} is after --as-of {as_of:%Y-%m-%dT%H:%M:%S}")
    lay = layout(cfg)
    previous = previous_build(cfg)
    if since is not None:
        if lay.manifest_path.is_file():
            check_business(cfg, read_manifest(cfg), "extend the last build with --since")
        if previous is None:
            raise FeatureStoreError(
                f"--since needs an earlier build of {safe_url(cfg.db_url)} into this store ({store_description(cfg)}) "
                f"in {lay.root}; run `rekindle features build` without --since first"
            )
        if since > previous["as_of"] + timedelta(days=1):
            raise BuildError(
                f"--since {since:%Y-%m-%dT%H:%M:%S} would leave a gap: the last build ends at "
                f"{previous['as_of']:%Y-%m-%dT%H:%M:%S}; pass --since at or before it"
            )
    seconds["validate"] = time.perf_counter() - t0

    open_store(cfg, apply=False)  # fails now, not after minutes of work, if PostgreSQL or Redis is down
    t = time.perf_counter()
    try:
        cfg = vocabulary.discover(cfg, engine, filters, as_of)
        facts = load_facts(engine, cfg, as_of, filters=filters, progress=bar)
        promotions = vocabulary.promotion_terms(engine, filters, as_of)
    finally:
        engine.dispose()
    types = cfg.features.event_types or vocabulary.offered_event_types(facts.offers)
    cfg = with_vocabulary(cfg, {"event_types": types})
    seconds["load"] = time.perf_counter() - t

    families = {f.view: f for f in all_families(cfg)}
    days = snapshot_days(facts, cfg, since=since)
    rows = dict.fromkeys(families, 0)
    out = writer(lay, families.values(), VIEW_MODES, since)
    try:
        t = time.perf_counter()
        factors = fit_event_factors(facts.offers, cfg, as_of, days)
        seconds["cf_fit"] = time.perf_counter() - t
        t = time.perf_counter()
        bar.start("snapshots", len(facts.players))
        created = facts.players.set_index(ENTITY)["created_at"]
        observed = observe_attributes(cfg, facts, after_latest)
        for chunk in player_snapshots(facts, cfg, days, observed=observed):
            for name, frame in chunk.items():
                rows[f"player_{name}"] += out.write(families[f"player_{name}"], frame)
            ids = chunk["activity"][ENTITY].unique()
            emb = player_embeddings(facts.offers, factors, ids, days, created.loc[ids].to_numpy())
            rows["player_cf"] += out.write(families["player_cf"], emb)
            bar.advance("snapshots", len(ids))
            del chunk, emb  # else the last chunk's frames stay alive while the next one is computed
        rows["event_type_cf"] += out.write(families["event_type_cf"], event_type_embeddings(factors))
        times = np.datetime64(as_of, "us") + days.astype("timedelta64[D]").astype("timedelta64[us]")
        returns = return_games(facts.offers, facts.session_days, families_games(cfg), np.datetime64(as_of, "us"))
        content = event_type_content(cfg, facts.offers, promotions, returns, types, times)
        rows["event_type_content"] += out.write(families["event_type_content"], content)
        rows["player_profile"] += out.write(families["player_profile"], profile_frame(observed))
        seconds["snapshots"] = time.perf_counter() - t
        t = time.perf_counter()
        out.commit()
        seconds["commit"] = time.perf_counter() - t
    except BaseException:
        out.abort()
        raise
    first_snapshot = as_of + timedelta(days=int(days.min()))
    summary = BuildSummary(
        as_of=as_of,
        since=since,
        first_snapshot=first_snapshot,
        snapshots=len(days),
        players=len(facts.players),
        rows=rows,
        seconds=seconds,
        store=store_description(cfg),
        left_out=left_out,
        notes=notes,
        games=list(cfg.features.games or []),
        event_types=list(types),
    )
    _write_manifest(cfg, summary)
    open_store(cfg)  # the repository of these families (the platform's games and event types), applied
    summary.seconds["total"] = time.perf_counter() - t0
    return summary


def _write_manifest(cfg: Config, summary: BuildSummary) -> None:
    data: dict[str, Any] = asdict(summary)
    data |= {
        "db": safe_url(cfg.db_url),
        "built_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "services": [player_service_name(), event_type_service_name()],
        "business": business_window(cfg),
        "vocabulary": vocabulary_of(cfg),
    }
    write_manifest(cfg, data)
