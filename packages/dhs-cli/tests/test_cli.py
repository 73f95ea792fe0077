import json
import textwrap

import pytest

from dhs_cli.main import main
from dhs_core import ComponentConfig, hookimpl
from dhs_core.testing import FixturePlugin, registered


@pytest.fixture(autouse=True)
def fixture_plugin():
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


def write_spec(tmp_path, body: str, name="spec.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
[run]
name = "cli"
seed = 1
out_dir = "{out}"

[numbers]
name = "fx_count"
n = 2

[square]
scale = 1.0
"""


def good(tmp_path, extra=""):
    return write_spec(tmp_path, GOOD.format(out=tmp_path / "run") + textwrap.dedent(extra))


def test_run_and_rerun(tmp_path, capsys):
    spec = good(tmp_path)
    assert main(["run", str(spec)]) == 0
    assert (tmp_path / "run/square/values.json").exists()
    info = json.loads((tmp_path / "run/run_info.json").read_text())
    assert info["command"][:2] == ["dhs", "run"] or info["command"][0] == "dhs"
    capsys.readouterr()
    assert main(["run", str(spec)]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["run", str(spec), "--stage", "square"]) == 0
    assert main(["run", str(spec), "--force", "--set", "square.scale=3", "--executor", "local"]) == 0
    assert json.loads((tmp_path / "run/square/values.json").read_text()) == [3.0, 12.0]


def test_validate_schema_plugins(tmp_path, capsys):
    assert main(["validate", str(good(tmp_path))]) == 0
    assert "valid" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "fx_count" in json.dumps(schema)
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    entry = next(c for c in listed if c["name"] == "fx_count")
    assert entry == {"kind": "data_source", "name": "fx_count", "distribution": "dhs-fixtures",
                     "version": "1.0", "summary": "count from 1"}
    assert {"local", "numbers", "square", "fx_scaled"} <= {c["name"] for c in listed}
    assert main(["plugins", "--requirements"]) == 0
    lines = capsys.readouterr().out.split()
    assert "dhs-fixtures==1.0" in lines and any(line.startswith("dhs-core==") for line in lines)
    assert main(["plugins"]) == 0
    assert "fx_count" in capsys.readouterr().out


def test_lock_and_mismatch(tmp_path, capsys):
    spec = good(tmp_path)
    assert main(["lock", str(spec), "-o", str(tmp_path / "paper.lock.json")]) == 0
    locked = good(tmp_path).read_text().replace('seed = 1', 'seed = 1\nlock = "paper.lock.json"')
    spec.write_text(locked)
    assert main(["run", str(spec)]) == 0
    lock = json.loads((tmp_path / "paper.lock.json").read_text())
    lock["packages"]["dhs-core"] = "0.0.0"
    (tmp_path / "paper.lock.json").write_text(json.dumps(lock))
    capsys.readouterr()
    assert main(["run", str(spec), "--force"]) == 2
    assert "do not match lock file" in capsys.readouterr().err


class Dup:
    @hookimpl
    def register_data_sources(self, register):
        register("fx_count", object(), config=ComponentConfig)


BAD = [
    ("unknown plugin", '[run]\nname="b"\n[numbers]\nname="nope"\n', "unknown data_source 'nope'; valid choices: fx_count, fx_offset"),
    ("unknown field", '[run]\nname="b"\n[numbers]\nname="fx_count"\ncolour=1\n', "numbers.colour: unknown field"),
    ("wrong type", '[run]\nname="b"\n[numbers]\nname="fx_count"\nn="three"\n', "numbers.n: Input should be a valid integer"),
    ("malformed toml", '[run]\nname="b"\n[numbers\n', "malformed TOML"),
    ("missing section", '[numbers]\nname="fx_count"\n', "missing required section [run]"),
    ("stage without its input", '[run]\nname="b"\n[square]\nscale=1.0\n', "stage 'square' needs numbers/values.json"),
    ("unmet pin", '[run]\nname="b"\n[requires]\ndhs-core=">=99"\n[numbers]\nname="fx_count"\n', "dhs-core >=99 is required but"),
    ("sweep key", '[run]\nname="b"\n[numbers]\nname="fx_count"\n[sweep]\n"numbers.bogus"=[1,2]\n', "[sweep] key 'numbers.bogus' is not a spec path"),
]


@pytest.mark.parametrize("label, body, message", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_exits_2_with_message_and_writes_nothing(tmp_path, capsys, monkeypatch, label, body, message, command):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, body)
    assert main([command, str(spec)]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_two_plugins_registering_one_name_exit_2(tmp_path, capsys):
    with registered(Dup(), "dup", "dhs-other", "2.0"):
        assert main(["run", str(good(tmp_path))]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "fx_count" in err and "dhs-fixtures" in err and "dhs-other" in err
    assert not (tmp_path / "run").exists()


def test_bad_set_and_usage(tmp_path, capsys):
    assert main(["run", str(good(tmp_path)), "--set", "numbers.n"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().err


def test_runtime_failure_exits_1(tmp_path, capsys):
    from dhs_core.testing import SquareStage

    SquareStage.crash = True
    try:
        assert main(["run", str(good(tmp_path))]) == 1
    finally:
        SquareStage.crash = False
    assert "simulated crash in square" in capsys.readouterr().err


def test_sweep_from_cli(tmp_path):
    spec = good(tmp_path, '\n[sweep]\n"numbers.n" = [1, 2]\n"square.scale" = [1.0, 2.0]\n')
    assert main(["run", str(spec)]) == 0
    assert len([d for d in (tmp_path / "run").iterdir() if d.is_dir() and not d.name.startswith(".")]) == 4
    assert (tmp_path / "run/comparison.csv").exists() and (tmp_path / "run/comparison.md").exists()


def test_plugins_table_fits_80_columns(capsys, monkeypatch):
    """Every line of `dhs plugins` fits an 80-column terminal; a long summary is cut with an
    ellipsis (the whole text stays in --json) and every component name is printed whole."""
    from dhs_cli import main as main_module

    monkeypatch.setattr(main_module.out, "_width", 80)
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    for comp in listed:
        assert any(comp["name"] in line.split() for line in lines), comp["name"]
        summary = " ".join(comp["summary"].split())
        row = next(line for line in lines if comp["name"] in line.split())
        # the summary is either whole or a prefix ending in an ellipsis
        shown = row.split(comp["version"], 1)[1].strip()
        assert shown == summary or (shown.endswith("…") and summary.startswith(shown[:-1])), (shown, summary)
