"""Experiments in the policy: which variant a player is in, and what that variant sends. Pure.

A player's variant is fixed by a hash of the player id and the experiment's salt (the same uniform draw as
the holdout's, :func:`serving.policy.holdout_draw`, with the experiment's own salt) cut at the cumulative
shares, in the order the experiment lists its variants: the same player is in the same variant on every
call, online and in batch, for as long as the experiment runs.

Variants (``KINDS``):

- ``policy``: the system's policy, unchanged (its own exploration and holdout included);
- ``holdout``: no offer;
- ``random``: an arm drawn uniformly among those the rules allow the player (no offer included),
  propensity ``1/m``;
- ``best_arm``: one arm for everyone (the best single arm unless the experiment names another);
- ``marketers``: the marketers' selection, a segment -> arm table (a segment it does not name: no offer);
- ``equal_cost``: the policy under the re-engagement objective with a baseline's cost as its budget
  (``equal_cost_to``: random, marketers or best_arm): the variant's players share the budget the baseline is
  expected to spend on them (per player: random's mean over his allowed arms, no offer included, or the
  marketers' or the best arm's cost), and get the allowed arms of most expected incremental re-engagement
  within it (the knapsack of :func:`training.policy.choose`: money goes where it buys re-engagement cheapest;
  no offer where none gains). A batch shares it over all its equal_cost players; an online request over
  the players it carries (one player: his own baseline cost is his cap);
- ``challenger``: the policy on the canary model (the registry's ``canary`` alias) instead of the champion:
  a retrained model's first traffic (:mod:`monitoring.canary`).

Rules still hold in every variant: a player the policy may not offer (status, frequency cap, not a
candidate) gets no offer, and an arm the rules do not allow the player's segment is not sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.errors import RekindleError
from serving.policy import Decisions, holdout_draw
from training.policy import choose

KINDS = ("policy", "holdout", "random", "best_arm", "marketers", "equal_cost", "challenger")
BASELINES = ("random", "marketers", "best_arm")  # what equal_cost may match the cost of
POLICY, RANDOM, EQUAL_COST = -1, -2, -3  # variant arm codes besides an arm column


class ExperimentError(RekindleError, ValueError):
    """An experiment's definition that cannot run: the message names the value and what was expected."""


def check_shares(shares: dict[str, float]) -> None:
    """Refuse variants that cannot run, naming them (before any work is done on them)."""
    unknown = sorted(set(shares) - set(KINDS))
    if unknown:
        raise ExperimentError(f"unknown variants {unknown}; expected some of {list(KINDS)}")
    if len(shares) < 2:
        raise ExperimentError(f"an experiment needs two variants or more, got {list(shares)}")
    bad = {v: s for v, s in shares.items() if not 0 < s <= 1}
    if bad or abs(sum(shares.values()) - 1) > 1e-6:
        raise ExperimentError(f"variant shares must be in (0, 1] and sum to 1, got {shares}")


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    shares: dict[str, float]  # variant -> share, in assignment order
    best_arm: str | None = None  # best_arm's arm
    marketers: dict[str, str] = field(default_factory=dict)  # marketers' segment -> arm
    equal_cost_to: str = "random"  # the baseline whose expected cost equal_cost may spend per player

    def __post_init__(self) -> None:
        check_shares(self.shares)
        if "best_arm" in self.shares and not self.best_arm:
            raise ExperimentError("the best_arm variant needs its arm (e.g. cashback@10000)")
        if not isinstance(self.marketers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.marketers.items()
        ):
            raise ExperimentError(f"the marketers table must map segment names to arms, got {self.marketers!r}")
        if ("marketers" in self.shares or self.equal_cost_to == "marketers") and not self.marketers:
            raise ExperimentError("the marketers variant needs its segment -> arm table")
        if self.equal_cost_to not in BASELINES:
            raise ExperimentError(f"equal_cost_to must be one of {list(BASELINES)}, got {self.equal_cost_to!r}")
        if self.equal_cost_to == "best_arm" and not self.best_arm:
            raise ExperimentError("equal_cost_to best_arm needs the best arm (e.g. cashback@10000)")


def definition(experiment: Experiment) -> dict[str, Any]:
    """What the experiments table stores (the variants as a list: their order is the assignment's)."""
    return {"salt": experiment.salt, "variants": [[v, s] for v, s in experiment.shares.items()],
            "best_arm": experiment.best_arm, "marketers": experiment.marketers,
            "equal_cost_to": experiment.equal_cost_to}  # fmt: skip


def from_definition(name: str, stored: dict[str, Any]) -> Experiment:
    return Experiment(name, str(stored["salt"]), {str(v): float(s) for v, s in stored["variants"]},
                      stored.get("best_arm"), dict(stored.get("marketers") or {}),
                      str(stored.get("equal_cost_to") or "random"))  # fmt: skip


def assign(player_id: np.ndarray, experiment: Experiment) -> np.ndarray:
    """Each player's variant name (object array), by hash of the id and the experiment's salt."""
    u = holdout_draw(np.asarray(player_id, dtype=np.int64), experiment.salt)
    names = list(experiment.shares)
    edges = np.cumsum([experiment.shares[v] for v in names])
    at = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    return np.asarray(names, dtype=object)[at]


def variant_arms(variant: np.ndarray, segment: np.ndarray, experiment: Experiment, names: list[str]) -> np.ndarray:
    """Per row, the arm column its variant sends (0: no offer), :data:`POLICY` or :data:`RANDOM`."""
    unknown = sorted({a for a in [experiment.best_arm, *experiment.marketers.values()] if a} - set(names))
    if unknown:
        raise ExperimentError(f"experiment {experiment.name} names arms {unknown} the model does not know; "
                              f"expected some of {names}")  # fmt: skip
    out = np.full(len(variant), POLICY, np.int64)
    out[variant == "holdout"] = 0
    out[variant == "random"] = RANDOM
    out[variant == "equal_cost"] = EQUAL_COST
    if experiment.best_arm:
        out[variant == "best_arm"] = names.index(experiment.best_arm)
    table = np.array([names.index(experiment.marketers.get(str(s), names[0])) for s in segment], np.int64)
    is_m = variant == "marketers"
    out[is_m] = table[is_m]
    return out


def baseline_cost(
    cost: np.ndarray, allowed: np.ndarray, segment: np.ndarray, experiment: Experiment, names: list[str]
) -> np.ndarray:
    """Per row, the expected reward cost of the baseline ``experiment.equal_cost_to`` names: random's mean over
    the allowed arms (no offer included, as it draws), or the cost of the marketers' or the best arm (0 where
    the rules forbid it)."""
    rows = np.arange(len(cost))
    if experiment.equal_cost_to == "random":  # uniform over the allowed arms, no offer included, as it draws
        m = allowed.sum(axis=1)
        return np.divide((cost * allowed).sum(axis=1), m, out=np.zeros(len(cost)), where=m > 0)
    if experiment.equal_cost_to == "best_arm":
        col = np.full(len(cost), names.index(str(experiment.best_arm)), np.int64)
    else:
        col = np.array([names.index(experiment.marketers.get(str(s), names[0])) for s in segment], np.int64)
    return np.where(allowed[rows, col], cost[rows, col], 0.0)


def equal_cost_arms(reengage: np.ndarray, cost: np.ndarray, allowed: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The allowed arms of most total incremental re-engagement whose total expected cost is at most the sum of
    the rows' ``cap`` (the baseline's expected cost over these rows: a budget); no offer (column 0) where none
    gains."""
    return choose(reengage, cost, budget=float(cap.sum()), allowed=allowed).arm


def apply_variants(
    d: Decisions, variant: np.ndarray, arms_of: np.ndarray, allowed: np.ndarray, eligible: np.ndarray,
    rng: np.random.Generator, experiment: Experiment, names: list[str],
    reengage: np.ndarray | None = None, cost: np.ndarray | None = None, segment: np.ndarray | None = None,
) -> Decisions:  # fmt: skip
    """The policy's decisions ``d`` with every row outside the policy variant decided by its variant
    (``arms_of`` from :func:`variant_arms`; ``allowed``: rows x arms the rules allow; ``eligible``: rows the
    policy may offer at all; ``reengage``, ``cost``, ``segment``: the model's rows x arms incremental
    re-engagement and expected cost and the rows' segments, which the equal_cost variant needs)."""
    other = eligible & (arms_of != POLICY)
    arm, propensity, reason = d.arm.copy(), d.propensity.copy(), d.reason.copy()
    fixed = other & (arms_of >= 0)
    ok = fixed & allowed[np.arange(len(arm)), np.maximum(arms_of, 0)]
    arm[fixed] = np.where(ok[fixed], arms_of[fixed], 0)
    propensity[fixed] = 1.0
    drawn = other & (arms_of == RANDOM)
    m = allowed.sum(axis=1)
    target = np.floor(rng.random(len(arm)) * m).astype(np.int64) + 1
    pick = (allowed.cumsum(axis=1) >= target[:, None]).argmax(axis=1)
    arm[drawn] = pick[drawn]
    propensity[drawn] = 1.0 / m[drawn]
    capped = other & (arms_of == EQUAL_COST)
    if capped.any():
        if reengage is None or cost is None or segment is None:
            raise ExperimentError("the equal_cost variant needs the model's re-engagement and cost per arm")
        cap = baseline_cost(cost, allowed, segment, experiment, names)
        arm[capped] = equal_cost_arms(reengage[capped], cost[capped], allowed[capped], cap[capped])
        propensity[capped] = 1.0
    label = np.asarray([f"experiment {experiment.name}, variant {v}: " for v in variant], dtype=object)
    named = np.asarray(names, dtype=object)
    reason[ok] = label[ok] + named[arm[ok]]
    reason[fixed & ~ok] = label[fixed & ~ok] + "no offer (" + named[arms_of[fixed & ~ok]] + " is outside the rules)"
    reason[fixed & (arms_of == 0)] = label[fixed & (arms_of == 0)] + "no offer"
    reason[drawn] = label[drawn] + "drawn uniformly among the allowed arms: " + named[arm[drawn]]
    said = f"most re-engagement within {experiment.equal_cost_to}'s expected cost: "
    reason[capped] = label[capped] + said + named[arm[capped]]
    return replace(
        d, arm=arm, propensity=propensity, reason=reason, explored=d.explored & ~other, holdout=d.holdout & ~other,
        pinned=d.pinned & ~other,
    )  # fmt: skip


def with_challenger(running: Experiment | None, share: float, name: str) -> Experiment:
    """The experiment that carries a canary: ``running``'s variants and salt (every other variant keeps its
    players) with ``share`` of the policy's players moved to the challenger; without one, policy and
    challenger alone."""
    if running is None:
        return Experiment(name, name, {"policy": 1 - share, "challenger": share})
    if "policy" not in running.shares or "challenger" in running.shares:
        raise ExperimentError(f"experiment {running.name} has no policy variant to carve a canary from, or has one")
    shares: dict[str, float] = {}
    for v, s in running.shares.items():
        if v == "policy":
            shares["policy"], shares["challenger"] = s * (1 - share), s * share  # the policy's hash range, split
        else:
            shares[v] = s
    return replace(running, name=name, shares=shares)


def without_challenger(running: Experiment, name: str) -> Experiment:
    """``running`` with the challenger's players back in the policy (the canary's verdict is in)."""
    shares = {v: s for v, s in running.shares.items() if v != "challenger"}
    shares["policy"] = shares.get("policy", 0.0) + running.shares.get("challenger", 0.0)
    ordered = {v: shares[v] for v in running.shares if v in shares}
    return replace(running, name=name, shares=ordered)
