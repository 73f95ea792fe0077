"""The commands that only read specs and the registry answer without the heavy libraries.

``dhs --help``, ``dhs plugins``, ``dhs validate`` and ``dhs schema`` run in a fresh interpreter
with every built-in plugin installed; afterwards torch, matplotlib, scikit-learn and scipy must
be absent from ``sys.modules`` (registration imports only the torch-free ``Config`` modules;
implementations load when a run needs them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "matplotlib", "sklearn", "scipy")
BUILTINS = ("dhs_data", "dhs_models", "dhs_inject", "dhs_eval")

PROBE = """
import json, sys
from dhs_cli.main import main
code = main({argv!r})
print("\\n@@" + json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _run(argv: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DHS_DISABLE_PLUGINS"}
    env["DHS_LOAD_PLUGINS"] = "builtin"
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "@@" in proc.stdout, f"{argv}: no result\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.rsplit("@@", 1)[1])


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--requirements"],
                                  ["validate", "examples/quickstart.toml"], ["schema"]], ids=" ".join)
def test_read_only_commands_import_no_heavy_library(argv):
    import importlib.util

    missing = [m for m in BUILTINS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs every built-in package installed (missing {', '.join(missing)})")
    result = _run(argv)
    assert result["code"] == 0, result
    assert result["heavy"] == [], f"`dhs {' '.join(argv)}` imported {', '.join(result['heavy'])}"
