"""Version pins: ``[requires]`` PEP 440 specifiers and ``dhs lock`` files.

Both are checked before any work, so a paper's spec refuses to run against other code.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Mapping

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from dhs_core import io, plugins
from dhs_core.errors import RequirementError, SpecError

#: Dependencies whose versions change results; recorded in provenance and lock files.
KEY_DEPENDENCIES = (
    "numpy", "scipy", "torch", "torchvision", "timm", "healpy", "astropy", "pyarrow",
    "scikit-learn", "matplotlib", "pydantic", "pluggy", "packaging", "typer", "rich",
)


def installed_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_requires(requires: Mapping[str, str], source: str = "spec") -> None:
    problems = []
    for dist, spec in requires.items():
        have = installed_version(dist)
        if have is None:
            problems.append(f"{dist} {spec} is required but not installed")
        elif not SpecifierSet(spec).contains(Version(have), prereleases=True):
            problems.append(f"{dist} {spec} is required but {have} is installed")
    if problems:
        raise RequirementError(f"{source}: [requires] not met: " + "; ".join(problems))


def versions() -> dict[str, str]:
    """Installed versions of every plugin distribution and the key dependencies."""
    out = {dist: ver for _, dist, ver in plugins.plugin_distributions()}
    for dist in (*plugins.BUILTIN_DISTRIBUTIONS, *KEY_DEPENDENCIES):
        v = installed_version(dist)
        if v is not None:
            out.setdefault(dist, v)
    return dict(sorted(out.items()))


def write_lock(path: str | Path) -> dict:
    lock = {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": versions(),
    }
    io.write_json(path, lock)
    return lock


def check_lock(path: str | Path, source: str = "spec") -> None:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{source}: run.lock = {str(path)!r}: no such lock file (write one with `dhs lock`)")
    try:
        lock = json.loads(p.read_text())
        pinned: dict[str, str] = lock["packages"]
    except (ValueError, KeyError, TypeError):
        raise SpecError(f"{p}: not a dhs lock file (expected JSON with a 'packages' table)") from None
    mismatches = []
    current = versions()
    for dist, ver in pinned.items():
        have = current.get(dist) or installed_version(dist)
        if have != ver:
            mismatches.append(f"{dist}=={ver} (installed: {have or 'not installed'})")
    if mismatches:
        raise RequirementError(
            f"{source}: installed packages do not match lock file {p}: " + ", ".join(mismatches)
        )
