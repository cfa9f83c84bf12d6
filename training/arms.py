"""The arms a policy can choose from: (event type, reward) pairs, plus "no offer".

The arms a platform can be sent come from that platform: every (event type,
reward) pair its history holds at least ``min_support`` times (a reward of 0,
a message without reward, is an arm like any other). A user's catalog
(``catalog`` in rekindle.yaml), when given:

- restricts: only the event types it lists, and of a type with ``rewards``
  only those rewards;
- prices: ``payout_ratio`` gives the expected payout per claim, ``reward x
  payout_ratio`` (otherwise the mean bonus paid per claimed offer of the arm);
- adds reward sizes inside the range an event type was offered at (never
  outside it: the model would extrapolate);
- adds an event type the platform never offered, when marked ``new``.

An arm without support (an added reward size, a new event type) is scored and
listed, flagged ``supported = False``: the greedy policy never picks it, the
evaluation and the promotion never credit it; only exploration sends it, until
the history gives it support. ``notes`` say what a catalog asked for that
could not be an arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.config import Catalog
from core.errors import RekindleError
from scoring.design import NONE

COLUMNS = ("arm", "event_type", "reward", "support", "claims", "payout", "source", "supported")


class ArmError(RekindleError, ValueError):
    """The history and catalog leave no arm to choose from, or an arm is malformed."""


@dataclass
class Arms:
    table: pd.DataFrame  # COLUMNS, "none" first
    notes: list[str] = field(default_factory=list)


def arm_name(event_type: str, reward: int) -> str:
    return NONE if event_type == NONE else f"{event_type}@{int(reward)}"


def _history(offers: pd.DataFrame) -> pd.DataFrame:
    """Per (event type, reward) offered: support, claims, bonus paid."""
    sent = offers[offers["event_type"].astype(str) != NONE]
    reward = pd.to_numeric(sent["reward"], errors="coerce")
    bad = sent.loc[~(reward >= 0), "reward"]
    if len(bad):
        raise ArmError(f"offers with negative or missing rewards {bad.head(5).tolist()}: a reward is >= 0 KRW")
    return (
        sent.assign(claimed=sent["reward_cost"] > 0)
        .groupby([sent["event_type"].astype(str), reward.astype(np.int64)], sort=True)
        .agg(support=("claimed", "size"), claims=("claimed", "sum"), paid=("reward_cost", "sum"))
        .reset_index()
    )


def _restrict(stats: pd.DataFrame, catalog: Catalog, min_support: int, notes: list[str]) -> pd.DataFrame:
    """The catalog's arms among (and inside the range of) the history's."""
    keep = []
    for e in catalog.event_types:
        seen = stats[stats["event_type"] == e.name]
        if seen.empty:
            if not e.new:
                notes.append(f"catalog event type {e.name!r} was never offered: mark it `new: true` to explore it")
            continue  # a new type never offered yet: added below, without support
        if e.rewards is None:
            keep.append(seen[seen["support"] >= min_support])
            continue
        lo, hi = int(seen["reward"].min()), int(seen["reward"].max())
        inside = [r for r in e.rewards if lo <= r <= hi]
        outside = sorted(set(e.rewards) - set(inside))
        if outside:
            notes.append(f"{e.name} rewards {outside} lie outside the offered range [{lo}, {hi}]: not arms")
        wanted = seen[seen["reward"].isin(inside)]
        keep.append(wanted[wanted["support"] >= min_support])
        added = sorted(set(inside) - set(wanted.loc[wanted["support"] >= min_support, "reward"]))
        if added:
            keep.append(
                pd.DataFrame({"event_type": e.name, "reward": added})
                .merge(seen, on=["event_type", "reward"], how="left")
                .fillna({"support": 0, "claims": 0, "paid": 0.0})
                .assign(source="catalog")
            )
    out = pd.concat(keep, ignore_index=True) if keep else stats.iloc[:0]
    return out.fillna({"source": "history"}) if "source" in out else out.assign(source="history")


def _price(table: pd.DataFrame, stats: pd.DataFrame, catalog: Catalog | None) -> np.ndarray:
    """Expected payout per claim: the catalog's ratio, else the arm's mean paid per claim, else its type's
    paid / face value, else the face value."""
    reward = table["reward"].to_numpy(np.float64)
    mean_paid = table["paid"].to_numpy(np.float64) / np.where(table["claims"] > 0, table["claims"], np.nan)
    claimed = stats[(stats["claims"] > 0) & (stats["reward"] > 0)]
    face = (claimed["reward"] * claimed["claims"]).groupby(claimed["event_type"]).sum()
    type_ratio = table["event_type"].map(claimed.groupby("event_type")["paid"].sum() / face).to_numpy(np.float64)
    given = np.array(
        [
            (e.payout_ratio if (e := catalog.get(t)) is not None and e.payout_ratio is not None else np.nan)
            if catalog is not None
            else np.nan
            for t in table["event_type"]
        ],
        dtype=np.float64,
    )
    payout = np.where(~np.isnan(given), reward * given, mean_paid)
    payout = np.where(np.isnan(payout), reward * type_ratio, payout)
    return np.where(np.isnan(payout), reward, payout)


def discover_arms(offers: pd.DataFrame, catalog: Catalog | None, *, min_support: int) -> Arms:
    """The arm table (:data:`COLUMNS`, "none" first) and notes.

    Parameters
    ----------
    offers
        Logged offers (no-offer rows are ignored): ``event_type``, ``reward``, ``reward_cost`` (bonus paid).
    catalog
        The user's catalog, or None for the history alone (the default).
    min_support
        Offers an (event type, reward) pair needs in the history to be a supported arm.
    """
    if min_support < 1:
        raise ArmError(f"min_support must be >= 1, got {min_support}")
    stats = _history(offers)
    notes: list[str] = []
    if catalog is None:
        table = stats[stats["support"] >= min_support].assign(source="history")
    else:
        table = _restrict(stats, catalog, min_support, notes)
        new = [(e.name, r) for e in catalog.event_types if e.new for r in (e.rewards or [])]
        seen_types = set(stats["event_type"])
        for e in catalog.event_types:
            if e.new and e.name in seen_types:  # explored already: its arms are its history's, with their support
                notes.append(f"{e.name!r} is marked new and has been offered: its history counts")
        if new:
            fresh = pd.DataFrame(new, columns=["event_type", "reward"]).assign(
                support=0, claims=0, paid=0.0, source="new"
            )
            table = pd.concat([table, fresh[~fresh["event_type"].isin(seen_types)]], ignore_index=True)
    if table.empty:
        pairs = dict(zip(stats["event_type"] + "@" + stats["reward"].astype(str), stats["support"], strict=True))
        raise ArmError(
            f"no arm has {min_support}+ offers in the history (pairs seen: {pairs})"
            + (" among the catalog's event types" if catalog is not None else "")
        )
    table = table.drop_duplicates(["event_type", "reward"]).sort_values(["event_type", "reward"], kind="stable")
    table = table.assign(payout=_price(table, stats, catalog), supported=table["support"] >= min_support)
    none = pd.DataFrame(
        {"event_type": [NONE], "reward": [0], "support": [0], "claims": [0], "payout": [0.0], "source": ["none"]}
    ).assign(supported=True)
    cols = ["event_type", "reward", "support", "claims", "payout", "source", "supported"]
    out = pd.concat([none, table[cols]], ignore_index=True)
    out.insert(0, "arm", [arm_name(e, r) for e, r in zip(out["event_type"], out["reward"], strict=True)])
    out = out.astype(
        {"reward": np.int64, "support": np.int64, "claims": np.int64, "payout": np.float64, "supported": bool}
    )
    return Arms(out[list(COLUMNS)].reset_index(drop=True), notes)


def greedy_mask(arms: pd.DataFrame) -> np.ndarray:
    """Per arm, whether the greedy policy may pick it (no offer and the supported arms)."""
    return arms["supported"].to_numpy(bool) if "supported" in arms else np.ones(len(arms), bool)
