"""Whether the world still answers as the model predicts: the incremental re-engagement its offers were
predicted to buy against what they bought, over the latest measured week. Pure.

Re-engagement, not net value: a week's net value is too heavy-tailed to judge (its standard error is
larger than the effect), while a week of offers measures re-engagement to a point or two. Offered rows are
the policy's own offers (not explored, not held out, the arm it chose); control rows are the players held
out of any offer by the policy's holdout or an experiment's holdout variant (both drawn by hash) for whom
the policy would have sent an offer. Realised = offered rate - control rate, with its standard error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from monitoring.roi import NO_OFFER, arm_of


@dataclass(frozen=True)
class OutcomeCheck:
    week_start: str  # ISO time of the window's start
    n_offered: int
    n_control: int
    predicted: float  # mean predicted incremental re-engagement of the offered rows
    realised: float  # offered re-engagement rate - control rate
    se: float
    z: float  # (realised - predicted) / se
    drifted: bool

    def figures(self) -> dict[str, float | int | str | bool]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"incremental re-engagement of the offers decided from {self.week_start[:10]}: realised "
            f"{self.realised:+.4f} (s.e. {self.se:.4f}) against predicted {self.predicted:+.4f}, z = {self.z:+.1f} "
            f"({self.n_offered:,} offers, {self.n_control:,} held out)"
        )


def check_outcomes(frame: pd.DataFrame, *, days: int, z_alert: float, ratio_floor: float) -> OutcomeCheck | None:
    """The check over the decisions of the last ``days`` before the latest measured decision (``frame``: the
    outcomes with their decisions). Drifted when realised is under predicted by more than ``z_alert``
    standard errors and under ``ratio_floor`` of it. None without offered and control rows."""
    if frame.empty:
        return None
    decided = pd.to_datetime(frame["decided_at"])
    start = decided.max() - pd.Timedelta(days=days)
    recent = frame[decided > start]
    arm = arm_of(recent)
    variant = recent["variant"] if "variant" in recent else pd.Series(None, index=recent.index, dtype=object)
    in_policy = variant.isna() | (variant == "policy")
    held = recent["holdout"].astype(bool) | (variant == "holdout")
    offered = recent[in_policy & ~held & ~recent["explored"].astype(bool) & (arm != NO_OFFER)
                     & (recent["policy_arm"] == arm)]  # fmt: skip
    control = recent[held & recent["policy_arm"].notna() & (recent["policy_arm"] != NO_OFFER)]
    if len(offered) < 2 or len(control) < 2:
        return None
    o, c = offered["reengaged"].astype(float), control["reengaged"].astype(float)
    realised = float(o.mean() - c.mean())
    se = float(np.sqrt(o.var() / len(o) + c.var() / len(c)))
    predicted = float(offered["incremental_reengage"].astype(float).mean())
    z = (realised - predicted) / se if se > 0 else 0.0
    drifted = bool(z < -z_alert and realised < ratio_floor * predicted)
    return OutcomeCheck(start.isoformat(), len(offered), len(control), predicted, realised, se, float(z), drifted)


@dataclass(frozen=True)
class LiftChange:
    """Whether one event type's offers lost their pull: each event type's realised lift in re-engagement
    (offered rate - held-out rate) in the latest week against the weeks before, set against the change the
    other event types went through (players tiring of weekly offers lower every lift alike; a changed
    response to one event type lowers its own). Model-free: it judges whatever decides."""

    event_type: str  # the event type that fell furthest below the others' change
    current: float  # its lift in the latest week
    expected: float  # its reference lift x the other types' change
    reference: float
    change_others: float  # the other types' lift, latest / reference
    se: float
    z: float
    n_current: int
    drifted: bool
    since: str = ""  # ISO time: the latest week's decisions were decided after it

    def figures(self) -> dict[str, float | int | bool | str]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.event_type} offers' realised lift in re-engagement {self.current:+.4f} in the latest week, "
            f"against {self.expected:+.4f} had it changed as the other event types did (x{self.change_others:.2f} "
            f"from {self.reference:+.4f}); s.e. {self.se:.4f}, z = {self.z:+.1f}, {self.n_current:,} offers"
        )


def _lifts(rows: pd.DataFrame, held: pd.Series, offered: pd.Series, by: pd.Series) -> pd.DataFrame:
    c = rows.loc[held, "reengaged"].astype(float)
    base, base_var, n_c = float(c.mean()), float(c.var()), len(c)
    o = rows[offered].assign(key=by[offered], y=rows.loc[offered, "reengaged"].astype(float))
    g = o.groupby("key")["y"].agg(["mean", "var", "size"])
    g["lift"] = g["mean"] - base
    g["var_lift"] = g["var"].fillna(0) / g["size"] + (base_var / n_c if n_c > 1 else np.inf)
    return g


def check_lift_change(
    frame: pd.DataFrame, *, days: int, reference_weeks: int, z_alert: float, ratio_floor: float,
    min_offers: int = 100,
) -> LiftChange | None:  # fmt: skip
    """The latest ``days`` of measured decisions against the ``reference_weeks`` periods of ``days`` before
    it, per event type. Drifted when an event type's lift is more than ``z_alert`` standard errors and
    ``ratio_floor`` below what the other types' change predicts for it. None without two event types
    offered in both periods (and held-out players in each)."""
    if frame.empty:
        return None
    decided = pd.to_datetime(frame["decided_at"])
    age = ((decided.max() - decided) / pd.Timedelta(days=days)).astype(int)
    variant = frame["variant"] if "variant" in frame else pd.Series(None, index=frame.index, dtype=object)
    held = frame["holdout"].astype(bool) | (variant == "holdout")
    offered = ~held & ~frame["explored"].astype(bool) & (frame["event_type"] != NO_OFFER)
    now, before = age == 0, (age >= 1) & (age <= reference_weeks)
    if (held & now).sum() < 2 or (held & before).sum() < 2:
        return None
    kind = frame["event_type"].astype(str)
    cur = _lifts(frame[now], held[now], offered[now], kind[now])
    ref = _lifts(frame[before], held[before], offered[before], kind[before])
    both = cur.join(ref, rsuffix="_ref", how="inner")
    both = both[(both["size"] >= min_offers) & (both["size_ref"] >= min_offers) & (both["lift_ref"] > 0)]
    if len(both) < 2:
        return None
    rows = []
    for t in both.index:
        others = both.drop(index=t)
        w = others["size"] / others["size"].sum()
        change = float((w * others["lift"]).sum() / (w * others["lift_ref"]).sum())
        r = both.loc[t]
        expected = float(r["lift_ref"]) * change
        se = float(np.sqrt(r["var_lift"] + change**2 * r["var_lift_ref"]))
        z = (float(r["lift"]) - expected) / se if se > 0 else 0.0
        rows.append((z, str(t), float(r["lift"]), expected, float(r["lift_ref"]), change, se, int(r["size"])))
    z, t, current, expected, reference, change, se, n = min(rows)
    drifted = bool(expected > 0 and z < -z_alert and current < ratio_floor * expected)
    since = (decided.max() - pd.Timedelta(days=days)).isoformat()
    return LiftChange(t, current, expected, reference, change, se, z, n, drifted, since)


@dataclass(frozen=True)
class OngoingDrift:
    since: pd.Timestamp  # the start of the first alerting run's window
    event_types: tuple[str, ...]  # the event types the lift check found drifted over the stretch


def latest_drift(runs: pd.DataFrame, *, ongoing: bool = False) -> OngoingDrift | None:
    """The latest outcome drift in the monitoring runs (``runs``: the ``monitor_runs`` rows, oldest first,
    ``figures`` as JSON): over the latest unbroken stretch of runs whose lift check found an event type
    drifted, the start of the first one's window and the event types found. With ``ongoing``, only when the
    latest run is one of them (the drift goes on). None without one.

    The lift check stops alerting once its reference weeks are past the drift too, but the campaigns before
    the drift stay stale evidence for the drifted types: retraining values those offers on the campaigns since
    it began for as long as earlier ones are held out (:func:`monitoring.rollout.judged_since_drift`)."""
    start, types = None, set[str]()
    for figures in reversed(list(runs["figures"])):
        f = json.loads(figures) if isinstance(figures, str) else dict(figures)
        alerting = bool(f.get("lift_drifted")) and bool(f.get("lift_since"))
        if not alerting:
            if start is not None or ongoing:
                break
            continue
        start = pd.Timestamp(f["lift_since"])
        types.add(str(f.get("lift_event_type", "")))
    return None if start is None else OngoingDrift(start, tuple(sorted(types - {""})))


def ongoing_drift(runs: pd.DataFrame) -> OngoingDrift | None:
    """The outcome drift the latest monitoring run still finds (:func:`latest_drift`); None without one."""
    return latest_drift(runs, ongoing=True)


def drifted_since(runs: pd.DataFrame) -> pd.Timestamp | None:
    """When the ongoing outcome drift (:func:`ongoing_drift`) began; None without one."""
    drift = ongoing_drift(runs)
    return None if drift is None else drift.since
