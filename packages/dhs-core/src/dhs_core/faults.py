"""Deterministic fault injection, for the fault suite (``tests/faults``) and for users who want
to see what a crash at a given moment does to their run.

``DHS_FAULT`` names one fault and where: ``KIND@N`` injects it at the N-th *write point* of the
process (every atomic write of :mod:`dhs_core.io` passes two: ``before`` the temporary file is
renamed onto its target and ``after``), ``KIND@PHASE:SUFFIX`` at the first write point of that
phase whose target path ends with ``SUFFIX`` (``kill@before:train/last.pt``). Kinds:

* ``kill@N`` — SIGKILL this process at write point N (what a power cut or the OOM killer does);
* ``sigint@N`` / ``sigterm@N`` — send SIGINT / SIGTERM to this process (Ctrl-C, a batch
  scheduler's preemption);
* ``enospc@N`` / ``eio@N`` — the write raises ``OSError(ENOSPC)`` / ``OSError(EIO)``, as a full
  or failing disk does.

``DHS_FAULT_LOG`` (a file path) records every write point reached, one ``N<TAB>phase<TAB>path``
line, so a test can count the points of an unbroken run and choose where to break one.

Unset (the normal case) the cost is one global lookup per write.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

KINDS = ("kill", "sigint", "sigterm", "enospc", "eio")

_count = 0
_fired = False
_spec: tuple[str, int | tuple[str, str]] | None | bool = False  # False: not parsed yet


def _parse() -> tuple[str, int | tuple[str, str]] | None:
    raw = os.environ.get("DHS_FAULT", "").strip()
    if not raw:
        return None
    kind, _, where = raw.partition("@")
    phase, _, suffix = where.partition(":")
    if kind in KINDS and where.isdigit():
        return kind, int(where)
    if kind in KINDS and phase in ("before", "after") and suffix:
        return kind, (phase, suffix)
    raise ValueError(f"DHS_FAULT={raw!r}: expected KIND@N or KIND@before:PATH_SUFFIX / KIND@after:PATH_SUFFIX "
                     f"with KIND one of {', '.join(KINDS)}")


def point(phase: str, path: str | os.PathLike[str]) -> None:
    """A write point: count it, log it when asked, and inject the configured fault here."""
    global _count, _spec, _fired
    if _spec is False:
        _spec = _parse()
    log = os.environ.get("DHS_FAULT_LOG")
    if _spec is None and not log:
        return
    _count += 1
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{_count}\t{phase}\t{path}\n")
    if _spec is None or _fired:
        return
    kind, where = _spec
    if isinstance(where, int):
        hit = where == _count
    else:
        hit = where[0] == phase and Path(path).as_posix().endswith(where[1])
    if not hit:
        return
    _fired = True
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind in ("sigint", "sigterm"):
        os.kill(os.getpid(), signal.SIGINT if kind == "sigint" else signal.SIGTERM)
    else:
        code = errno.ENOSPC if kind == "enospc" else errno.EIO
        raise OSError(code, os.strerror(code), str(Path(path)))
