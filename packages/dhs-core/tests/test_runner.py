import json
import subprocess
import sys
import textwrap
import tomllib

import pytest

import dhs_core
from dhs_core import plugins
from dhs_core.errors import RequirementError, SpecError, StageError
from dhs_core.requirements import write_lock
from dhs_core.testing import FixturePlugin, NumbersStage, SquareStage, registered


@pytest.fixture(autouse=True)
def fixture_plugin():
    NumbersStage.calls.clear()
    SquareStage.crash = False
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


def spec(tmp_path, **extra):
    return {
        "run": {"name": "pipe", "seed": 5, "out_dir": str(tmp_path / "run")},
        "numbers": {"name": "fx_count", "n": 3},
        "square": {"weighting": {"name": "fx_scaled", "factor": 2.0}},
        **extra,
    }


def test_two_stage_pipeline_end_to_end(tmp_path):
    res = dhs_core.run(spec(tmp_path))
    assert res.stages == {"numbers": "ran", "square": "ran"}
    assert NumbersStage.calls == ["numbers", "square"]
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "square/values.json").read_text()) == [2.0, 8.0, 18.0]
    assert res.metrics == {"numbers.count": 3.0, "square.total": 28.0}


def test_provenance_files(tmp_path):
    dhs_core.run(spec(tmp_path), command=["dhs", "run", "x.toml"])
    run_dir = tmp_path / "run"
    resolved = tomllib.loads((run_dir / "spec.resolved.toml").read_text())
    assert resolved["numbers"] == {"name": "fx_count", "n": 3}
    assert resolved["executor"] == {"name": "local", "workers": 1, "chunksize": 1}
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["spec"] == resolved
    assert len(info["spec_sha256"]) == 64
    assert info["command"] == ["dhs", "run", "x.toml"]
    assert info["versions"]["dhs-core"] == dhs_core.__version__
    used = {(p["kind"], p["name"]): p["distribution"] for p in info["plugins"]}
    assert used[("data_source", "fx_count")] == "dhs-fixtures"
    assert used[("loss", "fx_scaled")] == "dhs-fixtures"
    assert used[("executor", "local")] == "dhs-core"
    assert set(info["stages"]) == {"numbers", "square"}
    for st in info["stages"].values():
        assert st["status"] == "ran" and st["seconds"] >= 0 and st["started"] <= st["finished"]
    assert info["seeds"]["run"] == 5 and info["seeds"]["numbers"] == dhs_core.seeds.derive_seed(5, "numbers")
    assert info["status"] == "finished" and info["python"]
    assert info["host"]["hostname"]
    lines = (run_dir / "plugins.txt").read_text().split()
    assert "dhs-core==" + dhs_core.__version__ in lines and "dhs-fixtures==1.0" in lines


def test_rerun_skips_and_changes_rerun_downstream(tmp_path):
    dhs_core.run(spec(tmp_path))
    NumbersStage.calls.clear()
    res = dhs_core.run(spec(tmp_path))
    assert res.stages == {"numbers": "skipped", "square": "skipped"} and NumbersStage.calls == []
    assert res.metrics["square.total"] == 28.0  # headline metrics survive a skip
    # a change to a downstream section reruns only downstream
    res = dhs_core.run(spec(tmp_path), ["square.scale=2"])
    assert res.stages == {"numbers": "skipped", "square": "ran"}
    # a change upstream reruns both
    res = dhs_core.run(spec(tmp_path), ["numbers.n=4"])
    assert res.stages == {"numbers": "ran", "square": "ran"}
    # --force reruns all; --stage reruns only that stage, and downstream reruns next time
    assert dhs_core.run(spec(tmp_path), ["numbers.n=4"], force=True).stages == {"numbers": "ran", "square": "ran"}
    res = dhs_core.run(spec(tmp_path), ["numbers.n=4"], stages=["numbers"])
    assert res.stages == {"numbers": "ran", "square": "not selected"}
    assert dhs_core.run(spec(tmp_path), ["numbers.n=4"]).stages == {"numbers": "skipped", "square": "ran"}


def test_missing_output_is_not_skipped(tmp_path):
    dhs_core.run(spec(tmp_path))
    (tmp_path / "run/square/values.json").unlink()
    assert dhs_core.run(spec(tmp_path)).stages == {"numbers": "skipped", "square": "ran"}


def test_failed_stage_is_recorded_and_resumes(tmp_path):
    SquareStage.crash = True
    with pytest.raises(StageError, match="simulated crash in square"):
        dhs_core.run(spec(tmp_path))
    info = json.loads((tmp_path / "run/run_info.json").read_text())
    assert info["status"] == "failed" and info["stages"]["square"]["status"] == "failed"
    SquareStage.crash = False
    assert dhs_core.run(spec(tmp_path)).stages == {"numbers": "skipped", "square": "ran"}


def test_killed_after_stage_one_resumes_without_rerunning_it(tmp_path):
    """A real process death (os._exit) in stage 2; the rerun must skip stage 1."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(textwrap.dedent(f"""
        [run]
        name = "killed"
        out_dir = "{tmp_path / 'run'}"
        [numbers]
        name = "fx_count"
        n = 3
        [square]
        scale = 1.0
    """))
    script = textwrap.dedent(f"""
        import json, sys
        from dhs_core.testing import FixturePlugin, registered
        import dhs_core
        with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
            res = dhs_core.run({str(spec_file)!r})
            print(json.dumps(res.stages))
    """)
    import os

    env = {**os.environ, "DHS_FIXTURE_KILL": "square", "DHS_LOAD_PLUGINS": "builtin"}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == 137
    assert (tmp_path / "run/numbers/values.json").exists()
    assert not (tmp_path / "run/square/values.json").exists()
    env.pop("DHS_FIXTURE_KILL")
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1]) == {"numbers": "skipped", "square": "ran"}


def test_sweep_writes_a_run_per_point_and_comparison(tmp_path):
    res = dhs_core.run(spec(tmp_path, sweep={"numbers.n": [1, 2], "square.scale": [1.0, 3.0]}))
    assert len(res.points) == 4
    dirs = sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(dirs) == 4
    for p in res.points:
        assert (p.run_dir / "run_info.json").exists() and (p.run_dir / "square/values.json").exists()
    rows = (tmp_path / "run/comparison.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[:3] == ["point", "numbers.n", "square.scale"]
    assert len(rows) == 5
    totals = [float(r.split(",")[-1]) for r in rows[1:]]
    # n=1 -> [1] squared x2 weighting; n=2 -> [1, 4]; scale 1 or 3
    assert totals == [2.0, 6.0, 10.0, 30.0]
    assert "| point |" in (tmp_path / "run/comparison.md").read_text()


def test_named_sweep_points_are_run_directories_baseline_first(tmp_path):
    res = dhs_core.run(spec(tmp_path, sweep={"baseline": "base", "points": [
        {"name": "wide", "set": {"square.scale": 3.0}}, {"name": "base"}]}))
    assert [p.run_dir.name for p in res.points] == ["000_base", "001_wide"]
    rows = (tmp_path / "run/comparison.csv").read_text().strip().splitlines()
    assert rows[1].split(",")[2] == "000_base" and rows[2].split(",")[2] == "001_wide"


def test_stage_needing_an_unproduced_artifact_is_a_spec_error(tmp_path):
    data = spec(tmp_path)
    del data["numbers"]
    with pytest.raises(SpecError, match=r"stage 'square' needs numbers/values.json.*\[numbers\]"):
        dhs_core.run(data)
    assert not (tmp_path / "run").exists()


def test_unmet_pin_writes_nothing(tmp_path):
    with pytest.raises(RequirementError, match="dhs-core"):
        dhs_core.run(spec(tmp_path, requires={"dhs-core": ">=99"}))
    assert not (tmp_path / "run").exists()


def test_lock_file_mismatch_refuses(tmp_path):
    lock = tmp_path / "paper.lock.json"
    write_lock(lock)
    data = spec(tmp_path)
    data["run"]["lock"] = str(lock)
    dhs_core.run(data)
    content = json.loads(lock.read_text())
    content["packages"]["dhs-core"] = "0.0.1"
    lock.write_text(json.dumps(content))
    with pytest.raises(RequirementError, match=r"dhs-core==0.0.1 \(installed: "):
        dhs_core.run(data, force=True)


def test_unknown_stage_selection(tmp_path):
    with pytest.raises(SpecError, match="--stage nosuch: no such stage"):
        dhs_core.run(spec(tmp_path), stages=["nosuch"])


def test_lifecycle_hooks_fire(tmp_path):
    seen = []

    class Tracker:
        @dhs_core.hookimpl
        def dhs_run_started(self, run):
            seen.append(("started", run.name))

        @dhs_core.hookimpl
        def dhs_run_finished(self, run, results):
            seen.append(("finished", results["square.total"]))

    with registered(Tracker(), "tracker"):
        dhs_core.run(spec(tmp_path))
    assert seen == [("started", "pipe"), ("finished", 28.0)]
    assert plugins.get_plugin_manager().get_plugin("tracker") is None


def test_unhashed_section_is_checked_but_does_not_rerun(tmp_path):
    from dhs_core import ComponentConfig, Section, Stage, hookimpl, io

    class Label(ComponentConfig):
        # text written by the stage
        text: str = "a"

    class Note(ComponentConfig):
        # a value the stage only checks before a run
        limit: int = 1

    class LabelStage(Stage):
        name = "label"
        sections = {"label": Section(Label), "note": Section(Note, required=False, hashed=False)}
        trigger = "label"
        produces = ("label/out.json",)

        def check(self, spec, run_dir, source):
            if spec.note is not None and spec.note.limit > 5:
                raise SpecError(f"{source}: note.limit = {spec.note.limit} must be <= 5")

        def run(self, ctx):
            io.write_json(ctx.path("label/out.json"), ctx.spec.label.text)

    class Plugin:
        @hookimpl
        def register_stages(self, register):
            register("label", LabelStage())

    base = {"run": {"name": "l", "seed": 1, "out_dir": str(tmp_path / "run")}, "label": {}, "note": {"limit": 1}}
    with registered(Plugin(), "lbl", "dhs-label", "1.0"):
        assert dhs_core.run(base).stages["label"] == "ran"
        assert dhs_core.run(base, ["note.limit=2"]).stages["label"] == "skipped"
        assert dhs_core.run(base, ["label.text=b"]).stages["label"] == "ran"
        with pytest.raises(SpecError, match="note.limit = 6"):
            dhs_core.run(base, ["note.limit=6"])
