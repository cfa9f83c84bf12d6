"""A platform table restricted to its valid rows, as a SQL ``FROM`` item.

The filters (table -> SQL condition over that table's columns) come from
:func:`validation.checks.filters_for_invalid_rows`; a table without one is read whole.
"""

from __future__ import annotations

from collections.abc import Mapping


def source(table: str, filters: Mapping[str, str]) -> str:
    """``table`` as a FROM item without alias, restricted to its valid rows when a filter is given."""
    expr = filters.get(table)
    return f'(SELECT * FROM "{table}" WHERE ({expr}))' if expr else f'"{table}"'


def valid_rows(table: str, alias: str, filters: Mapping[str, str]) -> str:
    """``table`` as a FROM item with ``alias``, for ``sqlalchemy.text`` (restricted like :func:`source`)."""
    expr = filters.get(table)
    if expr:
        # Escaped so that sa.text() reads no bind parameter into a literal such as ' :x'.
        literal = expr.replace(":", "\\:")
        return f'(SELECT * FROM "{table}" WHERE ({literal})) {alias}'
    return f'"{table}" {alias}'
