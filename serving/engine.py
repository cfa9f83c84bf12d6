"""The online decision engine: a player id in, a logged decision out. The HTTP service
(:mod:`serving.service`) is a thin layer over it, so the same engine runs behind BentoML and behind the
bare Starlette app of the benchmark.

Per call: the players' current status from the platform (self-excluded and blocked never get an offer,
whatever the snapshot said), their segment and candidacy from the latest segmentation, the last offer
from the decision log and the platform (frequency cap), their features from the online store through an
in-process cache, the model's scores, the policy (:mod:`serving.policy`), and the decision written to the
log before it is returned.

What is cached, for how long, and what invalidates it:

- a player's online features: ``serving.feature_cache_seconds`` (60 s), and all of them when the online
  store is materialised again (its as-of changes);
- the model: until the alias it was loaded by (champion; challenger with the registered fallback rule when
  no champion is trusted) points elsewhere, looked up every ``serving.model_poll_seconds``; the new model
  is loaded beside the old, which serves until the swap;
- the overrides and API keys: re-read every ``serving.overrides_poll_seconds`` (2 s);
- the segment-level decisions (the fallback for a player whose features cannot be read, and
  ``/v1/segments/{segment}/recommendation``): recomputed with each model.

When the online store cannot be read, a player gets its segment's decision, marked ``fallback``; when
the registry cannot be reached, the last loaded model keeps serving. :meth:`Engine.readiness` says what
is degraded.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa

from core.config import Config, PolicySettings
from core.errors import RekindleError
from scoring.heads import ArmPredictions
from serving.experiments import Experiment, ExperimentError, apply_variants, assign, from_definition, variant_arms
from serving.policy import NONE, Rows, arm_names, check_settings, decide, frequency_capped, rule_mask
from system_db.access import KeyRing, Role
from system_db.decision_log import DecisionLog, new_decision_id, response_json
from system_db.experiments import ExperimentStore
from system_db.overrides import Overrides, merged
from system_db.store import SystemStore
from training.arms import greedy_mask
from training.scorer import Scorer, Scores

POLICY_VERSION_PREFIX = "policy"
STATUSES = sa.text("SELECT id, status FROM players WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))


class UnknownPlayersError(RekindleError, LookupError):
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        super().__init__(
            f"unknown player id{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}: not on the platform"
        )


class UnknownSegmentError(RekindleError, LookupError):
    pass


class DecisionLogError(RekindleError, RuntimeError):
    """The decision log (system store) cannot be read or written: nothing is decided, so nothing is lost."""


class Ask(NamedTuple):
    """One player to decide for: the caller's request id (None: not idempotent), the caller (its key id),
    and whether to explain an offer with the top feature contributions (a few milliseconds a player: asked for,
    as the API does)."""

    player_id: int
    request_id: str | None
    caller: str
    explain: bool = False


@dataclass
class LoadedModel:
    scorer: Scorer
    version: str  # e.g. rekindle-response/3
    alias: str
    rule: dict[str, str] | None  # the fallback rule served when no champion is trusted
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)  # segment -> best arm and expected values


YOUNG_GC_THRESHOLD = 20_000  # objects; under load a worker then collects a few times a minute, a few ms each


def settle_heap(*, release: bool = False) -> None:
    """Collect once, then move every object alive now (modules, the model, the cache) out of the garbage
    collector's sight. A worker holds about half a million long-lived objects; a full collection walks them all
    (~0.3 s with the GIL held), and under load one came every few seconds: the p99 of every call behind it.
    ``release`` first returns the settled objects to the collector (after a model swap, so the old model's
    reference cycles can be freed).

    It also lets the young generation grow to :data:`YOUNG_GC_THRESHOLD` objects before a collection (700 by
    default): a call leaves a few hundred objects alive for a while (its request, its task, BentoML's timeout
    timer for it), so under load the default collected every few calls, ~3% of a worker's time, and pushed
    the short-lived survivors into the older generations, whose collections then came often (~6% more)."""
    if release:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Scored:
    """The model's per-arm predictions for some players (rows x arms), the ensemble's spread of each arm's
    incremental gains, their days since the last offer on the platform (at the online store's as-of), and
    what explaining an offer needs (their player block and per-event-type history columns)."""

    p_reengage: np.ndarray
    deposits: np.ndarray
    cost: np.ndarray
    days_since_last_offer: np.ndarray
    sd_net: np.ndarray
    sd_reengage: np.ndarray
    player: np.ndarray
    sources: np.ndarray

    def rows(self) -> np.ndarray:
        """One compact float32 row per player (about 0.6 KB in the cache with 15 arms)."""
        return np.hstack(
            [self.p_reengage, self.deposits, self.cost, self.days_since_last_offer[:, None], self.sd_net,
             self.sd_reengage, self.player, self.sources],
            dtype=np.float32,
        )  # fmt: skip

    @classmethod
    def from_rows(cls, rows: np.ndarray, k: int, n_player: int) -> Scored:
        r = rows.astype(np.float64)
        at = 3 * k + 1
        return cls(
            r[:, :k], r[:, k : 2 * k], r[:, 2 * k : 3 * k], r[:, 3 * k], r[:, at : at + k], r[:, at + k : at + 2 * k],
            rows[:, at + 2 * k : at + 2 * k + n_player], rows[:, at + 2 * k + n_player :],
        )  # fmt: skip

    @classmethod
    def of_frame(cls, scorer: Scorer, frame: pd.DataFrame) -> Scored:
        """Score an online frame: every arm, with the members' spread (one stacked matrix for all members)."""
        model = scorer.model
        player = model.design.player_block(frame)
        pred, spread = model.predict_all_arms_with_spread(frame, scorer.margin, player)
        days = (
            frame["days_since_last_offer"].to_numpy(np.float64)
            if "days_since_last_offer" in frame
            else np.full(len(frame), np.nan)
        )
        sources = model.design.source_columns()
        return cls(
            pred.p_reengage, pred.deposits, pred.cost, days, spread.net, spread.reengage, player,
            frame.reindex(columns=sources).to_numpy(np.float32, na_value=np.nan),
        )  # fmt: skip


Row = np.ndarray  # float32: a player's row of Scored


class ScoreCache:
    """player id -> (read at, model version, that player's row of :class:`Scored`): a TTL cache, bounded
    (least recently stored out first). What a player's online features give the model does not change
    until they are read again, so the predictions are what is kept: a hit costs no scoring at all."""

    def __init__(self, ttl: float, max_players: int = 500_000) -> None:
        self.ttl, self.max = ttl, max_players
        self.rows: OrderedDict[int, tuple[float, str, Row]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, ids: list[int], version: str) -> tuple[dict[int, Row], list[int]]:
        now, hit, miss = time.monotonic(), {}, []
        with self.lock:
            for p in ids:
                got = self.rows.get(p)
                if got is not None and got[1] == version and now - got[0] <= self.ttl:
                    hit[p] = got[2]
                else:
                    miss.append(p)
        return hit, miss

    def put(self, ids: list[int], version: str, scored: Scored) -> None:
        now = time.monotonic()
        with self.lock:
            for p, row in zip(ids, scored.rows(), strict=True):
                self.rows[p] = (now, version, row)
                self.rows.move_to_end(p)
            while len(self.rows) > self.max:
                self.rows.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.rows.clear()


class Engine:
    """Everything a worker needs to decide online. Thread-safe for concurrent calls."""

    def __init__(self, cfg: Config, *, load: bool = True) -> None:
        self.cfg = cfg
        self.store = SystemStore(cfg.system_db_url)
        self.log = DecisionLog(self.store)
        self.keys = KeyRing(self.store)
        self.overrides = Overrides(self.store)
        self.experiments = ExperimentStore(self.store)
        self.experiment: Experiment | None = None  # the running experiment, as last polled
        from platform_db.db import connect

        self.platform = connect(cfg.db_url)
        self.cache = ScoreCache(cfg.serving.feature_cache_seconds, cfg.serving.cache_players)
        self._prefetch_generation = 0
        self.prefetched = 0
        self.degraded: dict[str, str] = {}
        # set when a read of the online store fails: calls decide at the segment level at once instead of
        # each waiting out the store client's retries (seconds), until the polling thread reads it again
        self._online_down = False
        self.settings: PolicySettings = cfg.serving.policy
        self._overrides_version = ""
        self._hashes: dict[str, tuple[str, Role, str]] = {}
        self._polled = 0.0
        self._model_polled = 0.0
        self._lock = threading.Lock()
        self.online: Any = None
        self.model: LoadedModel | None = None
        self.canary: LoadedModel | None = None  # the canary model: an experiment's challenger variant decides with it
        self.roster = self._read_roster()
        if load:
            self._open_online()
            self.model = self._load_model()
            self.canary = self._load_canary()
            self.poll(force=True)
            settle_heap()
            self._start_prefetch()
            threading.Thread(target=self._keep_polling, name="rekindle-poll", daemon=True).start()

    # ------------------------------------------------------------ loading --
    def _read_roster(self) -> pd.DataFrame:
        seg = self.store.read_segments()
        if seg.empty:
            raise RekindleError("the system store holds no segmentation: run `rekindle segment` or `rekindle run`")
        self.roster_as_of = pd.Timestamp(seg["as_of"].iloc[0]).to_pydatetime()
        roster = seg.set_index("player_id")[["segment", "is_candidate", "status"]].sort_index()
        self._roster_ids = roster.index.to_numpy(np.int64)  # sorted: a call looks its players up by bisection
        codes, names = pd.factorize(roster["segment"].fillna("unknown").astype(str))
        self._roster_segment = codes
        self._segment_names = np.append(np.asarray(names, dtype=object), "unknown")  # the last: not segmented
        self._roster_candidate = roster["is_candidate"].fillna(False).astype(bool).to_numpy()
        return roster

    def _look_up(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Each player's segment ("unknown" if not segmented) and whether it is a dormant candidate."""
        want = np.asarray(ids, np.int64)
        at = np.minimum(np.searchsorted(self._roster_ids, want), max(len(self._roster_ids) - 1, 0))
        known = self._roster_ids[at] == want if len(self._roster_ids) else np.zeros(len(want), bool)
        names = self._segment_names
        segment = names[np.where(known, self._roster_segment[at], len(names) - 1)]
        return segment, known & self._roster_candidate[at]

    def _open_online(self) -> None:
        from features.online import OnlineFeatures

        try:
            self.online = OnlineFeatures(self.cfg)
            self.degraded.pop("online_store", None)
        except Exception as exc:  # the store down or not materialised: segment-level decisions until it is back
            self.online = None
            self.degraded["online_store"] = f"cannot open the online store: {str(exc).splitlines()[0]}"

    def _load_model(self) -> LoadedModel:
        from training import registry

        name = self.cfg.training.model_name
        with registry.tracking(self.cfg):
            version, alias, rule = served_version(name)
            model = registry.load_model(f"models:/{name}/{version}")
        scorer = Scorer(model, self.cfg.business.margin, self.cfg.training.objective)
        loaded = LoadedModel(scorer, f"{name}/{version}", alias, rule)
        loaded.segments = self._segment_table(loaded)
        return loaded

    def _load_canary(self) -> LoadedModel | None:
        from training import registry

        name = self.cfg.training.model_name
        with registry.tracking(self.cfg):
            version = registry.alias_version(name, registry.CANARY)
            if version is None:
                return None
            model = registry.load_model(f"models:/{name}/{version}")
            rule = registry.canary_rule(name, version)  # its fallback rule when it was canaried as one
        scorer = Scorer(model, self.cfg.business.margin, self.cfg.training.objective)
        loaded = LoadedModel(scorer, f"{name}/{version}", registry.CANARY, rule)
        loaded.segments = self._segment_table(loaded)  # its segment-level decisions when the online store is down
        return loaded

    def _segment_table(self, loaded: LoadedModel, sample: int = 2000) -> pd.DataFrame:
        """Per segment, the arm with the best mean expected gain over a sample of its candidates (or the
        fallback rule's arm), with the mean expected values: the decision for a player whose features cannot
        be read, and the answer of /v1/segments/{segment}/recommendation."""
        if self.online is None:
            return pd.DataFrame()
        cand = self.roster[self.roster["is_candidate"].astype(bool)]
        ids = cand.sample(min(sample, len(cand)), random_state=0).index.to_list() if len(cand) else []
        if not ids:
            return pd.DataFrame()
        frame = self.online.model_frame(ids, self.roster_as_of)
        frame["segment"] = cand.loc[ids, "segment"].to_numpy()
        s = loaded.scorer.score(frame)
        gain = s.gain(self.objective)
        names = arm_names(loaded.scorer.arms)
        out = []
        for seg, idx in frame.groupby("segment").indices.items():
            mean_gain = gain[idx].mean(axis=0)
            if loaded.rule is not None:
                col = names.index(loaded.rule.get(str(seg), loaded.rule.get("all", NONE)))
            else:
                allowed = s.allowed
                col = int(np.where(allowed, mean_gain, -np.inf)[1:].argmax() + 1)
                col = col if mean_gain[col] > 0 else 0
            order = np.argsort(-np.where(s.allowed, mean_gain, -np.inf))
            out.append(
                {
                    "segment": str(seg),
                    "players_sampled": len(idx),
                    "arm": names[col],
                    "column": col,
                    "expected_gain": float(mean_gain[col]),
                    "expected_cost": float(s.cost[idx, col].mean()),
                    "incremental_reengage": float(s.inc_reengage[idx, col].mean()),
                    "incremental_net_value": float(s.inc_net[idx, col].mean()),
                    "ranking": [(names[j], float(mean_gain[j])) for j in order[:5]],
                }
            )
        return pd.DataFrame(out).set_index("segment")

    @property
    def objective(self) -> Any:
        return self.settings.objective or self.cfg.training.objective

    # ------------------------------------------------------------ polling --
    def poll(self, *, force: bool = False) -> None:
        """Re-read overrides and keys (every few seconds) and where the model alias points (less often)."""
        now = time.monotonic()
        if force or now - self._polled >= self.cfg.serving.overrides_poll_seconds:
            self._polled = now
            try:
                version = self.overrides.version()
                if version != self._overrides_version:
                    settings = merged(self.cfg.serving.policy, self.overrides.read())
                    if self.model is not None:
                        check_settings(settings, self.model.scorer.arms)
                    self.settings, self._overrides_version = settings, version
                self._hashes = self.keys.hashes()
                running = self.experiments.running()
                self.experiment = from_definition(*running) if running is not None else None
                self.degraded.pop("system_store", None)
            except Exception as exc:
                self.degraded["system_store"] = f"cannot read overrides and keys: {str(exc).splitlines()[0]}"
            self._check_materialisation()
        if force or now - self._model_polled >= self.cfg.serving.model_poll_seconds:
            self._model_polled = now
            threading.Thread(target=self._refresh_model, daemon=True).start()

    def _check_materialisation(self) -> None:
        """A new materialisation of the online store: new features, so the cache and the segmentation go."""
        from features.materialize import read_marker

        online = self.online
        if online is None:
            return
        marker = read_marker(online.cfg)
        if marker is None or marker["as_of"] == online.as_of:
            return  # a materialisation in progress keeps the cache of the last complete one
        self._open_online()
        self.roster = self._read_roster()
        self.cache.clear()
        self._start_prefetch()

    def _start_prefetch(self) -> None:
        self._prefetch_generation += 1
        if self.cfg.serving.prefetch and self.online is not None and self.model is not None:
            threading.Thread(target=self._prefetch, args=(self._prefetch_generation,), daemon=True).start()

    def _prefetch(self, generation: int, chunk: int = 2000) -> None:
        """Read every candidate's online features ahead, in chunks, and cache the model's predictions, so a
        call for a dormant candidate finds them ready. Stops when the model or the materialisation changes."""
        model, online = self.model, self.online
        if model is None or online is None:
            return
        ids = self.roster.index[self.roster["is_candidate"].astype(bool).to_numpy()].to_numpy(np.int64)
        self.prefetched = 0
        for start in range(0, len(ids), chunk):
            if generation != self._prefetch_generation:
                return
            part = ids[start : start + chunk].tolist()
            try:
                frame = online.model_frame(part, online.as_of)
            except Exception:  # the store went away: calls read it themselves (or degrade) until it is back
                return
            self.cache.put(part, model.version, Scored.of_frame(model.scorer, frame))
            self.prefetched += len(part)
            time.sleep(0.01)  # let the calls in
        settle_heap()

    def _keep_polling(self) -> None:
        """Poll on the clock too, so an idle worker (or one whose callers keep to another) swaps as well."""
        period = min(self.cfg.serving.overrides_poll_seconds, self.cfg.serving.model_poll_seconds)
        while True:
            time.sleep(period)
            try:
                self.poll()
                self._probe_online()
            except Exception:  # polling again is the handling; poll() records what is degraded
                continue

    def _probe_online(self) -> None:
        """While the online store is marked down, read one candidate from it; back once that works."""
        online = self.online
        if not self._online_down or online is None or self.roster.empty:
            return
        try:
            online.model_frame([int(self.roster.index[0])], online.as_of)
        except Exception as exc:
            self.degraded["online_store"] = f"cannot read the online store: {str(exc).splitlines()[0]}"
            return
        self._online_down = False
        self.degraded.pop("online_store", None)

    def _refresh_model(self) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            from training import registry

            name = self.cfg.training.model_name
            with registry.tracking(self.cfg):
                version, alias, _ = served_version(name)
                canary = registry.alias_version(name, registry.CANARY)
            now = self.model
            if now is None or now.version != f"{name}/{version}" or now.alias != alias:
                self.model = self._load_model()
                settle_heap(release=True)  # the old model's cycles go, the new model's objects settle
                self.cache.clear()
                self._start_prefetch()
            if (canary is None) != (self.canary is None) or (
                self.canary is not None and self.canary.version != f"{name}/{canary}"
            ):
                self.canary = self._load_canary()
            if self.online is None:
                self._open_online()
            self.degraded.pop("registry", None)
        except Exception as exc:  # the registry unreachable: the last model keeps serving
            self.degraded["registry"] = f"cannot reach the model registry: {str(exc).splitlines()[0]}"
        finally:
            self._lock.release()

    def key_hashes(self) -> dict[str, tuple[str, Role, str]]:
        """The active keys' hashes as last polled (every ``serving.overrides_poll_seconds``, by the polling
        thread and each decision): reading them does no I/O, so the event loop can check a key."""
        return self._hashes

    def readiness(self) -> dict[str, Any]:
        return {
            "ready": self.model is not None,
            "model_version": self.model.version if self.model else None,
            "model_alias": self.model.alias if self.model else None,
            "fallback_rule": self.model.rule if self.model else None,
            "policy_version": self.policy_version,
            "online_store_as_of": self.online.as_of.isoformat() if self.online is not None else None,
            "cache": {"players": len(self.cache.rows), "prefetched": self.prefetched},
            "degraded": dict(self.degraded),
        }

    @property
    def policy_version(self) -> str:
        return f"{POLICY_VERSION_PREFIX}-{self._overrides_version or 0}"

    # ----------------------------------------------------------- deciding --
    def _statuses(self, ids: list[int]) -> dict[int, str]:
        """The platform's current status of these players (absent: not on the platform)."""
        with self.platform.connect() as conn:
            rows = conn.execute(STATUSES, {"ids": ids}).fetchall()
        return {int(i): str(s) for i, s in rows}

    def _scores(self, ids: list[int], model: LoadedModel, at: datetime) -> tuple[Scored | None, str]:
        """The predictions for these players: from the cache, else from their online features (one read for
        all the misses). None, and why, when the online store cannot be read."""
        k = len(model.scorer.arms)
        if not ids:
            empty = np.zeros(
                (0, len(model.scorer.arms) * 5 + 1 + n_player(model) + len(model.scorer.design.source_columns()))
            )
            return Scored.from_rows(empty, k, n_player(model)), ""
        hit, miss = self.cache.get(ids, model.version)
        if miss:
            if self.online is None or self._online_down:
                return None, self.degraded.get("online_store", "the online store is not open")
            try:
                frame = self.online.model_frame(miss, at)
                self.degraded.pop("online_store", None)
            except Exception as exc:
                self.degraded["online_store"] = f"cannot read the online store: {str(exc).splitlines()[0]}"
                self._online_down = True
                return None, self.degraded["online_store"]
            fresh = Scored.of_frame(model.scorer, frame)
            self.cache.put(miss, model.version, fresh)
            hit.update(zip(miss, fresh.rows(), strict=True))
        return Scored.from_rows(np.stack([hit[p] for p in ids]), k, n_player(model)), ""

    def recommend(self, requests: list[Ask]) -> list[dict[str, Any] | Exception]:
        """One decision per request, logged before it is returned; a request id its
        caller already used returns the stored decision; a player the platform does not have gets an
        :class:`UnknownPlayersError` in its place (the others are decided)."""
        self.poll()
        model = self.model
        if model is None:
            raise RekindleError("no model is loaded")
        try:
            answers = self._recommend(requests, model)
        except sa.exc.DBAPIError as exc:  # a decision is announced only once it is logged: none this time
            self.degraded["decision_log"] = f"cannot use the decision log: {str(exc.orig).splitlines()[0]}"
            raise DecisionLogError(
                f"the decision log cannot be written ({str(exc.orig).splitlines()[0]}); nothing was decided: "
                "retry with the same request_id"
            ) from None
        self.degraded.pop("decision_log", None)
        return [answers[i] for i in range(len(requests))]

    def _recommend(self, requests: list[Ask], model: LoadedModel) -> dict[int, dict[str, Any] | Exception]:
        answers: dict[int, dict[str, Any] | Exception] = {}
        found = self.log.find_many([(a.caller, a.request_id) for a in requests if a.request_id is not None])
        todo = []
        for i, (_pid, rid, caller, _explain) in enumerate(requests):
            if rid is not None and (caller, rid) in found:
                answers[i] = _stored(found[(caller, rid)])
            else:
                todo.append(i)
        status = self._statuses(sorted({int(requests[i][0]) for i in todo})) if todo else {}
        for i in [i for i in todo if int(requests[i][0]) not in status]:
            answers[i] = UnknownPlayersError([int(requests[i][0])])
        todo = [i for i in todo if i not in answers]
        experiment, canary = self.experiment, self.canary
        if todo and experiment is not None and "challenger" in experiment.shares:
            ids = np.array([int(requests[i][0]) for i in todo], np.int64)
            on_canary = assign(ids, experiment) == "challenger"
            if canary is None:  # its players get the champion meanwhile (the verdict leaves their rows out)
                self.degraded["canary"] = f"experiment {experiment.name} has a challenger variant but no canary model"
            else:
                self.degraded.pop("canary", None)
            if canary is not None and on_canary.any():
                mine = [i for i, c in zip(todo, on_canary, strict=True) if c]
                self._decide([requests[i] for i in mine], status, canary, answers, mine)
                todo = [i for i, c in zip(todo, on_canary, strict=True) if not c]
        if todo:
            self._decide([requests[i] for i in todo], status, model, answers, todo)
        return answers

    def _decide(
        self,
        requests: list[Ask],
        status: dict[int, str],
        model: LoadedModel,
        answers: dict[int, dict[str, Any] | Exception],
        slots: list[int],
    ) -> None:
        ids = [int(r[0]) for r in requests]
        explain = np.array([r.explain for r in requests], bool)
        at = now_utc()
        settings = self.settings
        segment, candidate = self._look_up(ids)
        blocked = np.full(len(ids), "", dtype=object)
        st = np.array([status[p] for p in ids], dtype=object)
        not_active = st != "active"
        blocked[not_active] = [f"status {s}: never offered" for s in st[not_active]]
        not_cand = ~not_active & ~candidate
        blocked[not_cand] = f"not a dormant candidate in the segmentation of {self.roster_as_of:%Y-%m-%dT%H:%M}"

        need = np.flatnonzero(blocked == "")
        scored, why = self._scores([ids[j] for j in need], model, at)
        k = len(model.scorer.arms)
        p_re, dep, cost = np.zeros((len(ids), k)), np.zeros((len(ids), k)), np.zeros((len(ids), k))
        sd = np.zeros((len(ids), k))
        platform_days = np.full(len(ids), np.inf)
        if scored is not None:
            p_re[need], dep[need], cost[need] = scored.p_reengage, scored.deposits, scored.cost
            sd[need] = scored.sd_net if self.objective == "net_value" else scored.sd_reengage
            since = (at - self.online.as_of).total_seconds() / 86400 if self.online is not None else 0.0
            platform_days[need] = np.nan_to_num(scored.days_since_last_offer + since, nan=np.inf)
        if settings.frequency_cap_days > 0:
            last = self.log.last_offers(sorted(set(ids)))
            ours = np.array([(at - last[p]).total_seconds() / 86400 if p in last else np.inf for p in ids])
            capped = frequency_capped(platform_days, ours, settings.frequency_cap_days)
            blocked = np.where(blocked == "", capped, blocked)
        frame = None if scored is None else True  # whether the model's predictions are there
        point = ArmPredictions(model.scorer.arms, p_re, dep, cost)
        names = arm_names(model.scorer.arms)
        k = len(names)
        fallback = np.zeros(len(ids), bool)
        if frame is not None:
            s = Scores(model.scorer.arms, point, model.scorer.margin)
            gain, cost, inc_net, inc_re = s.gain(self.objective), s.cost, s.inc_net, s.inc_reengage
            p_none = np.where(blocked == "", p_re[:, 0], np.nan)
        else:  # the segment's decision for everyone
            gain, cost, inc_net, inc_re = (np.zeros((len(ids), k)) for _ in range(4))
            p_none = np.full(len(ids), np.nan)
            fallback[:] = blocked == ""
        shown = gain  # the model's own gains, for the runners-up
        forced = None
        if model.rule is not None or frame is None:  # the fallback rule, or the segment's decision
            rule = model.rule or {}
            table_arm = model.segments["arm"].to_dict() if not model.segments.empty else {}
            chosen = {
                seg: str(table_arm.get(seg, NONE)) if frame is None else rule.get(seg, rule.get("all", NONE))
                for seg in set(segment)
            }
            forced = np.array([names.index(chosen[g]) if chosen[g] in names else 0 for g in segment], np.int64)
            if frame is None and not model.segments.empty:  # the segment's mean expected values of its arm
                known = pd.Index(segment).isin(model.segments.index)
                table = model.segments.reindex(segment)
                at_arm = (np.flatnonzero(known), forced[known])
                for target, col in ((gain, "expected_gain"), (cost, "expected_cost"),
                                    (inc_net, "incremental_net_value"), (inc_re, "incremental_reengage")):  # fmt: skip
                    target[at_arm] = table[col].to_numpy(float)[known]
        if frame is None:  # no exploration on segment-level decisions: their propensity is 1
            settings = settings.model_copy(update={"exploration": 0.0})
        rows = Rows(np.asarray(ids, np.int64), segment, blocked)
        d = decide(
            gain, cost, inc_net, model.scorer.arms, rows, settings, np.random.default_rng(),
            objective=self.objective, forced=forced,
        )  # fmt: skip
        experiment, variant = self.experiment, np.full(len(ids), None, dtype=object)
        if experiment is not None:
            assigned = assign(rows.player_id, experiment)
            try:
                codes = variant_arms(assigned, segment, experiment, names)
            except ExperimentError as exc:  # made for another model's arms: this one decides alone
                self.degraded["experiment"] = str(exc)
                experiment = None
            else:
                self.degraded.pop("experiment", None)
                variant = assigned
                allowed = rule_mask(model.scorer.arms, segment.astype(str), settings)
                d = apply_variants(d, variant, codes, allowed, blocked == "", np.random.default_rng(), experiment,
                                   names, inc_re, cost, segment)  # fmt: skip

        arms = model.scorer.arms
        event = arms["event_type"].astype(str).to_numpy()
        reward = arms["reward"].to_numpy(np.int64)
        sure = self._confidence(shown, sd, d.arm, d.runners_up, fallback | (blocked != ""))
        reasons = self._reasons(model, scored, need, d.arm, fallback, explain)
        made: list[dict[str, Any]] = []
        rows_log: list[dict[str, Any]] = []
        for n_, _slot in enumerate(slots):
            a = int(d.arm[n_])
            cost_a = float(cost[n_, a]) if a else 0.0
            net_a = float(inc_net[n_, a]) if a else 0.0
            decision = {
                "decision_id": new_decision_id(),
                "player_id": ids[n_],
                "segment": str(segment[n_]),
                "event_type": str(event[a]),
                "reward": int(reward[a]),
                "offer": a > 0,
                "expected": {
                    "incremental_reengage": round(float(inc_re[n_, a]) if a else 0.0, 5),
                    "p_reengage_no_offer": None if np.isnan(p_none[n_]) or blocked[n_] else round(float(p_none[n_]), 5),
                    "cost": round(cost_a),
                    "incremental_net_value": round(net_a),
                    "roi": round(net_a / cost_a, 3) if cost_a > 0 else None,
                },
                "confidence": None if np.isnan(sure[n_, 0]) else round(float(sure[n_, 0]), 4),
                "reasons": reasons.get(n_, []),
                "runners_up": [
                    {
                        "arm": names[r],
                        "expected_gain": round(float(shown[n_, r]), 2),
                        "lost_by": round(float(shown[n_, a] - shown[n_, r]), 2),
                        "expected": {
                            "incremental_reengage": round(float(inc_re[n_, r]), 5),
                            "cost": round(float(cost[n_, r])),
                            "incremental_net_value": round(float(inc_net[n_, r])),
                            "roi": round(float(inc_net[n_, r] / cost[n_, r]), 3) if cost[n_, r] > 0 else None,
                        },
                        "confidence": None if np.isnan(sure[n_, 1 + i_]) else round(float(sure[n_, 1 + i_]), 4),
                    }
                    for i_, r in enumerate(d.runners_up[n_])
                    if r >= 0 and not fallback[n_] and not blocked[n_]
                ],
                "propensity": round(float(d.propensity[n_]), 6),
                "explored": bool(d.explored[n_]),
                "holdout": bool(d.holdout[n_]),
                "experiment": experiment.name if experiment is not None else None,
                "variant": variant[n_],
                "fallback": bool(fallback[n_]),
                "reason": str(d.reason[n_]) + (f" (segment-level decision: {why})" if fallback[n_] else ""),
                "model_version": model.version,
                "policy_version": self.policy_version,
                "decided_at": at.isoformat(timespec="milliseconds") + "Z",
                "request_id": requests[n_][1],
            }
            inc_re_a = float(inc_re[n_, a]) if a else 0.0
            made.append(decision)
            would = str(names[d.would[n_]])
            rows_log.append(self._log_row(decision, requests[n_][2], cost_a, net_a, inc_re_a, at, would))
        over = "no offer: today's reward budget is spent"
        cuts = [_cut(decision, over) for decision in made]
        logged = self.log.write_all(
            rows_log, budget=settings.daily_budget, day=at.date(), over_budget=over,
            cut_responses=[response_json(c) for c in cuts],
        )  # fmt: skip
        for i, decision, cut, done in zip(slots, made, cuts, logged, strict=True):
            if not done.created:  # a retry racing its twin: the twin's decision
                answers[i] = _stored(done.row)
            else:
                answers[i] = cut if done.row["event_type"] != decision["event_type"] else decision

    @staticmethod
    def _confidence(
        gain: np.ndarray, sd: np.ndarray, chosen: np.ndarray, runners_up: np.ndarray, unscored: np.ndarray
    ) -> np.ndarray:
        """Per row, the confidence of the chosen arm and of each runner-up (columns 1..): P(the arm's expected
        gain is right in sign) under the ensemble's spread; for no offer, P(the best offer would lose). NaN
        where the model did not judge (a blocked or segment-level decision)."""
        from training.ensemble import confidence

        n, k = gain.shape
        rows = np.arange(n)
        best_offer = gain[:, 1:].argmax(axis=1) + 1 if k > 1 else np.zeros(n, np.int64)
        out = np.full((n, 1 + runners_up.shape[1]), np.nan)
        for c, arm in enumerate([chosen, *runners_up.T]):
            arm = np.asarray(arm, np.int64)
            valid = arm >= 0
            judged = np.where(arm > 0, arm, best_offer)
            got = confidence(gain[rows, judged], sd[rows, judged], arm > 0)
            out[:, c] = np.where(valid & ~unscored, got, np.nan)
        return out

    @staticmethod
    def _reasons(
        model: LoadedModel,
        scored: Scored | None,
        need: np.ndarray,
        chosen: np.ndarray,
        fallback: np.ndarray,
        explain: np.ndarray,
    ) -> dict[int, list[dict[str, Any]]]:
        """The top feature contributions to the offer's lift in re-engagement, for the offers the model made
        (:mod:`serving.reasons`), for the rows asked to be explained."""
        from serving.reasons import top_contributions

        if scored is None or not len(need):
            return {}
        pick = chosen[need]
        keep = (pick > 0) & ~fallback[need] & explain[need]
        if not keep.any():
            return {}
        ensemble = model.scorer.model
        kept = scored.sources[keep]
        sources = {c: kept[:, j] for j, c in enumerate(ensemble.design.source_columns())}
        contrib, matrix = ensemble.uplift_contributions(scored.player[keep], sources, pick[keep])
        explained = top_contributions(ensemble.design, contrib, matrix)
        return dict(zip(need[keep].tolist(), explained, strict=True))

    @staticmethod
    def _log_row(
        decision: dict[str, Any], caller: str, cost: float, net: float, inc_re: float, at: datetime, would: str
    ) -> dict[str, Any]:
        return {
            "decision_id": decision["decision_id"], "caller": caller, "request_id": decision["request_id"],
            "player_id": decision["player_id"], "decided_at": at, "source": "online", "segment": decision["segment"],
            "event_type": decision["event_type"], "reward": decision["reward"], "propensity": decision["propensity"],
            "explored": decision["explored"], "holdout": decision["holdout"], "fallback": decision["fallback"],
            "reason": decision["reason"][:300], "expected_cost": cost, "incremental_net_value": net,
            "incremental_reengage": inc_re, "model_version": decision["model_version"],
            "policy_version": decision["policy_version"], "response": response_json(decision), "policy_arm": would,
            "experiment": decision["experiment"], "variant": decision["variant"],
        }  # fmt: skip

    def preview(self, player_id: int) -> dict[str, Any]:
        """What the policy would choose for ``player_id`` now, and why, without deciding: nothing is logged and
        no exploration is drawn (the dashboard's look-up). Every arm with its expected values, ranked by the
        objective's gain, and whether the rules allow it; the features behind the best offer."""
        self.poll()
        model = self.model
        if model is None:
            raise RekindleError("no model is loaded")
        status = self._statuses([player_id])
        if player_id not in status:
            raise UnknownPlayersError([player_id])
        segment, candidate = self._look_up([player_id])
        at = now_utc()
        blocked = "" if status[player_id] == "active" else f"status {status[player_id]}: never offered"
        if not blocked and not candidate[0]:
            blocked = f"not a dormant candidate in the segmentation of {self.roster_as_of:%Y-%m-%dT%H:%M}"
        scored, why = self._scores([player_id], model, at)
        if scored is None:
            raise RekindleError(f"the player's features cannot be read now ({why}): the service decides at the "
                                "segment level meanwhile")  # fmt: skip
        settings = self.settings
        if not blocked and settings.frequency_cap_days > 0:
            last = self.log.last_offers([player_id])
            ours = np.array([(at - last[player_id]).total_seconds() / 86400 if player_id in last else np.inf])
            since = (at - self.online.as_of).total_seconds() / 86400 if self.online is not None else 0.0
            days = np.nan_to_num(scored.days_since_last_offer + since, nan=np.inf)
            blocked = str(frequency_capped(days, ours, settings.frequency_cap_days)[0])
        arms = model.scorer.arms
        names = arm_names(arms)
        s = Scores(arms, ArmPredictions(arms, scored.p_reengage, scored.deposits, scored.cost), model.scorer.margin)
        gain = s.gain(self.objective)
        forced = None
        if model.rule is not None:
            rule = model.rule.get(str(segment[0]), model.rule.get("all", NONE))
            forced = np.array([names.index(rule) if rule in names else 0], np.int64)
        rows = Rows(np.array([player_id], np.int64), segment, np.array([blocked], dtype=object))
        quiet = settings.model_copy(update={"exploration": 0.0})
        d = decide(gain, s.cost, s.inc_net, arms, rows, quiet, np.random.default_rng(0), objective=self.objective,
                   forced=forced)  # fmt: skip
        notes, variant = [], None
        experiment = self.experiment
        if experiment is not None:  # the player's variant decides, as in serving
            assigned = assign(rows.player_id, experiment)
            try:
                codes = variant_arms(assigned, segment, experiment, names)
            except ExperimentError as exc:
                notes.append(f"experiment {experiment.name} does not fit this model ({exc}): the model decides alone")
            else:
                variant = str(assigned[0])
                mask = rule_mask(arms, segment.astype(str), quiet)
                d = apply_variants(d, assigned, codes, mask, rows.blocked == "", np.random.default_rng(0), experiment,
                                   names, s.inc_reengage, s.cost, segment)  # fmt: skip
                notes.append(f"in experiment {experiment.name}, variant {variant}")
                if variant == "challenger" and self.canary is not None:
                    notes.append(f"serving decides this variant with the canary model {self.canary.version}; "
                                 "the arms below are the served model's")  # fmt: skip
        if settings.daily_budget is not None and d.arm[0] > 0:
            spent = self.log.spent(at.date())
            if spent + float(s.cost[0, d.arm[0]]) > settings.daily_budget:
                notes.append(f"today's online budget is spent ({spent:,.0f} of {settings.daily_budget:,.0f} KRW): "
                             "an online call would get no offer")  # fmt: skip
        allowed = rule_mask(arms, segment.astype(str), settings)[0] & greedy_mask(arms)
        offers = np.flatnonzero(allowed[1:]) + 1
        best = int(offers[np.argmax(gain[0, offers])]) if len(offers) else 0
        explained = int(d.arm[0]) or best
        reasons = self._reasons(model, scored, np.array([0]), np.array([explained]), np.array([False]),
                                np.array([True])).get(0, [])  # fmt: skip
        cost, net, lift = s.cost[0], s.inc_net[0], s.inc_reengage[0]
        ranked = [
            {"arm": names[j], "allowed": bool(allowed[j]) or j == 0, "expected_gain": float(gain[0, j]),
             "p_reengage": float(s.point.p_reengage[0, j]), "incremental_reengage": float(lift[j]),
             "cost": float(cost[j]), "incremental_net_value": float(net[j]),
             "roi": float(net[j] / cost[j]) if cost[j] > 0 else None}
            for j in np.argsort(-gain[0], kind="stable")
        ]  # fmt: skip
        return {
            "player_id": player_id, "segment": str(segment[0]), "status": status[player_id],
            "arm": names[int(d.arm[0])], "reason": str(d.reason[0]), "holdout": bool(d.holdout[0]),
            "explained_arm": names[explained] if explained else None, "reasons": reasons, "arms": ranked,
            "objective": self.objective, "model_version": model.version, "policy_version": self.policy_version,
            "experiment": None if experiment is None else experiment.name, "variant": variant, "notes": notes,
        }  # fmt: skip

    def segment_recommendation(self, segment: str) -> dict[str, Any]:
        model = self.model
        if model is None or model.segments.empty:
            raise UnknownSegmentError(
                "no segment-level decisions: the online store was not readable when the model loaded"
            )
        if segment not in model.segments.index:
            raise UnknownSegmentError(f"unknown segment {segment!r}; expected one of {sorted(model.segments.index)}")
        r: dict[Any, Any] = model.segments.loc[segment].to_dict()
        return {
            "segment": segment,
            "arm": r["arm"],
            "players_sampled": int(r["players_sampled"]),
            "expected": {
                "gain": round(float(r["expected_gain"]), 2),
                "cost": round(float(r["expected_cost"])),
                "incremental_reengage": round(float(r["incremental_reengage"]), 5),
                "incremental_net_value": round(float(r["incremental_net_value"])),
            },
            "best_arms": [{"arm": a, "expected_gain": round(g, 2)} for a, g in r["ranking"]],
            "fallback_rule": model.rule is not None,
            "model_version": model.version,
        }


def n_player(model: LoadedModel) -> int:
    d = model.scorer.design
    return len(d.columns) - len(d.arm_columns)


def preflight(cfg: Config) -> str:
    """What ``rekindle serve`` checks before it starts workers, failing with a clear error: a segmentation,
    a materialised online store and a model to serve. Returns what will be served."""
    from features.layout import layout
    from features.materialize import read_marker
    from training import registry

    seg = SystemStore(cfg.system_db_url).read_segments()
    if seg.empty:
        raise RekindleError("the system store holds no segmentation: run `rekindle segment` or `rekindle run`")
    if not layout(cfg).manifest_path.is_file() or read_marker(cfg) is None:
        raise RekindleError("the online store is not materialised: run `rekindle features materialize`")
    name = cfg.training.model_name
    with registry.tracking(cfg):
        version, _, rule = served_version(name)
    if rule is None:
        return f"model {name}/{version} (champion)"
    return f"no champion: model {name}/{version} (challenger) with its fallback rule {json.dumps(rule)}"


def served_version(name: str) -> tuple[int, str, dict[str, str] | None]:
    """(version, alias, fallback rule) of what serving serves: the champion (no rule), else the challenger with
    the fallback rule its training registered. Inside :func:`training.registry.tracking`."""
    from training import registry

    version = registry.alias_version(name, registry.CHAMPION)
    if version is not None:
        return version, registry.CHAMPION, None
    version = registry.alias_version(name, registry.CHALLENGER)
    if version is None:
        raise RekindleError(f"no version of {name} is champion or challenger: run `rekindle train`")
    tag = registry.version_tag(name, version, registry.FALLBACK_TAG)
    if not tag:
        raise RekindleError(
            f"no champion of {name}, and challenger v{version} has no fallback rule: run `rekindle train`"
        )
    return version, registry.CHALLENGER, json.loads(tag)


def _cut(decision: dict[str, Any], reason: str) -> dict[str, Any]:
    """The decision as the budget leaves it: no offer."""
    expected = {**decision["expected"], "cost": 0, "incremental_net_value": 0, "roi": None, "incremental_reengage": 0.0}
    return {**decision, "event_type": NONE, "reward": 0, "offer": False, "reason": reason, "explored": False,
            "propensity": 1.0, "expected": expected, "runners_up": []}  # fmt: skip


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["response"]) if row.get("response") else {
        "decision_id": row["decision_id"], "player_id": int(row["player_id"]), "event_type": row["event_type"],
        "reward": int(row["reward"]), "reason": row["reason"], "propensity": row["propensity"],
    }  # fmt: skip
