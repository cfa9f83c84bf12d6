"""Which chunks of a campaign an event system's webhook has acknowledged: the ledger that makes an
export resumable without sending anything twice.

A campaign's offers are cut into numbered chunks in a fixed order; a chunk is recorded here, in its own
transaction, as soon as the webhook answered it with a 2xx. A resumed export sends only the chunks not
recorded, cut the same way (the chunk size is kept with the first record). A process killed between the
webhook's answer and the record sends that one chunk again with the same ``Idempotency-Key``, which a
receiver uses to drop it: that is the only repeat possible, and the key says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from system_db.store import SystemStore


def deliveries_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "webhook_deliveries",
        md,
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(512), primary_key=True),
        sa.Column("chunk", sa.Integer, primary_key=True),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("chunk_size", sa.Integer, nullable=False),
        sa.Column("offers", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),  # the webhook's HTTP status
        sa.Column("delivered_at", sa.DateTime, nullable=False),
        keep_existing=True,
    )


@dataclass(frozen=True)
class Delivered:
    chunks: int  # of the campaign, as cut when its first chunk was sent
    chunk_size: int
    done: frozenset[int]  # the chunks acknowledged


class Deliveries:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.table = deliveries_table(store.metadata)
        store.ensure()

    def delivered(self, campaign: str, url: str) -> Delivered | None:
        """What the webhook ``url`` acknowledged of ``campaign`` (None: nothing yet)."""
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.chunk, t.c.chunks, t.c.chunk_size).where(t.c.campaign == campaign, t.c.url == url)
            ).all()
        if not rows:
            return None
        return Delivered(int(rows[0].chunks), int(rows[0].chunk_size), frozenset(int(r.chunk) for r in rows))

    def record(
        self,
        campaign: str,
        url: str,
        chunk: int,
        *,
        chunks: int,
        chunk_size: int,
        offers: int,
        attempts: int,
        status: int,
    ) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.insert(self.table).values(
                    campaign=campaign, url=url, chunk=chunk, chunks=chunks, chunk_size=chunk_size, offers=offers,
                    attempts=attempts, status=status, delivered_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )  # fmt: skip

    def sent_anywhere(self, campaign: str) -> dict[str, int]:
        """Per webhook URL, how many offers of ``campaign`` it acknowledged."""
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.url, sa.func.sum(t.c.offers)).where(t.c.campaign == campaign).group_by(t.c.url)
            ).all()
        return {str(url): int(n or 0) for url, n in rows}
