"""The closed loop's weekly table (console) and its HTML report with plots."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

VARIANTS = ["policy", "challenger", "equal_cost", "random", "marketers", "best_arm", "holdout"]


def print_weeks(console: Console, weeks: pd.DataFrame) -> None:
    t = Table(title="the closed loop, week by week: true incremental value per player of each variant (simulator)")
    cols = [("wk", "week", "d"), ("date", "clock", "s"), ("drift", "drift", "s"), ("offers", "offers", ",d")]
    cols += [(h, f"{v}_net", "+,.0f") for h, v in (("net: policy", "policy"), ("canary", "challenger"),
                                                     ("random", "random"), ("marketers", "marketers"))]  # fmt: skip
    cols += [(h, f"{v}_reengage", "+.3f") for h, v in (("re-eng: policy", "policy"), ("eq. cost", "equal_cost"),
                                                       ("random", "random"), ("marketers", "marketers"))]  # fmt: skip
    cols += [("alert", "alert", "s"), ("model", "model", "s")]
    for head, key, _ in cols:
        t.add_column(head, justify="left" if key in ("clock", "alert", "model", "drift") else "right", no_wrap=True)
    for _, r in weeks.iterrows():
        cells = []
        for _, key, fmt in cols:
            v = r.get(key)
            if key == "clock":
                v = str(v)[5:]
            cells.append("-" if v is None or (not isinstance(v, str) and pd.isna(v)) else format(v, fmt))
        t.add_row(*cells)
    console.print(t)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plot(weeks: pd.DataFrame, metric: str, title: str, drift_week: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for v in VARIANTS:
        col = f"{v}_{metric}"
        if col in weeks:
            ax.plot(weeks["week"], weeks[col], marker="o", label=v.replace("_", " "))
    ax.axvline(drift_week - 0.5, color="grey", linestyle="--", linewidth=1, label="drift starts")
    ax.set_xlabel("week")
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    out = _png(fig)
    plt.close(fig)
    return out


def _cell(fmt: str) -> Any:
    return lambda v: "-" if pd.isna(v) else format(v, fmt)


def _readable(frame: pd.DataFrame) -> str:
    """The weekly table as HTML: whole KRW with separators, re-engagement to 4 places, "-" where a variant
    did not run."""
    names = [str(c) for c in frame.columns]
    fmt = {c: _cell("+,.0f" if c.endswith("_net") else ",.0f" if c.endswith("_cost") else "+.4f")
           for c in names if c.endswith(("_net", "_cost", "_reengage"))}  # fmt: skip
    return frame.to_html(index=False, formatters=fmt, na_rep="-")


def write_loop_report(played: Any, path: Path, *, drift_week: int, drifted: str) -> Path:
    weeks: pd.DataFrame = played.weeks
    plots = [
        _plot(weeks, "net", "true incremental net value per player (KRW), by variant", drift_week),
        _plot(weeks, "reengage", "true incremental re-engagement per player, by variant", drift_week),
        _plot(weeks, "cost", "expected reward cost per player (KRW), by variant", drift_week),
    ]
    monitor = pd.DataFrame(played.monitor)
    keep = [c for c in ("week", "data_drift_share", "lift_event_type", "lift_current", "lift_expected", "lift_z",
                        "prediction_drift_score", "outcome_z", "roi_accuracy", "alert", "reasons")
            if c in monitor]  # fmt: skip
    short = ["week", "clock", "drift", "offers", "alert", "model"] + [
        f"{v}_{m}" for m in ("net", "reengage", "cost") for v in VARIANTS if f"{v}_{m}" in weeks and v != "holdout"
    ]
    body = [
        "<h1>Rekindle: the closed loop</h1>",
        f"<p>From week {drift_week} the simulated world drifts: {html.escape(drifted)} keeps 30% of its pull. "
        "Values are the simulator's expected values of each week's decisions (its truth), per player of each "
        "experiment variant.</p>",
        _readable(weeks[[c for c in short if c in weeks]]),
        "<details><summary>every column</summary>" + weeks.round(4).to_html(index=False) + "</details>",
        *[f'<p><img src="data:image/png;base64,{p}"></p>' for p in plots],
        "<h2>Monitoring runs</h2>",
        monitor[keep].round(4).to_html(index=False) if keep else "<p>none</p>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    style = (
        "body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;font-size:12px}"
        " td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    )
    head = f"<html><head><meta charset='utf-8'><title>Rekindle loop</title><style>{style}</style></head><body>"
    tmp.write_text(head + "\n".join(body) + "</body></html>")
    tmp.replace(path)
    return path
