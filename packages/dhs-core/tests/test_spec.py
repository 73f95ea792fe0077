import json
import tomllib

import pytest

from dhs_core import spec as dspec
from dhs_core.errors import RequirementError, SpecError
from dhs_core.requirements import check_requires
from dhs_core.testing import FixturePlugin, registered
from dhs_core.tomlw import dumps


@pytest.fixture(autouse=True)
def fixture_plugin():
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


BASE = {"run": {"name": "t", "seed": 3}, "numbers": {"name": "fx_count", "n": 2}, "square": {}}


def load(data, overrides=()):
    return dspec.load_spec(data, overrides)


def test_discriminated_slots_validate_component_configs():
    (p,) = load({**BASE, "numbers": {"name": "fx_offset", "start": 5}, "square": {"weighting": {"name": "fx_scaled", "factor": 3}}})
    assert p.spec.numbers.name == "fx_offset" and p.spec.numbers.start == 5
    assert p.spec.square.weighting.factor == 3.0
    # the nested default is validated into the default component's Config
    (q,) = load(BASE)
    assert q.spec.square.weighting.name == "fx_plain"


@pytest.mark.parametrize(
    "data, expected",
    [
        ({**BASE, "numbers": {"name": "nope"}}, "numbers.name: unknown data_source 'nope'; valid choices: fx_count, fx_offset"),
        ({**BASE, "numbers": {"name": "fx_count", "m": 1}}, "numbers.m: unknown field 'm'"),
        ({**BASE, "numbers": {"name": "fx_count", "n": "many"}}, "numbers.n: Input should be a valid integer"),
        ({**BASE, "square": {"weighting": {"name": "zz"}}}, "square.weighting.name: unknown loss 'zz'; valid choices: "),
        ({**BASE, "bogus": {}}, "unknown section [bogus]"),
        ({**BASE, "numbers": {"n": 2}}, "numbers: missing 'name' selecting a data_source"),
        ({"numbers": {"name": "fx_count"}}, "missing required section [run]"),
        ({**BASE, "run": {"name": "t", "seed": "x"}}, "run.seed"),
        ({**BASE, "requires": {"dhs-core": "not a pin"}}, "not a PEP 440 version specifier"),
    ],
)
def test_bad_specs_name_the_path_and_valid_choices(data, expected):
    with pytest.raises(SpecError) as exc:
        load(data)
    assert expected in str(exc.value)
    if "valid choices" in expected:
        assert "fx_" in str(exc.value).split("valid choices:")[1]


def test_missing_required_section_of_enabled_stage():
    class Needy(FixturePlugin):
        pass

    from dhs_core import Section, Stage, hookimpl

    class NeedsStage(Stage):
        name = "needy"
        sections = {"needy": Section(dspec.RunSection), "needy_extra": Section(dspec.RunSection)}
        trigger = "needy"

    class P:
        @hookimpl
        def register_stages(self, register):
            register("needy", NeedsStage())

    with registered(P(), "needy"):
        with pytest.raises(SpecError, match=r"missing required section \[needy_extra\]"):
            load({**BASE, "needy": {"name": "x"}})


def test_malformed_toml_reports_line_and_column(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[run]\nname = "a"\nseed = = 3\n')
    with pytest.raises(SpecError, match=r"bad.toml: malformed TOML: .*line 3"):
        dspec.load_spec(f)


def test_overrides_are_typed_by_the_schema():
    (p,) = load(BASE, ["numbers.n=7", "run.name=123", "square.scale=2", "square.weighting={name='fx_scaled', factor=4.5}"])
    assert p.spec.numbers.n == 7
    assert p.spec.run.name == "123"  # a string field keeps the digits as text
    assert p.spec.square.scale == 2.0
    assert p.spec.square.weighting.factor == 4.5
    with pytest.raises(SpecError, match="numbers.n"):
        load(BASE, ["numbers.n=lots"])
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        load(BASE, ["numbers.n"])
    with pytest.raises(SpecError, match="numbers.nn: unknown field"):
        load(BASE, ["numbers.nn=1"])


def test_sweep_expands_to_the_grid_in_order():
    pts = load({**BASE, "sweep": {"numbers.n": [1, 2], "square.scale": [1.0, 3.0]}})
    assert [(p.spec.numbers.n, p.spec.square.scale) for p in pts] == [(1, 1.0), (1, 3.0), (2, 1.0), (2, 3.0)]
    assert pts[1].assignments == {"numbers.n": 1, "square.scale": 3.0}


def test_named_sweep_points_run_the_baseline_first():
    """An ablation matrix is a list of named points, not a product; the baseline runs first."""
    pts = load({**BASE, "sweep": {"baseline": "big", "points": [
        {"name": "small", "set": {"numbers.n": 1}},
        {"name": "big", "set": {"numbers.n": 5, "square.scale": 2.0}},
        {"name": "plain"},
    ]}})
    assert [p.name for p in pts] == ["big", "small", "plain"]
    assert [p.spec.numbers.n for p in pts] == [5, 1, 2] and pts[0].spec.square.scale == 2.0
    assert pts[2].assignments == {}
    # without a baseline the points keep their order
    assert [p.name for p in load({**BASE, "sweep": {"points": [{"name": "a"}, {"name": "b"}]}})] == ["a", "b"]


@pytest.mark.parametrize("sweep, match", [
    ({"baseline": "x", "points": [{"name": "a"}]}, "baseline = 'x' is not a point; points: a"),
    ({"baseline": "a", "numbers.n": [1, 2]}, "has no named points"),
    ({"points": [{"name": "a"}], "numbers.n": [1, 2]}, "both named points and axes"),
    ({"points": [{"name": "a"}, {"name": "a"}]}, "repeat: a"),
    ({"points": [{"set": {"numbers.n": 1}}]}, r"points\[0\] must be"),
    ({"points": [{"name": "a b"}]}, "letters, digits"),
    ({"points": []}, "non-empty list"),
    ({"points": [{"name": "a", "set": {"numbers.bogus": 1}}]}, "not a spec path"),
    ({"points": [{"name": "a", "set": {"numbers.n": "lots"}}]}, r"in sweep point a"),
])
def test_bad_named_sweeps_are_spec_errors(sweep, match):
    with pytest.raises(SpecError, match=match):
        load({**BASE, "sweep": sweep})


def test_sweep_key_that_is_not_a_spec_path():
    with pytest.raises(SpecError, match=r"\[sweep\] key 'numbers.bogus' is not a spec path"):
        load({**BASE, "sweep": {"numbers.bogus": [1, 2]}})
    with pytest.raises(SpecError, match=r"\[sweep\] key 'nosuch.x' is not a spec path"):
        load({**BASE, "sweep": {"nosuch.x": [1, 2]}})


def test_requires_pins(monkeypatch):
    check_requires({"dhs-core": ">=0.1,<0.2"})
    with pytest.raises(RequirementError, match="dhs-core >=9 is required but 0.1.0 is installed"):
        check_requires({"dhs-core": ">=9"})
    with pytest.raises(RequirementError, match="not installed"):
        check_requires({"no-such-distribution-xyz": ">=1"})


def test_json_schema_includes_installed_components():
    schema = json.dumps(dspec.json_schema())
    for name in ("fx_count", "fx_offset", "fx_scaled", "local"):
        assert name in schema


def test_resolved_spec_roundtrips_through_toml():
    (p,) = load({**BASE, "square": {"weighting": {"name": "fx_scaled"}}})
    text = dumps(dspec.resolved_dict(p.spec))
    (q,) = load(tomllib.loads(text))
    assert dspec.resolved_dict(q.spec) == dspec.resolved_dict(p.spec)
    assert dspec.spec_sha256(q.spec) == dspec.spec_sha256(p.spec)


def test_toml_writer_matches_tomllib():
    data = {
        "run": {"name": "x", "seed": 1},
        "a": {"b": {"c": [1, 2.5, "s"], "d": True}, "inline": [[20, 32], [32.5, 45]]},
        "evaluate": [{"name": "one"}, {"name": "two", "opts": {"k": 1}}],
        "sweep": {"preprocess.annulus": [[20, 32]]},
        "f": float("inf"),
    }
    assert tomllib.loads(dumps(data)) == data
