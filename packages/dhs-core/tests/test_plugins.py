import pytest

from dhs_core import ComponentConfig, hookimpl, plugins
from dhs_core.errors import PluginError
from dhs_core.testing import FixturePlugin, registered


def test_builtin_executor_comes_from_entry_point():
    comp = plugins.components("executor")["local"]
    assert comp.distribution == "dhs-core"
    assert comp.version == __import__("dhs_core").__version__
    assert comp.kind == "executor"


def test_registered_components_record_distribution_and_version():
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.2.3"):
        comp = plugins.components("data_source")["fx_count"]
        assert (comp.distribution, comp.version, comp.plugin) == ("dhs-fixtures", "1.2.3", "fx")
        assert comp.summary == "count from 1"
    assert "fx_count" not in plugins.components("data_source")


class Dup:
    @hookimpl
    def register_data_sources(self, register):
        register("fx_count", object(), config=ComponentConfig)


def test_duplicate_names_name_both_distributions():
    with registered(FixturePlugin(), "fx", "dist-one", "1.0"), registered(Dup(), "dup", "dist-two", "2.0"):
        with pytest.raises(PluginError) as exc:
            plugins.components("data_source")
        msg = str(exc.value)
        assert "fx_count" in msg and "dist-one" in msg and "dist-two" in msg


class Misspelled:
    @hookimpl
    def register_architecure(self, register):  # typo: no such hook
        pass


def test_check_pending_rejects_unknown_hooks():
    with pytest.raises(PluginError, match="register_architecure"):
        plugins.register_plugin(Misspelled(), name="typo")
    assert plugins.get_plugin_manager().get_plugin("typo") is None


class LooseConfig:
    @hookimpl
    def register_losses(self, register):
        from pydantic import BaseModel

        class Loose(BaseModel):
            a: int = 1

        register("loose", object(), config=Loose)


def test_configs_must_be_frozen_and_forbid_extra():
    with registered(LooseConfig(), "loose"):
        with pytest.raises(PluginError, match="frozen"):
            plugins.components("loss")


def test_unknown_component_lists_valid_names():
    with pytest.raises(PluginError, match="valid choices: dask, local"):
        plugins.get("executor", "slurm", where="executor.name")


def test_disable_plugins_env_blocks_entry_points(monkeypatch):
    monkeypatch.setenv("DHS_DISABLE_PLUGINS", "dhs-core")
    plugins.reset()
    try:
        assert "local" not in plugins.components("executor")
        assert plugins.blocked(["dhs-core"]) == ["dhs-core"]
    finally:
        monkeypatch.delenv("DHS_DISABLE_PLUGINS")
        plugins.reset()
    assert "local" in plugins.components("executor")


def test_load_plugins_allowlist_skips_third_party(monkeypatch):
    import importlib.metadata as md

    class FakeDist:
        name = "dhs-third-party"
        version = "9.9"

    class FakeEP:
        name = "third"
        dist = FakeDist()

        def load(self):
            raise AssertionError("a third-party plugin must not be loaded in tests")

    real = md.entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [*real(group="dhs"), FakeEP()])
    monkeypatch.setenv("DHS_LOAD_PLUGINS", "builtin")
    plugins.reset()
    try:
        assert "local" in plugins.components("executor")
    finally:
        plugins.reset()


def test_bad_component_name_is_refused():
    class BadName:
        @hookimpl
        def register_losses(self, register):
            register("Bad Name", object(), config=ComponentConfig)

    with registered(BadName(), "badname"):
        with pytest.raises(PluginError, match="Bad Name"):
            plugins.components("loss")
