"""``dhs data ...`` commands. Typer is imported inside :func:`register` (the CLI's dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def data_group(app: Any) -> Any:
    """The ``data`` sub-app of ``app``, created if no package has added it yet.

    Other packages (e.g. dhs-inject's ``dhs data show``) call this same lookup so every
    ``data`` subcommand lands in one group.
    """
    import typer

    for info in getattr(app, "registered_groups", []):
        if info.name == "data" and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help="Manifests and cutout stores.", no_args_is_help=True)
    app.add_typer(group, name="data")
    return group


def register(app: Any) -> None:
    import typer

    group = data_group(app)

    @group.command("pack")
    def pack_command(
        manifest: Path = typer.Argument(..., help="parquet manifest whose cutouts (npz or fits) to pack"),
        out: Path = typer.Option(..., "--out", help="new output directory (manifest.parquet, store.json, shards/)"),
        shard_size: int = typer.Option(1024, help="cutouts per .npy shard"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="leave unreadable cutouts out instead of failing"),
    ) -> None:
        """Pack cutouts into memory-mapped .npy shards and verify the copy."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from dhs_data.manifest import read_manifest
        from dhs_data.pack import pack

        n = read_manifest(manifest).num_rows
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("packing + verifying", total=2 * n)
            summary = pack(manifest, out, shard_size=shard_size, skip_bad=skip_bad,
                           advance=lambda k: progress.advance(task, k))
        typer.echo(
            f"packed {summary['n_packed']} of {summary['n_input']} cutouts ({summary['stamp']} px) into {out}; "
            f"copy verified; {len(summary['excluded'])} excluded"
        )
