import os

# Tests never autoload third-party plugins that happen to be installed.
os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")
