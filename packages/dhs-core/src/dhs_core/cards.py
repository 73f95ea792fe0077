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


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (cells formatted by :func:`fmt`)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out
