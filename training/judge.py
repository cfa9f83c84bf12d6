"""Judging a scorer on the held-out campaigns: score them, evaluate its policy against the baselines
(:mod:`training.evaluation`), and, with the simulator's truth, the exact values and the budget check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from platform_db.db import sqlite_path
from scoring.heads import ArmPredictions
from training import evaluation as ev
from training.baselines import best_single_arm
from training.fit import Prepared, eval_data, held_out, logging_propensity
from training.logged_propensity import Matched, match_decisions
from training.nuisance import cross_fitted_outcomes
from training.scorer import Scorer, Scores
from training.truth import ArmTruth, decision_truth


@dataclass
class Judged:
    """A scorer evaluated on the held-out rows."""

    evaluation: ev.Evaluation
    rows: pd.DataFrame
    data: ev.EvalData
    scores: Scores
    truth: ArmTruth | None
    mean: ArmPredictions  # the evaluation's outcome model: cross-fitted on the held-out rows (or the judged one)
    budget: pd.DataFrame | None = None
    report: Path | None = None
    fixed_rows: int = 0  # held-out rows left out: decided by an experiment variant's fixed rule
    figures: dict[str, Path] = field(default_factory=dict)


def logged_decisions(cfg: Config, rows: pd.DataFrame) -> tuple[Matched, np.ndarray]:
    """Each decision row matched to the decision Rekindle logged for it (:mod:`training.logged_propensity`;
    none for the platform's own decisions, or with ``training.logged_propensities`` off), on the decisions of
    the system store that ``rekindle feedback`` has measured, and the rows decided by a fixed-rule variant of
    an experiment (:meth:`Matched.fixed_variant`). Nothing is created where no store is."""
    none = Matched(np.full(len(rows), np.nan), np.full(len(rows), None, dtype=object))
    path = sqlite_path(cfg.system_db_url)
    if not cfg.training.logged_propensities or not len(rows) or (path is not None and not path.is_file()):
        return none, np.zeros(len(rows), bool)
    from system_db.outcomes import Outcomes
    from system_db.store import SystemStore

    window = pd.Timedelta(hours=cfg.feedback.send_within_hours)
    at = pd.to_datetime(rows["campaign_at"])
    decided = Outcomes(SystemStore(cfg.system_db_url)).assignments(
        (at.min() - window).to_pydatetime(), pd.to_datetime(rows["decision_at"]).max().to_pydatetime()
    )
    matched = match_decisions(rows, decided, window)
    return matched, matched.fixed_variant(decided)


def judge(
    prepared: Prepared,
    scorer: Scorer,
    *,
    truth_dir: Path | None = None,
    progress: Progress = SILENT,
) -> Judged:
    """Score the test slice with ``scorer`` and evaluate its policy against the baselines (and the truth)."""
    cfg = prepared.cfg
    rows = held_out(prepared, "test")
    matched, fixed = logged_decisions(cfg, rows)
    fixed &= (~fixed).sum() >= 2 * cfg.training.min_cell  # too few would be left: keep them all
    if fixed.any():
        progress.note(
            f"left out {int(fixed.sum()):,} held-out rows of experiment variants that send by a fixed rule "
            "(no chance of another arm); the players are a random sample without them"
        )
        rows = rows[~fixed].reset_index(drop=True)
        matched = Matched(matched.propensity[~fixed], matched.variant[~fixed])
    known = matched.propensity
    truth = None
    if truth_dir is not None:
        progress.note(f"matching the simulator's truth in {truth_dir}")
        truth = decision_truth(truth_dir, rows, prepared.arms)
        if not truth.matched.all():  # only rows with a truth, so estimates and truth talk about the same rows
            known = known[truth.matched]
            rows = rows[truth.matched].reset_index(drop=True)
            truth = truth.subset(truth.matched)
    progress.note(f"propensities of the logging policy (cross-fitted on the {len(rows):,} held-out rows)")
    propensity = logging_propensity(cfg, rows, prepared.arms)
    if np.isfinite(known).any():
        n = int(np.isfinite(known).sum())
        progress.note(f"{n:,} held-out rows are Rekindle's decisions: weighted by the propensities it logged")
    data = eval_data(cfg, rows, prepared.arms, propensity, cfg.training.stale_evidence, known)
    progress.note(f"scoring {len(rows):,} held-out decisions x {len(prepared.arms)} arms")
    scores = scorer.score(rows)
    judgement = scorer.judge(rows, scores, objective="net_value")
    nuisance = cross_fitted_outcomes(cfg, rows, prepared.arms, history=prepared.split.fit, progress=progress)
    progress.note("evaluating (bootstrap intervals)")
    t = cfg.training
    evaluation = ev.evaluate(
        scores, judgement, data, nuisance=nuisance, truth=truth, n_boot=t.bootstrap, seed=t.seed, min_cell=t.min_cell
    )
    budget = None
    if truth is not None:  # on the rows policies are valued on (after a drift, those since)
        now_truth, now_scores = truth.subset(data.fresh), scores.subset(data.fresh)
        true_net = now_truth.incremental_net(cfg.business.margin)
        true_re = now_truth.incremental_reengage()
        reference = {
            "best single arm (net value)": best_single_arm(true_net),
            "best single arm (re-engagement)": best_single_arm(true_re),
        }
        budget = ev.budget_check(now_scores, now_truth, cfg.business.margin, reference)
    mean = nuisance.predictions if nuisance is not None else scores.point
    return Judged(evaluation, rows, data, scores, truth, mean, budget, fixed_rows=int(fixed.sum()))
