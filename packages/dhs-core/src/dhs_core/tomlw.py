"""A small TOML writer for resolved specs (the standard library only reads TOML).

Covers what a resolved spec holds: tables, arrays of tables, strings, booleans, integers,
floats (including inf/nan), and arrays. ``None`` has no TOML form and is omitted.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

_BARE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_scalar(x) for x in v if x is not None) + "]"
    if isinstance(v, Mapping):
        items = [f"{_key(str(k))} = {_scalar(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, Mapping) for x in v)


def _emit(out: list[str], prefix: str, table: Mapping[str, Any], header: str | None) -> None:
    scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping) and not _is_table_array(v)]
    if header is not None and (scalars or not any(isinstance(v, Mapping) or _is_table_array(v) for v in table.values())):
        out.append(header)
    for k, v in scalars:
        out.append(f"{_key(str(k))} = {_scalar(v)}")
    if scalars or header is not None:
        out.append("")
    for k, v in table.items():
        path = f"{prefix}.{_key(str(k))}" if prefix else _key(str(k))
        if isinstance(v, Mapping):
            _emit(out, path, v, f"[{path}]")
        elif _is_table_array(v):
            for item in v:
                _emit(out, path, item, f"[[{path}]]")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for ``data``; ``tomllib.loads(dumps(d))`` equals ``d`` without its ``None``s."""
    out: list[str] = []
    _emit(out, "", data, None)
    text = "\n".join(out).strip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)
