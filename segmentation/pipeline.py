"""The thin I/O shell: platform database -> segmentation -> file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from core.config import Config
from segmentation.activity import load_player_activity
from segmentation.classify import classify
from segmentation.external import SegmentationError, read_external_segments

FILE_FORMATS = (".csv", ".parquet")


def segment_players(
    engine: Engine,
    as_of: datetime,
    config: Config,
    *,
    filters: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Segment every player existing at ``as_of``.

    With ``segmentation.source: computed`` (the default) this is
    :func:`load_player_activity` followed by :func:`classify`; with
    ``external`` the segment names come from the external table
    (:func:`read_external_segments`).

    Parameters
    ----------
    engine : Engine
        The platform database.
    as_of : datetime
        The time of the segmentation (UTC); only rows strictly before it count.
    config : Config
        ``business`` and ``segmentation`` are used.
    filters : dict of str to str, optional
        Valid-row filters per source table (SQL boolean expressions).

    Returns
    -------
    pandas.DataFrame
        One row per player, sorted by ``player_id``, columns
        :data:`~segmentation.SEGMENT_COLUMNS`.
    """
    if config.segmentation.source == "external":
        return read_external_segments(config, as_of, engine=engine, filters=filters)
    activity = load_player_activity(engine, as_of, filters=filters)
    return classify(activity, as_of, config.business, config.segmentation)


def write_segments_file(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a segmentation to CSV or Parquet, chosen by the file's suffix.

    Parameters
    ----------
    frame : pandas.DataFrame
        The segmentation (any columns; written as they are, without the index).
    path : str or Path
        Ends in ``.csv`` or ``.parquet`` (any case); parent folders are created.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    SegmentationError
        If the suffix is not one of :data:`FILE_FORMATS`.
    """
    target = check_segments_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if target.suffix.lower() == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(target)  # readers never see a half-written file
    return target


def check_segments_path(path: str | Path) -> Path:
    """Fail early on a segments path that cannot be written: bad suffix, a directory."""
    target = Path(path)
    if target.suffix.lower() not in FILE_FORMATS:
        raise SegmentationError(
            f"cannot write segments to {str(target)!r}: the suffix {target.suffix!r} is not one of {list(FILE_FORMATS)}"
        )
    if target.is_dir():
        raise SegmentationError(f"cannot write segments to {str(target)!r}: it is a directory")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SegmentationError(f"cannot write segments to {str(target)!r}: {str(parent)!r} is not a directory")
            break
    return target
