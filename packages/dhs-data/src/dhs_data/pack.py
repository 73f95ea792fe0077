"""Convert an npz/fits data directory (manifest + cutouts) into a ``shards`` store, verified.

Every cutout is read once from the source, its CRC-32 taken, and written to a shard; the
shards are then re-read from disk and each cutout's CRC compared with the source's, so a
short write or a bad disk is caught before the original files are trusted to be redundant.
Output goes to a temporary directory renamed onto ``out`` at the end: no partial output.
``dhs data import`` (:mod:`dhs_data.importer`) writes its shards through the same helpers
(:func:`check_out`, :func:`staging_dir`, :func:`verify_copy`, :func:`publish`).
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path
from typing import Callable, Mapping

import pyarrow as pa

from dhs_core import io
from dhs_core.errors import UserError
from dhs_data.integrity import is_data_dir
from dhs_data.layout import MANIFEST, PACK_REPORT, SHARDS_DIR, STORE_INFO
from dhs_data.manifest import read_manifest, write_manifest
from dhs_data.stores import (
    CutoutError,
    PathEscapeError,
    ShardStore,
    ShardWriter,
    open_store,
    write_store_json,
)
from dhs_data.stores.fits import FitsStore
from dhs_data.stores.npz import NpzStore


def source_store(manifest: Path, keys: list[str]):
    if (manifest.parent / STORE_INFO).is_file():
        return open_store(manifest.parent)
    exts = {Path(k).suffix.lower() for k in keys}
    if exts <= {".npz"}:
        return NpzStore(manifest.parent)
    if exts <= {".fits", ".fit"}:
        return FitsStore(manifest.parent)
    raise UserError(f"{manifest}: no {STORE_INFO} next to it and cutout extensions {sorted(exts)} are not .npz/.fits")


def check_out(out: Path, *, force: bool = False, what: str | None = None, force_flag: str | None = None) -> None:
    """Refuse to write the data directory ``out`` over a non-empty directory, unless ``force`` and it
    is a data directory dhs wrote (store.json or manifest.parquet): replacing a previous output is
    allowed, deleting a user's files is not. ``what`` names ``out`` in the message, ``force_flag``
    the option that allows replacing it (None when the command has none)."""
    what = what or str(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not force:
        hint = f" or pass {force_flag} to replace it" if force_flag else ""
        raise UserError(f"{what} exists and is not empty; choose a new directory{hint}")
    if not is_data_dir(out):
        raise UserError(f"{what} exists and is not a data directory (no {STORE_INFO} or {MANIFEST}); "
                        f"{force_flag or 'replacing'} only replaces a previous output: move it away or choose a new "
                        "directory")


def staging_dir(out: Path) -> Path:
    """An empty hidden sibling of ``out`` to build it in (see :func:`publish`)."""
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def verify_copy(root: Path, stamp: int, crcs: Mapping[str, int], advance: Callable[[int], None]) -> None:
    """Re-read every cutout of the shard store at ``root`` from disk and compare its CRC-32 with the
    source's (``crcs``: key -> CRC-32 of the float32 pixels taken before writing)."""
    packed = ShardStore(root, stamp)
    for key, crc in crcs.items():
        try:
            again = packed.get(key, verify=True)
        except CutoutError as exc:
            raise UserError(f"verification of the packed copy failed for {key!r}: {exc}") from exc
        if zlib.crc32(again.tobytes()) != crc:
            raise UserError(f"verification of the packed copy failed for {key!r}: pixels differ from the source")
        advance(1)


def publish(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` onto ``out``; a previous ``out`` is set aside first and removed last."""
    previous = out.parent / f".{out.name}.previous"
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        os.replace(out, previous)
    os.replace(tmp, out)
    shutil.rmtree(previous, ignore_errors=True)


def pack(
    manifest: str | Path,
    out: str | Path,
    *,
    shard_size: int = 1024,
    skip_bad: bool = False,
    advance: Callable[[int], None] = lambda n: None,
) -> dict:
    """Pack ``manifest``'s cutouts into ``out`` (manifest.parquet, store.json, shards/); returns a summary.

    ``advance`` is called once per cutout read and once per cutout verified (2 x rows in total).
    """
    manifest, out = Path(manifest), Path(out)
    if shard_size < 1:
        raise UserError(f"--shard-size {shard_size}: must be >= 1")
    check_out(out, what=f"--out {out}")
    table = read_manifest(manifest)
    keys = table.column("cutout_path").to_pylist()
    src = source_store(manifest, keys)
    tmp = staging_dir(out)
    try:
        bad, crcs, writer, kept = [], {}, None, []
        for i, key in enumerate(keys):
            try:
                arr = src.get(key)
            except PathEscapeError as exc:
                raise UserError(f"{manifest}: row {i} cutout_path {key!r} resolves outside the data root {src.root}") from exc
            except CutoutError as exc:
                bad.append({"row": i, "cutout_path": key, "reason": exc.reason, "detail": exc.detail})
                advance(1)
                continue
            if writer is None:
                writer = ShardWriter(tmp / SHARDS_DIR, arr.shape[-1], shard_size=shard_size)
            writer.add(key, arr)
            crcs[key] = zlib.crc32(arr.tobytes())
            kept.append(i)
            advance(1)
        if bad and not skip_bad:
            listing = "; ".join(f"row {b['row']} {b['cutout_path']}: {b['reason']} {b['detail']}" for b in bad[:10])
            raise UserError(
                f"{manifest}: {len(bad)} cutout(s) cannot be read ({listing}{' ...' if len(bad) > 10 else ''}); "
                f"fix them, or pass --skip-bad to leave them out (they are listed in {PACK_REPORT})"
            )
        if writer is None:
            raise UserError(f"{manifest}: no readable cutouts to pack")
        writer.close()
        stamp = writer.stamp
        verify_copy(tmp / SHARDS_DIR, stamp, crcs, advance)
        write_manifest(table.take(pa.array(kept)), tmp / MANIFEST)
        write_store_json(tmp, format="shards", root=SHARDS_DIR, stamp=stamp)
        summary = {"source": str(manifest), "n_input": len(keys), "n_packed": len(kept), "excluded": bad,
                   "stamp": stamp, "shard_size": shard_size, "verified": True}
        io.write_json(tmp / PACK_REPORT, summary)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
