import os
import signal

from dhs_core.testing import core_plugins_only  # noqa: F401  (autouse fixture)

# Tests never autoload third-party plugins that happen to be installed.
os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")


# A shell without job control starts background jobs with SIGINT ignored, and a Python started
# with SIGINT ignored installs no KeyboardInterrupt handler; the children these tests signal
# would then ignore SIGINT too. Give the test process (and so every child it starts) the normal
# disposition, as an interactive shell would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
