"""The evaluation's own outcome model: cross-fitted on the held-out rows, never the model being judged.

The doubly robust estimates need an outcome model ``mu(x, a)``. When the judged model supplies it, its
errors favour its own policy: it picks the arms it over-rates and under-rates the others, and wherever the
logs hold little evidence for an arm the estimate inherits those errors (the baselines came out 11% to 54%
low on the main command's world). Here the players are split into folds, and each fold's held-out rows are
scored by a response model fitted on the other folds' players only, on all their rows (earlier campaigns
and held-out ones): no row's ``mu`` has seen that player, and none of it is the judged model. Fitted on the
held-out campaigns alone it was too weak to tell the arms' deposit sizes apart on the main command's world
(its estimates came out at a third of the truth); the players' earlier campaigns give it the data.

After an event type's drift (``training.stale_evidence``) the rows that offered it before the drift are left
out of the fits: learnt from the weeks before, the model kept the drifted offer's old value (the main
command's cashback@10000 at +430 to +460 KRW per candidate a week after the drift, the truth +297), and
the doubly robust corrections, which trust its deposit sizes, did not take it down.

With fewer than :data:`MIN_FOLD_ROWS` rows to fit a fold on there is too little; the caller is told
(``None``) and falls back to the judged model, which the report then says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import Config
from core.progress import SILENT, Progress
from scoring.heads import ArmPredictions
from training.data import player_folds
from training.design import fit_design
from training.response import LABELS, ResponseModel
from training.stale import stale_rows

FOLDS = 2
MIN_FOLD_ROWS = 2_000  # below this a fold's outcome model is noise: use the judged model and say so


@dataclass(frozen=True)
class Nuisance:
    """Cross-fitted expected outcomes of every arm for every held-out row, and how they were fitted."""

    predictions: ArmPredictions
    folds: int
    note: str


def cross_fitted_outcomes(
    cfg: Config,
    rows: pd.DataFrame,
    arms: pd.DataFrame,
    *,
    history: pd.DataFrame | None = None,
    folds: int = FOLDS,
    progress: Progress = SILENT,
) -> Nuisance | None:
    """Out-of-fold expected re-engagement, deposits and reward cost of every arm for every row of ``rows``
    (the held-out slice), each fold fitted on the other folds' players' rows of ``history`` (earlier
    campaigns) and ``rows``, but for the rows of ``training.stale_evidence``; None when a fold would be
    fitted on fewer than :data:`MIN_FOLD_ROWS` rows."""
    seed = cfg.training.seed
    pool = rows if history is None else pd.concat([history, rows], ignore_index=True)
    players = pool["player_id"].to_numpy()
    fold_of_pool = player_folds(players, folds, seed)
    fold = fold_of_pool[len(pool) - len(rows) :]
    fresh = ~stale_rows(cfg.training.stale_evidence, pool)
    if min(int(((fold_of_pool != f) & fresh).sum()) for f in range(folds)) < MIN_FOLD_ROWS:
        return None
    n, k = len(rows), len(arms)
    p, dep, cost = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
    params = cfg.training.model
    for f in range(folds):
        out = fold == f
        if not out.any():
            continue
        train = pool.loc[(fold_of_pool != f) & fresh]
        progress.note(
            f"evaluation outcome model, fold {f + 1} of {folds}: fitted on {len(train):,} rows of other players"
        )
        design = fit_design(cfg, train, arms, use_match=params.use_match)
        p_ = params.model_dump(exclude={"use_match", "weighting"}) | {"learner": "s"}
        model = ResponseModel(design, **p_, seed=seed + f)
        model.fit(train, train[list(LABELS)])
        pred = model.predict_arms(rows.loc[out], arms)
        p[out], dep[out], cost[out] = pred.p_reengage, pred.deposits, pred.cost
    note = f"cross-fitted over {folds} folds of players (not the judged model)"
    if not fresh.all():
        note += f", without the {int((~fresh).sum()):,} rows of offers whose evidence is stale"
    return Nuisance(ArmPredictions(arms, p, dep, cost), folds, note)
