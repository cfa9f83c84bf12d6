"""The five source tables of the platform database, as SQLAlchemy Core.

Names and camelCase columns follow the platform's ORM (../shared/DESIGN.md).
All times are UTC, stored as naive timestamps; amounts are whole KRW.
The system only reads these tables; ``rekindle db init`` and the simulator
create and fill them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

PLAYER_STATUSES = ("active", "self_excluded", "blocked")
MONEY_FLOW_TYPES = ("deposit", "withdrawal", "bonus")
KNOWN_CHANNELS = ("organic", "ads", "referral", "affiliate", "social")
KNOWN_GAMES = ("slots", "table", "sports", "poker", "casual")
VIP_LEVELS = range(0, 6)

# BigInteger ids on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


def build_metadata(*, constraints: bool = True) -> MetaData:
    """The source tables. ``constraints=False`` leaves out primary and foreign
    keys, as some platform databases do (the validator must still cope)."""
    md = MetaData()

    def pk() -> Column:
        return Column("id", Id, primary_key=constraints, nullable=False, autoincrement=False)

    def fk(name: str, target: str, nullable: bool = False) -> Column:
        args = (ForeignKey(target),) if constraints else ()
        return Column(name, Id, *args, nullable=nullable)

    Table(
        "players",
        md,
        pk(),
        Column("createdAt", DateTime, nullable=False),
        Column("channel", String(32), nullable=False),
        Column("vipLevel", Integer, nullable=False),
        Column("status", String(32), nullable=False),
    )
    Table(
        "player_sessions",
        md,
        pk(),
        fk("playerId", "players.id"),
        Column("startedAt", DateTime, nullable=False),
        Column("endedAt", DateTime, nullable=True),
        Column("game", String(32), nullable=False),
        Index("ix_player_sessions_player_started", "playerId", "startedAt"),
    )
    Table(
        "promotions",
        md,
        pk(),
        Column("name", String(200), nullable=False),
        Column("type", String(64), nullable=False),
        Column("startsAt", DateTime, nullable=False),
        Column("endsAt", DateTime, nullable=False),
        Column("minDeposit", BigInteger, nullable=True),
    )
    Table(
        "promotion_players",
        md,
        pk(),
        fk("promotionId", "promotions.id"),
        fk("playerId", "players.id"),
        Column("reward", BigInteger, nullable=False),
        Column("createdAt", DateTime, nullable=False),
        Column("appliedAt", DateTime, nullable=True),
        Index("ix_promotion_players_player_created", "playerId", "createdAt"),
    )
    Table(
        "money_flows",
        md,
        pk(),
        fk("playerId", "players.id"),
        Column("type", String(32), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("createdAt", DateTime, nullable=False),
        fk("promotionPlayerId", "promotion_players.id", nullable=True),
        Index("ix_money_flows_player_created", "playerId", "createdAt"),
    )
    return md


SOURCE_TABLES = ("players", "player_sessions", "promotions", "promotion_players", "money_flows")

# The contract's column kinds, used by the validator to check types.
COLUMN_KINDS: dict[str, dict[str, str]] = {
    "players": {"id": "int", "createdAt": "datetime", "channel": "str", "vipLevel": "int", "status": "str"},
    "player_sessions": {"id": "int", "playerId": "int", "startedAt": "datetime", "endedAt": "datetime", "game": "str"},
    "promotions": {
        "id": "int",
        "name": "str",
        "type": "str",
        "startsAt": "datetime",
        "endsAt": "datetime",
        "minDeposit": "int",
    },
    "promotion_players": {
        "id": "int",
        "promotionId": "int",
        "playerId": "int",
        "reward": "int",
        "createdAt": "datetime",
        "appliedAt": "datetime",
    },
    "money_flows": {
        "id": "int",
        "playerId": "int",
        "type": "str",
        "amount": "int",
        "createdAt": "datetime",
        "promotionPlayerId": "int",
    },
}
