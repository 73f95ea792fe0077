"""Fault injection: the pipeline is broken at seeded points — SIGKILL, SIGINT, SIGTERM, a full
disk, an I/O error, a concurrent second run, a truncated checkpoint — and must each time exit
with the documented code and message, record the right status, print no traceback, and after
rerunning produce outputs byte-identical to an unbroken run (docs/reliability.md)."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dhs, dhs_env, outputs, run_info, write_spec

#: files written by every process at start-up: breaking there tests nothing a stage does
STARTUP = {"run_info.json", "spec.resolved.toml", "plugins.txt"}

EXPECT = {  # fault -> (exit code, run_info status, words the message must contain)
    "kill": (-9, "running", ""),
    "sigint": (130, "interrupted", "interrupted by SIGINT"),
    "sigterm": (143, "interrupted", "interrupted by SIGTERM"),
    "enospc": (1, "failed", "the disk is full"),
    "eio": (1, "failed", "an I/O error"),
}


def _chain(points: list[tuple[str, str]], seed: int, n_kills: int) -> list[tuple[str, str, str]]:
    """Seeded fault points in the order an unbroken run reaches them: ``n_kills`` SIGKILLs plus
    one each of SIGINT, SIGTERM, ENOSPC and EIO, at distinct write points of every stage."""
    candidates = [p for p in dict.fromkeys(points) if p[1] not in STARTUP]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(candidates)), n_kills + 4))
    kinds = ["kill"] * n_kills + ["sigint", "sigterm", "enospc", "eio"]
    rng.shuffle(kinds)
    chain = [(kind, *candidates[i]) for kind, i in zip(kinds, chosen)]
    # always also between two epochs: just after the first epoch's last.pt is in place
    between = candidates.index(("after", "train/last.pt"))
    if between not in chosen:
        at = sum(i < between for i in chosen)
        chain.insert(at, ("kill", "after", "train/last.pt"))
    return chain


def test_concurrent_run_is_refused_while_the_first_finishes(reference):
    second = reference["second"]
    assert second is not None, "the reference run finished before the second one could start"
    assert second.returncode == 2
    assert f"pid {reference['pid']}" in second.stderr and socket.gethostname() in second.stderr
    assert "Traceback" not in second.stderr
    assert run_info(reference["dir"])["status"] == "finished"  # the first run was not disturbed


def test_seeded_faults_at_every_stage_then_identical_outputs(reference, tmp_path):
    where = tmp_path / "chain"
    write_spec(where)
    chain = _chain(reference["points"], seed=20261126, n_kills=22)
    stages_hit = {path.split("/")[0] for _, _, path in chain}
    assert {"train", "evaluate", "selection_function", "report"} <= stages_hit
    fired, missed = [], []
    previous_killed = False
    for step, (kind, phase, path) in enumerate(chain):
        res = dhs(where, "run", "spec.toml", DHS_FAULT=f"{kind}@{phase}:{path}")
        if res.returncode == 0:
            # the resumed run finished without reaching this write: the rest cannot fire
            missed = chain[step:]
            break
        code, status, words = EXPECT[kind]
        assert res.returncode == code, (kind, phase, path, res.stderr[-2000:])
        assert "Traceback" not in res.stderr, (kind, path, res.stderr[-2000:])
        assert words in res.stderr, (kind, path, res.stderr[-2000:])
        if kind in ("enospc", "eio"):
            assert path.split("/")[-1] in res.stderr  # the message names the file
        assert run_info(where / "run")["status"] == status
        if previous_killed:  # the killed run's lock was taken over, with a warning
            assert "taking over the stale lock" in res.stderr
        previous_killed = kind == "kill"
        fired.append((kind, phase, path))
    final = dhs(where, "run", "spec.toml")
    assert final.returncode == 0, final.stderr[-3000:]
    assert run_info(where / "run")["status"] == "finished"
    assert not missed, {"fired": fired, "never reached": missed}
    assert len([f for f in fired if f[0] == "kill"]) >= 20, fired
    assert {"sigint", "sigterm", "enospc", "eio"} <= {f[0] for f in fired}, fired
    got = outputs(where / "run")
    assert got == reference["outputs"], sorted(
        k for k in set(got) | set(reference["outputs"]) if got.get(k) != reference["outputs"].get(k))


def test_force_retrains_from_scratch_even_over_a_truncated_checkpoint(reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference["dir"], run_dir)
    write_spec(tmp_path)
    last = run_dir / "train/last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    res = dhs(tmp_path, "run", "spec.toml", "--force")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" not in res.stderr
    assert outputs(run_dir) == reference["outputs"]


def test_a_damaged_resume_checkpoint_is_moved_aside(reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference["dir"], run_dir)
    write_spec(tmp_path)
    last = run_dir / "train/last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    res = dhs(tmp_path, "run", "spec.toml", "--stage", "train")
    assert res.returncode == 0, res.stderr[-3000:]
    aside = list((run_dir / "train").glob("last.pt.damaged-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == 1000
    assert "moved it to last.pt.damaged-" in " ".join(res.stderr.split())  # the console wraps
    got = {k: v for k, v in outputs(run_dir).items() if ".damaged-" not in k}
    assert got == reference["outputs"]  # trained from scratch: what the unbroken run trained


def test_a_flipped_shard_is_never_trained_on(reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference["dir"], run_dir)
    write_spec(tmp_path)
    shard = sorted((run_dir / "data").rglob("shard_*.npy"))[0]
    raw = bytearray(shard.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4096] = bytes(b ^ 0x5A for b in raw[mid:mid + 4096])  # values stay finite
    shard.write_bytes(bytes(raw))
    res = dhs(tmp_path, "run", "spec.toml", "--stage", "train")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "checksum" in res.stderr.lower() and shard.name in res.stderr
    assert run_info(run_dir)["status"] == "failed"


def test_nothing_is_written_into_a_folder_dhs_did_not_make(tmp_path):
    write_spec(tmp_path)
    mine = tmp_path / "run/data/important.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("keep me")
    res = dhs(tmp_path, "run", "spec.toml")
    assert res.returncode == 2 and "not a dhs run directory" in res.stderr
    assert mine.read_text() == "keep me" and sorted(p.name for p in (tmp_path / "run").iterdir()) == ["data"]


def _private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    for args in (["unshare", "-m", "true"], ["unshare", "-rm", "true"]):
        if subprocess.run(args, capture_output=True).returncode == 0:
            return True
    return False


def _on_full_disk(tmp_path: Path, *dhs_args: str):
    """``dhs run`` writing to a real 12 MB tmpfs, mounted in a private mount namespace (so
    nothing outside this process tree sees it)."""
    spec = write_spec(tmp_path, SMALL_DISK_SPEC.format(out=tmp_path / "disk" / "run"))
    (tmp_path / "disk").mkdir(exist_ok=True)
    flag = "-m" if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0 else "-rm"
    run_dir = tmp_path / "disk" / "run"
    # the run directory lives only inside the namespace: list it and print run_info.json there
    script = (f'mount -t tmpfs -o size=12m tmpfs "{tmp_path / "disk"}" || exit 99; '
              f'"{sys.executable}" -m dhs_cli run "{spec}" {" ".join(dhs_args)}; rc=$?; '
              f'ls -A "{run_dir}" 2>/dev/null; echo "--- run_info"; cat "{run_dir / "run_info.json"}" 2>/dev/null; '
              'exit $rc')
    return subprocess.run(["unshare", flag, "sh", "-c", script], env=dhs_env(), capture_output=True,
                          text=True, timeout=600)


SMALL_DISK_SPEC = """
[run]
name = "full-disk"
out_dir = "{out}"

[data]
name = "synthetic"
n_hosts = 600
stamp = 64
"""


@pytest.mark.skipif(not _private_mounts_work(), reason="no private mount namespace here (unshare -m)")
def test_a_real_full_disk(tmp_path):
    # the stages' estimate (600 stamps of 3 x 64 x 64 float32, ~30 MB) does not fit in 12 MB
    refused = _on_full_disk(tmp_path, "--stage", "data")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "the stages will write about" in refused.stderr and "--no-space-check" in refused.stderr
    # started anyway, the disk fills up: exit 1 with the path, no SIGBUS, no staging left behind
    shutil.rmtree(tmp_path / "disk")
    res = _on_full_disk(tmp_path, "--stage", "data", "--no-space-check")
    assert res.returncode == 1, (res.returncode, res.stderr[-3000:])  # not 135 (SIGBUS)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "the disk is full" in res.stderr, res.stderr[-3000:]
    listing, _, info = res.stdout.partition("--- run_info")
    assert ".data.partial" not in listing.split() and json.loads(info)["status"] == "failed"


def test_a_manifest_changed_in_place_reruns_the_data_stage(reference, tmp_path):
    import pyarrow.parquet as pq

    survey = tmp_path / "survey"
    shutil.copytree(reference["dir"] / "data", survey)
    spec = write_spec(tmp_path, f"""
[run]
name = "manifest-change"
out_dir = "run"

[data]
name = "manifest"
path = "{survey / 'manifest.parquet'}"
""")
    first = dhs(tmp_path, "run", spec.name)
    assert first.returncode == 0, first.stderr[-3000:]
    n_all = json.loads((tmp_path / "run/data/data_report.json").read_text())["n_input"]
    again = dhs(tmp_path, "run", spec.name)
    assert "stage data: up to date, skipped" in again.stderr
    # same path, other rows: the data stage must see it
    table = pq.read_table(survey / "manifest.parquet")
    pq.write_table(table.slice(0, 100), survey / "manifest.parquet")
    changed = dhs(tmp_path, "run", spec.name)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "stage data: running" in changed.stderr
    assert n_all > 100 and json.loads((tmp_path / "run/data/data_report.json").read_text())["n_input"] == 100
