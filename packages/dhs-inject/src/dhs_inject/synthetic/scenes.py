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
#: arc brightness targets per lens tier (tier B also for hidden lenses): the seen arc's peak r surface
#: brightness over the host's at that pixel ("contrast"), the minimum matched-filter SNR of the arc
#: alone against sky noise (g+r+z) and the total lensed r magnitude range (bright, faint) it is
#: clipped to. Tier A: arcs above the deflector's light and bright (real DR10 tier-A arcs are
#: r ~ 19.5-22 in all); tier B: below the host's peak light there but still several times the sky
#: noise along the arc, i.e. a faint arc a careful grader sees
ARC_TARGETS = {"A": {"contrast": (2.0, 5.0), "snr": (100.0, 250.0), "mag": (19.5, 22.0)},
               "B": {"contrast": (0.5, 1.0), "snr": (25.0, 60.0), "mag": (20.0, 23.5)}}


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
    # ring_proxy: a blue star-forming ring of a few arcsec radius around a compact red host (collisional
    # or resonance rings), kept outside ~3 R_e so the ring is not lost in the host's wings. A ring
    # with 40-90 % of the host's r flux at R ~ 2-4" has mu_r ~ 22.5-24 mag/arcsec^2, and being blue
    # (g-r ~ 0.3 against the host's ~1.7) it outshines the host in g.
    p["ring_radius"] = np.clip(np.maximum(u(2.0, 3.8), 3.0 * cat["host_r_e"]), 2.0, 4.0)
    p["ring_width"] = u(0.15, 0.35)
    p["ring_q"], p["ring_asym"], p["ring_asym_phi"] = u(0.65, 1.0), u(0.0, 0.6), u(0, 2 * np.pi)
    p["ring_flux"] = _colour_fluxes(host_r * u(0.4, 0.9), u(0.15, 0.45), u(0.0, 0.3))
    # edge-on disk bulge; spiral bulge and arms. Arms are young stars (blue) and carry about as
    # much light as the smooth disk, as in grand-design spirals in g/r
    p["bulge_flux"] = _colour_fluxes(host_r * u(0.08, 0.3), u(1.3, 1.7), u(0.7, 1.0))
    p["bulge_r_e"] = u(0.25, 0.6)
    p["arm_flux"] = _colour_fluxes(host_r * u(0.6, 1.1), u(0.15, 0.45), u(0.0, 0.3))
    p["arm_pitch"] = np.radians(u(15.0, 28.0))
    p["arm_count"] = np.where(rng.uniform(size=n) < 0.7, 2.0, 3.0)
    p["arm_phase"] = u(0, 2 * np.pi)
    p.update(_knots(rng, n))
    p.update(_merger(rng, cat))
    p.update(_lens_params(rng, cat))
    return p


#: hexagonal lattice (unit spacing) on which blue_clumpy knots are placed: distinct lattice sites
#: guarantee the minimum knot separation without rejection sampling
_HEX = np.array([(i + 0.5 * j, j * np.sqrt(3) / 2) for i in range(-3, 4) for j in range(-3, 4)])
_HEX = _HEX[np.hypot(*_HEX.T) < 2.1]
_HEX = _HEX[np.argsort(np.hypot(*_HEX.T), kind="stable")]


def _knots(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """blue_clumpy: 3-7 compact blue star-forming knots >= 1.17" from each other.

    Knots sit on distinct sites of a hexagonal lattice of spacing 1.4-1.9" (inner sites preferred)
    jittered by <= 0.08" per axis, so any two are >= 1.17" apart: separate knots under a 1.3" PSF,
    not one blob. Each knot is r = 20.8-22.8 (a giant HII-region complex at z ~ 0.1-0.3), sigma
    0.06-0.2" (FWHM of a few tenths of an arcsec), g-r 0-0.35.
    """
    n_knots = rng.integers(3, N_KNOTS + 1, n)
    on = np.arange(N_KNOTS)[None] < n_knots[:, None]
    site_r = np.hypot(*_HEX.T)
    keys = rng.uniform(size=(n, len(_HEX))) * (1.0 + 0.6 * site_r)
    sites = _HEX[np.argsort(keys, axis=1)[:, :N_KNOTS]]
    spacing = rng.uniform(1.4, 1.9, (n, 1))
    jitter = rng.uniform(-0.08, 0.08, (n, N_KNOTS, 2))
    turn = rng.uniform(0, 2 * np.pi, (n, 1))
    sx, sy = sites[..., 0] * spacing, sites[..., 1] * spacing
    knot_r = 10 ** ((22.5 - rng.uniform(20.8, 22.8, (n, N_KNOTS))) / 2.5) * on
    return {"knot_x": sx * np.cos(turn) - sy * np.sin(turn) + jitter[..., 0],
            "knot_y": sx * np.sin(turn) + sy * np.cos(turn) + jitter[..., 1],
            "knot_sigma": rng.uniform(0.06, 0.2, (n, N_KNOTS)),
            "knot_flux": _colour_fluxes(knot_r, rng.uniform(0.0, 0.35, (n, N_KNOTS)),
                                        rng.uniform(-0.1, 0.2, (n, N_KNOTS)))}


#: closest approach (arcsec) of a tidal tail to the other galaxy's centre, and in units of its R_e
TAIL_CLEARANCE, TAIL_CLEARANCE_RE = 1.8, 2.0
_TAIL_STEPS = 33


def _merger(rng: np.random.Generator, cat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """merger: a companion 2.5-4.5" away and one or two long tidal tails, each a circular arc.

    Tail k leaves galaxy k (host, companion) on the side away from the other galaxy, tilted by
    10-45 deg, then bends with radius 2.5-4.5" through 80-150 deg (3.5-11" long); both tails turn the
    same way, giving the point-symmetric shape of a prograde encounter. A tail is cut short where it
    would come within max(1.8", 2 R_e) of the other galaxy, so it reads as a separate curved stream
    (the arc-like look that makes mergers the hard confuser), not as light smeared onto the
    companion. Tails are bright (30-60 % of the host's r flux in all, mu_r ~ 21.5-23 mag/arcsec^2,
    like the brightest Toomre-type tails) and bluish (g-r 0.3-0.8), again like lensed arcs.
    """
    n = cat["scene"].size
    host_r = cat["host_flux"][:, 1]
    u = lambda lo, hi, shape=n: rng.uniform(lo, hi, shape)  # noqa: E731
    sep, sang = u(2.5, 4.5), u(0, 2 * np.pi)
    p = {"comp_x": sep * np.cos(sang), "comp_y": sep * np.sin(sang),
         "comp_flux": _colour_fluxes(host_r * u(0.25, 0.8), u(0.8, 1.6), u(0.4, 0.9))}
    p["comp_r_e"], p["comp_q"], p["comp_phi"] = u(0.4, 0.9), u(0.4, 1.0), u(0, np.pi)
    sense = np.where(rng.uniform(size=(n, 1)) < 0.5, 1.0, -1.0)
    out_ang = sang[:, None] + np.array([np.pi, 0.0])  # away from the other galaxy
    gal_x = np.stack([np.zeros(n), p["comp_x"]], 1)
    gal_y = np.stack([np.zeros(n), p["comp_y"]], 1)
    r_e = np.stack([cat["host_r_e"], p["comp_r_e"]], 1)
    reach = np.clip(1.2 * r_e, 0.5, 1.8)
    sx, sy = gal_x + reach * np.cos(out_ang), gal_y + reach * np.sin(out_ang)
    t_ang = out_ang + sense * np.radians(u(10, 45, (n, 2)))
    radius = u(2.5, 4.5, (n, 2))
    # centre of curvature to the left of the direction of travel for counter-clockwise tails
    p["tail_cx"] = sx - sense * radius * np.sin(t_ang)
    p["tail_cy"] = sy + sense * radius * np.cos(t_ang)
    p["tail_start"] = np.arctan2(sy - p["tail_cy"], sx - p["tail_cx"])
    p["tail_radius"], p["tail_width"] = radius, u(0.25, 0.4, (n, 2))
    span = np.radians(u(80, 150, (n, 2)))
    # walk along each tail; stop it before it comes close to the other galaxy (the widening tip,
    # two root widths at the end, is included in the clearance)
    f = np.linspace(0.0, 1.0, _TAIL_STEPS)
    ang = p["tail_start"][..., None] + sense[..., None] * span[..., None] * f
    px = p["tail_cx"][..., None] + radius[..., None] * np.cos(ang)
    py = p["tail_cy"][..., None] + radius[..., None] * np.sin(ang)
    other_x, other_y = gal_x[:, ::-1, None], gal_y[:, ::-1, None]
    clear = np.maximum(TAIL_CLEARANCE, TAIL_CLEARANCE_RE * r_e[:, ::-1])[..., None] + 2 * p["tail_width"][..., None]
    bad = np.hypot(px - other_x, py - other_y) < clear
    first_bad = np.where(bad.any(-1), bad.argmax(-1), _TAIL_STEPS)
    keep = np.maximum(first_bad - 1, 0) / (_TAIL_STEPS - 1)
    p["tail_span"] = span * keep * sense
    two = rng.uniform(size=n) < 0.6
    tail_r = host_r * u(0.3, 0.6)
    share = np.stack([np.where(two, 0.6, 1.0), np.where(two, 0.4, 0)], 1) * (keep > 0.2)
    p["tail_flux"] = _colour_fluxes(tail_r[:, None] * share, u(0.3, 0.8, (n, 2)), u(0.2, 0.5, (n, 2)))
    return p


def _lens_params(rng: np.random.Generator, cat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SIE + shear deflector aligned with its LRG, and a clumpy, irregular, colour-graded source."""
    scene, n = cat["scene"], cat["scene"].size
    u = lambda lo, hi, shape=n: rng.uniform(lo, hi, shape)  # noqa: E731
    psf = cat["psfsize_r"]
    # tier A: clearly resolved arcs (theta_E >= 0.9 PSF, >= 1.2" and >= 1.2 host R_e, so the arc lies
    # outside the compact host's core) of extended sources (R_e 0.35-0.7"); beta = 0.06-0.3 theta_E
    # gives tangential stretches (theta_E + beta) / beta ~ 4-17, i.e. long arcs or near-rings.
    # Tier B (and hidden lenses): theta_E >= 0.75 PSF FWHM (1.5 HWHM), >= 1" and >= R_e, so the arc is not
    # buried in the seeing disk of the host's core. The source magnitudes drawn here are only
    # starting values: the renderer rescales each source to its brightness target (see
    # :func:`dhs_inject.synthetic.lensed.brightness_scale`) and the truth table records the result
    low_a = np.minimum(np.maximum.reduce([np.full(n, 1.2), 0.9 * psf, 1.2 * cat["host_r_e"]]), 2.5)
    theta_a = rng.uniform(low_a, 3.0)
    theta_b = rng.uniform(np.minimum(np.maximum.reduce([np.full(n, 1.0), 0.75 * psf, cat["host_r_e"]]), 2.0), 2.2)
    theta_e = np.where(scene == LENS_A, np.minimum(theta_a, 3.0), theta_b)
    src_mag = np.select([scene == LENS_A, scene == LENS_B], [u(20.8, 22.3), u(21.8, 23.0)], u(21.5, 23.5))
    # brightness targets (ARC_TARGETS): applied by the renderer, which measures each arc
    tier = np.where(scene == LENS_A, "A", "B")
    t = {key: np.where(tier == "A", *(np.array(ARC_TARGETS[k][key])[:, None] for k in "AB"))
         for key in ("contrast", "snr", "mag")}
    arc_contrast = rng.uniform(t["contrast"][0], t["contrast"][1])
    arc_snr_target = rng.uniform(t["snr"][0], t["snr"][1])
    beta_frac = np.where(scene == LENS_A, u(0.12, 0.45), u(0.1, 0.45))
    q_lens = np.clip(cat["host_q"] + rng.normal(0, 0.1, n), 0.45, 1.0)
    phi_lens = cat["host_phi"] + rng.normal(0, 0.2, n)
    ell = (1 - q_lens) / (1 + q_lens)
    g_mag, g_ang = u(0.0, 0.05), u(0, np.pi)
    ang = u(0, 2 * np.pi)
    src_flux_r = 10 ** ((22.5 - src_mag) / 2.5) * 10 ** (-0.4 * 2.165 * cat["ebv"])
    # clumps carry 15-40 % of the light: knots along the arcs without turning them into beads
    clump_frac = u(0.15, 0.4)
    n_cl = rng.integers(2, N_SOURCE_CLUMPS + 1, n)
    on = np.arange(N_SOURCE_CLUMPS)[None] < n_cl[:, None]
    share = rng.dirichlet(np.ones(N_SOURCE_CLUMPS), n) * on
    share /= share.sum(1, keepdims=True)
    src_r_e = u(0.2, 0.45)
    cr = src_r_e[:, None] * np.sqrt(rng.uniform(0.0, 1.5, (n, N_SOURCE_CLUMPS)))
    ca = rng.uniform(0, 2 * np.pi, (n, N_SOURCE_CLUMPS))
    return {
        "theta_e": theta_e, "arc_contrast": arc_contrast, "arc_snr_target": arc_snr_target,
        "arc_mag_range": t["mag"].T.copy(), "lens_e1": ell * np.cos(2 * phi_lens), "lens_e2": ell * np.sin(2 * phi_lens),
        "gamma1": g_mag * np.cos(2 * g_ang), "gamma2": g_mag * np.sin(2 * g_ang), "source_mag_r": src_mag,
        "src_x": beta_frac * theta_e * np.cos(ang), "src_y": beta_frac * theta_e * np.sin(ang),
        "src_r_e": src_r_e, "src_q": u(0.4, 1.0), "src_phi": u(0, np.pi),
        # m = 1..3 Fourier distortions of the diffuse light's isophotes: irregular, lopsided shapes
        "src_modes": rng.uniform(0.0, 0.3, (n, 3)), "src_mode_phase": rng.uniform(0, 2 * np.pi, (n, 3)),
        # diffuse light redder than the star-forming clumps: a colour gradient across the source
        "src_diffuse_flux": _colour_fluxes(src_flux_r * (1 - clump_frac), u(0.25, 0.55), u(0.15, 0.45)),
        "clump_flux": _colour_fluxes((src_flux_r * clump_frac)[:, None] * share,
                                     u(-0.1, 0.2, (n, N_SOURCE_CLUMPS)), u(-0.1, 0.2, (n, N_SOURCE_CLUMPS))),
        "clump_x": cr * np.cos(ca), "clump_y": cr * np.sin(ca),
        "clump_sigma": rng.uniform(0.05, 0.15, (n, N_SOURCE_CLUMPS)),
    }
