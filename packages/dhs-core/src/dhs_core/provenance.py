"""Provenance files of a run directory: run_info.json, spec.resolved.toml, plugins.txt."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel

from dhs_core import io, layout, plugins, tomlw
from dhs_core.requirements import versions
from dhs_core.spec import Slot, resolved_dict, spec_sha256


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def git_commit(path: Path) -> dict[str, Any] | None:
    try:
        root = Path(path).resolve()
        commit = subprocess.run(
            ["git", "-C", str(root if root.is_dir() else root.parent), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root if root.is_dir() else root.parent), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def torch_info() -> dict[str, Any]:
    """torch/CUDA versions — only when a stage already imported torch (core never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        from dhs_core.requirements import installed_version

        return {"torch": installed_version("torch"), "cuda": None, "cuda_available": None}
    return {
        "torch": torch.__version__,
        "cuda": getattr(torch.version, "cuda", None),
        "cuda_available": bool(torch.cuda.is_available()),
    }


def components_in(spec: BaseModel, sections: Iterable[str]) -> dict[tuple[str, str], plugins.Component]:
    """Every component the given top-level ``sections`` of a spec select, at any depth of slots.

    ``"executor"`` is a section like any other. Stages are not included (they are not selected
    by a spec entry); the runner records them separately.
    """
    used: dict[tuple[str, str], plugins.Component] = {}
    data = resolved_dict(spec)
    owners = {sec: section for comp in plugins.components("stage").values()
              for sec, section in comp.impl.sections.items()}

    def visit(kind: str, value: Any) -> None:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and "name" in item and item["name"] in plugins.components(kind):
                comp = plugins.components(kind)[item["name"]]
                used[(kind, comp.name)] = comp
                walk_config(comp.Config, item)

    def walk_config(cfg: type[BaseModel], value: dict) -> None:
        for fname, finfo in cfg.model_fields.items():
            slot = next((m for m in finfo.metadata if isinstance(m, Slot)), None)
            if slot is not None and fname in value:
                visit(slot.kind, value[fname])
            elif isinstance(finfo.annotation, type) and issubclass(finfo.annotation, BaseModel) and isinstance(value.get(fname), dict):
                walk_config(finfo.annotation, value[fname])

    for sec in sections:
        if sec not in data:
            continue
        if sec == "executor":
            visit("executor", data[sec])
            continue
        section = owners.get(sec)
        if section is None:
            continue
        if isinstance(section.type, Slot):
            visit(section.type.kind, data[sec])
        elif isinstance(section.type, type) and issubclass(section.type, BaseModel):
            walk_config(section.type, data[sec])
    return used


def components_used(spec: BaseModel, stage_names: list[str]) -> list[dict[str, str]]:
    """Every component a spec selects (by walking its slots), plus the stages that run."""
    sections = {"executor"} | {sec for name in stage_names for sec in plugins.components("stage")[name].impl.sections}
    used = components_in(spec, sorted(sections))
    for name in stage_names:
        used[("stage", name)] = plugins.components("stage")[name]
    return [
        {"kind": c.kind, "name": c.name, "distribution": c.distribution, "version": c.version}
        for (_, _), c in sorted(used.items())
    ]


def requirements_lines() -> list[str]:
    """``name==version`` of every plugin distribution, read from installed-package metadata
    (no plugin module is imported to answer)."""
    return [f"{dist}=={ver}" for dist, ver in plugins.distribution_versions()]


def write_start(run: Any, stage_names: list[str]) -> dict[str, Any]:
    spec = run.spec
    io.write_text(run.run_dir / layout.RESOLVED_SPEC, tomlw.dumps(resolved_dict(spec)))
    io.write_text(run.run_dir / layout.PLUGINS_TXT, "\n".join(requirements_lines()) + "\n")
    from dhs_core.seeds import derive_seed

    info = {
        "run_name": spec.run.name,
        "spec": resolved_dict(spec),
        "spec_sha256": spec_sha256(spec),
        "spec_path": str(run.spec_path) if run.spec_path else None,
        "sweep_point": run.assignments or None,
        "versions": versions(),
        "plugins": components_used(spec, stage_names),
        "git": git_commit(run.spec_path or Path.cwd()),
        "command": list(run.command),
        "cwd": os.getcwd(),
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "user": _user(),
        },
        "python": platform.python_version(),
        **torch_info(),
        "seeds": {"run": spec.run.seed, **{s: derive_seed(spec.run.seed, s) for s in stage_names}},
        "started": now(),
        "finished": None,
        "status": "running",
        "stages": {},
    }
    io.write_json(run.run_dir / layout.RUN_INFO, info)
    return info


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return None
