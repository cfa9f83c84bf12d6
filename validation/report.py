"""The validation report: a verdict over the check results, rendered as a rich
table for people and written as JSON for machines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import Engine

from validation.checks import CheckResult, run_checks

INLINE_EXAMPLES = 2


def _jsonable(value: Any) -> Any:
    """A JSON-friendly form of a value read from the database."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _example_text(example: dict[str, Any]) -> str:
    return " ".join(f"{key}={_jsonable(value)}" for key, value in example.items())


@dataclass
class ValidationReport:
    """The results of one validation run.

    Attributes
    ----------
    db_url : str
        The database checked, password hidden.
    now : datetime
        The reference time of the "in the future" checks.
    results : list of CheckResult
        One per check, in run order.
    """

    db_url: str
    now: datetime
    results: list[CheckResult]

    @property
    def errors(self) -> list[CheckResult]:
        """Error-severity checks that found something: these fail the run."""
        return [r for r in self.results if r.failed and r.severity == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        """Warning-severity checks that found something: reported, not failing."""
        return [r for r in self.results if r.failed and r.severity == "warning"]

    @property
    def skipped(self) -> list[CheckResult]:
        """Checks that could not run (a table or column is missing or mistyped)."""
        return [r for r in self.results if r.skipped is not None]

    @property
    def ok(self) -> bool:
        """True when no error-severity check found anything."""
        return not self.errors

    def verdict(self) -> str:
        """One line: passed or failed, with the numbers of errors, warnings and skipped checks."""
        head = "PASSED" if self.ok else "FAILED"
        return (
            f"{head}: {len(self.results)} checks, {len(self.errors)} with errors, "
            f"{len(self.warnings)} with warnings, {len(self.skipped)} skipped"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data."""
        return {
            "db_url": self.db_url,
            "now": self.now.isoformat(),
            "ok": self.ok,
            "summary": {
                "checks": len(self.results),
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "skipped": len(self.skipped),
            },
            "checks": [
                {
                    "name": r.name,
                    "table": r.table,
                    "severity": r.severity,
                    "description": r.description,
                    "count": r.count,
                    "skipped": r.skipped,
                    "examples": [{k: _jsonable(v) for k, v in e.items()} for e in r.examples],
                }
                for r in self.results
            ],
        }

    def to_json(self, path: Path) -> None:
        """Write the report as JSON to ``path``, creating its parent directories."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def render(self, console: Console) -> None:
        """Print a table of every check's count (failures highlighted), then the verdict."""
        table = Table(title=f"Validation of {self.db_url} (now = {self.now.isoformat(sep=' ')})")
        table.add_column("check", no_wrap=True)
        table.add_column("severity")
        table.add_column("count", justify="right")
        table.add_column("found")
        for r in self.results:
            style, note = "", ""
            if r.skipped is not None:
                style, note = "dim", f"skipped: {r.skipped}"
            elif r.failed:
                style = "bold red" if r.severity == "error" else "yellow"
                shown = [_example_text(e) for e in r.examples[:INLINE_EXAMPLES]]
                more = r.count - len(shown)
                note = f"{r.description}: " + "; ".join(shown) + (f" (+{more} more)" if more > 0 else "")
            count = "-" if r.skipped is not None else str(r.count)
            table.add_row(Text(r.name), Text(r.severity), Text(count), Text(note), style=style)
        console.print(table)
        console.print(Text(self.verdict(), style="bold green" if self.ok else "bold red"))


def validate(engine: Engine, *, now: datetime) -> ValidationReport:
    """Run every check on the platform database and collect the report.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The platform database (SQLite or PostgreSQL).
    now : datetime
        The reference time for the "in the future" checks.

    Returns
    -------
    ValidationReport
        ``ok`` is False when any error-severity check found something.
    """
    results = run_checks(engine, now=now)
    return ValidationReport(db_url=engine.url.render_as_string(hide_password=True), now=now, results=results)
