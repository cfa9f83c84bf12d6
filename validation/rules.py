"""The row-level checks: what each one catches, as SQL true for the offending rows.

Every table gets the generic checks (NULLs, duplicate ids, SQLite's loosely
typed storage); the declared checks are particular to one table. A check names
the columns it needs, so that the planner in :mod:`validation.checks`
can skip it when they are missing or wrongly typed. Their SQL is built from the
dialect's fragments in :mod:`validation.sql`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from platform_db.schema import (
    COLUMN_KINDS,
    KNOWN_CHANNELS,
    KNOWN_GAMES,
    MONEY_FLOW_TYPES,
    PLAYER_STATUSES,
    SOURCE_TABLES,
    VIP_LEVELS,
    build_metadata,
)
from validation.sql import Sql

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class RowCheck:
    """A check that counts offending rows of one table."""

    name: str
    severity: Severity
    description: str
    bad: str | None  # SQL true for offending rows; None when there is nothing to check
    needs: tuple[str, ...] = ()  # columns ('col' or 'table.col') that must be present and typed right
    show: tuple[str, ...] = ()
    keep: str | None = None  # the row filter's condition, where NOT bad would defeat the planner
    only_sqlite: bool = False

    @property
    def table(self) -> str:
        return self.name.partition(".")[0]

    @property
    def alone(self) -> bool:
        """Counted in its own query rather than in the table's one-scan sum, so the planner can join."""
        return self.keep is not None or any("." in need for need in self.needs)


def _rc(name: str, severity: Severity, description: str, bad: str | tuple[str, str], *needs: str) -> RowCheck:
    """A check that needs ``needs`` and shows this table's ones; ``bad`` may come with its ``keep`` condition."""
    bad, keep = bad if isinstance(bad, tuple) else (bad, None)
    return RowCheck(name, severity, description, bad, needs, tuple(n for n in needs if "." not in n), keep)


def _known(q: Sql, column: str, values: tuple[str, ...], *, open_set: bool = False) -> RowCheck:
    """``column`` holds one of ``values``; a value outside an open set is only a warning."""
    severity: Severity = "warning" if open_set else "error"
    note = " (an open set)" if open_set else ""
    return _rc(
        f"{q.table}.{column}_known", severity, f"{column} not in {values}{note}", q.one_of(column, values), column
    )


def _before(q: Sql, name: str, column: str, limit: str, note: str = "") -> RowCheck:
    """``column`` is not before ``limit``, a time of the same row."""
    return _rc(f"{q.table}.{name}", "error", f"{column} before {limit}{note}", q.lt(q(column), q(limit)), limit, column)


def _before_player(q: Sql, column: str, description: str) -> RowCheck:
    """The row's ``column`` is not before its player's ``createdAt`` (a warning only)."""
    needs = ("playerId", column, "players.id", "players.createdAt")
    return _rc(f"{q.table}.before_player_created", "warning", description, q.before_player(column), *needs)


def _after_now(q: Sql, name: str, *columns: str) -> RowCheck:
    """None of ``columns`` is after the run's reference time."""
    return _rc(f"{q.table}.{name}", "error", f"{' or '.join(columns)} after now", q.future(*columns), *columns)


def declared_checks(q: dict[str, Sql]) -> list[RowCheck]:
    """The checks particular to each table, given each table's SQL fragments."""
    p, s, pr, pp, m = (q[t] for t in SOURCE_TABLES)
    low, high = VIP_LEVELS.start, VIP_LEVELS.stop - 1
    player = ("playerId", "players.id")
    offered, paid = ("promotionId", "promotions.id"), ("promotionPlayerId", "promotion_players.id")
    sent, starts, ends = '{t}."createdAt"', '{r}."startsAt"', '{r}."endsAt"'
    window = f"({pp.lt(sent, starts)} OR {pp.lt(ends, sent)})"
    return [
        _known(p, "status", PLAYER_STATUSES),
        _rc(
            "players.vip_level_range",
            "error",
            f"vipLevel outside {low}..{high}",
            f"{p.num('vipLevel')} NOT BETWEEN {low} AND {high}",
            "vipLevel",
        ),
        _known(p, "channel", KNOWN_CHANNELS, open_set=True),
        _after_now(p, "created_in_future", "createdAt"),
        _rc("player_sessions.player_exists", "error", "playerId names no player", s.orphan(*player), *player),
        _before(s, "ended_before_started", "endedAt", "startedAt"),
        _after_now(s, "in_future", "startedAt", "endedAt"),
        _known(s, "game", KNOWN_GAMES, open_set=True),
        _before_player(s, "startedAt", "startedAt before the player's createdAt"),
        _before(pr, "ends_before_starts", "endsAt", "startsAt"),
        _rc(
            "promotions.min_deposit_positive",
            "error",
            "minDeposit set but not > 0",
            f"{pr.num('minDeposit')} <= 0",
            "minDeposit",
        ),
        _rc(
            "promotion_players.promotion_exists",
            "error",
            "promotionId names no promotion",
            pp.orphan(*offered),
            *offered,
        ),
        _rc("promotion_players.player_exists", "error", "playerId names no player", pp.orphan(*player), *player),
        _rc(
            "promotion_players.reward_non_negative",
            "error",
            "reward < 0 (0: a message without reward)",
            f"{pp.num('reward')} < 0",
            "reward",
        ),
        _before(pp, "applied_before_created", "appliedAt", "createdAt", " (claimed before sent)"),
        _after_now(pp, "in_future", "createdAt", "appliedAt"),
        _before_player(pp, "createdAt", "offer sent before the player's createdAt"),
        _rc(
            "promotion_players.sent_outside_promotion",
            "warning",
            "offer sent outside its promotion's startsAt..endsAt",
            pp.ref("promotionId", "promotions", window),
            "promotionId",
            "createdAt",
            "promotions.id",
            "promotions.startsAt",
            "promotions.endsAt",
        ),
        _rc("money_flows.player_exists", "error", "playerId names no player", m.orphan(*player), *player),
        _rc(
            "money_flows.promotion_player_exists",
            "error",
            "promotionPlayerId names no promotion_players row",
            m.orphan(*paid),
            *paid,
        ),
        _rc("money_flows.amount_positive", "error", "amount not > 0", f"{m.num('amount')} <= 0", "amount"),
        _known(m, "type", MONEY_FLOW_TYPES),
        _after_now(m, "in_future", "createdAt"),
        _rc(
            "money_flows.bonus_without_promotion",
            "warning",
            "bonus without promotionPlayerId (cost unattributable)",
            f"{m.text('type')} = 'bonus' AND {m('promotionPlayerId')} IS NULL",
            "type",
            "promotionPlayerId",
        ),
        _rc(
            "money_flows.promotion_on_non_bonus",
            "warning",
            "promotionPlayerId set on a deposit or withdrawal",
            f"{m.text('type')} <> 'bonus' AND {m('promotionPlayerId')} IS NOT NULL",
            "type",
            "promotionPlayerId",
        ),
        _rc(
            "money_flows.bonus_player_mismatch",
            "warning",
            "playerId differs from the linked offer's playerId",
            m.ref("promotionPlayerId", "promotion_players", '{r}."playerId" <> {t}."playerId"'),
            "playerId",
            "promotionPlayerId",
            "promotion_players.id",
            "promotion_players.playerId",
        ),
        _before_player(m, "createdAt", "createdAt before the player's createdAt"),
    ]


def generic_checks(q: Sql, present: set[str], usable: set[str]) -> list[RowCheck]:
    """The checks every table gets: NULLs, duplicate ids, and SQLite's loosely typed storage."""
    t, kinds = q.table, COLUMN_KINDS[q.table]
    required = [c.name for c in build_metadata().tables[t].columns if not c.nullable and c.name in present]
    stamps = tuple(c for c, kind in kinds.items() if kind == "datetime" and c in usable)
    ints = tuple(c for c, kind in kinds.items() if kind == "int" and c in usable)

    def any_of(parts: list[str]) -> str | None:
        return " OR ".join(f"({part})" for part in parts) or None

    dupes, unique = q.in_set("id", f'SELECT "id" AS "v" FROM "{t}" GROUP BY "id" HAVING COUNT(*) > 1')
    return [
        RowCheck(
            f"{t}.required_not_null",
            "error",
            "NULL in a required column",
            any_of([f"{q(c)} IS NULL" for c in required]),
            show=tuple(required),
        ),
        RowCheck(f"{t}.unique_id", "error", "rows sharing an id (every one of them counts)", dupes, keep=unique),
        RowCheck(
            f"{t}.timestamps_valid",
            "error",
            "timestamp that is not text 'YYYY-MM-DD HH:MM:SS[.ffffff]'",
            any_of([f"{q(c)} IS NOT NULL AND NOT {q.ts_ok(q(c))}" for c in stamps]),
            show=stamps,
            only_sqlite=True,
        ),
        RowCheck(
            f"{t}.integer_values",
            "error",
            "non-integer value in an integer column",
            any_of([f"typeof({q(c)}) NOT IN ('integer', 'null')" for c in ints]),
            show=ints,
            only_sqlite=True,
        ),
    ]
