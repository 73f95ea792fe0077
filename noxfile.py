"""Test sessions of the dhs monorepo.

One isolated environment per package (``tests(package=...)``) installs only that package, the
dhs-* packages it declares, and test tools — so an undeclared dependency fails its tests.
Environments are made by uv, which links torch from its cache instead of copying ~6 GB into
each one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
TEST_TOOLS = ("pytest>=8", "pytest-xdist>=3")

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests", "example_plugin", "faults", "browser"]
nox.options.reuse_existing_virtualenvs = True


def _project(package: str) -> dict:
    return tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]


def _local_closure(package: str) -> list[str]:
    """The package and every dhs-* package it depends on, transitively (its own ``test`` extra
    included: a package may test its CLI commands through dhs-cli)."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.append(name)
        project = _project(name)
        extra = project.get("optional-dependencies", {}).get("test", []) if name == package else []
        for dep in [*project.get("dependencies", []), *extra]:
            dist = dep.split(";")[0].split("[")[0]
            for sep in "<>=!~ ":
                dist = dist.split(sep)[0]
            if dist in PACKAGES:
                visit(dist)

    visit(package)
    return seen


def _install(session: nox.Session, packages: list[str], extras_for: set[str]) -> None:
    args = []
    for name in packages:
        has_test = "test" in _project(name).get("optional-dependencies", {})
        suffix = "[test]" if name in extras_for and has_test else ""
        args.append(f"{ROOT / 'packages' / name}{suffix}")
    session.install(*CONSTRAINTS, *TEST_TOOLS, *args)


def _pytest(session: nox.Session, *paths: str) -> None:
    code = session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, *session.posargs,
        success_codes=[0, 5], env={"DHS_LOAD_PLUGINS": "builtin", "MPLBACKEND": "Agg"},
    )
    # pytest exits 5 when it collected nothing: a package without tests is a failure here,
    # not a pass.
    if code == 5:
        session.error(f"no tests were collected in {', '.join(paths)}")


@nox.session(python="3.11")
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """Test one package alone, with only its declared dependencies."""
    _install(session, _local_closure(package), {package})
    _pytest(session, f"packages/{package}/tests")


@nox.session(python="3.11")
def tests_all(session: nox.Session) -> None:
    """Every package installed together; every test suite."""
    _install(session, PACKAGES, set(PACKAGES))
    # one pytest per package: test directories are not packages, so helper modules of the same
    # name (tests/helpers.py) would shadow each other in a single run
    for package in PACKAGES:
        _pytest(session, f"packages/{package}/tests")


@nox.session(python="3.11")
def example_plugin(session: nox.Session) -> None:
    """Install the third-party example plugin beside the built-ins and use it from a spec."""
    _install(session, PACKAGES, {"dhs-core"})
    session.install(*CONSTRAINTS, str(ROOT / "examples" / "dhs-plugin-example[test]"))
    env = {"DHS_LOAD_PLUGINS": "builtin,dhs-plugin-example", "MPLBACKEND": "Agg"}
    session.run("dhs", "plugins", env=env)
    session.run("dhs", "plugins", "--requirements", env=env)
    spec = "examples/dhs-plugin-example/examples/example.toml"
    session.run("dhs", "validate", spec, env=env)
    tmp = session.create_tmp()
    session.run("dhs", "run", spec, "--set", f"run.out_dir={tmp}/example-run", "--force", env=env)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/dhs-plugin-example/tests", env=env)


@nox.session(python="3.11")
def faults(session: nox.Session) -> None:
    """The fault-injection suite (tests/faults, docs/reliability.md): the whole pipeline broken
    at seeded points by SIGKILL, signals, a full disk, damaged files and a concurrent run."""
    _install(session, PACKAGES, set())
    _pytest(session, "tests/faults")


@nox.session(python="3.11")
def browser(session: nox.Session) -> None:
    """report.html of two tiny real runs in headless Chromium (tests/browser): no console errors,
    every image decoded, no network URL, tables sort on click; plus `dhs compare` / `dhs report`
    on those runs. Installs Debian's chromium when it is absent; a screenshot of the report is
    left in build/browser/report.png."""
    import shutil

    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        if shutil.which("apt-get"):
            # a failed install is not a failed session: the test then skips and says why
            anything = list(range(256))
            session.run("apt-get", "update", external=True, success_codes=anything)
            session.run("apt-get", "install", "-y", "chromium", external=True, success_codes=anything)
        else:
            session.log("no chromium and no apt-get: the browser test will skip and say why")
    _install(session, PACKAGES, set())
    shots = ROOT / "build" / "browser"
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", "tests/browser", *session.posargs,
        env={"DHS_LOAD_PLUGINS": "builtin", "MPLBACKEND": "Agg", "DHS_SCREENSHOT_DIR": str(shots)},
    )
    session.log(f"screenshot of report.html: {shots / 'report.png'}")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff over every package, the examples and the benchmarks."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "packages", "examples", "benchmarks", "tests", "noxfile.py")


@nox.session(python="3.11")
def convergence(session: nox.Session) -> None:
    """The full injection convergence suite (docs/inject.md): 200 default-prior draws and 12 per
    adversarial corner against the float64 brute-force reference, and the compiled adaptive
    injector check; ~30 min on 2 cores, so not a default session (every ``pytest`` runs a short form)."""
    _install(session, _local_closure("dhs-inject"), {"dhs-inject"})
    session.run("python", "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                "packages/dhs-inject/tests/test_convergence.py", "packages/dhs-inject/tests/test_injectors.py",
                *session.posargs, env={"DHS_LOAD_PLUGINS": "builtin", "MPLBACKEND": "Agg", "DHS_CONVERGENCE_FULL": "1"})


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ (``nox -s bench -- --quick`` for the short versions)."""
    _install(session, PACKAGES, set(PACKAGES))
    # the injection benchmark's optional baselines (bench_inject.py skips caustics when absent)
    session.install(*CONSTRAINTS, f"{ROOT / 'packages' / 'dhs-inject'}[bench]")
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.log("benchmarks/ holds no bench_*.py yet")
    for script in scripts:
        session.run("python", str(script), *session.posargs, env={"MPLBACKEND": "Agg"})
