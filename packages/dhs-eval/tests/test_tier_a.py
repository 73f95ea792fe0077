"""The ``tier_a`` evaluator: Tier-A lenses against all negatives, checked against scikit-learn,
scipy and a brute-force DeLong variance; and the model card's Tier-A rows computed by the same code."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from scipy import stats
from sklearn.metrics import roc_auc_score

from dhs_core import plugins
from dhs_core.errors import SpecError, UserError
from dhs_core.spec import load_spec
from dhs_eval import card
from dhs_eval._json import jsonable
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.layout import EVALUATE_ARTIFACTS


def _make(**options):
    comp = plugins.get("evaluator", "tier_a")
    return comp.impl(comp.Config(**{"n_bootstrap": 200, "plots": False, **options}))


def _predictions(seed: int = 0, n: int = 600) -> pa.Table:
    """Two splits; Tier-A, Tier-B and untiered positives; a few NaN scores in every group."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.3).astype(np.int8)
    tier = np.where(label == 1, rng.choice(np.array(["A", "B", None], dtype=object), n, p=[0.5, 0.4, 0.1]), None)
    score = 1 / (1 + np.exp(-(1.5 * rng.normal(size=n) + 3.0 * label - 2.0)))
    score[rng.choice(n, 12, replace=False)] = np.nan
    return pa.table({"galaxy_id": [f"g{i}" for i in range(n)], "split": rng.choice(["test", "val"], n),
                     "label": label, "score": score, "tier": pa.array(tier.tolist(), pa.string())})


def _groups(table: pa.Table, split: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Finite scores of the Tier-A lenses and negatives of ``split``, and their NaN counts."""
    d = table.to_pydict()
    rows = [(lab, t, s) for sp, lab, t, s in zip(d["split"], d["label"], d["tier"], d["score"]) if sp == split]
    a = np.array([s for lab, t, s in rows if lab == 1 and t == "A"], dtype=float)
    neg = np.array([s for lab, t, s in rows if lab == 0], dtype=float)
    return a[np.isfinite(a)], neg[np.isfinite(neg)], int(np.isnan(a).sum()), int(np.isnan(neg).sum())


def _jeffreys(k: int, n: int) -> tuple[float, float]:
    low = 0.0 if k == 0 else stats.beta.ppf(0.025, k + 0.5, n - k + 0.5)
    high = 1.0 if k == n else stats.beta.ppf(0.975, k + 0.5, n - k + 0.5)
    return low, high


def _delong_se_brute_force(pos: np.ndarray, neg: np.ndarray) -> float:
    """DeLong et al. (1988) from the m x n comparison matrix (ties count one half)."""
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)


def test_metrics_match_scikit_learn_scipy_and_a_brute_force_delong(tmp_path):
    preds = _predictions()
    result = _make().evaluate(preds, tmp_path, EvaluationContext(seed=3))
    assert result["status"] == "ok"
    for split in ("test", "val"):
        res = result["per_split"][split]
        a, neg, nan_a, nan_neg = _groups(preds, split)
        assert (res["n_tier_a"], res["n_negatives"]) == (a.size, neg.size)
        assert res["n_nan_scores"] == {"tier_a": nan_a, "negatives": nan_neg}
        auc = roc_auc_score(np.r_[np.ones(a.size), np.zeros(neg.size)], np.r_[a, neg])
        assert res["auc"] == pytest.approx(auc, abs=1e-12)
        se = _delong_se_brute_force(a, neg)
        assert res["auc_se_delong"] == pytest.approx(se, rel=1e-9)
        z = stats.norm.ppf(0.975)
        assert res["auc_delong_interval"] == pytest.approx([max(0, auc - z * se), min(1, auc + z * se)], rel=1e-9)
        boot = res["auc_bootstrap"]
        assert boot["n_resamples"] == 200 and boot["low"] < auc < boot["high"]
        for key, scores in (("recall", a), ("fpr", neg)):
            assert [r["threshold"] for r in res[key]] == [0.3, 0.5]
            for row in res[key]:
                k = int(np.sum(scores > row["threshold"]))  # detected: score > t, as "p > 0.3"
                assert (row["k"], row["n"], row["status"]) == (k, scores.size, "ok")
                assert row["estimate"] == pytest.approx(k / scores.size)
                assert (row["low"], row["high"]) == pytest.approx(_jeffreys(k, scores.size), rel=1e-9)
    # headline: exactly these keys, as the published protocol names the thresholds
    assert set(result["headline"]) == {f"{s}_{m}" for s in ("test", "val")
                                       for m in ("auc", "recall@p>0.3", "recall@p>0.5")}
    assert result["headline"]["test_recall@p>0.5"] == result["per_split"]["test"]["recall"][1]["estimate"]
    json.dumps(jsonable(result), allow_nan=False)


def test_tier_b_and_untiered_positives_do_not_enter():
    preds = _predictions(seed=1)
    d = preds.to_pydict()
    moved = [(-s if s == s else s) if (lab == 1 and t != "A") else s
             for lab, t, s in zip(d["label"], d["tier"], d["score"])]  # Tier-B scores pushed below 0
    other = preds.set_column(preds.column_names.index("score"), "score", pa.array(moved, pa.float64()))
    a = _make(n_bootstrap=0).evaluate(preds, None, EvaluationContext())
    b = _make(n_bootstrap=0).evaluate(other, None, EvaluationContext())
    assert json.dumps(jsonable(a)) == json.dumps(jsonable(b))


def test_exact_ties_count_one_half():
    # two Tier-A lenses and two negatives, all at 0.5: AUC 1/2, and none is detected at p > 0.5
    table = pa.table({"galaxy_id": list("abcd"), "split": ["test"] * 4, "label": [1, 1, 0, 0],
                      "score": [0.5] * 4, "tier": ["A", "A", None, None]})
    res = _make(n_bootstrap=0, thresholds=(0.5,)).evaluate(table, None, EvaluationContext())["per_split"]["test"]
    assert res["auc"] == 0.5 and res["recall"][0]["k"] == 0 and res["fpr"][0]["k"] == 0


def test_bootstrap_is_reproducible_for_a_seed_and_changes_with_it():
    preds = _predictions(seed=2)
    a = _make().evaluate(preds, None, EvaluationContext(seed=11))
    b = _make().evaluate(preds, None, EvaluationContext(seed=11))
    c = _make().evaluate(preds, None, EvaluationContext(seed=12))
    boot = [r["per_split"]["test"]["auc_bootstrap"] for r in (a, b, c)]
    assert boot[0] == boot[1]
    assert (boot[0]["low"], boot[0]["high"]) != (boot[2]["low"], boot[2]["high"])
    # the splits draw from different streams
    assert a["per_split"]["val"]["auc_bootstrap"]["low"] != boot[0]["low"]
    assert _make(n_bootstrap=0).evaluate(preds, None, EvaluationContext())["per_split"]["test"]["auc_bootstrap"] is None


def test_empty_groups_are_not_defined_and_stay_out_of_the_headline(tmp_path):
    preds = _predictions(seed=3)
    d = preds.to_pydict()
    # test split: no Tier-A lens (all demoted to B); val split: no negatives
    keep = [not (sp == "val" and lab == 0) for sp, lab in zip(d["split"], d["label"])]
    tiers = ["B" if (sp == "test" and t == "A") else t for sp, t in zip(d["split"], d["tier"])]
    table = preds.set_column(preds.column_names.index("tier"), "tier", pa.array(tiers, pa.string())).filter(
        pa.array(keep))
    result = _make(plots=True).evaluate(table, tmp_path, EvaluationContext())
    test, val = result["per_split"]["test"], result["per_split"]["val"]
    assert test["status"] == "not defined: no Tier-A positives with a finite score"
    assert math.isnan(test["auc"]) and test["auc_bootstrap"] is None and test["auc_delong_interval"] is None
    assert all(r["n"] == 0 and r["status"].startswith("not defined") and r["low"] is None for r in test["recall"])
    assert all(r["status"] == "ok" for r in test["fpr"])  # the negatives are still measured
    assert val["status"] == "not defined: no negatives with a finite score"
    assert all(r["status"] == "ok" for r in val["recall"]) and all(r["n"] == 0 for r in val["fpr"])
    assert set(result["headline"]) == {"val_recall@p>0.3", "val_recall@p>0.5"}
    assert (tmp_path / "tier_a.png").is_file() and result["figures"] == ["tier_a.png"]
    rows = result["card"]["tables"][0]["rows"]
    assert rows[0][0] == "test" and "not defined" in rows[0][4] and "not defined" in rows[0][6]


def test_missing_split_is_not_run_and_missing_tier_column_is_skipped(tmp_path):
    preds = _predictions()
    only_test = preds.filter(pa.compute.equal(preds.column("split"), "test"))
    result = _make().evaluate(only_test, tmp_path, EvaluationContext())
    assert result["per_split"]["val"] == {"status": "not run: no cutouts in split 'val'"}
    skipped = _make(plots=True).evaluate(preds.drop(["tier"]), tmp_path / "skip", EvaluationContext())
    assert skipped["status"].startswith("skipped: the predictions have no 'tier' column")
    assert skipped["headline"] == {} and skipped["figures"] == [] and skipped["per_split"] == {}
    assert not (tmp_path / "skip").exists()
    with pytest.raises(UserError, match="lacks column"):
        _make().evaluate(preds.drop(["score"]), tmp_path, EvaluationContext())


def test_other_thresholds_name_their_headline_keys():
    result = _make(thresholds=(0.25, 0.9), n_bootstrap=0).evaluate(_predictions(), None, EvaluationContext())
    assert {"test_recall@p>0.25", "test_recall@p>0.9"} <= set(result["headline"])


def test_published_baseline_count_gets_its_jeffreys_interval():
    # baseline_v1 test split: 29 of 48 Tier-A lenses above p = 0.5 (recall 0.6042)
    score = np.r_[np.full(29, 0.9), np.full(19, 0.1), np.linspace(0.0, 0.2, 100)]
    label = np.r_[np.ones(48, np.int8), np.zeros(100, np.int8)]
    table = pa.table({"galaxy_id": [str(i) for i in range(148)], "split": ["test"] * 148, "label": label,
                      "score": score, "tier": ["A"] * 48 + [None] * 100})
    row = _make(n_bootstrap=0).evaluate(table, None, EvaluationContext())["per_split"]["test"]["recall"][1]
    assert (row["k"], row["n"]) == (29, 48) and round(row["estimate"], 4) == 0.6042
    assert (row["low"], row["high"]) == pytest.approx(stats.beta.ppf([0.025, 0.975], 29.5, 19.5), rel=1e-9)


def test_model_card_tier_a_rows_are_the_evaluators_numbers(tmp_path):
    preds = _predictions(seed=4)
    path = tmp_path / EVALUATE_ARTIFACTS["predictions"]
    path.parent.mkdir(parents=True)
    pq.write_table(preds, path)
    result = _make(n_bootstrap=0).evaluate(preds, None, EvaluationContext())
    for split in ("test", "val"):
        ta = card.tier_a(tmp_path, split)
        ev = result["per_split"][split]
        assert ta["auc"] == ev["auc"] and ta["recall"] == ev["recall"] and ta["fpr"] == ev["fpr"]
    assert card.tier_a(tmp_path / "absent", "test") is None
    pq.write_table(preds.drop(["tier"]), path)
    assert card.tier_a(tmp_path, "test") is None


def test_config_contract_and_bad_options():
    comp = plugins.get("evaluator", "tier_a")
    assert comp.distribution == "dhs-eval"
    cfg = comp.Config()
    assert (cfg.splits, cfg.thresholds, cfg.n_bootstrap, cfg.level) == (("test", "val"), (0.3, 0.5), 2000, 0.95)
    with pytest.raises(ValidationError):
        comp.Config(no_such_option=1)
    with pytest.raises(ValidationError):
        cfg.n_bootstrap = 5
    for bad, message in (((), "at least one"), ((0.3, 1.5), "probabilities"), ((0.5, 0.5), "repeats")):
        with pytest.raises(ValidationError, match=message):
            comp.Config(thresholds=bad)
    with pytest.raises(SpecError, match=r"evaluate\.0\.thresholds.*probabilities"):
        load_spec({"run": {"name": "x"}, "evaluate": [{"name": "tier_a", "thresholds": [0.3, 2.0]}]})
