"""What the dashboard's pages show, read from the system store with aggregate queries (the stores hold
millions of rows; the pages get a few dozen)."""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import pandas as pd
import sqlalchemy as sa
from cachetools import TTLCache, cached

from core.config import Config
from platform_db.db import read_sql
from system_db.decision_log import DecisionLog
from system_db.store import SystemStore

_logs: WeakKeyDictionary[SystemStore, DecisionLog] = WeakKeyDictionary()
_outcome_tables: WeakKeyDictionary[SystemStore, Any] = WeakKeyDictionary()


def _log(store: SystemStore) -> DecisionLog:
    """The store's decision log, opened once (opening checks its columns and indexes: DDL, not for every page)."""
    log = _logs.get(store)
    if log is None:
        log = _logs[store] = DecisionLog(store)
    return log


def _outcomes(store: SystemStore) -> Any:
    """The store's outcomes tables, opened once."""
    from system_db.outcomes import Outcomes

    got = _outcome_tables.get(store)
    if got is None:
        got = _outcome_tables[store] = Outcomes(store)
    return got


def latest_segmentation_at(store: SystemStore) -> pd.Timestamp | None:
    """The time of the latest segmentation stored (read from the table's primary key), or None."""
    store.ensure()
    with store.engine.connect() as conn:
        at = conn.execute(sa.select(sa.func.max(store.segments.c.as_of))).scalar()
    return None if at is None else pd.Timestamp(at)


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


def latest_batch_at(store: SystemStore) -> pd.Timestamp | None:
    """The decision time of the latest batch in the decision log, or None before any."""
    t = _log(store).table
    latest = read_sql(store.engine, sa.select(sa.func.max(t.c.decided_at).label("at")).where(t.c.source == "batch"))
    at = latest["at"].iloc[0] if len(latest) else None
    return None if at is None or pd.isna(at) else pd.Timestamp(at)


def latest_batch_by_arm(store: SystemStore) -> tuple[pd.Timestamp | None, pd.DataFrame]:
    """The latest batch's time and its decisions per arm: arm, decisions, expected cost and incremental net
    value (KRW, summed)."""
    t = _log(store).table
    at = latest_batch_at(store)
    if at is None:
        return None, pd.DataFrame(columns=["arm", "decisions", "expected_cost", "incremental_net_value"])
    query = (
        sa.select(
            t.c.event_type, t.c.reward, sa.func.count().label("decisions"),
            sa.func.sum(t.c.expected_cost).label("expected_cost"),
            sa.func.sum(t.c.incremental_net_value).label("incremental_net_value"),
        )
        .where(t.c.source == "batch", t.c.decided_at == at.to_pydatetime())
        .group_by(t.c.event_type, t.c.reward)
    )  # fmt: skip
    frame = read_sql(store.engine, query)
    frame.insert(0, "arm", _arm_column(frame))
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

    t = _log(store).table
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


FIGURES = {  # a model's evaluation on its held-out campaigns (off-policy, doubly robust), from its MLflow run
    "net_value": "learned_net_value_dr_hurdle",  # KRW per candidate under the learned policy
    "best_single_net_value": "best_single_net_value_dr_hurdle",  # ... under the best single arm
    "reengaged": "learned_reengaged_dr_hurdle",
    "mean_confidence": "mean_confidence",
}


def _evaluation(run_id: str | None) -> dict[str, float | None]:
    """The evaluation figures of a model version's training run (None where the run has none)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    metrics: dict[str, float] = {}
    if run_id:
        with contextlib.suppress(MlflowException):
            metrics = MlflowClient().get_run(run_id).data.metrics
    return {k: metrics.get(m) for k, m in FIGURES.items()}


def roi_over_time(store: SystemStore) -> pd.DataFrame:
    """Realised against predicted incremental net value per offer, pooled over each feedback run's (segment,
    arm) cells weighted by their offers: measured_at, predicted, realised, its standard error, offers."""
    cells = _outcomes(store).read_cells()
    if cells.empty:
        return pd.DataFrame(columns=["measured_at", "predicted", "realised", "se", "offers"])
    w = cells["n_offered"].astype(float)
    cells = cells.assign(wp=cells["predicted"] * w, wr=cells["realised"] * w, wv=(cells["se"] * w) ** 2, w=w)
    g = cells.groupby("measured_at", as_index=False)[["wp", "wr", "wv", "w"]].sum()
    return pd.DataFrame({
        "measured_at": g["measured_at"], "predicted": g["wp"] / g["w"], "realised": g["wr"] / g["w"],
        "se": np.sqrt(g["wv"]) / g["w"], "offers": g["w"].astype(int),
    })  # fmt: skip


def drift_reports(cfg: Config, last: int = 12) -> list[dict[str, object]]:
    """The monitoring runs' Evidently reports (``<home>/monitor/*.html``), newest first: name, when written."""
    folder = cfg.path("monitor")
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.html"), key=lambda f: f.stat().st_mtime, reverse=True)[:last]
    return [{"name": f.name, "at": pd.Timestamp(f.stat().st_mtime, unit="s")} for f in files]


REGISTRY_SECONDS = 30  # the registry's answers are kept this long: an alias moves at most once a retraining
_registry: TTLCache[tuple[str, str, str], object] = TTLCache(maxsize=32, ttl=REGISTRY_SECONDS)
_registry_lock = threading.Lock()


@cached(_registry, key=lambda cfg: ("models", str(cfg.home), cfg.training.model_name), lock=_registry_lock)
def served_models(cfg: Config) -> list[dict[str, object]]:
    """The registry's champion, challenger and canary: alias, version, why (the promotion's reason), the
    fallback rule it serves when no model is trusted."""
    from training import registry

    name, rows = cfg.training.model_name, list[dict[str, object]]()
    with registry.tracking(cfg):
        for alias in (registry.CHAMPION, registry.CHALLENGER, registry.CANARY):
            version = registry.alias_version(name, alias)
            if version is None:
                none = {"alias": alias, "version": None, "reason": "none", "fallback_rule": ""}
                rows.append({**none, **_evaluation(None)})
                continue
            rule = registry.version_tag(name, version, registry.FALLBACK_TAG) or ""
            reason = registry.version_tag(name, version, "promotion") or ""
            figures = _evaluation(registry.version_tag(name, version, "run_id"))
            rows.append({"alias": alias, "version": version, "reason": reason, "fallback_rule": rule, **figures})
    return rows


@cached(_registry, key=lambda cfg: ("arms", str(cfg.home), cfg.training.model_name), lock=_registry_lock)
def served_arms(cfg: Config) -> pd.DataFrame | None:
    """The arm table of the model serving decides with (the champion, else the challenger), or None."""
    from training import registry

    name = cfg.training.model_name
    with registry.tracking(cfg):
        version = registry.alias_version(name, registry.CHAMPION) or registry.alias_version(name, registry.CHALLENGER)
        return None if version is None else registry.load_model(registry.model_uri(name, str(version))).arms


def _arm_column(frame: pd.DataFrame) -> pd.Series:
    pairs = zip(frame["event_type"], frame["reward"], strict=True)
    return pd.Series([e if e == "none" else f"{e}@{int(r)}" for e, r in pairs], index=frame.index, dtype=object)


def wilson(successes: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a proportion (95% by default): right at small counts and near 0 or 1."""
    n = np.asarray(n, float)
    p = np.divide(successes, n, out=np.zeros_like(n), where=n > 0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.where(n > 0, centre - half, 0.0), np.where(n > 0, centre + half, 1.0)


def history_by_segment(store: SystemStore) -> pd.DataFrame:
    """What re-engaged each segment: per segment and arm of every decision whose outcome is measured, the
    decisions, the share that re-engaged with its Wilson 95% interval, and the mean net value (KRW). "none"
    holds the no-offer decisions (the holdout and the model's own), the reference an offer is read against."""
    d, o = _log(store).table, _outcomes(store).table
    query = (
        sa.select(
            d.c.segment, d.c.event_type, d.c.reward, sa.func.count().label("decisions"),
            sa.func.sum(sa.case((o.c.reengaged, 1), else_=0)).label("reengaged"),
            sa.func.avg(o.c.net_value).label("net_value"),
        )
        .select_from(d.join(o, o.c.decision_id == d.c.decision_id))
        .where(d.c.segment.is_not(None))
        .group_by(d.c.segment, d.c.event_type, d.c.reward)
    )  # fmt: skip
    frame = read_sql(store.engine, query)
    if frame.empty:
        return pd.DataFrame(columns=["segment", "arm", "decisions", "reengaged", "rate", "low", "high", "net_value"])
    frame.insert(1, "arm", _arm_column(frame))
    frame["rate"] = frame["reengaged"] / frame["decisions"]
    frame["low"], frame["high"] = wilson(frame["reengaged"].to_numpy(float), frame["decisions"].to_numpy(float))
    return frame.drop(columns=["event_type", "reward"]).sort_values(["segment", "arm"]).reset_index(drop=True)


def arm_mix(store: SystemStore) -> tuple[pd.Timestamp | None, pd.DataFrame]:
    """The latest batch's decisions per segment and arm: segment, arm, decisions, share of the segment."""
    t = _log(store).table
    at = latest_batch_at(store)
    if at is None:
        return None, pd.DataFrame(columns=["segment", "arm", "decisions", "share"])
    query = (
        sa.select(t.c.segment, t.c.event_type, t.c.reward, sa.func.count().label("decisions"))
        .where(t.c.source == "batch", t.c.decided_at == at.to_pydatetime())
        .group_by(t.c.segment, t.c.event_type, t.c.reward)
    )
    frame = read_sql(store.engine, query)
    frame["segment"] = frame["segment"].fillna("unknown")
    frame.insert(1, "arm", _arm_column(frame))
    frame["share"] = frame["decisions"] / frame.groupby("segment")["decisions"].transform("sum")
    frame = frame.drop(columns=["event_type", "reward"]).sort_values(["segment", "decisions"], ascending=[True, False])
    return pd.Timestamp(at), frame.reset_index(drop=True)


def player_decisions(store: SystemStore, player_id: int, last: int = 10) -> pd.DataFrame:
    """A player's latest logged decisions, newest first: when, source, segment, arm, reason, expected values."""
    t = _log(store).table
    query = (
        sa.select(
            t.c.decided_at, t.c.source, t.c.segment, t.c.event_type, t.c.reward, t.c.reason, t.c.expected_cost,
            t.c.incremental_net_value, t.c.explored, t.c.holdout, t.c.model_version, t.c.experiment, t.c.variant,
        )
        .where(t.c.player_id == player_id)
        .order_by(t.c.decided_at.desc())
        .limit(last)
    )  # fmt: skip
    frame = read_sql(store.engine, query)
    frame.insert(3, "arm", _arm_column(frame) if len(frame) else pd.Series(dtype=object))
    return frame.drop(columns=["event_type", "reward"])


def dormant_trend(store: SystemStore, last: int = 26) -> pd.DataFrame:
    """The dormant players per segment at each of the latest ``last`` segmentations: as_of, segment, players."""
    t = store.segments
    store.ensure()
    times = sa.select(t.c.as_of).distinct().order_by(t.c.as_of.desc()).limit(last).subquery()
    query = (
        sa.select(t.c.as_of, t.c.segment, sa.func.count().label("players"))
        .where(t.c.is_dormant, t.c.as_of.in_(sa.select(times.c.as_of)))
        .group_by(t.c.as_of, t.c.segment)
        .order_by(t.c.as_of)
    )
    return read_sql(store.engine, query)


def recent_campaigns(store: SystemStore, last: int = 8) -> pd.DataFrame:
    """The latest ``last`` batches, newest first: when, decisions, offers, expected reward cost; and once their
    outcomes are measured: how many, the share re-engaged among the offered and among the held out, the
    realised reward cost and net value (KRW)."""
    d, o = _log(store).table, _outcomes(store).table
    times = (
        sa.select(d.c.decided_at).where(d.c.source == "batch").distinct()
        .order_by(d.c.decided_at.desc()).limit(last).subquery()
    )  # fmt: skip
    offered = d.c.event_type != "none"
    query = (
        sa.select(
            d.c.decided_at.label("at"), sa.func.count().label("decisions"),
            sa.func.sum(sa.case((offered, 1), else_=0)).label("offers"),
            sa.func.sum(d.c.expected_cost).label("expected_cost"),
            sa.func.count(o.c.decision_id).label("measured"),
            sa.func.sum(sa.case((offered & o.c.reengaged, 1), else_=0)).label("offers_reengaged"),
            sa.func.sum(sa.case((offered & o.c.decision_id.is_not(None), 1), else_=0)).label("offers_measured"),
            sa.func.sum(sa.case((d.c.holdout & o.c.reengaged, 1), else_=0)).label("holdout_reengaged"),
            sa.func.sum(sa.case((d.c.holdout & o.c.decision_id.is_not(None), 1), else_=0)).label("holdout_measured"),
            sa.func.sum(o.c.reward_cost).label("reward_cost"), sa.func.sum(o.c.net_value).label("net_value"),
        )
        .select_from(d.outerjoin(o, o.c.decision_id == d.c.decision_id))
        .where(d.c.source == "batch", d.c.decided_at.in_(sa.select(times.c.decided_at)))
        .group_by(d.c.decided_at)
        .order_by(d.c.decided_at.desc())
    )  # fmt: skip
    frame = read_sql(store.engine, query)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["offered_rate"] = frame["offers_reengaged"] / frame["offers_measured"].where(frame["offers_measured"] > 0)
        frame["holdout_rate"] = frame["holdout_reengaged"] / frame["holdout_measured"].where(
            frame["holdout_measured"] > 0
        )
    return frame


def spent_on(store: SystemStore, day: object) -> float:
    """The online decisions' expected reward cost counted against ``day``'s budget (UTC day), KRW."""
    return _log(store).spent(day)  # type: ignore[arg-type]


def experiment_summary(cfg: Config, name: str) -> dict[str, object] | None:
    """The figures of ``rekindle experiment report NAME`` (``<home>/experiments/NAME/summary.json``), or None
    before the first report."""
    path = cfg.path("experiments", name, "summary.json")
    if not path.is_file():
        return None
    summary: dict[str, object] = json.loads(path.read_text())
    summary["updated"] = pd.Timestamp(path.stat().st_mtime, unit="s")
    return summary
