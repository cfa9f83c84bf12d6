"""The closed loop played on the simulated platform, week by week (the main command's second half).

Each week, at the platform's clock: the batch decides for every dormant candidate under the running
experiment (the champion's policy, or its fallback rule while no model is trusted, and the baselines), the
simulator's forward mode lets the world respond for a week (the drift knobs from the drift week on), the
feature store catches up, feedback measures the decisions whose window closed, the monitor judges drift
and outcomes, and an alert (or a running canary) calls the retraining step. Only the application drives
the simulator: its truth gives each week's true value beside the measured one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.cli.loop import new_experiment, run_monitor_step, run_retrain_step, start_experiment
from app.cli.root import console
from core.config import Config

VARIANTS = {"policy": 0.35, "equal_cost": 0.15, "random": 0.125, "marketers": 0.125, "best_arm": 0.125,
            "holdout": 0.125}  # fmt: skip
SHOWN = ["policy", "challenger", "equal_cost", "random", "marketers", "best_arm", "holdout"]


@dataclass
class Played:
    weeks: pd.DataFrame  # one row per week
    truth: pd.DataFrame  # one row per decision with its variant and the simulator's expected values
    monitor: list[dict[str, Any]] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)  # the loop's experiment, and each canary's restart of it
    final: dict[str, float] = field(default_factory=dict)  # the final policy against the truth


def _quiet_rebuild(cfg: Config, as_of: datetime) -> None:
    """Segments, feature snapshots and the online store at the new clock, without the console tables."""
    from features.build import build_features
    from features.materialize import materialize
    from segmentation.service import segment_and_store

    segment_and_store(cfg, as_of, None)
    build_features(cfg, as_of=as_of, since=None, row_checks=False)
    materialize(cfg)


def _decide_week(cfg: Config, week: int) -> tuple[pd.DataFrame, datetime]:
    from app.cli.models import run_decisions
    from training import registry

    out = cfg.path("loop", f"decisions-week{week:02d}.parquet")
    with registry.tracking(cfg):
        champion = registry.alias_version(cfg.training.model_name, registry.CHAMPION)
        rule = None
        if champion is None:
            version = registry.alias_version(cfg.training.model_name, registry.CHALLENGER)
            import json

            tag = registry.version_tag(cfg.training.model_name, int(version or 0), registry.FALLBACK_TAG)
            rule = json.loads(tag) if tag else None
    if champion is not None:
        r = run_decisions(cfg, as_of=None, out=out, replace=True)
    else:
        arm = rule["all"] if rule and set(rule) == {"all"} else rule
        r = run_decisions(cfg, as_of=None, out=out, model=registry.CHALLENGER, arm=arm, replace=True)
    return r.decisions, r.as_of


def _truth_of(summary: Any, decisions: pd.DataFrame, variants: pd.DataFrame, margin: float) -> pd.DataFrame:
    o = summary.outcomes
    t = o[["player_id", "p_reengage", "p_reengage_none", "expected_deposits", "expected_deposits_none",
           "expected_cost"]].drop_duplicates("player_id")  # fmt: skip
    d = decisions[["player_id", "event_type", "reward"]].merge(variants, on="player_id", how="left")
    d = d.merge(t, on="player_id", how="left")
    none = d["event_type"] == "none"
    d["true_inc_reengage"] = np.where(none, 0.0, d["p_reengage"] - d["p_reengage_none"])
    inc = margin * (d["expected_deposits"] - d["expected_deposits_none"]) - d["expected_cost"]
    d["true_inc_net"] = np.where(none, 0.0, inc)
    d["true_cost"] = np.where(none, 0.0, d["expected_cost"])
    return d.fillna({"true_inc_reengage": 0.0, "true_inc_net": 0.0, "true_cost": 0.0})


def play(
    cfg: Config, *, weeks: int, drift_week: int | None, drift: dict[str, Any], truth: Path,
    variants: dict[str, float] | None = None, equal_cost_to: str = "random",
) -> Played:  # fmt: skip
    """Play ``weeks`` weeks of the loop from the platform's current clock (the features built, a model
    registered), with the drift knobs ``drift`` from week ``drift_week`` on."""
    from monitoring.feedback import run_feedback
    from monitoring.monitor import champion_name
    from monitoring.rollout import canary_version
    from simulator.run import respond
    from system_db.decision_log import DecisionLog
    from system_db.experiments import ExperimentStore
    from system_db.store import SystemStore

    name = f"loop-{datetime.now():%Y%m%d%H%M%S}"
    start_experiment(cfg, new_experiment(cfg, name, dict(variants or VARIANTS), equal_cost_to=equal_cost_to),
                     "rekindle run")  # fmt: skip
    rows, truths, monitors = [], [], []
    log = DecisionLog(SystemStore(cfg.system_db_url))
    for week in range(weeks):
        t0 = time.perf_counter()
        console.rule(f"loop week {week + 1} of {weeks}")
        decisions, at = _decide_week(cfg, week)
        logged = log.read()
        logged = logged[pd.to_datetime(logged["decided_at"]) == pd.Timestamp(at)]
        assigned = logged[["player_id", "variant", "model_version"]].drop_duplicates("player_id")
        sent = cfg.path("loop", f"sent-week{week:02d}.parquet")
        decisions[["player_id", "event_type", "reward"]].assign(sent_at=at).to_parquet(sent)
        drifted = drift_week is not None and week >= drift_week
        world_cfg = cfg.model_copy(deep=True)
        if drifted:
            sim = cfg.simulator.model_copy(update={"drift": cfg.simulator.drift.model_copy(update=drift)})
            world_cfg = cfg.model_copy(update={"simulator": sim})
        summary = respond(world_cfg, sent, truth)
        truth_rows = _truth_of(summary, decisions, assigned, cfg.business.margin).assign(week=week + 1)
        truths.append(truth_rows)
        clock = summary.as_of
        _quiet_rebuild(cfg, clock)
        fb = run_feedback(cfg, clock + timedelta(minutes=5), row_checks=False)
        mon = run_monitor_step(cfg, clock + timedelta(minutes=5))
        monitors.append({"week": week + 1, **mon.figures, "alert": mon.alert, "reasons": "; ".join(mon.reasons)})
        event = ""
        # retrain on an alert, to settle a canary, and every other week while no model is trusted (the new
        # weeks of experiment data may earn one its trust)
        untrusted = champion_name(cfg) is None and week % 2 == 1
        if mon.alert or canary_version(cfg) is not None or untrusted:
            event = run_retrain_step(cfg, None, rebuild=False)
        by = truth_rows.groupby("variant")
        row: dict[str, Any] = {
            "week": week + 1, "clock": f"{clock:%Y-%m-%d}", "drift": "yes" if drifted else "",
            "decisions": len(decisions), "offers": int((decisions["event_type"] != "none").sum()),
            "measured": fb.measured, "alert": "ALERT" if mon.alert else "", "model": event,
            "models": ",".join(sorted(set(assigned["model_version"].dropna().astype(str)))),
        }  # fmt: skip
        for v in SHOWN:
            if v in by.groups:
                g = by.get_group(v)
                row[f"{v}_reengage"] = float(g["true_inc_reengage"].mean())
                row[f"{v}_net"] = float(g["true_inc_net"].mean())
                row[f"{v}_cost"] = float(g["true_cost"].mean())
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        console.print(weekly_line(row))
    final = final_policy_value(cfg, weeks, truth)
    names = ExperimentStore(SystemStore(cfg.system_db_url)).list()["name"].astype(str)
    ours = [n for n in names if n == name or n.startswith(name + "+")]
    return Played(pd.DataFrame(rows), pd.concat(truths, ignore_index=True), monitors, ours, final)


def final_policy_value(cfg: Config, week: int, truth: Path) -> dict[str, float]:
    """The policy as it stands after the loop, against the simulator's truth at the final clock: the next
    week's batch, each candidate's policy arm (no exploration, no holdout, no variant) valued by the truth."""
    from core.timeutil import utc_now
    from system_db.decision_log import DecisionLog
    from system_db.experiments import ExperimentStore
    from system_db.store import SystemStore

    experiments = ExperimentStore(SystemStore(cfg.system_db_url))
    running = experiments.running()
    if running is not None:  # the experiment is over: this batch is the policy alone, never sent
        experiments.stop(running[0], "rekindle run", utc_now())
    _, at = _decide_week(cfg, week)
    logged = DecisionLog(SystemStore(cfg.system_db_url)).read()
    logged = logged[pd.to_datetime(logged["decided_at"]) == pd.Timestamp(at)]
    t = pd.read_parquet(truth / "truth.parquet")
    t["arm"] = t["event_type"] + "@" + t["reward"].astype(str)
    got = logged[["player_id", "policy_arm"]].merge(
        t[["player_id", "arm", "incremental_net_value", "incremental_reengage", "expected_cost"]],
        left_on=["player_id", "policy_arm"], right_on=["player_id", "arm"], how="left",
    )  # fmt: skip
    best = t.groupby("player_id")["incremental_net_value"].max().clip(lower=0)
    return {
        "candidates": float(len(logged)),
        "policy_net": float(got["incremental_net_value"].fillna(0).mean()),
        "policy_reengage": float(got["incremental_reengage"].fillna(0).mean()),
        "oracle_net": float(best.reindex(logged["player_id"]).fillna(0).mean()),
        "offers": float((logged["policy_arm"] != "none").mean()),
    }


def weekly_line(row: dict[str, Any]) -> str:
    parts = [f"week {row['week']} ({row['clock']})"]
    for v in ("policy", "challenger", "equal_cost", "random", "marketers"):
        if f"{v}_net" in row:
            parts.append(f"{v} {row[f'{v}_net']:+,.0f} KRW/{row[f'{v}_reengage']:+.3f}")
    parts.append(f"alert: {row['alert'] or 'no'}; {row['model'] or '-'}; {row['seconds']:.0f} s")
    return "  ".join(parts)
