"""`dhs run --gates-fail` and the gate table, on the fixture pipeline (numbers -> square)."""

from __future__ import annotations

import json
import textwrap

import pytest

from dhs_cli.main import main
from dhs_core.testing import FixturePlugin, registered


@pytest.fixture(autouse=True)
def fixture_plugin():
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


def write_spec(tmp_path, total_at_least: float) -> str:
    # numbers 1, 2 squared and added: square.total = 5
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(f"""
        [run]
        name = "gated"
        out_dir = "{tmp_path / 'run'}"

        [numbers]
        name = "fx_count"
        n = 2

        [square]
        scale = 1.0

        [[gates]]
        name = "enough squares"
        metric = "square.total"
        op = ">="
        value = {total_at_least}

        [[gates]]
        metric = "square/values.json:1"
        op = "=="
        value = 4
    """))
    return str(path)


def test_failing_gate_exits_1_only_with_gates_fail(tmp_path, capsys):
    spec = write_spec(tmp_path, 6.0)
    assert main(["run", spec, "--gates-fail"]) == 1
    captured = capsys.readouterr()
    assert "decision gates" in captured.out and "enough squares" in captured.out and "FAIL" in captured.out
    assert "decision gates did not pass" in captured.err
    verdict = json.loads((tmp_path / "run/gates.json").read_text())
    assert verdict["passed"] is False and [g["status"] for g in verdict["gates"]] == ["fail", "pass"]
    # the same run without the flag: the table and a warning, exit 0 (stages are not rerun)
    assert main(["run", spec]) == 0
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "skipped" in captured.out
    assert "--gates-fail makes this exit 1" in captured.err


def test_passing_gates_exit_0_with_gates_fail(tmp_path, capsys):
    spec = write_spec(tmp_path, 5.0)  # boundary: 5 >= 5
    assert main(["run", spec, "--gates-fail"]) == 0
    captured = capsys.readouterr()
    assert "PASS" in captured.out and "FAIL" not in captured.out and "did not pass" not in captured.err
    assert json.loads((tmp_path / "run/gates.json").read_text())["passed"] is True


def test_missing_metric_fails_the_gate_and_says_why(tmp_path, capsys):
    spec = write_spec(tmp_path, 1.0)
    assert main(["run", spec, "--gates-fail", "--set", "gates.0.metric=square.totl"]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "close matches: square.total" in out


def test_validate_lists_gates_and_a_bad_gate_exits_2(tmp_path, capsys):
    spec = write_spec(tmp_path, 1.0)
    assert main(["validate", spec]) == 0
    out = capsys.readouterr().out
    assert "gates (2" in out and "enough squares: square.total >= 1" in out
    assert main(["validate", spec, "--set", "gates.0.metric=train.auc"]) == 2
    err = capsys.readouterr().err
    assert "gates[0].metric" in err and "numbers, square" in err
    assert not (tmp_path / "run").exists()
