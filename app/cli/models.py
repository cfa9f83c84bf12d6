"""The model commands: tune, train, evaluate, batch. Thin, like the rest of the CLI: parse, call
training/ and serving/, print."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from app.cli.root import Context, business_options, console, friendly_errors, parse_time
from app.progress import RichProgress
from app.reporting import print_judged
from core.config import Config

if TYPE_CHECKING:
    from serving.batch import BatchResult
    from serving.webhook import DeliveryReport
    from training.policy import Objective
    from training.scorer import ArmRule
    from training.train import TrainResult


def _truth_dir(cfg: Config, truth: Path | None) -> Path | None:
    if truth is None:
        return None
    if not truth.is_dir():
        from training.truth import TruthError

        raise TruthError(
            f"--truth {truth} is not a directory (expected the simulator's truth, e.g. {cfg.path('truth')})"
        )
    return truth


truth_option = click.option(
    "--truth",
    type=click.Path(path_type=Path),
    help="The simulator's truth directory (e.g. <home>/truth): report exact values beside the estimates. "
    "Never used to fit, tune or promote.",
)


# ------------------------------------------------------------------ tune --
@click.command("tune")
@click.option("--trials", type=click.IntRange(min=1), default=30, show_default=True, help="Optuna trials to run.")
@click.option("--storage", metavar="URL", help="Optuna storage (default sqlite:///<home>/optuna.db; or PostgreSQL).")
@click.option("--study", "study_name", metavar="NAME", help="Study name (default: model name + validation start).")
@business_options
@click.pass_obj
@friendly_errors
def tune(obj: Context, trials: int, storage: str | None, study_name: str | None, business: dict[str, Any]) -> None:
    """Tune the response model: Optuna (TPE, median pruning) maximising the policy's doubly robust value
    on the validation slice; each trial a nested MLflow run. `rekindle train` uses the best parameters."""
    from training.fit import prepare
    from training.tune import run_tune

    cfg = obj.config(business=business)
    start = time.perf_counter()
    with RichProgress(console) as progress:
        progress.note("loading the training set")
        prepared = prepare(cfg)
        result = run_tune(prepared, trials=trials, study_name=study_name, storage=storage, progress=progress)
    states = result.trials["state"].value_counts().to_dict() if "state" in result.trials else {}
    console.print(
        f"study {result.study_name!r} ({result.storage}): {states}\n"
        f"best doubly robust policy value on the validation slice: {result.best_value:,.0f} KRW per candidate\n"
        f"best parameters -> {result.params_path}"
    )
    for k, v in result.best_params.items():
        console.print(f"  {k:18s} {v}")
    console.print(f"done in {time.perf_counter() - start:,.0f} s")


# ----------------------------------------------------------------- train --
@click.command("train")
@click.option("--defaults", is_flag=True, help="Use the configured model parameters, not the tuned ones.")
@click.option("--ensemble", type=click.IntRange(min=1), help="Bootstrap members (default training.ensemble).")
@truth_option
@business_options
@click.pass_obj
@friendly_errors
def train(obj: Context, defaults: bool, ensemble: int | None, truth: Path | None, business: dict[str, Any]) -> None:
    """Train the response models (tuned parameters if `rekindle tune` ran), evaluate them on the held-out
    campaigns, log everything to MLflow, register the scorer as challenger and promote it if it earns it."""
    cfg = obj.config({"training": {"ensemble": ensemble}} if ensemble else None, business=business)
    run_training(cfg, defaults=defaults, truth=_truth_dir(cfg, truth))


def run_training(cfg: Config, *, defaults: bool, truth: Path | None, canary: bool = False) -> TrainResult:
    from training.train import run_train
    from training.tune import best_params_path, read_best_params

    params, source = (None, "config") if defaults else (read_best_params(cfg), str(best_params_path(cfg)))
    if params is None:
        source = "config (no tuning result; run `rekindle tune`)" if not defaults else "config"
    with RichProgress(console) as progress:
        result = run_train(cfg, params=params, params_source=source, truth_dir=truth, canary=canary, progress=progress)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    print_judged(console, result.judged)
    name = cfg.training.model_name
    console.print(f"\nregistered {name} version {result.version} as challenger (MLflow run {result.run_id})")
    console.print(("[green]" if result.promoted else "[yellow]") + result.reason + "[/]")
    console.print(f"report: {result.judged.report}\ndone in {result.seconds['total']:,.0f} s")
    return result


# -------------------------------------------------------------- evaluate --
@click.command("evaluate")
@click.option("--model", "model", metavar="REF", help="Alias, version or models:/ URI (default: challenger).")
@truth_option
@business_options
@click.pass_obj
@friendly_errors
def evaluate(obj: Context, model: str | None, truth: Path | None, business: dict[str, Any]) -> None:
    """Evaluate a registered model on the held-out campaigns: off-policy (IPS, SNIPS, doubly robust) values of
    its policy and the baselines with bootstrap intervals, ROI accuracy, reliability; with --truth, the exact values."""
    from training.train import run_evaluate

    cfg = obj.config(business=business)
    with RichProgress(console) as progress:
        result = run_evaluate(cfg, model=model, truth_dir=_truth_dir(cfg, truth), progress=progress)
    print_judged(console, result.judged)
    console.print(f"report: {result.judged.report} (MLflow run {result.run_id})")


# ----------------------------------------------------------------- batch --
@click.command("batch")
@click.option("--as-of", "as_of", metavar="TIME", help="Decision time (default: the feature build's as-of).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output file (.csv or .parquet).")
@click.option(
    "--margin", type=click.FloatRange(min=0, max=1, min_open=True), help="Margin on deposits (default business.margin)."
)
@click.option(
    "--objective",
    type=click.Choice(["net_value", "reengagement"]),
    help="Policy objective (default training.objective).",
)
@click.option("--budget", type=click.FloatRange(min=0), help="Total expected reward cost, KRW (default: none).")
@click.option("--model", "model", metavar="REF", help="Alias, version or models:/ URI (default: champion).")
@click.option(
    "--arm",
    metavar="ARM",
    help="Send this one arm (e.g. cashback@10000) to every candidate: the fallback when no model is champion.",
)
@click.option("--replace", is_flag=True, help="Replace the decisions an earlier batch at the same as-of logged.")
@click.option("--split", is_flag=True, help="Also write the campaign as one file per event type (OUT.<type>.csv).")
@click.option("--webhook", metavar="URL", help="Also POST the offers to this event system's webhook, in chunks.")
@click.option(
    "--chunk-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Offers per webhook POST."
)
@click.pass_obj
@friendly_errors
def batch(
    obj: Context,
    as_of: str | None,
    out: Path,
    margin: float | None,
    objective: str | None,
    budget: float | None,
    model: str | None,
    arm: str | None,
    replace: bool,
    split: bool,
    webhook: str | None,
    chunk_size: int,
) -> None:
    """Decide for every dormant candidate at a time: one row each with event_type, reward (none/0 for no offer),
    expected values, interval, confidence and propensity, under the serving policy (rules, overrides,
    exploration, holdout, budget); every decision is logged."""
    cfg = obj.config()
    run_decisions(
        cfg,
        as_of=parse_time(as_of, "--as-of"),
        out=out,
        margin=margin,
        objective=cast("Objective | None", objective),
        budget=budget,
        model=model,
        arm=arm,
        replace=replace,
        split=split,
        webhook=webhook,
        chunk_size=chunk_size,
    )


def run_decisions(
    cfg: Config,
    *,
    as_of: datetime | None,
    out: Path,
    margin: float | None = None,
    objective: Objective | None = None,
    budget: float | None = None,
    model: str | None = None,
    arm: ArmRule | None = None,
    replace: bool = False,
    split: bool = False,
    webhook: str | None = None,
    chunk_size: int = 1000,
) -> BatchResult:
    from serving.batch import run_batch
    from training import registry
    from training.scorer import Scorer

    name, ref = cfg.training.model_name, model or registry.CHAMPION
    with RichProgress(console) as progress:
        with registry.tracking(cfg):
            if ref == registry.CHAMPION and registry.alias_version(name, registry.CHAMPION) is None:
                raise registry.RegistryError(
                    f"no champion of {name} yet: run `rekindle train` (or pass --model challenger to use a model "
                    "that was not promoted)"
                )
            uri, version = registry.resolve(name, ref)
            progress.note(f"loading {version} ({ref})")
            scorer = Scorer(registry.load_model(uri), cfg.business.margin, cfg.training.objective)
            canary = None
            canary_v = registry.alias_version(name, registry.CANARY)
            if canary_v is not None:  # a running canary experiment's challenger variant decides with it
                loaded = registry.load_model(registry.model_uri(name, str(canary_v)))
                canary = (
                    Scorer(loaded, cfg.business.margin, cfg.training.objective),
                    f"{name}/{canary_v}",
                    registry.canary_rule(name, canary_v),
                )
        result = run_batch(
            cfg,
            scorer,
            as_of=as_of,
            out=out,
            model_version=version,
            margin=margin,
            objective=objective,
            budget=budget,
            arm=arm,
            replace=replace,
            split=split,
            webhook=webhook,
            chunk_size=chunk_size,
            canary=canary,
            progress=progress,
        )
    d = result.decisions
    offers = d[d["event_type"] != "none"]
    console.print(
        f"{len(d):,} candidates at {result.as_of:%Y-%m-%dT%H:%M}: {len(offers):,} offers, "
        f"{len(d) - len(offers):,} no offer; "
        f"expected reward cost {offers['expected_cost'].sum():,.0f} KRW, incremental net value "
        f"{d['incremental_net_value'].sum():,.0f} KRW, mean confidence {d['confidence'].mean():.2f}"
    )
    shares = (d["event_type"] + "@" + d["reward"].astype(str)).value_counts().head(8)
    console.print("arms: " + ", ".join(f"{a} {n:,}" for a, n in shares.items()))
    console.print(
        f"holdout {d['holdout'].sum():,} (no offer, the control group), explored {d['explored'].sum():,}, "
        f"no offer by rule {(~d['holdout'] & d['reason'].str.startswith(('frequency cap', 'status'))).sum():,}; "
        f"logged as {result.campaign}"
    )
    if result.lp_gap is not None:
        console.print(f"budget: the knapsack's expected gain is within {result.lp_gap:.2%} of its LP bound")
    console.print(f"wrote {result.path} in {result.seconds['total']:,.0f} s")
    if result.files:
        sent = d.loc[d["event_type"] != "none", "event_type"].value_counts()
        for f, (event_type, n) in zip(result.files, sorted(sent.items()), strict=True):
            console.print(f"  campaign file for {event_type}: {f} ({n:,} players)")
    if result.delivery is not None:
        print_delivery(result.delivery)
    return result


def print_delivery(r: DeliveryReport) -> None:
    console.print(
        f"webhook {r.url}: {r.offers:,} offers in {r.sent} chunks sent ({r.attempts} requests, {r.seconds:,.1f} s)"
        + (f"; {r.skipped} chunks had been delivered before" if r.skipped else "")
        + f"; all {r.chunks} chunks of {r.campaign} delivered"
    )


COMMANDS = (tune, train, evaluate, batch)
