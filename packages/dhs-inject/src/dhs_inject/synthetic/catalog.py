"""The synthetic DR10-like catalog: who is where, under which sky, with what morphology.

:func:`build_catalog` draws every per-object parameter at once (vectorised, one numpy Generator
seeded from the run), so the catalog depends only on the seed and the config. Rendering later
reads rows of it in chunks. Columns are ``(N,)`` arrays, or ``(N, K)`` for per-object lists
(neighbours, stars, clumps) padded with zero flux.

Scene codes (``scene``) tell the renderer what to paint; population counts are exact
(largest-remainder apportionment of ``n_hosts``), so a config's ratios are met to one object.
Magnitudes are observed (extinguished by ``ebv`` with the DECam coefficients of the Legacy
Surveys), like DR10 catalog fluxes; colours named ``*_gr``/``*_rz`` are intrinsic.
"""

from __future__ import annotations

import numpy as np

from dhs_inject.depth import m5_to_psfdepth
from dhs_inject.synthetic import scenes as sc
from dhs_inject.synthetic.config import CONFUSER_CATEGORIES, SyntheticConfig

#: A_band / E(B-V) for DECam g, r, z (Schlafly & Finkbeiner 2011, as used by the Legacy Surveys)
EXTINCTION = np.array([3.214, 2.165, 1.211])
N_NEIGHBOURS, N_STARS, N_CLUMPS = 4, 3, 7


def apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer counts summing to ``total`` in proportion to ``weights`` (largest remainder)."""
    keys = list(weights)
    w = np.array([weights[k] for k in keys], dtype=float)
    raw = total * w / w.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return dict(zip(keys, counts.tolist()))


def population_counts(cfg: SyntheticConfig) -> dict[str, int]:
    """Exact number of objects of every scene for ``cfg``."""
    n_pos = int(round(cfg.n_hosts * cfg.positive_fraction))
    n_a = int(round(n_pos * cfg.tier_a_fraction))
    n_noise = int(round((n_pos - n_a) * cfg.label_noise_fraction))
    n_neg = cfg.n_hosts - n_pos
    n_n2 = int(round(n_neg * cfg.n2_fraction))
    n_hidden = min(int(round(n_neg * cfg.hidden_lens_rate)), n_neg - n_n2)
    n_n1 = n_neg - n_n2 - n_hidden
    n_lrg = int(round(n_n1 * cfg.lrg_fraction))
    counts = {"lens_a": n_a, "lens_b": n_pos - n_a - n_noise, "label_noise": n_noise,
              "hidden_lens": n_hidden, "n1_lrg": n_lrg, "n1_field": n_n1 - n_lrg}
    mix = {c: cfg.confuser_mix.get(c, 0.0) for c in CONFUSER_CATEGORIES}
    counts.update(apportion(n_n2, mix) if n_n2 else {c: 0 for c in CONFUSER_CATEGORIES})
    return counts


def _lognormal(rng, median, sigma, lo, hi, n):
    return np.clip(median * np.exp(sigma * rng.standard_normal(n)), lo, hi)


def _sky_patch(rng, cfg: SyntheticConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere inside a square patch (uniform in sin(dec), not in dec)."""
    half = np.radians(cfg.patch_deg / 2)
    d0 = np.radians(cfg.dec_center)
    sin_lo, sin_hi = np.sin(max(d0 - half, -np.pi / 2)), np.sin(min(d0 + half, np.pi / 2))
    dec = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, n)))
    width = cfg.patch_deg / max(np.cos(d0), 0.1)
    ra = np.mod(cfg.ra_center + rng.uniform(-width / 2, width / 2, n), 360.0)
    return ra, dec


def _observing_conditions(rng, n: int) -> dict[str, np.ndarray]:
    """DR10-like seeing, depth, exposure counts and dust."""
    psfsize_r = _lognormal(rng, 1.3, 0.15, 0.9, 1.8, n)
    m5_r = np.clip(rng.normal(24.1, 0.3, n), 23.5, 24.8)
    nobs_z = np.clip(np.round(3.0 + 2.5 * (m5_r - 24.1) / 0.3 * 0.5 + rng.normal(0, 1.0, n)), 1, 12)
    m5_z = m5_r - 0.9 + 0.12 * (nobs_z - 3) + rng.normal(0, 0.1, n)
    m5_g = m5_r + 0.45 + rng.normal(0, 0.12, n)
    nobs_bin = np.where(nobs_z <= 2, "0-2", np.where(nobs_z <= 4, "3-4", "5+"))
    return {"psfsize_r": psfsize_r, "psfdepth_g": m5_to_psfdepth(m5_g), "psfdepth_r": m5_to_psfdepth(m5_r),
            "psfdepth_z": m5_to_psfdepth(m5_z), "nobs_z_bin": nobs_bin,
            "ebv": _lognormal(rng, 0.03, 0.5, 0.005, 0.15, n)}


def _galaxies(rng, scene: np.ndarray, lens_rng) -> dict[str, np.ndarray]:
    """Host galaxy morphology, magnitude and colour for every scene.

    Lens and merger hosts get their sizes and magnitudes from ``lens_rng``, a second stream, so
    tuning those populations leaves every other object of a seeded catalog unchanged.
    """
    n = scene.size
    lrg = np.isin(scene, sc.LRG_HOST_SCENES)
    # field galaxies: counts rise ~10^(0.3 m) towards the faint limit of a lens-search sample
    u = rng.uniform(size=n)
    lo, hi = 10 ** (0.3 * 17.5), 10 ** (0.3 * 21.0)
    mag_r = np.log10(lo + u * (hi - lo)) / 0.3
    type_bin = rng.choice(np.array(["REX", "EXP", "SER", "DEV"]), size=n, p=[0.35, 0.35, 0.15, 0.15])
    type_bin = np.where(lrg, np.where(rng.uniform(size=n) < 0.6, "DEV", "SER"), type_bin)
    type_bin = np.where(scene == sc.EDGE_ON, np.where(rng.uniform(size=n) < 0.7, "EXP", "SER"), type_bin)
    type_bin = np.where(np.isin(scene, (sc.SPIRAL, sc.BLUE_CLUMPY)),
                        np.where(rng.uniform(size=n) < 0.6, "EXP", "REX"), type_bin)
    type_bin = np.where(scene == sc.MERGER, np.where(rng.uniform(size=n) < 0.5, "SER", "DEV"), type_bin)
    sersic_n = np.select([type_bin == "DEV", type_bin == "SER"], [4.0, 0.0], 1.0)
    sersic_n = np.where(type_bin == "SER", np.where(lrg, rng.uniform(2.5, 6.0, n), rng.uniform(0.7, 5.0, n)),
                        sersic_n)
    # brighter galaxies are larger (~0.6 dex per 4 mag)
    size_scale = 10 ** (-0.15 * (mag_r - 19.5))
    r_e = np.select([type_bin == "REX", type_bin == "EXP"],
                    [_lognormal(rng, 0.45, 0.3, 0.2, 1.0, n), _lognormal(rng, 0.9, 0.35, 0.3, 2.5, n)],
                    _lognormal(rng, 0.8, 0.4, 0.3, 3.0, n)) * size_scale
    q = np.where(type_bin == "REX", 1.0, np.where(type_bin == "EXP", rng.uniform(0.25, 1.0, n),
                                                   rng.uniform(0.45, 1.0, n)))
    blue = np.isin(type_bin, ("REX", "EXP"))
    g_r = np.where(blue, np.clip(rng.normal(0.6, 0.2, n), 0.2, 1.2), np.clip(rng.normal(1.2, 0.25, n), 0.6, 1.7))
    r_z = np.where(blue, np.clip(rng.normal(0.5, 0.2, n), 0.1, 1.0), np.clip(rng.normal(0.75, 0.15, n), 0.4, 1.1))
    # LRG-like hosts: red sequence at 0.3 < z < 0.8, the deflectors of galaxy-scale lenses
    mag_r = np.where(lrg, rng.uniform(17.0, 20.0, n), mag_r)
    g_r = np.where(lrg, rng.uniform(1.6, 1.9, n), g_r)
    r_z = np.where(lrg, rng.uniform(0.9, 1.1, n), r_z)
    r_e = np.where(lrg, _lognormal(rng, 1.1, 0.3, 0.5, 3.0, n) * 10 ** (-0.12 * (mag_r - 18.5)), r_e)
    # tier-A deflectors: the LRGs on which graders see a clear arc are the compact, moderately
    # bright ones (r 18-20, R_e 0.5-1.3"); on a giant r ~ 17 elliptical with R_e > 2" an arc at
    # 1-2" sits on a bright halo and rarely earns an A
    tier_a = scene == sc.LENS_A
    mag_r = np.where(tier_a, lens_rng.uniform(18.0, 20.0, n), mag_r)
    # tier-B deflectors and hidden lenses: the LRG population short of the largest haloes (R_e <= 1.8"),
    # on which a faint arc is still noticed by a careful grader
    lens_b = np.isin(scene, (sc.LENS_B, sc.HIDDEN))
    mag_r = np.where(lens_b, lens_rng.uniform(17.5, 20.0, n), mag_r)
    r_e = np.where(lens_b, np.clip(_lognormal(lens_rng, 1.0, 0.3, 0.5, 1.8, n) * 10 ** (-0.12 * (mag_r - 18.5)),
                                   0.5, 1.8), r_e)
    r_e = np.where(tier_a, np.clip(_lognormal(lens_rng, 0.8, 0.25, 0.5, 1.3, n) * 10 ** (-0.12 * (mag_r - 19.0)),
                                   0.5, 1.3), r_e)
    # thin disks seen edge-on; spirals nearly face-on with room for arms
    q = np.where(scene == sc.EDGE_ON, rng.uniform(0.1, 0.25, n), q)
    r_e = np.where(np.isin(scene, (sc.EDGE_ON, sc.SPIRAL)), rng.uniform(1.0, 2.5, n), r_e)
    q = np.where(scene == sc.SPIRAL, rng.uniform(0.55, 1.0, n), q)
    mag_r = np.where(np.isin(scene, (sc.EDGE_ON, sc.RING, sc.MERGER)), rng.uniform(17.5, 20.0, n), mag_r)
    # face-on spirals big and bright enough for arms 2-5" apart to be resolved (the disk; the arms
    # and bulge add their own light)
    r_e = np.where(scene == sc.SPIRAL, rng.uniform(2.2, 4.0, n), r_e)
    mag_r = np.where(scene == sc.SPIRAL, rng.uniform(17.0, 19.0, n), mag_r)
    # merging pair: compact enough that the companion 2.5-4.5" away and the tails stand apart
    r_e = np.where(scene == sc.MERGER, lens_rng.uniform(0.5, 1.3, n), r_e)
    # ring hosts: compact early types, so the ring at 2-4" sits outside their light
    r_e = np.where(scene == sc.RING, rng.uniform(0.4, 1.2, n), r_e)
    mag_r = np.where(scene == sc.RING, rng.uniform(18.0, 20.0, n), mag_r)
    # clumpy star-forming galaxies: a faint, extended blue disk under the knots
    r_e = np.where(scene == sc.BLUE_CLUMPY, rng.uniform(1.0, 2.0, n), r_e)
    mag_r = np.where(scene == sc.BLUE_CLUMPY, rng.uniform(19.5, 21.0, n), mag_r)
    return {"type_bin": type_bin, "host_mag_r": mag_r, "host_gr": g_r, "host_rz": r_z, "host_n": sersic_n,
            "host_r_e": np.clip(r_e, 0.2, 4.0), "host_q": q, "host_phi": rng.uniform(0, np.pi, n)}


def observed_fluxes(mag_r, g_r, r_z, ebv) -> np.ndarray:
    """(N,) intrinsic r magnitude and colours + E(B-V) -> (N, 3) observed g, r, z nanomaggies."""
    mags = np.stack([mag_r + g_r, mag_r, mag_r - r_z], axis=-1) + EXTINCTION * np.asarray(ebv)[..., None]
    return 10 ** ((22.5 - mags) / 2.5)


def build_catalog(cfg: SyntheticConfig, seed: int) -> dict[str, np.ndarray]:
    """The whole catalog for ``cfg`` and ``seed`` (rows in a seeded random order)."""
    rng = np.random.default_rng(seed)
    counts = population_counts(cfg)
    scene = np.concatenate([np.full(k, sc.SCENE_CODES[name], np.int8) for name, k in counts.items()])
    scene = scene[rng.permutation(scene.size)]
    n = scene.size
    cat: dict[str, np.ndarray] = {"scene": scene, "row": np.arange(n)}
    cat["ra"], cat["dec"] = _sky_patch(rng, cfg, n)
    cat.update(_observing_conditions(rng, n))
    cat.update(_galaxies(rng, scene, np.random.default_rng([seed, 1])))
    cat["host_flux"] = observed_fluxes(cat["host_mag_r"], cat["host_gr"], cat["host_rz"], cat["ebv"])
    cat.update(sc.draw_scene_params(rng, cat))
    cat.update(_field(rng, cfg, cat))
    return cat


def _field(rng, cfg: SyntheticConfig, cat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Neighbouring galaxies and stars scattered over the stamp."""
    n = cat["scene"].size
    half = (cfg.stamp - 1) / 2 * 0.262
    n_nb = np.minimum(rng.poisson(cfg.neighbours_per_cutout, n), N_NEIGHBOURS)
    nb_on = np.arange(N_NEIGHBOURS)[None] < n_nb[:, None]
    shape = (n, N_NEIGHBOURS)
    # neighbours avoid the central 2" so the target stays the target
    rad = rng.uniform(2.0, half * 1.05, shape)
    ang = rng.uniform(0, 2 * np.pi, shape)
    nb_mag = rng.uniform(20.0, 23.5, shape)
    out = {"nb_x": rad * np.cos(ang), "nb_y": rad * np.sin(ang),
           "nb_r_e": _lognormal(rng, 0.4, 0.35, 0.15, 1.2, shape), "nb_q": rng.uniform(0.3, 1.0, shape),
           "nb_phi": rng.uniform(0, np.pi, shape), "nb_n": np.where(rng.uniform(size=shape) < 0.7, 1.0, 4.0)}
    nb_flux = observed_fluxes(nb_mag, rng.uniform(0.3, 1.7, shape), rng.uniform(0.2, 1.0, shape),
                              cat["ebv"][:, None])
    out["nb_flux"] = np.where(nb_on[..., None], nb_flux, 0.0)
    n_st = np.minimum(rng.poisson(cfg.stars_per_cutout, n), N_STARS)
    st_on = np.arange(N_STARS)[None] < n_st[:, None]
    shape = (n, N_STARS)
    out["star_x"] = rng.uniform(-half, half, shape)
    out["star_y"] = rng.uniform(-half, half, shape)
    # stellar locus: g-r 0.3-1.4 with r-z rising along it
    st_gr = rng.uniform(0.3, 1.4, shape)
    st_flux = observed_fluxes(rng.uniform(16.0, 22.5, shape), st_gr, 0.1 + 0.6 * st_gr, cat["ebv"][:, None])
    out["star_flux"] = np.where(st_on[..., None], st_flux, 0.0)
    return out
