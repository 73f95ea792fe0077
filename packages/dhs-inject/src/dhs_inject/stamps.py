"""Libraries of real galaxy source stamps for Model 3: a FITS directory or the bundled Hubble Deep Field.

A library is a stack of non-negative, background-subtracted, unit-sum (M, S, S) stamps, each with the
light centroid on the central pixel, plus each stamp's half-light radius in pixels (radius of the
circular aperture about the centre that encloses half the flux) and the assumed native pixel scale.

Default library: the 872 x 1000 RGB Hubble Deep Field (WFPC2) image bundled with scikit-image
(``skimage.data.hubble_deep_field``, no download). Its native scale is assumed to be the drizzled
HDF scale, 0.04"/pixel; the JPEG is a colour composite with an unknown, non-linear stretch, so
(1) morphology is taken from the mean of the three channels and (2) the channel ratios are NOT used
as colours (Model 3 applies the prior's g-r, r-z instead). Galaxies are segmented with a 3 sigma
threshold on the Gaussian-smoothed (sigma 1 px) image, background = image median and sigma = MAD;
connected components (``skimage.measure.label``) with at least ``min_area`` pixels and matched-
aperture SNR >= ``min_snr`` are kept if no other segment of >= min_area/4 pixels falls inside their cut-out
box (isolation), no pixel is saturated (255 in a channel) and the box fits inside the image.
Each stamp keeps only the pixels of its own segment dilated by 2 pixels (sky noise elsewhere
would be lensed as a faint pedestal), clipped at zero.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhs_data.preprocess.annulus import MAD_TO_SIGMA
from dhs_inject.errors import InjectionParameterError

__all__ = ["HDF_PIXEL_SCALE", "StampLibrary", "half_light_radius_pix", "hdf_stamps", "load_fits_stamps"]

HDF_PIXEL_SCALE = 0.04  # arcsec per pixel assumed for the scikit-image HDF image (drizzled WFPC2)
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")


@dataclass(frozen=True)
class StampLibrary:
    """(M, S, S) unit-sum float32 stamps, their half-light radii (pixels) and native arcsec/pixel."""

    stamps: np.ndarray
    half_light_pix: np.ndarray
    native_scale: float
    origin: str


def half_light_radius_pix(stamps: np.ndarray) -> np.ndarray:
    """(M, S, S) stamps -> (M,) radius about the central pixel enclosing half the flux (pixels)."""
    m, s, _ = stamps.shape
    yy, xx = np.mgrid[0:s, 0:s] - (s - 1) / 2
    radius = np.hypot(xx, yy).ravel()
    order = np.argsort(radius, kind="stable")
    flux = stamps.reshape(m, -1)[:, order]
    cumulative = np.cumsum(flux, axis=1) / flux.sum(axis=1, keepdims=True)
    first = np.argmax(cumulative >= 0.5, axis=1)
    # a pixel's flux is spread over +-0.5 px in radius; never report less than half a pixel
    return np.maximum(radius[order][first], 0.5)


def _centre_and_pad(images: list[np.ndarray], origin: str) -> StampLibrary:
    size = max(max(im.shape) for im in images)
    size += 1 - size % 2  # odd, so the centre is a pixel centre
    out = np.zeros((len(images), size, size), np.float64)
    for i, im in enumerate(images):
        h, w = im.shape
        r0, c0 = (size - h) // 2, (size - w) // 2
        out[i, r0:r0 + h, c0:c0 + w] = im
    out /= out.sum(axis=(1, 2), keepdims=True)
    return StampLibrary(out.astype(np.float32), half_light_radius_pix(out), 0.0, origin)


def load_fits_stamps(directory: str | Path, native_scale: float) -> StampLibrary:
    """Every FITS image in ``directory`` (2-d, or (B, h, w) summed over B) as a unit-sum stamp.

    The stamp's array centre is taken as the source centre; the background is the median of the
    stamp border and negative pixels after subtracting it are set to zero.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InjectionParameterError(f"model3 stamp_dir {str(directory)!r} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.name.lower().endswith(FITS_SUFFIXES))
    if not files:
        raise InjectionParameterError(
            f"model3 stamp_dir {str(directory)!r} contains no FITS images ({', '.join(FITS_SUFFIXES)}); "
            "point it at a directory of source cut-outs or leave it unset to use the bundled HDF galaxies")
    from astropy.io import fits

    images = []
    for path in files:
        data = np.asarray(fits.getdata(path), dtype=np.float64)
        if data.ndim == 3:
            data = data.sum(axis=0)
        if data.ndim != 2 or min(data.shape) < 3 or not np.isfinite(data).all():
            raise InjectionParameterError(
                f"source stamp {str(path)!r} has shape {data.shape} or non-finite pixels; "
                "expected a finite 2-d image (or (B, h, w)) of at least 3 x 3 pixels")
        border = np.concatenate([data[0], data[-1], data[:, 0], data[:, -1]])
        data = np.clip(data - np.median(border), 0, None)
        if not data.sum() > 0:
            raise InjectionParameterError(f"source stamp {str(path)!r} has no flux above its border median")
        images.append(data)
    lib = _centre_and_pad(images, f"fits:{directory}")
    return StampLibrary(lib.stamps, lib.half_light_pix, native_scale, lib.origin)


@functools.lru_cache(maxsize=4)
def hdf_stamps(min_area: int = 40, min_snr: float = 20.0, max_size: int = 95) -> StampLibrary:
    """Isolated galaxies segmented from scikit-image's Hubble Deep Field image (see module doc)."""
    from scipy import ndimage
    from skimage import data, filters, measure

    rgb = data.hubble_deep_field().astype(np.float64)
    gray = rgb.mean(axis=-1)
    background = np.median(gray)
    sigma = MAD_TO_SIGMA * np.median(np.abs(gray - background))
    labels = measure.label(filters.gaussian(gray, 1.0) > background + 3 * sigma)
    props = measure.regionprops(labels, intensity_image=gray - background)
    significant = np.zeros(labels.max() + 1, bool)
    for p in props:
        significant[p.label] = p.area >= min_area // 4
    images = []
    for p in props:
        snr = p.image_intensity[p.image].sum() / (sigma * np.sqrt(p.area))
        if p.area < min_area or snr < min_snr:
            continue
        r0, c0, r1, c1 = p.bbox
        half = int(np.ceil(0.75 * max(r1 - r0, c1 - c0))) + 4
        cy, cx = (int(round(v)) for v in p.centroid_weighted)
        if 2 * half + 1 > max_size or min(cy, cx) < half or cy + half >= gray.shape[0] or cx + half >= gray.shape[1]:
            continue
        box = np.s_[cy - half:cy + half + 1, cx - half:cx + half + 1]
        box_labels = labels[box]
        others = (box_labels > 0) & (box_labels != p.label) & significant[box_labels]
        if others.any() or (rgb[box] >= 255).any():
            continue
        footprint = ndimage.binary_dilation(box_labels == p.label, iterations=2)
        images.append(np.clip(gray[box] - background, 0, None) * footprint)
    if not images:
        raise InjectionParameterError("no isolated galaxy passed the HDF segmentation cuts; lower min_area/min_snr")
    lib = _centre_and_pad(images, "skimage.data.hubble_deep_field")
    return StampLibrary(lib.stamps, lib.half_light_pix, HDF_PIXEL_SCALE, lib.origin)
