"""The ``data`` stage: source → validate → split → guard → exclude → report.

The source writes into a staging directory; ``run_dir/data`` is replaced by it only after
every check passed, so bad input leaves no partial output (and a stale previous result is
never mixed with a new one). The stage replaces ``run_dir/data`` only when it is a data
directory dhs wrote (its marker file, or store.json with a manifest) or empty: anything else —
a user's directory, a symbolic link — is refused rather than deleted. A write that fails (a
full disk, an I/O error) is a runtime failure naming the file; the staging directory is removed.

Importing this module stays light (the stage is registered as an object): pyarrow, healpy
and the readers are imported when the stage runs.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dhs_core import Section, Slot, Stage, StageContext, io, plugins
from dhs_core.errors import SpecError, StageError, UserError
from dhs_data.layout import (
    ARTIFACTS,
    DATA_DIR,
    DATA_MARKER,
    DATA_PREVIOUS,
    DATA_REPORT,
    DATA_STAGING,
    EXCLUDED,
    MANIFEST,
    STORE_INFO,
)
from dhs_data.splits import SplitConfig, assign_splits, healpix_pixels

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


def check_cutouts(store, keys: list[str], progress=None) -> tuple[np.ndarray, list[dict]]:
    """Read every cutout once: (ok mask, exclusions). Escapes raise UserError."""
    from dhs_data.stores import CutoutError, PathEscapeError

    ok = np.zeros(len(keys), bool)
    excluded: list[dict] = []
    escapes: list[str] = []
    for i, key in enumerate(keys):
        try:
            store.get(key)
        except PathEscapeError:
            escapes.append(key)
        except CutoutError as exc:
            excluded.append({"row": i, "cutout_path": key, "reason": exc.reason, "detail": exc.detail})
        else:
            ok[i] = True
        if progress is not None:
            progress.advance(1)
    if escapes:
        raise UserError(
            f"{len(escapes)} cutout_path value(s) resolve outside the data root {store.root} "
            f"(e.g. {escapes[:5]}); paths must be relative and stay inside it"
        )
    return ok, excluded


def _split_config(cfg) -> SplitConfig:
    split = getattr(cfg, "split", None)
    return split if isinstance(split, SplitConfig) else SplitConfig(**(split or {}))


def prepare(table: pa.Table, split_cfg: SplitConfig, source: str) -> pa.Table:
    """Assign healpix_128 and (for scheme healpix) the split column; apply the paired-control guard."""
    import pyarrow as pa

    from dhs_data.leakage import check_paired_controls

    ra, dec = table.column("ra").to_numpy(), table.column("dec").to_numpy()
    table = table.set_column(table.schema.get_field_index("healpix_128"), "healpix_128",
                             pa.array(healpix_pixels(ra, dec, nside=128)))
    if split_cfg.scheme == "healpix":
        splits = assign_splits(ra, dec, nside=split_cfg.nside, seed=split_cfg.seed, fractions=split_cfg.fractions)
        table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits.tolist(), pa.string()))
    elif table.column("split").null_count:
        raise UserError(f"{source}: split.scheme = 'manifest' but some rows have no split")
    check_paired_controls(table, allowed=split_cfg.paired_controls, source=source)
    return table


def written_by_dhs(path: Path) -> bool:
    """Whether the directory ``path`` is a data directory dhs wrote (or is empty)."""
    return ((path / DATA_MARKER).is_file() or ((path / STORE_INFO).is_file() and (path / MANIFEST).is_file())
            or not any(path.iterdir()))


def refuse_foreign(final: Path) -> None:
    """UserError unless ``final`` is absent or a data directory dhs wrote (which may be replaced)."""
    if final.is_symlink():
        raise UserError(f"{final} is a symbolic link (to {os.readlink(final)}); the data stage writes a directory "
                        "there and does not remove links or follow them out of the run directory: remove the link "
                        "or choose another run.out_dir")
    if not final.exists():
        return
    if not final.is_dir() or not written_by_dhs(final):
        raise UserError(f"{final} exists and is not a data directory dhs wrote (it has no {DATA_MARKER}, nor "
                        f"{STORE_INFO} with {MANIFEST}); the data stage replaces that directory and will not delete "
                        "files it did not write: move it elsewhere or choose another run.out_dir")


def _remove_own(path: Path) -> None:
    """Remove a directory under a name the stage reserves (staging, previous); a symbolic link in
    its place is unlinked, never followed (``shutil.rmtree`` does not follow links inside)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _swap_in(staging: Path, final: Path, previous: Path) -> None:
    """Move ``staging`` onto ``final``; the old directory is set aside first and removed last."""
    _remove_own(previous)
    if final.exists():
        refuse_foreign(final)  # not replaced by something else while the stage ran
        os.replace(final, previous)
    os.replace(staging, final)
    _remove_own(previous)


def write_error(exc: OSError, staging: Path) -> StageError:
    """A one-line runtime failure for an OSError raised while the data stage wrote ``staging``
    (worded like the runner's, :func:`dhs_core.rundir.write_failure`)."""
    from dhs_core.rundir import write_failure

    if exc.filename is None:
        exc = OSError(exc.errno, exc.strerror or str(exc), str(staging))
    described = write_failure(exc) or (f"failed on {exc.filename}: {exc.strerror or exc} "
                                       f"[{errno.errorcode.get(exc.errno or 0, exc.errno)}]")
    return StageError(f"data stage: {described}; the partial output {staging} was removed")


class DataStage(Stage):
    name = "data"
    sections = {
        "data": Section(Slot("data_source"), description="where the cutouts and labels come from"),
        # the data stage's outputs do not depend on [preprocess]: it only checks, before the run,
        # that the preprocessor fits the source's stamp; changing it reruns training, not this
        "preprocess": Section(Slot("preprocessor"), required=False, list_as="chain",
                              description="per-cutout preprocessing: one table, or [[preprocess]] steps applied in order",
                              hashed=False),
    }
    trigger = "data"
    produces = (ARTIFACTS["manifest"], ARTIFACTS["data_report"])
    artifacts = ARTIFACTS

    def check(self, spec: Any, run_dir: Path, source: str) -> None:
        """The spec's preprocessor must fit the stamp the data source states (an annulus that
        does not fit fails here, before anything is written, rather than in training)."""
        preprocess = getattr(spec, "preprocess", None)
        if preprocess is None or getattr(spec, "data", None) is None:
            return
        _, config = plugins.resolve("data_source", spec.data, where="data", source=source)
        stamp_size = getattr(config, "stamp_size", None)
        stamp = stamp_size() if callable(stamp_size) else None
        if stamp is None:
            return
        apply = plugins.build("preprocessor", preprocess, where="preprocess", source=source)
        try:
            apply(np.zeros((3, int(stamp), int(stamp)), np.float32))
        except SpecError as exc:
            raise SpecError(f"{source}: {exc} (data source {spec.data.name!r} provides {stamp}x{stamp}-px "
                            "stamps)") from None

    def _source_config(self, spec: Any) -> Any:
        if getattr(spec, "data", None) is None:
            return None
        _, config = plugins.resolve("data_source", spec.data, where="data")
        return config

    def fingerprint(self, spec: Any, run_dir: Path) -> Any:
        """The data source's digest of the input files it names (``DataSourceConfig.fingerprint``)."""
        method = getattr(self._source_config(spec), "fingerprint", None)
        return method() if callable(method) else None

    def estimate_bytes(self, spec: Any) -> int | None:
        """What the data source will write (``DataSourceConfig.estimate_bytes``), or None."""
        method = getattr(self._source_config(spec), "estimate_bytes", None)
        return method() if callable(method) else None

    def card_section(self, run_dir: Path) -> str:
        from dhs_data.card import section

        return section(run_dir)

    def run(self, ctx: StageContext) -> dict[str, float]:
        cfg = ctx.spec.data
        comp, _ = plugins.resolve("data_source", cfg, where="data")
        final = ctx.run_dir / DATA_DIR
        staging = ctx.run_dir / DATA_STAGING
        refuse_foreign(final)  # before any work: a directory dhs did not write stays untouched
        _remove_own(staging)
        try:
            staging.mkdir(parents=True)
            metrics = self._build(ctx, comp, cfg, staging)
            io.write_json(staging / DATA_MARKER, {"written_by": "dhs-data data stage", "source": cfg.name})
            _swap_in(staging, final, ctx.run_dir / DATA_PREVIOUS)
        except OSError as exc:
            _remove_own(staging)
            raise write_error(exc, staging) from None
        except BaseException:
            _remove_own(staging)
            raise
        return metrics

    def _build(self, ctx: StageContext, comp, cfg, out: Path) -> dict[str, float]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from dhs_data.manifest import read_manifest, write_manifest
        from dhs_data.report import counts, verify_splits
        from dhs_data.stores import open_store

        comp.impl(cfg, ctx, out)
        for required in (MANIFEST, STORE_INFO):
            if not (out / required).is_file():
                raise StageError(f"data source {cfg.name!r} ({comp.distribution}) did not write {required}")
        source = f"data source {cfg.name!r} manifest"
        split_cfg = _split_config(cfg)
        table = prepare(read_manifest(out / MANIFEST), split_cfg, source)
        store = open_store(out)
        keys = table.column("cutout_path").to_pylist()
        with ctx.progress.task("checking cutouts", total=len(keys)) as task:
            ok, excluded = check_cutouts(store, keys, task)
        ids = table.column("galaxy_id").to_pylist()
        for e in excluded:
            e["galaxy_id"] = ids[e["row"]]
        if not ok.any():
            reasons = Counter(e["reason"] for e in excluded)
            raise UserError(f"{source}: none of the {len(keys)} cutouts is usable ({dict(reasons)}); see {store.root}")
        kept = table.filter(pa.array(ok))
        verification = verify_splits(kept, nside=split_cfg.nside)
        if not verification["balanced"]:
            ctx.log(f"data: warning — psfsize_r/psfdepth_r differ between splits (KS p < 0.01); see {DATA_REPORT}")
        write_manifest(kept, out / MANIFEST)
        by_reason = Counter(e["reason"] for e in excluded)
        with io.atomic_path(out / EXCLUDED) as tmp:
            pq.write_table(pa.Table.from_pylist(excluded, schema=pa.schema(
                [("row", pa.int64()), ("cutout_path", pa.string()), ("reason", pa.string()),
                 ("detail", pa.string()), ("galaxy_id", pa.string())])), tmp)
        report = {
            "source": cfg.name,
            "n_input": len(keys),
            "n_kept": int(ok.sum()),
            "exclusions": {"total": len(excluded), "by_reason": dict(by_reason), "rows": excluded[:200]},
            "split": split_cfg.model_dump(),
            "split_verification": verification,
            "paired_controls_allowed": split_cfg.paired_controls,
            **counts(kept),
        }
        io.write_json(out / DATA_REPORT, report)
        ctx.log(f"data: {int(ok.sum())} cutouts kept, {len(excluded)} excluded {dict(by_reason)}")
        metrics = {"n_cutouts": float(ok.sum()), "n_excluded": float(len(excluded))}
        for name, d in report["by_split"].items():
            metrics[f"n_{name}"] = float(d["n"])
        return metrics
