"""Hyper-parameter tuning: an Optuna study whose objective is the policy's value.

Each trial fits a response model (one member, no bootstrap) on the train slice
with the trial's parameters, turns its predictions on the validation slice (a
seeded sample of ``training.tuning_rows`` eligible rows, a later time slice)
into the learned policy, and scores that policy by its doubly robust
incremental net value per candidate. The doubly robust estimate uses one
outcome model fitted once on the train slice and one propensity model
cross-fitted on the validation rows, shared by all trials: the trials then
differ only by their policies, and differences between trials are not blurred
by each trial judging itself.

TPE (seeded, multivariate) samples; after 8 complete trials, a median pruner
stops trials whose policy, with half of their trees on a quarter of the rows,
is already below the median of the earlier trials at that step.
Each trial is a nested MLflow run under the study's run. The study lives in
``<home>/optuna.db`` or ``training.optuna_storage`` (PostgreSQL), so it can be
resumed; the best parameters are written to ``<home>/training/best_params.json``
where ``rekindle train`` picks them up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, ModelParams
from core.errors import RekindleError
from core.progress import SILENT, Progress
from training.baselines import one_hot
from training.data import population
from training.design import fit_design
from training.evaluation import EvalData, hurdle_outcome, outcome_models
from training.fit import Prepared, eval_data, fit_scorer, ipw_weights, logging_propensity, response_model
from training.ope import row_terms
from training.policy import choose
from training.response import LABELS, ResponseModel

PARAMS_FILE = "best_params.json"


class TuningError(RekindleError, RuntimeError):
    """A study ended without a usable trial."""


@dataclass
class TuneResult:
    study_name: str
    storage: str
    best_value: float
    best_params: dict[str, Any]
    trials: pd.DataFrame
    params_path: Path
    run_id: str | None


def storage_url(cfg: Config, given: str | None = None) -> str:
    """The study's storage: ``given`` (``--storage``), ``training.optuna_storage``, or SQLite under the home;
    bare ``postgresql://`` URLs get the installed psycopg 3 driver."""
    from platform_db.db import normalise_url

    return normalise_url(given or cfg.training.optuna_storage or f"sqlite:///{cfg.path('optuna.db')}")


def best_params_path(cfg: Config) -> Path:
    return cfg.path("training", PARAMS_FILE)


def read_best_params(cfg: Config) -> ModelParams | None:
    path = best_params_path(cfg)
    if not path.is_file():
        return None
    return ModelParams.model_validate(json.loads(path.read_text())["params"])


def suggest(trial: Any, base: ModelParams) -> ModelParams:
    """The search space around the configured defaults."""
    return base.model_copy(
        update={
            "learner": trial.suggest_categorical("learner", ["s", "t", "offset"]),
            "use_match": trial.suggest_categorical("use_match", [True, False]),
            "weighting": trial.suggest_categorical("weighting", ["none", "ipw"]),
            "n_estimators": trial.suggest_int("n_estimators", 100, 300, step=50),
            "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.12, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 31, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 300, 8000, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 0.1, 30.0, log=True),
            "tweedie_power": trial.suggest_float("tweedie_power", 1.2, 1.8),
        }
    )


class PolicyValue:
    """Doubly robust incremental net value per candidate of a model's policy on fixed rows (on the hurdle
    outcome of :func:`training.evaluation.hurdle_outcome`, whose variance is a fraction of the raw one's)."""

    def __init__(self, data: EvalData, mu_net: np.ndarray, y: np.ndarray, allowed: np.ndarray) -> None:
        self.data, self.mu, self.y, self.allowed = data, mu_net, y, allowed

    def __call__(self, inc_net: np.ndarray, cost: np.ndarray, rows: np.ndarray | None = None) -> float:
        sel = np.arange(len(self.mu)) if rows is None else rows
        arm = choose(inc_net, cost, allowed=self.allowed).arm
        target = one_hot(arm, self.mu.shape[1])
        sub = self.data.logged.subset(sel)
        cap = self.data.max_weight
        terms = row_terms(sub, self.y[sel], self.mu[sel], target, max_weight=cap)["dr-switch"]
        none = one_hot(np.zeros(len(sel), int), self.mu.shape[1])
        base = row_terms(sub, self.y[sel], self.mu[sel], none, max_weight=cap)["dr-switch"]
        return float(terms[0].mean() - base[0].mean())


def _predict_gain(model: ResponseModel, rows: pd.DataFrame, arms: pd.DataFrame, margin: float, it: int | None):
    pred = model.predict_arms(rows, arms, num_iteration=it)
    return pred.incremental_net(margin), pred.cost


def run_tune(
    prepared: Prepared,
    *,
    trials: int,
    study_name: str | None = None,
    storage: str | None = None,
    progress: Progress = SILENT,
) -> TuneResult:
    import mlflow
    import optuna

    from training.registry import tracking

    cfg = prepared.cfg
    t = cfg.training
    split, arms = prepared.split, prepared.arms
    storage = storage_url(cfg, storage)
    name = study_name or f"{t.model_name}-{split.validation_start:%Y%m%d}"
    val_rows = population(split.validation)
    if len(val_rows) > t.tuning_rows:
        val_rows = val_rows.sample(t.tuning_rows, random_state=t.seed).reset_index(drop=True)
    train = split.train
    progress.note("propensities of the logging policy (cross-fitted on the validation rows)")
    prop = logging_propensity(cfg, val_rows, arms)
    data = eval_data(cfg, val_rows, arms, prop)
    progress.note("reference outcome model (default parameters)")
    ref = fit_scorer(cfg, train, arms, t.model, members=1)
    scores = ref.score(val_rows)
    mu = outcome_models(scores.point, cfg.business.margin)["net_value"]
    value = PolicyValue(data, mu, hurdle_outcome(scores.point, data), scores.allowed)
    quick = np.arange(min(len(val_rows), max(len(val_rows) // 4, 1000)))
    weights_cache: dict[bool, np.ndarray] = {}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=t.seed, multivariate=True, n_startup_trials=min(10, max(trials // 3, 1))
        ),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=8, n_warmup_steps=0),
    )
    with tracking(cfg):
        parent = mlflow.start_run(run_name=f"tune {name}")
        mlflow.set_tags({"kind": "tune", "study": name, "storage": storage.split("@")[-1]})
        mlflow.log_params({"trials": trials, "validation_rows": len(val_rows), **split.describe()})

        def objective(trial: Any) -> float:
            params = suggest(trial, t.model)
            design = fit_design(cfg, train, arms, use_match=params.use_match)
            if params.weighting == "ipw":
                if True not in weights_cache:
                    weights_cache[True] = ipw_weights(cfg, design, train, arms)
                w = weights_cache[True]
            else:
                w = None
            model = response_model(design, params, t.seed).fit(train, train[list(LABELS)], sample_weight=w)
            with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
                mlflow.log_params(params.model_dump())
                half = max(params.n_estimators // 2, 1)
                inc, cost = _predict_gain(model, val_rows.iloc[quick], arms, cfg.business.margin, half)
                early = value(inc, cost, quick)
                trial.report(early, step=0)
                mlflow.log_metric("policy_value_dr", early, step=0)
                if trial.should_prune():
                    mlflow.set_tag("state", "pruned")
                    raise optuna.TrialPruned()
                inc, cost = _predict_gain(model, val_rows, arms, cfg.business.margin, None)
                v = value(inc, cost)
                trial.report(v, step=1)
                mlflow.log_metric("policy_value_dr", v, step=1)
                mlflow.set_tag("state", "complete")
            return v

        def callback(study: Any, trial: Any) -> None:
            done = [t.value for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
            progress.advance("trials", detail=f"best {max(done):,.0f} KRW" if done else "no trial complete yet")

        progress.start("trials", trials)
        study.optimize(objective, n_trials=trials, callbacks=[callback], gc_after_trial=True)
        complete = [tr for tr in study.trials if tr.state.name == "COMPLETE"]
        if not complete:
            raise TuningError(
                f"no trial of the study {name!r} completed (all {len(study.trials)} failed or were pruned)"
            )
        best = study.best_trial
        if best.value is None:
            raise TuningError(f"the best trial of the study {name!r} has no value")
        params = suggest(optuna.trial.FixedTrial(best.params), t.model)
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
        mlflow.log_metric("best_policy_value_dr", float(best.value))
        mlflow.log_metric("reference_policy_value_dr", value(scores.inc_net, scores.cost))
        run_id = parent.info.run_id
        mlflow.end_run()
    path = best_params_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"study": name, "storage": storage.split("@")[-1], "value": best.value, "params": params.model_dump()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params"))
    return TuneResult(name, storage, float(best.value), params.model_dump(), frame, path, run_id)
