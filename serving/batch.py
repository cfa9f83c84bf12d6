"""``rekindle batch``: one decision for every dormant candidate at a time T.

The candidates and their features come from :mod:`features.candidates`; the
registered scorer then scores every arm and the policy picks one per player.
The output holds one row per candidate: player_id, segment, event_type,
reward ("none" and 0 for no offer), the expected values in whole KRW, the
interval and the confidence, and the model version that decided.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.errors import RekindleError
from core.progress import SILENT, Progress
from features.candidates import candidate_features, snapshot_at
from scoring.ensemble import ResponseEnsemble
from scoring.heads import ArmPredictions
from serving import planner
from serving.experiments import Experiment, ExperimentError, apply_variants, assign, from_definition, variant_arms
from serving.export import export_by_event_type
from serving.policy import (
    Decisions,
    PolicyError,
    Rows,
    arm_names,
    check_settings,
    decide,
    frequency_capped,
    rule_mask,
)
from serving.webhook import DeliveryReport, send_campaign
from system_db.decision_log import DecisionLog, new_decision_id
from system_db.deliveries import Deliveries
from system_db.experiments import ExperimentStore
from system_db.overrides import Overrides, merged
from system_db.store import SystemStore
from training.policy import Choice, Objective
from training.scorer import ArmRule, Scorer, Scores, round_money


class BatchError(RekindleError, ValueError):
    """The batch cannot run: a bad time, output path or empty candidate set."""


@dataclass
class BatchResult:
    decisions: pd.DataFrame
    as_of: datetime
    snapshot: datetime
    path: Path
    seconds: dict[str, float]
    campaign: str
    lp_gap: float | None  # with a budget: (LP bound - knapsack value) / LP bound
    files: list[Path]  # with split: the campaign's file per event type
    delivery: DeliveryReport | None = None  # with a webhook: what was sent to it


def compile_model(model: ResponseEnsemble, cache: Path, each: Callable[[str], None] | None = None) -> str | None:
    """Compile the model's boosters for a large batch (cached under ``cache``). None when done; else why not,
    and the model scores with LightGBM, with the same numbers (a booster lleaves cannot compile must not stop
    the campaign)."""
    try:
        model.compile(cache, each=each)
    except Exception as exc:
        for member in model.members:
            member.compiled.clear()
        return str(exc).splitlines()[0][:200]
    return None


def write_atomic(frame: pd.DataFrame, out: Path) -> Path:
    if out.suffix not in (".csv", ".parquet"):
        raise BatchError(f"--out must end in .csv or .parquet, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def frequency_blocked(
    frame: pd.DataFrame, t: datetime, snapshot: datetime, last_sent: pd.Series, cap_days: int
) -> np.ndarray:
    """Why each candidate gets no offer under the frequency cap ("" when it may): its last offer on the platform
    (``days_since_last_offer`` at the snapshot, aged to ``t``) or in the decision log (``last_sent``, player id ->
    time) was fewer than ``cap_days`` days before ``t``."""
    platform = np.full(len(frame), np.inf)
    if "days_since_last_offer" in frame:
        platform = frame["days_since_last_offer"].to_numpy(np.float64) + (t - snapshot).total_seconds() / 86400
    ours = np.full(len(frame), np.inf)
    if len(last_sent):
        sent = pd.to_datetime(frame["player_id"].map(last_sent))
        ours = ((pd.Timestamp(t) - sent).dt.total_seconds() / 86400).to_numpy(np.float64)
    return frequency_capped(platform, ours, cap_days)


def campaign_id(t: datetime) -> str:
    """The batch's name in the decision log: one batch per as-of time."""
    return f"batch-{t:%Y%m%dT%H%M%S}"


def run_batch(
    cfg: Config,
    scorer: Scorer,
    *,
    as_of: datetime | None,
    out: Path,
    model_version: str,
    margin: float | None = None,
    objective: Objective | None = None,
    budget: float | None = None,
    arm: ArmRule | None = None,
    replace: bool = False,
    split: bool = False,
    webhook: str | None = None,
    chunk_size: int = 1000,
    canary: tuple[Scorer, str, ArmRule | None] | None = None,
    progress: Progress = SILENT,
) -> BatchResult:
    """One decision per candidate at ``as_of`` under the serving policy (rules, overrides, exploration, holdout,
    budget; ``arm``: the fallback rule instead of the model's choice), written to ``out`` and to the decision
    log; ``split``: also a file per event type for the event system (:mod:`serving.export`); ``webhook``: its
    offers POSTed there in chunks (:mod:`serving.webhook`). A batch already logged for that as-of is refused
    unless ``replace``, and always once any of it was sent to a webhook."""
    if out.suffix not in (".csv", ".parquet"):  # before minutes of work
        raise BatchError(f"--out must end in .csv or .parquet, got {out.name!r}")
    if arm is not None and budget is not None:
        raise BatchError(f"--arm {arm} is a fixed rule; it takes no --budget (got {budget:,.0f} KRW)")
    if arm is not None:
        for one in [arm] if isinstance(arm, str) else list(arm.values()):
            try:
                scorer.arm_column(one)
            except ValueError as exc:
                raise BatchError(f"--arm: {exc}") from None
    store = SystemStore(cfg.system_db_url)
    overrides = Overrides(store)
    settings = merged(cfg.serving.policy, overrides.read())
    try:
        check_settings(settings, scorer.arms)
    except PolicyError as exc:
        raise BatchError(f"the serving policy does not fit model {model_version}: {exc}") from None
    policy_version = f"policy-{overrides.version()}"
    objective = objective or settings.objective or scorer.objective
    log = DecisionLog(store)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    t, snap = snapshot_at(cfg, as_of)
    campaign = campaign_id(t)
    earlier = log.count_batch(campaign)
    if earlier and not replace:
        raise BatchError(
            f"the decision log already holds {earlier:,} decisions of the batch at {t:%Y-%m-%dT%H:%M} ({campaign}): "
            "pass --replace to replace them"
        )
    ledger = Deliveries(store)
    sent = ledger.sent_anywhere(campaign) if earlier else {}
    if sent:
        where = ", ".join(f"{n:,} offers to {u}" for u, n in sent.items())
        raise BatchError(
            f"{campaign} was already sent ({where}): an event system has those decisions, so they are not replaced; "
            f"resume its export with `rekindle campaign send {campaign}`"
        )
    progress.note(f"candidates and features at {t:%Y-%m-%dT%H:%M} (snapshot {snap:%Y-%m-%dT%H:%M})")
    frame = candidate_features(cfg, t, snap)
    seconds["features"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if len(frame) >= cfg.serving.compile_min_candidates:  # minutes of LightGBM calls: compiled, they take a third
        n = scorer.model.boosters()
        progress.note(f"compiling the model's {n} boosters (once per model: cached under {cfg.path('cache')})")
        progress.start("compile", n)
        failed = compile_model(
            scorer.model, cfg.path("cache", "compiled"), lambda name: progress.advance("compile", detail=name)
        )
        if failed is not None:
            progress.note(f"could not compile the model ({failed}); scoring with LightGBM")
        seconds["compile"] = time.perf_counter() - t1
        t1 = time.perf_counter()
    progress.note(f"scoring {len(frame):,} candidates x {len(scorer.arms)} arms")
    s = scorer.score(frame, margin=margin)
    blocked = frequency_blocked(
        frame, t, snap, log.last_offers_before(t, exclude=campaign), settings.frequency_cap_days
    )
    rows = Rows(frame["player_id"].to_numpy(np.int64), frame["segment"].astype(str).to_numpy(object), blocked)
    planner.save(planner.sample_of(
        s.arms, rows.segment, s.point.p_reengage, s.point.deposits, s.point.cost, blocked == "",
        seed=cfg.training.seed, holdout=settings.holdout, campaign=campaign, as_of=pd.Timestamp(t),
        model_version=model_version, margin=s.margin, objective=objective,
    ), planner.sample_path(cfg))  # the dashboard's campaign planner plans on it  # fmt: skip
    rng = np.random.default_rng([cfg.training.seed, int(pd.Timestamp(t).timestamp())])  # a rerun draws the same
    forced = scorer.rule_columns(frame, arm) if arm is not None else None
    d = decide(
        s.gain(objective), s.cost, s.inc_net, scorer.arms, rows, settings, rng,
        objective=objective, budget=budget, forced=forced,
    )  # fmt: skip
    experiment, variant = _running_experiment(store), None
    versions = np.full(len(frame), model_version, dtype=object)
    if experiment is not None:
        if budget is not None:
            raise BatchError(
                f"experiment {experiment.name} is running: its fixed variants would spend outside the budget; "
                "run the batch without --budget, or stop the experiment"
            )
        names = arm_names(scorer.arms)
        variant = assign(rows.player_id, experiment)
        try:
            codes = variant_arms(variant, rows.segment, experiment, names)
        except ExperimentError as exc:
            raise BatchError(str(exc)) from None
        on_canary = variant == "challenger"
        if on_canary.any():  # the canary's policy (or fallback rule) for its players
            if canary is None:
                raise BatchError(f"experiment {experiment.name} has a challenger variant but no canary model is given")
            s_c, rule_c = _canary_scores(frame, scorer, s, canary, model_version, margin)
            d_c = decide(s_c.gain(objective), s_c.cost, s_c.inc_net, scorer.arms, rows, settings, rng,
                         objective=objective, forced=rule_c)  # fmt: skip
            d, s = merge_rows(d, d_c, on_canary), merge_scores(s, s_c, on_canary)
            versions = np.where(on_canary, canary[1], model_version)
        allowed = rule_mask(scorer.arms, rows.segment.astype(str), settings)
        d = apply_variants(
            d, variant, codes, allowed, blocked == "", rng, experiment, names, s.inc_reengage, s.cost, rows.segment
        )
        progress.note(f"experiment {experiment.name}: " + ", ".join(
            f"{v} {int((variant == v).sum()):,}" for v in experiment.shares))  # fmt: skip
    pick = Choice(d.arm, s.gain(objective)[np.arange(len(d.arm)), d.arm], s.cost[np.arange(len(d.arm)), d.arm], d.lam)
    decisions = round_money(scorer.describe(frame, s, scorer.judge_arms(frame, s, pick, objective)))
    decisions.insert(1, "segment", rows.segment)
    decisions["propensity"] = d.propensity
    decisions["explored"] = d.explored
    decisions["holdout"] = d.holdout
    decisions["reason"] = d.reason
    decisions["as_of"] = pd.Timestamp(t)
    decisions["model_version"] = versions
    decisions["policy_version"] = policy_version
    decisions["decision_id"] = [new_decision_id() for _ in range(len(decisions))]
    seconds["score"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    progress.note(f"logging {len(decisions):,} decisions ({campaign})")
    would = np.asarray(arm_names(scorer.arms), dtype=object)[d.would]
    exposure = (experiment.name if experiment else None, variant)
    log.write_batch(campaign, batch_log_rows(decisions, campaign, t, would, exposure), replace=replace)
    path = write_atomic(decisions, out)
    files = export_by_event_type(decisions, out) if split else []
    seconds["log"] = time.perf_counter() - t2
    delivery = None
    if webhook is not None:  # after the log: what is sent is what was logged, and a failure here loses nothing
        progress.note(f"sending the offers to {webhook}")
        delivery = send_campaign(campaign, decisions, webhook, ledger, chunk_size=chunk_size, progress=progress)
        seconds["webhook"] = delivery.seconds
    seconds["total"] = time.perf_counter() - t0
    gap = None
    if d.lp_bound is not None and d.knapsack_value is not None and d.lp_bound > 0:
        gap = (d.lp_bound - d.knapsack_value) / d.lp_bound
    return BatchResult(decisions, t, snap, path, seconds, campaign, gap, files, delivery)


def _canary_scores(
    frame: pd.DataFrame, scorer: Scorer, scores: Scores, canary: tuple[Scorer, str, ArmRule | None],
    model_version: str, margin: float | None,
) -> tuple[Scores, np.ndarray | None]:  # fmt: skip
    """The scores the canary decides on and its rule's arm per row (None: its own policy). Its rows merge with
    the served model's, so they need the same arms; a canaried fallback rule whose arms the served model
    also has is applied on the served model's scores (the rule does not need the canary's predictions)."""
    model, version, rule = canary
    if list(model.arms["arm"]) == list(scorer.arms["arm"]):
        return model.score(frame, margin=margin), (model.rule_columns(frame, rule) if rule is not None else None)
    if rule is not None:
        arms = {rule} if isinstance(rule, str) else set(rule.values())
        if arms <= set(scorer.arms["arm"]):
            return scores, scorer.rule_columns(frame, rule)
    raise BatchError(
        f"canary {version} has other arms than {model_version}: roll it back (`rekindle retrain` settles it) or "
        "stop the experiment"
    )


def merge_rows(d: Decisions, other: Decisions, take: np.ndarray) -> Decisions:
    """``d`` with the rows ``take`` from ``other`` (the same rows decided by another model)."""
    fields = ("arm", "greedy", "would", "propensity", "explored", "holdout", "pinned", "reason", "runners_up")
    pick = {f: np.where(take if getattr(d, f).ndim == 1 else take[:, None], getattr(other, f), getattr(d, f))
            for f in fields}  # fmt: skip
    return dataclasses.replace(d, **pick)


def merge_scores(s: Scores, other: Scores, take: np.ndarray) -> Scores:
    a, b, t = s.point, other.point, take[:, None]
    point = ArmPredictions(a.arms, np.where(t, b.p_reengage, a.p_reengage), np.where(t, b.deposits, a.deposits),
                           np.where(t, b.cost, a.cost))  # fmt: skip
    return Scores(s.arms, point, s.margin)


def _running_experiment(store: SystemStore) -> Experiment | None:
    running = ExperimentStore(store).running()
    return None if running is None else from_definition(*running)


def batch_log_rows(
    decisions: pd.DataFrame,
    campaign: str,
    t: datetime,
    would: np.ndarray,
    exposure: tuple[str | None, np.ndarray | None] = (None, None),
) -> pd.DataFrame:
    """The decision log's rows of a batch (request id: the campaign and the player); ``would``: the policy's
    arm of each row without exploration or the holdout; ``exposure``: the running experiment and each row's
    variant in it."""
    return pd.DataFrame(
        {
            "decision_id": decisions["decision_id"],
            "caller": "batch",
            "request_id": campaign + ":" + decisions["player_id"].astype(str),
            "player_id": decisions["player_id"],
            "decided_at": pd.Timestamp(t),
            "source": "batch",
            "segment": decisions["segment"],
            "event_type": decisions["event_type"],
            "reward": decisions["reward"],
            "propensity": decisions["propensity"],
            "explored": decisions["explored"],
            "holdout": decisions["holdout"],
            "fallback": False,
            "reason": decisions["reason"].astype(str).str.slice(0, 300),
            "expected_cost": decisions["expected_cost"].astype(np.float64),
            "incremental_net_value": decisions["incremental_net_value"].astype(np.float64),
            "incremental_reengage": decisions["incremental_reengage"].astype(np.float64),
            "model_version": decisions["model_version"],
            "policy_version": decisions["policy_version"],
            "response": None,
            "policy_arm": would,
            "experiment": exposure[0],
            "variant": exposure[1],
        }
    )
