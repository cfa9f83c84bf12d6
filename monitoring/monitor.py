"""``rekindle monitor``: one monitoring run. It compares, on fixed-size windows,

- **data drift**: the dormant candidates' features now against the candidates of the weekly snapshots up to
  the training data's end, each feature's threshold calibrated on those weeks' own distances
  (:mod:`monitoring.drift`, Evidently);
- **prediction drift**: the champion's predicted incremental net value of the latest week against its first
  two weeks (its own decisions: no variant, holdout or exploration);
- **outcome drift**: each event type's realised lift against the weeks before, set against the others'
  change, and the champion's realised against predicted incremental re-engagement
  (:mod:`monitoring.outcome_drift`);
- **ROI accuracy**: realised against predicted incremental net value of the recent reliable (segment, arm)
  cells (:mod:`monitoring.roi`);

and decides: drift above its threshold, outcomes off, or ROI accuracy under its floor raise an alert (a
record in the system store, the log, an optional webhook) that triggers retraining. HTML and JSON go under
``<home>/monitor`` and to MLflow.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from monitoring.drift import DriftResult, calibrate, detect, save
from monitoring.feedback import platform_clock
from monitoring.outcome_drift import LiftChange, OutcomeCheck, check_lift_change, check_outcomes
from monitoring.roi import pooled_accuracy, roi_cells
from system_db.model_events import LoopRecord
from system_db.outcomes import Outcomes
from system_db.store import SystemStore

log = logging.getLogger("rekindle.monitor")
CATEGORICAL = ("channel", "segment", "dormancy_stage", "value_tier")
NOT_FEATURES = ("row_id", "player_id", "is_dormant", "is_bonus_hunter")


@dataclass(frozen=True)
class MonitorRun:
    as_of: datetime
    alert: bool
    reasons: list[str]
    figures: dict[str, Any]
    data: DriftResult | None
    prediction: DriftResult | None
    outcomes: OutcomeCheck | None
    lift: LiftChange | None
    roi_accuracy: float | None
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def monitored_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The features both frames hold: every float column and the categorical ones, no ids or flags."""
    both = [c for c in current.columns if c in reference.columns and c not in NOT_FEATURES]
    return [c for c in both if c in CATEGORICAL or pd.api.types.is_float_dtype(current[c])]


REFERENCE_WEEKS = 4  # weekly candidate snapshots up to the training data's end: the reference and its own wobble


def reference_times(cfg: Config) -> list[datetime]:
    """The weekly times of the data-drift reference: the last ``REFERENCE_WEEKS`` weeks up to the latest
    campaign of the training set (what the models learned from), within the feature build."""
    from features.manifest import read_manifest

    path = cfg.path("training", "training_set.parquet")
    if not path.is_file():
        raise FileNotFoundError(f"no training set at {path}: the drift reference; run `rekindle features training-set`")
    end = pd.Timestamp(pd.read_parquet(path, columns=["campaign_at"])["campaign_at"].max()).to_pydatetime()
    first = pd.Timestamp(read_manifest(cfg)["first_snapshot"]).to_pydatetime()
    times = [end - timedelta(days=7 * k) for k in range(REFERENCE_WEEKS)]
    return sorted(t for t in times if t >= first)


def data_drift(cfg: Config, as_of: datetime | None) -> DriftResult:
    """The candidates' features at ``as_of`` (default: the feature build's) against the candidates of the
    reference weeks, each feature's threshold from the distances between those weeks."""
    from features.candidates import candidate_features, snapshot_at
    from features.families import promotions
    from features.manifest import as_built, read_manifest

    parts = []
    for t_ref in reference_times(cfg):
        t, snap = snapshot_at(cfg, t_ref)
        parts.append(candidate_features(cfg, t, snap).assign(reference_week=pd.Timestamp(t)))
    if len(parts) < 2:
        raise FileNotFoundError("the feature build holds fewer than two weeks before the training data's end")
    reference = pd.concat(parts, ignore_index=True)
    built = read_manifest(cfg)["as_of"]
    t, snap = snapshot_at(cfg, None if as_of is None or as_of >= built else as_of)  # the latest features at most
    current = candidate_features(cfg, t, snap)
    ours = {f.name for f in promotions(as_built(cfg)).features}  # what the system itself sent: its own doing
    columns = [c for c in monitored_columns(reference, current) if c not in ours]
    m = cfg.monitor
    thresholds = calibrate(reference, columns, "reference_week", window=m.window, factor=m.threshold_factor)
    return detect(reference, current, thresholds, window=m.window, share=m.drift_share)


def serving_decisions(decisions: pd.DataFrame, champion: str | None) -> pd.DataFrame:
    """The decisions the champion's predictions made (its policy's, not an untrusted model's fallback rows)."""
    if champion is None or decisions.empty:
        return decisions.iloc[0:0]
    return decisions[decisions["model_version"] == champion]


def policy_rows(decisions: pd.DataFrame) -> pd.DataFrame:
    """The rows the policy itself decided: not held out, not explored, in no variant or the policy's."""
    v = decisions["variant"]
    keep = (v.isna() | (v == "policy")) & ~decisions["holdout"].astype(bool) & ~decisions["explored"].astype(bool)
    return decisions[keep]


def prediction_drift(decisions: pd.DataFrame, cfg: Config) -> DriftResult | None:
    """The latest week's predicted incremental net value against the model's first two weeks (each a
    reference period); None before its third week. ``decisions``: one model's."""
    if decisions.empty:
        return None
    at = pd.to_datetime(decisions["decided_at"])
    week = ((at - at.min()) / pd.Timedelta(days=7)).astype(int)
    if week.max() < 2:
        return None
    frame = pd.DataFrame({"predicted_net_value": decisions["incremental_net_value"].astype(float).to_numpy(),
                          "week": week.to_numpy()})  # fmt: skip
    reference = frame[frame["week"] < 2]
    current = frame[frame["week"] == week.max()]
    m = cfg.monitor
    thresholds = calibrate(reference, ["predicted_net_value"], "week", window=m.window, factor=m.threshold_factor)
    return detect(reference, current, thresholds, window=m.window, share=0.5)


def run_monitor(cfg: Config, as_of: datetime | None = None, *, progress: Progress = SILENT) -> MonitorRun:
    from system_db.decision_log import DecisionLog

    clock = as_of or platform_clock(cfg)
    out_dir = cfg.path("monitor")
    stem = f"{clock:%Y%m%dT%H%M%S}"
    reasons: list[str] = []
    figures: dict[str, Any] = {}
    paths: list[Path] = []
    notes: list[str] = []
    m = cfg.monitor

    progress.note("data drift: the candidates' features against the training reference")
    data = data_drift(cfg, as_of)
    figures |= {"data_drift_share": data.share, "data_drifted": data.drifted,
                "data_drifted_columns": int(data.columns["drifted"].sum())}  # fmt: skip
    paths += [p for p in save(data, out_dir, f"data-drift-{stem}") if p is not None]
    if data.drifted:
        reasons.append(f"data drift: {data.summary()}")

    store = SystemStore(cfg.system_db_url)
    progress.note("prediction drift: the latest week's predictions against the model's first week")
    champion = champion_name(cfg)
    decisions = serving_decisions(DecisionLog(store).read(), champion)
    decisions = decisions[pd.to_datetime(decisions["decided_at"]) <= pd.Timestamp(clock)]
    prediction = prediction_drift(policy_rows(decisions), cfg)
    if champion is None:
        notes.append("no champion: the fallback rule serves, and an untrusted model's predictions are not judged")
    elif prediction is None:
        notes.append(f"prediction drift: champion {champion} has not decided for a third week yet")
    else:
        score = float(prediction.columns["score"].iloc[0])
        figures |= {"prediction_drift_score": score, "prediction_drifted": prediction.drifted}
        paths += [p for p in save(prediction, out_dir, f"prediction-drift-{stem}") if p is not None]
        if prediction.drifted:
            reasons.append(f"prediction drift: {prediction.summary()}")

    progress.note("outcomes: realised against predicted")
    every = Outcomes(store).read()
    every = every[pd.to_datetime(every["decided_at"]) <= pd.Timestamp(clock)] if len(every) else every
    lift = check_lift_change(every, days=cfg.business.attribution_days, reference_weeks=m.recent_weeks,
                             z_alert=m.reengage_z, ratio_floor=m.reengage_ratio_floor)  # fmt: skip
    if lift is None:
        notes.append("lift change: no measured week with offers and held-out players after a reference week yet")
    else:
        figures |= {f"lift_{k}": v for k, v in lift.figures().items()}
        if lift.drifted:
            reasons.append(f"outcome drift: {lift.summary()}")
    outcomes = serving_decisions(every, champion)
    check = check_outcomes(outcomes, days=cfg.business.attribution_days, z_alert=m.reengage_z,
                           ratio_floor=m.reengage_ratio_floor)  # fmt: skip
    if check is None:
        if champion is not None:
            notes.append("outcome drift: no measured week of the champion's with offered and held-out players yet")
    else:
        figures |= {f"outcome_{k}": v for k, v in check.figures().items()}
        if check.drifted:
            reasons.append(f"outcome drift: {check.summary()}")
    accuracy = None
    if len(outcomes):
        since = pd.to_datetime(outcomes["decided_at"]).max() - pd.Timedelta(weeks=m.recent_weeks)
        cells = roi_cells(outcomes[pd.to_datetime(outcomes["decided_at"]) > since])
        reliable = cells[cells["reliable"]]
        accuracy = pooled_accuracy(reliable)
        figures |= {"roi_reliable_cells": len(reliable), "roi_cells": len(cells)}
        if accuracy is not None:
            figures["roi_accuracy"] = accuracy
            if accuracy < m.roi_floor:
                reasons.append(
                    f"ROI accuracy {accuracy:.2f} over {len(reliable)} reliable cells is under {m.roi_floor}"
                )
        elif champion is not None:
            notes.append("ROI accuracy: no recent (segment, arm) cell is large enough to judge (s.e. under 10%)")

    alert = bool(reasons)
    report = next((str(p) for p in paths if p.suffix == ".html"), None)
    LoopRecord(store).monitor_run(clock, alert, reasons, figures, report)
    for reason in reasons:
        log.warning("ALERT %s", reason)
    if alert and m.webhook:
        notes.append(_post_alert(m.webhook, clock, reasons, figures))
    _log_mlflow(cfg, clock, figures, paths, alert)
    return MonitorRun(clock, alert, reasons, figures, data, prediction, check, lift, accuracy, paths, notes)


def champion_name(cfg: Config) -> str | None:
    """``name/version`` of the champion, as the decision log writes it (None without one)."""
    from training import registry

    name = cfg.training.model_name
    with registry.tracking(cfg):
        version = registry.alias_version(name, registry.CHAMPION)
    return None if version is None else f"{name}/{version}"


def _post_alert(url: str, at: datetime, reasons: list[str], figures: dict[str, Any]) -> str:
    body = json.dumps({"kind": "rekindle.alert", "at": at.isoformat(), "reasons": reasons, "figures": figures},
                      default=float).encode()  # fmt: skip
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return f"alert POSTed to {url}: HTTP {response.status}"
    except OSError as exc:  # the alert is recorded in the store either way
        return f"could not POST the alert to {url}: {exc}"


def _log_mlflow(cfg: Config, at: datetime, figures: dict[str, Any], paths: list[Path], alert: bool) -> None:
    import mlflow

    from training import registry

    # the training runs' experiment (its artefacts under the home), tagged kind=monitor
    with registry.tracking(cfg), mlflow.start_run(run_name=f"monitor {at:%Y-%m-%d %H:%M}"):
        mlflow.set_tags({"kind": "monitor", "alert": str(alert), "platform_clock": at.isoformat()})
        numbers = {k: float(v) for k, v in figures.items() if isinstance(v, int | float | bool | np.floating)}
        mlflow.log_metrics({k: v for k, v in numbers.items() if np.isfinite(v)})
        for p in paths:
            mlflow.log_artifact(str(p))
