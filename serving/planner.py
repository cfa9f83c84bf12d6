"""The campaign planner: what the policy would send, spend and win for a budget, from the latest batch's scores.

Every batch keeps a seeded sample of its candidates' predictions per arm (:func:`sample_of`, written by
:func:`save` under ``<home>/dashboard/planner.npz``); the dashboard's planner reads it and asks:

- :func:`curve`: the knapsack's curve over budgets. Each point is the policy at one shadow price ``lambda``
  (the best ``gain - lambda x cost`` per player, :func:`training.policy.choose`): its expected reward cost,
  incremental re-engagements and incremental net value, scaled from the sample to every candidate. Sweeping
  ``lambda`` from the price where nothing is worth sending down to 0 traces every budget's plan at once.
- :func:`plan`: the plan at one budget, per segment and arm, to export.

What-if: the margin (net value = margin x expected deposits - reward cost), a reward cap and event types
switched off, over the rules in force (:func:`serving.policy.rule_mask`). The planner plans the model's
choice for the players outside the holdout; exploration, pins and the frequency cap are the batch's
business (the sample's rows already exclude players the frequency cap or their status keep from an offer).
Pure numpy over a sample of at most :data:`SAMPLE_ROWS` rows: a what-if answers in milliseconds.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config, PolicySettings
from core.errors import RekindleError
from serving.policy import arm_names, rule_mask
from training.arms import greedy_mask
from training.policy import Objective, choose, gains

SAMPLE_ROWS = 20_000
CURVE_POINTS = 40


class PlannerError(RekindleError, ValueError):
    """A what-if the planner cannot answer (the message names the bad value)."""


@dataclass
class Sample:
    """A sample of one batch's eligible candidates with every arm's predictions (rows x arms, "none" first)."""

    arms: pd.DataFrame  # event_type, reward, supported
    segment: np.ndarray  # per row
    p_reengage: np.ndarray
    deposits: np.ndarray
    cost: np.ndarray
    candidates: int  # eligible candidates the sample stands for
    holdout: float  # the share the policy held out when the batch ran
    campaign: str
    as_of: pd.Timestamp
    model_version: str
    margin: float
    objective: str

    @property
    def scale(self) -> float:
        """Players outside the holdout one sample row stands for."""
        return self.candidates * (1.0 - self.holdout) / max(len(self.segment), 1)

    def gain(self, objective: Objective, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row and arm: the objective's gain, incremental net value and incremental re-engagement."""
        net = margin * self.deposits - self.cost
        inc_net = net - net[:, [0]]
        inc_re = self.p_reengage - self.p_reengage[:, [0]]
        return gains(inc_net, inc_re, objective), inc_net, inc_re


def sample_path(cfg: Config) -> Path:
    """Where the latest batch keeps its sample."""
    return cfg.path("dashboard", "planner.npz")


def sample_of(
    arms: pd.DataFrame,
    segment: np.ndarray,
    p_reengage: np.ndarray,
    deposits: np.ndarray,
    cost: np.ndarray,
    eligible: np.ndarray,
    *,
    seed: int,
    rows: int = SAMPLE_ROWS,
    **meta: object,
) -> Sample:
    """A seeded sample of at most ``rows`` of the ``eligible`` rows (uniform: each stands for as many)."""
    idx = np.flatnonzero(eligible)
    if len(idx) > rows:
        idx = np.sort(np.random.default_rng(seed).choice(idx, rows, replace=False))
    cols = ["event_type", "reward", *(["supported"] if "supported" in arms else [])]
    return Sample(
        arms=arms[cols].reset_index(drop=True), segment=np.asarray(segment, dtype=object)[idx],
        p_reengage=p_reengage[idx].astype(np.float32), deposits=deposits[idx].astype(np.float32),
        cost=cost[idx].astype(np.float32), candidates=int(eligible.sum()), **meta,  # type: ignore[arg-type]
    )  # fmt: skip


def save(sample: Sample, path: Path) -> Path:
    """Write ``sample`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    meta = {
        "candidates": sample.candidates, "holdout": sample.holdout, "campaign": sample.campaign,
        "as_of": pd.Timestamp(sample.as_of).isoformat(), "model_version": sample.model_version,
        "margin": sample.margin, "objective": sample.objective,
        "arms": sample.arms.astype({"reward": "int64"}).to_dict("list"),
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buf = io.BytesIO()
    np.savez_compressed(
        buf, segment=sample.segment.astype(str), p_reengage=sample.p_reengage, deposits=sample.deposits,
        cost=sample.cost, meta=np.array(json.dumps(meta)),
    )  # fmt: skip
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def load(path: Path) -> Sample | None:
    """The sample at ``path``, or None before any batch kept one."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arms = pd.DataFrame(meta.pop("arms"))
        return Sample(
            arms=arms, segment=z["segment"].astype(object), p_reengage=z["p_reengage"].astype(np.float64),
            deposits=z["deposits"].astype(np.float64), cost=z["cost"].astype(np.float64),
            candidates=int(meta["candidates"]), holdout=float(meta["holdout"]), campaign=str(meta["campaign"]),
            as_of=pd.Timestamp(meta["as_of"]), model_version=str(meta["model_version"]),
            margin=float(meta["margin"]), objective=str(meta["objective"]),
        )  # fmt: skip


@dataclass(frozen=True)
class WhatIf:
    """The planner's knobs over the rules in force."""

    margin: float
    objective: Objective = "net_value"
    reward_cap: int | None = None
    disabled_event_types: tuple[str, ...] = ()

    def check(self, sample: Sample) -> None:
        if not len(sample.segment):
            raise PlannerError(f"batch {sample.campaign} had no eligible candidate: there is nothing to plan")
        if not 0 < self.margin <= 1:
            raise PlannerError(f"margin must be in (0, 1], got {self.margin}")
        if self.objective not in ("net_value", "reengagement"):
            raise PlannerError(f"objective must be 'net_value' or 'reengagement', got {self.objective!r}")
        if self.reward_cap is not None and self.reward_cap < 0:
            raise PlannerError(f"reward cap must be >= 0 KRW, got {self.reward_cap}")
        known = set(sample.arms["event_type"].astype(str)) - {"none"}
        unknown = sorted(set(self.disabled_event_types) - known)
        if unknown:
            raise PlannerError(f"unknown event type(s) {unknown}; the model knows {sorted(known)}")


def allowed(sample: Sample, rules: PolicySettings, what: WhatIf) -> np.ndarray:
    """Rows x arms the greedy policy may pick: the rules in force, the what-if's cap and switched-off event
    types, and the arms with support."""
    update: dict[str, object] = {
        "disabled_event_types": sorted({*rules.disabled_event_types, *what.disabled_event_types})
    }
    if what.reward_cap is not None:
        update["reward_cap"] = what.reward_cap if rules.reward_cap is None else min(rules.reward_cap, what.reward_cap)
    mask = rule_mask(sample.arms, sample.segment.astype(str), rules.model_copy(update=update))
    mask &= greedy_mask(sample.arms)[None, :]
    mask[:, 0] = True
    return mask


def _totals(sample: Sample, arm: np.ndarray, inc_net: np.ndarray, inc_re: np.ndarray) -> dict[str, float]:
    k = sample.cost.shape[1]
    at = np.arange(len(arm)) * k + arm  # flat positions of the chosen cells: one gather per array
    s = sample.scale
    cost = float(sample.cost.ravel()[at].sum()) * s
    net = float(inc_net.ravel()[at].sum()) * s
    return {
        "offers": float(np.count_nonzero(arm)) * s,
        "cost": cost,
        "reengagements": float(inc_re.ravel()[at].sum()) * s,
        "net_value": net,
        "roi": net / cost if cost > 0 else float("nan"),
    }


def curve(sample: Sample, rules: PolicySettings, what: WhatIf, points: int = CURVE_POINTS) -> pd.DataFrame:
    """The policy's plan over budgets: one row per shadow price, cheapest plan first: budget (its expected
    reward cost), offers, incremental re-engagements and net value, ROI; every candidate outside the holdout."""
    what.check(sample)
    gain, inc_net, inc_re = sample.gain(what.objective, what.margin)
    ok = allowed(sample, rules, what)
    # the arms a row may not get can never win: -inf gain; no offer (column 0) scores 0 at every price
    g = np.where(ok, gain, -np.inf).astype(np.float32)
    c = np.where(ok, sample.cost, 0.0).astype(np.float32)
    g[:, 0], c[:, 0] = 0.0, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((c > 0) & (g > 0), g / c, 0.0)
    top = float(ratio.max()) if ratio.size else 0.0
    lams = [0.0] if top <= 0 else [*(top * np.geomspace(1.0, 1e-3, points - 1)), 0.0]
    out = []
    for lam in lams:
        arm = (g - np.float32(lam) * c).argmax(axis=1)
        out.append({"shadow_price": lam, **_totals(sample, arm, inc_net, inc_re)})
    frame = pd.DataFrame(out).rename(columns={"cost": "budget"})
    return frame.drop_duplicates("budget").sort_values("budget").reset_index(drop=True)


def plan(
    sample: Sample, rules: PolicySettings, what: WhatIf, budget: float | None
) -> tuple[dict[str, float], pd.DataFrame]:
    """The policy's plan within ``budget`` KRW of expected reward cost (None: unlimited): its totals and, per
    segment and arm, the players it would send it to with their expected cost, re-engagements and net value."""
    what.check(sample)
    if budget is not None and budget < 0:
        raise PlannerError(f"budget must be >= 0 KRW, got {budget:,.0f}")
    gain, inc_net, inc_re = sample.gain(what.objective, what.margin)
    pick = choose(gain, sample.cost, budget=None if budget is None else budget / sample.scale,
                  allowed=allowed(sample, rules, what))  # fmt: skip
    arm, rows = pick.arm, np.arange(len(pick.arm))
    names = np.asarray(arm_names(sample.arms), dtype=object)
    s = sample.scale
    per = pd.DataFrame({
        "segment": sample.segment.astype(str), "arm": names[arm], "players": s,
        "expected_cost": sample.cost[rows, arm] * s, "reengagements": inc_re[rows, arm] * s,
        "net_value": inc_net[rows, arm] * s,
    })  # fmt: skip
    table = per.groupby(["segment", "arm"], as_index=False).sum().sort_values(["segment", "players"],
                                                                             ascending=[True, False])  # fmt: skip
    return {**_totals(sample, arm, inc_net, inc_re), "shadow_price": pick.lam}, table.reset_index(drop=True)


def predicted_by_segment(sample: Sample) -> pd.DataFrame:
    """The model's mean predictions per segment and arm over the sample: segment, arm, p_reengage, its lift over
    no offer, and the incremental net value at the sample's margin."""
    _, inc_net, inc_re = sample.gain("net_value", sample.margin)
    names = arm_names(sample.arms)
    k = len(names)
    frame = pd.DataFrame({
        "segment": np.repeat(sample.segment.astype(str), k), "arm": np.tile(names, len(sample.segment)),
        "p_reengage": sample.p_reengage.ravel(), "lift": inc_re.ravel(), "net_value": inc_net.ravel(),
    })  # fmt: skip
    return frame.groupby(["segment", "arm"], as_index=False, sort=False).mean()
