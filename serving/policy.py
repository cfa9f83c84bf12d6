"""The serving policy: per-arm predictions -> one decision per player, with business rules, exploration
and a holdout. Pure functions over arrays, no I/O; the online service and the batch job share it.

For each row (a player at a time), in this order:

1. **Not eligible** (not a dormant candidate, a status other than active, an offer within the frequency
   cap): no offer, propensity 1, the reason said. Self-excluded and blocked players never get an offer,
   whatever else is configured: eligibility is decided before pins and exploration.
2. **Holdout**: a fixed share of players, chosen by a hash of the player id and a salt (the same player
   is always in or out), gets no offer: the control group of every experiment. Propensity 1.
3. **Pinned segment**: a marketer pinned the row's segment to an arm; the row gets it (propensity 1)
   unless a rule forbids that arm (then the row falls through to the model, and the reason says so).
4. **Exploration**: with probability ``exploration`` the arm is drawn uniformly among the arms the rules
   allow (no offer included, and arms without support, which only exploration sends); otherwise the
   greedy arm. The logged propensity is the probability the row had of getting the arm it got:
   ``(1 - e) [arm = greedy] + e / m`` with ``m`` the allowed arms, so later evaluation stays unbiased.
5. **Greedy**: the arm with the best expected gain for the objective among the arms the rules allow,
   that have support and meet the minimum ROI; no offer when none gains. Under a budget, the Lagrangian
   knapsack of :func:`training.policy.choose`.

Rules: enabled and disabled event types, a global and per-segment reward cap (hard: exploration obeys
them too), a minimum ROI (greedy only: exploration exists to try what the model thinks is poor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import PolicySettings
from core.errors import RekindleError
from training.policy import Objective, choose

NONE = "none"


class PolicyError(RekindleError, ValueError):
    """The policy's settings name an arm or event type the model does not know."""


@dataclass(frozen=True)
class Rows:
    """What the policy knows of each row besides the scores."""

    player_id: np.ndarray  # int64
    segment: np.ndarray  # object (str)
    blocked: np.ndarray  # object: "" when eligible, else why the row gets no offer

    def __len__(self) -> int:
        return len(self.player_id)


@dataclass(frozen=True)
class Decisions:
    arm: np.ndarray  # column of the arm per row (0: no offer)
    greedy: np.ndarray  # the arm the model would pick (0 where not eligible or held out)
    would: np.ndarray  # the arm the policy would send without exploration or the holdout: its pin or the model's
    # pick (0 where not eligible); for a held-out row, what the control group is compared with (feedback)
    propensity: np.ndarray  # probability the row had of getting ``arm``
    explored: np.ndarray  # bool: the arm was drawn by exploration
    holdout: np.ndarray  # bool
    pinned: np.ndarray  # bool
    reason: np.ndarray  # object: one line per row
    runners_up: np.ndarray  # rows x 2 columns of the next-best allowed arms (-1: none)
    lam: float  # the budget's shadow price (0 without a binding budget)
    knapsack_value: float | None = None  # with a budget: the expected gain of the rows the knapsack decided ...
    lp_bound: float | None = None  # ... and the Lagrangian bound on the LP relaxation's optimum (>= any policy)


def arm_names(arms: pd.DataFrame) -> list[str]:
    return [NONE if e == NONE else f"{e}@{int(r)}" for e, r in zip(arms["event_type"], arms["reward"], strict=True)]


def check_settings(settings: PolicySettings, arms: pd.DataFrame) -> None:
    """Refuse settings naming arms or event types the model cannot send (a typo would silently do nothing)."""
    names = set(arm_names(arms))
    types = set(arms["event_type"].astype(str)) - {NONE}
    bad_pins = {s: a for s, a in settings.pins.items() if a not in names}
    if bad_pins:
        raise PolicyError(f"pins {bad_pins} name unknown arms; expected one of {sorted(names)}")
    for field in ("enabled_event_types", "disabled_event_types"):
        listed = getattr(settings, field) or []
        unknown = sorted(set(listed) - types)
        if unknown:
            raise PolicyError(f"{field} {unknown} are not event types of the model; expected some of {sorted(types)}")


def holdout_draw(player_id: np.ndarray, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per player, fixed by the id and the salt (splitmix64, vectorised)."""
    salt_key = np.uint64(
        int.from_bytes(salt.encode()[:8].ljust(8, b"\0"), "little") ^ (len(salt) * 0x9E3779B97F4A7C15 % 2**64)
    )
    with np.errstate(over="ignore"):
        z = player_id.astype(np.uint64) ^ salt_key
        for _ in range(2):
            z = z + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def frequency_capped(platform_days: np.ndarray, logged_days: np.ndarray, cap_days: int) -> np.ndarray:
    """Why each row gets no offer under the frequency cap ("" when it may): its last offer on the platform or in
    the decision log, days ago (NaN or inf: none), was fewer than ``cap_days`` days ago."""
    days = np.fmin(np.nan_to_num(platform_days, nan=np.inf), np.nan_to_num(logged_days, nan=np.inf))
    out = np.full(len(days), "", dtype=object)
    if cap_days > 0:
        capped = days < cap_days
        out[capped] = [f"frequency cap: last offer {d:.2f} days ago, fewer than {cap_days}" for d in days[capped]]
    return out


def rule_mask(arms: pd.DataFrame, segment: np.ndarray, settings: PolicySettings) -> np.ndarray:
    """Rows x arms: the arms the business rules allow each row (no offer always)."""
    event_type = arms["event_type"].astype(str).to_numpy()
    reward = arms["reward"].to_numpy(np.int64)
    ok = np.ones(len(arms), bool)
    if settings.enabled_event_types is not None:
        ok &= np.isin(event_type, settings.enabled_event_types)
    if settings.disabled_event_types:
        ok &= ~np.isin(event_type, settings.disabled_event_types)
    if settings.reward_cap is not None:
        ok &= reward <= settings.reward_cap
    mask = np.broadcast_to(ok, (len(segment), len(arms))).copy()
    for seg, cap in settings.segment_reward_caps.items():
        rows = segment == seg
        if rows.any():
            mask[np.ix_(rows, reward > cap)] = False
    mask[:, 0] = True
    return mask


def _runners_up(score: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The two best arms by ``score`` other than the chosen one (-1 where fewer exist)."""
    s = score.copy()
    rows = np.arange(len(s))
    s[rows, chosen] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :2] if s.shape[1] else np.zeros((len(s), 0), np.int64)
    if top.shape[1] < 2:
        top = np.pad(top, ((0, 0), (0, 2 - top.shape[1])), constant_values=-1)
    top = top.copy()
    top[~np.isfinite(np.take_along_axis(s, np.maximum(top, 0), axis=1))] = -1
    return top


def decide(
    gain: np.ndarray,
    cost: np.ndarray,
    inc_net: np.ndarray,
    arms: pd.DataFrame,
    rows: Rows,
    settings: PolicySettings,
    rng: np.random.Generator,
    *,
    objective: Objective = "net_value",
    budget: float | None = None,
    forced: np.ndarray | None = None,
) -> Decisions:
    """One decision per row (module docstring). ``gain``, ``cost``, ``inc_net``: rows x arms ("none" first);
    ``arms``: ``event_type``, ``reward`` and ``supported`` per arm. ``forced``: an arm column per row that
    replaces the model's choice (the fallback rule when no model is trusted); rules, pins, exploration and the
    holdout still apply."""
    n, k = gain.shape
    if forced is not None and budget is not None:
        raise ValueError("a fallback rule sends its arm to every row: it takes no budget")
    if len(rows) != n or cost.shape != gain.shape or inc_net.shape != gain.shape or len(arms) != k:
        raise ValueError(f"rows ({len(rows)}), gain {gain.shape}, cost {cost.shape}, arms ({len(arms)}) disagree")
    names = arm_names(arms)
    segment = rows.segment.astype(str)
    allowed = rule_mask(arms, segment, settings)  # what exploration may draw
    supported = arms["supported"].to_numpy(bool) if "supported" in arms else np.ones(k, bool)
    greedy_ok = allowed & supported
    if settings.min_roi is not None:
        roi = np.divide(inc_net, cost, out=np.full_like(inc_net, np.inf), where=cost > 0)
        greedy_ok &= roi >= settings.min_roi
    greedy_ok[:, 0] = True

    eligible = rows.blocked.astype(str) == ""
    held = eligible & (holdout_draw(rows.player_id, settings.holdout_salt) < settings.holdout)
    live = eligible & ~held
    reason = np.full(n, "", dtype=object)

    pinned = np.zeros(n, bool)
    arm = np.zeros(n, np.int64)
    pin_arm = np.full(n, -1, np.int64)  # the pin of each eligible row's segment (held-out rows too)
    for seg, arm_name in settings.pins.items():
        col = names.index(arm_name)
        here = live & (segment == seg)
        ok = here & allowed[:, col]
        arm[ok] = col
        pin_arm[eligible & (segment == seg) & allowed[:, col]] = col
        pinned |= ok
        reason[ok] = f"segment {seg} pinned to {arm_name}"
        reason[here & ~ok] = f"pin {arm_name} of segment {seg} is outside the rules; "

    m = allowed.sum(axis=1)
    explore = live & ~pinned & (rng.random(n) < settings.exploration)
    target = np.floor(rng.random(n) * m).astype(np.int64) + 1  # the target-th allowed arm of the row
    drawn = (allowed.cumsum(axis=1) >= target[:, None]).argmax(axis=1)
    arm = np.where(explore, drawn, arm)

    free = live & ~pinned & ~explore  # the rows the knapsack decides
    left = None
    if budget is not None:  # pinned and explored offers are paid first; cut (explored first) if they overrun
        left = float(budget)
        fixed = np.flatnonzero((pinned | explore) & (arm > 0))
        fixed = np.concatenate([fixed[explore[fixed]], fixed[~explore[fixed]]])
        within = np.cumsum(cost[fixed, arm[fixed]]) <= left + 1e-9
        cut = fixed[~within]
        arm[cut] = 0
        reason[cut] = "no offer: the pinned and explored offers alone would overrun the budget"
        left = max(left - float(cost[fixed[within], arm[fixed[within]]].sum()), 0.0)
    pick = choose(
        np.where(free[:, None], gain, 0.0), np.where(free[:, None], cost, 0.0), budget=left, allowed=greedy_ok
    )
    score = np.where(greedy_ok, gain - pick.lam * cost, -np.inf)
    score[:, 0] = 0.0
    greedy = np.where(live & ~pinned, score.argmax(axis=1), np.where(pinned, arm, 0))
    best = (
        f"the best expected gain ({objective})"
        if pick.lam == 0
        else f"the best gain - {pick.lam:.3g} x cost under the budget"
    )
    model_reason = np.where(greedy > 0, best, "no offer gains enough in expectation").astype(object)
    model_pick = score.argmax(axis=1)  # held-out rows too
    if forced is not None:
        rule_ok = allowed[np.arange(n), forced]
        model_pick = np.where(rule_ok, forced, 0)
        greedy = np.where(live & ~pinned, model_pick, greedy)
        named = np.asarray(names, dtype=object)[forced]
        model_reason = np.where(
            rule_ok, "the fallback rule: " + named, "the fallback rule's arm " + named + " is outside the rules"
        )
    would = np.where(eligible, np.where(pin_arm >= 0, pin_arm, model_pick), 0)
    arm = np.where(free, greedy, arm)
    bound = value = None
    if budget is not None:  # the Lagrangian dual bounds the LP relaxation of the knapsack from above
        rows_free = np.flatnonzero(free)
        dual = np.where(greedy_ok[rows_free], gain[rows_free] - pick.lam * cost[rows_free], -np.inf)
        dual[:, 0] = 0.0
        bound = float(dual.max(axis=1).sum() + pick.lam * (left or 0.0))
        value = float(gain[rows_free, arm[rows_free]].sum())
    fell_through = free & (reason != "")
    reason[free & ~fell_through] = model_reason[free & ~fell_through]
    reason[fell_through] = reason[fell_through] + "the model chose"

    e = settings.exploration
    propensity = np.where(arm == greedy, 1.0 - e, 0.0) + e / m
    propensity = np.where(live & ~pinned, propensity, 1.0)
    reason[explore & (reason == "")] = "exploration: drawn uniformly among the arms the rules allow"
    reason[held] = "holdout: this player is in the control group and gets no offer"
    reason[~eligible] = rows.blocked[~eligible]

    score = np.where(greedy_ok & live[:, None], gain, -np.inf)
    score[:, 0] = np.where(live, 0.0, -np.inf)
    return Decisions(
        arm=arm,
        greedy=greedy,
        would=would,
        propensity=propensity,
        explored=explore,
        holdout=held,
        pinned=pinned,
        reason=reason,
        runners_up=_runners_up(score, arm),
        lam=pick.lam,
        knapsack_value=value,
        lp_bound=bound,
    )
