"""Known assignment probabilities: the propensities Rekindle logged for its own decisions, matched to the
decision rows of the training set.

The platform's history before Rekindle holds no assignment probabilities: the evaluation estimates them
(:mod:`training.propensity`), and a biased estimate biases every off-policy value. The campaigns Rekindle
decided carry theirs in the decision log: the probability each player had of getting the arm it got, under
the policy's exploration, the holdout and the experiment's variant (random assignment: ``1/m``; the policy's
greedy arm: ``1 - e + e/m``; a fixed arm: 1). With those in place of the estimate, the doubly robust
correction on those rows is unbiased whatever the outcome model, and the random variant and the exploration
give every arm the support the marketers' rules never did.

A decision row is matched to the decision that caused it:

- an offer row, by the platform's offer id, through the outcome ``rekindle feedback`` wrote for the
  decision it attributed that offer to (same player, event type and reward, sent within
  ``feedback.send_within_hours`` of the decision);
- a no-offer row (player ``p`` eligible at campaign time ``T`` who got nothing), to ``p``'s latest decision
  in ``[T - send_within, T]`` when that decision was no offer. When it was an offer the platform did not
  send, the row's arm is not the one decided and its probability is unknown.

Rows matched to nothing (the platform's own campaigns, decisions without an outcome yet) keep the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import RekindleError

NO_OFFER = "none"


class LoggedPropensityError(RekindleError, ValueError):
    """The decision log holds a propensity that is not a probability."""


@dataclass(frozen=True)
class Matched:
    """Per decision row: the propensity logged for the decision that caused it (NaN where none did) and that
    decision's experiment variant (None outside an experiment or unmatched)."""

    propensity: np.ndarray
    variant: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self.propensity)

    def fixed_variant(self, decisions: pd.DataFrame) -> np.ndarray:
        """Rows decided in an experiment variant that sends by a fixed rule (every decision of it has
        propensity 1: no offer, one arm, the marketers' table, a knapsack). Such a row had no chance of any
        other arm, so a doubly robust value of a policy that picks another arm rests on the outcome model alone
        there. Variants are drawn by a hash of the player id, independent of how players respond: leaving these
        rows out of an evaluation keeps a random sample of the players, and every remaining row of Rekindle's
        had every allowed arm with a chance above zero."""
        if "variant" not in decisions or decisions["variant"].isna().all():
            return np.zeros(len(self.variant), bool)
        named = decisions.dropna(subset=["variant"])
        fixed = named.groupby("variant")["propensity"].min() >= 1.0 - 1e-9
        rule = list(fixed.index[fixed.to_numpy()])
        return pd.Series(self.variant, dtype=object).isin(rule).to_numpy() & self.known


def match_decisions(rows: pd.DataFrame, decisions: pd.DataFrame, send_within: pd.Timedelta) -> Matched:
    """Each row of ``rows`` (``player_id``, ``campaign_at``, ``offer_id``, ``event_type``, ``reward``,
    ``is_offer``) matched to the decision that caused it (module docstring).

    ``decisions``: as :meth:`system_db.outcomes.Outcomes.assignments` reads them, decisions that have an
    outcome (``sent``; ``offer_id``, the platform's offer the decision was matched to; ``variant``).
    A propensity outside (0, 1] is a :class:`LoggedPropensityError` naming it."""
    at = np.full(len(rows), -1, np.int64)  # position in ``decisions`` of each row's decision
    if len(rows) and len(decisions):
        bad = decisions["propensity"].isna() | ~decisions["propensity"].between(0.0, 1.0, inclusive="right")
        if bad.any():
            p = float(decisions.loc[bad, "propensity"].iloc[0])
            raise LoggedPropensityError(
                f"a logged propensity must be in (0, 1], found {p!r}: is the decision log intact?"
            )
        decisions = decisions.reset_index(drop=True)
        is_offer = rows["is_offer"].to_numpy(bool)
        at[is_offer] = _offers(rows[is_offer], decisions)
        at[~is_offer] = _no_offers(rows[~is_offer], decisions, send_within)
    hit = at >= 0
    propensity = np.full(len(rows), np.nan)
    variant = np.full(len(rows), None, dtype=object)
    if hit.any():
        propensity[hit] = decisions["propensity"].to_numpy(np.float64)[at[hit]]
        if "variant" in decisions:
            named = decisions["variant"].astype(object)
            variant[hit] = named.where(named.notna(), None).to_numpy()[at[hit]]
    return Matched(propensity, variant)


def _offers(rows: pd.DataFrame, decisions: pd.DataFrame) -> np.ndarray:
    sent = decisions[decisions["sent"].astype(bool) & decisions["offer_id"].notna()]
    sent = sent.drop_duplicates("offer_id", keep=False)  # an offer claimed twice is no one's for sure
    by_offer = pd.DataFrame(
        {
            "arm": (sent["event_type"].astype(str) + "@" + sent["reward"].astype(np.int64).astype(str)).to_numpy(),
            "at": sent.index.to_numpy(np.int64),
        },
        index=sent["offer_id"].astype(np.int64).to_numpy(),
    )
    offer = rows["offer_id"].astype("Int64")
    found = offer.notna().to_numpy()
    ids = offer.fillna(-1).astype(np.int64).to_numpy()
    arm = (rows["event_type"].astype(str) + "@" + rows["reward"].astype(np.int64).astype(str)).to_numpy()
    hit = by_offer.reindex(ids)
    same = found & (hit["arm"].to_numpy() == arm)  # the decision's arm is the offer's
    return np.where(same, hit["at"].fillna(-1).to_numpy(), -1).astype(np.int64)


def _no_offers(rows: pd.DataFrame, decisions: pd.DataFrame, send_within: pd.Timedelta) -> np.ndarray:
    if not len(rows):
        return np.empty(0, np.int64)
    left = pd.DataFrame(
        {
            "at": pd.to_datetime(rows["campaign_at"]).to_numpy("datetime64[ns]"),
            "player_id": rows["player_id"].to_numpy(np.int64),
            "order": np.arange(len(rows)),
        }
    ).sort_values("at", kind="stable")
    right = pd.DataFrame(
        {
            "at": pd.to_datetime(decisions["decided_at"]).to_numpy("datetime64[ns]"),
            "player_id": decisions["player_id"].to_numpy(np.int64),
            "none": (decisions["event_type"].astype(str) == NO_OFFER).to_numpy(),
            "position": np.arange(len(decisions)),
        }
    ).sort_values("at", kind="stable")
    hit = pd.merge_asof(left, right, on="at", by="player_id", direction="backward", tolerance=send_within)
    found = hit["none"].eq(True).to_numpy(bool)
    out = np.full(len(rows), -1, np.int64)
    out[hit["order"].to_numpy()] = np.where(found, hit["position"].fillna(-1).to_numpy(), -1).astype(np.int64)
    return out
