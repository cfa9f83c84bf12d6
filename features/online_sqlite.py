"""A bulk writer for Feast's SQLite online store: the same rows Feast writes, about twice as fast.

Feast's SQLite writer upserts one row per (player, feature) with one ``execute``
each (about 790 players a second here for our 63 player features). This writer builds
exactly the rows Feast would — its own entity-key serialisation and value
protos (``python_values_to_proto_values``), the ``value_text`` copy, the
timestamps — and inserts them with one ``executemany`` per view in a single
transaction. The byte-for-byte equality with Feast's writer is pinned by
``tests/test_features_store.py``; use Feast's writer for any other store.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from core.progress import SILENT, Progress
from features.families import TIMESTAMP, Family

_VALUE_TYPES = {"float": "FLOAT", "int": "INT64", "string": "STRING"}


def _keys(family: Family, keys: pd.Series, version: int) -> list[bytes]:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    if family.key == "player_id":
        values = [Value(int64_val=int(k)) for k in keys.tolist()]
    else:
        values = [Value(string_val=str(k)) for k in keys.tolist()]
    return [
        serialize_entity_key(
            EntityKey(join_keys=[family.key], entity_values=[v]), entity_key_serialization_version=version
        )
        for v in values
    ]


_FLOAT_TAG = 0x35  # protobuf key of Value.float_val: field 6, wire type 5 (fixed32)


def _float_column(values: pd.Series) -> tuple[list[bytes], list[str | None]]:
    """:func:`_column` for float features without a proto per value: the tag byte and the little-endian
    float32; NaN is Feast's null (an empty Value). About 10x faster; pinned against :func:`_column`."""
    arr = values.to_numpy(dtype=np.float32)
    rec = np.empty(len(arr), dtype=[("tag", "u1"), ("value", "<f4")])
    rec["tag"], rec["value"] = _FLOAT_TAG, arr
    buf = rec.tobytes()
    data = [buf[i : i + 5] for i in range(0, len(buf), 5)]
    text: list[str | None] = [str(v) for v in arr.astype(np.float64).tolist()]
    for i in np.flatnonzero(np.isnan(arr)).tolist():
        data[i], text[i] = b"", None
    return data, text


def _column(values: pd.Series, kind: str) -> tuple[list[bytes], list[str | None]]:
    """Serialised value protos and their ``value_text``, as Feast's writer makes them."""
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    if kind == "float":
        raw: list[Any] = values.to_numpy(dtype=np.float64).tolist()
    elif kind == "int":
        raw = values.astype("Int64").astype(object).where(values.notna(), None).tolist()
    else:
        raw = values.astype(object).where(values.notna(), None).tolist()
    protos = python_values_to_proto_values(raw, ValueType[_VALUE_TYPES[kind]])
    data = [p.SerializeToString() for p in protos]
    text: list[str | None] = []
    for p in protos:
        which = p.WhichOneof("val")
        text.append(None if which is None else str(getattr(p, which)))
    return data, text


def write_view(
    path: str,
    project: str,
    family: Family,
    frame: pd.DataFrame,
    *,
    key_version: int = 3,
    chunk_rows: int = 20_000,
    progress: Progress = SILENT,
    task: str = "online store",
) -> int:
    """Insert ``frame`` (the family's key, ``event_timestamp`` and features) into the view's online table.

    Rows go in sorted by (entity key, feature name), the table's primary key, so SQLite appends to its
    B-trees instead of splitting pages all over them: into the emptied tables of ``materialize`` that is
    several times faster than random order. Existing rows of the same (entity, feature) are replaced.
    One transaction per view. Returns the number of entities written.
    """
    if frame.empty:
        return 0
    keys = np.array(_keys(family, frame[family.key], key_version), dtype=object)
    order = np.argsort(keys, kind="stable")
    stamps = pd.to_datetime(frame[TIMESTAMP])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    created = datetime.now(UTC).replace(tzinfo=None)
    features = sorted(family.features, key=lambda f: f.name)
    table = f"{project}_{family.view}"
    sql = (
        f'INSERT OR REPLACE INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    con = sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES)
    try:
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-524288")  # 512 MiB of page cache for the two B-trees
        with con:
            for start in range(0, len(order), chunk_rows):
                idx = order[start : start + chunk_rows]
                part = frame.iloc[idx]
                cols = [
                    _float_column(part[f.name]) if f.kind == "float" else _column(part[f.name], f.kind)
                    for f in features
                ]
                ts = [t.to_pydatetime() for t in stamps.iloc[idx]]
                rows = [
                    (key, f.name, cols[j][0][i], cols[j][1][i], ts[i], created)
                    for i, key in enumerate(keys[idx])
                    for j, f in enumerate(features)
                ]
                con.executemany(sql, rows)
                progress.advance(task, len(idx))
    finally:
        con.close()
    return len(frame)
