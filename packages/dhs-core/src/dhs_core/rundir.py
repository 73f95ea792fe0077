"""Safety of the run directory: whose it is, who writes it now, and whether it can hold the run.

* **Ownership.** ``dhs run`` writes only into a directory that is absent, empty, or a dhs run
  directory (it holds ``run_info.json`` or the runner's ``.dhs/`` folder). Anything else — a
  user's folder that happens to be named as ``out_dir`` — is refused before a byte is written,
  so nothing dhs did not write is ever replaced or deleted.
* **One writer.** :class:`RunLock` holds ``.dhs/lock`` (created with ``O_EXCL``) while a run
  writes the directory; a second ``dhs run`` on it stops with exit 2 naming the holder's pid
  and host. A lock left by a process that no longer runs on this host is taken over with a
  warning; one held from another host is never guessed stale.
* **Room.** :func:`check_free_space` compares the stages' own estimates of what they will write
  with the free space of the filesystem the run directory is on.
* **Signals.** :func:`signals_raise` turns SIGTERM (a scheduler's preemption) into the same
  orderly stop as Ctrl-C: run_info records "interrupted" and the exit code is 128 + signal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator

from dhs_core import layout
from dhs_core.errors import InterruptedRun, UserError


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def is_run_dir(path: Path) -> bool:
    """True for a directory dhs wrote: it holds ``run_info.json`` or the runner's ``.dhs/``."""
    return (path / layout.RUN_INFO).is_file() or (path / ".dhs").is_dir()


def check_out_dir(path: Path, source: str) -> None:
    """Refuse an ``out_dir`` dhs may not write: an existing file, a non-empty directory that is
    not a dhs run directory, or a place this user cannot write. Writes nothing."""
    where = f"{source}: run.out_dir {str(path)!r}"
    if path.exists() and not path.is_dir():
        raise UserError(f"{where} is an existing file, not a directory; choose another run.out_dir")
    if path.is_dir():
        try:
            entries = [e.name for e in os.scandir(path)]
        except OSError as exc:
            raise UserError(f"{where} cannot be read ({exc.strerror}); choose another run.out_dir") from None
        if entries and not is_run_dir(path):
            shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
            raise UserError(
                f"{where} is not empty and is not a dhs run directory (no {layout.RUN_INFO}; it holds "
                f"{shown}); dhs never writes into a folder it did not create — choose another "
                "run.out_dir, or empty that folder"
            )
    base = nearest_existing(path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{where}: {str(base)!r} is not writable by this user; choose another run.out_dir")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """``.dhs/lock`` of a run directory, held for the lifetime of one ``dhs run``."""

    def __init__(self, run_dir: Path, *, command: list[str] | None = None,
                 warn: Callable[[str], None] = lambda msg: None) -> None:
        self.path = run_dir / layout.LOCK
        self.command = command or []
        self.warn = warn
        self.held = False

    def _record(self) -> dict:
        from dhs_core.provenance import now

        return {"pid": os.getpid(), "host": socket.gethostname(), "started": now(), "command": self.command}

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    # half-written by a process killed between create and write: unreadable
                    # locks older than a few seconds are stale
                    import time

                    try:
                        age = time.time() - self.path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if age < 5:
                        raise UserError(f"{self.path.parent.parent} is being opened by another dhs run "
                                        f"(lock {self.path} is being written); try again") from None
                    self.warn(f"taking over the unreadable stale lock {self.path}")
                    self.path.unlink(missing_ok=True)
                    continue
                same_host = holder.get("host") == socket.gethostname()
                pid = int(holder.get("pid", -1))
                if same_host and pid > 0 and pid != os.getpid() and not _pid_alive(pid):
                    self.warn(f"taking over the stale lock of pid {pid} on {holder.get('host')} "
                              f"(started {holder.get('started')}; that process is gone)")
                    self.path.unlink(missing_ok=True)
                    continue
                raise UserError(
                    f"{self.path.parent.parent} is being written by another dhs run: pid {pid} on host "
                    f"{holder.get('host')}, started {holder.get('started')} "
                    f"({' '.join(holder.get('command') or [])}); wait for it to finish, or if that "
                    f"process is gone from another host, remove {self.path}"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._record(), fh)
            self.held = True
            return
        raise UserError(f"could not take the lock {self.path}; another dhs run keeps racing for it")

    def release(self) -> None:
        if not self.held:
            return
        holder = self._holder()
        if holder is None or int(holder.get("pid", -1)) == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def check_free_space(run_dir: Path, needed: int, source: str) -> None:
    """Refuse (exit 2) when the filesystem of ``run_dir`` has less free space than ``needed``
    bytes plus a margin of 5 % (at least 50 MB) for logs, checkpoints and staging."""
    if needed <= 0:
        return
    base = nearest_existing(run_dir)
    free = shutil.disk_usage(base).free
    want = int(needed * 1.05) + 50_000_000
    if free < want:
        raise UserError(
            f"{source}: the stages will write about {_human(needed)} into {run_dir}, but its filesystem "
            f"({base}) has {_human(free)} free; free some space, choose another run.out_dir, or pass "
            "--no-space-check to start anyway"
        )


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`InterruptedRun` (SIGINT raises
    KeyboardInterrupt, as always); handlers are restored afterwards. No-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise InterruptedRun(signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_failure(exc: BaseException) -> str | None:
    """A one-line description of a failed write (full disk, I/O error, read-only or vanished
    directory), or None when ``exc`` is not one."""
    if not isinstance(exc, OSError):
        return None
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EIO: "an I/O error", errno.EROFS: "the filesystem is read-only",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.ENOENT: "a directory vanished"}
    if exc.errno not in reasons:
        return None
    where = exc.filename or "?"
    return f"could not write {where}: {reasons[exc.errno]} ({exc.strerror})"


def remove_stale_temporaries(run_dir: Path, depth: int = 3) -> int:
    """Delete the temporary files of atomic writes (``.<name>.<random>.tmp``, see
    :func:`dhs_core.io.atomic_path`) that a killed run left in ``run_dir`` and its folders down
    to ``depth`` levels; the run lock guarantees no other writer owns them. Returns the count."""
    import re

    pattern = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
    removed = 0
    level = [run_dir]
    for _ in range(depth):
        nxt: list[Path] = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    nxt.append(Path(e.path))
                elif pattern.match(e.name) and e.is_file(follow_symlinks=False):
                    Path(e.path).unlink(missing_ok=True)
                    removed += 1
        level = nxt
    return removed
