"""Provenance files of a run directory (DESIGN.md §4): run_info.json, spec.resolved.toml, plugins.txt."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dhs_core import io, plugins, tomlw
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


def components_used(spec: BaseModel, stage_names: list[str]) -> list[dict[str, str]]:
    """Every component a spec selects (by walking its slots), plus the stages that run."""
    used: dict[tuple[str, str], plugins.Component] = {}
    data = resolved_dict(spec)

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

    visit("executor", data.get("executor"))
    for name in stage_names:
        comp = plugins.components("stage")[name]
        used[("stage", name)] = comp
        for sec, section in comp.impl.sections.items():
            if sec not in data:
                continue
            if isinstance(section.type, Slot):
                visit(section.type.kind, data[sec])
            elif isinstance(section.type, type) and issubclass(section.type, BaseModel):
                walk_config(section.type, data[sec])
    return [
        {"kind": c.kind, "name": c.name, "distribution": c.distribution, "version": c.version}
        for (_, _), c in sorted(used.items())
    ]


def requirements_lines() -> list[str]:
    return [f"{dist}=={ver}" for dist, ver in sorted({(d, v) for _, d, v in plugins.plugin_distributions()})]


def write_start(run: Any, stage_names: list[str]) -> dict[str, Any]:
    spec = run.spec
    io.write_text(run.run_dir / "spec.resolved.toml", tomlw.dumps(resolved_dict(spec)))
    io.write_text(run.run_dir / "plugins.txt", "\n".join(requirements_lines()) + "\n")
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
    io.write_json(run.run_dir / "run_info.json", info)
    return info


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return None
