"""The HTML report of a training run: one self-contained file to read in a browser.

Summary figures, tables and PNG figures go into a single HTML page with inline
CSS and the images embedded as base64, so the file can be attached to an MLflow
run or mailed without its folder. ``render_report`` builds the page (pure);
``write_report`` reads the figures and writes the page atomically.
"""

from __future__ import annotations

import base64
import contextlib
import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MISSING = "\u2014"  # em dash, for None and NaN
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.generated { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; }
th { background: #f3f3f3; text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.summary td:first-child { text-align: left; font-weight: 600; }
.table-wrap { overflow-x: auto; }
img { max-width: 100%; height: auto; }
.empty { color: #666; font-style: italic; }
.verdict { border-left: 6px solid #888; background: #f7f7f7; padding: 0.6em 1em; margin: 1em 0; }
.verdict.pass { border-color: #2a9d8f; background: #eef8f6; }
.verdict.fail { border-color: #e76f51; background: #fdf1ed; }
.verdict p { margin: 0.35em 0; }
.verdict p.headline { font-size: 1.15em; font-weight: 600; }
ul.warnings li { color: #8a3b12; margin: 0.25em 0; }
"""


def format_float(value: float) -> str:
    """``1,234`` when ``abs(value) >= 100``, else three significant digits (``0.873``, ``12.3``); NaN as an em dash."""
    if math.isnan(value):
        return MISSING
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_value(value: object) -> str:
    """A value as text (not yet escaped): floats by ``format_float``, None/NA/NaT as an em dash."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING
    if isinstance(value, float | np.floating):
        return format_float(float(value))
    return str(value)


def _table_html(frame: pd.DataFrame) -> str:
    # Object columns mix types (None, a float among strings) that to_html would print raw
    # ("None", "0.87654321"): format them cell by cell, by position in case names repeat.
    shown = frame.copy()
    for i, dtype in enumerate(frame.dtypes):
        if pd.api.types.is_object_dtype(dtype):
            shown.isetitem(i, frame.iloc[:, i].map(format_value).to_numpy(dtype=object))
    body = shown.to_html(index=False, escape=True, float_format=format_float, na_rep=MISSING, border=0)
    return f'<div class="table-wrap">{body}</div>'


def _summary_html(summary: Mapping[str, object]) -> str:
    if not summary:
        return '<p class="empty">no summary</p>'
    rows = "".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(format_value(value))}</td></tr>"
        for key, value in summary.items()
    )
    return f'<table class="summary"><tbody>{rows}</tbody></table>'


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'


@dataclass(frozen=True)
class Verdict:
    """The report's opening: a headline, whether it is good news (``passed``), and the lines that explain it."""

    headline: str
    passed: bool | None = None  # None: neither (an evaluation without a decision)
    lines: tuple[str, ...] = ()


def _verdict_html(verdict: Verdict) -> str:
    kind = {True: " pass", False: " fail", None: ""}[verdict.passed]
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in verdict.lines)
    return f'<div class="verdict{kind}"><p class="headline">{html.escape(verdict.headline)}</p>{lines}</div>'


def render_report(
    *,
    title: str,
    summary: Mapping[str, object],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, bytes],
    notes: Sequence[str] | None = None,
    verdict: Verdict | None = None,
    warnings: Sequence[str] | None = None,
    details: Mapping[str, pd.DataFrame] | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The report page as HTML text; ``figures`` maps a heading to PNG bytes. Every string is escaped.

    In reading order: the verdict, ``tables``, the warnings, the figures, the ``details`` tables, the notes,
    and last the ``summary`` (every figure of the run, under "All metrics")."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="generated">generated {html.escape(when)}</p>',
    ]
    if verdict is not None:
        parts += ["<h2>Verdict</h2>", _verdict_html(verdict)]
    for name, frame in tables.items():
        parts += [f"<h2>{html.escape(name)}</h2>", _table_html(frame)]
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        parts += ["<h2>Warnings</h2>", f'<ul class="warnings">{items}</ul>']
    for name, png in figures.items():
        parts += [f"<h2>{html.escape(name)}</h2>", _figure_html(name, png)]
    for name, frame in (details or {}).items():
        parts += [f"<h2>{html.escape(name)}</h2>", _table_html(frame)]
    if notes:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
        parts += ["<h2>Notes</h2>", f"<ul>{items}</ul>"]
    parts += ["<h2>All metrics</h2>", _summary_html(summary), "</body>", "</html>", ""]
    return "\n".join(parts)


def _read_png(name: str, path: Path) -> bytes:
    data = Path(path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"figure {name!r} at {path} is not a PNG file (it lacks the PNG signature)")
    return data


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file next to ``path``, then rename it over ``path``: readers never
    see half a report, and a failure leaves no temporary file behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_report(
    path: Path,
    *,
    title: str,
    summary: dict[str, object],
    tables: dict[str, pd.DataFrame],
    figures: dict[str, Path],
    notes: list[str] | None = None,
    verdict: Verdict | None = None,
    warnings: list[str] | None = None,
    details: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Write the report to ``path`` (creating its folder) and return ``path``.

    Parameters
    ----------
    path : Path
        The HTML file to write; replaced atomically if it exists.
    title : str
        The page title and its h1 heading.
    summary : dict of str to object
        Key/value pairs shown last, under "All metrics"; floats are formatted, None shows as an em dash.
    tables : dict of str to DataFrame
        One section per table, headed by its key, right after the verdict.
    figures : dict of str to Path
        One section per PNG file, headed by its key; the image is embedded.
    notes : list of str, optional
        Shown after the details as a bulleted list.
    verdict : Verdict, optional
        Shown first.
    warnings : list of str, optional
        Shown after ``tables``, before the figures.
    details : dict of str to DataFrame, optional
        Tables shown after the figures.

    Raises
    ------
    FileNotFoundError
        If a figure file does not exist.
    ValueError
        If a figure file is not a PNG.
    """
    pngs = {name: _read_png(name, figure) for name, figure in figures.items()}  # fail before writing
    page = render_report(
        title=title,
        summary=summary,
        tables=tables,
        figures=pngs,
        notes=notes,
        verdict=verdict,
        warnings=warnings,
        details=details,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, page)
    return path
