import os

import pytest

from dhs_core import plugins

# Tests never autoload third-party plugins that happen to be installed.
os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")

OTHER_BUILTINS = ",".join(d for d in plugins.BUILTIN_DISTRIBUTIONS if d not in ("dhs-core", "dhs-cli"))


@pytest.fixture(autouse=True)
def core_plugins_only(monkeypatch):
    """The fixture pipelines here must not pick up stages of other dhs packages (e.g. dhs-eval's
    always-on report stage) when everything is installed together (nox -s tests_all)."""
    monkeypatch.setenv("DHS_DISABLE_PLUGINS", OTHER_BUILTINS)
    plugins.reset()
    yield
    plugins.reset()
