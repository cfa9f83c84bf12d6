"""Typed configuration loaded from the YAML files under ``configs/``.

Nothing is read at import time: :func:`load_config` reads the files, applies
environment variables and explicit overrides (CLI flags), and validates the
result once. Inside the system the returned objects are trusted.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import RekindleError

CONFIG_ENV = "REKINDLE_CONFIG"
HOME_ENV = "REKINDLE_HOME"
DB_ENV = "REKINDLE_DB_URL"


class ConfigError(RekindleError, ValueError):
    """A configuration file or override is missing or invalid."""


def positive_increasing(name: str, v: list[int]) -> list[int]:
    if any(x <= 0 for x in v) or sorted(set(v)) != v:
        raise ValueError(f"{name} must be positive and strictly increasing, got {v}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- business --
class Business(_Strict):
    dormancy_days: int = Field(14, ge=1)
    attribution_days: int = Field(7, ge=1)
    margin: float = Field(0.3, gt=0, le=1)
    time_zone: str = "Asia/Seoul"  # the platform's: the dashboard shows its dates there (stored times are UTC)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; expected an IANA name such as 'Asia/Seoul' or 'UTC'") from None
        return v


class Feedback(_Strict):
    """``rekindle feedback``: how decisions are matched to what the platform did (docs/feedback.md)."""

    send_within_hours: float = Field(48, gt=0)  # an offer sent later than this after its decision is not its send
    chunk_decisions: int = Field(200_000, ge=1)  # decisions measured (and committed) at a time


class Monitor(_Strict):
    """``rekindle monitor``: what raises an alert and triggers retraining (docs/monitoring.md)."""

    window: int = Field(5000, ge=100)  # rows per side of each drift comparison (fixed-size windows)
    drift_share: float = Field(0.3, gt=0, le=1)  # alert when more than this share of the features drift
    threshold_factor: float = Field(2.0, ge=1)  # a feature drifts beyond this x its largest week-to-week distance
    reengage_z: float = Field(3.0, gt=0)  # realised re-engagement below predicted by this many standard errors...
    reengage_ratio_floor: float = Field(0.6, gt=0, lt=1)  # ... and below this share of it: the outcomes drifted
    roi_floor: float = Field(0.8, ge=0, le=1)  # pooled ROI accuracy of the recent reliable cells below this: alert
    recent_weeks: int = Field(4, ge=1)  # the weeks of outcomes the ROI accuracy is judged on
    webhook: str | None = None  # POSTed a JSON alert when set


class Retrain(_Strict):
    """``rekindle retrain``: the challenger, the canary and its verdict (docs/monitoring.md)."""

    canary_share: float = Field(0.2, gt=0, lt=1)  # of the policy's players, decided by the canary model
    canary_margin: float = Field(0.1, ge=0)  # not worse: the interval's lower end above -margin x |champion's value|
    canary_min_players: int = Field(500, ge=10)  # measured players per side before a verdict
    canary_max_runs: int = Field(3, ge=1)  # verdicts without a decision before the canary is rolled back
    promote_undecided_on_drift: bool = True  # ... unless the champion drifted and the canary measured no worse


# ---------------------------------------------------------------- catalog --
def _unique_names(items: list[Any], what: str) -> None:
    names = [e.name for e in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate event types in {what}: {dupes}")


def non_negative_increasing(name: str, v: list[int]) -> list[int]:
    if any(x < 0 for x in v) or sorted(set(v)) != v:
        raise ValueError(f"{name} must be non-negative and strictly increasing (0: a message without reward), got {v}")
    return v


class CatalogEventType(_Strict):
    """What the user says about one of the platform's event types (or a new one). Every field but the
    name is optional: what is not given comes from the platform's history."""

    name: str = Field(min_length=1)
    rewards: list[int] | None = None  # the type's arms: history rewards among these, plus sizes inside its range
    requires_deposit: bool | None = None
    min_deposit: int | None = Field(None, ge=0)
    payout_ratio: float | None = Field(None, gt=0, le=1)  # share of the reward paid when claimed
    game: str | None = None
    claim_rate: float | None = Field(None, gt=0, le=1)
    new: bool = False  # never offered on this platform: served only through exploration until it has support

    @field_validator("rewards")
    @classmethod
    def _rewards(cls, v: list[int] | None) -> list[int] | None:
        return None if v is None else non_negative_increasing("rewards", v)

    @model_validator(mode="after")
    def _new_needs_rewards(self) -> CatalogEventType:
        if self.new and not self.rewards:
            raise ValueError(f"event type {self.name!r} is new: give its rewards (e.g. rewards: [0] for a message)")
        return self


class Catalog(_Strict):
    """The user's catalog of the platform's event types: it restricts, prices and describes the arms the
    history shows, and adds new event types (docs/training.md). Optional: without it, the history alone."""

    event_types: list[CatalogEventType] = Field(min_length=1)

    @field_validator("event_types")
    @classmethod
    def _unique(cls, v: list[CatalogEventType]) -> list[CatalogEventType]:
        _unique_names(v, "the catalog")
        return v

    def get(self, name: str) -> CatalogEventType | None:
        return next((e for e in self.event_types if e.name == name), None)


class SimEventType(_Strict):
    """An event type of the simulated platform, with the attributes its response model needs."""

    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    rewards: list[int] = Field(min_length=1)
    requires_deposit: bool = False
    min_deposit: int | None = Field(None, gt=0)
    payout_ratio: float = Field(1.0, gt=0, le=1)
    game: str | None = None
    claim_rate: float = Field(0.8, gt=0, le=1)

    @field_validator("rewards")
    @classmethod
    def _non_negative_increasing(cls, v: list[int]) -> list[int]:
        return non_negative_increasing("rewards", v)

    @model_validator(mode="after")
    def _deposit_rule(self) -> SimEventType:
        if self.requires_deposit and self.min_deposit is None:
            raise ValueError(f"event type {self.name!r} requires a deposit but has no min_deposit")
        return self


class SimulatorCatalog(_Strict):
    """The event types the simulator's marketers send (configs/simulator_catalog.yaml). It belongs to the
    simulated platform: training and serving take their arms from the platform's history."""

    event_types: list[SimEventType] = Field(min_length=1)

    @field_validator("event_types")
    @classmethod
    def _unique(cls, v: list[SimEventType]) -> list[SimEventType]:
        _unique_names(v, "the simulator's catalog")
        return v

    def arms(self) -> list[tuple[str, int]]:
        """Every (event type, reward) pair of the catalog, in catalog order."""
        return [(e.name, r) for e in self.event_types for r in e.rewards]

    def get(self, name: str) -> SimEventType:
        for e in self.event_types:
            if e.name == name:
                return e
        raise KeyError(f"unknown event type {name!r}; the catalog has {[e.name for e in self.event_types]}")


# ------------------------------------------------------------ segmentation --
class Stage(_Strict):
    name: str
    min_days: int = Field(ge=0)


class ValueTier(_Strict):
    name: str
    min_deposits: int = Field(ge=0)


class BonusHunterRule(_Strict):
    min_claims: int = Field(2, ge=1)
    min_bonus_ratio: float = Field(0.5, ge=0)


class ExternalSegments(_Strict):
    url: str | None = None
    table: str | None = None
    player_column: str = "player_id"
    segment_column: str = "segment"


class Segmentation(_Strict):
    source: Literal["computed", "external"] = "computed"
    stages: list[Stage]
    value_tiers: list[ValueTier]
    bonus_hunter: BonusHunterRule = BonusHunterRule()
    external: ExternalSegments = ExternalSegments()

    @model_validator(mode="after")
    def _ordered(self) -> Segmentation:
        for label, bounds in (
            ("stages.min_days", [s.min_days for s in self.stages]),
            ("value_tiers.min_deposits", [t.min_deposits for t in self.value_tiers]),
        ):
            if not bounds or sorted(set(bounds)) != bounds:
                raise ValueError(f"{label} must be non-empty and strictly increasing, got {bounds}")
        if self.value_tiers[0].min_deposits != 0:
            raise ValueError("the first value tier must start at min_deposits: 0")
        if self.source == "external" and not self.external.table:
            raise ValueError("segmentation.source is 'external' but segmentation.external.table is not set")
        return self


# ---------------------------------------------------------------- features --
class FeastStore(_Strict):
    """Where Feast keeps its registry, offline and online stores (see docs/features.md)."""

    mode: Literal["embedded", "production"] = "embedded"
    project: str = Field("rekindle", pattern=r"^[a-z][a-z0-9_]*$")
    # production: the PostgreSQL database holding the registry and the offline feature tables
    # (null -> the system database, which must then be PostgreSQL)
    postgres_url: str | None = None
    registry_schema: str = Field("feast", pattern=r"^[a-z_][a-z0-9_]*$")
    offline_schema: str = Field("features", pattern=r"^[a-z_][a-z0-9_]*$")
    redis: str = "127.0.0.1:6379,db=0"  # Feast's connection string: host:port[,db=N][,password=...]


class Features(_Strict):
    # null: the platform's own, found by `features build` (games with 1%+ of the sessions, event types offered)
    games: list[str] | None = None
    event_types: list[str] | None = None
    windows_days: list[int] = Field([7, 30, 90], min_length=1)
    history_days: int | None = Field(None, ge=1)  # snapshots over the last N days before the as-of; null = all
    embedding_dim: int = Field(3, ge=1, le=16)
    cf_prior_strength: float = Field(5.0, ge=0)  # pseudo-offers shrinking a player's response rate to the mean
    campaign_gap_minutes: int = Field(60, ge=1)  # offers sent closer than this belong to one campaign
    chunk_players: int = Field(20_000, ge=100)
    store: FeastStore = FeastStore()

    @field_validator("windows_days")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        return positive_increasing("windows_days", v)

    @field_validator("games")
    @classmethod
    def _games(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        bad = [g for g in v if not re.fullmatch(r"[a-z][a-z0-9_]*", g) or g == "other"]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"games must be unique lower-case identifiers other than 'other', got {v}")
        return v


# ---------------------------------------------------------------- training --
class ArmsConfig(_Strict):
    min_support: int = Field(100, ge=1)  # offers an (event type, reward) pair needs in the history to be an arm


class SplitConfig(_Strict):
    validation_campaigns: int = Field(4, ge=1)  # the campaigns before the test slice: tuning's objective
    test_campaigns: int = Field(4, ge=1)  # the latest campaigns: held out for evaluation and promotion
    # too few campaigns for the time split (fewer than the two above + 2): split by player instead
    player_validation_share: float = Field(0.2, gt=0, lt=0.5)
    player_test_share: float = Field(0.25, gt=0, lt=0.5)


class ModelParams(_Strict):
    """The response model's defaults (tuning overrides them; see training.response.ResponseModel)."""

    learner: Literal["s", "t", "offset"] = "s"
    use_match: bool = True
    weighting: Literal["none", "ipw"] = "none"
    n_estimators: int = Field(300, ge=10)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(2000, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    tweedie_power: float = Field(1.5, gt=1, lt=2)
    monotone: bool = True
    deposit_model: Literal["factor", "tree"] = "factor"  # an arm's effect on deposit size: one shrunk factor, or trees


class StaleEvidence(_Strict):
    """Offers of these event types answered differently up to ``since``: the rows of campaigns up to it say
    nothing of their value now (:mod:`training.stale`): the evaluation's outcome model does not learn from
    them, those offers are valued on the campaigns after it, and so is every policy. The loop sets it after an
    outcome drift; set it by hand when, say, an event type's terms changed on a known day."""

    since: datetime
    event_types: list[str] = Field(min_length=1)

    @field_validator("since")
    @classmethod
    def _naive_utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v


class Training(_Strict):
    arms: ArmsConfig = ArmsConfig()
    split: SplitConfig = SplitConfig()
    model: ModelParams = ModelParams()
    objective: Literal["net_value", "reengagement"] = "net_value"
    budget: float | None = Field(None, ge=0)  # total expected reward cost per batch, KRW; null = no budget
    ensemble: int = Field(5, ge=1)  # bootstrap members: intervals and confidence
    propensity_clip: float = Field(0.002, gt=0, lt=1)
    max_weight: float = Field(20.0, ge=1)  # cap of the stabilised inverse-propensity weights
    ope_max_weight: float = Field(20.0, ge=1)  # dr-hurdle: no correction where 1 / propensity exceeds this
    # rows of Rekindle's own decisions are weighted by the propensity logged with them, not an estimate
    logged_propensities: bool = True
    bootstrap: int = Field(200, ge=0)  # resamples of the evaluation's intervals
    interval: float = Field(0.9, gt=0.5, lt=1)  # coverage of the evaluation's intervals and the promotion test
    min_cell: int = Field(300, ge=1)  # rows a (segment, arm) cell needs to enter the ROI accuracy
    stale_evidence: StaleEvidence | None = None  # event types whose rows up to a time are no evidence (StaleEvidence)
    tuning_rows: int = Field(30_000, ge=1000)  # validation rows scored per trial (a seeded sample)
    seed: int = Field(1, ge=0)
    experiment: str = "rekindle"
    model_name: str = Field("rekindle-response", pattern=r"^[A-Za-z0-9_.-]+$")
    tracking_uri: str | None = None  # null -> sqlite:///<home>/mlflow.db
    optuna_storage: str | None = None  # null -> sqlite:///<home>/optuna.db


# --------------------------------------------------------------- simulator --
class Beta(_Strict):
    a: float = Field(gt=0)
    b: float = Field(gt=0)
    min: float = Field(0.0, ge=0, lt=1)


class LogNormal(_Strict):
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)


class Population(_Strict):
    channels: dict[str, float]
    games: dict[str, float]
    game_concentration: float = Field(gt=0)
    bonus_hunter_share: dict[str, float]
    bonus_hunter_lapse_factor: float = Field(1.0, gt=0)
    self_excluded_share: float = Field(ge=0, lt=1)
    blocked_share: float = Field(ge=0, lt=1)
    blocked_bonus_hunter_share: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _channels_known(self) -> Population:
        missing = sorted(set(self.channels) - set(self.bonus_hunter_share))
        if missing:
            raise ValueError(f"bonus_hunter_share lacks channels {missing}")
        return self


class VipDynamics(_Strict):
    """How a player's VIP level moves: up to the level their deposits so far earn, down one level for
    every ``idle_downgrade_days`` without a session. The platform stores only the current level."""

    dynamic: bool = True  # false: every player keeps the level drawn at registration (the world before VIP moved)
    deposit_steps: list[int] = Field([100_000, 500_000, 2_000_000, 5_000_000, 10_000_000], min_length=5, max_length=5)
    idle_downgrade_days: int = Field(90, ge=1)

    @field_validator("deposit_steps")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        return positive_increasing("deposit_steps", v)


class Activity(_Strict):
    session_prob: Beta
    extra_sessions: float = Field(ge=0)
    session_minutes: LogNormal
    open_session_share: float = Field(ge=0, lt=1)
    lapse_hazard: LogNormal
    value_lapse_elasticity: float = Field(ge=0)
    return_rate: LogNormal
    return_decay_days: float = Field(gt=0)
    return_decay_power: float = Field(gt=0)


class DepositSize(_Strict):
    median: float = Field(gt=0)
    player_sigma: float = Field(ge=0)
    deposit_sigma: float = Field(ge=0)


class Money(_Strict):
    deposit_prob: Beta
    bonus_hunter_deposit_factor: float = Field(gt=0, le=1)
    deposit_size: DepositSize
    withdrawal_prob: float = Field(ge=0, le=1)
    withdrawal_fraction: float = Field(gt=0)


class Response(_Strict):
    base_pull: float = Field(ge=0)
    pull_decay_days: float = Field(gt=0)
    size_sensitivity: LogNormal
    sensitivity_sigma: float = Field(ge=0)
    affinity_sigma: float = Field(ge=0)
    game_match_boost: float = Field(gt=0)
    message_pull: float = Field(0.3, ge=0, le=1)  # a 0-KRW offer (a message) pulls this share of a full-size reward
    event_base_affinity: dict[str, float]
    deposit_pull: float = Field(ge=0, le=1)
    bonus_hunter_pull: float = Field(gt=0)
    bonus_hunter_claim: float = Field(gt=0, le=1)
    fatigue: float = Field(gt=0, le=1)
    fatigue_days: int = Field(ge=1)


class Campaigns(_Strict):
    every_days: int = Field(ge=1)
    holdout_share: float = Field(ge=0, lt=1)
    random_share: float = Field(ge=0, le=1)
    send_prob_by_tier: dict[str, float]
    rule_event_by_game: dict[str, str]
    rule_follow_prob: float = Field(ge=0, le=1)


class Drift(_Strict):
    channel_mix: dict[str, float] | None = None
    fatigue: float | None = Field(None, gt=0, le=1)
    event_multiplier: dict[str, float] = {}


class Simulator(_Strict):
    players: int = Field(ge=100)
    days: int = Field(ge=30)
    seed: int = Field(0, ge=0)
    end: datetime
    population: Population
    activity: Activity
    money: Money
    response: Response
    campaigns: Campaigns
    catalog: SimulatorCatalog
    vip: VipDynamics = VipDynamics()
    drift: Drift = Drift()

    @field_validator("end")
    @classmethod
    def _naive_utc(cls, v: datetime) -> datetime:
        """All times are naive UTC inside the system."""
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v

    @model_validator(mode="after")
    def _catalog_matches(self) -> Simulator:
        names = {e.name for e in self.catalog.event_types}
        unknown = sorted(set(self.campaigns.rule_event_by_game.values()) - names)
        if unknown:
            raise ValueError(f"simulator.campaigns.rule_event_by_game names event types not in its catalog: {unknown}")
        drift, channels = self.drift, set(self.population.channels)
        if drift.channel_mix is not None:
            bad = sorted(set(drift.channel_mix) - channels)
            if bad or any(v < 0 for v in drift.channel_mix.values()) or sum(drift.channel_mix.values()) <= 0:
                raise ValueError(
                    f"drift channel mix {drift.channel_mix} must give non-negative weights with a positive sum "
                    f"to known channels {sorted(channels)}" + (f"; unknown: {bad}" if bad else "")
                )
        bad_events = sorted(set(drift.event_multiplier) - names)
        if bad_events or any(v < 0 for v in drift.event_multiplier.values()):
            raise ValueError(
                f"drift event multipliers {drift.event_multiplier} must be >= 0 for catalog event types {sorted(names)}"
                + (f"; unknown: {bad_events}" if bad_events else "")
            )
        return self


# ----------------------------------------------------------------- serving --
class PolicySettings(_Strict):
    """The business rules, exploration and holdout of the policy (serving.policy), in online and batch
    alike. Marketers' overrides (system store) replace any of these fields while the service runs."""

    objective: Literal["net_value", "reengagement"] | None = None  # null: training.objective
    enabled_event_types: list[str] | None = None  # null: every event type the model knows
    disabled_event_types: list[str] = []
    reward_cap: int | None = Field(None, ge=0)  # largest reward any offer may carry, KRW
    segment_reward_caps: dict[str, int] = {}  # segment -> largest reward there, KRW
    min_roi: float | None = None  # a greedy offer needs incremental net value / expected cost >= this
    frequency_cap_days: int = Field(3, ge=0)  # no new offer within N days of the last one sent
    exploration: float = Field(0.05, ge=0, lt=1)  # share of decisions drawn uniformly among the eligible arms
    holdout: float = Field(0.05, ge=0, lt=1)  # share of players (hash of id and salt) who get no offer
    holdout_salt: str = Field("rekindle-holdout-1", min_length=1)
    pins: dict[str, str] = {}  # segment -> arm ("cashback@10000", or "none"): every player there gets it
    daily_budget: float | None = Field(None, ge=0)  # online: expected reward cost per UTC day, KRW

    @model_validator(mode="after")
    def _caps(self) -> PolicySettings:
        bad = {k: v for k, v in self.segment_reward_caps.items() if v < 0}
        if bad:
            raise ValueError(f"segment_reward_caps must be >= 0 KRW, got {bad}")
        return self


class Serving(_Strict):
    policy: PolicySettings = PolicySettings()
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(2, ge=1)  # API worker processes: one per core
    # each worker caches the model's predictions from a player's online features: until the online store is
    # materialised again or the model changes, and at most this long
    feature_cache_seconds: float = Field(86_400.0, ge=0)
    cache_players: int = Field(1_000_000, ge=0)  # players a worker keeps (least recently stored out first)
    prefetch: bool = True  # read every candidate's features ahead, in the background, after each load
    # a batch of at least this many candidates runs the model compiled (lleaves; compiled once, cached)
    compile_min_candidates: int = Field(100_000, ge=0)
    model_poll_seconds: float = Field(30.0, gt=0)  # how often a worker looks where the champion alias points
    overrides_poll_seconds: float = Field(2.0, gt=0)  # how often it reads the marketers' overrides and keys
    access_log: bool = False  # a console line per HTTP call (BentoML's access log; costs ~15% of throughput)
    # OpenTelemetry spans on the decision routes (BentoML's tracing): worth it only with an exporter configured
    # (BENTOML_CONFIG's tracing section); without one every call still builds a span that goes nowhere
    trace_decisions: bool = False


# ------------------------------------------------------------------- root --
class Config(_Strict):
    home: Path
    db_url: str
    system_db_url: str
    business: Business
    segmentation: Segmentation
    simulator: Simulator
    config_dir: Path
    features: Features = Features()
    training: Training = Training()
    serving: Serving = Serving()
    feedback: Feedback = Feedback()
    monitor: Monitor = Monitor()
    retrain: Retrain = Retrain()
    catalog: Catalog | None = None  # the user's catalog of the platform's event types; None: its history alone

    def require_simulatable(self) -> None:
        """What only simulating needs (training on a real platform's history does not care)."""
        if self.simulator.campaigns.every_days < self.business.attribution_days:
            raise ConfigError(
                f"simulator.campaigns.every_days is {self.simulator.campaigns.every_days} but must be at least "
                f"business.attribution_days ({self.business.attribution_days}) to simulate: a campaign's windows "
                "must close before the next campaign"
            )

    def path(self, *parts: str) -> Path:
        """A path under the home directory (created on demand by the caller)."""
        return self.home.joinpath(*parts)


def default_config_dir() -> Path:
    """``$REKINDLE_CONFIG``, else ``./configs`` if present, else the repository's ``configs/``."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    local = Path("configs")
    if (local / "rekindle.yaml").is_file():
        return local
    return Path(__file__).resolve().parent.parent / "configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def load_config(
    config_dir: str | Path | None = None,
    *,
    home: str | Path | None = None,
    db_url: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration.

    Precedence, lowest first: YAML files, environment (``REKINDLE_HOME``,
    ``REKINDLE_DB_URL``), explicit arguments (CLI flags), ``overrides`` (a
    nested mapping merged over the result, e.g. ``{"business": {"margin": 0.2}}``).
    """
    cdir = Path(config_dir) if config_dir is not None else default_config_dir()
    raw = _read_yaml(cdir / "rekindle.yaml")
    for section in ("catalog", "simulator"):
        ref = raw.get(section)
        if isinstance(ref, str):
            raw[section] = _read_yaml(cdir / ref)
    sim_catalog = raw.get("simulator", {}).get("catalog") if isinstance(raw.get("simulator"), dict) else None
    if isinstance(sim_catalog, str):
        raw["simulator"]["catalog"] = _read_yaml(cdir / sim_catalog)
    raw = _merge(raw, overrides or {})

    home_value = home or os.environ.get(HOME_ENV) or raw.get("home") or "./var"
    home_path = Path(home_value).expanduser().resolve()
    raw["home"] = home_path
    raw["db_url"] = db_url or os.environ.get(DB_ENV) or raw.get("db_url") or sqlite_url(home_path / "platform.db")
    if not raw.get("system_db_url"):
        raw["system_db_url"] = (
            raw["db_url"] if not str(raw["db_url"]).startswith("sqlite") else sqlite_url(home_path / "rekindle.db")
        )
    raw["config_dir"] = cdir.resolve()
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration in {cdir}:\n{exc}") from exc
