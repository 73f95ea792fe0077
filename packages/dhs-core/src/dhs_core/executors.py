"""Executors run a stage's independent tasks.

A task is any picklable object. If it has an ``output`` attribute (a path) that already
exists, the task is finished and is skipped — each task writes its own output atomically, so a
killed stage resumes where it stopped. ``map`` returns one result per task in order; a skipped
task's result is ``None``.
"""

from __future__ import annotations

import os
import signal
import sys
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import Field

from dhs_core.components import ComponentConfig


def task_done(task: Any) -> bool:
    out = getattr(task, "output", None)
    return out is not None and Path(out).exists()


class Executor(ABC):
    """Runs ``fn(task)`` for every task; results come back in task order."""

    #: counts of the last ``map`` call: ``{"run": n, "skipped": n}``
    last_stats: dict[str, int]

    def __init__(self) -> None:
        self.last_stats = {"run": 0, "skipped": 0}
        # where an executor reports where its work runs (a Dask dashboard link); the runner
        # points it at the run's log
        self.log: Callable[[str], None] = lambda msg: None

    @property
    def parallelism(self) -> int:
        """How many tasks run at once: callers that hand over tasks in batches (to bound memory)
        size a batch from it so every worker stays busy."""
        return int(getattr(getattr(self, "config", None), "workers", None) or 1)

    def close(self) -> None:  # noqa: B027 - optional hook: an executor holding nothing needs none
        """Release workers and connections; the runner calls it when a run point ends."""

    @abstractmethod
    def map(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        *,
        progress: Any = None,
        desc: str = "",
    ) -> list[Any]: ...


def _limit_threads() -> None:
    # Each worker gets one intra-op thread: with a pool of N processes, N×cores threads would
    # oversubscribe the machine and run slower than serial.
    # A library imported later in the worker reads OMP_NUM_THREADS; torch already imported by the
    # parent (and inherited through fork) has read it, so it is told directly. Core never imports
    # torch itself.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group: the parent alone handles it (cancels what is
    # queued, records the run as interrupted); workers finish their task and are shut down
    # instead of each printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalConfig(ComponentConfig):
    # number of worker processes; 1 runs every task in this process (debuggers, profilers)
    workers: int = Field(1, ge=1)
    # tasks handed to a worker at a time; larger amortises pickling of small tasks
    chunksize: int = Field(1, ge=1)


class LocalExecutor(Executor):
    """Runs tasks on this machine: in-process for ``workers = 1``, else a process pool."""

    Config = LocalConfig

    def __init__(self, config: LocalConfig | None = None) -> None:
        super().__init__()
        self.config = config or LocalConfig()

    def map(self, fn, tasks, *, progress=None, desc=""):  # type: ignore[override]
        tasks = list(tasks)
        results: list[Any] = [None] * len(tasks)
        todo = [i for i, t in enumerate(tasks) if not task_done(t)]
        self.last_stats = {"run": len(todo), "skipped": len(tasks) - len(todo)}
        bar = progress.task(desc or "tasks", total=len(tasks)) if progress is not None else None
        if bar is not None:
            bar.advance(len(tasks) - len(todo))
        try:
            if self.config.workers == 1 or len(todo) <= 1:
                for i in todo:
                    results[i] = fn(tasks[i])
                    if bar is not None:
                        bar.advance()
            else:
                pool = ProcessPoolExecutor(max_workers=min(self.config.workers, len(todo)),
                                           initializer=_limit_threads)
                try:
                    for i, res in zip(
                        todo,
                        pool.map(fn, [tasks[i] for i in todo], chunksize=self.config.chunksize),
                    ):
                        results[i] = res
                        if bar is not None:
                            bar.advance()
                except BaseException:
                    # interrupted or a task failed: drop the queued tasks rather than run them all
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                pool.shutdown(wait=True)
        finally:
            if bar is not None:
                bar.close()
        return results
