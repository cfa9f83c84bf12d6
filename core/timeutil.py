"""Time helpers shared by every layer: inside the system all times are naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as the naive UTC timestamp the platform stores (aware values are converted)."""
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def utc_now() -> datetime:
    """The clock, as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)
