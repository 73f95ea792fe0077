"""Helpers for the Markdown sections stages contribute to MODEL_CARD.md.

Every stage may return its own section from :meth:`dhs_core.stages.Stage.card_section`; these
helpers keep the sections alike whichever package writes them: a missing artifact is "Not run",
a present artifact without the field is "not recorded", and no default is printed that could be
mistaken for a measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

NOT_RUN = "Not run"


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load_json(path: Path) -> tuple[Any, str | None]:
    """``(value, None)`` for a readable JSON file, else ``(None, why)``: "Not run" when it is
    absent, "unreadable: <reason>" when it exists but cannot be parsed — a truncated or corrupt
    artifact is reported as such, never silently shown as a stage that did not run."""
    path = Path(path)
    if not path.is_file():
        return None, NOT_RUN
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {type(exc).__name__}: {exc}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; [] when it is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fmt(value: Any, digits: int = 4) -> str:
    """A number as a reader wants it in a table: fixed point in [1e-3, 1e4), else scientific."""
    if value is None:
        return "not defined"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.{digits - 1}e}"
    return str(value)


def kv_lines(table: Mapping[str, Any] | None, indent: str = "") -> list[str]:
    """Nested ``key = value`` bullets of a mapping ("not recorded" when empty)."""
    if not table:
        return [f"{indent}- not recorded"]
    out = []
    for k, v in table.items():
        if isinstance(v, dict):
            out.append(f"{indent}- `{k}`:")
            out += kv_lines(v, indent + "  ")
        else:
            out.append(f"{indent}- `{k}` = `{json.dumps(v)}`")
    return out


def field_table(rows: Sequence[tuple[str, Any]]) -> list[str]:
    """A two-column ``| field | value |`` table, the shape of every template section of the card.

    A value that is None or an empty string is written as "Not run": a reader must never meet
    a blank cell and wonder whether it means zero, unknown or not measured.
    """
    out = ["| field | value |", "|---|---|"]
    for name, value in rows:
        text = NOT_RUN if value is None or value == "" else (fmt(value) if isinstance(value, float) else str(value))
        out.append(f"| {name} | {escape_cell(text)} |")
    return out


def escape_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|").replace("\n", " ")


def compact(value: Any) -> str:
    """A config value on one line: ``{"name": "adamw", "lr": 0.002}`` becomes ``adamw, lr=0.002``."""
    if isinstance(value, dict):
        name = value.get("name")
        rest = ", ".join(f"{k}={compact(v)}" for k, v in value.items() if k != "name")
        return f"{name}, {rest}" if name and rest else (str(name) if name else rest or "none")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(compact(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (cells formatted by :func:`fmt`)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out
