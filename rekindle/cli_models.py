"""The model commands of the ``rekindle`` CLI: tune, train, evaluate, batch.

Registered on :data:`rekindle.cli.main` by importing this module (cli.py does,
at its end). Thin, like the rest of the CLI: parse, call training/ and
serving/, print.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from rekindle.cli import Context, business_options, console, friendly_errors, main, parse_time


def _say(start: float):
    def say(msg: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:7.1f} s[/]  {msg}")

    return say


def _truth_dir(cfg: Any, truth: Path | None) -> Path | None:
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
@main.command("tune")
@click.option("--trials", type=click.IntRange(min=1), default=30, show_default=True, help="Optuna trials to run.")
@click.option("--storage", metavar="URL", help="Optuna storage (default sqlite:///<home>/optuna.db; or PostgreSQL).")
@click.option("--study", "study_name", metavar="NAME", help="Study name (default: model name + validation start).")
@business_options
@click.pass_obj
@friendly_errors
def tune(obj: Context, trials: int, storage: str | None, study_name: str | None) -> None:
    """Tune the response model: Optuna (TPE, median pruning) maximising the policy's doubly robust value
    on the validation slice; each trial a nested MLflow run. `rekindle train` uses the best parameters."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.fit import prepare
    from training.tune import run_tune

    cfg = obj.config()
    start = time.perf_counter()
    say = _say(start)
    say("loading the training set")
    prepared = prepare(cfg)
    best: list[float] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("trials", total=trials)

        def on_trial(number: int, value: float | None, state: str) -> None:
            if value is not None and state == "complete":
                best.append(value)
            shown = f"best {max(best):,.0f} KRW" if best else "no trial complete yet"
            bar.update(task, advance=1, description=f"trials ({shown})")

        result = run_tune(
            prepared, trials=trials, study_name=study_name, storage=storage, on_trial=on_trial, on_setup=say
        )
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
@main.command("train")
@click.option("--defaults", is_flag=True, help="Use the configured model parameters, not the tuned ones.")
@click.option("--ensemble", type=click.IntRange(min=1), help="Bootstrap members (default training.ensemble).")
@truth_option
@business_options
@click.pass_obj
@friendly_errors
def train(obj: Context, defaults: bool, ensemble: int | None, truth: Path | None) -> None:
    """Train the response models (tuned parameters if `rekindle tune` ran), evaluate them on the held-out
    campaigns, log everything to MLflow, register the scorer as challenger and promote it if it earns it."""
    cfg = obj.config({"training": {"ensemble": ensemble}} if ensemble else None)
    run_training(cfg, defaults=defaults, truth=_truth_dir(cfg, truth))


def run_training(cfg: Any, *, defaults: bool, truth: Path | None) -> Any:
    from training.train import run_train
    from training.tune import best_params_path, read_best_params

    start = time.perf_counter()
    params, source = (None, "config") if defaults else (read_best_params(cfg), str(best_params_path(cfg)))
    if params is None:
        source = "config (no tuning result; run `rekindle tune`)" if not defaults else "config"
    result = run_train(
        cfg,
        params=params,
        params_source=source,
        truth_dir=truth,
        say=_say(start),
        on_member=lambda i: console.print(f"           member {i + 1}/{cfg.training.ensemble} fitted"),
    )
    print_judged(result.judged)
    name = cfg.training.model_name
    console.print(f"\nregistered {name} version {result.version} as challenger (MLflow run {result.run_id})")
    console.print(("[green]" if result.promoted else "[yellow]") + result.reason + "[/]")
    console.print(f"report: {result.judged.report}\ndone in {result.seconds['total']:,.0f} s")
    return result


# -------------------------------------------------------------- evaluate --
@main.command("evaluate")
@click.option("--model", "model", metavar="REF", help="Alias, version or models:/ URI (default: challenger).")
@truth_option
@business_options
@click.pass_obj
@friendly_errors
def evaluate(obj: Context, model: str | None, truth: Path | None) -> None:
    """Evaluate a registered model on the held-out campaigns: off-policy (IPS, SNIPS, doubly robust) values of
    its policy and the baselines with bootstrap intervals, ROI accuracy, reliability; with --truth, the exact values."""
    from training.train import run_evaluate

    cfg = obj.config()
    start = time.perf_counter()
    result = run_evaluate(cfg, model=model, truth_dir=_truth_dir(cfg, truth), say=_say(start))
    print_judged(result.judged)
    console.print(f"report: {result.judged.report} (MLflow run {result.run_id})")


def print_judged(j: Any) -> None:
    from rich.table import Table

    from training import evaluation as ev

    e = j.evaluation
    values = e.values
    has_truth = (values["estimator"] == "truth").any()
    table = Table(title="policy values per candidate on the held-out campaigns (incremental against no offer)")
    for col in ("policy", "re-engagements", "net value KRW", "reward cost KRW", "ROI", "estimator"):
        table.add_column(col, justify="left" if col in ("policy", "estimator") else "right")

    def fmt(policy: str, q: str, est: str) -> str:
        hit = values[(values["policy"] == policy) & (values["quantity"] == q) & (values["estimator"] == est)]
        if hit.empty:
            return "-"
        v, lo, hi = hit.iloc[0][["estimate", "low", "high"]]
        if q == "reengaged":
            return f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]" if lo == lo else f"{v:+.4f}"
        if q == "roi":
            return f"{v:.2f}"
        return f"{v:,.0f} [{lo:,.0f}, {hi:,.0f}]" if lo == lo else f"{v:,.0f}"

    policies = [ev.LEARNED, ev.BEST_SINGLE, ev.PER_SEGMENT, ev.RANDOM, ev.HISTORICAL, ev.NO_OFFER]
    if has_truth:
        policies.append(ev.ORACLE)
    for p in policies:
        for est in ("truth", "dr-hurdle", "dr", "snips", "ips", "on-policy"):
            if ((values["policy"] == p) & (values["estimator"] == est)).any():
                table.add_row(p, *(fmt(p, q, est) for q in ("reengaged", "net_value", "reward_cost", "roi")), est)
    console.print(table)
    console.print(f"best single arm: {e.arms_of_baselines.get(ev.BEST_SINGLE)}")
    console.print(
        f"ROI accuracy ({e.roi_accuracy_source}): {e.roi_accuracy:.3f} over {len(e.roi_cells)} (segment, arm) cells"
    )
    if has_truth:
        learned = e.value(ev.LEARNED, "net_value", "truth")
        best = e.value(ev.BEST_SINGLE, "net_value", "truth")
        oracle = e.value(ev.ORACLE, "net_value", "truth")
        dr = e.value(ev.LEARNED, "net_value", "dr")
        hurdle = e.value(ev.LEARNED, "net_value", "dr-hurdle")

        def ratio(a: float, b: float) -> float:
            return a / b if b else float("nan")

        console.print(
            f"true value: learned {learned:,.0f} vs best single arm {best:,.0f} ({ratio(learned, best):.2f}x), "
            f"best arm per segment {e.value(ev.PER_SEGMENT, 'net_value', 'truth'):,.0f}, oracle {oracle:,.0f}; "
            f"headroom captured {ratio(learned - best, oracle - best):.3f}; DR-hurdle estimate {hurdle:,.0f} "
            f"({ratio(hurdle - learned, abs(learned)):+.1%} from the truth), DR {dr:,.0f} "
            f"({ratio(dr - learned, abs(learned)):+.1%})"
        )
    if j.budget is not None:
        for _, b in j.budget.iterrows():
            console.print(
                f"re-engagement objective within the cost of {b['reference']} {b['arm']}: "
                f"{b['policy_incremental_reengage']:.4f} vs {b['arm_incremental_reengage']:.4f} "
                f"incremental re-engagements per candidate ({b['ratio']:.2f}x) at a true cost of "
                f"{b['policy_cost']:,.0f} vs {b['arm_cost']:,.0f} KRW"
            )
    ece = e.extra.get("expected_calibration_error_reengage")
    if ece is not None:
        console.print(f"calibration: expected calibration error of the re-engagement probability {ece:.4f}")
    rel = e.reliability[e.reliability["n"] > 0]
    console.print(
        "reliability (confidence bin: share right): "
        + ", ".join(f"{r.bin_low:.2f}-{r.bin_high:.2f}: {r.share_right:.2f} (n={r.n:,})" for r in rel.itertuples())
    )


# ----------------------------------------------------------------- batch --
@main.command("batch")
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
) -> None:
    """Decide for every dormant candidate at a time: one row each with event_type, reward (none/0 for no offer),
    expected values, interval and confidence."""
    cfg = obj.config()
    run_decisions(
        cfg,
        as_of=parse_time(as_of, "--as-of"),
        out=out,
        margin=margin,
        objective=objective,
        budget=budget,
        model=model,
        arm=arm,
    )


def run_decisions(
    cfg: Any,
    *,
    as_of: Any,
    out: Path,
    margin: float | None = None,
    objective: str | None = None,
    budget: float | None = None,
    model: str | None = None,
    arm: str | None = None,
) -> Any:
    from serving.batch import run_batch
    from training import registry

    start = time.perf_counter()
    say = _say(start)
    with registry.tracking(cfg):
        ref = model or registry.CHAMPION
        if ref == registry.CHAMPION and registry.alias_version(cfg.training.model_name, registry.CHAMPION) is None:
            from training.registry import RegistryError

            raise RegistryError(
                f"no champion of {cfg.training.model_name} yet: run `rekindle train` (or pass --model challenger "
                "to use a model that was not promoted)"
            )
        uri = registry.model_uri(cfg.training.model_name, ref)
        say(f"loading {uri}")
        scorer = registry.load_scorer(uri)
    result = run_batch(
        cfg,
        scorer,
        as_of=as_of,
        out=out,
        model_version=uri,
        margin=margin,
        objective=objective,  # type: ignore[arg-type]
        budget=budget,
        arm=arm,
        say=say,
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
    console.print(f"wrote {result.path} in {result.seconds['total']:,.0f} s")
    return result
