"""``npz`` store: one compressed-or-not ``.npz`` file per cutout (the layout earlier pipelines wrote).

A file holds the cutout under the key ``cutout`` (or as its only array), shape ``(3, H, W)``,
or one ``(H, W)`` plane per band under ``image_g``, ``image_r``, ``image_z``. Files written as
``(H, W, 3)`` (channel-last, as some pipelines saved them) are transposed. The same archive
layout is read from parquet bytes by the ``stamp_parquet`` store (:func:`read_npz_cutout`).
Integrity: an ``.npz`` is a zip archive whose members carry a CRC-32 of their bytes; ``zipfile``
checks it on every read, so damaged pixels are a ``checksum`` exclusion at no extra cost.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dhs_data.stores.base import BANDS, CutoutError, PerFileStore, check_cutout, cutout_path


def write_npz(root: str | Path, key: str, cutout: np.ndarray, *, compress: bool = False) -> Path:
    """Write one cutout to ``root/key`` (parents created); the array is saved as ``cutout``."""
    path = cutout_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(cutout, dtype=np.float32)
    with open(path, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, cutout=arr)
    return path


def read_npz_cutout(key: str, source: BinaryIO, stamp: int | None = None, *,
                    path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """float32 ``(3, H, W)`` cutout from the ``.npz`` archive ``source`` (a binary file object), or
    :class:`CutoutError` with the reason; ``path`` names where the bytes came from in the error."""
    try:
        with np.load(source, allow_pickle=False) as npz:
            names = list(npz.files)
            planes = [f"image_{band}" for band in BANDS]
            if all(name in names for name in planes):
                arrays = [npz[name] for name in planes]
                if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
                    raise CutoutError(key, "wrong_shape", f"band planes {planes} of shapes {[a.shape for a in arrays]}; "
                                                          "expected one (H, W) plane each", path=path)
                arr = np.stack(arrays)
            elif "cutout" in names or len(names) == 1:
                arr = npz["cutout" if "cutout" in names else names[0]]
            else:
                raise CutoutError(key, "unreadable", f"arrays {names}; expected one (3, H, W) array (named 'cutout' "
                                                     "when there are several) or planes image_g, image_r, image_z",
                                  path=path)
    except CutoutError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        # zipfile checks each member's CRC-32 once the member is read to its end
        reason = "checksum" if "CRC-32" in str(exc) else "truncated"
        raise CutoutError(key, reason, f"{type(exc).__name__}: {exc}", path=path) from exc
    except Exception as exc:  # zlib.error, ValueError (pickled object arrays, not an archive), OSError...
        raise CutoutError(key, "unreadable", f"{type(exc).__name__}: {exc}", path=path) from exc
    # pixels are nanomaggies: real numbers; strings, booleans or complex values mean the archive
    # holds something else (a mask, a label), and casting them would invent an image
    if arr.dtype.kind not in "fiu":
        raise CutoutError(key, "unreadable", f"array of dtype {arr.dtype}; expected real-valued pixels "
                                             "(float32 nanomaggies)", path=path)
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.shape[0] != 3:
        arr = np.moveaxis(arr, -1, 0)
    try:
        return check_cutout(key, arr, stamp)
    except CutoutError as exc:
        exc.path = None if path is None else str(path)
        raise


class NpzStore(PerFileStore):
    """Reader of an ``npz`` store rooted at ``root``."""

    format = "npz"

    def get(self, key: str) -> np.ndarray:
        path = self.path(key)
        if not path.is_file():
            raise CutoutError(key, "missing", f"no file {path}", path=path)
        try:
            # open the file ourselves: np.load leaks the handle when the zip is corrupt
            with open(path, "rb") as fh:
                return read_npz_cutout(key, fh, self.stamp, path=path)
        except OSError as exc:  # the file vanished or cannot be opened
            raise CutoutError(key, "unreadable", f"{type(exc).__name__}: {exc}", path=path) from exc
