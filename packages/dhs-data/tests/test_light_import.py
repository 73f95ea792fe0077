"""Registering dhs-data's components and listing the CLI import none of the heavy libraries."""

import json
import os
import subprocess
import sys

HEAVY = ("torch", "scipy", "matplotlib", "sklearn", "healpy", "astropy", "pyarrow")

_REGISTER = """
import json, sys
import dhs_core.plugins as p
[c.Config for k in p.KINDS for c in p.components(k).values()]
[c.impl for c in p.components("stage").values()]
print(json.dumps([m for m in sys.argv[1:] if m in sys.modules]))
"""

_HELP = """
import json, sys
from dhs_cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print(json.dumps([m for m in sys.argv[1:] if m in sys.modules]))
"""


def _heavy_after(code):
    env = {**os.environ, "DHS_DISABLE_PLUGINS": "dhs-models,dhs-inject,dhs-eval", "DHS_LOAD_PLUGINS": "builtin"}
    out = subprocess.run([sys.executable, "-c", code, *HEAVY], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_registration_and_stage_object_are_light():
    assert _heavy_after(_REGISTER) == []


def test_dhs_help_is_light():
    assert _heavy_after(_HELP) == []
