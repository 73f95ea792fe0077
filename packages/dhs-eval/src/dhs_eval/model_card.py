"""MODEL_CARD.md of a run directory, in the published model-card template (docs/eval.md, "Model card").

The template is a set of short tables a reader scans for one number: identification,
architecture and hyperparameters, data, training run, validation metrics, evaluation metrics,
artifacts, steps to reproduce, and a verification checklist. The card is assembled, not
hard-coded: identification, artifacts, reproduction and the checklist belong to the run itself
(run_info.json, plugins.txt, the stages' declared artifacts); between them every enabled stage
contributes its own section through ``Stage.card_section(run_dir)``, in pipeline order — a stage
from a third-party package appears without any change here — followed by the spec's decision gates.

Every field is filled from the run's artifacts or says "Not run" (its source is absent) or
"unreadable: <reason>" (its source is damaged); nothing is left blank or filled with a default that
could be mistaken for a measurement. Long material (every stratum, every grid cell) goes to CSV
files the report writes and the card links.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any, Sequence

from dhs_core import layout
from dhs_core.cards import NOT_RUN, compact, escape_cell, field_table, load_json
from dhs_core.io import sha256_file
from dhs_eval.layout import EVALUATE_ARTIFACTS, MODEL_CARD, REPORT_HTML


def _optional_artifact(stage: str, key: str) -> str | None:
    """Another stage's artifact path, or None when that stage (or key) is not installed."""
    from dhs_core import artifact
    from dhs_core.errors import PluginError

    try:
        return artifact(stage, key)
    except PluginError:
        return None


def identification(run_dir: Path, info: dict | None, spec: dict, problem: str | None) -> list[str]:
    """Run ID, configuration and checkpoint with their hashes, seed and status."""
    lines = ["## Identification", ""]
    run = spec.get("run", {})
    if info is None:
        return lines + field_table([("Run ID", run_dir.name), (layout.RUN_INFO, problem)])
    best = _optional_artifact("train", "best")
    best_path = run_dir / best if best else None
    versions = info.get("versions") or {}
    return lines + field_table([
        ("Run ID", f"{run.get('name', info.get('run_name'))} (`{run_dir}`): {run.get('description') or 'no description'}"),
        ("Config", f"`{layout.RESOLVED_SPEC}` (spec SHA-256 `{info.get('spec_sha256')}`); "
                   f"source `{info.get('spec_path') or 'an in-memory spec'}`"),
        ("Checkpoint", f"`{best}` (SHA-256 `{sha256_file(best_path)}`)" if best_path and best_path.is_file() else None),
        ("Status", _status(info)),
        ("Packages and components", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k.startswith("dhs-") and v)
         + "; " + ", ".join(f"{p['name']} ({p['distribution']})" for p in info.get("plugins") or [])),
    ])


def _status(info: dict) -> str:
    """The run's outcome. While the report stage writes the card the run is still "running";
    then the card says whether every stage before it finished."""
    status, started = info.get("status"), info.get("started")
    stages = {k: (v or {}).get("status") for k, v in (info.get("stages") or {}).items() if k != "report"}
    if status == "running":
        pending = [k for k, v in stages.items() if v not in ("ran", "skipped")]
        return (f"finished (started {started}; every stage before the report ran or was up to date)" if not pending
                else f"running (started {started}; not finished: {', '.join(pending)})")
    return f"{status} (started {started}, finished {info.get('finished') or 'not recorded'})"


def stage_artifacts(stages: Sequence[Any]) -> list[str]:
    """What the enabled stages write, in pipeline order: each stage's ``produces`` and named
    ``artifacts`` (a third-party stage that names none still has its outputs listed)."""
    out: list[str] = []
    for comp in stages:
        for path in (*comp.impl.produces, *dict(getattr(comp.impl, "artifacts", {}) or {}).values()):
            if path not in out:
                out.append(path)
    return out


def artifacts(run_dir: Path, paths: Sequence[str]) -> list[str]:
    """One row per directory: each artifact with its size and the first 16 hex digits of its
    SHA-256 (full digests of the checkpoint and spec are in the identification table)."""
    lines = ["## Artifacts", "", "| directory | artifacts (bytes, SHA-256 prefix) |", "|---|---|"]
    groups: dict[str, list[str]] = {}
    for rel in [layout.RESOLVED_SPEC, layout.RUN_INFO, layout.PLUGINS_TXT, layout.LOG, *paths]:
        f = run_dir / rel
        folder, name = (rel.split("/", 1) if "/" in rel else (".", rel))
        if rel in (MODEL_CARD, REPORT_HTML):
            # the card cannot hash itself, nor the HTML report that embeds it
            item = f"[{name}]({rel}) (written with this card)"
        elif f.is_file():
            item = f"[{name}]({rel}) ({f.stat().st_size:,}, `{sha256_file(f)[:16]}`)"
        else:
            item = f"{name} ({NOT_RUN})"
        groups.setdefault(folder, []).append(item)
    lines += [f"| {folder}/ | {', '.join(items)} |" for folder, items in groups.items()]
    return lines


def reproduce_command(info: dict | None) -> str | None:
    """The recorded command line, as a shell would need it typed (quoted), or None."""
    cmd = list((info or {}).get("command") or [])
    if not cmd:
        return None
    if cmd and Path(cmd[0]).name in ("dhs", "__main__.py", "main.py"):
        cmd[0] = "dhs"
    return shlex.join(cmd)


def reproduce(run_dir: Path, info: dict | None, spec: dict) -> list[str]:
    pins_path = run_dir / layout.PLUGINS_TXT
    pins = pins_path.read_text().split() if pins_path.is_file() else []
    lock = (spec.get("run") or {}).get("lock")
    cmd = reproduce_command(info)
    lines = ["## Steps to reproduce", "", "```sh", f"cd {shlex.quote(str((info or {}).get('cwd') or '.'))}",
             f"pip install {' '.join(pins) if pins else '<dhs packages: not recorded>'}",
             cmd or f"dhs run {layout.RESOLVED_SPEC}", "```", ""]
    lines.append((f"Lock file `{lock}`: the run refused to start unless every pinned version matched. " if lock
                  else "No lock file (`dhs lock SPEC` writes one; `[run] lock` makes the run check it). ")
                 + f"The same configuration from this directory: `dhs run {run_dir / layout.RESOLVED_SPEC}` "
                 f"(spec SHA-256 `{(info or {}).get('spec_sha256', 'not recorded')}`); seeds derive from "
                 "`run.seed` and each stage name.")
    return lines


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def checklist(run_dir: Path, info: dict | None, stages: Sequence[Any], paths: Sequence[str]) -> list[tuple[str, str]]:
    """The template's verification checklist, each item computed from the run where it can be:
    ``(check, "pass: …" | "FAIL: …" | "Not run: …")``."""
    import tomllib

    out = []
    produced = [a for comp in stages for a in comp.impl.produces if a not in (MODEL_CARD, REPORT_HTML)]
    missing = [a for a in produced if not (run_dir / a).exists()]
    out.append(("Artifact paths exist", f"FAIL: missing {', '.join(missing)}" if missing
                else f"pass: {len(produced)}/{len(produced)} outputs of the enabled stages"))
    resolved = run_dir / layout.RESOLVED_SPEC
    if info is None or not resolved.is_file():
        out.append(("Config = what ran", f"Not run: no {layout.RUN_INFO} or {layout.RESOLVED_SPEC}"))
    else:
        # the recorded hash is over the resolved spec; the TOML copy must say the same thing
        # (TOML has no null, so unset options are compared as absent)
        recorded = info.get("spec_sha256")
        same_hash = _canonical(info.get("spec") or {}) == recorded
        try:
            same_file = _drop_none(tomllib.loads(resolved.read_text())) == _drop_none(info.get("spec") or {})
        except (OSError, ValueError) as exc:
            same_file, recorded = False, f"{layout.RESOLVED_SPEC} unreadable: {exc}"
        out.append(("Config = what ran", f"pass: {layout.RESOLVED_SPEC} matches spec SHA-256 {str(recorded)[:16]}…"
                    if same_hash and same_file else f"FAIL: {layout.RESOLVED_SPEC} / {layout.RUN_INFO} disagree"))
    out.append(("Counts match the manifest", _counts_check(run_dir)))
    data = ((info or {}).get("stages") or {}).get("data") or {}
    out.append(("Cutout sources and timestamps recorded",
                f"pass: data stage {data.get('started')} → {data.get('finished')}"
                if data.get("finished") else "Not run: the data stage did not finish in this run"))
    cmd = reproduce_command(info)
    out.append(("Copy-pastable command and cwd", f"pass: `{cmd}` in `{info.get('cwd')}`" if cmd and info and info.get("cwd")
                else "FAIL: command or working directory not recorded"))
    return out


def _counts_check(run_dir: Path) -> str:
    """Scored cutouts per split (evaluate/metrics.json) against the manifest's split counts."""
    manifest = _optional_artifact("data", "manifest")
    metrics, problem = load_json(run_dir / EVALUATE_ARTIFACTS["metrics"])
    if not manifest or not (run_dir / manifest).is_file():
        return "Not run: no manifest"
    if not isinstance(metrics, dict):
        return f"Not run: {EVALUATE_ARTIFACTS['metrics']} {problem or 'is not a JSON object'}"
    import pyarrow.parquet as pq

    splits = pq.read_table(run_dir / manifest, columns=["split"]).column("split").to_pylist()
    scored = (metrics.get("predictions") or {}).get("by_split") or {}
    bad = [f"{s}: {n} scored vs {splits.count(s)} in the manifest" for s, n in scored.items() if n != splits.count(s)]
    if not scored:
        return "Not run: no per-split counts in the evaluation"
    return ("FAIL: " + "; ".join(bad)) if bad else "pass: " + ", ".join(f"{s} {n:,}" for s, n in sorted(scored.items()))


def decision_gates(run_dir: Path, info: dict | None, stages: Sequence[Any]) -> list[str]:
    """The spec's ``[[gates]]`` against this run (docs/specs.md, "Decision gates"): computed by
    ``dhs_core.gates.evaluate`` over the stages' recorded headline metrics — the function and the
    numbers the runner uses for gates.json when the run ends, so the card and gates.json agree."""
    from dhs_core import gates

    lines = ["## Decision gates", ""]
    if info is None:
        return lines + [f"{NOT_RUN}: no readable {layout.RUN_INFO}, so the spec's gates are unknown."]
    entries = (info.get("spec") or {}).get("gates") or []
    if not entries:
        return lines + ["No gates in this spec (`[[gates]]` entries: metric, op, value)."]
    metrics = gates.run_metrics(run_dir, [c.name for c in stages])
    records = gates.evaluate(entries, metrics, run_dir)
    bad = [r for r in records if r["status"] != gates.PASS]
    verdict = (f"every gate passes ({len(records)}/{len(records)})" if not bad else
               f"{len(bad)} of {len(records)} gates did not pass: "
               + ", ".join(f"{r['name']} ({r['status']})" for r in bad))
    lines += [f"Verdict: **{verdict}**. `{layout.GATES}` records the same when the run ends.", "",
              "| gate | metric | observed | rule | status |", "|---|---|---|---|---|"]
    for r in records:
        cells = [r["name"], f"`{r['metric']}`", gates.shown(r), f"{r['op']} {r['value']:g}", r["status"].upper()]
        lines.append("| " + " | ".join(escape_cell(c) for c in cells) + " |")
    notes = []
    for r in records:
        text = [(r["description"] or "").strip(), f"{r['message']}." if r["status"] == gates.MISSING else ""]
        if any(text):
            notes.append(f"- **{r['name']}**: " + " ".join(t for t in text if t))
    return lines + ([""] + notes if notes else [])


def _blank_cells(text: str) -> int:
    """Table cells the card leaves empty (the checklist's "metrics filled" item)."""
    n = 0
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(\s*-*:?-+:?\s*\|)+", line):
            n += sum(1 for c in line.strip().strip("|").split(" | ") if not c.strip())
    return n


def render(run_dir: Path, stages: Sequence[Any]) -> str:
    """The model card of the run in ``run_dir``; ``stages`` are the enabled stage components in
    pipeline order, each asked for its ``card_section``."""
    run_dir = Path(run_dir)
    info, problem = load_json(run_dir / layout.RUN_INFO)
    info = info if isinstance(info, dict) else None
    spec = (info or {}).get("spec") or {}
    parts = [f"# Model card: {spec.get('run', {}).get('name', run_dir.name)}",
             "\n".join(identification(run_dir, info, spec, problem))]
    for comp in stages:
        try:
            text = comp.impl.card_section(run_dir)
        except Exception as exc:  # one stage's damaged artifact must not hide the rest of the card
            text = f"## {comp.name}\n\nunreadable: {type(exc).__name__}: {exc}"
        if text:
            parts.append(text.strip("\n"))
    try:
        parts.append("\n".join(decision_gates(run_dir, info, stages)))
    except Exception as exc:  # a damaged gate entry in run_info.json must not hide the rest of the card
        parts.append(f"## Decision gates\n\nunreadable: {type(exc).__name__}: {exc}")
    paths = stage_artifacts(stages)
    parts += ["\n".join(artifacts(run_dir, paths)), "\n".join(reproduce(run_dir, info, spec))]
    checks = checklist(run_dir, info, stages, paths)
    body = "\n\n".join(parts)
    blanks = _blank_cells(body)
    checks.append(("Every field filled or \"Not run\"", "pass: no blank table cell" if not blanks
                   else f"FAIL: {blanks} blank table cells"))
    table = ["## Verification checklist", "", "| check | result |", "|---|---|"]
    table += [f"| {name} | {result.replace('|', '/')} |" for name, result in checks]
    return body + "\n\n" + "\n".join(table) + "\n"


def describe(spec: dict) -> str:
    """One line naming the run's main choices (for comparisons)."""
    return compact({k: spec.get(k, {}).get("name") for k in ("data", "model") if spec.get(k)})
