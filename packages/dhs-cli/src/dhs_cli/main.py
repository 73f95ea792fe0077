"""The ``dhs`` command. It composes plugins; no science lives here.

Exit codes: 0 success, 1 runtime failure, 2 bad usage / invalid spec / unmet pin.
User errors print one paragraph and no traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List

import typer
from rich.console import Console
from rich.table import Table

from dhs_core import plugins
from dhs_core.errors import DhsError, InterruptedRun, UserError

app = typer.Typer(
    name="dhs",
    help="Dark Halo Scope: train strong-lens finders and measure their selection function.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()


@app.command("run")
def run_cmd(
    spec: Path = typer.Argument(..., help="Run spec (TOML)."),
    set_: List[str] = typer.Option([], "--set", help="Override a spec value: a.b=value (repeatable)."),
    stage: List[str] = typer.Option([], "--stage", help="Rerun only this stage (repeatable)."),
    force: bool = typer.Option(
        False, "--force", help="Rerun every stage from scratch, even if its outputs are current (resumes nothing)."
    ),
    executor: str | None = typer.Option(
        None, "--executor", help="Executor by name, e.g. local or dask; replaces the spec's executor section "
        "(--set executor.OPTION=... still applies to it)."
    ),
    no_space_check: bool = typer.Option(
        False, "--no-space-check", help="Start even when the disk seems too small for what the stages will write."
    ),
    gates_fail: bool = typer.Option(
        False, "--gates-fail", help="Exit 1 when a [[gates]] entry of the spec fails or its metric is missing."
    ),
) -> None:
    """Run the pipeline a spec describes; finished stages with unchanged inputs are skipped."""
    from dhs_cli.progress import RichProgress
    from dhs_core.runner import run

    with RichProgress(err) as progress:
        result = run(
            spec, set_, stages=stage, force=force, executor=executor, progress=progress,
            # soft_wrap: a message is one line however narrow the terminal (grep-able in logs)
            log=lambda msg: progress.bar.console.print(f"dhs: {msg}", markup=False, highlight=False, style="dim",
                                                       soft_wrap=True),
            command=["dhs", *sys.argv[1:]], check_space=not no_space_check,
        )
    from dhs_core import distributed

    if not distributed.is_main():
        return  # under torchrun rank 0 reports the run; the others' output would repeat it
    points = result.points or [result]
    for r in points:
        table = Table(title=f"{r.run_dir}", show_header=True)
        table.add_column("stage")
        table.add_column("status")
        for name, status in r.stages.items():
            table.add_row(name, status)
        out.print(table)
        for k, v in r.metrics.items():
            out.print(f"  {k} = {v:.6g}" if isinstance(v, float) else f"  {k} = {v}")
        if r.gates:
            _print_gates(r)
    failures = plugins.lifecycle_failures()
    if failures:
        _say("warning", "lifecycle hooks failed (the run itself finished): "
             + ", ".join(f"{hook} of {plugin} x{n}" for (plugin, hook), n in sorted(failures.items())))
    if result.points:
        from dhs_core.layout import COMPARISON_MD

        out.print(f"comparison: {result.run_dir / COMPARISON_MD}")
    if result.gates_failed:
        where = ", ".join(str(r.run_dir) for r in points if r.gates_failed)
        if gates_fail:
            from dhs_core.errors import GatesFailed

            raise GatesFailed(f"decision gates did not pass in {where} (see gates.json there)")
        _say("warning", f"decision gates did not pass in {where}; --gates-fail makes this exit 1")


def _print_gates(result: Any) -> None:
    from rich.text import Text

    from dhs_core import gates
    from dhs_core.layout import GATES

    table = Table(title=Text(f"decision gates ({result.run_dir / GATES})"), show_header=True)
    for col in ("gate", "metric", "observed", "rule", "status"):
        table.add_column(col)
    for g in result.gates:
        # Text: gate names and metrics are shown literally, never read as rich markup
        table.add_row(*(Text(c) for c in (g["name"], g["metric"], gates.shown(g), f"{g['op']} {g['value']:g}",
                                          g["status"].upper())))
    out.print(table)
    for g in result.gates:
        if g["status"] == gates.MISSING:
            out.print(f"  {g['message']}", markup=False, highlight=False, soft_wrap=True)


@app.command("validate")
def validate_cmd(
    spec: Path = typer.Argument(..., help="Run spec (TOML)."),
    set_: List[str] = typer.Option([], "--set", help="Override a spec value: a.b=value."),
) -> None:
    """Check a spec (schema, pins, lock file, stage plan) without running anything."""
    from dhs_core.runner import plan

    the_plan = plan(spec, set_)
    n = len(the_plan.points)
    stages = [c.name for c in the_plan.stages[0]]
    out.print(f"{spec}: valid ({n} run{'s' if n > 1 else ''}; stages: {', '.join(stages) or 'none'})")
    gates = the_plan.points[0].spec.gates
    if gates:
        out.print(f"gates ({len(gates)}, checked when the run ends):", markup=False, highlight=False)
        for g in gates:
            label = f"{g.name}: " if g.name else ""
            out.print(f"  {label}{g.metric} {g.rule}", markup=False, highlight=False)


@app.command("schema")
def schema_cmd(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file instead of stdout."),
) -> None:
    """Print the JSON Schema of run specs, including every installed plugin."""
    from dhs_core.spec import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        from dhs_core.io import write_text

        write_text(output, text + "\n")
    else:
        print(text)


@app.command("plugins")
def plugins_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable list of components."),
    requirements: bool = typer.Option(False, "--requirements", help="Print name==version of plugin distributions."),
) -> None:
    """List installed plugins and the components they register."""
    from dhs_core.provenance import requirements_lines

    if requirements:
        print("\n".join(requirements_lines()))
        return
    comps = plugins.all_components()
    if as_json:
        print(json.dumps(
            [{"kind": c.kind, "name": c.name, "distribution": c.distribution, "version": c.version,
              "summary": c.summary} for c in comps],
            indent=2,
        ))
        return
    # Readable in 80 columns: plain aligned columns, the kind printed once per group, provider as
    # "dist version", and the summary (the only long column) cut to the terminal's width with an
    # ellipsis; `--json` has it whole.
    rows = [(c.kind, c.name, f"{c.distribution} {c.version}", " ".join((c.summary or "").split())) for c in comps]
    heads = ("kind", "name", "provider")
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]
    room = max(out.width - sum(widths) - 2 * len(widths) - 1, 20)

    def line(cells: tuple[str, ...], summary: str) -> str:
        text = summary if len(summary) <= room else summary[: room - 1].rstrip() + "…"
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + text

    lines = [line(heads, "summary"), line(tuple("-" * w for w in widths), "-" * min(room, 7))]
    previous = None
    for kind, name, provider, summary in rows:
        lines.append(line((kind if kind != previous else "", name, provider), summary).rstrip())
        previous = kind
    print("\n".join(lines))


@app.command("lock")
def lock_cmd(
    spec: Path = typer.Argument(..., help="Run spec (TOML) to lock."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Lock file (default: <spec>.lock.json)."),
) -> None:
    """Write the exact versions of dhs-* and key dependencies, for a paper to pin.

    Reference the lock from the spec with ``[run] lock = "<file>"``; ``dhs run`` then refuses
    to run when an installed version differs.
    """
    from dhs_core.requirements import write_lock
    from dhs_core.spec import load_spec

    load_spec(spec)  # a lock of an invalid spec is useless
    target = output or spec.with_name(spec.stem + ".lock.json")
    lock = write_lock(target)
    out.print(f"wrote {target} ({len(lock['packages'])} packages)")


def _say(prefix: str, message: object) -> None:
    # Messages quote spec sections like [run]: print them literally, never as rich markup.
    err.print(f"{prefix}: {message}", style="red" if prefix == "failed" else None,
              markup=False, highlight=False, soft_wrap=True)


_commands_added = False


def _add_plugin_commands() -> None:
    global _commands_added
    if _commands_added:
        return
    _commands_added = True
    try:
        plugins.register_commands(app)
    except DhsError as exc:
        _say("error", exc)
        sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes."""
    _add_plugin_commands()
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        _say("error", exc)
        return exc.exit_code
    except InterruptedRun as exc:
        _say("interrupted", f"{exc}; finished work is kept — run the same command again to resume")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted", "by SIGINT")
        return 130
    except DhsError as exc:
        _say("failed", exc)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        # click turns Ctrl-C outside a run (while a spec is read, say) into Abort
        _say("interrupted", "by SIGINT")
        return 130
    except Exception as exc:
        # Usage errors of the (vendored) click that typer runs on: print usage, exit 2.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code or 2
        if os.environ.get("DHS_DEBUG"):
            raise
        _say("failed", f"{type(exc).__name__}: {exc} (set DHS_DEBUG=1 for a traceback)")
        return 1
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
