"""Validation of the platform database: contract and data checks run as SQL,
a report (rich table, JSON), and row filters that later stages use to exclude
invalid rows."""

from validation.checks import (
    CheckResult,
    Severity,
    UnsupportedDatabaseError,
    excluded_counts,
    row_filters,
    run_checks,
)
from validation.report import ValidationReport, validate

__all__ = [
    "CheckResult",
    "Severity",
    "UnsupportedDatabaseError",
    "ValidationReport",
    "excluded_counts",
    "row_filters",
    "run_checks",
    "validate",
]
