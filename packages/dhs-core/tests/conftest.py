import os

from dhs_core.testing import core_plugins_only  # noqa: F401  (autouse fixture)

# Tests never autoload third-party plugins that happen to be installed.
os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")
