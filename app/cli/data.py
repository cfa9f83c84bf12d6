"""The platform's data: create its tables, simulate one, validate it against the contract, segment its players."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.root import Context, console, db_option, friendly_errors, parse_time
from app.progress import RichProgress
from core.config import Config
from core.timeutil import utc_now

if TYPE_CHECKING:
    from segmentation.service import SegmentationResult
    from simulator.run import SimulationSummary


# ------------------------------------------------------------------- db --
@click.group()
def db() -> None:
    """The platform database."""


@db.command("init")
@db_option
@click.option("--no-constraints", is_flag=True, help="Leave out primary and foreign keys (as some platforms do).")
@click.option("--drop", is_flag=True, help="Drop the platform tables first (destroys their data).")
@click.pass_obj
@friendly_errors
def db_init(obj: Context, db: str | None, no_constraints: bool, drop: bool) -> None:
    """Create the five source tables of the contract."""
    from platform_db.db import connect, init_source_tables, safe_url
    from platform_db.schema import SOURCE_TABLES

    cfg = obj.config(db=db)
    engine = connect(cfg.db_url, must_exist=False)
    created = init_source_tables(engine, constraints=not no_constraints, drop=drop)
    kept = [t for t in SOURCE_TABLES if t not in created]
    console.print(
        f"platform tables in {safe_url(cfg.db_url)}: created {created or 'none'}; already there {kept or 'none'}"
    )


# ------------------------------------------------------------- simulate --
@click.group(invoke_without_command=True)
@click.option(
    "--players", type=click.IntRange(min=100), help="Number of players (default from configs/simulator.yaml)."
)
@click.option("--days", type=click.IntRange(min=30), help="Days of history.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (same seed, same world).")
@click.option("--end", metavar="TIME", help="The as-of time the history ends at (ISO, UTC).")
@db_option
@click.option("--truth", "truth_dir", metavar="DIR", help="Where the ground truth goes (default <home>/truth).")
@click.option("--overwrite", is_flag=True, help="Replace an existing database and truth.")
@click.pass_context
@friendly_errors
def simulate(
    ctx: click.Context,
    players: int | None,
    days: int | None,
    seed: int | None,
    end: str | None,
    db: str | None,
    truth_dir: str | None,
    overwrite: bool,
) -> None:
    """Simulate a platform with history, and write its ground truth.

    Subcommand `respond` moves an existing simulated world forward."""
    if ctx.invoked_subcommand is not None:
        return
    over: dict[str, Any] = {}
    for key, value in (("players", players), ("days", days), ("seed", seed), ("end", parse_time(end, "--end"))):
        if value is not None:
            over[key] = value
    cfg = ctx.obj.config({"simulator": over} if over else None, db=db)
    run_simulation(cfg, Path(truth_dir) if truth_dir else cfg.path("truth"), overwrite=overwrite)


def run_simulation(cfg: Config, truth_dir: Path, *, overwrite: bool) -> SimulationSummary:
    from app.reporting import print_simulation
    from platform_db.db import safe_url
    from simulator.run import simulate as do_simulate

    with RichProgress(console) as progress:
        summary = do_simulate(cfg, truth_dir, overwrite=overwrite, progress=progress)
    print_simulation(console, summary, safe_url(cfg.db_url))
    return summary


@simulate.command("respond")
@db_option
@click.option(
    "--decisions",
    "decisions",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV or Parquet: player_id, event_type, reward, sent_at[, propensity].",
)
@click.option(
    "--truth", "truth_dir", metavar="DIR", help="The simulated world's truth directory (default <home>/truth)."
)
@click.option(
    "--drift-channel-mix",
    metavar="JSON",
    help='New arrivals\' channel mix, e.g. \'{"affiliate": 0.6, "organic": 0.4}\'.',
)
@click.option(
    "--drift-fatigue",
    type=click.FloatRange(0, 1, min_open=True),
    help="Pull multiplier per recent offer (default: configs).",
)
@click.option(
    "--drift-event",
    "drift_event",
    multiple=True,
    metavar="TYPE=MULT",
    help="Changed response to one event type, e.g. free_spins=0.3.",
)
@click.pass_obj
@friendly_errors
def simulate_respond(
    obj: Context,
    db: str | None,
    decisions: Path,
    truth_dir: str | None,
    drift_channel_mix: str | None,
    drift_fatigue: float | None,
    drift_event: tuple[str, ...],
) -> None:
    """Apply decisions to the simulated world and append their outcomes to the database."""
    import json

    from app.reporting import print_forward
    from simulator.run import respond

    drift: dict[str, Any] = {}
    if drift_channel_mix:
        try:
            drift["channel_mix"] = json.loads(drift_channel_mix)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{drift_channel_mix!r} is not JSON", param_hint="--drift-channel-mix") from exc
    if drift_fatigue is not None:
        drift["fatigue"] = drift_fatigue
    if drift_event:
        pairs = {}
        for item in drift_event:
            name, _, mult = item.partition("=")
            try:
                pairs[name] = float(mult)
            except ValueError as exc:
                raise click.BadParameter(f"{item!r}: expected TYPE=MULTIPLIER", param_hint="--drift-event") from exc
        drift["event_multiplier"] = pairs
    cfg = obj.config({"simulator": {"drift": drift}} if drift else None, db=db)
    with RichProgress(console) as progress:
        summary = respond(cfg, decisions, Path(truth_dir) if truth_dir else cfg.path("truth"), progress=progress)
    print_forward(console, summary)


# ------------------------------------------------------------- validate --
@click.command()
@db_option
@click.option("--now", metavar="TIME", help="Timestamps after this are 'in the future' (default: the clock, UTC).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="JSON report path (default <home>/reports/validation.json).",
)
@click.pass_obj
@friendly_errors
def validate(obj: Context, db: str | None, now: str | None, report_path: Path | None) -> None:
    """Check the platform database against the contract. Exits 1 on errors (warnings pass)."""
    ok = run_validation(obj.config(db=db), parse_time(now, "--now"), report_path)
    sys.exit(0 if ok else 1)


def run_validation(cfg: Config, now: datetime | None, report_path: Path | None) -> bool:
    from platform_db.db import connect
    from validation.report import validate as do_validate

    engine = connect(cfg.db_url)
    with console.status("running the checks in the database ..."):
        report = do_validate(engine, now=now or utc_now())
    path = report_path or cfg.path("reports", "validation.json")
    report.to_json(path)
    report.render(console)
    console.print(f"report: {path}")
    return bool(report.ok)


# -------------------------------------------------------------- segment --
@click.command()
@db_option
@click.option(
    "--as-of",
    "as_of",
    metavar="TIME",
    help="Classify players at this time (default: the latest event in the database).",
)
@click.option("--out", type=click.Path(path_type=Path), help="Also write the segments to this .csv or .parquet file.")
@click.pass_obj
@friendly_errors
def segment(obj: Context, db: str | None, as_of: str | None, out: Path | None) -> None:
    """Classify every player at a time: dormancy, stage, value, behaviour, segment."""
    run_segmentation(obj.config(db=db), parse_time(as_of, "--as-of"), out)


def run_segmentation(cfg: Config, as_of: datetime | None, out: Path | None) -> SegmentationResult:
    from app.reporting import print_segments
    from segmentation.service import segment_and_store

    with console.status("segmenting players ..."):
        result = segment_and_store(cfg, as_of, out)
    print_segments(console, result)
    return result


COMMANDS = (db, simulate, validate, segment)
