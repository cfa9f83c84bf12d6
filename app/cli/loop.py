"""The closed loop's commands: ``rekindle feedback`` (what happened after each decision) and ``rekindle
experiment`` (variants by hash, their exposures)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli.root import Context, console, friendly_errors, parse_time
from core.config import Config

if TYPE_CHECKING:
    from monitoring.experiment_report import ExperimentReport
    from monitoring.monitor import MonitorRun
    from serving.experiments import Experiment


@click.command("feedback")
@click.option(
    "--as-of", "as_of", metavar="TIME", help="The platform's clock (default: one second after its latest row)."
)
@click.option("--skip-row-checks", is_flag=True, help="Read every platform row, without the validation's filters.")
@click.pass_obj
@friendly_errors
def feedback(obj: Context, as_of: str | None, skip_row_checks: bool) -> None:
    """Measure every logged decision whose attribution window has closed: sent or not, re-engaged,
    converted, deposits, reward cost and net value, one outcome row each in the system store. Running it
    again adds only what has closed since; a run after a crash finishes the crashed one's work."""
    from app.progress import RichProgress
    from monitoring.feedback import run_feedback

    cfg = obj.config()
    with RichProgress(console) as progress:
        run = run_feedback(cfg, parse_time(as_of, "--as-of"), row_checks=not skip_row_checks, progress=progress)
    console.print(
        f"platform clock {run.as_of:%Y-%m-%dT%H:%M:%S}: {run.measured:,} decisions measured"
        f" ({run.offers_not_sent:,} offers the platform has no send for), {run.waiting:,} waiting for their window"
    )
    if run.cells.empty:
        console.print("realised against predicted: no (segment, arm) cell has both offered and held-out rows yet")
        return
    shown = run.cells.sort_values("n_offered", ascending=False).head(20)
    console.print("\nrealised against predicted incremental net value per offer (KRW), largest cells:")
    console.print(shown.round({"predicted": 0, "realised": 0, "se": 0, "accuracy": 2}).to_string(index=False))
    reliable = int(run.cells["reliable"].sum())
    said = f"{run.accuracy:.2f}" if run.accuracy is not None else "n/a (no cell is reliable yet)"
    console.print(f"accuracy over the {reliable} reliable cells (s.e. under 10% of the value): {said}")
    if run.plot is not None:
        console.print(f"plot: {run.plot}")


@click.group("experiment")
def experiment() -> None:
    """Experiments: players assigned by hash to variants (the policy, random assignment, the marketers'
    selection, the best single arm, a holdout) in every batch and online decision while one runs."""


EQUAL_COST_TO = click.option(
    "--equal-cost-to",
    type=click.Choice(["random", "marketers", "best_arm"]),
    default="random",
    show_default=True,
    help="The baseline whose expected cost per player the equal_cost variant may spend.",
)


def parse_shares(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, share = part.partition("=")
        try:
            out[name.strip()] = float(share)
        except ValueError:
            raise click.BadParameter(
                f"{part!r} is not VARIANT=SHARE (e.g. policy=0.5)", param_hint="--variants"
            ) from None
        if not sep:
            raise click.BadParameter(f"{part!r} is not VARIANT=SHARE (e.g. policy=0.5)", param_hint="--variants")
    return out


@experiment.command("start")
@click.argument("name")
@click.option(
    "--variants",
    "variants",
    required=True,
    metavar="V=S,...",
    help="Variants and their shares, summing to 1, e.g. policy=0.5,random=0.2,marketers=0.2,holdout=0.1.",
)
@click.option(
    "--best-arm",
    metavar="ARM",
    help="The best_arm variant's arm (default: the best single arm the latest model's "
    "evaluation estimated), e.g. cashback@10000.",
)
@click.option(
    "--marketers",
    metavar="JSON",
    help='The marketers variant\'s segment -> arm table, e.g. {"segment": "arm", ...} '
    "(default: the platform's historical rule, the offer it sent most often per segment in the training set).",
)
@EQUAL_COST_TO
@click.option("--salt", help="The assignment's salt (default: the experiment's name).")
@click.option("--who", default="cli", show_default=True, help="Who starts it (recorded).")
@click.pass_obj
@friendly_errors
def experiment_start(obj: Context, name: str, variants: str, best_arm: str | None, marketers: str | None,
                     equal_cost_to: str, salt: str | None, who: str) -> None:  # fmt: skip
    """Start experiment NAME: from now on every decision assigns its player to a variant and logs it."""
    import json

    from serving.experiments import ExperimentError

    cfg = obj.config()
    try:
        table = json.loads(marketers) if marketers else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--marketers") from None
    shares = parse_shares(variants)
    try:
        e = new_experiment(cfg, name, shares, best_arm=best_arm, marketers=table, equal_cost_to=equal_cost_to,
                           salt=salt)  # fmt: skip
    except ExperimentError as exc:
        raise click.UsageError(str(exc)) from None
    start_experiment(cfg, e, who)


def new_experiment(
    cfg: Config, name: str, shares: dict[str, float], *, best_arm: str | None = None,
    marketers: dict[str, str] | None = None, equal_cost_to: str = "random", salt: str | None = None,
) -> Experiment:  # fmt: skip
    """Experiment NAME, its defaults filled in: the best arm from the latest model's evaluation, the
    marketers' table from the platform's history; both said on the console."""
    from serving.experiments import Experiment

    needs_table = "marketers" in shares or ("equal_cost" in shares and equal_cost_to == "marketers")
    if marketers is None and needs_table:
        marketers = historical_marketers(cfg)
        console.print("the marketers' selection (the platform's historical rule, most sent offer per segment):")
        for seg, arm in sorted(marketers.items()):
            console.print(f"  {seg:34s} {arm}")
    needs_arm = "best_arm" in shares or ("equal_cost" in shares and equal_cost_to == "best_arm")
    if best_arm is None and needs_arm:
        best_arm = latest_best_arm(cfg)
        console.print(f"the best single arm (the latest model's evaluation): {best_arm}")
    return Experiment(name, salt or name, shares, best_arm, marketers or {}, equal_cost_to)


def start_experiment(cfg: Config, e: Experiment, who: str) -> None:
    from core.timeutil import utc_now
    from serving.experiments import definition
    from system_db.experiments import ExperimentStore
    from system_db.store import SystemStore

    ExperimentStore(SystemStore(cfg.system_db_url)).start(e.name, definition(e), who, utc_now())
    console.print(f"experiment {e.name} running: " + ", ".join(f"{v} {s:.0%}" for v, s in e.shares.items()))


def historical_marketers(cfg: Config) -> dict[str, str]:
    import pandas as pd

    from serving.experiments import ExperimentError
    from training.baselines import historical_rule

    path = cfg.path("training", "training_set.parquet")
    if not path.is_file():
        raise ExperimentError(
            f"no training set at {path} to learn the platform's historical rule from: run "
            "`rekindle features training-set`, or pass --marketers"
        )
    from training import registry

    logged = pd.read_parquet(path, columns=["segment", "arm"])
    name = cfg.training.model_name
    with registry.tracking(cfg):  # the arms the latest model can send (rare historical arms are left out)
        version = registry.alias_version(name, registry.CHALLENGER)
        known = set(registry.load_model(registry.model_uri(name, str(version))).arms["arm"]) if version else None
    return historical_rule(logged["segment"], logged["arm"], known=known)


def latest_best_arm(cfg: Config) -> str:
    from serving.experiments import ExperimentError
    from training import registry

    name = cfg.training.model_name
    with registry.tracking(cfg):
        version = registry.alias_version(name, registry.CHALLENGER)
        arm = registry.version_tag(name, version, registry.BEST_ARM_TAG) if version is not None else None
    if not arm:
        raise ExperimentError(f"no model of {name} says its best single arm: run `rekindle train`, or pass --best-arm")
    return arm


@experiment.command("stop")
@click.argument("name")
@click.option("--who", default="cli", show_default=True, help="Who stops it (recorded).")
@click.pass_obj
@friendly_errors
def experiment_stop(obj: Context, name: str, who: str) -> None:
    """Stop experiment NAME: decisions follow the policy alone again; its exposures stay in the log."""
    from core.timeutil import utc_now
    from system_db.experiments import ExperimentStore
    from system_db.store import SystemStore

    ExperimentStore(SystemStore(obj.config().system_db_url)).stop(name, who, utc_now())
    console.print(f"experiment {name} stopped")


@experiment.command("status")
@click.argument("name", required=False)
@click.pass_obj
@friendly_errors
def experiment_status(obj: Context, name: str | None) -> None:
    """The experiments (or NAME's): state, and the players exposed per variant against the shares."""
    import sqlalchemy as sa

    from monitoring.experiment_stats import SRM_ALPHA, counts_ratio_pvalue
    from platform_db.db import read_sql
    from serving.experiments import from_definition
    from system_db.decision_log import DecisionLog
    from system_db.experiments import ExperimentStore
    from system_db.store import SystemStore

    store = SystemStore(obj.config().system_db_url)
    experiments = ExperimentStore(store)
    if name is None:
        listed = experiments.list()
        if listed.empty:
            console.print("no experiment yet: start one with `rekindle experiment start NAME --variants ...`")
            return
        console.print(listed.drop(columns="definition").to_string(index=False))
        return
    row = experiments.get(name)
    e = from_definition(name, row["definition"])
    d = DecisionLog(store).table
    exposed = read_sql(
        store.engine,
        sa.select(d.c.variant, sa.func.count(sa.distinct(d.c.player_id)).label("players"))
        .where(d.c.experiment == name)
        .group_by(d.c.variant),
    )
    console.print(f"experiment {name}: {row['status']} since {row['started_at']} ({row['started_by']})")
    counts = exposed.set_index("variant")["players"].reindex(list(e.shares), fill_value=0)
    total = int(counts.sum())
    for v, share in e.shares.items():
        got = counts[v] / total if total else 0.0
        console.print(f"  {v:10s} {int(counts[v]):>9,} players  {got:6.1%}  (configured {share:.0%})")
    if total:
        p = counts_ratio_pvalue(counts, e.shares)
        verdict = "MISMATCH: the assignment or the exposure log is broken" if p < SRM_ALPHA else "as configured"
        console.print(f"sample ratio: p = {p:.3g} ({verdict})")


@experiment.command("report")
@click.argument("name")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="The HTML report (default: under the home)."
)
@click.pass_obj
@friendly_errors
def experiment_report(obj: Context, name: str, out: Path | None) -> None:
    """Experiment NAME's players and outcomes (measured by `rekindle feedback`) per variant, the policy
    against each control with CUPED, Holm's correction, the sample-ratio check and the detectable effect;
    printed, and written as HTML with plots."""
    run_experiment_report(obj.config(), name, out)


def run_experiment_report(cfg: Config, name: str, out: Path | None) -> ExperimentReport | None:
    from monitoring.experiment_report import build_report, write_html, write_summary
    from serving.experiments import from_definition
    from system_db.decision_log import DecisionLog
    from system_db.experiments import ExperimentStore
    from system_db.outcomes import Outcomes
    from system_db.store import SystemStore

    store = SystemStore(cfg.system_db_url)
    e = from_definition(name, ExperimentStore(store).get(name)["definition"])
    exposed = DecisionLog(store).read(experiment=name)
    outcomes = Outcomes(store).read()
    outcomes = outcomes[outcomes["experiment"] == name]
    if outcomes.empty:
        console.print(
            f"experiment {name}: {exposed['player_id'].nunique():,} players exposed, none measured yet: run "
            "`rekindle feedback` once their attribution windows have closed"
        )
        return None
    report = build_report(name, e.shares, outcomes, exposed, cfg)
    v = report.stats.variants
    console.print(f"experiment {name}: {len(report.players):,} players measured, {report.waiting:,} waiting")
    cols = ["variant", "players", "share", "expected_share", "reengaged", "converted", "net_value", "reward_cost"]
    console.print(v[cols].round(4).to_string(index=False))
    for sentence in report.stats.sentences:
        console.print("- " + sentence)
    p = report.stats.power
    if len(p):
        console.print("\ndetectable relative effect at this size (80% power), and players needed for 15%:")
        console.print(p.round(4).to_string(index=False))
    path = write_html(report, out or cfg.path("experiments", name, "report.html"))
    write_summary(report, cfg.path("experiments", name, "summary.json"))  # the dashboard's experiments page
    console.print(f"\nreport: {path}")
    return report


# --------------------------------------------------------------- monitor --
@click.command("monitor")
@click.option("--as-of", "as_of", metavar="TIME", help="The platform's clock (default: after its latest row).")
@click.pass_obj
@friendly_errors
def monitor(obj: Context, as_of: str | None) -> None:
    """One monitoring run: data drift of the candidates' features against the training reference, drift of
    the predictions, realised against predicted outcomes and ROI accuracy. An alert is recorded, logged and
    POSTed to monitor.webhook; `rekindle loop` retrains on it. Exit code 3 on an alert."""
    run = run_monitor_step(obj.config(), parse_time(as_of, "--as-of"))
    if run.alert:
        raise SystemExit(3)


def run_monitor_step(cfg: Config, as_of: datetime | None) -> MonitorRun:
    from app.progress import RichProgress
    from monitoring.monitor import run_monitor

    with RichProgress(console) as progress:
        run = run_monitor(cfg, as_of, progress=progress)
    f = run.figures
    console.print(f"monitoring at platform clock {run.as_of:%Y-%m-%dT%H:%M:%S}")
    if run.data is not None:
        console.print(f"  data drift: {run.data.summary()}")
    if run.prediction is not None:
        console.print(f"  prediction drift: {run.prediction.summary()}")
    if run.outcomes is not None:
        console.print(f"  outcomes: {run.outcomes.summary()}")
    if run.lift is not None:
        console.print(f"  lift: {run.lift.summary()}")
    if run.roi_accuracy is not None:
        console.print(f"  ROI accuracy {run.roi_accuracy:.2f} over {f.get('roi_reliable_cells', 0)} reliable cells")
    for note in run.notes:
        console.print(f"  [dim]{note}[/]")
    for p in run.paths:
        console.print(f"  report: {p}")
    if run.alert:
        for reason in run.reasons:
            console.print(f"[bold red]ALERT[/] {reason}")
    else:
        console.print("[green]no alert[/]")
    return run


# --------------------------------------------------------------- retrain --
@click.command("retrain")
@click.option("--truth", type=click.Path(path_type=Path), help="The simulator's truth (reported, never used).")
@click.pass_obj
@friendly_errors
def retrain(obj: Context, truth: Path | None) -> None:
    """Settle a running canary (promote it or roll it back), else rebuild the features and the training set on
    the latest data, train a challenger, evaluate it against the champion on the same recent held-out rows
    (doubly robust), and start it as a canary on a share of the policy's players when it is better."""
    run_retrain_step(obj.config(), truth)


def run_retrain_step(cfg: Config, truth: Path | None, *, rebuild: bool = True) -> str:
    """What happened, in a word: promoted / rolled_back / canary_wait / canary_started / not_promoted /
    first_champion; or "rolled_back, " and one of the last three when an outcome drift withdrew a canary trained
    before it and the retraining ran at once."""
    from app.cli.features import run_feature_build, run_materialize, run_training_set
    from app.cli.models import run_training
    from core.timeutil import utc_now
    from monitoring.rollout import DRIFT_FIGURE, judged_since_drift, settle_canary, start_canary
    from system_db.model_events import LoopRecord
    from system_db.store import SystemStore

    at = utc_now()
    settled = settle_canary(cfg, at)
    if settled is not None:
        colour = {"promote": "green", "roll back": "yellow", "wait": "dim"}[settled.verdict.action]
        console.print(f"[{colour}]canary v{settled.version}: {settled.verdict.action}[/] — {settled.verdict.reason}")
        if not settled.superseded:
            return {"promote": "promoted", "roll back": "rolled_back", "wait": "canary_wait"}[settled.verdict.action]
    if rebuild:  # the loop has just rebuilt them
        run_feature_build(cfg, None, None, row_checks=False)
        run_materialize(cfg)
    run_training_set(cfg, None, cfg.path("training", "training_set.parquet"), row_checks=False)
    judged_cfg, why = judged_since_drift(cfg)
    if why:
        console.print(f"[yellow]{why}[/]")
    trained = run_training(judged_cfg, defaults=False, truth=truth, canary=True)
    record = LoopRecord(SystemStore(cfg.system_db_url))
    reason, figures = trained.reason, dict[str, object](trained.promotion.figures)
    if why:
        reason, figures[DRIFT_FIGURE] = f"{reason} ({why})", why
    record.event(at, "retrained", trained.version, reason, figures)
    word = "first_champion" if trained.promoted else "not_promoted"
    if trained.canaried:
        e = start_canary(cfg, trained.version, at)
        console.print(f"canary v{trained.version} serves {e.shares['challenger']:.0%} of players ({e.name})")
        word = "canary_started"
    return word if settled is None else f"rolled_back, {word}"  # a canary withdrawn by the drift, then this


# ------------------------------------------------------------------ loop --
@click.command("loop")
@click.option(
    "--every", "every", default="1d", show_default=True, metavar="DURATION",
    help="Time between passes: 30m, 6h, 1d, ...",
)  # fmt: skip
@click.option("--once", is_flag=True, help="One pass, then exit (for cron).")
@click.pass_obj
@friendly_errors
def loop(obj: Context, every: str, once: bool) -> None:
    """The closed loop on a schedule: feedback (the decisions whose windows closed), monitor, and retrain
    when the monitor alerts or a canary waits for its verdict. Stop it with Ctrl-C; or run `--once` from
    cron (docs/monitoring.md)."""
    import time

    from monitoring.rollout import canary_version

    seconds = _duration(every)
    cfg = obj.config()
    while True:
        from app.progress import RichProgress
        from monitoring.feedback import run_feedback

        try:
            with RichProgress(console) as progress:
                fb = run_feedback(cfg, None, progress=progress)
            console.print(f"feedback: {fb.measured:,} decisions measured, {fb.waiting:,} waiting")
            run = run_monitor_step(cfg, None)
            if run.alert or canary_version(cfg) is not None:
                console.print("retraining: " + run_retrain_step(cfg, None))
        except Exception as exc:  # one failed pass is reported; the schedule goes on (with --once it fails)
            if once:
                raise
            console.print(f"[bold red]this pass failed[/]: {exc}")
        if once:
            return
        console.print(f"next pass in {every}")
        time.sleep(seconds)


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1])
        unit = units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 6h or 1d", param_hint="--every") from None
    if value <= 0:
        raise click.BadParameter(f"{text!r} must be positive", param_hint="--every")
    return value * unit


COMMANDS = (feedback, experiment, monitor, retrain, loop)
