"""Exit codes, messages and run_info status of every failure ``dhs run`` can meet, and the
checks made before anything is written (issue: reliability). The whole-pipeline faults —
SIGKILL at seeded points, a real full disk, a flipped shard — are in tests/faults."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest
from test_cli import good  # the fixture spec: stages numbers -> square

from dhs_cli.main import main
from dhs_core import InterruptedRun
from dhs_core.testing import FixturePlugin, SquareStage, registered


@pytest.fixture(autouse=True)
def fixture_plugin():
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


def info(tmp_path):
    return json.loads((tmp_path / "run/run_info.json").read_text())


@pytest.mark.parametrize("raised, code, status", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (InterruptedRun(signal.SIGTERM), 143, "interrupted"),
])
def test_signals_exit_128_plus_signal_and_record_interrupted(tmp_path, monkeypatch, capsys, raised, code, status):
    def run(self, ctx):
        raise raised

    monkeypatch.setattr(SquareStage, "run", run)
    assert main(["run", str(good(tmp_path))]) == code
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert info(tmp_path)["status"] == status and info(tmp_path)["stages"]["square"]["status"] == status
    assert not (tmp_path / "run/.dhs/lock").exists()  # released on the way out


def test_real_sigint_and_sigterm_give_130_and_143(tmp_path):
    # a real signal to a real process: the numbers stage sleeps until it is signalled
    spec = good(tmp_path)
    code = (
        "import os, sys, time\n"
        "from dhs_core.testing import FixturePlugin, NumbersStage, registered\n"
        "from dhs_cli.main import main\n"
        "NumbersStage.run = lambda self, ctx: (print('ready', flush=True), time.sleep(60))\n"
        "with registered(FixturePlugin(), 'fx', 'dhs-fixtures', '1.0'):\n"
        "    sys.exit(main(['run', sys.argv[1]]))\n"
    )
    for sig, want in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        proc = subprocess.Popen([sys.executable, "-c", code, str(spec)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "DHS_LOAD_PLUGINS": "builtin"})
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == want, err
        assert f"interrupted by {signal.Signals(sig).name}" in err and "Traceback" not in err
        assert info(tmp_path)["status"] == "interrupted"


@pytest.mark.parametrize("err_no, words", [(errno.ENOSPC, "the disk is full"), (errno.EIO, "an I/O error")])
def test_a_failed_write_is_one_line_exit_1(tmp_path, monkeypatch, capsys, err_no, words):
    def run(self, ctx):
        raise OSError(err_no, os.strerror(err_no), str(ctx.path("square/values.json")))

    monkeypatch.setattr(SquareStage, "run", run)
    assert main(["run", str(good(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert words in err and "square/values.json" in err and "Traceback" not in err
    assert sum(line.startswith("failed:") for line in err.splitlines()) == 1  # said once
    assert info(tmp_path)["status"] == "failed"


def test_a_crash_is_one_line_with_the_log_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(SquareStage, "crash", True)
    assert main(["run", str(good(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "simulated crash in square" in err and "dhs.log" in err and "Traceback" not in err
    assert "Traceback" in (tmp_path / "run/dhs.log").read_text()  # kept where the message says


def test_out_dir_that_is_not_a_dhs_run_is_refused_untouched(tmp_path, capsys):
    mine = tmp_path / "run/data/important.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("keep")
    assert main(["run", str(good(tmp_path))]) == 2
    assert "not a dhs run directory" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["data"] and mine.read_text() == "keep"
    assert main(["validate", str(good(tmp_path))]) == 2  # validate says the same, writing nothing


def test_out_dir_that_is_a_file_or_unwritable(tmp_path, monkeypatch, capsys):
    (tmp_path / "run").write_text("a file")
    assert main(["run", str(good(tmp_path))]) == 2
    assert "is an existing file" in capsys.readouterr().err
    (tmp_path / "run").unlink()
    # root may write anywhere, so the permission answer is simulated
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    assert main(["run", str(good(tmp_path))]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_second_run_on_a_locked_dir_names_the_holder(tmp_path, capsys):
    spec = good(tmp_path)
    lock = tmp_path / "run/.dhs/lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "t",
                                    "command": ["dhs", "run", "x.toml"]}))
        assert main(["run", str(spec)]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and socket.gethostname() in err
        assert not (tmp_path / "run/run_info.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # its process is gone now: the lock is stale and taken over, with a warning
    assert main(["run", str(spec)]) == 0
    assert f"taking over the stale lock of pid {holder.pid}" in capsys.readouterr().err
    assert not lock.exists()


def test_lock_of_another_host_is_never_guessed_stale(tmp_path, capsys):
    lock = tmp_path / "run/.dhs/lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 1, "host": "some-other-node", "started": "t", "command": []}))
    assert main(["run", str(good(tmp_path))]) == 2
    assert "some-other-node" in capsys.readouterr().err


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    monkeypatch.setattr(SquareStage, "estimate_bytes", lambda self, spec: 10**12, raising=False)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2 * 10**12, 2 * 10**12 - 10**9, 10**9))
    assert main(["run", str(good(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "1.0 TB" in err and "--no-space-check" in err
    assert not (tmp_path / "run").exists()
    assert main(["run", str(good(tmp_path)), "--no-space-check"]) == 0


def test_artifacts_honour_the_umask(tmp_path):
    assert main(["run", str(good(tmp_path))]) == 0
    old = os.umask(0o022)
    os.umask(old)
    for name in ("run_info.json", "spec.resolved.toml", "square/values.json"):
        mode = stat.S_IMODE((tmp_path / "run" / name).stat().st_mode)
        assert mode == 0o666 & ~old, (name, oct(mode))


def test_force_passes_fresh_to_stages(tmp_path, monkeypatch):
    seen = []
    real = SquareStage.run

    def run(self, ctx):
        seen.append(ctx.fresh)
        return real(self, ctx)

    monkeypatch.setattr(SquareStage, "run", run)
    spec = good(tmp_path)
    assert main(["run", str(spec)]) == 0
    assert main(["run", str(spec), "--stage", "square"]) == 0
    assert main(["run", str(spec), "--force"]) == 0
    assert seen == [False, False, True]


@pytest.mark.parametrize("override, words", [
    ("square.scale=inf", "square.scale = inf: must be a finite number"),
    ("square.scale=nan", "must be a finite number"),
    ("run.name=..", "is not a run name"),
    ('square.weighting={ name = "fx_scaled", factor = nan }', "square.weighting.factor = nan"),
])
def test_bad_values_fail_validate_writing_nothing(tmp_path, capsys, override, words):
    spec = good(tmp_path)
    assert main(["validate", str(spec), "--set", override]) == 2
    assert words in capsys.readouterr().err
    assert main(["run", str(spec), "--set", override]) == 2
    assert not (tmp_path / "run").exists()


def test_unknown_executor_names_the_choices(tmp_path, capsys):
    assert main(["run", str(good(tmp_path)), "--executor", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown executor 'bogus'" in err and "local" in err


def test_run_help_names_the_executor_section(capsys):
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "replaces the spec's executor section" in text and "(replaces )" not in text


QUICKSTART_BAD = [  # (override, what the message must name): each of these once passed validate
    ("train.optimizer.lr=inf", "train.optimizer.lr"),
    ("train.optimizer.weight_decay=inf", "train.optimizer.weight_decay"),
    ("train.loss.tier_weights.A=nan", "train.loss.tier_weights.A = nan: must be a finite number"),
    ("preprocess.clip=inf", "preprocess.clip = inf: must be a finite number"),
    ("selection_function.theta_e.step=inf", "selection_function.theta_e.step = inf"),
    ("train.epochs=1000000000000", "train.epochs"),
    ("preprocess.annulus=[32, 20]", "0 <= r_in < r_out"),
    ("preprocess.annulus=[20, nan]", "0 <= r_in < r_out"),
    ("run.name=..", "is not a run name"),
    ('train.optimizer={ name = "adamw", lr = nan }', "train.optimizer.lr"),
]


@pytest.mark.parametrize("override, words", QUICKSTART_BAD)
def test_quickstart_bad_values_fail_validate(tmp_path, monkeypatch, capsys, override, words):
    from pathlib import Path

    quickstart = Path(__file__).resolve().parents[3] / "examples" / "quickstart.toml"
    if not quickstart.is_file():
        pytest.skip("examples/quickstart.toml is not beside this checkout")
    from dhs_core import plugins

    monkeypatch.delenv("DHS_DISABLE_PLUGINS", raising=False)  # the quickstart needs every dhs package
    plugins.reset()
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(quickstart), "--set", override]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "should be a valid dictionary" not in err
    assert list(tmp_path.iterdir()) == []
