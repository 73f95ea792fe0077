"""The ``preprocessing_mismatch`` evaluator (published test Q2.4) end to end on a tiny synthetic run:
both scorings checked against scikit-learn, scipy and a brute-force DeLong test, the training
scoring against train/scores.parquet, and the refusals that keep mismatched preprocessing here only."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from scipy import stats
from sklearn.metrics import roc_auc_score

from dhs_core import plugins, run
from dhs_core.errors import UserError
from dhs_eval.evaluators.base import EvaluationContext

NAME = "preprocessing_mismatch"
TRAINING = {"name": "raw_robust", "annulus": [20, 32]}
# the outer ring of a 64-px stamp: the analogue, at this stamp size, of the published (32.5, 45)
MISMATCHED = {"name": "raw_robust", "annulus": [26, 32]}


@pytest.fixture(scope="module")
def mismatch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mismatch") / "run"
    spec = {
        "run": {"name": "mismatch", "seed": 5, "out_dir": str(out)},
        # the synthetic survey renders 64 or 101 px stamps only
        "data": {"name": "synthetic", "n_hosts": 200, "stamp": 64, "positive_fraction": 0.3},
        "preprocess": TRAINING,
        "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
        "train": {"epochs": 1, "micro_batch": 32, "effective_batch": 32, "cpu_threads": 1},
        "evaluate": [
            {"name": NAME, "preprocess": MISMATCHED, "splits": ["test", "val"], "batch_size": 16},
        ],
    }
    res = run(spec)
    evaluators = json.loads((out / "evaluate" / "metrics.json").read_text())["evaluators"]
    return res, out, evaluators


def _jeffreys(k: int, n: int) -> tuple[float, float]:
    low = 0.0 if k == 0 else stats.beta.ppf(0.025, k + 0.5, n - k + 0.5)
    high = 1.0 if k == n else stats.beta.ppf(0.975, k + 0.5, n - k + 0.5)
    return low, high


def _delong_brute_force(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """Paired DeLong test from the m x n comparison matrices (ties count one half): (z, p)."""
    v10, v01 = [], []
    for s in (s1, s2):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    cov = np.cov(v10) / len(v10[0]) + np.cov(v01) / len(v01[0])
    z = (np.mean(v10[0]) - np.mean(v10[1])) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return z, 2 * stats.norm.sf(abs(z))


def test_both_scorings_against_independent_references(mismatch_run):
    res, out, evaluators = mismatch_run
    pm = evaluators[NAME]
    assert pm["component"]["distribution"] == "dhs-inject" and pm["status"] == "ok"
    assert pm["training_preprocess"]["annulus"] == [20, 32] and pm["mismatched_preprocess"]["annulus"] == [26, 32]
    scores = pq.read_table(out / "evaluate" / pm["scores_file"]).to_pydict()
    y = np.asarray(scores["label"])
    train = np.asarray(scores["score_training_preprocess"])
    mis = np.asarray(scores["score_mismatched_preprocess"])
    # every held-out labelled cutout of test + val, scored once each way
    counts = pm["counts"]
    assert len(y) == counts["scored"] == counts["available_positives"] + counts["available_negatives"]
    assert set(scores["split"]) == {"test", "val"} and len(set(scores["galaxy_id"])) == len(y)
    assert np.isfinite(train).all() and np.isfinite(mis).all() and not np.array_equal(train, mis)
    assert (pm["n_paired"], pm["n_positives"]) == (len(y), int(y.sum()))
    auc_t, auc_m = roc_auc_score(y, train), roc_auc_score(y, mis)
    assert pm["auc_training_preprocess"] == pytest.approx(auc_t, abs=1e-12)
    assert pm["auc_mismatched_preprocess"] == pytest.approx(auc_m, abs=1e-12)
    assert pm["delta_auc"] == pytest.approx(auc_m - auc_t, abs=1e-12)
    z, p = _delong_brute_force(y, train, mis)
    assert (pm["delong_z"], pm["delong_p"]) == pytest.approx((z, p), rel=1e-6)
    assert [r["threshold"] for r in pm["thresholds"]] == [0.3, 0.5, 0.7]
    for row in pm["thresholds"]:
        t = row["threshold"]
        for key, s in (("training_preprocess", train), ("mismatched_preprocess", mis)):
            for rate, group in (("recall", s[y == 1]), ("fpr", s[y == 0])):
                entry = row[f"{rate}_{key}"]
                k = int(np.sum(group > t))  # detected: score > t
                assert (entry["k"], entry["n"]) == (k, group.size)
                assert (entry["low"], entry["high"]) == pytest.approx(_jeffreys(k, group.size), rel=1e-9)
        assert row["delta_recall"] == pytest.approx(np.mean(mis[y == 1] > t) - np.mean(train[y == 1] > t))
    assert pm["median_positive_score_training_preprocess"] == pytest.approx(np.median(train[y == 1]))
    assert pm["median_positive_score_mismatched_preprocess"] == pytest.approx(np.median(mis[y == 1]))
    assert pm["preprocessing_matters"] == (auc_t - auc_m > 0.002)
    # headline metrics of the run, named for the mismatched preprocessing
    prefix = f"evaluate.{NAME}."
    head = {k.removeprefix(prefix): v for k, v in res.metrics.items() if k.startswith(prefix)}
    assert set(head) == {"delta_auc", "auc_mismatched_preprocess", "delta_recall@p>0.3", "delta_recall@p>0.5",
                         "delta_recall@p>0.7"}
    assert head["delta_auc"] == pytest.approx(auc_m - auc_t)
    assert (out / "evaluate" / "preprocessing_mismatch.png").stat().st_size > 1000
    section = (out / "MODEL_CARD.md").read_text()
    section = section[section.index(f"### {NAME} "):]
    assert "**Training vs mismatched preprocessing" in section and "| mismatched preprocessing |" in section


def test_training_scores_are_the_train_stage_scores(mismatch_run):
    _, out, evaluators = mismatch_run
    ours = pq.read_table(out / "evaluate" / evaluators[NAME]["scores_file"]).to_pydict()
    theirs = pq.read_table(out / "train" / "scores.parquet").to_pydict()
    by_id = dict(zip(theirs["galaxy_id"], theirs["score"]))
    train = np.asarray(ours["score_training_preprocess"])
    reference = np.asarray([by_id[g] for g in ours["galaxy_id"]])
    # the Finder and the train stage read the same checkpoint and apply the same preprocessor per
    # cutout; on the CPU a cutout's float32 logit does not depend on the batch it is scored in, so the
    # two are bit-identical (the batches here differ: 16 test + val cutouts vs 32 of one split)
    assert np.array_equal(train, reference)


def test_n_max_draws_at_most_n_of_each_class_reproducibly(mismatch_run):
    _, out, _ = mismatch_run
    comp = plugins.get("evaluator", NAME)
    ev = comp.impl(comp.Config(preprocess=MISMATCHED, splits=("test", "val"), n_max=4, plots=False))

    def ids(seed: int, where: Path) -> list[str]:
        result = ev.evaluate(None, where, EvaluationContext(run_dir=out, seed=seed))
        assert result["counts"]["scored"] == 8 and (result["n_positives"], result["n_negatives"]) == (4, 4)
        assert result["figures"] == [] and not (where / "preprocessing_mismatch.png").exists()
        return pq.read_table(where / result["scores_file"]).column("galaxy_id").to_pylist()

    assert ids(1, out / "draw_a") == ids(1, out / "draw_b") != ids(2, out / "draw_c")


@pytest.mark.parametrize(("preprocess", "message"), [
    (TRAINING, "is the preprocessing the checkpoint was trained with"),
    # the same annulus through its preset name: same network inputs, refused as well
    ({"name": "raw_robust", "annulus": "stamp64"}, "gives the network exactly the inputs the training preprocessing"),
    # the published (32.5, 45) annulus does not fit a 64-px stamp
    ({"name": "raw_robust", "annulus": [32.5, 45]}, "cannot be applied to this run's 64x64-px cutouts.*does not fit"),
])
def test_refusals_name_the_spec_path(mismatch_run, tmp_path, preprocess, message):
    _, out, _ = mismatch_run
    comp = plugins.get("evaluator", NAME)
    ev = comp.impl(comp.Config(preprocess=preprocess))
    with pytest.raises(UserError, match=f"evaluate.{NAME}.preprocess.*{message}"):
        ev.evaluate(None, tmp_path, EvaluationContext(run_dir=out, seed=1))


def test_load_finder_still_refuses_a_mismatched_preprocess(mismatch_run):
    from dhs_models.inference import load_finder

    _, out, _ = mismatch_run
    finder = load_finder(out / "train" / "best.pt", preprocess=TRAINING)
    assert finder.preprocess_section["annulus"] == [20, 32]
    with pytest.raises(UserError, match="cutouts must be preprocessed as in training"):
        load_finder(out / "train" / "best.pt", preprocess=MISMATCHED)


def test_no_other_module_scores_with_a_preprocessor_that_is_not_the_checkpoints():
    """Every call of score_images outside preprocessing_mismatch passes the finder's own preprocessor."""
    import dhs_data
    import dhs_inject
    import dhs_models

    allowed = Path(dhs_inject.__file__).parent / "diagnostics" / "preprocessing_mismatch.py"
    calls = 0
    for package in (dhs_data, dhs_models, dhs_inject):
        for path in Path(package.__file__).parent.rglob("*.py"):
            if path == allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                func = getattr(node, "func", None)
                if isinstance(node, ast.Call) and getattr(func, "attr", getattr(func, "id", None)) == "score_images":
                    calls += 1
                    # the preprocessor a Finder was loaded with (finder.preprocess, self.preprocess)
                    given = [ast.unparse(k.value) for k in node.keywords if k.arg == "preprocess"]
                    assert len(given) == 1 and given[0].endswith(".preprocess"), (path, ast.unparse(node))
    assert calls >= 4  # the Finder itself, the selection cells, the gallery and the QA


def test_config_contract_and_bad_options():
    comp = plugins.get("evaluator", NAME)
    cfg = comp.Config()
    assert cfg.preprocess == {"name": "raw_robust", "annulus": [32.5, 45.0]}  # the published Q2.4 alternate
    assert (cfg.splits, cfg.n_max, cfg.thresholds, cfg.auc_drop_rule) == (("test",), None, (0.3, 0.5, 0.7), 0.002)
    with pytest.raises(ValidationError):
        comp.Config(no_such_option=1)
    with pytest.raises(ValidationError):
        cfg.n_max = 3
    for options in ({"thresholds": ()}, {"thresholds": (0.5, 1.0)}, {"n_max": 0}, {"auc_drop_rule": 0.0}):
        with pytest.raises(ValidationError):
            comp.Config(**options)
    with pytest.raises(UserError, match="run directory"):
        comp.impl(cfg).evaluate(None, Path("."), EvaluationContext())
