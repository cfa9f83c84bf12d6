"""Figures of a training run's evaluation, one function per PNG.

Pure presentation: each function takes the frames the evaluation already built,
checks their columns, draws with matplotlib on the Agg backend, writes ``path``
(creating its folder) and returns it. An empty frame gives a panel saying
"no data" instead of an error, so a report can always be assembled.
pyplot is imported by the first drawing call, never at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_COLUMNS = 4  # panels per row of a small-multiple grid
DPI = 110
KRW_VALUE = "incremental net value per candidate (KRW)"
SOURCE_STYLES = {"truth": ("#264653", "-"), "estimated": ("#e76f51", "--")}
ESTIMATOR_STYLES = {  # drawing order, top to bottom within a policy's row
    "truth": ("#264653", "D"),
    "dr": ("#2a9d8f", "o"),
    "dr-hurdle": ("#1d7874", "h"),
    "dr-sized": ("#0b3d91", "p"),
    "snips": ("#e9c46a", "s"),
    "ips": ("#f4a261", "^"),
    "dm": ("#e76f51", "v"),
    "model": ("#b5179e", "x"),  # the judged model's own belief, not an estimate from the logs
    "on-policy": ("#8d99ae", "P"),
}
POINTS: dict[str, Any] = {"alpha": 0.8, "edgecolor": "white"}  # scatter markers, readable where they overlap
QUANTITY_UNITS = {"re-engagement": "probability", "deposits": "KRW", "reward cost": "KRW"}


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks column(s) {missing}; expected columns {list(columns)}")


def _require_values(values: pd.Series, allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(values.astype(str)) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; expected any of {list(allowed)}")


def _figure(panels: int, panel_size: tuple[float, float]) -> tuple[Any, list[Any]]:
    """A figure with a grid of ``panels`` axes (at least one, up to MAX_COLUMNS per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(panels, 1)
    cols = min(n, MAX_COLUMNS)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Any, path: Path, *, legend_below: bool = False) -> Path:
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout(rect=(0, 0.06 if legend_below else 0, 1, 1))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey", fontsize=14)
    ax.set_xticks([])
    ax.set_yticks([])


def _krw_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    axis.set_major_locator(MaxNLocator(nbins=5))  # "12,500"-wide labels need room
    axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _sizes(n: pd.Series) -> np.ndarray:
    """Marker areas (points^2) growing with the square root of the rows behind a point."""
    rows = np.nan_to_num(pd.to_numeric(n, errors="coerce").to_numpy(dtype=float), nan=0.0).clip(min=0)
    top = rows.max() if len(rows) else 0.0
    return 15 + 185 * np.sqrt(rows / top) if top > 0 else np.full(len(rows), 40.0)


def _diagonal(ax: Any, x: pd.Series, y: pd.Series, label: str) -> None:
    values = pd.concat([x, y]).astype(float)
    values = values[np.isfinite(values)]
    if len(values):
        lo, hi = float(values.min()), float(values.max())
        ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label=label)


def _legend_below(fig: Any, axes: Sequence[Any]) -> None:
    """One legend for the whole grid, from the labels of all panels (first occurrence wins)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if len(seen) > 1:
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(len(seen), 5), frameon=False)


def plot_uplift_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Qini-style curves, one panel per arm: cumulative gain per candidate when the model's top
    ``fraction`` get the arm, per ``source`` (truth solid, estimated dashed), against random targeting.

    Columns: ``arm``, ``source`` ("estimated" or "truth"), ``fraction`` in [0, 1],
    ``cumulative_gain`` and ``random`` (KRW per candidate of the whole population).
    """
    _require(curves, ["arm", "source", "fraction", "cumulative_gain", "random"], "uplift curves")
    _require_values(curves["source"], list(SOURCE_STYLES), "source")
    arms = list(pd.unique(curves["arm"]))
    fig, axes = _figure(len(arms), (4.2, 3.4))
    if not arms:
        _no_data(axes[0])
    for ax, arm in zip(axes, arms, strict=False):
        rows = curves[curves["arm"] == arm].sort_values("fraction")
        for source, (color, style) in SOURCE_STYLES.items():
            part = rows[rows["source"] == source]
            if len(part):
                ax.plot(part["fraction"], part["cumulative_gain"], color=color, ls=style, label=f"model ({source})")
        # Random targeting is a line per source; draw it once when the sources agree on it.
        randoms = {str(s): part for s, part in rows.groupby("source", sort=True)}
        same = len({tuple(np.round(p["random"].to_numpy(dtype=float), 6)) for p in randoms.values()}) == 1
        for source, part in list(randoms.items())[: 1 if same else None]:
            label = "random targeting" if same else f"random targeting ({source})"
            alpha = 1.0 if same or source == "truth" else 0.5
            ax.plot(part["fraction"], part["random"], color="grey", ls=":", alpha=alpha, label=label)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(str(arm), fontsize=10)
        ax.set_xlabel("share of candidates targeted")
        ax.set_xlim(0, 1)
        _krw_ticks(ax.yaxis)
    axes[0].set_ylabel("cumulative incremental net value\nper candidate (KRW)")
    fig.suptitle("Uplift (Qini-style) curves per arm")
    _legend_below(fig, axes)
    return _save(fig, path, legend_below=True)


def plot_calibration(bins: pd.DataFrame, path: Path) -> Path:
    """Realised against predicted means per bin, one panel per ``quantity``, with the diagonal.

    Columns: ``quantity``, ``predicted``, ``realised`` (bin means) and ``n`` (rows, sets marker size).
    """
    _require(bins, ["quantity", "predicted", "realised", "n"], "calibration")
    quantities = list(pd.unique(bins["quantity"]))
    fig, axes = _figure(len(quantities), (4.4, 4.0))
    if not quantities:
        _no_data(axes[0])
    for ax, quantity in zip(axes, quantities, strict=False):
        rows = bins[bins["quantity"] == quantity]
        unit = QUANTITY_UNITS.get(str(quantity))
        suffix = f" ({unit})" if unit else ""
        size = _sizes(rows["n"])
        ax.scatter(rows["predicted"], rows["realised"], s=size, color="#2a9d8f", label="bins (size: rows)", **POINTS)
        _diagonal(ax, rows["predicted"], rows["realised"], "realised = predicted")
        ax.set_title(str(quantity), fontsize=10)
        ax.set_xlabel(f"mean predicted{suffix}")
        ax.set_ylabel(f"mean realised{suffix}")
        if unit == "KRW":
            _krw_ticks(ax.xaxis)
            _krw_ticks(ax.yaxis)
    fig.suptitle("Calibration: realised vs predicted per bin")
    _legend_below(fig, axes)
    return _save(fig, path, legend_below=True)


def plot_roi_cells(cells: pd.DataFrame, path: Path, *, accuracy: float | None = None) -> Path:
    """Actual against predicted incremental net value per (segment, arm) cell, one colour per arm.

    Columns: ``segment``, ``arm``, ``n`` (rows, sets marker size), ``predicted`` and ``actual``
    (KRW per candidate). ``accuracy`` (the ROI accuracy of the run) goes into the title.
    """
    _require(cells, ["segment", "arm", "n", "predicted", "actual"], "ROI cells")
    import matplotlib

    fig, axes = _figure(1, (7.5, 5.5))
    ax = axes[0]
    title = "ROI per segment x arm cell"
    if accuracy is not None:
        title += f": ROI accuracy {accuracy:.2f}"
    ax.set_title(title)
    arms = list(pd.unique(cells["arm"]))
    if not arms:
        _no_data(ax)
        return _save(fig, path)
    palette = matplotlib.colormaps["tab10" if len(arms) <= 10 else "tab20"]
    sizes = pd.Series(_sizes(cells["n"]), index=cells.index)
    for i, arm in enumerate(arms):
        rows = cells[cells["arm"] == arm]
        color = palette(i % palette.N)
        ax.scatter(rows["predicted"], rows["actual"], s=sizes[rows.index], color=color, label=str(arm), **POINTS)
    _diagonal(ax, cells["predicted"], cells["actual"], "actual = predicted")
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel(f"predicted {KRW_VALUE}")
    ax.set_ylabel(f"actual {KRW_VALUE}")
    _krw_ticks(ax.xaxis)
    _krw_ticks(ax.yaxis)
    if len(arms) > 6:  # many arms: keep the points visible
        ax.legend(title="arm", loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    else:
        ax.legend(title="arm", loc="best", fontsize=8)
    return _save(fig, path)


def plot_feature_importance(importance: pd.DataFrame, path: Path, top: int = 20) -> Path:
    """The ``top`` features by gain per model ``head``, as a share of the head's total gain.

    Columns: ``head``, ``feature``, ``gain``. Rows repeating a (head, feature) pair, e.g. one per
    fold model, are summed.
    """
    _require(importance, ["head", "feature", "gain"], "feature importance")
    if top < 1:
        raise ValueError(f"top must be >= 1 features, got {top}")
    heads = list(pd.unique(importance["head"]))
    shown = min(top, int(importance.groupby("head")["feature"].nunique().max())) if heads else 1
    fig, axes = _figure(len(heads), (4.6, 0.9 + 0.28 * shown))
    if not heads:
        _no_data(axes[0])
    for ax, head in zip(axes, heads, strict=False):
        gain = importance[importance["head"] == head].groupby("feature")["gain"].sum()
        total = float(gain.sum())
        if not total > 0:
            _no_data(ax)
            ax.set_title(str(head), fontsize=10)
            continue
        best = (gain / total * 100).nlargest(top).iloc[::-1]  # largest at the top
        ax.barh(best.index.astype(str), best.to_numpy(), color="#2a9d8f")
        ax.set_title(f"{head}: top {len(best)} of {len(gain)} features", fontsize=10)
        ax.set_xlabel("share of total gain (%)")
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("Feature importance (gain) per head")
    return _save(fig, path)


def plot_policy_values(values: pd.DataFrame, path: Path, *, level: float = 0.9) -> Path:
    """The value of each policy per estimator: a point per estimate with its ``level`` interval.

    Columns: ``policy``, ``estimator`` (any of truth, dr, snips, ips, dm), ``estimate``, ``low``
    and ``high`` (KRW per candidate; NaN bounds draw no interval).
    """
    _require(values, ["policy", "estimator", "estimate", "low", "high"], "policy values")
    _require_values(values["estimator"], list(ESTIMATOR_STYLES), "estimator")
    policies = list(pd.unique(values["policy"]))
    fig, axes = _figure(1, (8.0, 1.4 + 0.55 * max(len(policies), 1)))
    ax = axes[0]
    ax.set_title(f"Policy values by estimator ({level:.0%} intervals)")
    if not policies:
        _no_data(ax)
        return _save(fig, path)
    row = {policy: i for i, policy in enumerate(policies)}
    present = [e for e in ESTIMATOR_STYLES if (values["estimator"] == e).any()]
    step = 0.7 / max(len(present), 1)
    for k, estimator in enumerate(present):
        color, marker = ESTIMATOR_STYLES[estimator]
        rows = values[values["estimator"] == estimator]
        y = rows["policy"].map(row).to_numpy(dtype=float) + (k - (len(present) - 1) / 2) * step
        low, high = rows["low"].to_numpy(dtype=float), rows["high"].to_numpy(dtype=float)
        bounded = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[bounded], low[bounded], high[bounded], color=color, lw=1.5)
        ax.plot(rows["estimate"], y, ls="none", marker=marker, color=color, label=estimator)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(policies)), [str(p) for p in policies])
    ax.set_ylim(len(policies) - 0.5, -0.5)  # first policy on top
    ax.set_xlabel(KRW_VALUE)
    _krw_ticks(ax.xaxis)
    ax.legend(title="estimator", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _save(fig, path)


def plot_reliability(table: pd.DataFrame, path: Path) -> Path:
    """Share of right calls against mean confidence per confidence bin, with rows per bin behind.

    Columns: ``bin_low``, ``bin_high`` (bin edges), ``n`` (rows), ``mean_confidence``, ``share_right``.
    """
    _require(table, ["bin_low", "bin_high", "n", "mean_confidence", "share_right"], "reliability")
    fig, axes = _figure(1, (6.0, 4.8))
    ax = axes[0]
    ax.set_title("Reliability: share right vs confidence")
    if table.empty:
        _no_data(ax)
        return _save(fig, path)
    counts = ax.twinx()
    low, high = table["bin_low"].to_numpy(dtype=float), table["bin_high"].to_numpy(dtype=float)
    counts.bar((low + high) / 2, table["n"], width=(high - low) * 0.95, color="lightgrey", label="rows per bin")
    counts.set_ylabel("rows per bin")
    ax.set_zorder(counts.get_zorder() + 1)  # the curve in front of the bars
    ax.patch.set_visible(False)
    rows = table.sort_values("mean_confidence")
    ax.plot(rows["mean_confidence"], rows["share_right"], marker="o", color="#264653", label="share right")
    _diagonal(ax, table["bin_low"], table["bin_high"], "share right = confidence")  # across all the bins
    ax.set_xlabel("mean confidence (probability)")
    ax.set_ylabel("share right")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = counts.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="upper left", fontsize=8)
    return _save(fig, path)
