"""The campaign for an event system: one file per event type of a batch's offers.

Each file holds the players to send that event type: ``player_id, reward, decision_id`` (the decision id
comes back with the outcome). Files are written next to each other under temporary names and renamed only
when all are written: an event system never picks up half a campaign.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

NO_OFFER = "none"
COLUMNS = ["player_id", "reward", "decision_id"]


def file_for(out: Path, event_type: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", event_type)
    return out.with_name(f"{out.stem}.{safe}{out.suffix}")


def export_by_event_type(decisions: pd.DataFrame, out: Path) -> list[Path]:
    """Write ``<out stem>.<event type><suffix>`` for every event type offered; returns the files."""
    offers = decisions[decisions["event_type"] != NO_OFFER]
    parts = {str(e): g[COLUMNS] for e, g in offers.groupby("event_type", sort=True)}
    written: list[tuple[Path, Path]] = []
    try:
        for event_type, part in parts.items():
            final = file_for(out, event_type)
            tmp = final.with_name(final.name + ".tmp")
            if out.suffix == ".parquet":
                part.to_parquet(tmp, index=False)
            else:
                part.to_csv(tmp, index=False)
            written.append((tmp, final))
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in written:
        tmp.replace(final)
    return [final for _, final in written]
