"""Light registration ("module:attr" implementations), the one component builder, and stage input
hashes that follow the versions of the components a stage selects."""

from __future__ import annotations

import sys
import types

import pytest

import dhs_core
from dhs_core import plugins
from dhs_core.components import ComponentConfig
from dhs_core.errors import PluginError, SpecError
from dhs_core.hookspecs import hookimpl
from dhs_core.runner import plan
from dhs_core.stages import Stage, artifact
from dhs_core.testing import FixturePlugin, ScaledWeight, registered


class Factor(ComponentConfig):
    # multiplier
    factor: float = 2.0


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def test_string_implementation_is_imported_on_first_use(monkeypatch):
    def build(config):
        return ("built", config.factor)

    monkeypatch.setitem(sys.modules, "fx_lazy_impl", _module("fx_lazy_impl", build=build))

    class P:
        @hookimpl
        def register_losses(self, register):
            register("fx_lazy", "fx_lazy_impl:build", config=Factor, summary="lazy")

    with registered(P(), "fx-lazy", "dhs-lazy", "3.1"):
        comp = plugins.components("loss")["fx_lazy"]
        assert not comp.is_loaded and comp.impl_ref == "fx_lazy_impl:build"
        assert comp.summary == "lazy" and comp.distribution == "dhs-lazy"
        assert plugins.build("loss", {"name": "fx_lazy", "factor": 3.0}) == ("built", 3.0)
        assert comp.is_loaded and comp.impl is build


def test_unimportable_implementation_names_its_distribution():
    class P:
        @hookimpl
        def register_losses(self, register):
            register("fx_broken", "fx_no_such_module_anywhere:build", config=Factor)

    with registered(P(), "fx-broken", "dhs-broken", "0.7"):
        comp = plugins.components("loss")["fx_broken"]  # registering does not import
        with pytest.raises(PluginError, match=r"fx_broken.*dhs-broken 0\.7.*fx_no_such_module_anywhere:build"):
            _ = comp.impl


@pytest.mark.parametrize("ref", ["no_colon", "a:b:c", "pkg.mod:"])
def test_malformed_string_implementation_is_refused(ref):
    class P:
        @hookimpl
        def register_losses(self, register):
            register("fx_bad_ref", ref, config=Factor)

    with registered(P(), "fx-bad-ref", "dhs-bad", "1"):
        with pytest.raises(PluginError, match="module:attr|module.*attribute"):
            plugins.components("loss")


def test_string_implementation_needs_a_config():
    class P:
        @hookimpl
        def register_losses(self, register):
            register("fx_noconf", "fx_lazy_impl:build")

    with registered(P(), "fx-noconf", "dhs-noconf", "1"):
        with pytest.raises(PluginError, match="needs config="):
            plugins.components("loss")


def test_build_errors_name_source_path_and_choices():
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        with pytest.raises(SpecError, match=r"spec\.toml: square\.weighting\.name: unknown loss 'nope'; "
                                             r"valid choices: fx_plain, fx_scaled"):
            plugins.build("loss", {"name": "nope"}, where="square.weighting", source="spec.toml")
        with pytest.raises(SpecError, match=r"square\.weighting \(loss 'fx_scaled'\): invalid options: factor"):
            plugins.build("loss", {"name": "fx_scaled", "factor": "x"}, where="square.weighting")
        with pytest.raises(SpecError, match="missing 'name' selecting a loss"):
            plugins.build("loss", {"factor": 1.0}, where="square.weighting")
        comp, cfg = plugins.resolve("loss", "fx_scaled")
        assert comp.name == "fx_scaled" and cfg == ScaledWeight()


def _spec(tmp_path, factor=2.0):
    return {
        "run": {"name": "pipe", "seed": 5, "out_dir": str(tmp_path / "run")},
        "numbers": {"name": "fx_count", "n": 3},
        "square": {"weighting": {"name": "fx_scaled", "factor": factor}},
    }


def test_component_version_alone_changes_the_hash(tmp_path):
    from dhs_core.runner import input_hash
    from dhs_core.spec import load_spec

    class Weights:
        @hookimpl
        def register_losses(self, register):
            register("fx_scaled2", object(), config=Factor)

    class Stages:
        @hookimpl
        def register_stages(self, register):
            from dhs_core.testing import NumbersStage, SquareStage

            register("numbers", NumbersStage())
            register("square", SquareStage())

        @hookimpl
        def register_data_sources(self, register):
            from dhs_core.testing import CountSource

            register("fx_count", object(), config=CountSource)

        @hookimpl
        def register_losses(self, register):
            from dhs_core.testing import PlainWeight

            register("fx_plain", object(), config=PlainWeight)

    spec = dict(_spec(tmp_path), square={"weighting": {"name": "fx_scaled2", "factor": 2.0}})
    hashes = {}
    for version in ("1.0", "1.1"):
        with registered(Stages(), "fx-stages", "dhs-stages", "1.0"), registered(Weights(), "fx-w", "dhs-w", version):
            point = load_spec(spec)[0].spec
            stages = plugins.components("stage")
            hashes[version] = {n: input_hash(stages[n], point, {}) for n in ("numbers", "square")}
    assert hashes["1.0"]["numbers"] == hashes["1.1"]["numbers"]  # does not select fx_scaled2
    assert hashes["1.0"]["square"] != hashes["1.1"]["square"]


class CheckedStage(Stage):
    name = "checked"
    trigger = "square"
    artifacts = {"report": "checked/report.txt"}
    produces = ("checked/report.txt",)
    needs = ("square/values.json",)

    def check(self, spec, run_dir, source):
        if spec.square.scale < 0:
            raise SpecError(f"{source}: square.scale = {spec.square.scale}: must be >= 0 for stage 'checked'")

    def run(self, ctx):  # pragma: no cover - the check fails first
        raise AssertionError("must not run")


def test_stage_check_runs_before_anything_is_written(tmp_path):
    class P:
        @hookimpl
        def register_stages(self, register):
            register("checked", CheckedStage())

    bad = dict(_spec(tmp_path), square={"scale": -1.0})
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"), registered(P(), "fx-checked", "dhs-checked", "1"):
        with pytest.raises(SpecError, match=r"square\.scale = -1\.0: must be >= 0"):
            plan(bad)
        with pytest.raises(SpecError, match="must be >= 0"):
            dhs_core.run(bad)
        assert not (tmp_path / "run").exists()
        assert artifact("checked", "report") == "checked/report.txt"
        with pytest.raises(PluginError, match="declares no artifact 'nope'; it declares: report"):
            artifact("checked", "nope")
        with pytest.raises(PluginError, match="no stage 'ghost' is installed"):
            artifact("ghost", "x")


def test_plan_resolves_the_lock_relative_to_the_spec_file(tmp_path):
    from dhs_core.requirements import write_lock

    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        spec_dir = tmp_path / "specs"
        spec_dir.mkdir()
        write_lock(spec_dir / "pinned.lock.json")
        text = (
            '[run]\nname = "p"\nlock = "pinned.lock.json"\nout_dir = "%s"\n'
            '[numbers]\nname = "fx_count"\n' % (tmp_path / "out")
        )
        (spec_dir / "s.toml").write_text(text)
        p = plan(spec_dir / "s.toml")  # found beside the spec, not in the working directory
        assert [c.name for c in p.stages[0]] == ["numbers"]
        assert not (tmp_path / "out").exists()
