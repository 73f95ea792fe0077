"""Contract tests run over every evaluator dhs-eval registers (parametrized over the registry)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_eval._json import jsonable
from dhs_eval.evaluators.base import EvaluationContext

EVALUATORS = sorted(n for n, c in plugins.components("evaluator").items() if c.distribution == "dhs-eval")


def _predictions(n: int = 400, seed: int = 0, *, one_class: bool = False, nan: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    label = np.ones(n, np.int8) if one_class else (rng.random(n) < 0.3).astype(np.int8)
    score = 1 / (1 + np.exp(-(rng.normal(size=n) + 2.5 * label - 1.5)))
    score[:nan] = np.nan
    return pa.table({"galaxy_id": [f"g{i}" for i in range(n)], "split": rng.choice(["val", "test"], n),
                     "label": label, "score": score,
                     "tier": pa.array(np.where(label == 1, "A", None).tolist(), pa.string()),
                     "pool": pa.array(np.where(label == 0, "N1", None).tolist(), pa.string()),
                     "confuser_category": pa.array([None] * n, pa.string())})


def _make(name: str, **options):
    comp = plugins.get("evaluator", name)
    options = {"n_bootstrap": 20, **options} if "n_bootstrap" in comp.Config.model_fields else options
    return comp.impl(comp.Config(**options))


def test_dhs_eval_registers_evaluators():
    assert EVALUATORS == ["classification", "tier_a"]


@pytest.mark.parametrize("name", EVALUATORS)
def test_config_is_frozen_forbids_extras_and_documents_fields(name):
    comp = plugins.get("evaluator", name)
    with pytest.raises(ValidationError):
        comp.Config(no_such_option=1)
    cfg = comp.Config()
    with pytest.raises(ValidationError):  # frozen: a config cannot change after validation
        setattr(cfg, next(iter(comp.Config.model_fields)), None)
    assert comp.summary and comp.version


@pytest.mark.parametrize("name", EVALUATORS)
def test_returns_json_serialisable_results_and_float_headline(name, tmp_path):
    ev = _make(name)
    result = ev.evaluate(_predictions(), tmp_path, EvaluationContext(run_dir=tmp_path, seed=1))
    json.dumps(jsonable(result), allow_nan=False)
    headline = result.get("headline", {})
    assert all(isinstance(v, float) and np.isfinite(v) for v in headline.values())
    for fig in result.get("figures", []):
        assert (tmp_path / fig).is_file() and fig.startswith(name)


@pytest.mark.parametrize("name", EVALUATORS)
def test_is_deterministic_for_a_seed(name, tmp_path):
    preds = _predictions(seed=2)
    a = _make(name).evaluate(preds, tmp_path / "a", EvaluationContext(seed=5))
    b = _make(name).evaluate(preds, tmp_path / "b", EvaluationContext(seed=5))
    assert json.dumps(jsonable(a), sort_keys=True) == json.dumps(jsonable(b), sort_keys=True)


@pytest.mark.parametrize("name", EVALUATORS)
def test_one_class_input_is_not_defined_rather_than_a_number(name, tmp_path):
    result = _make(name).evaluate(_predictions(one_class=True), tmp_path, EvaluationContext())
    text = json.dumps(jsonable(result))
    assert "not defined" in text
    assert not any("auc" in k for k in result.get("headline", {}))


@pytest.mark.parametrize("name", EVALUATORS)
def test_missing_required_column_is_a_user_error(name, tmp_path):
    with pytest.raises(UserError, match="lacks column"):
        _make(name).evaluate(_predictions().drop(["label"]), tmp_path, EvaluationContext())


@pytest.mark.parametrize("name", EVALUATORS)
def test_empty_split_is_reported_not_failed(name, tmp_path):
    preds = _predictions()
    only_val = preds.filter(pa.compute.equal(preds.column("split"), "val"))
    result = _make(name).evaluate(only_val, tmp_path, EvaluationContext())
    assert "not run" in json.dumps(jsonable(result))
