"""MODEL_CARD.md of a run directory, following the model-card template (Mitchell et al. 2019).

The card is assembled, not hard-coded: the parts that belong to the run itself come from
run_info.json and plugins.txt (identification, provenance, artifacts, steps to reproduce); between
them every enabled stage contributes its own section through ``Stage.card_section(run_dir)``, in
pipeline order. A stage from a third-party package therefore appears without any change here.

Every field is filled from the run's artifacts or says explicitly "Not run" (the artifact is
absent) or "not recorded" (the artifact exists but lacks the field). Nothing is filled with a
default that could be mistaken for a measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from dhs_core import layout
from dhs_core.cards import NOT_RUN, read_json
from dhs_core.io import sha256_file


def identification(info: dict | None, spec: dict) -> list[str]:
    """Run name, seed, provenance of the code and the machine it ran on."""
    run = spec.get("run", {})
    lines = ["## Identification", "", f"- Run name: `{run.get('name', 'not recorded')}`",
             f"- Description: {run.get('description') or 'not recorded'}", f"- Seed: `{run.get('seed')}`"]
    if not info:
        return lines + [f"- {layout.RUN_INFO}: not recorded"]
    host, git = info.get("host") or {}, info.get("git") or {}
    return lines + [
        f"- Started: {info.get('started')}", f"- Spec SHA-256: `{info.get('spec_sha256')}`",
        "- Package versions: " + ", ".join(f"{k}=={v}" for k, v in sorted((info.get("versions") or {}).items()) if v),
        "- Components: " + ", ".join(f"{p['kind']} `{p['name']}` ({p['distribution']} {p['version']})"
                                     for p in info.get("plugins") or []),
        f"- Host: {host.get('hostname', 'not recorded')} ({host.get('platform', '')}, {host.get('cpu_count')} CPUs)",
        f"- Python {info.get('python')}, torch {info.get('torch')}, CUDA {info.get('cuda')}",
        f"- Command: `{' '.join(info.get('command') or []) or 'not recorded'}`",
        f"- Git commit: `{git.get('commit', 'not recorded')}`{' (uncommitted changes)' if git.get('dirty') else ''}",
    ]


def stage_dirs(stages: Sequence[Any]) -> list[str]:
    """Top-level directories the stages write, in pipeline order (a stage's own name when it
    declares no file inside a directory)."""
    out: list[str] = []
    for comp in stages:
        stage = comp.impl
        paths = (*stage.produces, *dict(getattr(stage, "artifacts", {}) or {}).values())
        for d in [p.split("/")[0] for p in paths if "/" in p] or [comp.name]:
            if d not in out:
                out.append(d)
    return out


def artifacts(run_dir: Path, dirs: Sequence[str]) -> list[str]:
    lines = ["## Artifacts", "", "| file | bytes | SHA-256 |", "|---|---:|---|"]
    for name in dirs:
        d = run_dir / name
        if not d.is_dir():
            lines.append(f"| {name}/ | {NOT_RUN} | |")
            continue
        for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
            lines.append(f"| {name}/{f.name} | {f.stat().st_size:,} | `{sha256_file(f)[:16]}…` |")
    return lines


def reproduce(run_dir: Path, info: dict | None) -> list[str]:
    pins_path = run_dir / layout.PLUGINS_TXT
    pins = pins_path.read_text().split() if pins_path.is_file() else []
    return ["## Steps to reproduce", "", "```sh",
            f"pip install {' '.join(pins) if pins else '<dhs packages: not recorded>'}",
            f"dhs run {layout.RESOLVED_SPEC}   # spec SHA-256 {(info or {}).get('spec_sha256', 'not recorded')}",
            "```", "", f"Seeds are derived from `run.seed` and each stage name (recorded in {layout.RUN_INFO})."]


def render(run_dir: Path, stages: Sequence[Any]) -> str:
    """The model card of the run in ``run_dir``; ``stages`` are the enabled stage components in
    pipeline order, each asked for its ``card_section``."""
    info = read_json(run_dir / layout.RUN_INFO)
    spec = (info or {}).get("spec") or {}
    parts = [f"# Model card: {spec.get('run', {}).get('name', run_dir.name)}",
             "\n".join(identification(info, spec))]
    for comp in stages:
        text = comp.impl.card_section(run_dir)
        if text:
            parts.append(text.strip("\n"))
    parts += ["\n".join(artifacts(run_dir, stage_dirs(stages))), "\n".join(reproduce(run_dir, info))]
    return "\n\n".join(parts) + "\n"
