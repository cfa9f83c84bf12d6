"""``rekindle monitor``: one monitoring run. It compares, on fixed-size windows,

- **data drift**: the dormant candidates' features now (the latest feature snapshot) against the training
  reference (the training set's decision rows), each feature's threshold calibrated on the reference's own
  week-to-week distances (:mod:`monitoring.drift`, Evidently);
- **prediction drift**: the predicted incremental net value of the latest week's decisions against the
  first week the serving model decided;
- **outcome drift**: realised against predicted incremental re-engagement of the latest measured week
  (:mod:`monitoring.outcome_drift`);
- **ROI accuracy**: realised against predicted incremental net value of the recent reliable (segment, arm)
  cells (:mod:`monitoring.roi`);

and decides: drift above its threshold, outcomes off the predictions, or ROI accuracy under its floor
raise an alert (a record in the system store, the log, an optional webhook) that triggers retraining.
HTML and JSON go under ``<home>/monitor`` and to MLflow.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from monitoring.drift import DriftResult, calibrate, detect, save
from monitoring.feedback import platform_clock
from monitoring.outcome_drift import OutcomeCheck, check_outcomes
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
    roi_accuracy: float | None
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def monitored_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The features both frames hold: every float column and the categorical ones, no ids or flags."""
    both = [c for c in current.columns if c in reference.columns and c not in NOT_FEATURES]
    return [c for c in both if c in CATEGORICAL or pd.api.types.is_float_dtype(current[c])]


def data_drift(cfg: Config, as_of: datetime | None) -> tuple[DriftResult, pd.DataFrame]:
    from features.candidates import candidate_features, snapshot_at

    path = cfg.path("training", "training_set.parquet")
    if not path.is_file():
        raise FileNotFoundError(f"no training set at {path}: the drift reference; run `rekindle features training-set`")
    reference = pd.read_parquet(path)
    t, snap = snapshot_at(cfg, as_of)
    current = candidate_features(cfg, t, snap)
    columns = monitored_columns(reference, current)
    m = cfg.monitor
    thresholds = calibrate(reference, columns, "campaign_at", window=m.window, factor=m.threshold_factor)
    return detect(reference, current, thresholds, window=m.window, share=m.drift_share), thresholds


def prediction_drift(decisions: pd.DataFrame, cfg: Config) -> DriftResult | None:
    """The latest week's predicted incremental net value against the serving model's first week (None
    before the model's second week)."""
    if decisions.empty:
        return None
    d = decisions[decisions["model_version"] == decisions.sort_values("decided_at")["model_version"].iloc[-1]]
    at = pd.to_datetime(d["decided_at"])
    first, last = at.min(), at.max()
    if last - first < pd.Timedelta(days=7):
        return None
    frame = pd.DataFrame({"predicted_net_value": d["incremental_net_value"].astype(float).to_numpy(), "at": at})
    reference = frame[frame["at"] < first + pd.Timedelta(days=7)]
    current = frame[frame["at"] > last - pd.Timedelta(days=7)]
    m = cfg.monitor
    weeks = reference.assign(week=reference["at"].dt.floor("D"))  # the reference's days: its own wobble
    thresholds = calibrate(weeks, ["predicted_net_value"], "week", window=m.window, factor=m.threshold_factor)
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
    data, _ = data_drift(cfg, None)
    figures |= {"data_drift_share": data.share, "data_drifted": data.drifted,
                "data_drifted_columns": int(data.columns["drifted"].sum())}  # fmt: skip
    paths += [p for p in save(data, out_dir, f"data-drift-{stem}") if p is not None]
    if data.drifted:
        reasons.append(f"data drift: {data.summary()}")

    store = SystemStore(cfg.system_db_url)
    progress.note("prediction drift: the latest week's predictions against the model's first week")
    decisions = DecisionLog(store).read()
    if len(decisions):
        decisions = decisions[pd.to_datetime(decisions["decided_at"]) <= pd.Timestamp(clock)]
    prediction = prediction_drift(decisions, cfg)
    if prediction is None:
        notes.append("prediction drift: the serving model has not decided for a second week yet")
    else:
        score = float(prediction.columns["score"].iloc[0])
        figures |= {"prediction_drift_score": score, "prediction_drifted": prediction.drifted}
        paths += [p for p in save(prediction, out_dir, f"prediction-drift-{stem}") if p is not None]
        if prediction.drifted:
            reasons.append(f"prediction drift: {prediction.summary()}")

    progress.note("outcomes: realised against predicted")
    outcomes = Outcomes(store).read()
    check = check_outcomes(outcomes, days=cfg.business.attribution_days, z_alert=m.reengage_z,
                           ratio_floor=m.reengage_ratio_floor)  # fmt: skip
    if check is None:
        notes.append("outcome drift: no measured week with both offered and held-out players yet")
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
        else:
            notes.append("ROI accuracy: no recent (segment, arm) cell is large enough to judge (s.e. under 10%)")

    alert = bool(reasons)
    report = next((str(p) for p in paths if p.suffix == ".html"), None)
    LoopRecord(store).monitor_run(clock, alert, reasons, figures, report)
    for reason in reasons:
        log.warning("ALERT %s", reason)
    if alert and m.webhook:
        notes.append(_post_alert(m.webhook, clock, reasons, figures))
    _log_mlflow(cfg, clock, figures, paths, alert)
    return MonitorRun(clock, alert, reasons, figures, data, prediction, check, accuracy, paths, notes)


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
