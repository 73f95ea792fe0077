"""Two tiny real runs shared by the browser and comparison tests (the whole pipeline at its
smallest: 160 synthetic hosts, 2 epochs, a 4-cell selection-function grid).

Run B trains with another seed on run A's manifest (``[data] name = "manifest"``), so the two
finders scored the same test cutouts and ``dhs compare`` can pair them; that is how two seeds of
one model are compared in practice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """
[run]
name = "{name}"
seed = {seed}
out_dir = "{out}"

[data]
{data}

[preprocess]
name = "raw_robust"
annulus = [20, 32]

[model]
name = "bottlenecked_resnet"

[train]
epochs = 2
micro_batch = 32
effective_batch = 32
optimizer = {{ name = "adamw", lr = 2e-3 }}

[[evaluate]]
name = "classification"
n_bootstrap = 200

[selection_function]
injector = {{ name = "model1", fast_kernel = false }}
theta_e = {{ start = 1.0, stop = 1.5, step = 0.5 }}
psfsize_r_edges = [0.9, 1.3, 1.8]
source_mag_edges = [20.5, 23.5]
per_cell = 3
target_fpr = 1e-1
host_split = "test"
qa = "warn"  # the pre-grid QA is tested in dhs-inject; here it must not stop the run
"""

SYNTHETIC = 'name = "synthetic"\nn_hosts = 160\nstamp = 64\npositive_fraction = 0.3'


def dhs(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DHS_LOAD_PLUGINS": "builtin", "MPLBACKEND": "Agg", "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-m", "dhs_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("tiny")
    (where / "a.toml").write_text(SPEC.format(name="tiny", seed=7, out="run_a", data=SYNTHETIC))
    dhs(where, "run", "a.toml")
    shared = f'name = "manifest"\npath = "{where / "run_a" / "data" / "manifest.parquet"}"'
    (where / "b.toml").write_text(SPEC.format(name="tiny", seed=8, out="run_b", data=shared))
    dhs(where, "run", "b.toml")
    return {"dir": where, "a": where / "run_a", "b": where / "run_b"}
