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

    @group.command("import")
    def import_command(
        src: Path = typer.Argument(..., help="the earlier pipeline's stamp table: a parquet file or a (hive-partitioned) directory"),
        out: Path = typer.Argument(..., help="new data directory (manifest.parquet, store.json, shards/, import_report.json)"),
        stamp_column: str = typer.Option("stamp_npz", "--stamp-column", help="binary column holding each stamp's .npz bytes"),
        id_column: str = typer.Option("galaxy_id", "--id-column", help="column identifying each cutout (becomes galaxy_id)"),
        split_from: str = typer.Option("partition", "--split-from",
                                       help="'partition' (split=... / region_split=... directories), 'column' (the split "
                                            "column), another column's name, or 'none' (the data stage assigns splits)"),
        shard_size: int = typer.Option(1024, "--shard-size", min=1, help="cutouts per .npy shard"),
        force: bool = typer.Option(False, "--force", help="replace OUT when it is a data directory (a previous import)"),
    ) -> None:
        """Convert stamp tables (npz bytes in a parquet column) to CRC-checked shards; bad rows are counted."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from dhs_data.importer import import_stamp_parquet
        from dhs_data.layout import IMPORT_REPORT

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("importing + verifying stamps", total=None)
            report = import_stamp_parquet(src, out, stamp_column=stamp_column, id_column=id_column,
                                          split_from=split_from, shard_size=shard_size, force=force,
                                          start=lambda n: progress.update(task, total=n),
                                          advance=lambda k: progress.advance(task, k))
        typer.echo(f"imported {report['n_imported']} of {report['n_input']} stamps ({report['stamp']} px) into {out}; "
                   f"copy verified; splits {report['splits']}")
        if report["n_excluded"]:
            typer.echo(f"{report['n_excluded']} excluded by reason {report['excluded_by_reason']}; "
                       f"by split {report['excluded_by_split']}")
        typer.echo(f"report in {out / IMPORT_REPORT}")

    @group.command("verify")
    def verify_command(
        data_dir: Path = typer.Argument(..., help="data directory (manifest.parquet, store.json and its cutouts)"),
        show: int = typer.Option(20, "--show", min=0, help="damaged cutouts to list"),
        out: Path = typer.Option(None, "--out", help="write the full JSON report (every damaged cutout) here"),
    ) -> None:
        """Check every cutout's checksum and the store's files; exit 1 when anything is damaged."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from dhs_core import io
        from dhs_core.errors import DataIntegrityError
        from dhs_data.integrity import verify_data_dir

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("verifying cutouts", total=None)
            report = verify_data_dir(data_dir, start=lambda n: progress.update(task, total=n),
                                     advance=lambda k: progress.advance(task, k))
        if out is not None:
            io.write_json(out, report)
        what = f"{report['n_checked']} cutouts ({report['format'] or 'unknown format'})"
        if report["clean"]:
            typer.echo(f"{data_dir}: clean — {what} checked, every checksum matches")
            return
        typer.echo(f"{data_dir}: DAMAGED — {what} checked; {report['n_damaged']} damaged cutout(s); "
                   f"by reason: {report['by_reason']}")
        for problem in report["problems"]:
            typer.echo(f"  {problem['reason']}: {problem['detail']}")
        for entry in report["damaged"][:show]:
            typer.echo(f"  {entry['key']}: {entry['reason']}" + (f" ({entry['detail']})" if entry["detail"] else ""))
        if report["n_damaged"] > show:
            typer.echo(f"  ... and {report['n_damaged'] - show} more" + (f" (all in {out})" if out else " (--out FILE lists all)"))
        # an error rather than typer.Exit(1): the dhs entry point maps it to exit code 1 in every mode
        raise DataIntegrityError(f"{data_dir} is damaged: {report['by_reason']}; restore the files listed above "
                                 "or rerun the stage that wrote them")

    @group.command("annulus-compare")
    def annulus_compare_command(
        data_dir: Path = typer.Argument(..., help="data directory holding manifest.parquet and store.json"),
        annulus_a: str = typer.Option("20,32", "--a", help="first annulus: 'r_in,r_out' in pixels or a preset name"),
        annulus_b: str = typer.Option("32.5,45", "--b", help="second annulus: 'r_in,r_out' or a preset name"),
        n: int = typer.Option(500, "--n", min=2, help="cutouts to sample (label-0 cutouts first)"),
        seed: int = typer.Option(0, help="seed of the random sample"),
        out: Path = typer.Option(None, "--out", help="write the full JSON report here"),
    ) -> None:
        """KS tests of sky medians and MADs between two annuli; correlation with psfsize/psfdepth."""
        from dhs_data.preprocess.annulus_report import run_annulus_comparison

        report = run_annulus_comparison(data_dir, _annulus(annulus_a), _annulus(annulus_b), n=n, seed=seed, out=out)
        typer.echo(f"{report['n']} cutouts ({report['n_unreadable']} unreadable skipped); "
                   f"annulus A {report['annulus_a']} px vs B {report['annulus_b']} px")
        for band, entry in report["bands"].items():
            typer.echo(
                f"  {band}: median KS p = {entry['median_ks']['pvalue']:.3g}, MAD KS p = {entry['mad_ks']['pvalue']:.3g}"
                + "".join(f", rho({k}) = {v['rho']:.3f}" for k, v in entry.items() if k.startswith("mad_") and "_vs_" in k)
            )


def _annulus(text: str) -> tuple[float, float] | str:
    """'20,32' -> (20.0, 32.0); anything else is a preset name checked by the preprocessor."""
    from dhs_core.errors import UserError

    if "," not in text:
        return text
    try:
        r_in, r_out = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"annulus {text!r}: expected 'r_in,r_out' in pixels (e.g. 20,32) or a preset name") from None
    return (r_in, r_out)
