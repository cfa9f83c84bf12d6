"""``rekindle experiment report NAME``: the experiment's players, their outcomes and their behaviour before
it, through :mod:`monitoring.experiment_stats`; printed, and written as HTML with plots.

- **Players**: every player with a decision logged in the experiment; the variant of the first one, the
  outcomes of all of them (feedback's outcome rows, summed: re-engaged or converted once = yes). A player
  whose decisions are not all measured yet waits, and the report says how many.
- **Pre-period**: the player's own behaviour in the ``pre_period_days`` before the first exposure, read from
  the platform: whether they played (sessions) and margin x deposits, the CUPED covariates of
  re-engagement and net value.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from features.decision_reads import read_activity
from features.timeline import as_datetime64
from monitoring.experiment_stats import Metric, Report, analyse
from platform_db.bulk import snapshot
from platform_db.db import connect

METRICS = [
    Metric("reengaged", "re-engagement rate", covariate="sessions_pre", primary=True),
    Metric("converted", "conversion rate"),
    Metric("deposits", "deposits per player (KRW)"),
    Metric("reward_cost", "reward cost per player (KRW)"),
    Metric("net_value", "net value per player (KRW)", covariate="net_value_pre", primary=True),
]
TREATMENTS = ["policy", "equal_cost", "challenger"]  # the system's variants
CONTROLS = ["holdout", "random", "marketers", "best_arm"]
PRE_PERIOD_DAYS = 90


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    players: pd.DataFrame  # one row per measured player
    waiting: int  # exposed players not all of whose decisions are measured yet
    stats: Report


def players_of(outcomes: pd.DataFrame, exposed: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per player with a measured decision in the experiment, his outcomes summed over the measured
    ones (``outcomes``: the experiment's outcome rows with their decisions; ``exposed``: every decision of
    it), and how many exposed players have none measured yet. Not only players whose every decision is
    measured: a player who re-engages stops being a candidate, so that rule would keep the re-engaged and
    drop those still dormant, whose latest decision waits."""
    first = exposed.sort_values("decided_at").drop_duplicates("player_id").set_index("player_id")
    decided = exposed.groupby("player_id").size()
    done = outcomes["player_id"].unique()
    o = outcomes
    per = o.groupby("player_id").agg(
        reengaged=("reengaged", "max"), converted=("converted", "max"), deposits=("deposits", "sum"),
        reward_cost=("reward_cost", "sum"), net_value=("net_value", "sum"),
    )  # fmt: skip
    per = per.astype(float)
    per["variant"] = first["variant"].reindex(per.index)
    per["first_decided_at"] = pd.to_datetime(first["decided_at"].reindex(per.index))
    return per.reset_index(), len(decided.index.difference(pd.Index(done)))


def add_pre_period(cfg: Config, players: pd.DataFrame, days: int = PRE_PERIOD_DAYS) -> pd.DataFrame:
    """``sessions_pre`` (sessions in the ``days`` before the first exposure) and ``net_value_pre`` (margin x
    deposits then), from the platform."""
    out = players.assign(sessions_pre=0.0, net_value_pre=0.0)
    if players.empty:
        return out
    t = players.set_index("player_id")["first_decided_at"]
    since, until = t.min() - timedelta(days=days), t.max()
    with snapshot(connect(cfg.db_url)) as db:
        a = read_activity(db, since.to_pydatetime(), until.to_pydatetime())
    for events, column, weight in ((a.sessions, "sessions_pre", None), (a.deposits, "net_value_pre", "amount")):
        e = pd.DataFrame({"player_id": events["player"], "at": as_datetime64(events["at"])})
        e["value"] = 1.0 if weight is None else events[weight] * cfg.business.margin
        start = t.reindex(e["player_id"]).to_numpy()
        inside = (e["at"].to_numpy() < start) & (e["at"].to_numpy() >= start - np.timedelta64(days, "D"))
        got = e[inside].groupby("player_id")["value"].sum()
        values = got.reindex(out["player_id"]).fillna(0.0).to_numpy()
        out[column] = values
    return out


def build_report(
    name: str, shares: dict[str, float], outcomes: pd.DataFrame, exposed: pd.DataFrame, cfg: Config
) -> ExperimentReport:
    players, waiting = players_of(outcomes, exposed)
    players = add_pre_period(cfg, players)
    stats = analyse(
        players,
        shares,
        treatments=[t for t in TREATMENTS if t in shares],
        controls=[c for c in CONTROLS if c in shares],
        metrics=METRICS,
    )
    return ExperimentReport(name, players, waiting, stats)


def _png(fig: object) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)  # type: ignore[attr-defined]
    return base64.b64encode(buf.getvalue()).decode()


def write_html(report: ExperimentReport, out: Path) -> Path:
    """The report as one HTML file (plots embedded), written to a temporary name and moved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = report.stats.variants
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    shown = (("reengaged", "re-engagement rate"), ("net_value", "net value per player (KRW)"))
    for ax, (col, label) in zip(axes, shown, strict=True):
        ax.bar(v["variant"], v[col], yerr=[v[col] - v[f"{col}_lower"], v[f"{col}_upper"] - v[col]], capsize=4)
        ax.set(title=f"{label}, 95% interval", ylabel=label)
    fig.tight_layout()
    bars = _png(fig)
    plt.close(fig)
    c = report.stats.comparisons
    primary = c[c["primary"]] if len(c) else c
    metrics = list(dict.fromkeys(primary["metric"])) if len(primary) else []
    # absolute differences, a panel per metric: a relative interval explodes where a control's mean is near 0
    fig, axes = plt.subplots(max(len(metrics), 1), 1, figsize=(8, 1.2 + 1.3 * max(len(metrics), 1)), squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics, strict=False):
        rows = primary[primary["metric"] == metric].to_dict("records")
        for i, r in enumerate(rows):
            mid, lo, hi = float(r["effect"]), float(r["effect_lower"]), float(r["effect_upper"])
            ax.errorbar(mid, i, xerr=[[mid - lo], [hi - mid]], fmt="o", capsize=3,
                        color="tab:green" if r["significant"] else "tab:gray")  # fmt: skip
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(rows)), [f"{r['treatment']} vs {r['control']}" for r in rows])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(f"{metric}: difference, 95% interval (green: significant after Holm)", fontsize=10)
    fig.tight_layout()
    forest = _png(fig)
    plt.close(fig)
    tables = "".join(
        f"<h2>{html.escape(title)}</h2>{frame.to_html(index=False, float_format=lambda x: f'{x:,.4g}')}"
        for title, frame in (("Variants", v), ("Comparisons", c), ("Power", report.stats.power))
    )
    said = "".join(f"<li>{html.escape(s)}</li>" for s in report.stats.sentences)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Experiment {html.escape(report.name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
        f"<h1>Experiment {html.escape(report.name)}</h1><p>{len(report.players):,} players measured, "
        f"{report.waiting:,} waiting for their windows. Sample ratio p = {report.stats.srm_pvalue:.3g}.</p>"
        f"<ul>{said}</ul><img src='data:image/png;base64,{bars}'><img src='data:image/png;base64,{forest}'>"
        f"{tables}</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out


def write_summary(report: ExperimentReport, out: Path) -> Path:
    """The report's figures as JSON (the dashboard's experiments page reads it): players measured and
    waiting, the sample-ratio p-value, each variant's means with intervals, every comparison with its effect,
    interval, adjusted p-value and verdict, and the sentences. Written whole or not at all."""
    import json

    def records(frame: pd.DataFrame) -> list[dict[str, object]]:
        return json.loads(frame.to_json(orient="records"))  # NaN -> null

    body = {
        "name": report.name, "measured": len(report.players), "waiting": report.waiting,
        "srm_pvalue": report.stats.srm_pvalue, "variants": records(report.stats.variants),
        "comparisons": records(report.stats.comparisons), "sentences": report.stats.sentences,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, default=str))
    tmp.replace(out)
    return out
