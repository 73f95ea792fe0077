"""Render catalog rows into noisy g, r, z cutouts (nanomaggies), batched over the chunk.

Order of operations per chunk: unit-flux templates of every light component (host, features,
lensed arcs, neighbours) are summed into an intrinsic image per band; stars are added in Fourier
space; one FFT convolution with each object's Moffat PSF per band follows; last, white sky noise
from psfdepth. Source photon noise is omitted: DR10 galaxies at these magnitudes are sky-limited.

Noise uses a Generator seeded per object from (seed, row), so a cutout is the same whatever the
chunking or the number of workers.
"""

from __future__ import annotations

import numpy as np

from dhs_inject.psf import DEFAULT_BAND_SCALE
from dhs_inject.synthetic import morphology as mo
from dhs_inject.synthetic import scenes as sc
from dhs_inject.synthetic.lensed import brightness_scale, lensed_source_images
from dhs_inject.synthetic.optics import convolve_stamps, sky_sigma

BAND_SCALE = np.asarray(DEFAULT_BAND_SCALE)


def _add(intrinsic, idx, template, flux):
    """intrinsic[idx] += flux (M, 3) x template (M, H, W)."""
    if idx.size:
        intrinsic[idx] += flux[:, :, None, None].astype(np.float32) * template[:, None]


def _rows(cat, idx, *keys):
    return [cat[k][idx] for k in keys]


def _features(cat, x, y, intrinsic):
    feat, zeros = cat["feature"], None
    idx = np.flatnonzero(feat == sc.RING)
    rad, wid, rq, asym, aphi, phi = _rows(cat, idx, "ring_radius", "ring_width", "ring_q", "ring_asym",
                                          "ring_asym_phi", "host_phi")
    zeros = np.zeros(idx.size)
    _add(intrinsic, idx, mo.ring(x, y, radius=rad, width=wid, q=rq, phi=phi, center_x=zeros, center_y=zeros,
                                 asymmetry=asym, asym_phi=aphi), cat["ring_flux"][idx])
    idx = np.flatnonzero(np.isin(feat, (sc.EDGE_ON, sc.SPIRAL)))
    zeros = np.zeros(idx.size)
    bulge = mo.sersic(x, y, r_e=cat["bulge_r_e"][idx], n=np.full(idx.size, 4.0), q=np.full(idx.size, 0.8),
                      phi=cat["host_phi"][idx], center_x=zeros, center_y=zeros)
    _add(intrinsic, idx, bulge, cat["bulge_flux"][idx])
    idx = np.flatnonzero(feat == sc.SPIRAL)
    zeros = np.zeros(idx.size)
    r_e, q, phi, pitch, arms, phase = _rows(cat, idx, "host_r_e", "host_q", "host_phi", "arm_pitch", "arm_count",
                                            "arm_phase")
    _add(intrinsic, idx, mo.spiral_arms(x, y, r_e=r_e, q=q, phi=phi, pitch=pitch, n_arms=arms, arm_phase=phase,
                                        center_x=zeros, center_y=zeros), cat["arm_flux"][idx])
    idx = np.flatnonzero(feat == sc.BLUE_CLUMPY)
    for k in range(cat["knot_flux"].shape[1]):
        sub = idx[cat["knot_flux"][idx, k, 1] > 0]
        _add(intrinsic, sub, mo.gaussian(x, y, sigma=cat["knot_sigma"][sub, k], center_x=cat["knot_x"][sub, k],
                                         center_y=cat["knot_y"][sub, k]), cat["knot_flux"][sub, k])
    idx = np.flatnonzero(feat == sc.MERGER)
    comp = mo.sersic(x, y, r_e=cat["comp_r_e"][idx], n=np.full(idx.size, 2.5), q=cat["comp_q"][idx],
                     phi=cat["comp_phi"][idx], center_x=cat["comp_x"][idx], center_y=cat["comp_y"][idx])
    _add(intrinsic, idx, comp, cat["comp_flux"][idx])
    for k in range(2):
        sub = idx[cat["tail_flux"][idx, k, 1] > 0]
        tail = mo.curved_streams(x, y, radius=cat["tail_radius"][sub, k], width=cat["tail_width"][sub, k],
                                 start=cat["tail_start"][sub, k], span=cat["tail_span"][sub, k],
                                 center_x=cat["tail_cx"][sub, k], center_y=cat["tail_cy"][sub, k])
        _add(intrinsic, sub, tail, cat["tail_flux"][sub, k])


def render_chunk(cat: dict[str, np.ndarray], *, stamp: int, beta: float, seed: int,
                 noise: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(N, 3, stamp, stamp) float32 cutouts of catalog rows ``cat`` and per-row arc truth.

    Returns the cutouts and ``{"arc_snr", "magnification", "arc_flux_r", "arc_contrast",
    "source_mag_r"}`` (zero for non-lenses): the matched-filter SNR of the PSF-convolved arcs over all
    bands, the source magnification, the r-band arc flux in the stamp, the arc's peak r surface
    brightness over the host's at that pixel, and the unlensed source magnitude after the source
    was scaled to its tier's brightness target.
    """
    n = cat["scene"].size
    x, y = mo.stamp_grid(stamp)
    intrinsic = np.zeros((n, 3, stamp, stamp), np.float32)
    zeros = np.zeros(n)
    host = mo.sersic(x, y, r_e=cat["host_r_e"], n=cat["host_n"], q=cat["host_q"], phi=cat["host_phi"],
                     center_x=zeros, center_y=zeros)
    _add(intrinsic, np.arange(n), host, cat["host_flux"])
    _features(cat, x, y, intrinsic)
    for k in range(cat["nb_flux"].shape[1]):
        sub = np.flatnonzero(cat["nb_flux"][:, k, 1] > 0)
        nb = mo.sersic(x, y, r_e=cat["nb_r_e"][sub, k], n=cat["nb_n"][sub, k], q=cat["nb_q"][sub, k],
                       phi=cat["nb_phi"][sub, k], center_x=cat["nb_x"][sub, k], center_y=cat["nb_y"][sub, k])
        _add(intrinsic, sub, nb, cat["nb_flux"][sub, k])
    fwhm = cat["psfsize_r"][:, None] * BAND_SCALE[None]
    sigma = sky_sigma(fwhm, np.stack([cat["psfdepth_g"], cat["psfdepth_r"], cat["psfdepth_z"]], 1), stamp, beta)
    truth = {k: np.zeros(n) for k in ("arc_snr", "magnification", "arc_flux_r", "arc_contrast", "source_mag_r")}
    lens_idx = np.flatnonzero(np.isin(cat["scene"], sc.LENS_SCENES))
    if lens_idx.size:
        arcs, magnification = lensed_source_images({k: v[lens_idx] for k, v in cat.items()}, stamp)
        arcs_seen = convolve_stamps(arcs, fwhm[lens_idx], beta)
        host_seen_r = convolve_stamps(host[lens_idx, None] * cat["host_flux"][lens_idx, 1, None, None, None],
                                      fwhm[lens_idx, 1:2], beta)[:, 0]
        scale = brightness_scale(arcs_seen, host_seen_r, sigma[lens_idx], cat["arc_contrast"][lens_idx],
                                 cat["arc_snr_target"][lens_idx], cat["arc_mag_range"][lens_idx])
        arcs *= scale.astype(np.float32)[:, None, None, None]
        arcs_seen *= scale.astype(np.float32)[:, None, None, None]
        intrinsic[lens_idx] += arcs
        truth["arc_snr"][lens_idx] = np.sqrt(((arcs_seen / sigma[lens_idx, :, None, None]) ** 2).sum((1, 2, 3)))
        truth["magnification"][lens_idx] = magnification
        truth["arc_flux_r"][lens_idx] = arcs_seen[:, 1].sum((1, 2))
        r = arcs_seen[:, 1].reshape(lens_idx.size, -1)
        peak = r.argmax(1)
        truth["arc_contrast"][lens_idx] = r[np.arange(peak.size), peak] / np.maximum(
            host_seen_r.reshape(lens_idx.size, -1)[np.arange(peak.size), peak], 1e-30)
        truth["source_mag_r"][lens_idx] = cat["source_mag_r"][lens_idx] - 2.5 * np.log10(scale)
    pix = mo.PIXEL_SCALE
    stars = (cat["star_x"] / pix + (stamp - 1) / 2, cat["star_y"] / pix + (stamp - 1) / 2, cat["star_flux"])
    images = convolve_stamps(intrinsic, fwhm, beta, point_sources=stars)
    if noise:
        for i in range(n):
            rng = np.random.default_rng([seed, int(cat["row"][i])])
            images[i] += rng.standard_normal((3, stamp, stamp), dtype=np.float32) * sigma[i, :, None, None].astype(
                np.float32)
    return images, truth
