"""What each synthetic object is (its scene) and the parameters of its extra light.

Scenes:

* ``n1_field`` / ``n1_lrg`` — N1 negatives: the galaxy population, and LRG-like hosts among it;
* the five N2 confusers (``confuser_category``): ``ring_proxy`` (red host + blue ring),
  ``edge_on_proxy`` (thin disk + small bulge), ``spiral`` (disk + bulge + logarithmic arms),
  ``blue_clumpy`` (faint disk + bright blue knots), ``merger`` (two galaxies + curved tidal tails);
* ``lens_a`` / ``lens_b`` — positives: an LRG-like deflector lensing a source with clumps,
  irregular diffuse light and a colour gradient (bluer clumps), which is *not* a Sersic, so
  models trained here meet a real sim-to-real gap when tested on Sersic injections;
* ``label_noise`` — labelled tier-B lenses that are LRGs with a ring, tail or knots and no lens;
* ``hidden_lens`` — true lenses inside the N1 negatives (label 0), as in any real survey.
"""

from __future__ import annotations

import numpy as np

SCENE_NAMES = ("n1_field", "n1_lrg", "ring_proxy", "edge_on_proxy", "spiral", "blue_clumpy", "merger",
               "lens_a", "lens_b", "label_noise", "hidden_lens")
SCENE_CODES = {name: i for i, name in enumerate(SCENE_NAMES)}
N1_FIELD, N1_LRG, RING, EDGE_ON, SPIRAL, BLUE_CLUMPY, MERGER, LENS_A, LENS_B, LABEL_NOISE, HIDDEN = range(11)
LRG_HOST_SCENES = (N1_LRG, RING, LENS_A, LENS_B, LABEL_NOISE, HIDDEN)
LENS_SCENES = (LENS_A, LENS_B, HIDDEN)
N_KNOTS = 7
N_SOURCE_CLUMPS = 6


def manifest_labels(scene: np.ndarray) -> dict[str, np.ndarray]:
    """label / tier / pool / confuser_category / is_lens of every scene (None = null)."""
    label = np.isin(scene, (LENS_A, LENS_B, LABEL_NOISE)).astype(np.int8)
    tier = np.where(scene == LENS_A, "A", np.where(np.isin(scene, (LENS_B, LABEL_NOISE)), "B", None))
    pool = np.where(label == 1, None, np.where(np.isin(scene, (N1_FIELD, N1_LRG, HIDDEN)), "N1", "N2"))
    names = np.asarray(SCENE_NAMES, dtype=object)[scene]
    confuser = np.where(np.isin(scene, (RING, EDGE_ON, SPIRAL, BLUE_CLUMPY, MERGER)), names, None)
    return {"label": label, "tier": tier.astype(object), "pool": pool.astype(object),
            "confuser_category": confuser.astype(object), "is_lens": np.isin(scene, LENS_SCENES)}


def _colour_fluxes(flux_r, g_r, r_z):
    """(…) r flux and colours -> (…, 3) g, r, z fluxes (same morphology in every band)."""
    return np.stack([flux_r * 10 ** (-0.4 * g_r), flux_r, flux_r * 10 ** (0.4 * r_z)], axis=-1)


def draw_scene_params(rng: np.random.Generator, cat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feature parameters for every object (drawn for all rows; each scene reads its own)."""
    scene = cat["scene"]
    n = scene.size
    host_r = cat["host_flux"][:, 1]
    u = lambda lo, hi, shape=n: rng.uniform(lo, hi, shape)  # noqa: E731
    # label-noise objects borrow a ring, a tail or knots: the features that fool graders
    noise_kind = rng.choice(np.array([RING, MERGER, BLUE_CLUMPY]), size=n)
    feature = np.where(scene == LABEL_NOISE, noise_kind, scene)
    p: dict[str, np.ndarray] = {"feature": feature.astype(np.int8)}
    # ring_proxy: a blue star-forming ring at Einstein-radius-like distances
    p["ring_radius"], p["ring_width"] = u(1.0, 2.6), u(0.12, 0.3)
    p["ring_q"], p["ring_asym"], p["ring_asym_phi"] = u(0.6, 1.0), u(0.0, 0.7), u(0, 2 * np.pi)
    p["ring_flux"] = _colour_fluxes(host_r * u(0.08, 0.3), u(0.2, 0.5), u(0.0, 0.3))
    # edge-on disk bulge; spiral bulge and arms
    p["bulge_flux"] = _colour_fluxes(host_r * u(0.08, 0.35), u(1.3, 1.7), u(0.7, 1.0))
    p["bulge_r_e"] = u(0.25, 0.6)
    p["arm_flux"] = _colour_fluxes(host_r * u(0.25, 0.5), u(0.2, 0.5), u(0.05, 0.3))
    p["arm_pitch"] = np.radians(u(12.0, 30.0))
    p["arm_count"] = np.where(rng.uniform(size=n) < 0.7, 2.0, 3.0)
    p["arm_phase"] = u(0, 2 * np.pi)
    # blue_clumpy knots: star-forming regions, nearly unresolved
    n_knots = rng.integers(3, N_KNOTS + 1, n)
    on = np.arange(N_KNOTS)[None] < n_knots[:, None]
    kr = cat["host_r_e"][:, None] * np.sqrt(rng.uniform(0.05, 2.5, (n, N_KNOTS)))
    ka = rng.uniform(0, 2 * np.pi, (n, N_KNOTS))
    p["knot_x"], p["knot_y"] = kr * np.cos(ka), kr * np.sin(ka)
    p["knot_sigma"] = rng.uniform(0.06, 0.2, (n, N_KNOTS))
    knot_share = rng.dirichlet(np.ones(N_KNOTS), n) * on
    knot_share /= knot_share.sum(1, keepdims=True)
    p["knot_flux"] = _colour_fluxes((host_r * u(0.3, 0.8))[:, None] * knot_share, u(0.0, 0.3, (n, N_KNOTS)),
                                    u(-0.1, 0.2, (n, N_KNOTS)))
    # merger: a companion and one or two tidal tails curving like arcs
    sep, sang = u(0.8, 2.5), u(0, 2 * np.pi)
    p["comp_x"], p["comp_y"] = sep * np.cos(sang), sep * np.sin(sang)
    p["comp_flux"] = _colour_fluxes(host_r * u(0.3, 1.0), u(0.8, 1.6), u(0.4, 0.9))
    p["comp_r_e"], p["comp_q"], p["comp_phi"] = u(0.4, 1.2), u(0.4, 1.0), u(0, np.pi)
    p["tail_radius"], p["tail_width"] = u(1.5, 3.5, (n, 2)), u(0.2, 0.4, (n, 2))
    p["tail_start"] = sang[:, None] + np.array([0.0, np.pi]) + u(-0.6, 0.6, (n, 2))
    p["tail_span"] = np.radians(u(60, 150, (n, 2))) * np.where(rng.uniform(size=(n, 1)) < 0.5, 1, -1)
    # tails leave from the pair's centre of light and bend around it
    p["tail_cx"] = 0.5 * p["comp_x"][:, None] - p["tail_radius"] * np.cos(p["tail_start"]) * 0.6
    p["tail_cy"] = 0.5 * p["comp_y"][:, None] - p["tail_radius"] * np.sin(p["tail_start"]) * 0.6
    two = rng.uniform(size=n) < 0.5
    tail_r = host_r * u(0.1, 0.25)
    p["tail_flux"] = _colour_fluxes(tail_r[:, None] * np.stack([np.where(two, 0.5, 1.0), np.where(two, 0.5, 0)], 1),
                                    u(0.7, 1.2, (n, 2)), u(0.3, 0.7, (n, 2)))
    p.update(_lens_params(rng, cat))
    return p


def _lens_params(rng: np.random.Generator, cat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SIE + shear deflector aligned with its LRG, and a clumpy, irregular, colour-graded source."""
    scene, n = cat["scene"], cat["scene"].size
    u = lambda lo, hi, shape=n: rng.uniform(lo, hi, shape)  # noqa: E731
    psf = cat["psfsize_r"]
    # tier A: resolved arcs (theta_E / PSF >= 0.8) from bright sources; B: fainter or marginal
    theta_a = rng.uniform(np.maximum(1.0, 0.8 * psf + 0.05), 2.6)
    theta_e = np.select([scene == LENS_A, scene == LENS_B], [theta_a, u(0.6, 2.0)], u(0.8, 2.0))
    src_mag = np.select([scene == LENS_A, scene == LENS_B], [u(20.3, 21.8), u(21.8, 23.8)], u(21.0, 23.0))
    beta_frac = np.where(scene == LENS_A, u(0.03, 0.3), u(0.05, 0.5))
    q_lens = np.clip(cat["host_q"] + rng.normal(0, 0.1, n), 0.45, 1.0)
    phi_lens = cat["host_phi"] + rng.normal(0, 0.2, n)
    ell = (1 - q_lens) / (1 + q_lens)
    g_mag, g_ang = u(0.0, 0.05), u(0, np.pi)
    ang = u(0, 2 * np.pi)
    src_flux_r = 10 ** ((22.5 - src_mag) / 2.5) * 10 ** (-0.4 * 2.165 * cat["ebv"])
    clump_frac = u(0.3, 0.6)
    n_cl = rng.integers(2, N_SOURCE_CLUMPS + 1, n)
    on = np.arange(N_SOURCE_CLUMPS)[None] < n_cl[:, None]
    share = rng.dirichlet(np.ones(N_SOURCE_CLUMPS), n) * on
    share /= share.sum(1, keepdims=True)
    src_r_e = u(0.15, 0.45)
    cr = src_r_e[:, None] * np.sqrt(rng.uniform(0.0, 1.5, (n, N_SOURCE_CLUMPS)))
    ca = rng.uniform(0, 2 * np.pi, (n, N_SOURCE_CLUMPS))
    return {
        "theta_e": theta_e, "lens_e1": ell * np.cos(2 * phi_lens), "lens_e2": ell * np.sin(2 * phi_lens),
        "gamma1": g_mag * np.cos(2 * g_ang), "gamma2": g_mag * np.sin(2 * g_ang), "source_mag_r": src_mag,
        "src_x": beta_frac * theta_e * np.cos(ang), "src_y": beta_frac * theta_e * np.sin(ang),
        "src_r_e": src_r_e, "src_q": u(0.4, 1.0), "src_phi": u(0, np.pi),
        # m = 1..3 Fourier distortions of the diffuse light's isophotes: irregular, lopsided shapes
        "src_modes": rng.uniform(0.0, 0.3, (n, 3)), "src_mode_phase": rng.uniform(0, 2 * np.pi, (n, 3)),
        # diffuse light redder than the star-forming clumps: a colour gradient across the source
        "src_diffuse_flux": _colour_fluxes(src_flux_r * (1 - clump_frac), u(0.4, 0.8), u(0.2, 0.5)),
        "clump_flux": _colour_fluxes((src_flux_r * clump_frac)[:, None] * share,
                                     u(0.0, 0.3, (n, N_SOURCE_CLUMPS)), u(-0.1, 0.2, (n, N_SOURCE_CLUMPS))),
        "clump_x": cr * np.cos(ca), "clump_y": cr * np.sin(ca),
        "clump_sigma": rng.uniform(0.03, 0.1, (n, N_SOURCE_CLUMPS)),
    }
