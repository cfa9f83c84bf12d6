"""Promotion: whether a new model may become champion, decided on estimates only (never the truth).

A policy beats another when the whole interval of the size-calibrated doubly robust estimate ("dr-sized")
of the paired difference of incremental net value per candidate is above zero and the plain doubly robust
one does not find it worse (the upper end of its interval is above zero), both with the evaluation's
cross-fitted outcome model. The new model's estimate must be reliable (enough evidence, no arm without support), and
it must beat the best single arm and the best arm per segment (as the estimate picks them) and the
champion. Otherwise the reason names the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scoring.design import DesignError
from training import evaluation as ev
from training.baselines import rule_arms
from training.fit import Prepared
from training.judge import Judged
from training.policy import choose
from training.scorer import Scorer

PROMOTION_ESTIMATOR = "dr-sized"  # the estimate whose intervals covered the truth (docs/training.md)


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    figures: dict[str, float] = field(default_factory=dict)
    kept_rule: dict[str, str] | None = None  # the fallback in force, kept over the evaluation's choice


def verdict(gaps: pd.DataFrame) -> tuple[bool, str]:
    """A policy beats another when the whole interval of the size-calibrated doubly robust estimate
    ("dr-sized") of the paired difference is above zero and the plain doubly robust one does not find it
    worse (the upper end of its interval is above zero)."""
    by: dict[str, dict[str, Any]] = {
        str(r["estimator"]): {str(k): v for k, v in r.items()} for r in gaps.to_dict("records")
    }
    main, plain = by[PROMOTION_ESTIMATOR], by["dr"]
    ok = bool(main["low"] > 0 and plain["high"] > 0)

    def fmt(r: dict[str, Any]) -> str:
        return f"{r['estimate']:+,.0f} [{r['low']:+,.0f}, {r['high']:+,.0f}]"

    return ok, f"difference {fmt(main)} KRW per candidate ({PROMOTION_ESTIMATOR}), {fmt(plain)} (plain DR)"


def gap_figures(gaps: pd.DataFrame, prefix: str) -> dict[str, float]:
    pairs = zip(gaps["estimator"], gaps["estimate"], strict=True)
    return {f"{prefix}_{str(e).replace('-', '_')}": float(v) for e, v in pairs}


def describe_rule(name: str, arms: dict[str, str]) -> str:
    """``cashback@10000 for everyone`` or ``the best arm per segment (a: x, b: y)``."""
    if set(arms) == {"all"}:
        return f"{arms['all']} for everyone"
    return f"the {name} (" + ", ".join(f"{s}: {a}" for s, a in arms.items()) + ")"


def promotion_decision(
    prepared: Prepared,
    j: Judged,
    champion: Scorer | None,
    champion_version: int | None,
    settled: SettledFallback | None = None,
) -> Promotion:
    """Whether the new model's policy may become champion, and why (estimates only, never the truth, and
    with the evaluation's cross-fitted outcome model, not the judged one). It must beat both the best single
    arm and the best arm per segment (as the estimate picks them), with a reliable estimate, and the
    champion. ``champion`` is None when there is none, or when it cannot be loaded (``champion_version`` then
    names it). ``settled``: the fallback as :func:`settle_fallback` settled it (default: the evaluation's
    choice), named in the reason with why."""
    promotion = _decide(prepared, j, champion, champion_version, settled)
    if settled is None or settled.reason is None:
        return promotion
    kept = settled.rule if settled.kept else None
    figures = promotion.figures | settled.figures
    return Promotion(promotion.promoted, f"{promotion.reason} ({settled.reason})", figures, kept)


def _decide(
    prepared: Prepared,
    j: Judged,
    champion: Scorer | None,
    champion_version: int | None,
    settled: SettledFallback | None,
) -> Promotion:
    e = j.evaluation
    if settled is not None and settled.kept:
        fallback = describe_rule(ev.BEST_SINGLE if set(settled.rule) == {"all"} else ev.PER_SEGMENT, settled.rule)
    else:
        fallback = describe_rule(e.fallback, e.estimated_baselines.get(e.fallback, {}))
    figures: dict[str, float] = {}
    support = e.support.set_index("policy")
    if ev.LEARNED in support.index and not bool(support.loc[ev.LEARNED, "reliable"]):
        s = support.loc[ev.LEARNED]
        reason = (
            f"not promoted: too little evidence for the learned policy's estimate (effective rows {s['ess']:,.0f}, "
            f"uncorrected {s['uncorrected']:.0%}, unsupported {s['unsupported']:.0%}); fall back to {fallback}"
        )
        return Promotion(False, reason, figures)
    texts = []
    for baseline in (ev.BEST_SINGLE, ev.PER_SEGMENT):
        gaps = e.gaps[baseline]
        key = "best_single" if baseline == ev.BEST_SINGLE else "per_segment"
        figures |= gap_figures(gaps, f"gap_{key}")
        ok, text = verdict(gaps)
        if not ok:
            reason = f"not promoted: does not beat the {baseline} ({text}); fall back to {fallback}"
            return Promotion(False, reason, figures)
        texts.append(f"the {baseline} ({text})")
    beats = "beats " + " and ".join(texts)
    if champion is None:
        first = "first champion" if champion_version is None else f"champion v{champion_version} cannot be loaded"
        return Promotion(True, f"promoted: {first}; {beats}", figures)
    if list(champion.arms["arm"]) != list(prepared.arms["arm"]):
        return Promotion(
            False,
            "not promoted: the champion's arms differ from the new model's; compare them with `rekindle evaluate`",
            figures,
        )
    try:
        scores = champion.score(j.rows)
    except DesignError as exc:  # a champion trained on other features
        reason = f"not promoted: the champion v{champion_version} cannot score these rows ({exc})"
        return Promotion(False, reason, figures)
    t = prepared.cfg.training
    w = ev.resample_weights(j.data, t.bootstrap, t.seed)
    mine = choose(j.scores.inc_net, j.scores.cost, allowed=j.scores.allowed).arm
    theirs = choose(scores.inc_net, scores.cost, allowed=scores.allowed).arm
    gaps = ev.policy_gaps(j.mean, j.data, mine, theirs, w)  # the evaluation's outcome model for both
    figures |= gap_figures(gaps, "gap_champion")
    ok, text = verdict(gaps)
    said = "promoted: beats" if ok else "not promoted: does not beat"
    return Promotion(ok, f"{said} champion v{champion_version} on the same held-out rows ({text})", figures)


@dataclass(frozen=True)
class SettledFallback:
    """The fallback rule to register, and why it is that one."""

    rule: dict[str, str]
    kept: bool  # the rule in force was kept over the evaluation's new choice
    reason: str | None  # None: nothing to compare (no rule in force, the same rule, or one the model cannot value)
    figures: dict[str, float] = field(default_factory=dict)


def settle_fallback(j: Judged, served: dict[str, str] | None, *, bootstrap: int, seed: int) -> SettledFallback:
    """The fallback rule once the rule in force (``served``, None without one) has had its say: the
    evaluation's new choice replaces it only when it beats it as a new model must beat a baseline
    (:func:`verdict`, on the same held-out rows, paired). Choosing the best of many arms on one slice of
    campaigns picks noise as often as value (the winner's curse): on the closed loop's campaigns, where every
    arm but the one in force rests on a few hundred randomised rows, the new choice was worth 0.75x the rule in
    force in truth (docs/training.md); a rule that is not shown better does not replace one that serves."""
    e = j.evaluation
    new = e.estimated_baselines.get(e.fallback, {})
    if not served or served == new or not new:
        return SettledFallback(new, False, None)
    names = list(j.scores.arms["arm"])
    try:
        theirs = rule_arms(served, j.data.segment, names)
    except ValueError as exc:  # an arm the new model does not have
        return SettledFallback(new, False, f"the rule in force cannot be valued on the new model's arms ({exc})")
    mine = rule_arms(new, j.data.segment, names)
    w = ev.resample_weights(j.data, bootstrap, seed)
    gaps = ev.policy_gaps(j.mean, j.data, mine, theirs, w)
    ok, text = verdict(gaps)
    figures = gap_figures(gaps, "gap_fallback_in_force")
    before = describe_rule("rule in force", served)
    if ok:
        return SettledFallback(new, False, f"the new fallback replaces {before}: it beats it ({text})", figures)
    return SettledFallback(served, True, f"{before} is kept: the new choice does not beat it ({text})", figures)
