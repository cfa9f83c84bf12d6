"""The ``rekindle`` group and what every command shares: the context (home, config, database),
the consoles, the options that several commands take, and turning a user's mistake into one red line."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console

from core.config import Config, load_config
from core.timeutil import naive_utc

F = TypeVar("F", bound=Callable[..., Any])
# Wide enough for check names when the output is a file or a pipe (rich assumes 80).
_WIDTH = None if sys.stdout.isatty() else 140
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

BUSINESS_FLAGS = ("margin", "attribution_days", "dormancy_days")


class Context:
    """The global options, resolved into a validated :class:`core.config.Config` per command."""

    def __init__(self, home: str | None, config_dir: str | None, db: str | None) -> None:
        self.home, self.config_dir, self.db = home, config_dir, db

    def config(
        self,
        overrides: dict[str, Any] | None = None,
        *,
        db: str | None = None,
        business: dict[str, Any] | None = None,
    ) -> Config:
        """The configuration with this command's flags: ``overrides`` (a nested mapping), ``--db`` and the
        business flags of :func:`business_options`."""
        if business:
            overrides = {**(overrides or {}), "business": business}
        return load_config(self.config_dir, home=self.home, db_url=db or self.db, overrides=overrides)


def friendly_errors(fn: F) -> F:
    """Failures a user can fix become one red line and exit code 2, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import DBAPIError

        from core.errors import RekindleError

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
    """An ISO time given on the command line, as naive UTC (aware values are converted)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO time (expected e.g. 2026-10-05T10:00:00)", param_hint=what
        ) from exc
    return naive_utc(parsed)


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
    """``--margin``, ``--attribution-days`` and ``--dormancy-days``, handed to the command as one mapping
    ``business`` (the flags given) for :meth:`Context.config`. The features, the training set and the models
    must agree on the last two: the commands that read a build made with others say so."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in BUSINESS_FLAGS}
        kwargs["business"] = {k: v for k, v in given.items() if v is not None}
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
    quiet_libraries()
    ctx.obj = Context(home, config_dir, db)


def quiet_libraries() -> None:
    """What a user reads is ours: the libraries' deprecation notices and MLflow's INFO lines (database
    migrations, environment detection) are not. ``MLFLOW_LOGGING_LEVEL`` set by the user wins."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # libraries reset the warning filters when they are imported (feast sets "once" for every deprecation),
    # so the notices are dropped where they would be shown
    if getattr(warnings.showwarning, "__name__", "") != _show_warning.__name__:
        _show_warning.shown_by = warnings.showwarning  # type: ignore[attr-defined]
        warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` without the deprecation notices of the installed libraries."""
    if issubclass(category, DeprecationWarning | PendingDeprecationWarning | FutureWarning) and (
        "site-packages" in filename
    ):
        return
    _show_warning.shown_by(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]
