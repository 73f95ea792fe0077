"""Decision gates: evaluation, spec validation, and [[gates]] at the end of a run (fixture stages)."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

import dhs_core
from dhs_core import gates, layout
from dhs_core.errors import SpecError
from dhs_core.spec import json_schema, load_spec
from dhs_core.testing import FixturePlugin, NumbersStage, registered


@pytest.fixture(autouse=True)
def fixture_plugin():
    NumbersStage.calls.clear()
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


def gate(metric="evaluate.test_auc", op=">=", value=0.993, **extra):
    return gates.Gate(metric=metric, op=op, value=value, **extra)


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

# observed below, equal to and above the threshold 0.5, per comparator (written out by hand)
EXPECTED = {
    ">=": ("fail", "pass", "pass"),
    ">": ("fail", "fail", "pass"),
    "<=": ("pass", "pass", "fail"),
    "<": ("pass", "fail", "fail"),
    "==": ("fail", "pass", "fail"),
    "!=": ("pass", "fail", "pass"),
}


@pytest.mark.parametrize("op", sorted(EXPECTED))
def test_each_comparator_below_at_and_above_the_threshold(op):
    for observed, status in zip((0.25, 0.5, 0.75), EXPECTED[op]):
        record = gates.evaluate_gate(gate("square.total", op, 0.5), {"square.total": observed})
        assert record["status"] == status, (op, observed)
        assert record["observed"] == observed
        assert record["message"] == f"square.total = {observed:g} {op} 0.5: {status.upper()}"


def test_record_fields_and_the_log_line():
    named = gates.evaluate_gate(gate(name="test AUC", description="published"), {"evaluate.test_auc": 0.9951})
    assert named == {"name": "test AUC", "metric": "evaluate.test_auc", "op": ">=", "value": 0.993,
                     "observed": 0.9951, "status": "pass", "message": "evaluate.test_auc = 0.9951 >= 0.993: PASS",
                     "description": "published"}
    assert gates.log_line(named) == "gate test AUC: evaluate.test_auc = 0.9951 >= 0.993: PASS"
    unnamed = gates.evaluate_gate(gate(), {"evaluate.test_auc": 0.9})
    assert unnamed["name"] == "evaluate.test_auc" and unnamed["status"] == "fail"
    assert gates.log_line(unnamed) == "gate evaluate.test_auc = 0.9 >= 0.993: FAIL"


def test_rounding_never_shows_a_failing_value_equal_to_the_threshold():
    record = gates.evaluate_gate(gate(), {"evaluate.test_auc": 0.99299999})
    assert record["status"] == "fail"
    assert "0.99299999 >= 0.993" in record["message"]


def test_headline_keys_with_dots_and_signs_are_matched_whole():
    metrics = {"selection_function.mean_over_cells@p>=0.3": 0.08, "evaluate.tier_a.test_recall@p>0.3": 0.79,
               "evaluate.tier_a.test_recall@p>0.5": 0.70}
    records = gates.evaluate([
        {"metric": "selection_function.mean_over_cells@p>=0.3", "op": ">=", "value": 0.07},
        {"metric": "evaluate.tier_a.test_recall@p>0.3", "op": ">=", "value": 0.80},
        {"metric": "evaluate.tier_a.test_recall@p>0.5", "op": ">=", "value": 0.65},
    ], metrics)
    assert [(r["observed"], r["status"]) for r in records] == [(0.08, "pass"), (0.79, "fail"), (0.70, "pass")]
    assert not gates.passed(records)
    assert gates.summary(records)["counts"] == {"pass": 2, "fail": 1, "missing": 0}


def test_missing_metric_names_close_matches_and_never_passes():
    metrics = {"evaluate.test_auc": 0.99, "evaluate.val_auc": 0.98, "selection_function.completeness": 0.3}
    record = gates.evaluate_gate(gate("evaluate.tset_auc", "<", 1.0), metrics)
    assert record["status"] == "missing" and record["observed"] is None
    assert "no headline metric 'evaluate.tset_auc'" in record["message"]
    assert "close matches: evaluate.test_auc" in record["message"]
    # nothing close: the run's headline metrics are listed instead
    far = gates.evaluate_gate(gate("train.best_epoch", "!=", 0.0), metrics)
    assert far["status"] == "missing" and "evaluate.test_auc" in far["message"]
    assert "there are no headline metrics" in gates.evaluate_gate(gate(), {})["message"]
    assert not gates.passed([record]) and gates.passed([])


@pytest.mark.parametrize("raw", [None, math.nan, math.inf, -math.inf, "0.99", [0.99], {"auc": 0.99}])
def test_null_nan_infinite_and_non_numeric_values_are_missing(raw):
    # "!=" would pass for any real number: a value that is not one must still not pass
    record = gates.evaluate_gate(gate(op="!=", value=0.0), {"evaluate.test_auc": raw})
    assert record["status"] == "missing" and record["observed"] is None
    assert "MISSING" in record["message"] and "not measured" in record["message"]


def test_booleans_read_as_one_and_zero():
    assert gates.evaluate_gate(gate("numbers.qa_passed", "==", 1), {"numbers.qa_passed": True})["status"] == "pass"
    assert gates.evaluate_gate(gate("numbers.qa_passed", "==", 1), {"numbers.qa_passed": False})["status"] == "fail"


def test_json_file_metrics_with_list_indices_and_dotted_keys(tmp_path):
    doc = {"evaluators": {"classification": {"splits": {"test": {"auc": 0.995}, "val": {"auc": 0.97}}},
                          "tier_a": {"per_split": [{"split": "test", "test_recall@p>0.3": 0.81}]}},
           "bad": float("nan")}
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate/metrics.json").write_text(json.dumps(doc))
    f = "evaluate/metrics.json"

    def check(key, op=">=", value=0.8):
        return gates.evaluate_gate(gate(f"{f}:{key}", op, value), {}, tmp_path)

    test_auc = check("evaluators.classification.splits.test.auc")
    assert (test_auc["observed"], test_auc["status"]) == (0.995, "pass")
    assert check("evaluators.classification.splits.val.auc", ">=", 0.98)["status"] == "fail"
    # a list index, then a key that contains dots and signs
    assert check("evaluators.tier_a.per_split.0.test_recall@p>0.3")["observed"] == 0.81
    assert check("evaluators.tier_a.per_split.-1.test_recall@p>0.3")["status"] == "pass"
    out_of_range = check("evaluators.tier_a.per_split.3.test_recall@p>0.3")
    assert out_of_range["status"] == "missing" and "list of 1" in out_of_range["message"]
    typo = check("evaluators.classification.splits.tset.auc")
    assert typo["status"] == "missing"
    assert "no key 'tset' at evaluators.classification.splits" in typo["message"] and "test" in typo["message"]
    assert check("bad", "!=", 0.0)["status"] == "missing"
    assert check("evaluators.classification", "!=", 0.0)["status"] == "missing"  # a table, not a number
    absent = gates.evaluate_gate(gate("selection_function/meta.json:n_ok", ">", 0), {}, tmp_path)
    assert absent["status"] == "missing" and "no such file" in absent["message"]
    (tmp_path / "broken.json").write_text("{")
    assert "unreadable" in gates.evaluate_gate(gate("broken.json:a", ">", 0), {}, tmp_path)["message"]


def test_json_file_metric_that_escapes_the_run_directory_by_a_link_is_missing(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"auc": 1.0}')
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "link.json").symlink_to(outside)
    record = gates.evaluate_gate(gate("link.json:auc", ">=", 0.5), {}, run_dir)
    assert record["status"] == "missing" and "outside the run directory" in record["message"]


# ------------------------------------------------------------------------------------------------
# The spec
# ------------------------------------------------------------------------------------------------


def spec(tmp_path, gate_entries=(), **extra):
    return {
        "run": {"name": "gates", "seed": 5, "out_dir": str(tmp_path / "run")},
        "numbers": {"name": "fx_count", "n": 3},
        "square": {"weighting": {"name": "fx_scaled", "factor": 2.0}},
        "gates": list(gate_entries),
        **extra,
    }


OK = {"metric": "square.total", "op": ">=", "value": 1.0}


@pytest.mark.parametrize("bad, expected", [
    ({"op": "=>"}, r"gates\[1\]\.op: .*'>='.*got '=>'"),
    ({"value": math.inf}, r"gates\[1\]\.value: .*finite"),
    ({"value": math.nan}, r"gates\[1\]\.value: .*finite"),
    ({"metric": ""}, r"gates\[1\]\.metric: .*at least 1 character"),
    ({"metric": "auc"}, r"gates\[1\]\.metric: .*'auc' is not a headline metric '<stage>.<key>'"),
    ({"metric": "evaluate.test_auc"},
     r"gates\[1\]\.metric = 'evaluate\.test_auc': 'evaluate' is not a stage this spec enables.*numbers, square"),
    ({"metric": "square/values.csv:0"}, r"gates\[1\]\.metric: .*names a file but is not '<path"),
    ({"metric": "square/values.json"}, r"gates\[1\]\.metric: .*names a file but is not '<path"),
    ({"metric": "square/values.json.0"}, r"gates\[1\]\.metric: .*names a file but is not '<path"),
    ({"metric": "square/values.json:a..b"}, r"gates\[1\]\.metric: .*empty part"),
    ({"metric": "../other/metrics.json:auc"}, r"gates\[1\]\.metric: .*inside the run directory"),
    ({"metric": "/etc/metrics.json:auc"}, r"gates\[1\]\.metric: .*inside the run directory"),
    ({"threshold": 1.0}, r"gates\[1\]\.threshold: unknown field"),
])
def test_bad_gates_are_spec_errors_naming_the_entry(tmp_path, bad, expected):
    with pytest.raises(SpecError, match=expected):
        load_spec(spec(tmp_path, [OK, {**OK, **bad}]))


def test_missing_comparator_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"gates\[0\]\.op: required field is missing"):
        load_spec(spec(tmp_path, [{"metric": "square.total", "value": 1.0}]))


def test_gates_from_toml_with_overrides_and_in_the_schema(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(f"""
        [run]
        name = "gates"
        out_dir = "{tmp_path / 'run'}"
        [numbers]
        name = "fx_count"
        [square]

        [[gates]]
        name = "total"
        metric = "square.total"
        op = ">"
        value = 10
        description = "the squares add up"

        [[gates]]
        metric = "square/values.json:2"
        op = "<="
        value = 9
    """))
    (point,) = load_spec(path, ["gates.1.value=4.5"])
    assert [(g.label, g.metric, g.op, g.value) for g in point.spec.gates] == [
        ("total", "square.total", ">", 10.0), ("square/values.json:2", "square/values.json:2", "<=", 4.5)]
    assert point.spec.gates[0].description == "the squares add up"
    schema = json.dumps(json_schema())
    assert '"gates"' in schema and '"!="' in schema


def test_no_gates_by_default(tmp_path):
    data = spec(tmp_path)
    del data["gates"]
    assert load_spec(data)[0].spec.gates == []


# ------------------------------------------------------------------------------------------------
# End to end through the runner
# ------------------------------------------------------------------------------------------------

GATES = [
    {"name": "total", "metric": "square.total", "op": ">=", "value": 28.0},       # 2*(1+4+9) = 28: boundary
    {"metric": "numbers.count", "op": "==", "value": 4.0},                          # 3 numbers: fails
    {"metric": "square.totl", "op": ">", "value": 0.0},                             # typo: missing
    {"metric": "square/values.json:2", "op": "<", "value": 20.0},                   # 2 * 3^2 = 18
]


def test_gates_are_evaluated_written_and_logged_at_the_end_of_a_run(tmp_path):
    res = dhs_core.run(spec(tmp_path, GATES))
    run_dir = tmp_path / "run"
    assert [(g["name"], g["observed"], g["status"]) for g in res.gates] == [
        ("total", 28.0, "pass"), ("numbers.count", 3.0, "fail"), ("square.totl", None, "missing"),
        ("square/values.json:2", 18.0, "pass")]
    assert "close matches: square.total" in res.gates[2]["message"]
    assert res.gates_failed
    written = json.loads((run_dir / layout.GATES).read_text())
    assert written == {"passed": False, "counts": {"pass": 2, "fail": 1, "missing": 1}, "gates": res.gates}
    info = json.loads((run_dir / layout.RUN_INFO).read_text())
    assert info["status"] == "finished" and info["gates"] == res.gates
    log = (run_dir / layout.LOG).read_text()
    assert "gate total: square.total = 28 >= 28: PASS" in log
    assert "gate numbers.count = 3 == 4: FAIL" in log
    # the stage states give the same headline metrics the runner gathered (what the card reads)
    assert gates.run_metrics(run_dir, ["numbers", "square"]) == res.metrics


def test_changed_gates_are_re_evaluated_without_rerunning_a_stage(tmp_path):
    dhs_core.run(spec(tmp_path, GATES))
    NumbersStage.calls.clear()
    changed = [{"metric": "square.total", "op": ">", "value": 28.0}, {"metric": "numbers.count", "op": "==", "value": 3}]
    res = dhs_core.run(spec(tmp_path, changed))
    assert res.stages == {"numbers": "skipped", "square": "skipped"} and NumbersStage.calls == []
    assert [g["status"] for g in res.gates] == ["fail", "pass"]
    assert json.loads((tmp_path / "run" / layout.GATES).read_text())["counts"] == {"pass": 1, "fail": 1, "missing": 0}
    # all passing
    res = dhs_core.run(spec(tmp_path, changed[1:]))
    assert not res.gates_failed and json.loads((tmp_path / "run" / layout.GATES).read_text())["passed"] is True
    # without gates no verdict is left behind
    res = dhs_core.run(spec(tmp_path))
    assert res.gates == [] and not res.gates_failed and not (tmp_path / "run" / layout.GATES).exists()
    assert "gates" not in json.loads((tmp_path / "run" / layout.RUN_INFO).read_text())


def test_each_sweep_point_has_its_gates_and_the_sweep_knows_if_any_failed(tmp_path):
    # n = 2: 2*(1+4) = 10 fails; n = 3: 28 passes
    res = dhs_core.run(spec(tmp_path, [{"metric": "square.total", "op": ">=", "value": 20.0}],
                            sweep={"numbers.n": [2, 3]}))
    assert [p.gates[0]["status"] for p in res.points] == ["fail", "pass"]
    for point, verdict in zip(res.points, (False, True)):
        assert json.loads((point.run_dir / layout.GATES).read_text())["passed"] is verdict
    assert res.gates == [] and res.gates_failed
    assert not (res.run_dir / layout.GATES).exists()
