"""An injector of nearly complete Einstein rings.

It reuses dhs-inject's Model 1 machinery (SIE + shear, Sersic + clumps, PSF, noise, retries) and
changes one thing: sources are drawn close to the optical axis, ``beta_frac = |beta| / theta_E``
area-weighted in ``[0, max_beta_frac]``. A source inside the tangential caustic of an SIE produces
four images that merge into a ring when the source is extended, so the finder is probed on the
most symmetric, most "textbook" lenses — a useful upper bound on completeness.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dhs_inject.injectors.base import BaseInjector, InjectorConfig


class EinsteinRingConfig(InjectorConfig):
    """Model 1 options plus the maximum source offset."""

    # largest source offset in units of theta_E (sources uniform in area inside it)
    max_beta_frac: float = Field(0.15, gt=0.0, le=1.0)


class EinsteinRingInjector(BaseInjector):
    def draw(self, hosts, meta, rng: np.random.Generator):
        params, clumps = super().draw(hosts, meta, rng)
        n = len(params["theta_e"])
        beta_frac = np.sqrt(rng.uniform(0.0, self.config.max_beta_frac**2, n))
        angle = rng.uniform(0.0, 2.0 * np.pi, n)
        # move the source (and its clumps, which are stored relative to it) to the new offset
        params["beta_frac"] = beta_frac
        params["src_x"] = params["lens_x"] + beta_frac * params["theta_e"] * np.cos(angle)
        params["src_y"] = params["lens_y"] + beta_frac * params["theta_e"] * np.sin(angle)
        return params, clumps


def einstein_ring(config: EinsteinRingConfig) -> EinsteinRingInjector:
    """Nearly aligned sources: complete or almost complete Einstein rings."""
    return EinsteinRingInjector(config)
