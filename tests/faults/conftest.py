"""Shared pieces of the fault-injection suite: a small spec, a ``dhs`` runner in a subprocess,
and a fingerprint of a run directory's outputs for byte-for-byte comparison."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A shell without job control starts background jobs with SIGINT ignored, and a Python started
# with SIGINT ignored installs no KeyboardInterrupt handler; the children these tests signal
# would then ignore SIGINT too. Give the test process (and so every child it starts) the normal
# disposition, as an interactive shell would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The whole pipeline (data, train, evaluate, selection_function, report) at the smallest size
# that still exercises every stage: 2 epochs so a kill can fall between them, 4 grid cells so
# the selection function resumes per cell. The eager injection kernel avoids a compile per
# process.
SPEC = """
[run]
name = "faults"
seed = 7
out_dir = "run"

[data]
name = "synthetic"
n_hosts = 160
stamp = 64
positive_fraction = 0.3

[preprocess]
name = "raw_robust"
annulus = [20, 32]

[model]
name = "bottlenecked_resnet"

[train]
epochs = 2
micro_batch = 32
effective_batch = 32
optimizer = { name = "adamw", lr = 2e-3 }

[[evaluate]]
name = "classification"

[selection_function]
injector = { name = "model1", fast_kernel = false }
theta_e = { start = 1.0, stop = 1.5, step = 0.5 }
psfsize_r_edges = [0.9, 1.3, 1.8]
source_mag_edges = [20.5, 23.5]
per_cell = 3
target_fpr = 1e-1
host_split = "test"
qa = "warn"  # the pre-grid QA is tested in dhs-inject; here it must not stop the run
"""

#: files that record *how* a run went (times, pids, the log), not what it produced
NOT_OUTPUTS = ("run_info.json", "dhs.log")


def write_spec(where: Path, text: str = SPEC) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    spec = where / "spec.toml"
    spec.write_text(text)
    return spec


def dhs_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHS_FAULT")}
    env.update({"DHS_LOAD_PLUGINS": "builtin", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def dhs(cwd: Path, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """``dhs ARGS`` in ``cwd`` in a fresh process (so a SIGKILL kills only it)."""
    return subprocess.run([sys.executable, "-m", "dhs_cli", *args], cwd=cwd, env=dhs_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def dhs_popen(cwd: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dhs_cli", *args], cwd=cwd, env=dhs_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


#: the documented difference between two runs of the same spec: wall-clock seconds and time
#: stamps (in metrics.jsonl and MODEL_CARD.md), the command line and directory (the card's
#: reproduce command, its checklist row and absolute paths), the selection function's count of
#: cells computed vs reused, and the card's digests of the files that hold them (the artifact rows
#: of the run's top directory — run_info.json, dhs.log —, of train/ — metrics.jsonl — and of
#: selection_function/ — meta.json), and a checkpoint's pickle layout (checkpoints are compared
#: by content)
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?|\(\d+(\.\d+)? s\)")
_CARD_ROW_OF_TIMED_FILE = re.compile(r"^\| (\./|train/|selection_function/) \|")
#: how many grid cells this run computed and how many it found finished (a resumed run reuses)
_HOW_IT_WENT = ("cells_computed", "cells_reused")
#: absolute paths (run directory, spec, working directory) differ between the compared runs' homes
_ABSOLUTE = re.compile(r"(?<=[\s`(])/[^\s`'\"|()]+")
#: report.html is the card (compared above) rendered with the figures: its figures are compared
_EMBEDDED = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, (list, tuple)):
        return [_untimed(v) for v in obj]
    return obj


def _digest(path: Path, rel: str) -> str:
    h = hashlib.sha256()
    if rel.endswith(".pt"):
        import torch

        # by content: every tensor byte for byte (dtype and shape included), every other value
        # by its repr, dict keys in order. A last.pt saved by a resumed run holds the same values
        # as the unbroken run's but may share python objects differently, which changes the
        # pickle's memo layout and so its bytes (best.pt, which is scored, is byte-identical).
        def feed(obj):
            if isinstance(obj, torch.Tensor):
                h.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
                h.update(obj.detach().contiguous().cpu().numpy().tobytes())
            elif isinstance(obj, dict):
                h.update(b"{")
                for k in sorted(obj, key=repr):
                    h.update(repr(k).encode())
                    feed(obj[k])
                h.update(b"}")
            elif isinstance(obj, (list, tuple)):
                h.update(b"[")
                for v in obj:
                    feed(v)
                h.update(b"]")
            else:
                h.update(repr(obj).encode())

        feed(_untimed(torch.load(path, map_location="cpu", weights_only=True)))
    elif rel == "selection_function/meta.json":
        meta = json.loads(path.read_text())
        for key in _HOW_IT_WENT:
            meta.pop(key, None)
        h.update(json.dumps(meta, sort_keys=True).encode())
    elif rel.endswith("metrics.jsonl"):
        for line in path.read_text().splitlines():
            h.update(json.dumps(_untimed(json.loads(line)), sort_keys=True).encode())
    elif rel == "MODEL_CARD.md":
        for line in path.read_text().splitlines():
            if (_CARD_ROW_OF_TIMED_FILE.match(line) or line.startswith(("dhs run ", "| Copy-pastable command"))
                    or any(f"`{key}`" in line for key in _HOW_IT_WENT)):
                continue  # the recorded command line differs (--force, --stage) by design
            h.update(_ABSOLUTE.sub("<path>", _TIMES.sub("<time>", line)).encode())
    elif rel == "report.html":
        for payload in _EMBEDDED.findall(path.read_text()):
            h.update(payload.encode())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def outputs(run_dir: Path) -> dict[str, str]:
    """Digest of every output file of a run, by path relative to the run directory: its bytes,
    less the documented difference (``_TIMES``). The runner's bookkeeping (``.dhs/``,
    run_info.json, dhs.log) is left out."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if not p.is_file() or rel.startswith(".dhs/") or rel in NOT_OUTPUTS:
            continue
        out[rel] = _digest(p, rel)
    return out


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_info.json").read_text())


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict:
    """One unbroken run, every write point logged. While it holds the run directory, a second
    ``dhs run`` on the same directory is started: what it answers is kept for the lock test."""
    import time

    where = tmp_path_factory.mktemp("reference")
    write_spec(where)
    log = where / "points.log"
    first = dhs_popen(where, "run", "spec.toml", DHS_FAULT_LOG=str(log))
    lock = where / "run/.dhs/lock"
    deadline = time.monotonic() + 300
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = dhs(where, "run", "spec.toml") if first.poll() is None else None
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    points = []
    for line in log.read_text().splitlines():
        _, phase, path = line.split("\t")
        target = Path(path) if Path(path).is_absolute() else where / path
        points.append((phase, target.relative_to(where / "run").as_posix()))
    return {"dir": where / "run", "outputs": outputs(where / "run"), "points": points,
            "pid": first.pid, "second": second}
