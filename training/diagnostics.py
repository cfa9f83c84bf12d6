"""Diagnostics of a model's predictions on held-out rows, from arrays: ROI accuracy per (segment, arm)
cell, the reliability of the recommendations' confidence, uplift curves and their Qini areas, and
calibration bins. Pure: nothing is read or written."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def roi_cells(
    pred_inc: np.ndarray, actual_inc: np.ndarray, segment: np.ndarray, arms: pd.DataFrame, min_cell: int
) -> tuple[pd.DataFrame, float]:
    """Per (segment, arm) with at least ``min_cell`` rows: predicted and actual mean incremental net value,
    and ``1 - sum n |pred - actual| / sum n |actual|``."""
    frame = pd.DataFrame({"segment": segment})
    rows = []
    for s, idx in frame.groupby("segment").indices.items():
        if len(idx) < min_cell:
            continue
        for j in range(1, len(arms)):
            a = actual_inc[idx, j]
            if np.isnan(a).all():
                continue
            rows.append(
                {
                    "segment": s,
                    "arm": arms["arm"].iloc[j],
                    "n": len(idx),
                    "predicted": float(np.nanmean(pred_inc[idx, j])),
                    "actual": float(np.nanmean(a)),
                }
            )
    cells = pd.DataFrame(rows, columns=["segment", "arm", "n", "predicted", "actual"])
    if cells.empty:
        return cells, float("nan")
    err = (cells["n"] * (cells["predicted"] - cells["actual"]).abs()).sum()
    scale = (cells["n"] * cells["actual"].abs()).sum()
    return cells, float(1 - err / scale) if scale > 0 else float("nan")


def reliability(
    conf: np.ndarray, right: np.ndarray, edges: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
) -> pd.DataFrame:
    """Per confidence bin: rows, mean confidence, share of recommendations that were right."""
    e = np.asarray(edges)
    b = np.clip(np.searchsorted(e, conf, side="right") - 1, 0, len(e) - 2)
    out = []
    for i in range(len(e) - 1):
        m = b == i
        out.append(
            {
                "bin_low": e[i],
                "bin_high": e[i + 1],
                "n": int(m.sum()),
                "mean_confidence": float(conf[m].mean()) if m.any() else np.nan,
                "share_right": float(np.nanmean(right[m])) if m.any() else np.nan,
            }
        )
    return pd.DataFrame(out)


def uplift_curves(
    pred_inc: np.ndarray, actual: dict[str, np.ndarray], arms: pd.DataFrame, points: int = 50
) -> pd.DataFrame:
    """Per arm: the cumulative actual incremental net value per candidate when the top fraction of rows by
    the predicted gain get the arm (``actual``: source name -> rows x arms), and the random line."""
    n = len(pred_inc)
    cut = np.unique(np.linspace(0, n, points + 1).astype(int))
    out = []
    for j in range(1, len(arms)):
        order = np.argsort(-pred_inc[:, j], kind="stable")
        for source, act in actual.items():
            col = np.nan_to_num(act[order, j])
            cum = np.concatenate([[0.0], np.cumsum(col)])[cut] / n
            total = cum[-1]
            out.append(
                pd.DataFrame(
                    {
                        "arm": arms["arm"].iloc[j],
                        "source": source,
                        "fraction": cut / n,
                        "cumulative_gain": cum,
                        "random": cut / n * total,
                    }
                )
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def qini_areas(curves: pd.DataFrame) -> pd.DataFrame:
    """Area between each uplift curve and its random line (KRW per candidate; > 0: better than random)."""
    if curves.empty:
        return pd.DataFrame(columns=["arm", "source", "qini_area"])

    def area(g: pd.DataFrame) -> float:
        return float(np.trapezoid(g["cumulative_gain"] - g["random"], g["fraction"]))

    return (
        curves.groupby(["arm", "source"], sort=False)[["fraction", "cumulative_gain", "random"]]
        .apply(area)
        .rename("qini_area")
        .reset_index()
    )


def calibration_bins(pred: np.ndarray, realised: np.ndarray, quantity: str, bins: int = 10) -> pd.DataFrame:
    """Quantile bins of a prediction with the mean realised outcome in each."""
    order = np.argsort(pred, kind="stable")
    parts = np.array_split(order, bins)
    return pd.DataFrame(
        [
            {
                "quantity": quantity,
                "predicted": float(pred[p].mean()),
                "realised": float(realised[p].mean()),
                "n": len(p),
            }
            for p in parts
            if len(p)
        ]
    )


def expected_calibration_error(bins: pd.DataFrame) -> float:
    """The rows-weighted mean absolute gap between predicted and realised means over ``bins``
    (:func:`calibration_bins` of one quantity)."""
    return float(np.average((bins["predicted"] - bins["realised"]).abs(), weights=bins["n"]))
