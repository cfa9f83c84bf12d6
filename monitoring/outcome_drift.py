"""Whether the world still answers as the model predicts: the incremental re-engagement its offers were
predicted to buy against what they bought, over the latest measured week. Pure.

Re-engagement, not net value: a week's net value is too heavy-tailed to judge (its standard error is
larger than the effect), while a week of offers measures re-engagement to a point or two. Offered rows are
the policy's own offers (not explored, not held out, the arm it chose); control rows are the players held
out of any offer by the policy's holdout or an experiment's holdout variant (both drawn by hash) for whom
the policy would have sent an offer. Realised = offered rate - control rate, with its standard error.
"""

from __future__ import annotations

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
    """The same arms' realised lift in re-engagement (offered rate - held-out rate) in the latest week
    against the weeks before: model-free, so it judges whatever decides (a champion or a fallback rule)."""

    arms: int  # arms offered in both
    n_current: int
    current: float  # pooled over arms, weighted by the current week's offers
    reference: float
    se: float
    z: float
    drifted: bool

    def figures(self) -> dict[str, float | int | bool]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"realised lift in re-engagement of the latest week's offers {self.current:+.4f} against "
            f"{self.reference:+.4f} for the same arms in the weeks before (s.e. {self.se:.4f}, z = {self.z:+.1f}; "
            f"{self.n_current:,} offers, {self.arms} arms)"
        )


def _lifts(rows: pd.DataFrame, held: pd.Series, offered: pd.Series, arm: pd.Series) -> pd.DataFrame:
    c = rows.loc[held, "reengaged"].astype(float)
    base, base_var, n_c = float(c.mean()), float(c.var()), len(c)
    o = rows[offered].assign(arm=arm[offered], y=rows.loc[offered, "reengaged"].astype(float))
    g = o.groupby("arm")["y"].agg(["mean", "var", "size"])
    g["lift"] = g["mean"] - base
    g["var_lift"] = g["var"].fillna(0) / g["size"] + (base_var / n_c if n_c > 1 else np.inf)
    return g


def check_lift_change(
    frame: pd.DataFrame, *, days: int, reference_weeks: int, z_alert: float, ratio_floor: float,
    min_offers: int = 30,
) -> LiftChange | None:  # fmt: skip
    """Latest ``days`` of measured decisions against the ``reference_weeks`` periods of ``days`` before it.
    Drifted when the pooled lift fell by more than ``z_alert`` standard errors and to under ``ratio_floor``
    of the reference's. None without both periods (offered and held-out rows in each)."""
    if frame.empty:
        return None
    decided = pd.to_datetime(frame["decided_at"])
    age = ((decided.max() - decided) / pd.Timedelta(days=days)).astype(int)
    arm = arm_of(frame)
    variant = frame["variant"] if "variant" in frame else pd.Series(None, index=frame.index, dtype=object)
    held = frame["holdout"].astype(bool) | (variant == "holdout")
    offered = ~held & ~frame["explored"].astype(bool) & (arm != NO_OFFER)
    now, before = age == 0, (age >= 1) & (age <= reference_weeks)
    if (held & now).sum() < 2 or (held & before).sum() < 2:
        return None
    cur = _lifts(frame[now], held[now], offered[now], arm[now])
    ref = _lifts(frame[before], held[before], offered[before], arm[before])
    both = cur.join(ref, rsuffix="_ref", how="inner")
    both = both[(both["size"] >= min_offers) & (both["size_ref"] >= min_offers)]
    if both.empty:
        return None
    w = both["size"] / both["size"].sum()
    current, reference = float((w * both["lift"]).sum()), float((w * both["lift_ref"]).sum())
    se = float(np.sqrt((w**2 * (both["var_lift"] + both["var_lift_ref"])).sum()))
    z = (current - reference) / se if se > 0 else 0.0
    drifted = bool(reference > 0 and z < -z_alert and current < ratio_floor * reference)
    return LiftChange(len(both), int(both["size"].sum()), current, reference, se, float(z), drifted)
