"""The one inference path: checkpoint -> network -> training preprocessor -> scores."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from synthdata import data_section, make_survey

from dhs_core import run
from dhs_core.errors import UserError
from dhs_models import inference

PREPROCESS = {"name": "raw_robust", "annulus": [10, 16], "clip": 10.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    manifest = make_survey(root / "survey")
    out = root / "run"
    run({"run": {"name": "inf", "seed": 7, "out_dir": str(out)},
         "data": data_section(manifest),
         "preprocess": PREPROCESS,
         "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
         "train": {"epochs": 1, "micro_batch": 8, "effective_batch": 8}})
    return out


def test_unreadable_and_unsafe_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        inference.read_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable torch checkpoint"):
        inference.read_checkpoint(garbage)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": torch.nn.ReLU(), "architecture": {"name": "resnet18"}}, pickled)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(pickled.read_bytes()[:100])
    with pytest.raises(UserError, match="not a readable torch checkpoint"):
        inference.read_checkpoint(truncated)
    with pytest.raises(UserError, match="pickled code"):
        inference.read_checkpoint(pickled, what="train.init_weights")
    with pytest.raises(UserError, match="pickled code"):
        inference.load_finder(pickled)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(UserError, match="not a dhs checkpoint"):
        inference.read_checkpoint(foreign)


def test_finder_reproduces_the_train_stage_scores(trained):
    """best.pt alone (network through the registry, its own preprocessor) gives train/scores.parquet."""
    from dhs_data.datasets import CutoutDataset
    from dhs_data.stores import open_store

    finder = inference.load_finder(trained / "train" / "best.pt")
    assert finder.preprocess_section["name"] == "raw_robust" and finder.preprocess is not None
    assert finder.device == torch.device("cpu") and not finder.model.training
    scores = pq.read_table(trained / "train" / "scores.parquet").to_pydict()
    for split in ("val", "test"):
        ids, probs = inference.score_dataset(finder.model, CutoutDataset(trained / "data", split=split,
                                                                         preprocess=PREPROCESS), batch_size=8)
        want = [s for s, sp in zip(scores["score"], scores["split"]) if sp == split]
        assert ids == [g for g, sp in zip(scores["galaxy_id"], scores["split"]) if sp == split]
        assert probs.dtype == np.float64 and probs.tolist() == want  # bit for bit
    # raw cutouts from the store through the array path: the same scores (other batches)
    manifest = pq.read_table(trained / "data" / "manifest.parquet").to_pydict()
    path_of = dict(zip(manifest["galaxy_id"], manifest["cutout_path"]))
    images = open_store(trained / "data").get_many([path_of[g] for g in scores["galaxy_id"]])
    np.testing.assert_allclose(finder.score(images, batch_size=5), scores["score"], rtol=1e-5, atol=1e-7)


def test_finders_are_cached_per_file_and_device(trained):
    best = trained / "train" / "best.pt"
    finder = inference.load_finder(best)
    assert inference.load_finder(best, device=torch.device("cpu")) is finder
    assert inference.load_finder(best, device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_different_preprocessor_is_refused(trained):
    best = trained / "train" / "best.pt"
    # the same section with defaults left out (as a TOML file writes it) is the same preprocessor
    inference.load_finder(best, preprocess={"name": "raw_robust", "annulus": [10, 16]})
    with pytest.raises(UserError, match="preprocessed as in training"):
        inference.load_finder(best, preprocess={"name": "raw_robust", "annulus": [8, 16]})
    with pytest.raises(UserError, match="preprocessed as in training"):
        inference.load_finder(best, preprocess=None)


def test_nan_logits_give_nan_scores():
    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 1), float("nan"))

    scores = inference.score_images(Broken(), np.zeros((3, 3, 8, 8), np.float32), batch_size=2)
    assert scores.shape == (3,) and np.isnan(scores).all()


def test_registering_dhs_models_imports_no_torch():
    code = ("import sys, dhs_core.plugins as p; [c.Config for k in p.KINDS for c in p.components(k).values()]; "
            "[c.impl for c in p.components('stage').values()]; import dhs_models; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn', 'scipy', 'PIL') if m in sys.modules))")
    env = {**os.environ, "DHS_LOAD_PLUGINS": "builtin", "DHS_DISABLE_PLUGINS": "dhs-data,dhs-eval,dhs-inject"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
