"""The arms a policy can choose from: (event type, reward) pairs, plus "no offer".

Arms are discovered from the history (every pair offered at least
``min_support`` times), so a database whose event types the catalog does not
know still gets a model. The catalog then restricts, prices or extends them:

- ``extend`` (default): the history's arms plus every catalog arm (a catalog
  reward never offered is scored by the model's reward response, monotone in
  the reward, so it is priced but not extrapolated upwards);
- ``restrict``: only history arms that the catalog lists;
- ``history``: the history's arms alone.

Each arm carries its expected payout per claim: the catalog's
``reward x payout_ratio`` when the catalog knows the event type, otherwise the
mean bonus paid per claimed offer of that arm in the history.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from core.config import Catalog
from core.errors import RekindleError
from scoring.design import NONE

CatalogUse = Literal["extend", "restrict", "history"]


class ArmError(RekindleError, ValueError):
    """The history and catalog leave no arm to choose from, or an arm is malformed."""


def arm_name(event_type: str, reward: int) -> str:
    return NONE if event_type == NONE else f"{event_type}@{int(reward)}"


def discover_arms(
    offers: pd.DataFrame, catalog: Catalog | None, *, min_support: int, use: CatalogUse = "extend"
) -> pd.DataFrame:
    """The arm table: ``arm, event_type, reward, support, claims, payout, source`` with "none" first.

    Parameters
    ----------
    offers
        Logged offers (no-offer rows are ignored): ``event_type``, ``reward``, ``reward_cost`` (bonus paid).
    catalog
        The catalog config, or None for history only.
    min_support
        Offers an (event type, reward) pair needs in the history to count as an arm.
    use
        How the catalog changes the history's arms (module docstring).
    """
    if use not in ("extend", "restrict", "history"):
        raise ArmError(f"unknown catalog use {use!r}; expected extend, restrict or history")
    if min_support < 1:
        raise ArmError(f"min_support must be >= 1, got {min_support}")
    sent = offers[offers["event_type"].astype(str) != NONE]
    bad = sent.loc[~(pd.to_numeric(sent["reward"], errors="coerce") > 0), "reward"]
    if len(bad):
        raise ArmError(f"offers with non-positive rewards {bad.head(5).tolist()}: every offer needs a reward > 0")
    stats = (
        sent.assign(claimed=sent["reward_cost"] > 0)
        .groupby([sent["event_type"].astype(str), sent["reward"].astype(np.int64)], sort=True)
        .agg(support=("claimed", "size"), claims=("claimed", "sum"), paid=("reward_cost", "sum"))
        .reset_index()
    )
    stats["mean_paid"] = stats["paid"] / stats["claims"].where(stats["claims"] > 0)
    history = stats[stats["support"] >= min_support].assign(source="history")
    known = {e.name: e for e in catalog.event_types} if catalog is not None and use != "history" else {}
    if use == "restrict":
        listed = {(e, r) for e, r in catalog.arms()} if catalog is not None else set()
        history = history[[(e, r) in listed for e, r in zip(history["event_type"], history["reward"], strict=True)]]
    table = history
    if use == "extend" and catalog is not None:
        have = set(zip(history["event_type"], history["reward"], strict=True))
        extra = [(e, r) for e, r in catalog.arms() if (e, r) not in have]
        if extra:
            add = pd.DataFrame(extra, columns=["event_type", "reward"]).merge(
                stats, on=["event_type", "reward"], how="left"
            )
            add = add.assign(support=add["support"].fillna(0).astype(np.int64), source="catalog")
            table = pd.concat([history, add], ignore_index=True)
    if table.empty:
        raise ArmError(
            f"no arm has {min_support}+ offers in the history (pairs seen: "
            f"{dict(zip(stats['event_type'] + '@' + stats['reward'].astype(str), stats['support'], strict=True))})"
            + (" among the catalog's arms" if use == "restrict" else "")
        )
    ratio = table["event_type"].map({n: e.payout_ratio for n, e in known.items()})
    table = table.assign(
        payout=np.where(ratio.notna(), table["reward"] * ratio, table["mean_paid"]),
        claims=table["claims"].fillna(0).astype(np.int64),
    )
    missing = table.loc[table["payout"].isna()]
    if len(missing):  # no catalog price and never claimed: assume the whole reward is paid
        table.loc[missing.index, "payout"] = missing["reward"].astype(float)
    table = table.sort_values(["event_type", "reward"], kind="stable")
    none = pd.DataFrame({"event_type": [NONE], "reward": [0], "support": [0], "claims": [0], "payout": [0.0]})
    none["source"] = "none"
    out = pd.concat([none, table[none.columns]], ignore_index=True)
    out.insert(0, "arm", [arm_name(e, r) for e, r in zip(out["event_type"], out["reward"], strict=True)])
    return out.astype({"reward": np.int64, "support": np.int64, "claims": np.int64, "payout": np.float64})
