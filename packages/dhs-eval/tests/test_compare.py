"""Run comparison on fixture runs: paired DeLong where the test cutouts are shared, refused with
the reason where they are not."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from fixture_plugin import fixture_stages
from scipy.stats import norm

import dhs_core
from dhs_core.errors import UserError


def _run(tmp, name, data_seed, score_seed):
    spec = {"run": {"name": name, "seed": 7, "out_dir": str(tmp / name)},
            "fixture_data": {"n": 600, "seed": data_seed}, "fixture_train": {"score_seed": score_seed, "n_nan": 0},
            "fixture_selection": {}, "evaluate": [{"name": "classification", "n_bootstrap": 50}]}
    return dhs_core.run(spec).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    with fixture_stages():
        yield {"a": _run(tmp, "a", 0, 1), "b": _run(tmp, "b", 0, 2), "c": _run(tmp, "c", 5, 1)}


def _naive_delong(y, s1, s2):
    """DeLong et al. (1988) written out with explicit pair loops: placement values of every
    positive against every negative, their covariance, and the two-sided normal p-value."""
    pos, neg = np.where(y == 1)[0], np.where(y == 0)[0]

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10, v01 = np.zeros((2, len(pos))), np.zeros((2, len(neg)))
    for r, s in enumerate((s1, s2)):
        for i, p in enumerate(pos):
            v10[r, i] = np.mean([psi(s[p], s[q]) for q in neg])
        for j, q in enumerate(neg):
            v01[r, j] = np.mean([psi(s[p], s[q]) for p in pos])
    auc = v10.mean(axis=1)
    cov = np.cov(v10) / len(pos) + np.cov(v01) / len(neg)
    z = (auc[0] - auc[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return z, 2 * norm.sf(abs(z)), auc


def test_paired_delong_when_the_test_cutouts_are_shared(runs, tmp_path):
    from dhs_eval.compare import write

    with fixture_stages():
        text, md, html = write([runs["a"], runs["b"]], tmp_path / "out")
    def test_rows(run):
        t = pq.read_table(run / "evaluate/predictions.parquet").to_pydict()
        rows = sorted((g, lab, s) for g, sp, lab, s in zip(t["galaxy_id"], t["split"], t["label"], t["score"])
                      if sp == "test")
        return np.array([r[1] for r in rows]), np.array([r[2] for r in rows])

    (ya, sa), (yb, sb) = test_rows(runs["a"]), test_rows(runs["b"])
    assert (ya == yb).all()
    z, p, auc = _naive_delong(ya, sa, sb)
    row = next(line for line in text.splitlines() if line.startswith("| a vs b |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[1].replace(",", "")) == len(ya)
    assert float(cells[2]) == pytest.approx(auc[0], abs=1e-4) and float(cells[3]) == pytest.approx(auc[1], abs=1e-4)
    assert float(cells[4]) == pytest.approx(z, abs=1e-3)
    assert float(cells[5]) == pytest.approx(p, rel=5e-3)
    # headline metrics side by side, each AUC with its bootstrap interval
    assert "| test ROC AUC [95 % CI] |" in text and text.count(" [0.") >= 2
    assert md.read_text() == text and "<table" in html.read_text()


def test_different_test_sets_are_not_paired(runs, tmp_path, capsys):
    from dhs_eval.compare import write

    with fixture_stages():
        text, _, html = write([runs["a"], runs["c"]], tmp_path / "out")
    row = next(line for line in text.splitlines() if line.startswith("| a vs c |"))
    assert "omitted: different test sets" in row
    assert "| test ROC AUC [95 % CI] |" in text  # the metrics are still shown
    assert "omitted: different test sets" in html.read_text()


def test_compare_refuses_what_is_not_a_run(runs, tmp_path):
    from dhs_eval.compare import compare

    with fixture_stages():
        with pytest.raises(UserError, match="is not a run directory"):
            compare([runs["a"], tmp_path])
        with pytest.raises(UserError, match="at least two"):
            compare([runs["a"]])


def test_a_sweep_comparison_uses_the_same_comparison(tmp_path):
    """A [sweep] over the score seed: comparison.md gets the runner's table and then the paired
    DeLong test of the points (same cutouts), from the same code as `dhs compare`."""
    spec = {"run": {"name": "sw", "seed": 7, "out_dir": str(tmp_path / "sweep")},
            "fixture_data": {"n": 600}, "fixture_train": {"n_nan": 0}, "fixture_selection": {},
            "evaluate": [{"name": "classification", "n_bootstrap": 20}],
            "sweep": {"fixture_train.score_seed": [1, 2]}}
    with fixture_stages():
        result = dhs_core.run(spec)
        from dhs_eval.compare import compare, markdown

        runs, pairs = compare([p.run_dir for p in result.points])
    text = (tmp_path / "sweep/comparison.md").read_text()
    assert text.startswith("# Sweep comparison\n\n| point |")
    pair = next(line for line in text.splitlines() if " vs " in line)
    assert "omitted" not in pair and pair in markdown(runs, pairs, None)
    assert "| test ROC AUC [95 % CI] |" in text
    assert (tmp_path / "sweep/compare_completeness_theta_e.png").is_file()
