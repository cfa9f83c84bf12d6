"""Realised against predicted: the incremental net value the model promised per (segment, arm) cell, and
what the outcomes show. Pure functions over the outcomes joined with their decisions
(:meth:`system_db.outcomes.Outcomes.read`).

A cell's **offered** rows are the decisions that sent the arm the policy chose (not explored, not held
out); its **control** rows are the held-out decisions of the same segment whose ``policy_arm`` is that arm
(the policy's holdout, and an experiment's holdout variant): both are drawn by a hash of the player id, so
offered and control rows are random parts of the same players, those the policy sends that arm. Realised
incremental net value = mean net value of the offered rows - mean of the control rows (intention to treat:
an offer the event system never sent counts as sent), with its standard error; predicted = the mean of the
offered rows' logged ``incremental_net_value``.

Accuracy of a cell = ``1 - |predicted - realised| / |realised|`` (0 at worst); pooled over cells, weighted
by offered rows, ``1 - sum(n |p - r|) / sum(n |r|)``. A cell is **reliable** when the realised value's
standard error is under ``reliable_se`` (10%) of it: net value is heavy-tailed, so small cells say little.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_OFFER = "none"
CELL_COLUMNS = [
    "segment", "arm", "n_offered", "n_control", "predicted", "realised", "se", "predicted_cost", "realised_cost",
    "accuracy", "reliable",
]  # fmt: skip


def arm_of(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        np.where(frame["event_type"] == NO_OFFER, NO_OFFER, frame["event_type"] + "@" + frame["reward"].astype(str)),
        index=frame.index,
    )


def _parts(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    arm = arm_of(frame)
    held = frame["holdout"].astype(bool)
    if "variant" in frame:  # an experiment's holdout variant: drawn by hash too, and logs the arm it would send
        held = held | (frame["variant"] == "holdout")
    offered = frame[~held & ~frame["explored"].astype(bool) & (arm != NO_OFFER) & (frame["policy_arm"] == arm)]
    offered = offered.assign(arm=arm[offered.index])
    control = frame[held & frame["policy_arm"].notna() & (frame["policy_arm"] != NO_OFFER)]
    return offered, control.assign(arm=control["policy_arm"])


def _accuracy(predicted: pd.Series, realised: pd.Series) -> pd.Series:
    err = (predicted - realised).abs() / realised.abs().where(realised != 0)
    return (1 - err).clip(lower=0.0)


def roi_cells(frame: pd.DataFrame, *, by: list[str] | None = None, reliable_se: float = 0.1) -> pd.DataFrame:
    """One row per cell (``by``: default segment and arm) with offered and control rows, columns
    :data:`CELL_COLUMNS` (``by`` in place of segment and arm)."""
    keys = by or ["segment", "arm"]
    offered, control = _parts(frame)
    o = offered.groupby(keys).agg(
        n_offered=("net_value", "size"),
        value=("net_value", "mean"),
        var=("net_value", "var"),
        predicted=("incremental_net_value", "mean"),
        predicted_cost=("expected_cost", "mean"),
        realised_cost=("reward_cost", "mean"),
    )
    c = control.groupby(keys).agg(
        n_control=("net_value", "size"), base=("net_value", "mean"), base_var=("net_value", "var")
    )
    cells = o.join(c, how="inner")
    cells = cells[(cells["n_offered"] > 1) & (cells["n_control"] > 1)]
    cells["realised"] = cells["value"] - cells["base"]
    cells["se"] = np.sqrt(cells["var"] / cells["n_offered"] + cells["base_var"] / cells["n_control"])
    cells["accuracy"] = _accuracy(cells["predicted"], cells["realised"])
    cells["reliable"] = cells["se"] < reliable_se * cells["realised"].abs()
    out = cells.reset_index()
    return out[[*keys, *CELL_COLUMNS[2:]]]


def pooled_accuracy(cells: pd.DataFrame) -> float | None:
    """``1 - sum(n |p - r|) / sum(n |r|)`` over the cells given (None without any)."""
    if cells.empty:
        return None
    n = cells["n_offered"]
    denominator = float((n * cells["realised"].abs()).sum())
    if denominator == 0:
        return None
    return max(0.0, 1 - float((n * (cells["predicted"] - cells["realised"]).abs()).sum()) / denominator)


def weekly(frame: pd.DataFrame) -> pd.DataFrame:
    """Predicted and realised incremental net value per offered decision, by the week it was decided (cells
    pooled, each week's realised value weighted as its cells' offered rows)."""
    weeks = pd.to_datetime(frame["decided_at"]).dt.to_period("W").dt.start_time
    cells = roi_cells(frame.assign(week=weeks), by=["week", "segment", "arm"], reliable_se=np.inf)
    if cells.empty:
        return pd.DataFrame(columns=["week", "n_offered", "predicted", "realised", "accuracy"])
    cells["p_n"] = cells["predicted"] * cells["n_offered"]
    cells["r_n"] = cells["realised"] * cells["n_offered"]
    w = cells.groupby("week").agg(n_offered=("n_offered", "sum"), p_n=("p_n", "sum"), r_n=("r_n", "sum"))
    w["predicted"], w["realised"] = w["p_n"] / w["n_offered"], w["r_n"] / w["n_offered"]
    w["accuracy"] = [pooled_accuracy(cells[cells["week"] == k]) for k in w.index]
    return w.reset_index()[["week", "n_offered", "predicted", "realised", "accuracy"]]
