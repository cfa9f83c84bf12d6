"""The dormant candidates at a time T with their point-in-time features: what a batch decides for.

Candidates are the players dormant at the snapshot in force at T (the latest
daily snapshot at or before T) whose status is active, as in the online store.
Their features come from Feast's point-in-time join at T, the same retrieval
the training set used, and the match scores are computed the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from features.families import ENTITY, TIMESTAMP, all_families, player_families
from features.join import ROW_ID, historical_features
from features.layout import FeatureStoreError, layout
from features.manifest import as_built, read_manifest
from features.matching import add_match_scores
from features.materialize import candidates_at
from features.offline import read_view
from features.store import open_store


class CandidateError(RekindleError, ValueError):
    """No candidate to decide for at the time asked, or a time outside the feature build."""


def snapshot_at(cfg: Config, as_of: datetime | None) -> tuple[datetime, datetime]:
    """(T, the daily snapshot in force at T) within the feature build."""
    manifest = read_manifest(cfg)
    built, first = manifest["as_of"], pd.Timestamp(manifest["first_snapshot"]).to_pydatetime()
    t = as_of or built
    if t > built:
        raise FeatureStoreError(
            f"--as-of {t:%Y-%m-%dT%H:%M} is after the feature build's as-of {built:%Y-%m-%dT%H:%M}: "
            "rebuild the features"
        )
    if t < first:
        raise CandidateError(f"--as-of {t:%Y-%m-%dT%H:%M} is before the first snapshot {first:%Y-%m-%dT%H:%M}")
    days = int(np.ceil((built - t) / timedelta(days=1) - 1e-9))
    return t, built - timedelta(days=days)


def candidate_features(cfg: Config, as_of: datetime, snapshot: datetime) -> pd.DataFrame:
    """Every candidate at ``as_of`` with its point-in-time features and match scores."""
    cfg = as_built(cfg)
    lay = layout(cfg)
    families = {f.view: f for f in all_families(cfg)}
    segment = read_view(lay, families["player_segment"], at=snapshot)
    ids = candidates_at(segment, read_view(lay, families["player_profile"]))
    if len(ids) == 0:
        raise CandidateError(f"no dormant candidate at {as_of:%Y-%m-%dT%H:%M}: nothing to decide")
    entity = pd.DataFrame(
        {
            ROW_ID: np.arange(len(ids)),
            ENTITY: ids,
            TIMESTAMP: pd.Timestamp(as_of).tz_localize("UTC"),
        }
    )
    frame = historical_features(open_store(cfg), entity, player_families(cfg))
    frame["decided_at"] = pd.Timestamp(as_of)
    event_emb, content = read_view(lay, families["event_type_cf"]), read_view(lay, families["event_type_content"])
    return add_match_scores(frame, cfg, event_emb, content, time_column="decided_at")
