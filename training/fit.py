"""Fitting: from the training set to a scorer, and the held-out data to judge it.

Shared by ``rekindle tune`` (fit on the train slice, score the validation
slice), ``rekindle train`` (fit on everything before the test slice) and
``rekindle evaluate`` (score the test slice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, ModelParams, StaleEvidence
from core.progress import SILENT, Progress
from features.manifest import with_vocabulary
from scoring.design import Design
from training.arms import discover_arms
from training.data import Split, load_training_set, population, split_rows, training_set_path, training_set_vocabulary
from training.design import fit_design
from training.ensemble import BootstrapEnsemble
from training.evaluation import EvalData
from training.ope import LoggedData
from training.propensity import cross_fitted, logged_arm_index
from training.response import LABELS, ResponseModel
from training.scorer import Scorer
from training.stale import current_evidence

FEATURE_SERVICE = "rekindle_player_v1"


@dataclass
class Prepared:
    cfg: Config
    frame: pd.DataFrame
    split: Split
    arms: pd.DataFrame
    path: Path | None = None
    notes: list[str] = field(default_factory=list)  # what the catalog asked for that is not an arm


def prepare(cfg: Config, path: Path | None = None) -> Prepared:
    """Load the training set, split it (by time, or by player when there are too few campaigns) and find the
    arms on the data before the test slice. ``Prepared.cfg`` is ``cfg`` with the platform's games and event
    types the training set was built for."""
    path = path or training_set_path(cfg)
    frame = load_training_set(cfg, path)
    cfg = with_vocabulary(cfg, training_set_vocabulary(path))
    t = cfg.training
    split = split_rows(frame, t.split, t.seed)
    found = discover_arms(split.fit, cfg.catalog, min_support=t.arms.min_support)
    return Prepared(cfg, frame, split, found.table, path, found.notes)


def response_model(design: Design, params: ModelParams, seed: int, n_jobs: int = 2) -> ResponseModel:
    p = params.model_dump(exclude={"use_match", "weighting"})
    return ResponseModel(design, **p, seed=seed, n_jobs=n_jobs)


def ipw_weights(cfg: Config, design: Design, rows: pd.DataFrame, arms: pd.DataFrame) -> np.ndarray:
    """Stabilised inverse-propensity weights ``P(a) / e(a | x)`` of the logged arms, capped at ``max_weight``."""
    e = cross_fitted(
        design,
        rows,
        arms,
        group=rows["player_id"].to_numpy(),
        clip=cfg.training.propensity_clip,
        seed=cfg.training.seed,
    )
    y = logged_arm_index(rows, arms)
    ok = y >= 0
    marginal = np.bincount(y[ok], minlength=len(arms)) / ok.sum()
    w = np.ones(len(rows))
    w[ok] = marginal[y[ok]] / e[np.flatnonzero(ok), y[ok]]
    return np.minimum(w, cfg.training.max_weight)


def fit_scorer(
    cfg: Config,
    rows: pd.DataFrame,
    arms: pd.DataFrame,
    params: ModelParams,
    *,
    members: int,
    meta: dict[str, Any] | None = None,
    progress: Progress = SILENT,
) -> Scorer:
    """Fit the response ensemble on ``rows`` and wrap it with the policy's defaults."""
    design = fit_design(cfg, rows, arms, use_match=params.use_match)
    weights = ipw_weights(cfg, design, rows, arms) if params.weighting == "ipw" else None
    base = response_model(design, params, cfg.training.seed)
    ensemble = BootstrapEnsemble(base, n_members=members, seed=cfg.training.seed)
    ensemble.fit(rows, rows[list(LABELS)], sample_weight=weights, progress=progress)
    b = cfg.business
    info = {
        "feature_service": FEATURE_SERVICE,
        "params": params.model_dump(),
        "members": members,
        "trained_from": str(pd.Timestamp(rows["campaign_at"].min())),
        "trained_to": str(pd.Timestamp(rows["campaign_at"].max())),
        "rows": len(rows),
        "margin": b.margin,
        "attribution_days": b.attribution_days,
        "dormancy_days": b.dormancy_days,
    }
    model = ensemble.to_model(arms, info | (meta or {}))
    return Scorer(model, cfg.business.margin, cfg.training.objective)


def logging_propensity(cfg: Config, rows: pd.DataFrame, arms: pd.DataFrame) -> np.ndarray:
    """The logging policy's propensity ``e(a | x)`` of every arm for every row of ``rows`` (eligible decision
    rows of the campaigns being evaluated), cross-fitted over two folds of players on those same campaigns.

    Fitted on earlier campaigns instead, it extrapolated features that grow with time (counts, tenure) and
    put the no-offer share of the main command's world at 0.72 where the campaigns held 0.52, mis-weighting
    every estimate; the campaigns' own rows estimate their own assignment."""
    design = fit_design(cfg, rows, arms, use_match=False)
    t = cfg.training
    return cross_fitted(design, rows, arms, group=rows["player_id"].to_numpy(), clip=t.propensity_clip, seed=t.seed)


def eval_data(
    cfg: Config,
    rows: pd.DataFrame,
    arms: pd.DataFrame,
    e: np.ndarray,
    stale: StaleEvidence | None = None,
    known: np.ndarray | None = None,
) -> EvalData:
    """Held-out population rows as the arrays the evaluation needs; ``e``: :func:`logging_propensity`; the
    evidence that still holds after ``stale`` (:func:`current_evidence`); ``known``: per row the propensity
    logged with Rekindle's decision (NaN where none was, :mod:`training.logged_propensity`), used instead of
    ``e`` on the rows whose logged arm is in the table."""
    logged = logged_arm_index(rows, arms)
    prop = np.where(logged >= 0, e[np.arange(len(rows)), np.maximum(logged, 0)], 1.0)
    is_known = np.zeros(len(rows), bool) if known is None else (logged >= 0) & np.isfinite(known)
    if known is not None:
        prop = np.where(is_known, known, prop)
    y = {
        "reengaged": rows["reengaged"].to_numpy(np.float64),
        "net_value": rows["net_value"].to_numpy(np.float64),
        "reward_cost": rows["reward_cost"].to_numpy(np.float64),
    }
    return EvalData(
        LoggedData(logged, prop, rows["player_id"].to_numpy(), is_known),
        y,
        rows["segment"].astype(str).to_numpy(),
        cfg.business.margin,
        cfg.training.ope_max_weight,
        cfg.training.interval,
        current_evidence(stale, rows, arms),
    )


def held_out(prepared: Prepared, which: str = "test") -> pd.DataFrame:
    rows = prepared.split.test if which == "test" else prepared.split.validation
    return population(rows)
