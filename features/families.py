"""The feature families: every feature's name, type and definition, in one place.

This is the contract between the pipeline that computes the snapshots
(:mod:`features.snapshots`), the Feast repository that serves them
(:mod:`features.repo`) and the docs (``docs/features.md``). Names that depend
on the configuration (the games, the event types, the windows, the embedding
size) are generated from it. The games and event types are the platform's
own: a build finds them in its history (``features.games`` and
``features.event_types`` null, the default) and records them, and every later
step reads the configuration as built (:func:`features.manifest.as_built`).

Every player feature is computed at a snapshot time ``T`` from platform rows
strictly before ``T``. Counts are float32 (Feast ``Float32``) so one snapshot
row stays small; times are days as float32; NaN means "not defined yet" (no
session, no deposit, no resolved offer).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal

from core.config import Config
from core.errors import RekindleError

Kind = Literal["float", "int", "string"]

ENTITY = "player_id"
EVENT_TYPE_KEY = "event_type"
TIMESTAMP = "event_timestamp"
OTHER_GAME = "other"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    doc: str


@dataclass(frozen=True)
class Family:
    """One feature view: a name, its entity key and its features (key and timestamp excluded)."""

    name: str
    key: str
    features: tuple[Feature, ...]
    doc: str

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def view(self) -> str:
        return f"{'player' if self.key == ENTITY else 'event_type'}_{self.name}"


class UnbuiltError(RekindleError, ValueError):
    """The platform's games or event types are asked for before a feature build has found them."""


def games(cfg: Config) -> list[str]:
    """The games counted separately (``share_<game>``): configured, or found by the build."""
    if cfg.features.games is None:
        raise UnbuiltError("the platform's games are found by `rekindle features build`: run it first")
    return list(cfg.features.games)


def event_types(cfg: Config) -> list[str]:
    """The event types with per-type features: configured, or the ones the platform offered (found by the build)."""
    if cfg.features.event_types is None:
        raise UnbuiltError("the platform's event types are found by `rekindle features build`: run it first")
    return list(cfg.features.event_types)


def type_suffix(event_type: str) -> str:
    """The column suffix of an event type (its name when that is a lower-case identifier, else a slug of it)."""
    slug = re.sub(r"[^a-z0-9_]+", "_", event_type.lower()).strip("_")
    if slug == event_type:
        return slug
    return f"{slug or 'type'}_{zlib.crc32(event_type.encode()) % 10_000:04d}"


def _f(name: str, doc: str, kind: Kind = "float") -> Feature:
    return Feature(name, kind, doc)


def activity(cfg: Config) -> Family:
    fc = cfg.features
    feats = [
        _f("days_since_last_session", "days from the last session start to T (NaN: never played)"),
        _f("days_since_first_session", "days from the first session start to T (NaN: never played)"),
        _f("tenure_days", "days from registration (players.createdAt) to T"),
        *[_f(f"sessions_{w}d", f"sessions started in [T - {w} days, T)") for w in fc.windows_days],
        _f("sessions_lifetime", "sessions started before T"),
        *[
            _f(f"share_{g}", f"share of the player's sessions before T played on {g} (NaN: never played)")
            for g in [*games(cfg), OTHER_GAME]
        ],
    ]
    return Family("activity", ENTITY, tuple(feats), "when and what the player played")


def money(cfg: Config) -> Family:
    fc = cfg.features
    feats = [
        *[_f(f"deposits_n_{w}d", f"deposits made in [T - {w} days, T)") for w in fc.windows_days],
        *[_f(f"deposits_sum_{w}d", f"KRW deposited in [T - {w} days, T)") for w in fc.windows_days],
        _f("deposits_n_lifetime", "deposits before T"),
        _f("deposits_sum_lifetime", "KRW deposited before T"),
        _f("deposit_avg", "average deposit before T, KRW (NaN: no deposit)"),
        _f("deposit_max", "largest deposit before T, KRW (NaN: no deposit)"),
        _f("withdrawals_n_lifetime", "withdrawals before T"),
        _f("withdrawals_sum_lifetime", "KRW withdrawn before T"),
        _f("net_deposits_lifetime", "deposits minus withdrawals before T, KRW"),
        _f("days_since_last_deposit", "days from the last deposit to T (NaN: never deposited)"),
    ]
    return Family("money", ENTITY, tuple(feats), "deposits and withdrawals")


def promotions(cfg: Config) -> Family:
    w = cfg.business.attribution_days
    resolved = (
        f"for each rate, an offer is resolved at T once its outcome is known before T: the claim, deposit or "
        f"session happened before T, or its {w}-day window ended before T"
    )
    feats = [
        _f("offers_lifetime", "offers sent before T"),
        _f("offers_30d", "offers sent in [T - 30 days, T)"),
        _f(
            "claim_rate",
            f"claimed / resolved offers ({resolved}; a claim after the window counts once made; NaN: none)",
        ),
        _f("deposit_rate", f"offers followed by a deposit within {w} days / resolved offers (NaN: none resolved)"),
        _f("reengage_rate", f"offers followed by a session within {w} days / resolved offers (NaN: none resolved)"),
        _f(
            "offers_resolved",
            "offers whose re-engagement outcome is known before T (the evidence behind the cf embedding)",
        ),
        _f("days_since_last_offer", "days from the last offer sent to T (ties: highest offer id; NaN: never offered)"),
        _f("last_reward", "reward of the last offer sent before T, KRW (NaN: never offered)"),
        _f("bonus_sum_lifetime", "bonus KRW paid before T (all bonus flows)"),
        _f(
            "bonus_to_deposit_ratio",
            "bonus paid / KRW deposited before T (bonus hunting; NaN: neither; capped at 1e6, also with no deposit)",
        ),
    ]
    for t in event_types(cfg):
        x = type_suffix(t)
        feats += [
            _f(f"offers_{x}", f"{t} offers sent before T"),
            _f(f"claim_rate_{x}", f"claimed / resolved {t} offers (NaN: none resolved)"),
            _f(f"deposit_rate_{x}", f"{t} offers followed by a deposit within {w} days / resolved ones (NaN: none)"),
        ]
    return Family("promotions", ENTITY, tuple(feats), "offers received and how the player answered them")


def profile(cfg: Config) -> Family:
    feats = (
        _f("channel", "acquisition channel (players.channel)", "string"),
        _f("vip_level", "VIP level 0-5 (players.vipLevel; float: NaN before the player's first observation)"),
        _f("status", "active, self_excluded or blocked (players.status)", "string"),
    )
    return Family(
        "profile",
        ENTITY,
        feats,
        "the players row as the system observed it: the platform keeps only current values, so every build "
        "records the values it sees, dated at the platform's latest event (system_db player_attributes); a "
        "decision before a player's first observation reads no profile",
    )


def segment(cfg: Config) -> Family:
    feats = (
        _f("segment", "the segment of the segmentation rules at T (docs/segmentation.md)", "string"),
        _f("dormancy_stage", "dormancy stage at T (empty string when not dormant)", "string"),
        _f("value_tier", "value tier by lifetime deposits before T", "string"),
        _f("is_dormant", "1 if dormant at T, else 0", "int"),
        _f("is_bonus_hunter", "1 if the bonus-hunter rule holds at T, else 0", "int"),
    )
    return Family(
        "segment",
        ENTITY,
        feats,
        "the segmentation of the foundation issue, at every snapshot (status: the one last observed at or before "
        "the snapshot; before the first observation a player is labelled by behaviour alone)",
    )


def cf(cfg: Config) -> Family:
    k = cfg.features.embedding_dim
    feats = tuple(
        _f(f"cf_{i}", f"player embedding, component {i}: the player's response row projected on the event-type factors")
        for i in range(k)
    )
    return Family("cf", ENTITY, feats, "collaborative filtering: player embedding from past offers and their outcomes")


def event_type_content(cfg: Config) -> Family:
    feats = (
        _f("requires_deposit", "1 if the reward needs a deposit: the catalog's, else 1 when 95% of 20+ claims had one"),
        _f("min_deposit", "minimum deposit, KRW: the catalog's, else the promotions' minDeposit (0 when none)"),
        _f("payout_ratio", "share of the reward paid when claimed: the catalog's, else paid / reward of its claims"),
        _f("type_claim_rate", "claimed / resolved offers of the type (the catalog's claim_rate when given)"),
        _f("deposit_share", "share of the type's claims that came with a deposit in their window (NaN: no claim)"),
        _f("reward_min", "smallest reward offered, KRW (the catalog's ladder when given)"),
        _f("reward_max", "largest reward offered, KRW (the catalog's ladder when given)"),
        _f(
            "game",
            "the game the type is tied to: the catalog's, else its returners' game when half their sessions "
            "were on it (empty string: any)",
            "string",
        ),
    )
    return Family(
        "content",
        EVENT_TYPE_KEY,
        feats,
        "each event type's content as known at T: the user's catalog where it says, else the platform's history",
    )


def event_type_cf(cfg: Config) -> Family:
    k = cfg.features.embedding_dim
    feats = tuple(_f(f"ev_cf_{i}", f"event-type embedding, component {i}") for i in range(k))
    return Family("cf", EVENT_TYPE_KEY, feats, "collaborative filtering: event-type factors, refit at every snapshot")


def player_families(cfg: Config) -> list[Family]:
    return [activity(cfg), money(cfg), promotions(cfg), profile(cfg), segment(cfg), cf(cfg)]


def event_type_families(cfg: Config) -> list[Family]:
    return [event_type_content(cfg), event_type_cf(cfg)]


def all_families(cfg: Config) -> list[Family]:
    return player_families(cfg) + event_type_families(cfg)
