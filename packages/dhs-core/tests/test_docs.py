"""docs/hooks.md must show every hookspec with its exact signature (like datasette's docs test)."""

import inspect
from pathlib import Path

import pytest

from dhs_core import hookspecs

DOC = Path(__file__).resolve().parents[3] / "docs" / "hooks.md"
HOOKS = [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "dhs_spec")]


def test_every_documented_hook_exists():
    design = {
        "register_data_sources", "register_preprocessors", "register_architectures", "register_losses",
        "register_injectors", "register_evaluators", "register_executors", "register_stages",
        "register_commands", "dhs_run_started", "dhs_epoch_end", "dhs_run_finished",
    }
    assert set(HOOKS) == design


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_signature(name):
    fn = getattr(hookspecs, name)
    signature = f"{name}{inspect.signature(fn)}".replace("'", "")
    text = DOC.read_text()
    assert signature in text, f"docs/hooks.md lacks the signature `{signature}`"
    assert fn.__doc__ and fn.__doc__.strip(), f"hookspec {name} has no docstring"


def test_generated_parts_of_hooks_md_are_current():
    from dhs_core import docgen

    text = DOC.read_text()
    assert "<!-- BEGIN GENERATED: hooks -->" in text and "<!-- BEGIN GENERATED: stages -->" in text
    assert docgen.regenerate(text) == text, "docs/hooks.md is stale: run `python -m dhs_core.docgen docs/hooks.md`"
