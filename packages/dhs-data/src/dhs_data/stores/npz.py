"""``npz`` store: one compressed-or-not ``.npz`` file per cutout (the layout earlier pipelines wrote).

A file holds the cutout under the key ``cutout`` (or as its only array), shape ``(3, H, W)``.
Files written as ``(H, W, 3)`` (channel-last, as some pipelines saved them) are transposed.
Integrity: an ``.npz`` is a zip archive whose members carry a CRC-32 of their bytes; ``zipfile``
checks it on every read, so damaged pixels are a ``checksum`` exclusion at no extra cost.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dhs_data.stores.base import CutoutError, PerFileStore, check_cutout, cutout_path


def write_npz(root: str | Path, key: str, cutout: np.ndarray, *, compress: bool = False) -> Path:
    """Write one cutout to ``root/key`` (parents created); the array is saved as ``cutout``."""
    path = cutout_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(cutout, dtype=np.float32)
    with open(path, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, cutout=arr)
    return path


class NpzStore(PerFileStore):
    """Reader of an ``npz`` store rooted at ``root``."""

    format = "npz"

    def get(self, key: str) -> np.ndarray:
        path = self.path(key)
        if not path.is_file():
            raise CutoutError(key, "missing", f"no file {path}", path=path)
        try:
            # open the file ourselves: np.load leaks the handle when the zip is corrupt
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                names = list(npz.files)
                name = "cutout" if "cutout" in names else names[0] if len(names) == 1 else None
                if name is None:
                    raise CutoutError(key, "unreadable", f"arrays {names}; expected one named 'cutout'")
                arr = npz[name]
        except CutoutError:
            raise
        except (zipfile.BadZipFile, EOFError) as exc:
            # zipfile checks each member's CRC-32 once the member is read to its end
            reason = "checksum" if "CRC-32" in str(exc) else "truncated"
            raise CutoutError(key, reason, f"{type(exc).__name__}: {exc}", path=path) from exc
        except Exception as exc:  # zlib.error, ValueError (pickled object arrays), OSError...
            raise CutoutError(key, "unreadable", f"{type(exc).__name__}: {exc}", path=path) from exc
        if arr.ndim == 3 and arr.shape[-1] == 3 and arr.shape[0] != 3:
            arr = np.moveaxis(arr, -1, 0)
        return check_cutout(key, arr, self.stamp)
