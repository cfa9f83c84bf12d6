"""Content features of the event types: their attributes in the catalog (configs/catalog.yaml).

One row per catalog event type, with the columns of
:func:`features.families.event_type_content`. The catalog holds no history, so
the rows carry one timestamp (``stamp``); a build dates them early enough that
every point-in-time lookup finds them.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from core.config import Config
from features.families import EVENT_TYPE_KEY, TIMESTAMP

CONTENT_SINCE = datetime(1970, 1, 1)  # the catalog's attributes hold for any past decision


def event_type_content(cfg: Config, stamp: datetime) -> pd.DataFrame:
    """The catalog's event types as content features, all dated ``stamp``.

    Parameters
    ----------
    cfg
        The configuration; its ``catalog.event_types`` are read.
    stamp
        Naive UTC event timestamp of every row.

    Returns
    -------
    pandas.DataFrame
        ``event_type``, ``event_timestamp`` datetime64[us], ``requires_deposit`` int64, ``min_deposit``
        (0 when none), ``payout_ratio``, ``catalog_claim_rate``, ``reward_min``, ``reward_max`` float32 and
        ``game`` ("" when the event is tied to no game), in catalog order.
    """
    ets = cfg.catalog.event_types
    f32 = np.float32
    return pd.DataFrame(
        {
            EVENT_TYPE_KEY: pd.Series([e.name for e in ets], dtype=object),
            TIMESTAMP: pd.Series([stamp] * len(ets), dtype="datetime64[us]"),
            "requires_deposit": np.array([int(e.requires_deposit) for e in ets], dtype=np.int64),
            "min_deposit": np.array([e.min_deposit or 0 for e in ets], dtype=f32),
            "payout_ratio": np.array([e.payout_ratio for e in ets], dtype=f32),
            "catalog_claim_rate": np.array([e.claim_rate for e in ets], dtype=f32),
            "reward_min": np.array([min(e.rewards) for e in ets], dtype=f32),
            "reward_max": np.array([max(e.rewards) for e in ets], dtype=f32),
            "game": pd.Series([e.game or "" for e in ets], dtype=object),
        }
    )
