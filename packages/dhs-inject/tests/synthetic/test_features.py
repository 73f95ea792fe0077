"""Confuser features and tier-A arcs look like what they claim: checked on noiseless renders.

Closed forms: a Gaussian ring's flux within +-k widths (erf), the phase winding of a logarithmic
spiral, the polar mapping of a singular isothermal sphere (a source point at (b, phi) is imaged at
(b + theta_E, phi), so a small source at offset beta is stretched tangentially by
(beta + theta_E) / beta and not radially).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import map_coordinates, maximum_filter
from scipy.special import erf

from dhs_inject.synthetic import morphology as mo
from dhs_inject.synthetic import scenes as sc
from dhs_inject.synthetic.catalog import build_catalog
from dhs_inject.synthetic.config import SyntheticConfig
from dhs_inject.synthetic.lensed import lensed_source_images
from dhs_inject.synthetic.optics import convolve_stamps
from dhs_inject.synthetic.render import render_chunk

PIX = 0.262
BETA = 3.5


def _rows(scene, n, *, stamp=64, seed=11):
    """The first ``n`` rows of ``scene`` in a catalog rich in N2 and lenses, without neighbours/stars."""
    cfg = SyntheticConfig(n_hosts=1500, stamp=stamp, positive_fraction=0.3, n2_fraction=0.8, tier_a_fraction=0.5)
    cat = build_catalog(cfg, seed)
    idx = np.flatnonzero(cat["scene"] == scene)[:n]
    rows = {k: v[idx].copy() for k, v in cat.items()}
    rows["nb_flux"][:] = 0.0
    rows["star_flux"][:] = 0.0
    return rows


def test_ring_template_flux_lies_in_its_annulus():
    x, y = mo.stamp_grid(101)
    one = np.ones(3)
    radius, width = np.array([2.0, 3.0, 3.8]), np.array([0.15, 0.25, 0.35])
    img = mo.ring(x, y, radius=radius, width=width, q=one, phi=0 * one, center_x=0 * one, center_y=0 * one,
                  asymmetry=0 * one, asym_phi=0 * one)
    r = np.hypot(x, y)
    for i in range(3):
        for k in (2.0, 3.0):
            inside = np.abs(r - radius[i]) < k * width[i]
            # a thin Gaussian ring: the radial profile is a Gaussian, so the fraction is erf(k / sqrt 2)
            # (up to pixel sampling of widths of ~1 px)
            assert abs(img[i][inside].sum() - erf(k / math.sqrt(2))) < 0.03


def test_ring_proxy_ring_is_outside_the_host_and_dominates_g_there():
    rows = _rows(sc.RING, 12)
    assert np.all(rows["ring_radius"] >= 2.0) and np.all(rows["ring_radius"] <= 4.0)
    assert np.all(rows["ring_radius"] >= 2.9 * rows["host_r_e"])
    ring_only = {k: v.copy() for k, v in rows.items()}
    ring_only["host_flux"][:] = 0.0
    ring_img, _ = render_chunk(ring_only, stamp=64, beta=BETA, seed=0, noise=False)
    full, _ = render_chunk(rows, stamp=64, beta=BETA, seed=0, noise=False)
    x, y = mo.stamp_grid(64)
    for i in range(12):
        r = np.sqrt(mo.elliptical_radius2(x, y, center_x=[0.0], center_y=[0.0], q=rows["ring_q"][i:i + 1],
                                          phi=rows["host_phi"][i:i + 1])[0])
        fwhm = rows["psfsize_r"][i]
        annulus = np.abs(r - rows["ring_radius"][i]) < fwhm
        # most of the seen ring's light is within one PSF FWHM of the ring radius
        assert ring_img[i, 0][annulus].sum() > 0.6 * ring_img[i, 0].sum()
        # at the ring, the blue ring outshines the red host in g: the ring is visible, not a halo
        host_g = full[i, 0] - ring_img[i, 0]
        assert ring_img[i, 0][annulus].sum() > 1.5 * host_g[annulus].sum()


def _polar(template_fn, radii, n_theta=360):
    theta = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    x = (radii[:, None] * np.cos(theta)[None]).astype(np.float32)
    y = (radii[:, None] * np.sin(theta)[None]).astype(np.float32)
    return theta, template_fn(x, y)[0]


def test_spiral_arms_wind_as_a_logarithmic_spiral():
    pitch, arms, phase = np.radians(22.0), 2.0, 0.7
    radii = np.array([1.5, 3.0])
    theta, img = _polar(lambda x, y: mo.spiral_arms(
        x, y, r_e=np.array([3.0]), q=np.array([1.0]), phi=np.array([0.0]), pitch=np.array([pitch]),
        n_arms=np.array([arms]), arm_phase=np.array([phase]), center_x=np.array([0.0]),
        center_y=np.array([0.0])), radii)
    # I(theta) ~ cos(n (theta - psi(r))): the coefficient of exp(-i n theta) is ~ exp(+i n psi)
    coeff = (img * np.exp(1j * arms * theta)[None]).sum(1)
    measured = np.angle(coeff[1] / coeff[0])
    # arm crest at theta = ln(r) / tan(pitch) + phase: the m = n_arms phase advances by n ln(r2/r1) / tan p
    expected = arms * np.log(radii[1] / radii[0]) / np.tan(pitch)
    assert abs(np.angle(np.exp(1j * (measured - expected)))) < 0.05


def test_spiral_arms_survive_the_psf():
    rows = _rows(sc.SPIRAL, 8)
    rows["host_q"][:] = 1.0
    img, _ = render_chunk(rows, stamp=64, beta=BETA, seed=0, noise=False)
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    for i in range(8):
        h = rows["host_r_e"][i] / 1.678
        amps = []
        for rad in np.minimum(np.linspace(1.5, 3.0, 4) * h, 7.0):
            circle = map_coordinates(img[i, 0], [31.5 + rad / PIX * np.sin(theta), 31.5 + rad / PIX * np.cos(theta)],
                                     order=1)
            amps.append(np.abs((circle * np.exp(-1j * rows["arm_count"][i] * theta)).mean()) / circle.mean())
        # g-band azimuthal contrast of the arms (m = n_arms amplitude / mean) in the outer disk, after
        # the seeing and on top of the smooth disk and bulge
        assert np.max(amps) > 0.12


def test_blue_clumpy_knots_are_separate_and_each_seen_as_a_peak():
    rows = _rows(sc.BLUE_CLUMPY, 16)
    on = rows["knot_flux"][..., 1] > 0
    assert np.all(on.sum(1) >= 3)
    fwhm = 2.3548 * rows["knot_sigma"][on]
    assert np.all((fwhm > 0.1) & (fwhm < 0.5))
    rows["host_flux"][:] = 0.0
    img, _ = render_chunk(rows, stamp=64, beta=BETA, seed=0, noise=False)
    for i in range(16):
        kx, ky = rows["knot_x"][i][on[i]], rows["knot_y"][i][on[i]]
        d = np.hypot(kx[:, None] - kx[None], ky[:, None] - ky[None]) + np.eye(kx.size) * 99
        assert d.min() >= 1.1
        g = img[i, 0]
        peaks = (g == maximum_filter(g, size=3)) & (g > 0.05 * g.max())
        pr, pc = np.nonzero(peaks)
        px, py = (pc - 31.5) * PIX, (pr - 31.5) * PIX
        assert pr.size >= 2  # several knots, not one blob
        # a knot at least half as bright as the brightest, and over 1.3 PSF FWHM from
        # every other knot (Sparrow-like limit), is seen as its own local maximum
        fwhm_g = 1.05 * rows["psfsize_r"][i]
        flux = rows["knot_flux"][i][on[i], 0]
        clear = (flux > flux.max() / 2) & (d.min(1) > 1.3 * fwhm_g)
        for x0, y0 in zip(kx[clear], ky[clear]):
            assert np.hypot(px - x0, py - y0).min() < 2.0 * PIX


def test_tidal_tails_are_circular_arcs_that_leave_their_galaxies():
    rows = _rows(sc.MERGER, 16)
    x, y = mo.stamp_grid(101)
    for k in range(2):
        sub = rows["tail_flux"][:, k, 1] > 0
        img = mo.curved_streams(x, y, radius=rows["tail_radius"][sub, k], width=rows["tail_width"][sub, k],
                                start=rows["tail_start"][sub, k], span=rows["tail_span"][sub, k],
                                center_x=rows["tail_cx"][sub, k], center_y=rows["tail_cy"][sub, k])
        for j, i in enumerate(np.flatnonzero(sub)):
            d = np.hypot(x - rows["tail_cx"][i, k], y - rows["tail_cy"][i, k])
            # light lies along the circle of curvature: flux-weighted mean distance = radius
            mean_d = (img[j] * d).sum() / img[j].sum()
            assert abs(mean_d - rows["tail_radius"][i, k]) < 0.1 * rows["tail_radius"][i, k]
            # the root of the tail is at most 1.8" beyond its galaxy's centre
            root_x = rows["tail_cx"][i, k] + rows["tail_radius"][i, k] * np.cos(rows["tail_start"][i, k])
            root_y = rows["tail_cy"][i, k] + rows["tail_radius"][i, k] * np.sin(rows["tail_start"][i, k])
            gal = (0.0, 0.0) if k == 0 else (rows["comp_x"][i], rows["comp_y"][i])
            assert math.hypot(root_x - gal[0], root_y - gal[1]) <= 1.8 + 1e-6


def _polar_moments(img, x, y):
    rho, phi = np.hypot(x, y), np.arctan2(y, x)
    w = img / img.sum()
    mr = (w * rho).sum()
    c, s = (w * np.cos(phi)).sum(), (w * np.sin(phi)).sum()
    dphi = np.angle(np.exp(1j * (phi - np.arctan2(s, c))))
    return math.sqrt((w * (rho - mr) ** 2).sum()), mr * math.sqrt((w * dphi**2).sum())


def test_sis_arc_is_stretched_tangentially_by_the_closed_form_factor():
    # a source small next to its offset (sigma / beta = 0.15), where the polar mapping is linear
    theta_e, beta, sigma_s = 2.0, 0.8, 0.12
    z = np.zeros(1)
    cat = {"theta_e": np.array([theta_e]), "lens_e1": z, "lens_e2": z, "gamma1": z, "gamma2": z,
           "src_x": np.array([beta]), "src_y": z, "src_phi": z, "src_q": np.ones(1), "src_r_e": np.array([0.3]),
           "src_modes": np.zeros((1, 3)), "src_mode_phase": np.zeros((1, 3)), "src_diffuse_flux": np.zeros((1, 3)),
           "clump_flux": np.ones((1, 1, 3)), "clump_sigma": np.array([[sigma_s]]), "clump_x": np.zeros((1, 1)),
           "clump_y": np.zeros((1, 1))}
    arcs, _ = lensed_source_images(cat, 101)
    x, y = mo.stamp_grid(101)
    main = arcs[0, 1] * (x > 0)  # the outer image, on the source's side
    radial, tangential = _polar_moments(main, x, y)
    pix_var = PIX**2 / 12  # pixel-averaging variance along each direction
    stretch = math.sqrt(tangential**2 - pix_var) / math.sqrt(radial**2 - pix_var)
    assert abs(stretch / ((beta + theta_e) / beta) - 1) < 0.1
    assert abs(math.sqrt(radial**2 - pix_var) / sigma_s - 1) < 0.1


def test_tier_a_arcs_are_tangentially_elongated_after_the_psf():
    rows = _rows(sc.LENS_A, 24)
    assert np.all(rows["theta_e"] >= 0.9 * rows["psfsize_r"] - 1e-9)
    arcs, _ = lensed_source_images(rows, 64)
    seen = convolve_stamps(arcs, rows["psfsize_r"][:, None] * np.ones((1, 3)), BETA)
    x, y = mo.stamp_grid(64)
    stretch = np.array([np.divide(*_polar_moments(seen[i, 1], x, y)[::-1]) for i in range(24)])
    # tangential extent (arc length) well above the radial width, which the PSF sets
    assert np.mean(stretch > 2.0) >= 0.9


def _arc_and_host(rows):
    """Noiseless renders split into the arc alone and everything else (the same rows without the lens)."""
    full, _ = render_chunk(rows, stamp=64, beta=BETA, seed=0, noise=False)
    unlensed = {k: v.copy() for k, v in rows.items()}
    unlensed["scene"][:] = sc.N1_LRG
    rest, _ = render_chunk(unlensed, stamp=64, beta=BETA, seed=0, noise=False)
    return full - rest, rest


def _lensed_mag_r(arc):
    return 22.5 - 2.5 * np.log10(arc[:, 1].sum((1, 2)))


def test_tier_a_arc_peaks_stand_above_the_host_light():
    rows = _rows(sc.LENS_A, 24)
    assert np.all(rows["theta_e"] >= np.maximum(1.2, 0.9 * rows["psfsize_r"]) - 1e-9)
    arc, host = _arc_and_host(rows)
    r_arc, r_host = arc[:, 1].reshape(24, -1), host[:, 1].reshape(24, -1)
    peak = r_arc.argmax(1)
    contrast = r_arc[np.arange(24), peak] / r_host[np.arange(24), peak]
    # at the arc's brightest pixel the seen arc outshines the seen deflector in r (and far more in g)
    assert np.mean(contrast >= 1.0) >= 0.9
    # the peak lies on the arc, outside the seeing disk of the host's core
    rad = np.hypot(*(c.ravel()[peak] for c in mo.stamp_grid(64)))
    assert np.all(rad >= 0.5 * rows["psfsize_r"])
    # total lensed magnitudes in the range of real DR10 tier-A arcs
    mag = _lensed_mag_r(arc)
    assert np.all((mag > 19.5 - 0.01) & (mag < 22.0 + 0.01))


def test_tier_b_arcs_are_faint_but_above_the_sky_and_outside_the_core():
    rows = _rows(sc.LENS_B, 24)
    # theta_E at least 1.5 PSF half widths: the arc is not inside the seeing disk of the core
    assert np.all(rows["theta_e"] >= 0.75 * rows["psfsize_r"] - 1e-9) and np.all(rows["theta_e"] >= 1.0)
    arc, _ = _arc_and_host(rows)
    noisy, _ = render_chunk(rows, stamp=64, beta=BETA, seed=0, noise=True)
    quiet, _ = render_chunk(rows, stamp=64, beta=BETA, seed=0, noise=False)
    sigma = (noisy - quiet).std(axis=(2, 3))  # measured sky noise per object and band
    snr = np.sqrt(((arc / sigma[:, :, None, None]) ** 2).sum((1, 2, 3)))
    lo = sc.ARC_TARGETS["B"]["snr"][0]
    # matched-filter SNR of the arc alone at least the tier-B floor (sky noise measured to ~1 %)
    assert np.mean(snr >= 0.95 * lo) >= 0.9
    mag = _lensed_mag_r(arc)
    assert np.all((mag > 20.0 - 0.01) & (mag < 23.5 + 0.01))
    # fainter than tier A on the whole
    assert np.median(mag) > np.median(_lensed_mag_r(_arc_and_host(_rows(sc.LENS_A, 24))[0]))


def test_tidal_tails_leave_on_the_far_side_and_stay_clear_of_the_other_galaxy():
    rows = _rows(sc.MERGER, 24)
    x, y = mo.stamp_grid(101)
    gal_x = np.stack([np.zeros(24), rows["comp_x"]], 1)
    gal_y = np.stack([np.zeros(24), rows["comp_y"]], 1)
    r_e = np.stack([rows["host_r_e"], rows["comp_r_e"]], 1)
    for k in range(2):
        sub = np.flatnonzero(rows["tail_flux"][:, k, 1] > 0)
        img = mo.curved_streams(x, y, radius=rows["tail_radius"][sub, k], width=rows["tail_width"][sub, k],
                                start=rows["tail_start"][sub, k], span=rows["tail_span"][sub, k],
                                center_x=rows["tail_cx"][sub, k], center_y=rows["tail_cy"][sub, k])
        for j, i in enumerate(sub):
            ox, oy = gal_x[i, 1 - k], gal_y[i, 1 - k]
            own = np.array([gal_x[i, k], gal_y[i, k]])
            w = img[j] / img[j].sum()
            # the tail's light centroid is on the side of its galaxy away from the other one
            cx, cy = (w * x).sum() - own[0], (w * y).sum() - own[1]
            assert cx * (ox - own[0]) + cy * (oy - own[1]) < 0
            # little of the tail's light falls on the other galaxy: a separate stream, not a smudge
            near = np.hypot(x - ox, y - oy) < max(1.8, 2.0 * r_e[i, 1 - k])
            assert w[near].sum() < 0.05
            # long: the stream's light spans several arcsec (a curved arc, not a blob)
            assert math.hypot(*(np.ptp(c[w > 0.2 * w.max()]) for c in (x, y))) > 3.0
