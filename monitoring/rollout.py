"""Safe roll-out of a retrained model: the canary's experiment, its verdict, promotion or roll-back.

A model that beat the champion on the same recent held-out data (``rekindle retrain``) gets the
registry's ``canary`` alias and a share of the policy's players: the running experiment is stopped and
restarted with the same salt and variants, the challenger carved out of the policy's hash range (every
other variant keeps its players). Each later run settles it (:func:`settle_canary`): not worse -> the
canary becomes champion; worse, or undecided after ``retrain.canary_max_runs`` verdicts -> the alias is
removed (rolled back), unless the canary was trained on a drift and measured no worse than the drifted
champion (:func:`monitoring.canary.undecided_after_drift`). Either way the experiment goes back to its
variants without the challenger. Every step is a model event in the system store, with its figures.

While the monitor finds an outcome drift, a retraining values the drifted event type's offers, and judges
every policy, on the campaigns since it began (:func:`judged_since_drift`), and a running canary whose
retraining did not know of that drift is withdrawn (rolled back) so that such a retraining replaces it at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from core.config import Config, StaleEvidence
from monitoring.canary import Verdict, canary_verdict, undecided_after_drift
from monitoring.outcome_drift import drifted_since, latest_drift
from serving.experiments import Experiment, definition, from_definition, with_challenger, without_challenger
from system_db.experiments import ExperimentStore
from system_db.model_events import LoopRecord
from system_db.store import SystemStore

WHO = "rekindle retrain"


@dataclass(frozen=True)
class Settled:
    version: int
    verdict: Verdict
    experiment: str  # the experiment running afterwards
    superseded: bool = False  # withdrawn by an outcome drift its retraining did not know: retrain now


def _running(experiments: ExperimentStore) -> Experiment | None:
    running = experiments.running()
    return None if running is None else from_definition(*running)


def _restart(experiments: ExperimentStore, old: Experiment | None, new: Experiment, at: datetime) -> None:
    if old is not None:
        experiments.stop(old.name, WHO, at)
    experiments.start(new.name, definition(new), WHO, at)


def canary_version(cfg: Config) -> int | None:
    from training import registry

    with registry.tracking(cfg):
        return registry.alias_version(cfg.training.model_name, registry.CANARY)


def judged_since_drift(cfg: Config) -> tuple[Config, str]:
    """The configuration a retraining runs with, and why it differs: once the monitor has found an event
    type's offers drifted (:func:`monitoring.outcome_drift.latest_drift`, the alarm over or not), their rows
    from before the drift are stale evidence (``training.stale_evidence``): the drifted offers are valued on
    the campaigns decided since it began, every other offer on the whole held-out slice, and every policy on
    the campaigns since, for as long as the held-out slice holds campaigns from before it. Judged on the weeks
    before it, the old best arm would look best still; judged on the one campaign since, every arm's value
    would be that one campaign's noise. The reason is empty (the retraining is not one of the drift's) once
    the drift is over and every held-out campaign is since it."""
    runs = LoopRecord(SystemStore(cfg.system_db_url)).read_runs()
    drift = latest_drift(runs)
    path = cfg.path("training", "training_set.parquet")
    if drift is None or not drift.event_types or not path.is_file():
        return cfg, ""
    at = pd.to_datetime(pd.read_parquet(path, columns=["campaign_at"])["campaign_at"]).drop_duplicates()
    n, held = int((at > drift.since).sum()), cfg.training.split.test_campaigns
    if n < 1:
        return cfg, ""
    stale = StaleEvidence(since=drift.since.to_pydatetime(), event_types=list(drift.event_types))
    types = ", ".join(drift.event_types)
    updated = cfg.model_copy(update={"training": cfg.training.model_copy(update={"stale_evidence": stale})})
    if n >= held and drifted_since(runs) is None:  # an old drift: only the outcome model's history is stale
        return updated, ""
    if n >= held:  # the held-out campaigns are all since
        why = (
            f"outcome drift of {types} since {drift.since:%Y-%m-%d}: judged on the {held} latest campaigns, all "
            f"since; the evaluation's outcome model does not learn {types} offers from before it"
        )
    else:
        why = (
            f"outcome drift of {types} since {drift.since:%Y-%m-%d}: {types} offers and every policy valued on the "
            f"{n} campaign{'s' if n > 1 else ''} decided since, the other offers on all {held} held-out campaigns"
        )
    return updated, why


def start_canary(cfg: Config, version: int, at: datetime) -> Experiment:
    """Give the canary model its share of the policy's players (the experiment restarted around it)."""
    store = SystemStore(cfg.system_db_url)
    experiments = ExperimentStore(store)
    running = _running(experiments)
    base = running.name.split("+", 1)[0] if running is not None else "canary"
    new = with_challenger(running, cfg.retrain.canary_share, f"{base}+canary-v{version}")
    _restart(experiments, running, new, at)
    LoopRecord(store).event(at, "canary_started", version, f"experiment {new.name}", dict(new.shares))
    return new


DRIFT_FIGURE = "judged_since_drift"  # in a retraining's event figures: it was judged on the weeks since a drift


def drift_unknown_to(runs: pd.DataFrame, events: pd.DataFrame, version: int) -> pd.Timestamp | None:
    """When the ongoing outcome drift (:func:`monitoring.outcome_drift.drifted_since` of the monitor ``runs``)
    began, if the retraining that made ``version`` did not know of it (``events``: the model events); else
    None. Such a canary was judged on a world that is gone."""
    since = drifted_since(runs)
    return None if since is None or _born_of_drift(events, version) else since


def _born_of_drift(events: pd.DataFrame, version: int) -> bool:
    """Whether the retraining that made ``version`` ran on an outcome drift (:func:`judged_since_drift`)."""
    if events.empty:
        return False
    born = events[(events["kind"] == "retrained") & (events["version"] == version)]
    return any(DRIFT_FIGURE in json.loads(f) for f in born["figures"])


def settle_canary(cfg: Config, at: datetime) -> Settled | None:
    """The canary's verdict on its measured players, acted upon (None: no canary is running)."""
    from monitoring.experiment_report import add_pre_period, players_of
    from system_db.decision_log import DecisionLog
    from system_db.outcomes import Outcomes
    from training import registry

    version = canary_version(cfg)
    store = SystemStore(cfg.system_db_url)
    experiments = ExperimentStore(store)
    running = _running(experiments)
    if version is None or running is None or "challenger" not in running.shares:
        return None
    exposed = DecisionLog(store).read(experiment=running.name)
    outcomes = Outcomes(store).read()
    outcomes = outcomes[outcomes["experiment"] == running.name]
    mine = f"{cfg.training.model_name}/{version}"  # challenger rows the canary decided (not a champion stand-in)
    wrong = (exposed["variant"] == "challenger") & (exposed["model_version"] != mine)
    exposed = exposed[~wrong]
    outcomes = outcomes[outcomes["decision_id"].isin(exposed["decision_id"])]
    players, _ = players_of(outcomes, exposed)
    players = add_pre_period(cfg, players)
    r = cfg.retrain
    verdict = canary_verdict(players, running.shares, margin=r.canary_margin, min_players=r.canary_min_players)
    record = LoopRecord(store)
    waits = record.read_events()
    since = drift_unknown_to(record.read_runs(), waits, version)
    if since is not None:  # judged on a world that is gone: a retraining judged on the weeks since replaces it
        said = f"withdrawn: trained before the outcome drift found since {since:%Y-%m-%d} ({verdict.reason})"
        verdict = Verdict("roll back", said, verdict.figures)
    mine_waits = waits[(waits["kind"] == "canary_wait") & (waits["version"] == version)] if len(waits) else waits
    undecided = int(mine_waits["reason"].str.startswith("undecided").sum()) if len(mine_waits) else 0
    if verdict.action == "wait":  # waits for players do not count; waits with enough of them do
        undecided += int(verdict.reason.startswith("undecided"))
        if undecided >= r.canary_max_runs or len(mine_waits) + 1 >= 4 * r.canary_max_runs:
            said = f"no verdict after {len(mine_waits) + 1} runs ({verdict.reason})"
            verdict = Verdict("roll back", said, verdict.figures)
            verdict = undecided_after_drift(verdict, champion_drifted=r.promote_undecided_on_drift
                                            and _born_of_drift(waits, version))  # fmt: skip
    if verdict.action == "wait":
        record.event(at, "canary_wait", version, verdict.reason, verdict.figures)
        return Settled(version, verdict, running.name)
    name = cfg.training.model_name
    with registry.tracking(cfg):
        if verdict.action == "promote":  # a policy becomes champion; a fallback rule becomes the served one
            rule = registry.canary_rule(name, version)
            registry.set_alias(name, registry.CHAMPION if rule is None else registry.CHALLENGER, version)
        registry.remove_alias(name, registry.CANARY)
    after = without_challenger(running, f"{running.name.split('+', 1)[0]}+after-v{version}")
    if running.name.split("+", 1)[0] == "canary":
        experiments.stop(running.name, WHO, at)  # it existed only for the canary
        after_name = "none"
    else:
        _restart(experiments, running, after, at)
        after_name = after.name
    kind = "promoted" if verdict.action == "promote" else "rolled_back"
    record.event(at, kind, version, verdict.reason, verdict.figures)
    return Settled(version, verdict, after_name, since is not None)
