"""Rich rendering of dhs-core's progress protocol (core itself has no UI dependency)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dhs_core.stages import Progress as CoreProgress
from dhs_core.stages import ProgressTask


class RichTask(ProgressTask):
    def __init__(self, bar: Progress, task_id: Any) -> None:
        self._bar, self._id = bar, task_id

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._id, n)

    def update(self, **fields: Any) -> None:
        self._bar.update(self._id, **fields)

    def close(self) -> None:
        self._bar.stop_task(self._id)
        self._bar.update(self._id, visible=False)


class RichProgress(CoreProgress):
    """One rich live display; stages open tasks (bars) on it."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def task(self, description: str, total: int | None = None) -> RichTask:
        return RichTask(self.bar, self.bar.add_task(description, total=total))
