"""What happened after each decision: the platform's rows attributed to the decisions that caused them.

Pure functions over frames, no I/O (:mod:`monitoring.feedback` reads and writes).

- **Sent or not.** An offer decision is matched to the platform's offer (``promotion_players``) of the same
  player, event type and reward sent at or after the decision and within ``send_within`` of it, the earliest
  one; an offer matched to two decisions goes to the earlier. An offer decision with no such row was not
  sent (the event system dropped it, or has not sent it yet): it is measured like a no-offer decision, from
  its decision time, and says ``sent = False``.
- **The window** of a decision is ``(t, t + window]`` after its time ``t``: the platform's send time of a sent
  offer, the decision time otherwise (DESIGN.md's definitions, as the training labels take them).
- **No event counts twice.** A session or deposit in the windows of several decisions of its player goes to
  one: the latest sent offer whose window holds it, else the latest other decision whose window holds it.
  So a no-offer decision logged while an offer's window is open (a capped player asked again) does not take
  the offer's outcome, and the next offer cuts the previous one's window short.
- **Reward cost** is the bonus paid for the matched offer itself (``promotionPlayerId``) inside its window.
- ``net_value = margin x deposits - reward_cost``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_OFFER = "none"
NS = "datetime64[ns]"  # every time is compared at one resolution
OUTCOME_COLUMNS = [
    "decision_id", "sent", "offer_id", "measured_from", "window_end", "reengaged", "converted", "deposits",
    "reward_cost", "net_value",
]  # fmt: skip


def match_sends(decisions: pd.DataFrame, offers: pd.DataFrame, send_within: pd.Timedelta) -> pd.DataFrame:
    """``decisions`` (decision_id, player_id, decided_at, event_type, reward) with ``offer_id`` (nullable) and
    ``sent_at`` of the platform offer each was matched to (module docstring)."""
    out = decisions.assign(
        offer_id=pd.array([pd.NA] * len(decisions), dtype="Int64"),
        sent_at=pd.Series(pd.NaT, index=decisions.index, dtype="datetime64[ns]"),
    )
    ask = decisions[decisions["event_type"] != NO_OFFER]
    if ask.empty or offers.empty:
        return out
    keys = {"player_id": np.int64, "reward": np.int64, "event_type": object}
    left = ask[["decision_id", "player_id", "decided_at", "event_type", "reward"]].astype(keys | {"decided_at": NS})
    right = offers.rename(columns={"id": "offer_id"})[["offer_id", "player_id", "sent_at", "event_type", "reward"]]
    matched = pd.merge_asof(
        left.sort_values("decided_at"),
        right.astype(keys | {"sent_at": NS}).sort_values("sent_at"),
        left_on="decided_at",
        right_on="sent_at",
        by=["player_id", "event_type", "reward"],
        direction="forward",
        tolerance=send_within,
    ).dropna(subset=["offer_id"])
    matched = matched.sort_values(["decided_at", "decision_id"]).drop_duplicates("offer_id")
    at = out["decision_id"].map(matched.set_index("decision_id")["offer_id"])
    out["offer_id"] = at.astype("Int64")
    out["sent_at"] = out["decision_id"].map(matched.set_index("decision_id")["sent_at"])
    return out


def _owner(events: pd.DataFrame, starts: pd.DataFrame, window: pd.Timedelta) -> pd.Series:
    """The decision each event (player_id, at) goes to among ``starts`` (decision_id, player_id, t): the latest
    whose window ``(t, t + window]`` holds it; NaN where none does."""
    if events.empty or starts.empty:
        return pd.Series(np.nan, index=events.index, dtype=object)
    e = events[["player_id", "at"]].astype({"player_id": np.int64, "at": NS}).reset_index().sort_values("at")
    s = starts[["decision_id", "player_id", "t"]].astype({"player_id": np.int64, "t": NS}).sort_values("t")
    got = pd.merge_asof(
        e, s, left_on="at", right_on="t", by="player_id", direction="backward", allow_exact_matches=False,
        tolerance=window,
    )  # fmt: skip
    return got.set_index("index")["decision_id"].reindex(events.index)


def attribute(
    decisions: pd.DataFrame,
    sessions: pd.DataFrame,
    deposits: pd.DataFrame,
    bonuses: pd.DataFrame,
    *,
    window: pd.Timedelta,
    margin: float,
) -> pd.DataFrame:
    """The outcome of every decision in ``decisions`` (from :func:`match_sends`; every decision of the players
    around the period, so that each event finds its owner), columns :data:`OUTCOME_COLUMNS`.

    ``sessions``: player_id, at; ``deposits``: player_id, at, amount; ``bonuses``: offer_id, at, amount."""
    sent = decisions["offer_id"].notna().to_numpy()
    t = pd.Series(pd.to_datetime(np.where(sent, decisions["sent_at"], decisions["decided_at"])), index=decisions.index)
    starts = decisions[["decision_id", "player_id"]].assign(t=t)

    def owners(events: pd.DataFrame) -> pd.Series:
        first = _owner(events, starts[sent], window)
        rest = first.isna()
        if rest.any():
            first[rest] = _owner(events[rest.to_numpy()], starts[~sent], window)
        return first

    reengaged = set(owners(sessions).dropna())
    dep_owner = owners(deposits)
    dep = deposits.assign(decision_id=dep_owner).dropna(subset=["decision_id"])
    deposited = dep.groupby("decision_id")["amount"].sum()
    # the bonus of a sent offer inside its own window
    offer_t = pd.Series(t[sent].to_numpy(), index=decisions.loc[sent, "offer_id"].astype(np.int64).to_numpy())
    b = bonuses[bonuses["offer_id"].isin(offer_t.index)]
    b_t = offer_t.reindex(b["offer_id"].to_numpy()).to_numpy().astype(NS)
    b_at = b["at"].to_numpy().astype(NS)
    b = b[(b_at > b_t) & (b_at <= b_t + window.to_timedelta64())]
    paid = b.groupby("offer_id")["amount"].sum()

    ids = decisions["decision_id"]
    deposits_of = ids.map(deposited).fillna(0).round().astype(np.int64)
    cost = decisions["offer_id"].map(paid).fillna(0).round().astype(np.int64).where(sent, 0)
    return pd.DataFrame(
        {
            "decision_id": ids.to_numpy(),
            "sent": sent,
            "offer_id": decisions["offer_id"].to_numpy(),
            "measured_from": t.to_numpy(),
            "window_end": (t + window).to_numpy(),
            "reengaged": ids.isin(reengaged).to_numpy(),
            "converted": ids.isin(set(dep["decision_id"])).to_numpy(),
            "deposits": deposits_of.to_numpy(),
            "reward_cost": cost.to_numpy(),
            "net_value": (margin * deposits_of - cost).to_numpy(dtype=float),
        }
    )
