"""``rekindle train`` and ``rekindle evaluate``: fit, judge, log, register, promote.

Train fits the bootstrap ensemble with the tuned parameters (or the configured
defaults) on every campaign before the test slice, judges it on the test slice
(:mod:`training.judge`), writes the evaluation report
(:mod:`training.evaluation_report`), logs parameters, metrics, plots and the
report in one MLflow run, registers the model and makes it the ``challenger``.
It becomes ``champion`` only when :mod:`training.promotion` says so; otherwise
the champion stays and the reason is recorded on the version (tag ``promotion``).

The simulator's truth (``--truth``) is only ever reported, never used to
choose, fit or promote.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.config import Config, ModelParams
from core.progress import SILENT, Progress
from training import evaluation as ev
from training.evaluation_report import headline, write_report
from training.fit import FEATURE_SERVICE, Prepared, fit_scorer, prepare
from training.judge import Judged, judge
from training.promotion import Promotion, promotion_decision, settle_fallback
from training.scorer import Scorer


@dataclass
class TrainResult:
    version: int
    run_id: str
    judged: Judged
    promotion: Promotion
    seconds: dict[str, float]
    params: ModelParams
    notes: list[str] = field(default_factory=list)  # the split when not by time, what the catalog could not add
    canaried: bool = False  # it serves a canary share first (its policy, or with no champion its fallback rule)

    @property
    def promoted(self) -> bool:
        return self.promotion.promoted

    @property
    def reason(self) -> str:
        return self.promotion.reason


def run_train(
    cfg: Config,
    *,
    params: ModelParams | None = None,
    params_source: str = "config",
    truth_dir: Path | None = None,
    canary: bool = False,
    progress: Progress = SILENT,
) -> TrainResult:
    """Train, evaluate, register as challenger, and promote when it earns it: champion, or with ``canary``
    (and a champion to protect) the canary alias, which serves an experiment's challenger share until the
    canary's verdict (:mod:`monitoring.canary`)."""
    import mlflow

    from training import registry

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    progress.note("loading the training set")
    prepared = prepare(cfg)
    cfg = prepared.cfg  # with the platform's games and event types
    params = params or cfg.training.model
    split = prepared.split
    seconds["load"] = time.perf_counter() - t0
    with registry.tracking(cfg):
        run = mlflow.start_run(run_name=f"train {datetime.now(UTC):%Y-%m-%d %H:%M}")
        try:
            t = time.perf_counter()
            progress.note(f"fitting {cfg.training.ensemble} bootstrap members on {len(split.fit):,} rows")
            scorer = fit_scorer(cfg, split.fit, prepared.arms, params, members=cfg.training.ensemble, progress=progress)
            seconds["fit"] = time.perf_counter() - t
            t = time.perf_counter()
            j = judge(prepared, scorer, truth_dir=truth_dir, progress=progress)
            seconds["evaluate"] = time.perf_counter() - t
            figures = headline(j)
            summary = {
                "model": cfg.training.model_name,
                "feature service": FEATURE_SERVICE,
                "parameters from": params_source,
                **split.describe(),
                **{k: v for k, v in figures.items() if not k.startswith(("random_", "historical_"))},
            }
            stale = cfg.training.stale_evidence
            if stale is not None:  # said in the report: these offers' held-out rows before it were not evidence
                summary["stale evidence"] = f"{', '.join(stale.event_types)} offers up to {stale.since:%Y-%m-%d %H:%M}"
            name = cfg.training.model_name
            champ_version = registry.alias_version(name, registry.CHAMPION)
            champion = _champion(cfg, champ_version, progress)
            served = _served_rule(name)
            t_ = cfg.training
            settled = settle_fallback(j, served, bootstrap=t_.bootstrap, seed=t_.seed)
            promotion = promotion_decision(prepared, j, champion, champ_version, settled)
            out_dir = cfg.path("reports", f"train-{run.info.run_id[:8]}")
            title = "Rekindle: training run evaluation"
            write_report(cfg, j, scorer, out_dir, title=title, summary=summary, promotion=promotion)
            mlflow.set_tags(
                {
                    "kind": "train",
                    "feature_service": FEATURE_SERVICE,
                    "data_from": str(split.first),
                    "data_to": str(split.last),
                    "test_from": str(split.test_start),
                    "params_from": params_source,
                    "truth": str(truth_dir) if truth_dir else "none",
                }
            )
            mlflow.log_params(
                {
                    **params.model_dump(),
                    "ensemble": cfg.training.ensemble,
                    "arms": len(prepared.arms),
                    **split.describe(),
                }
            )
            mlflow.log_metrics({k: float(v) for k, v in figures.items() if np.isfinite(v)})
            mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
            _log_tables(j, out_dir)
            uri = registry.log_model(scorer.model, j.rows)
            version = registry.register(uri, name, tags={"run_id": run.info.run_id})
            e = j.evaluation
            rule = settled.rule
            serving_before = champ_version is not None or registry.alias_version(name, registry.CHALLENGER) is not None
            canaried = canary and serving_before and (promotion.promoted or (champ_version is None and rule != served))
            if canaried and champ_version is None and not _served_arms(cfg, prepared, rule):
                canaried = False  # the canaried rule's rows merge with the served model's: they need its arms
            if canaried:
                said = "promoted to canary:" if promotion.promoted else "fallback rule to canary:"
                promotion = replace(promotion, reason=said + promotion.reason.split(":", 1)[1])
            registry.version_tags(  # before any alias points at it: serving reads them on loading (serving.engine)
                name,
                version,
                {
                    "promotion": promotion.reason,
                    registry.FALLBACK_TAG: json.dumps(rule, sort_keys=True),
                    registry.BEST_ARM_TAG: e.estimated_baselines.get(ev.BEST_SINGLE, {}).get("all", ""),
                },
            )
            if canaried:  # the new policy (or, with no champion, the new fallback rule) serves a canary share first
                registry.set_alias(name, registry.CANARY, version)
                if champ_version is not None:
                    registry.set_alias(name, registry.CHALLENGER, version)
            else:
                registry.set_alias(name, registry.CHALLENGER, version)
                if promotion.promoted:
                    registry.set_alias(name, registry.CHAMPION, version)
            mlflow.set_tag("promotion", promotion.reason)
            mlflow.log_metrics({f"promotion_{k}": v for k, v in promotion.figures.items() if np.isfinite(v)})
        finally:
            mlflow.end_run()
    seconds["total"] = time.perf_counter() - t0
    return TrainResult(version, run.info.run_id, j, promotion, seconds, params, training_notes(prepared), canaried)


def _served_arms(cfg: Config, prepared: Prepared, rule: dict[str, str]) -> bool:
    """Whether the served challenger (no champion) has the new model's arms, or at least every arm of the new
    fallback ``rule`` (then the canary applies the rule on the served model's scores, :mod:`serving.batch`)."""
    from training import registry

    name = cfg.training.model_name
    version = registry.alias_version(name, registry.CHALLENGER)
    if version is None:
        return False
    served = list(registry.load_model(registry.model_uri(name, str(version))).arms["arm"])
    return served == list(prepared.arms["arm"]) or set(rule.values()) <= set(served)


def _served_rule(name: str) -> dict[str, str] | None:
    """The fallback rule serving applies now (the challenger's), inside :func:`registry.tracking`."""
    from training import registry

    version = registry.alias_version(name, registry.CHALLENGER)
    tag = registry.version_tag(name, version, registry.FALLBACK_TAG) if version is not None else None
    return json.loads(tag) if tag else None


def training_notes(prepared: Prepared) -> list[str]:
    """What a user should know about the data the model was trained on."""
    split, arms = prepared.split, prepared.arms
    notes = [f"split by player, not by time: {split.note}"] if split.kind == "player" else []
    unsupported = arms.loc[~arms["supported"], "arm"].tolist()
    if unsupported:
        notes.append(f"arms without support, scored but sent only by exploration: {', '.join(unsupported)}")
    return notes + prepared.notes


def _champion(cfg: Config, version: int | None, progress: Progress) -> Scorer | None:
    """The current champion with this configuration's policy, or None (none yet, or one that cannot be
    loaded any more: the new model then only has to beat the best single arm)."""
    from training import registry

    if version is None:
        return None
    try:
        model = registry.load_model(registry.model_uri(cfg.training.model_name, str(version)))
    except registry.RegistryError as exc:
        progress.note(f"the champion v{version} is not compared: {exc}")
        return None
    return Scorer(model, cfg.business.margin, cfg.training.objective)


def _log_tables(j: Judged, out_dir: Path) -> None:
    import mlflow

    e = j.evaluation
    for name, frame in {
        "policy_values": e.values,
        "roi_cells": e.roi_cells,
        "reliability": e.reliability,
        "estimator_errors": e.estimator_errors,
        "budget_check": j.budget,
    }.items():
        if frame is not None:
            path = out_dir / f"{name}.csv"
            frame.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="evaluation")


# --------------------------------------------------------------------------- evaluate --
@dataclass
class EvaluateResult:
    uri: str
    judged: Judged
    figures: dict[str, float]
    run_id: str


def run_evaluate(
    cfg: Config, *, model: str | None, truth_dir: Path | None, progress: Progress = SILENT
) -> EvaluateResult:
    """Evaluate a registered model on this home's held-out slice; logs an evaluation run with the report."""
    import mlflow

    from training import registry

    prepared = prepare(cfg)
    cfg = prepared.cfg  # with the platform's games and event types
    with registry.tracking(cfg):
        uri = registry.model_uri(cfg.training.model_name, model or registry.CHALLENGER)
        progress.note(f"loading {uri}")
        scorer = Scorer(registry.load_model(uri), cfg.business.margin, cfg.training.objective)
        if list(scorer.arms["arm"]) != list(prepared.arms["arm"]):
            prepared.arms = scorer.arms  # judge the model on its own arms
        j = judge(prepared, scorer, truth_dir=truth_dir, progress=progress)
        figures = headline(j)
        with mlflow.start_run(run_name=f"evaluate {uri}") as run:
            out_dir = cfg.path("reports", f"evaluate-{run.info.run_id[:8]}")
            summary = {"model": uri, **prepared.split.describe(), **figures}
            write_report(cfg, j, scorer, out_dir, title=f"Rekindle: evaluation of {uri}", summary=summary)
            mlflow.set_tags({"kind": "evaluate", "model": uri, "truth": str(truth_dir) if truth_dir else "none"})
            mlflow.log_metrics({k: float(v) for k, v in figures.items() if np.isfinite(v)})
            mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
            _log_tables(j, out_dir)
    return EvaluateResult(uri, j, figures, run.info.run_id)
