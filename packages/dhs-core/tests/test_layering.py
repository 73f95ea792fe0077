"""The package arrows: core <- data <- models <- inject, with eval a torch-free library that
models and inject use, and nothing importing the CLI (docs/architecture.md, "Packages").

Every ``import`` statement in each package's ``src/`` is read with ``ast`` — including imports
inside functions, which load later but are dependencies all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2]

#: package -> dhs packages it may import (itself always allowed)
ALLOWED = {
    "dhs_core": set(),
    "dhs_data": {"dhs_core"},
    "dhs_eval": {"dhs_core"},
    "dhs_models": {"dhs_core", "dhs_data", "dhs_eval"},
    "dhs_inject": {"dhs_core", "dhs_data", "dhs_models", "dhs_eval"},
    "dhs_cli": {"dhs_core"},
}
#: third-party modules a package must not import at all
FORBIDDEN = {
    "dhs_core": {"torch", "torchvision", "timm", "numpy", "matplotlib", "sklearn", "scipy"},
    "dhs_eval": {"torch", "torchvision", "timm"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str, src: Path) -> list[str]:
    out = []
    for path in sorted(src.rglob("*.py")):
        for line, top in imports_of(path):
            if (top.startswith("dhs_") and top != package and top not in ALLOWED[package]) \
                    or top in FORBIDDEN.get(package, ()):
                out.append(f"{path.relative_to(src.parent)}:{line} imports {top}")
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_package_arrows(package):
    src = PACKAGES / package.replace("_", "-") / "src" / package
    if not src.is_dir():
        pytest.skip(f"{src} is not in this checkout")
    bad = violations(package, src)
    assert not bad, "imports against the package arrows:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    # a forbidden arrow written in a function body (a lazy import) is still caught
    pkg = tmp_path / "dhs_data"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    from dhs_models.inference import score\n    import torch\n")
    assert violations("dhs_data", pkg) == ["dhs_data/m.py:2 imports dhs_models"]
    (pkg / "m.py").write_text("import numpy\nfrom dhs_core import plugins\n")
    assert violations("dhs_data", pkg) == []
    (pkg / "m.py").write_text("def f():\n    import torch.nn\n")
    assert violations("dhs_eval", pkg) == ["dhs_data/m.py:2 imports torch"]
