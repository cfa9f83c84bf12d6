"""Progress callbacks: the long steps report through these; the CLI draws them as rich progress bars."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Progress:
    """``start(name, total)`` once per step, then ``advance(name, n)`` as work is done."""

    start: Callable[[str, int], None] = lambda name, total: None
    advance: Callable[[str, int], None] = lambda name, n: None
