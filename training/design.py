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
from features.families import player_families
from features.matching import match_column
from scoring.design import DERIVED, MATCH_KINDS, NONE, PER_TYPE, Design, derived_inputs

CATEGORICAL = ("channel", "dormancy_stage", "value_tier")
DROPPED = ("status", "segment", "is_dormant")  # constant among candidates, or a combination of other columns


class DesignFitError(RekindleError, ValueError):
    """The training frame lacks the features the design needs."""


def reference_reward(rewards: pd.Series) -> float:
    """The geometric mean of an event type's positive rewards (NaN when it is offered only without reward)."""
    positive = rewards[rewards > 0].astype(float)
    return float(np.exp(np.log(positive).mean())) if len(positive) else float("nan")


def event_type_content(cfg: Config, event_types: list[str], arms: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per event type: the catalog's content (NaN where the catalog does not know the type) and the reference
    reward of its arms."""
    catalog = {e.name: e for e in cfg.catalog.event_types}
    out: dict[str, dict[str, float]] = {}
    for t in event_types:
        e = catalog.get(t)
        out[t] = {
            "requires_deposit": float(e.requires_deposit) if e else np.nan,
            "min_deposit": float(e.min_deposit or 0) if e else np.nan,
            "payout_ratio": e.payout_ratio if e else np.nan,
            "catalog_claim_rate": e.claim_rate if e else np.nan,
            "ref_reward": reference_reward(arms.loc[arms["event_type"] == t, "reward"]),
        }
    return out


def per_type_columns(event_types: list[str], *, use_match: bool) -> dict[str, dict[str, str]]:
    """Per event type: the design's per-type arm columns and the training set's columns that fill them."""
    out: dict[str, dict[str, str]] = {}
    for t in event_types:
        cols = {f"arm_{name}_prev": f"{name}_{t}" for name in PER_TYPE}
        if use_match:
            cols |= {f"arm_match_{kind}": match_column(kind, t) for kind in MATCH_KINDS}
        out[t] = cols
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
        content=event_type_content(cfg, types, offers),
        payout=payout,
        per_type_columns=per_type_columns(types, use_match=use_match),
        use_match=use_match,
        derived=derived,
    )
