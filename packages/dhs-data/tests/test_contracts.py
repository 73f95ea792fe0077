"""Registry-parametrized contract tests over every dhs-data preprocessor and data source."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import make_data_dir
from pydantic import ValidationError
from test_legacysurvey import build_survey

from dhs_core import plugins, run
from dhs_data.manifest import COLUMNS


def _mine(kind):
    return sorted(n for n, c in plugins.components(kind).items() if c.distribution == "dhs-data")


def test_registered():
    assert _mine("preprocessor") == ["center_crop", "chain", "raw_robust"]
    assert _mine("data_source") == ["legacysurvey", "manifest"]
    assert plugins.components("stage")["data"].distribution == "dhs-data"


@pytest.mark.parametrize("name", _mine("preprocessor"))
@pytest.mark.parametrize("batched", [False, True])
def test_preprocessor_contract(name, batched):
    comp = plugins.get("preprocessor", name)
    fn = comp.impl(comp.Config())
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.01, (2, 3, 80, 80) if batched else (3, 80, 80)).astype(np.float32)
    y = fn(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert y.shape[:-2] == x.shape[:-2] and np.isfinite(y).all()
    if batched:
        np.testing.assert_array_equal(fn(x[1]), y[1])
    np.testing.assert_array_equal(fn(x), y)  # deterministic
    with pytest.raises(ValidationError):
        comp.Config(bogus=1)


def _source_spec(name, tmp_path):
    if name == "manifest":
        d, _ = make_data_dir(tmp_path / "src", 30, stamp=32, splits=False)
        return {"name": "manifest", "path": str(d / "manifest.parquet")}
    return build_survey(tmp_path / "survey")


@pytest.mark.parametrize("name", _mine("data_source"))
def test_data_source_contract(name, tmp_path):
    comp = plugins.get("data_source", name)
    assert "split" in comp.Config.model_fields
    res = run({"run": {"name": "c", "seed": 3, "out_dir": str(tmp_path / "run")}, "data": _source_spec(name, tmp_path)})
    data = res.run_dir / "data"
    m = pq.read_table(data / "manifest.parquet")
    assert tuple(m.column_names[: len(COLUMNS)]) == COLUMNS
    assert m.column("split").null_count == 0 and m.column("healpix_128").null_count == 0
    report = json.loads((data / "data_report.json").read_text())
    assert report["n_kept"] == m.num_rows > 0
    assert json.loads((data / "store.json").read_text())["format"] in ("npz", "fits", "shards")
