"""How much an arm changes what a returning player deposits: one factor per arm, shrunk by empirical Bayes.

A returner's deposits in the window are mostly the player's own habit (learnt by the deposits head from the
player's columns, every returner pooled), and an offer moves them by a factor: a deposit bonus asks for a
minimum deposit, a cashback rewards a larger one. Learnt by trees from the arm's columns, that factor came out
as noise: with a heavy tail of deposits and a few hundred returners per arm, confounded by the marketers'
rules (big rewards go to big depositors), the model's deposit size of one arm ranged from half to twice the
truth (seed 1 of the main command's world: 18,600 vs 34,300 KRW for free_spins@5000, 68,600 vs 58,100 for
cashback@30000), and every policy value built on it inherited the error.

Here the factor of arm ``a`` is the ratio of what its returners deposited to what the habit predicts for them,
``sum(d) / sum(s0)``, and noisy ratios are pulled toward their parent (arm toward its event type, event type
toward 1) by how noisy they are against how much the ratios really differ (James-Stein / empirical Bayes:
weight ``tau2 / (tau2 + v)``, with ``v`` the ratio's sampling variance and ``tau2`` the spread of the true
ratios, estimated by the method of moments). No constant is tuned to a world: the data say how much to trust
each arm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.heads import factor_key


def _ratios(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per ``key``: the ratio ``sum(w d) / sum(w s)`` and its sampling variance (the ratio estimator's)."""
    g = frame.groupby(key, sort=True)
    out = pd.DataFrame({"d": g["wd"].sum(), "s": g["ws"].sum()})
    out["ratio"] = out["d"] / out["s"]
    resid = frame["w"] * (frame["d"] - frame[key].map(out["ratio"]) * frame["s"])
    out["v"] = (resid**2).groupby(frame[key]).sum() / out["s"] ** 2
    return out


def _shrink(ratio: pd.Series, v: pd.Series, parent: pd.Series) -> pd.Series:
    """Empirical-Bayes shrinkage of ``ratio`` toward ``parent``: weight ``tau2 / (tau2 + v)``."""
    dev = ratio - parent
    tau2 = max(float((dev**2).mean() - v.mean()), 0.0) if len(dev) > 1 else 0.0
    weight = tau2 / (tau2 + v) if tau2 > 0 else v * 0.0
    return parent + weight.fillna(0.0) * dev


def deposit_factors(
    event_type: np.ndarray,
    reward: np.ndarray,
    deposits: np.ndarray,
    habit: np.ndarray,
    weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Factors by arm and by event type (keys :func:`scoring.heads.factor_key`) from the returners' logged arms,
    realised ``deposits`` and predicted ``habit`` (the deposits head on the player's columns)."""
    w = np.ones(len(deposits)) if weight is None else np.asarray(weight, np.float64)
    frame = pd.DataFrame(
        {
            "event": np.asarray(event_type).astype(str),
            "arm": [factor_key(e, r) for e, r in zip(event_type, reward, strict=True)],
            "d": np.asarray(deposits, np.float64),
            "s": np.asarray(habit, np.float64),
            "w": w,
        }
    )
    frame = frame[frame["s"] > 0]
    if frame.empty:
        return {}
    frame["wd"], frame["ws"] = frame["w"] * frame["d"], frame["w"] * frame["s"]
    events = _ratios(frame, "event")
    event_factor = _shrink(events["ratio"], events["v"], pd.Series(1.0, index=events.index))
    arms = _ratios(frame, "arm")
    arm_event = frame.drop_duplicates("arm").set_index("arm")["event"].reindex(arms.index)
    arm_factor = _shrink(arms["ratio"], arms["v"], arm_event.map(event_factor))
    out = {str(k): float(v) for k, v in event_factor.items()}
    return out | {str(k): float(v) for k, v in arm_factor.items()}
