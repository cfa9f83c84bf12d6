"""Online feature reads for serving: one player (or a few) from the online store, in about a millisecond.

The feature services are fetched once and reused (a fresh lookup per call costs
~3.5 ms), and the store is warmed up on creation (the first read is 20-100 ms).
Batch scoring of the whole base reads the offline store instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from core.config import Config
from features.families import ENTITY, EVENT_TYPE_KEY, event_types
from features.layout import FeatureStoreError, layout
from features.manifest import as_built, read_manifest
from features.matching import add_match_scores
from features.materialize import read_marker
from features.repo import event_type_service_name, player_service_name
from features.store import open_store


class OnlineFeatures:
    """Reads the materialised features of players and event types."""

    def __init__(self, cfg: Config, *, warm_up: bool = True) -> None:
        lay = layout(cfg)
        if not lay.manifest_path.is_file():
            raise FeatureStoreError(f"no feature build in {lay.root}: run `rekindle features build` and `materialize`")
        cfg = as_built(cfg)
        self.cfg = cfg
        self._arms: pd.DataFrame | None = None
        marker = read_marker(cfg)
        built = read_manifest(cfg)["as_of"]
        if marker is None:
            raise FeatureStoreError(
                f"the online store in {lay.root} is not materialised (or its last materialisation failed): "
                "run `rekindle features materialize`"
            )
        self.as_of: datetime = marker["as_of"]
        self.stale = self.as_of != built  # a newer build has not been materialised yet
        self.store = open_store(cfg, apply=False)
        self.player_service = self.store.get_feature_service(player_service_name())
        self.event_service = self.store.get_feature_service(event_type_service_name())
        self.event_types = event_types(cfg)
        if warm_up:
            self.players([0])
            self.arms()
            fail_fast(self.store)

    def players(self, player_ids: Sequence[int]) -> pd.DataFrame:
        """One row per id, in order; features of players not in the online store are null."""
        rows = [{ENTITY: int(p)} for p in player_ids]
        resp = self.store.get_online_features(features=self.player_service, entity_rows=rows)
        return pd.DataFrame(resp.to_dict())

    def player(self, player_id: int) -> dict[str, Any]:
        """The features of one player as a plain dict (None where unknown)."""
        resp = self.store.get_online_features(features=self.player_service, entity_rows=[{ENTITY: int(player_id)}])
        return {k: v[0] for k, v in resp.to_dict().items()}

    def arms(self) -> pd.DataFrame:
        """Content and collaborative features of every event type of the platform."""
        rows = [{EVENT_TYPE_KEY: e} for e in self.event_types]
        resp = self.store.get_online_features(features=self.event_service, entity_rows=rows)
        return pd.DataFrame(resp.to_dict())

    def model_frame(self, player_ids: Sequence[int], at: datetime) -> pd.DataFrame:
        """What the response model scores for these players at ``at``: their online features and match
        scores, the columns :func:`features.candidates.candidate_features` gives the batch."""
        frame = self.players(player_ids)
        frame["decided_at"] = pd.Timestamp(at)
        arms = self.event_table()
        emb = arms[[EVENT_TYPE_KEY, *[c for c in arms.columns if c.startswith("ev_cf_")]]]
        return add_match_scores(frame, self.cfg, emb, arms, time_column="decided_at")

    def event_table(self) -> pd.DataFrame:
        """:meth:`arms`, read once per materialisation (event types change only when it does)."""
        if self._arms is None:
            self._arms = self.arms()
        return self._arms


def fail_fast(store: Any) -> None:
    """Make the Redis client of a warmed-up store try a read once more at most, without waiting: redis-py's
    default is three more tries with exponential backoff, ~5-10 s per read while Redis is down, and a
    serving call has to know at once that it should decide at the segment level. No-op for other stores."""
    online = getattr(store._get_provider(), "online_store", None)  # Feast has no public handle on its client
    client = getattr(online, "_client", None)
    if client is not None and hasattr(client, "set_retry"):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client.set_retry(Retry(NoBackoff(), 1))
