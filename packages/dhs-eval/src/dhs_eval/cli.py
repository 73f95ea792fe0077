"""``dhs report`` and ``dhs compare``: commands dhs-eval adds to the ``dhs`` CLI.

Registered through ``register_commands``; the command bodies import what they need, so ``dhs
--help`` stays free of matplotlib, scikit-learn and scipy (packages/dhs-cli/tests/test_startup.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import List


def register(app) -> None:
    import typer

    @app.command("report")
    def report_cmd(
        run_dir: Path = typer.Argument(..., help="A run directory (written by dhs run)."),
        open_: bool = typer.Option(False, "--open", help="Open report.html in the default browser."),
    ) -> None:
        """Regenerate MODEL_CARD.md and report.html of a run directory from its artifacts.

        Works on an interrupted run too: parts whose artifacts are missing say "Not run".
        """
        from dhs_eval.report import write_report

        html = write_report(run_dir)
        print(f"wrote {run_dir / 'MODEL_CARD.md'} and {html}")
        if open_:
            import webbrowser

            webbrowser.open(html.resolve().as_uri())

    @app.command("compare")
    def compare_cmd(
        run_dirs: List[Path] = typer.Argument(..., help="Two or more run directories."),
        out: Path = typer.Option(Path("dhs-compare"), "--out", "-o", help="Directory for compare.md / compare.html."),
    ) -> None:
        """Compare runs: metrics with intervals, paired DeLong test, completeness overlaid.

        The DeLong test pairs the first run with each other one only when they scored the same
        test cutouts; otherwise it is omitted and the reason printed.
        """
        from dhs_eval.compare import write

        text, md, html = write(run_dirs, out)
        print(text)
        print(f"wrote {md} and {html}")
