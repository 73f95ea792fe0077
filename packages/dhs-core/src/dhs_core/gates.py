"""Decision gates: ``[[gates]]`` in a run spec, evaluated when the run ends (docs/specs.md, "Decision gates").

A gate is a rule a finished run must meet before its model is used — the GO/NO-GO criteria a
paper states ("test AUC >= 0.9930"). A gate's ``metric`` names one number of the run in one of
two forms:

* a headline metric as the runner collects them, ``<stage>.<key>`` (``evaluate.test_auc``,
  ``selection_function.mean_over_cells@p>=0.3``), matched as the whole key — keys contain dots
  and comparison signs, so the key is never split;
* ``<path>.json:<dotted.key.path>``, a value inside a JSON file of the run directory
  (``evaluate/metrics.json:evaluators.classification.splits.test.auc``); an integer part indexes
  a list, and a key that itself contains dots (``test_recall@p>0.3``) is matched whole.

Each gate evaluates to ``pass``, ``fail`` or ``missing`` (the metric is absent, null, not a finite
number, or not a number at all). A missing metric never passes: a gate on a number the run did
not measure must not be read as met. The runner and the model card both call :func:`evaluate`
(the card over :func:`run_metrics`, the stage states), so ``gates.json`` and the card agree.

Torch-free: ``dhs validate`` imports this module.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dhs_core import layout

#: the comparators a gate may use, as written in the spec
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}

#: ``<path>.json:<key path>``: the file part ends at the first ``.json:``
_JSON_METRIC = re.compile(r"^(?P<file>[^:]+\.json):(?P<key>.+)$")

PASS, FAIL, MISSING = "pass", "fail", "missing"


class Gate(BaseModel):
    """One ``[[gates]]`` entry: ``metric op value``, e.g. ``evaluate.test_auc >= 0.993``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # the number tested: a headline metric "<stage>.<key>" (the whole key, as `dhs run` prints it)
    # or "<path relative to the run directory>.json:<dotted.key.path>"
    metric: str = Field(min_length=1)
    # comparator: the gate passes when `observed <op> value`
    op: Literal[">=", ">", "<=", "<", "==", "!="]
    # threshold, in the metric's own units; must be finite
    value: float = Field(allow_inf_nan=False)
    # short label shown in logs, gates.json and the model card (default: the metric)
    name: str | None = Field(None, min_length=1)
    # what the gate decides and where its threshold comes from (shown in the model card)
    description: str | None = None

    @field_validator("metric")
    @classmethod
    def _metric_form(cls, metric: str) -> str:
        if metric != metric.strip():
            raise ValueError(f"{metric!r} has leading or trailing spaces")
        json_path(metric)  # raises for a malformed file metric
        if not is_file_metric(metric) and "." not in metric:
            raise ValueError(f"{metric!r} is not a headline metric '<stage>.<key>' (e.g. 'evaluate.test_auc') "
                             "nor a file metric '<path>.json:<key.path>'")
        return metric

    @property
    def label(self) -> str:
        return self.name or self.metric

    @property
    def rule(self) -> str:
        return f"{self.op} {self.value:g}"


def is_file_metric(metric: str) -> bool:
    """True for a metric that names a file of the run directory rather than a headline metric.

    Headline keys never contain ``:`` or ``/``; anything mentioning a ``.json`` file is meant as one.
    """
    return ":" in metric or "/" in metric or ".json" in metric


def json_path(metric: str) -> tuple[str, list[str]] | None:
    """``(file, key parts)`` of a file metric, None for a headline metric; ValueError when the
    metric names a file but not in the form ``<path>.json:<dotted.key.path>``."""
    if not is_file_metric(metric):
        return None
    example = "e.g. 'evaluate/metrics.json:evaluators.classification.splits.test.auc'"
    m = _JSON_METRIC.match(metric)
    if m is None:
        raise ValueError(f"{metric!r} names a file but is not '<path relative to the run directory>.json:"
                         f"<dotted.key.path>' ({example})")
    file, key = m["file"], m["key"]
    parts = PurePosixPath(file).parts
    if file.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", file):
        raise ValueError(f"{metric!r}: the file must be a path inside the run directory, relative to it")
    keys = key.split(".")
    if not all(k.strip() for k in keys):
        raise ValueError(f"{metric!r}: the key path {key!r} has an empty part ({example})")
    return file, keys


def headline_stage(metric: str) -> str | None:
    """The stage a headline metric ``<stage>.<key>`` belongs to (None for a file metric)."""
    return None if is_file_metric(metric) else metric.split(".", 1)[0]


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def run_metrics(run_dir: str | Path, stage_names: Iterable[str]) -> dict[str, Any]:
    """The headline metrics of a run directory, ``{"<stage>.<key>": value}``, as the runner
    collects them: each stage's ``metrics`` from its state file ``.dhs/stages/<stage>.json``
    (a stage without a readable state contributes nothing)."""
    out: dict[str, Any] = {}
    for stage in stage_names:
        try:
            state = json.loads((Path(run_dir) / layout.STATE_DIR / f"{stage}.json").read_text())
        except (OSError, ValueError):
            continue
        metrics = state.get("metrics") if isinstance(state, dict) else None
        out.update({f"{stage}.{k}": v for k, v in (metrics or {}).items()})
    return out


def _as_number(raw: Any) -> float | None:
    """A finite float, or None. ``true``/``false`` read as 1/0 (QA flags); strings are not numbers."""
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, (int, float)):
        value = float(raw)
        return value if math.isfinite(value) else None
    return None


def _suggest(wanted: str, choices: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(wanted, list(choices), n=3, cutoff=0.6)
    if close:
        return f"close matches: {', '.join(close)}"
    if not choices:
        return f"there are no {what}"
    shown = sorted(choices)[:8]
    return f"{what}: {', '.join(shown)}" + (f", ... ({len(choices)} in all)" if len(choices) > len(shown) else "")


def _lookup_json(doc: Any, keys: list[str]) -> tuple[bool, Any, str]:
    """Walk ``keys`` into ``doc``: ``(found, value, why not)``. A dict key that itself contains dots
    is matched whole (the longest run of parts that is a key wins); a digit part indexes a list."""
    cur, i, walked = doc, 0, []
    while i < len(keys):
        if isinstance(cur, Mapping):
            for j in range(len(keys), i, -1):
                key = ".".join(keys[i:j])
                if key in cur:
                    cur, walked, i = cur[key], [*walked, key], j
                    break
            else:
                where = ".".join(walked) or "the top level"
                return False, None, f"no key {keys[i]!r} at {where}; " + _suggest(keys[i], [str(k) for k in cur], "keys there")
        elif isinstance(cur, list):
            part = keys[i]
            if not re.fullmatch(r"-?\d+", part) or not -len(cur) <= int(part) < len(cur):
                return False, None, f"{'.'.join(walked)} is a list of {len(cur)}; {part!r} is not an index into it"
            cur, walked, i = cur[int(part)], [*walked, part], i + 1
        else:
            return False, None, f"{'.'.join(walked)} is a value ({cur!r}), not a table or list"
    return True, cur, ""


def _observe(metric: str, metrics: Mapping[str, Any], run_dir: Path | None) -> tuple[bool, Any, str]:
    """``(found, raw value, why not)`` of one metric."""
    parsed = json_path(metric)
    if parsed is None:
        if metric in metrics:
            return True, metrics[metric], ""
        return False, None, f"no headline metric {metric!r}; " + _suggest(metric, list(metrics), "headline metrics of this run")
    file, keys = parsed
    if run_dir is None:
        return False, None, f"{file}: no run directory to read it from"
    root = Path(run_dir).resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        return False, None, f"{file} resolves outside the run directory"
    if not path.is_file():
        return False, None, f"{file}: no such file in the run directory"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return False, None, f"{file}: unreadable: {type(exc).__name__}: {exc}"
    found, value, why = _lookup_json(doc, keys)
    return found, value, (f"{file}: {why}" if not found else "")


def shown(record: Mapping[str, Any]) -> str:
    """A record's observed value as text: 6 significant digits unless rounding would flip the
    comparison a reader makes (0.99299996 shown as 0.993 next to ">= 0.993: FAIL"); "not measured"
    for a missing one."""
    observed, op, value = record["observed"], OPS[record["op"]], record["value"]
    if observed is None:
        return "not measured"
    short = f"{observed:.6g}"
    return short if op(float(short), value) == op(observed, value) else repr(observed)


def evaluate_gate(gate: Gate, metrics: Mapping[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """One gate's record: name, metric, op, value, observed (float or None), status
    ("pass" | "fail" | "missing"), message and description."""
    found, raw, why = _observe(gate.metric, metrics, Path(run_dir) if run_dir is not None else None)
    observed = _as_number(raw) if found else None
    if not found:
        status, message = MISSING, f"{gate.metric}: MISSING ({why})"
    elif observed is None:
        what = "null" if raw is None else ("not a finite number" if isinstance(raw, (int, float)) else
                                           f"not a number ({type(raw).__name__})")
        status, message = MISSING, f"{gate.metric} = {raw!r}: MISSING ({what}: not measured)"
    else:
        status = PASS if OPS[gate.op](observed, gate.value) else FAIL
        message = ""
    record = {"name": gate.label, "metric": gate.metric, "op": gate.op, "value": gate.value, "observed": observed,
              "status": status, "message": message, "description": gate.description}
    if status != MISSING:
        record["message"] = f"{gate.metric} = {shown(record)} {gate.rule}: {status.upper()}"
    return record


def evaluate(gates: Iterable[Gate | Mapping[str, Any]], metrics: Mapping[str, Any],
             run_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Evaluate every gate over headline ``metrics`` (``RunResult.metrics``, or :func:`run_metrics`)
    and, for file metrics, the JSON files of ``run_dir``."""
    return [evaluate_gate(g if isinstance(g, Gate) else Gate.model_validate(g), metrics, run_dir) for g in gates]


def passed(records: Iterable[Mapping[str, Any]]) -> bool:
    """True when every gate passed (a missing metric is not a pass); True for no gates."""
    return all(r["status"] == PASS for r in records)


def summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``gates.json`` holds: the verdict, counts per status, and every gate's record."""
    counts = {s: sum(r["status"] == s for r in records) for s in (PASS, FAIL, MISSING)}
    return {"passed": passed(records), "counts": counts, "gates": list(records)}


def log_line(record: Mapping[str, Any]) -> str:
    """``gate <name>: <metric> = <observed> >= <value>: PASS`` (the name is left out when it is the metric)."""
    if record["name"] == record["metric"]:
        return f"gate {record['message']}"
    return f"gate {record['name']}: {record['message']}"
