"""What the dashboard's pages show, read from the system store with aggregate queries (the stores hold
millions of rows; the pages get a few dozen)."""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from core.config import Config
from platform_db.db import read_sql
from system_db.decision_log import DecisionLog
from system_db.store import SystemStore


def dormant_by_segment(store: SystemStore) -> pd.DataFrame:
    """The dormant players per segment at the latest segmentation: segment, players (most first)."""
    t = store.segments
    store.ensure()
    latest = sa.select(sa.func.max(t.c.as_of)).scalar_subquery()
    query = (
        sa.select(t.c.segment, sa.func.count().label("players"))
        .where(t.c.as_of == latest, t.c.is_dormant)
        .group_by(t.c.segment)
        .order_by(sa.desc("players"), t.c.segment)
    )
    return read_sql(store.engine, query)


def latest_batch_by_arm(store: SystemStore) -> tuple[pd.Timestamp | None, pd.DataFrame]:
    """The latest batch's time and its decisions per arm: arm, decisions, expected cost and incremental net
    value (KRW, summed)."""
    t = DecisionLog(store).table
    latest = read_sql(store.engine, sa.select(sa.func.max(t.c.decided_at).label("at")).where(t.c.source == "batch"))
    at = latest["at"].iloc[0] if len(latest) else None
    if at is None or pd.isna(at):
        return None, pd.DataFrame(columns=["arm", "decisions", "expected_cost", "incremental_net_value"])
    query = (
        sa.select(
            t.c.event_type, t.c.reward, sa.func.count().label("decisions"),
            sa.func.sum(t.c.expected_cost).label("expected_cost"),
            sa.func.sum(t.c.incremental_net_value).label("incremental_net_value"),
        )
        .where(t.c.source == "batch", t.c.decided_at == at)
        .group_by(t.c.event_type, t.c.reward)
    )  # fmt: skip
    frame = read_sql(store.engine, query)
    pairs = zip(frame["event_type"], frame["reward"], strict=True)
    frame.insert(0, "arm", [e if e == "none" else f"{e}@{int(r)}" for e, r in pairs])
    frame = frame.drop(columns=["event_type", "reward"]).sort_values("decisions", ascending=False)
    return pd.Timestamp(at), frame.fillna(0.0).reset_index(drop=True)


def experiments(store: SystemStore) -> pd.DataFrame:
    """Every experiment: name, status, started (at, by), stopped, its variants' configured shares."""
    from serving.experiments import from_definition
    from system_db.experiments import ExperimentStore

    listed = ExperimentStore(store).list()
    if listed.empty:
        return pd.DataFrame(columns=["name", "status", "started_at", "started_by", "stopped_at", "shares"])
    pairs = zip(listed["name"], listed["definition"], strict=True)
    shares = [from_definition(n, json.loads(d)).shares for n, d in pairs]
    return (
        listed.drop(columns="definition")
        .assign(shares=pd.Series(shares, index=listed.index))
        .iloc[::-1]
        .reset_index(drop=True)
    )


def exposures(store: SystemStore, name: str, shares: dict[str, float]) -> tuple[pd.DataFrame, float | None]:
    """Players exposed per variant of experiment ``name`` against the configured shares, and the sample
    ratio's chi-square p-value (None before any exposure)."""
    from scipy.stats import chisquare

    t = DecisionLog(store).table
    query = (
        sa.select(t.c.variant, sa.func.count(sa.distinct(t.c.player_id)).label("players"))
        .where(t.c.experiment == name)
        .group_by(t.c.variant)
    )
    got = read_sql(store.engine, query).set_index("variant")["players"]
    frame = pd.DataFrame({"variant": list(shares), "configured": list(shares.values())})
    frame["players"] = [int(got.get(v, 0)) for v in shares]
    total = int(frame["players"].sum())
    frame["share"] = frame["players"] / total if total else 0.0
    if not total:
        return frame, None
    expected = frame["configured"] / frame["configured"].sum() * total
    return frame, float(chisquare(frame["players"], expected).pvalue)


def monitor_runs(store: SystemStore, last: int = 52) -> pd.DataFrame:
    """The latest monitoring runs, oldest first: at, alert, reasons, ROI accuracy, the lift check's z."""
    from system_db.model_events import LoopRecord

    runs = LoopRecord(store).read_runs().tail(last)
    figures = [json.loads(f) if isinstance(f, str) else {} for f in runs["figures"]]
    return pd.DataFrame({
        "at": runs["at"].to_numpy(), "alert": runs["alert"].astype(bool).to_numpy(),
        "reasons": runs["reasons"].fillna("").to_numpy(),
        "roi_accuracy": [f.get("roi_accuracy") for f in figures],
        "lift_z": [f.get("lift_z") for f in figures],
    })  # fmt: skip


def model_events(store: SystemStore, last: int = 50) -> pd.DataFrame:
    """The latest retraining and roll-out events, newest first: at, kind, version, reason."""
    from system_db.model_events import LoopRecord

    events = LoopRecord(store).read_events()
    if events.empty:
        return pd.DataFrame(columns=["at", "kind", "version", "reason"])
    return events[["at", "kind", "version", "reason"]].tail(last).iloc[::-1].reset_index(drop=True)


def served_models(cfg: Config) -> list[dict[str, object]]:
    """The registry's champion, challenger and canary: alias, version, why (the promotion's reason), the
    fallback rule it serves when no model is trusted."""
    from training import registry

    name, rows = cfg.training.model_name, list[dict[str, object]]()
    with registry.tracking(cfg):
        for alias in (registry.CHAMPION, registry.CHALLENGER, registry.CANARY):
            version = registry.alias_version(name, alias)
            if version is None:
                rows.append({"alias": alias, "version": None, "reason": "none", "fallback_rule": ""})
                continue
            rule = registry.version_tag(name, version, registry.FALLBACK_TAG) or ""
            reason = registry.version_tag(name, version, "promotion") or ""
            rows.append({"alias": alias, "version": version, "reason": reason, "fallback_rule": rule})
    return rows


def served_arms(cfg: Config) -> pd.DataFrame | None:
    """The arm table of the model serving decides with (the champion, else the challenger), or None."""
    from training import registry

    name = cfg.training.model_name
    with registry.tracking(cfg):
        version = registry.alias_version(name, registry.CHAMPION) or registry.alias_version(name, registry.CHALLENGER)
        return None if version is None else registry.load_model(registry.model_uri(name, str(version))).arms
