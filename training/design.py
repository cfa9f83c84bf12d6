"""Fitting the model's design (:class:`scoring.design.Design`) on a training set.

The design learns, from the training frame and the arm table, which player
features enter the model and in which order, the categorical levels, each
event type's content and reference reward, each arm's payout per claim, and
the name of every per-type source column (past offers, claim and deposit rates,
match scores) in the feature store's naming.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from features.families import player_families, type_suffix
from features.matching import match_column
from scoring.design import CONTENT, DERIVED, MATCH_KINDS, NONE, PER_TYPE, Design, derived_inputs

CATEGORICAL = ("channel", "dormancy_stage", "value_tier")
DROPPED = ("status", "segment", "is_dormant")  # constant among candidates, or a combination of other columns


class DesignFitError(RekindleError, ValueError):
    """The training frame lacks the features the design needs."""


def reference_reward(rewards: pd.Series) -> float:
    """The geometric mean of an event type's positive rewards (NaN when it is offered only without reward)."""
    positive = rewards[rewards > 0].astype(float)
    return float(np.exp(np.log(positive).mean())) if len(positive) else float("nan")


def event_type_content(cfg: Config, frame: pd.DataFrame, arms: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per event type of ``arms``: its content as the feature store last described it in the training frame
    (the latest offer row of the type), else what the user's catalog says (a new type), else NaN; and the
    reference reward of its arms."""
    out: dict[str, dict[str, float]] = {}
    offers = frame[frame["event_type"].astype(str) != NONE]
    have = [c for c in CONTENT if c in offers]
    ordered = offers.sort_values("decision_at", kind="stable") if "decision_at" in offers else offers
    latest = ordered.groupby("event_type", observed=True)[have].last()
    for t in sorted(arms.loc[arms["event_type"] != NONE, "event_type"].unique()):
        row: dict[str, float] = dict.fromkeys(CONTENT, np.nan)
        if t in latest.index:
            row |= {c: float(v) for c, v in latest.loc[t].items() if pd.notna(v)}
        e = cfg.catalog.get(t) if cfg.catalog is not None else None
        if e is not None:
            given = {
                "requires_deposit": e.requires_deposit,
                "min_deposit": e.min_deposit,
                "payout_ratio": e.payout_ratio,
                "type_claim_rate": e.claim_rate,
            }
            row |= {c: float(v) for c, v in given.items() if v is not None}
        row["ref_reward"] = reference_reward(arms.loc[arms["event_type"] == t, "reward"])
        out[str(t)] = row
    return out


def per_type_columns(frame: pd.DataFrame, event_types: list[str], *, use_match: bool) -> dict[str, dict[str, str]]:
    """Per event type: the design's per-type arm columns and the training frame's columns that fill them
    (none for a type the platform never offered: nothing was built for it)."""
    out: dict[str, dict[str, str]] = {}
    for t in event_types:
        x = type_suffix(t)
        cols = {f"arm_{name}_prev": f"{name}_{x}" for name in PER_TYPE}
        if use_match:
            cols |= {f"arm_match_{kind}": match_column(kind, t) for kind in MATCH_KINDS}
        out[t] = {arm: src for arm, src in cols.items() if src in frame}
    return out


def fit_design(cfg: Config, frame: pd.DataFrame, arms: pd.DataFrame, *, use_match: bool = True) -> Design:
    """Learn the layout from a training frame and the arm table (:func:`training.arms.discover_arms`)."""
    names = [f.name for fam in player_families(cfg) for f in fam.features]
    missing = [c for c in names if c not in frame]
    if missing:
        raise DesignFitError(f"the training frame lacks player features {missing[:8]} (of {len(missing)})")
    numeric = [c for c in names if c not in CATEGORICAL and c not in DROPPED]
    levels = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in CATEGORICAL}
    offers = arms[arms["event_type"] != NONE]
    types = sorted(offers["event_type"].unique().tolist())
    payout = {
        (str(e), int(r)): float(p) for e, r, p in zip(arms["event_type"], arms["reward"], arms["payout"], strict=True)
    }
    derived = [name for name in DERIVED if all(c in numeric for c in derived_inputs(name))]
    return Design(
        player_numeric=numeric,
        categorical_levels=levels,
        event_types=[NONE, *types],
        content=event_type_content(cfg, frame, arms),
        payout=payout,
        per_type_columns=per_type_columns(frame, types, use_match=use_match),
        use_match=use_match,
        derived=derived,
    )
