"""Stale evidence: the held-out and training rows that say nothing of an offer's value now.

After an event type's outcome drift (``training.stale_evidence``, set by the loop while the monitor finds it:
:func:`monitoring.rollout.judged_since_drift`), the decisions of campaigns up to the drift's start no longer
tell what that event type's offers are worth: the evaluation values them on the campaigns since alone
(:func:`current_evidence`), and its outcome model does not learn from the rows that sent them before
(:func:`stale_rows`). The other event types' offers keep every row as evidence. Pure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import ConfigError, StaleEvidence


def decided_before(stale: StaleEvidence, rows: pd.DataFrame) -> np.ndarray:
    """The rows of campaigns up to the drift's start."""
    return (pd.to_datetime(rows["campaign_at"]) <= pd.Timestamp(stale.since)).to_numpy()


def stale_rows(stale: StaleEvidence | None, rows: pd.DataFrame) -> np.ndarray:
    """The decision rows that sent one of ``stale``'s event types up to its ``since``."""
    if stale is None:
        return np.zeros(len(rows), bool)
    return decided_before(stale, rows) & rows["event_type"].astype(str).isin(stale.event_types).to_numpy()


def current_evidence(stale: StaleEvidence | None, rows: pd.DataFrame, arms: pd.DataFrame) -> np.ndarray | None:
    """Rows x arms: whether a held-out row's evidence on an arm still holds, i.e. not an arm of a ``stale`` event
    type on a campaign up to its ``since`` (None: no stale evidence). Raises :class:`ConfigError` when no row is
    left to value a policy on."""
    if stale is None:
        return None
    at = pd.to_datetime(rows["campaign_at"])
    before = decided_before(stale, rows)
    hit = arms["event_type"].astype(str).isin(stale.event_types).to_numpy()
    current = ~(before[:, None] & hit[None, :])
    if len(rows) and hit.any() and not current.all(axis=1).any():
        raise ConfigError(
            f"training.stale_evidence.since {stale.since:%Y-%m-%d %H:%M} is at or after every held-out campaign "
            f"(the latest: {at.max():%Y-%m-%d %H:%M}): no row would be left to value a policy on; expected a time "
            "before the latest campaign"
        )
    return current
