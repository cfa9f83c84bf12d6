"""Why an offer: the features that most raise or lower a player's re-engagement under it, against no offer.

The contributions are LightGBM's ``pred_contrib`` (TreeSHAP) of the point model's re-engagement head, on
the log-odds scale, for the chosen arm's model row minus the same player's no-offer row
(:meth:`scoring.heads.ResponseHeads.uplift_contributions`): a column that does not interact with the offer
contributes the same to both and drops out. Pure: arrays and the design in, plain data out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scoring.design import Design

TOP = 3


def readable_value(design: Design, column: str, value: float) -> Any:
    """A model column's value as a person reads it: a categorical's level, a number rounded, None for missing."""
    if math.isnan(value):
        return None
    levels = design.event_types if column == "arm_event" else design.categorical_levels.get(column)
    if levels is not None:
        code = int(value)
        return levels[code] if 0 <= code < len(levels) else None
    return round(float(value), 4)


def top_contributions(
    design: Design, contributions: np.ndarray, matrix: np.ndarray, top: int = TOP
) -> list[list[dict[str, Any]]]:
    """Per row, the ``top`` columns by absolute contribution: feature, its value in the offer's model row,
    the effect on the log-odds of re-engaging, and whether it raises or lowers it. Columns that contribute
    nothing are left out."""
    names = design.columns
    if contributions.shape[1] != len(names):
        raise ValueError(f"{contributions.shape[1]} contributions for a design of {len(names)} columns")
    order = np.argsort(-np.abs(contributions), axis=1)[:, :top]
    out = []
    for i, cols in enumerate(order):
        row = []
        for j in cols:
            effect = float(contributions[i, j])
            if effect == 0.0:
                continue
            row.append(
                {
                    "feature": names[j],
                    "value": readable_value(design, names[j], float(matrix[i, j])),
                    "effect": round(effect, 4),
                    "direction": "raises" if effect > 0 else "lowers",
                }
            )
        out.append(row)
    return out
