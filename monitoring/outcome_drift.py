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
