"""Priors of the injected lens and source parameters, drawn with numpy (pure functions of an rng).

Parameter names (each an (N,) array): theta_e (arcsec), lens_q, lens_phi (radians, from +x to +y),
lens_x, lens_y (arcsec), gamma_ext, gamma_phi, beta_frac (source offset / theta_e), src_x, src_y,
src_r_mag, src_g_r, src_r_z, src_r_e (arcsec, circularised half-light radius), src_n, src_q,
src_phi, n_clumps, clump_frac. Clumps are returned separately as (N, 4, 4) rows of
(flux fraction, dx, dy, sigma) relative to the source centre (zero rows are padding).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from dhs_core import ComponentConfig

__all__ = ["MAX_CLUMPS", "PriorConfig", "draw_clumps", "draw_parameters"]

MAX_CLUMPS = 4


class PriorConfig(ComponentConfig):
    """Ranges of the injection priors (uniform unless said otherwise)."""

    theta_e: tuple[float, float] = (0.5, 3.0)  # Einstein radius range, arcsec
    beta_frac: tuple[float, float] = (0.1, 1.0)  # source offset / theta_e, area-weighted sqrt(U(lo^2, hi^2))
    src_r_mag: tuple[float, float] = (23.0, 26.0)  # unlensed source r-band AB magnitude
    src_r_e: tuple[float, float] = (0.05, 0.50)  # source half-light radius, arcsec
    src_n: tuple[float, float] = (0.5, 4.0)  # source Sersic index
    src_q: tuple[float, float] = (0.5, 1.0)  # source axis ratio (minor/major)
    src_g_r: tuple[float, float] = (0.2, 0.25)  # g-r colour: Normal(mean, sigma)
    src_r_z: tuple[float, float] = (0.1, 0.25)  # r-z colour: Normal(mean, sigma)
    lens_q: tuple[float, float] = (0.5, 1.0)  # lens (mass) axis ratio, model1/model3
    shear: tuple[float, float] = (0.0, 0.08)  # external shear magnitude; angle uniform
    clump_prob: float = Field(0.6, ge=0, le=1)  # probability that a source has clumps
    n_clumps: tuple[int, int] = (1, 4)  # number of clumps when present (inclusive)
    clump_frac: tuple[float, float] = (0.15, 0.45)  # total flux fraction carried by the clumps
    clump_sigma_frac: tuple[float, float] = (0.1, 0.3)  # clump Gaussian sigma / src_r_e

    @model_validator(mode="after")
    def _physical_ranges(self) -> PriorConfig:
        """Refuse unphysical ranges when the spec is read, not half-way through a run."""
        problems = []
        for name in ("theta_e", "beta_frac", "src_r_mag", "src_r_e", "src_n", "src_q", "lens_q", "shear",
                     "n_clumps", "clump_frac", "clump_sigma_frac"):
            lo, hi = getattr(self, name)
            if lo > hi:
                problems.append(f"{name} = [{lo}, {hi}]: the lower bound exceeds the upper")
        positive = {"theta_e": "Einstein radius", "src_r_e": "half-light radius", "src_n": "Sersic index",
                    "clump_sigma_frac": "clump size"}
        for name, what in positive.items():
            if getattr(self, name)[0] <= 0:
                problems.append(f"{name} = {list(getattr(self, name))}: the {what} must be > 0")
        for name in ("src_q", "lens_q"):
            lo, hi = getattr(self, name)
            if lo <= 0 or hi > 1:
                problems.append(f"{name} = [{lo}, {hi}]: an axis ratio must lie in (0, 1]")
        for name in ("beta_frac", "shear"):
            if getattr(self, name)[0] < 0:
                problems.append(f"{name} = {list(getattr(self, name))}: must be >= 0")
        if self.clump_frac[0] < 0 or self.clump_frac[1] >= 1:
            problems.append(f"clump_frac = {list(self.clump_frac)}: a flux fraction must lie in [0, 1)")
        if self.n_clumps[0] < 1 or self.n_clumps[1] > MAX_CLUMPS:
            problems.append(f"n_clumps = {list(self.n_clumps)}: must lie in [1, {MAX_CLUMPS}]")
        for name in ("src_g_r", "src_r_z"):
            if getattr(self, name)[1] < 0:
                problems.append(f"{name} = {list(getattr(self, name))}: (mean, sigma) needs sigma >= 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n)


def draw_parameters(prior: PriorConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw n lens + source parameter sets (lens centred on the stamp)."""
    p: dict[str, np.ndarray] = {}
    p["theta_e"] = _uniform(rng, prior.theta_e, n)
    p["lens_q"] = _uniform(rng, prior.lens_q, n)
    p["lens_phi"] = rng.uniform(0, np.pi, n)
    p["lens_x"] = np.zeros(n)
    p["lens_y"] = np.zeros(n)
    p["gamma_ext"] = _uniform(rng, prior.shear, n)
    p["gamma_phi"] = rng.uniform(0, np.pi, n)
    lo, hi = prior.beta_frac
    # area-weighted: uniform surface density of sources inside the annulus lo..hi theta_e
    p["beta_frac"] = np.sqrt(rng.uniform(lo**2, hi**2, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    p["src_x"] = p["lens_x"] + p["beta_frac"] * p["theta_e"] * np.cos(angle)
    p["src_y"] = p["lens_y"] + p["beta_frac"] * p["theta_e"] * np.sin(angle)
    p["src_r_mag"] = _uniform(rng, prior.src_r_mag, n)
    p["src_g_r"] = rng.normal(prior.src_g_r[0], prior.src_g_r[1], n)
    p["src_r_z"] = rng.normal(prior.src_r_z[0], prior.src_r_z[1], n)
    p["src_r_e"] = _uniform(rng, prior.src_r_e, n)
    p["src_n"] = _uniform(rng, prior.src_n, n)
    p["src_q"] = _uniform(rng, prior.src_q, n)
    p["src_phi"] = rng.uniform(0, np.pi, n)
    return p


def draw_clumps(prior: PriorConfig, src_r_e: np.ndarray, rng: np.random.Generator):
    """(N, 4, 4) clumps (flux fraction, dx, dy, sigma) and the per-source n_clumps, clump_frac."""
    n = len(src_r_e)
    has = rng.uniform(size=n) < prior.clump_prob
    count = np.where(has, rng.integers(prior.n_clumps[0], prior.n_clumps[1] + 1, n), 0)
    frac = np.where(has, _uniform(rng, prior.clump_frac, n), 0.0)
    clumps = np.zeros((n, MAX_CLUMPS, 4))
    weights = rng.dirichlet(np.ones(MAX_CLUMPS), n)
    active = np.arange(MAX_CLUMPS)[None, :] < count[:, None]
    weights = np.where(active, weights, 0.0)
    weights /= np.maximum(weights.sum(1, keepdims=True), 1e-12)
    clumps[..., 0] = weights * frac[:, None]
    # clumps scattered like the light: Gaussian offsets with the half-light radius as scale
    clumps[..., 1] = rng.normal(0, 1, (n, MAX_CLUMPS)) * src_r_e[:, None]
    clumps[..., 2] = rng.normal(0, 1, (n, MAX_CLUMPS)) * src_r_e[:, None]
    clumps[..., 3] = rng.uniform(*prior.clump_sigma_frac, (n, MAX_CLUMPS)) * src_r_e[:, None]
    clumps[~active] = [0.0, 0.0, 0.0, 1.0]
    return clumps, count, frac


def perturb_parameters(perturb, prior: PriorConfig, params: dict[str, np.ndarray], clumps: np.ndarray | None):
    """(params, clumps, PSF FWHM scale) to render, from the drawn ones and a
    :class:`dhs_inject.injectors.configs.Perturbation` (common random numbers: nothing is redrawn).

    The inputs are not modified. ``lens_q`` maps each drawn q from the prior's range to the new
    one at the same quantile, so the q order of the injections is kept."""
    if perturb.is_identity():
        return params, clumps, 1.0
    p = {k: np.array(v, copy=True) for k, v in params.items()}
    if perturb.src_r_e_scale != 1.0:
        p["src_r_e"] = p["src_r_e"] * perturb.src_r_e_scale
        if clumps is not None:
            clumps = np.array(clumps, copy=True)
            clumps[..., 1:4] *= perturb.src_r_e_scale  # offsets and sizes scale with the source
    p["src_g_r"] = p["src_g_r"] + perturb.src_g_r_shift
    p["src_r_mag"] = p["src_r_mag"] + perturb.src_r_mag_shift
    if perturb.lens_q is not None:
        lo, hi = prior.lens_q
        u = (p["lens_q"] - lo) / (hi - lo) if hi > lo else np.full_like(p["lens_q"], 0.5)
        new_lo, new_hi = perturb.lens_q
        p["lens_q"] = new_lo + np.clip(u, 0.0, 1.0) * (new_hi - new_lo)
    return p, clumps, float(perturb.psf_fwhm_scale)
