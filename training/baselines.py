"""The policies the learned one is compared with, as rows x arms matrices of arm probabilities.

No offer for everyone, a uniformly random offer, the best single arm for
everyone, the best arm per segment (no offer in a segment whose best arm loses
money), and, with the simulator's truth, the oracle (each row's best arm, or
no offer when none gains). Which arm is "best" is judged on a rows x arms
value matrix given by the caller: the truth, or the doubly robust estimate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def one_hot(arm: np.ndarray, k: int) -> np.ndarray:
    """A deterministic policy as a rows x arms probability matrix."""
    out = np.zeros((len(arm), k))
    out[np.arange(len(arm)), arm] = 1.0
    return out


def uniform_offer(n: int, k: int) -> np.ndarray:
    """The random-arm baseline: every offer arm with the same probability, never no offer."""
    out = np.full((n, k), 1.0 / (k - 1))
    out[:, 0] = 0.0
    return out


def arm_means(value: np.ndarray) -> np.ndarray:
    """Each arm's mean ``value`` (rows x arms) over its rows that are not NaN; -inf for an arm without any."""
    ok = ~np.isnan(value)
    count = ok.sum(axis=0)
    total = np.where(ok, value, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), -np.inf)


def best_single_arm(value: np.ndarray) -> int:
    """The offer arm (column >= 1) with the highest mean ``value`` (rows x arms; NaN ignored: an arm's mean is
    over its own rows, and an arm with none is never the best while another has some)."""
    return int(arm_means(value[:, 1:]).argmax()) + 1


def best_arm_per_segment(value: np.ndarray, segment: np.ndarray) -> dict[str, int]:
    """Per segment, its best single arm, or no offer (0) where that arm's mean ``value`` is not positive."""
    best: dict[str, int] = {}
    for s, idx in pd.Series(segment).groupby(segment).indices.items():
        means = arm_means(value[idx])
        j = int(means[1:].argmax()) + 1
        best[str(s)] = j if means[j] > 0 else 0
    return best


def oracle_arms(value: np.ndarray) -> np.ndarray:
    """Each row's best arm by ``value`` (the truth), or no offer where no arm gains."""
    best = np.nanargmax(np.nan_to_num(value, nan=-np.inf), axis=1)
    return np.where(np.nanmax(value, axis=1) > 0, best, 0)


def historical_rule(
    segment: pd.Series, arm: pd.Series, none: str = "none", known: set[str] | None = None
) -> dict[str, str]:
    """The platform's own rule as its logs show it: per segment, the offer it sent most often (ties: the
    first arm by name), among the ``known`` arms when given (those a model can send). A segment the
    platform never sent an offer gets none."""
    sent = pd.DataFrame({"segment": segment.astype(str), "arm": arm.astype(str)})
    sent = sent[(sent["arm"] != none) & (sent["arm"].isin(known) if known is not None else True)]
    counts = sent.groupby(["segment", "arm"]).size().reset_index(name="n")
    top = counts.sort_values(["segment", "n", "arm"], ascending=[True, False, True]).drop_duplicates("segment")
    return dict(zip(top["segment"], top["arm"], strict=True))


def rule_arms(rule: str | dict[str, str], segment: np.ndarray, names: list[str]) -> np.ndarray:
    """The arm column per row of a fixed rule: one arm for everyone, or a segment -> arm mapping (a segment it
    does not name gets its ``"all"`` entry, else no offer). An arm outside ``names`` is a ValueError naming it."""
    arms = {"all": rule} if isinstance(rule, str) else rule
    unknown = sorted(set(arms.values()) - set(names))
    if unknown:
        raise ValueError(f"unknown arm {unknown[0]!r}; the arms are {names}")
    columns = {s: names.index(a) for s, a in arms.items()}
    if set(columns) == {"all"}:
        return np.full(len(segment), columns["all"], np.int64)
    return pd.Series(segment).astype(str).map(columns).fillna(columns.get("all", 0)).to_numpy(np.int64)
