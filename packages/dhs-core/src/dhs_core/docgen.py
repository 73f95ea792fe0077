"""Generate the reference parts of docs/hooks.md from the code, so they cannot drift.

``docs/hooks.md`` keeps hand-written prose; the text between ``<!-- BEGIN GENERATED: name -->``
and ``<!-- END GENERATED: name -->`` markers is produced here: every hookspec with its exact
signature and docstring (``hooks``), and the stage protocol from :mod:`dhs_core.stages`
(``stages``). Regenerate with ``python -m dhs_core.docgen docs/hooks.md``; a test fails when the
file is not current.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

from dhs_core import hookspecs, stages

_BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
                    re.S)


def _hooks() -> list:
    return [f for f in vars(hookspecs).values() if inspect.isfunction(f) and hasattr(f, "dhs_spec")]


def _signature(fn) -> str:
    return f"{fn.__name__}{inspect.signature(fn)}".replace("'", "")


def _hook_section(fn) -> str:
    doc = inspect.cleandoc(fn.__doc__ or "")
    return f"### `{fn.__name__}`\n\n```python\n{_signature(fn)}\n```\n\n{doc}\n"


def render_hooks() -> str:
    registration = [f for f in _hooks() if f.__name__.startswith("register_")]
    lifecycle = [f for f in _hooks() if not f.__name__.startswith("register_")]
    parts = ["## Registration hooks\n"] + [_hook_section(f) for f in registration]
    parts += ["## Lifecycle hooks\n"] + [_hook_section(f) for f in lifecycle]
    return "\n".join(parts)


def render_stages() -> str:
    methods = [stages.Stage.run, stages.Stage.check, stages.Stage.card_section, stages.artifact]
    out = ["## The stage protocol\n", inspect.cleandoc(stages.__doc__ or "").split("\n", 1)[1].strip(), ""]
    for fn in methods:
        qual = fn.__qualname__
        sig = f"{qual}{inspect.signature(fn)}".replace("'", "")
        out += [f"### `{qual}`\n", f"```python\n{sig}\n```\n", textwrap.dedent(inspect.cleandoc(fn.__doc__ or "")), ""]
    return "\n".join(out)


RENDERERS = {"hooks": render_hooks, "stages": render_stages}


def regenerate(text: str) -> str:
    """``text`` with every generated block replaced by its current rendering."""
    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(RENDERERS)}")
        return f"{m.group(1)}{RENDERERS[name]().rstrip()}\n{m.group(4)}"

    return _BLOCK.sub(sub, text)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m dhs_core.docgen docs/hooks.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(regenerate(path.read_text()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
