"""How long work reports progress: one small protocol for every layer, drawn by the application.

A long step calls ``start(task, total)`` once and ``advance(task, n)`` as its
work is done; ``note(message)`` says what it is doing now. Functions take a
``progress: Progress = SILENT`` argument, so a library caller sees nothing and
the command line draws bars (:class:`app.progress.RichProgress`).
"""

from __future__ import annotations

import time
from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int) -> None:
        """A task of ``total`` units begins (a second start of the same task restarts it)."""

    def advance(self, task: str, n: int = 1, *, detail: str | None = None) -> None:
        """``n`` more units of ``task`` are done; ``detail`` replaces the task's description suffix."""

    def note(self, message: str) -> None:
        """What the work is doing now, one line."""


class Silent:
    """Reports nowhere."""

    def start(self, task: str, total: int) -> None:
        return None

    def advance(self, task: str, n: int = 1, *, detail: str | None = None) -> None:
        return None

    def note(self, message: str) -> None:
        return None


SILENT: Progress = Silent()


class Recorder:
    """Keeps every report with the clock (``time.perf_counter``): for benchmarks that time each step, and
    tests that check what was reported."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.steps: list[tuple[str, str | None, float]] = []  # (task, detail, when) per advance
        self.notes: list[str] = []

    def start(self, task: str, total: int) -> None:
        self.started[task] = total

    def advance(self, task: str, n: int = 1, *, detail: str | None = None) -> None:
        self.steps.append((task, detail, time.perf_counter()))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def details(self, task: str) -> list[str | None]:
        """The details of ``task``'s advances, in order."""
        return [d for t, d, _ in self.steps if t == task]
