"""``fits`` store: the Legacy Survey cutout-service layout, one FITS file per cutout.

The service (``legacysurvey.org/viewer/cutout.fits?...&layer=ls-dr10&bands=grz``) returns a
primary HDU whose data cube is ``(3, H, W)`` — planes g, r, z — with header cards
``BANDS = 'grz'`` and ``BAND0..BAND2``. When those cards are present the planes are reordered
to g, r, z; a cube with another number of planes (e.g. a 2-band ``bands=gr`` request) is a
``wrong_shape`` exclusion.

Integrity: when a file carries the FITS ``DATASUM``/``CHECKSUM`` cards (``write_fits`` writes
them; the cutout service does not), they are verified on every read and a mismatch is a
``checksum`` exclusion. Files without them cannot be checked beyond their structure.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dhs_data.stores.base import BANDS, CutoutError, PerFileStore, check_cutout, cutout_path


def write_fits(root: str | Path, key: str, cutout: np.ndarray, *, bands: str = "grz") -> Path:
    """Write one cutout to ``root/key`` in the cutout-service layout."""
    path = cutout_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    from astropy.io import fits  # imported on use: registering plugins must stay light

    hdu = fits.PrimaryHDU(np.asarray(cutout, dtype=np.float32))
    hdu.header["BANDS"] = bands
    for i, band in enumerate(bands):
        hdu.header[f"BAND{i}"] = band
    hdu.header["BUNIT"] = "nanomaggy"
    hdu.writeto(path, overwrite=True, checksum=True)
    return path


class FitsStore(PerFileStore):
    """Reader of a ``fits`` store rooted at ``root``."""

    format = "fits"

    def get(self, key: str) -> np.ndarray:
        from astropy.io import fits

        path = self.path(key)
        if not path.is_file():
            raise CutoutError(key, "missing", f"no file {path}", path=path)
        try:
            with warnings.catch_warnings():
                # astropy only warns on a short data section; make it an error we can classify
                warnings.simplefilter("error")
                with fits.open(path, memmap=False, lazy_load_hdus=False, checksum=True) as hdul:
                    hdu = hdul[0]
                    header = hdu.header
                    expected = hdu._data_offset + hdu._data_size if hasattr(hdu, "_data_size") else None
                    arr = None if hdu.data is None else np.array(hdu.data, dtype=np.float32)
        except Exception as exc:  # OSError, VerifyError, AstropyUserWarning-as-error...
            size = path.stat().st_size
            text = str(exc).lower()
            reason = ("checksum" if "checksum verification failed" in text or "datasum verification failed" in text
                      else "truncated" if size % 2880 != 0 or "truncated" in text else "unreadable")
            raise CutoutError(key, reason, f"{type(exc).__name__}: {exc}", path=path) from exc
        if expected is not None and path.stat().st_size < expected:
            raise CutoutError(key, "truncated", f"file has {path.stat().st_size} bytes, header needs {expected}")
        if arr is None:
            raise CutoutError(key, "wrong_shape", "primary HDU has no data")
        bands = [str(header.get(f"BAND{i}", "")).strip() for i in range(arr.shape[0])] if arr.ndim == 3 else []
        if arr.ndim == 3 and arr.shape[0] == 3 and sorted(bands) == sorted(BANDS) and bands != list(BANDS):
            arr = arr[[bands.index(b) for b in BANDS]]
        return check_cutout(key, arr, self.stamp)
