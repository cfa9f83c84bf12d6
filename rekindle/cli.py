"""The ``rekindle`` command line. Thin: parse, load config, call the modules, print.

Heavy libraries are imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
# Wide enough for check names when the output is a file or a pipe (rich assumes 80).
_WIDTH = None if sys.stdout.isatty() else 140
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


class Context:
    def __init__(self, home: str | None, config_dir: str | None, db: str | None) -> None:
        self.home, self.config_dir, self.db = home, config_dir, db
        self.business: dict[str, Any] = {}  # --margin, --attribution-days, --dormancy-days

    def config(self, overrides: dict[str, Any] | None = None, db: str | None = None) -> Any:
        from rekindle.config import load_config

        if self.business:
            overrides = {**(overrides or {}), "business": self.business}
        return load_config(self.config_dir, home=self.home, db_url=db or self.db, overrides=overrides)


def friendly_errors(fn: F) -> F:
    """Failures a user can fix become one red line and exit code 2, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import DBAPIError

        from rekindle.errors import RekindleError

        try:
            return fn(*args, **kwargs)
        except RekindleError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        except OSError as exc:  # files: missing, a directory, not a directory, no permission
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            err_console.print(f"[bold red]error:[/] {exc.strerror or exc}{where}", soft_wrap=True)
        except DBAPIError as exc:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            err_console.print(f"[bold red]database error:[/] {first}", soft_wrap=True)
        sys.exit(2)

    return wrapper  # type: ignore[return-value]


def parse_time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO time (expected e.g. 2026-10-05T10:00:00)", param_hint=what
        ) from exc
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


skip_row_checks_option = click.option(
    "--skip-row-checks",
    is_flag=True,
    help="Use every platform row, without leaving out those `rekindle validate` marks invalid (faster on a "
    "database that just passed validation).",
)
db_option = click.option(
    "--db", "db", metavar="URL", help="Platform database URL (env REKINDLE_DB_URL; default: SQLite under the home)."
)


def business_options(fn: F) -> F:
    """``--margin``, ``--attribution-days`` and ``--dormancy-days``: override ``business`` in the config for
    this command (the features, the training set and the models must agree on the last two: the commands
    that read a build made with others say so)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in ("margin", "attribution_days", "dormancy_days")}
        obj = click.get_current_context().find_object(Context)
        assert obj is not None, "business_options needs the rekindle group's Context"
        obj.business = {k: v for k, v in given.items() if v is not None}
        return fn(*args, **kwargs)

    options = [
        click.option(
            "--margin",
            type=click.FloatRange(min=0, max=1, min_open=True),
            help="Share of deposits the platform keeps (default business.margin).",
        ),
        click.option(
            "--attribution-days",
            type=click.IntRange(min=1),
            help="Days after an offer its outcome is counted (default business.attribution_days).",
        ),
        click.option(
            "--dormancy-days",
            type=click.IntRange(min=1),
            help="Days without a session that make a player dormant (default business.dormancy_days).",
        ),
    ]
    out: Any = wrapper
    for option in reversed(options):
        out = option(out)
    return out  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--home", metavar="DIR", help="Where all state is written (env REKINDLE_HOME; default ./var).")
@click.option(
    "--config", "config_dir", metavar="DIR", help="Configuration directory (env REKINDLE_CONFIG; default ./configs)."
)
@click.option("--db", "db", metavar="URL", help="Platform database URL (env REKINDLE_DB_URL).")
@click.pass_context
def main(ctx: click.Context, home: str | None, config_dir: str | None, db: str | None) -> None:
    """Rekindle: win back dormant players with the right event, reward, or nothing."""
    ctx.obj = Context(home, config_dir, db)


# ------------------------------------------------------------------- db --
@main.group()
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
    from rekindle.platform.db import connect, init_source_tables, safe_url
    from rekindle.platform.schema import SOURCE_TABLES

    cfg = obj.config(db=db)
    engine = connect(cfg.db_url, must_exist=False)
    created = init_source_tables(engine, constraints=not no_constraints, drop=drop)
    kept = [t for t in SOURCE_TABLES if t not in created]
    console.print(
        f"platform tables in {safe_url(cfg.db_url)}: created {created or 'none'}; already there {kept or 'none'}"
    )


# ------------------------------------------------------------- simulate --
@main.group(invoke_without_command=True)
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


def run_simulation(cfg: Any, truth_dir: Path, *, overwrite: bool) -> Any:
    from rekindle.platform.db import safe_url
    from rekindle.reporting import print_simulation
    from rekindle.simulator.run import simulate as do_simulate

    summary = do_simulate(cfg, truth_dir, overwrite=overwrite, console=console)
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

    from rekindle.reporting import print_forward
    from rekindle.simulator.run import respond

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
    summary = respond(cfg, decisions, Path(truth_dir) if truth_dir else cfg.path("truth"), console=console)
    print_forward(console, summary)


# ------------------------------------------------------------- validate --
@main.command()
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


def run_validation(cfg: Any, now: datetime | None, report_path: Path | None) -> bool:
    from rekindle.platform.db import connect
    from rekindle.validation.report import validate as do_validate

    engine = connect(cfg.db_url)
    with console.status("running the checks in the database ..."):
        report = do_validate(engine, now=now or datetime.now(UTC).replace(tzinfo=None))
    path = report_path or cfg.path("reports", "validation.json")
    report.to_json(path)
    report.render(console)
    console.print(f"report: {path}")
    return bool(report.ok)


# -------------------------------------------------------------- segment --
@main.command()
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


def run_segmentation(cfg: Any, as_of: datetime | None, out: Path | None) -> Any:
    from rekindle.reporting import print_segments
    from rekindle.segmentation.service import segment_and_store

    with console.status("segmenting players ..."):
        result = segment_and_store(cfg, as_of, out)
    print_segments(console, result)
    return result


# ------------------------------------------------------------- features --
@main.group()
def features() -> None:
    """The feature store: build snapshots, materialise candidates, read features, build training sets."""


class _Bars:
    """Rich progress bars behind features.build.Progress callbacks."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def callbacks(self) -> Any:
        from features.progress import Progress as Callbacks

        def start(name: str, total: int) -> None:
            self.tasks[name] = self.progress.add_task(name, total=max(total, 1))

        def advance(name: str, n: int) -> None:
            self.progress.advance(self.tasks[name], n)

        return Callbacks(start, advance)

    def __enter__(self) -> _Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)


@features.command("build")
@db_option
@click.option(
    "--as-of", "as_of", metavar="TIME", help="Last snapshot time (default: the first full hour after the latest event)."
)
@click.option(
    "--since", metavar="TIME", help="Rebuild snapshots from this time on, keeping the older ones of the last build."
)
@skip_row_checks_option
@business_options
@click.pass_obj
@friendly_errors
def features_build(obj: Context, db: str | None, as_of: str | None, since: str | None, skip_row_checks: bool) -> None:
    """Compute daily point-in-time snapshots of every feature family into the offline store."""
    cfg = obj.config(db=db)
    run_feature_build(cfg, parse_time(as_of, "--as-of"), parse_time(since, "--since"), row_checks=not skip_row_checks)


def run_feature_build(cfg: Any, as_of: datetime | None, since: datetime | None, *, row_checks: bool = True) -> Any:
    from features.build import build_features
    from rekindle.reporting import print_feature_build

    with _Bars() as bars:
        summary = build_features(cfg, as_of=as_of, since=since, progress=bars.callbacks(), row_checks=row_checks)
    print_feature_build(console, summary)
    return summary


@features.command("materialize")
@click.pass_obj
@friendly_errors
def features_materialize(obj: Context) -> None:
    """Load the as-of features of the dormant candidates (and every event type) into the online store."""
    run_materialize(obj.config())


def run_materialize(cfg: Any) -> Any:
    from features.materialize import materialize

    with _Bars() as bars:
        summary = materialize(cfg, progress=bars.callbacks())
    console.print(
        f"materialised {summary.candidates:,} candidates as of {summary.as_of:%Y-%m-%dT%H:%M} "
        f"({sum(summary.rows.values()):,} rows over {len(summary.rows)} views) in {summary.seconds:.1f} s "
        f"= {summary.players_per_second:,.0f} players/s\nstore: {summary.store}"
    )
    return summary


@features.command("show")
@click.argument("player_ids", nargs=-1, type=int, required=True)
@click.pass_obj
@friendly_errors
def features_show(obj: Context, player_ids: tuple[int, ...]) -> None:
    """Print the online features of some players (as serving sees them)."""
    from features.online import OnlineFeatures

    online = OnlineFeatures(obj.config(), warm_up=False)
    if online.stale:
        err_console.print(
            f"[yellow]warning:[/] the online store holds features as of {online.as_of:%Y-%m-%dT%H:%M}, older than the "
            "last build: run `rekindle features materialize`"
        )
    frame = online.players(list(player_ids)).set_index("player_id").T
    console.print(frame.to_string())


@features.command("training-set")
@db_option
@click.option(
    "--as-of", "as_of", metavar="TIME", help="Labels known at this time (default: the feature build's as-of)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Parquet file (default <home>/training/training_set.parquet)."
)
@skip_row_checks_option
@business_options
@click.pass_obj
@friendly_errors
def features_training_set(
    obj: Context, db: str | None, as_of: str | None, out: Path | None, skip_row_checks: bool
) -> None:
    """Decision rows (offers and reconstructed no-offer rows) with labels and point-in-time features."""
    cfg = obj.config(db=db)
    path = out or cfg.path("training", "training_set.parquet")
    run_training_set(cfg, parse_time(as_of, "--as-of"), path, row_checks=not skip_row_checks)


def run_training_set(cfg: Any, as_of: datetime | None, out: Path, *, row_checks: bool = True) -> Any:
    from features.training_set import build_training_set
    from rekindle.reporting import print_training_set

    with _Bars() as bars:
        ts = build_training_set(cfg, as_of=as_of, out=out, progress=bars.callbacks(), row_checks=row_checks)
    print_training_set(console, ts)
    return ts


# ------------------------------------------------------------------ run --
@main.command("run")
@click.option("--players", type=click.IntRange(min=100), help="Players (default from configs/simulator.yaml).")
@click.option("--days", type=click.IntRange(min=30), help="Days of history (default from configs/simulator.yaml).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default from configs/simulator.yaml).")
@click.pass_obj
@friendly_errors
def run_all(obj: Context, players: int | None, days: int | None, seed: int | None) -> None:
    """The main job on the embedded default: simulate, validate, segment, build features, train set,
    train and evaluate models, decide for every dormant candidate.

    It always works on the SQLite files under the home (it replaces the simulated
    platform there), never on a database given with --db or REKINDLE_DB_URL."""
    from rekindle.config import sqlite_url

    over = {k: v for k, v in (("players", players), ("days", days), ("seed", seed)) if v is not None}
    cfg = obj.config({"simulator": over} if over else None)
    embedded = sqlite_url(cfg.home / "platform.db")
    if cfg.db_url != embedded:
        from rekindle.platform.db import safe_url

        console.print(f"[yellow]note:[/] `run` uses the embedded default {embedded}, not {safe_url(cfg.db_url)}")
    cfg = cfg.model_copy(update={"db_url": embedded, "system_db_url": sqlite_url(cfg.home / "rekindle.db")})
    if cfg.features.store.mode != "embedded":
        console.print("[yellow]note:[/] `run` uses the embedded feature store, not features.store.mode: production")
        store = cfg.features.store.model_copy(update={"mode": "embedded"})
        cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"store": store})})
    console.rule("1. simulate the platform")
    summary = run_simulation(cfg, cfg.path("truth"), overwrite=True)
    console.rule("2. validate it")
    # the simulated world may end after this machine's clock: judge "future" from its as-of time then
    ok = run_validation(cfg, max(summary.as_of, datetime.now(UTC).replace(tzinfo=None)), None)
    if not ok:
        err_console.print("[bold red]validation failed; stopping[/]")
        sys.exit(1)
    console.rule("3. segment the players")
    run_segmentation(cfg, summary.as_of, cfg.path("segments", f"segments-{summary.as_of:%Y%m%dT%H%M}.parquet"))
    console.rule("4. build the feature store")
    run_feature_build(cfg, summary.as_of, None, row_checks=False)  # step 2 just passed
    console.rule("5. load the candidates into the online store")
    run_materialize(cfg)
    console.rule("6. build the training set")
    run_training_set(cfg, None, cfg.path("training", "training_set.parquet"), row_checks=False)
    from rekindle.cli_models import run_decisions, run_training
    from training.registry import CHALLENGER, CHAMPION, champion_version

    console.rule("7. train, evaluate (against the simulator's truth) and register the response models")
    from training.data import TrainingDataError

    try:
        trained = run_training(cfg, defaults=False, truth=cfg.path("truth"))
    except TrainingDataError as exc:  # a world too short for the time split: the steps before still stand
        console.print(f"[yellow]note:[/] no training: {exc}")
        return
    console.rule("8. decide for every dormant candidate (batch)")
    out = cfg.path("decisions.csv")
    if trained.promoted or champion_version(cfg) is not None:
        if not trained.promoted:
            console.print(f"[yellow]note:[/] the new model is not champion ({trained.reason}); the champion decides")
        run_decisions(cfg, as_of=None, out=out, model=CHAMPION)
    else:  # no trusted learned policy: the best single arm for everyone, as the promotion's reason says
        arm = trained.judged.evaluation.estimated_best_single
        console.print(f"[yellow]note:[/] no model is champion ({trained.reason}); every candidate gets {arm}")
        run_decisions(cfg, as_of=None, out=out, model=CHALLENGER, arm=arm)
    console.print(f"\nall state is under {cfg.home}")


from rekindle import cli_models as _cli_models  # noqa: E402,F401  (registers tune, train, evaluate, batch)

if __name__ == "__main__":
    main()
