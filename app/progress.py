"""The command line's drawing of :class:`core.progress.Progress`: rich progress bars for tasks, and
notes printed with the seconds since the command started."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars


class RichProgress:
    """A context manager: ``with RichProgress(console) as progress: work(progress=progress)``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Bars(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.begun = time.perf_counter()

    def start(self, task: str, total: int) -> None:
        if task in self.tasks:
            self.bars.reset(self.tasks[task], total=max(total, 1), description=task)
        else:
            self.tasks[task] = self.bars.add_task(task, total=max(total, 1))

    def advance(self, task: str, n: int = 1, *, detail: str | None = None) -> None:
        if task not in self.tasks:  # a task nobody announced: count without a total
            self.tasks[task] = self.bars.add_task(task, total=None)
        description = f"{task} ({detail})" if detail else None
        self.bars.update(self.tasks[task], advance=n, description=description)

    def note(self, message: str) -> None:
        self.console.print(f"[dim]{time.perf_counter() - self.begun:7.1f} s[/]  {message}")

    def __enter__(self) -> RichProgress:
        self.bars.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.bars.__exit__(kind, value, trace)
