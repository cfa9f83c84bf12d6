"""Segmentation of players at a point in time: dormancy, value, behaviour.

- :mod:`.activity` aggregates each player's history in the platform database (SQL);
- :mod:`.classify` applies the rules (pure pandas/numpy) and summarises;
- :mod:`.external` takes segment names from an external table instead;
- :mod:`.pipeline` ties them together and writes files.

The definitions are in ``docs/segmentation.md``.
"""

from segmentation.activity import ACTIVITY_COLUMNS, load_player_activity
from segmentation.classify import SEGMENT_COLUMNS, SUMMARY_COLUMNS, classify, summarise
from segmentation.external import (
    SegmentationError,
    load_external_table,
    overlay_external,
    read_external_segments,
)
from segmentation.pipeline import FILE_FORMATS, segment_players, write_segments_file

__all__ = [
    "ACTIVITY_COLUMNS",
    "FILE_FORMATS",
    "SEGMENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "SegmentationError",
    "classify",
    "load_external_table",
    "load_player_activity",
    "overlay_external",
    "read_external_segments",
    "segment_players",
    "summarise",
    "write_segments_file",
]
