"""The feature store commands: build snapshots, materialise candidates, read features, build training sets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.root import (
    Context,
    business_options,
    console,
    db_option,
    err_console,
    friendly_errors,
    parse_time,
    skip_row_checks_option,
)
from app.progress import RichProgress
from core.config import Config

if TYPE_CHECKING:
    from features.build import BuildSummary
    from features.materialize import MaterializeSummary
    from features.training_set import TrainingSet


# ------------------------------------------------------------- features --
@click.group()
def features() -> None:
    """The feature store: build snapshots, materialise candidates, read features, build training sets."""


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
def features_build(
    obj: Context,
    db: str | None,
    as_of: str | None,
    since: str | None,
    skip_row_checks: bool,
    business: dict[str, Any],
) -> None:
    """Compute daily point-in-time snapshots of every feature family into the offline store."""
    cfg = obj.config(db=db, business=business)
    run_feature_build(cfg, parse_time(as_of, "--as-of"), parse_time(since, "--since"), row_checks=not skip_row_checks)


def run_feature_build(
    cfg: Config, as_of: datetime | None, since: datetime | None, *, row_checks: bool = True
) -> BuildSummary:
    from app.reporting import print_feature_build
    from features.build import build_features

    with RichProgress(console) as bars:
        summary = build_features(cfg, as_of=as_of, since=since, progress=bars, row_checks=row_checks)
    print_feature_build(console, summary)
    return summary


@features.command("materialize")
@click.pass_obj
@friendly_errors
def features_materialize(obj: Context) -> None:
    """Load the as-of features of the dormant candidates (and every event type) into the online store."""
    run_materialize(obj.config())


def run_materialize(cfg: Config) -> MaterializeSummary:
    from features.materialize import materialize

    with RichProgress(console) as bars:
        summary = materialize(cfg, progress=bars)
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
    obj: Context,
    db: str | None,
    as_of: str | None,
    out: Path | None,
    skip_row_checks: bool,
    business: dict[str, Any],
) -> None:
    """Decision rows (offers and reconstructed no-offer rows) with labels and point-in-time features."""
    cfg = obj.config(db=db, business=business)
    path = out or cfg.path("training", "training_set.parquet")
    run_training_set(cfg, parse_time(as_of, "--as-of"), path, row_checks=not skip_row_checks)


def run_training_set(cfg: Config, as_of: datetime | None, out: Path, *, row_checks: bool = True) -> TrainingSet:
    from app.reporting import print_training_set
    from features.training_set import build_training_set

    with RichProgress(console) as bars:
        ts = build_training_set(cfg, as_of=as_of, out=out, progress=bars, row_checks=row_checks)
    print_training_set(console, ts)
    return ts
