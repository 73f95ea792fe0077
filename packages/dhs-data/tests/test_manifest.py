import numpy as np
import pyarrow as pa
import pytest
from helpers import manifest_dict

from dhs_core.errors import UserError
from dhs_data.manifest import COLUMNS, SCHEMA, read_manifest, validate_manifest, write_manifest


def test_roundtrip_fills_optional_columns(tmp_path):
    d = {k: v for k, v in manifest_dict(5).items() if k in ("galaxy_id", "cutout_path", "ra", "dec", "label")}
    t = write_manifest(d, tmp_path / "m.parquet")
    assert tuple(t.column_names) == COLUMNS
    back = read_manifest(tmp_path / "m.parquet")
    assert back.column("sample_weight").to_pylist() == [1.0] * 5
    assert back.column("split").null_count == 5
    assert back.schema.field("label").type == SCHEMA.field("label").type


def test_extra_columns_kept(tmp_path):
    d = manifest_dict(4)
    d["host_id"] = ["a", "b", "c", "d"]
    t = validate_manifest(d)
    assert t.column_names[-1] == "host_id"


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.pop("label"), ["missing required column", "label"]),
        (lambda d: d.__setitem__("ra", ["x"] * 6), ["'ra'", "type string", "double"]),
        (lambda d: d["galaxy_id"].__setitem__(3, "g0001"), ["duplicate", "g0001", "rows 1, 3"]),
        (lambda d: d["label"].__setitem__(2, 2), ["'label'", "0 or 1", "[2]", "rows 2 (g0002)"]),
        (lambda d: d["label"].__setitem__(2, 300), ["'label'", "does not convert to int8", "300"]),
        (lambda d: d["tier"].__setitem__(0, "C"), ["'tier'", "A, B", "'C'"]),
        (lambda d: d["pool"].__setitem__(1, "N3"), ["'pool'", "N1, N2"]),
        (lambda d: d["dec"].__setitem__(5, 91.0), ["'dec'", "rows 5"]),
        (lambda d: d["ra"].__setitem__(0, np.nan), ["'ra'", "finite"]),
        (lambda d: d["sample_weight"].__setitem__(4, -1.0), ["sample_weight", ">= 0", "rows 4"]),
    ],
)
def test_bad_manifest_names_column_and_rows_and_writes_nothing(tmp_path, mutate, words):
    d = manifest_dict(6)
    d = {k: (list(v) if not isinstance(v, np.ndarray) else v.copy()) for k, v in d.items()}
    mutate(d)
    out = tmp_path / "m.parquet"
    with pytest.raises(UserError) as exc:
        write_manifest(d, out)
    for w in words:
        assert w in str(exc.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_every_problem_reported_at_once():
    d = manifest_dict(6)
    d["label"] = [0, 1, 2, 0, 0, 0]
    d["galaxy_id"] = ["a", "a", "b", "c", "d", "e"]
    msg = str(pytest.raises(UserError, validate_manifest, d).value)
    assert "label" in msg and "duplicate" in msg


def test_read_rejects_missing_and_non_parquet(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="not a readable parquet"):
        read_manifest(tmp_path / "bad.parquet")


def test_integer_float_columns_are_cast():
    d = manifest_dict(3)
    d["psfdepth_r"] = [1000, 2000, 3000]
    t = validate_manifest(pa.table(d))
    assert t.schema.field("psfdepth_r").type == pa.float64()
