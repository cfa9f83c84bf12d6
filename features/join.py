"""Feast's point-in-time join, checked: one row out per entity row in, back in the input order.

Feast returns the rows of ``get_historical_features`` in no particular order
(on DuckDB and on PostgreSQL alike), so every entity frame carries a
``row_id`` that is sorted on afterwards, and the row count is asserted.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.families import TIMESTAMP, Family
from features.layout import FeatureStoreError

ROW_ID = "row_id"


def feature_refs(families: list[Family]) -> list[str]:
    return [f"{fam.view}:{name}" for fam in families for name in fam.columns]


def historical_features(store: Any, entity_df: pd.DataFrame, families: list[Family]) -> pd.DataFrame:
    """The features of ``families`` as of each row's ``event_timestamp``; ``entity_df`` needs ``row_id``."""
    if ROW_ID not in entity_df or not entity_df[ROW_ID].is_unique:
        raise ValueError(f"the entity frame needs a unique {ROW_ID!r} column to restore the row order")
    job = store.get_historical_features(entity_df=entity_df, features=feature_refs(families), full_feature_names=False)
    out = job.to_df()
    if len(out) != len(entity_df):
        raise FeatureStoreError(
            f"the point-in-time join returned {len(out):,} rows for {len(entity_df):,} entity rows; expected one each"
        )
    out = out.sort_values(ROW_ID, kind="stable", ignore_index=True)
    if TIMESTAMP in out and isinstance(out[TIMESTAMP].dtype, pd.DatetimeTZDtype):
        out[TIMESTAMP] = out[TIMESTAMP].dt.tz_convert("UTC").dt.tz_localize(None)
    return out
