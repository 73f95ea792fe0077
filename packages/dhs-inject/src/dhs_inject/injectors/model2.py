"""Model 2: deflector-conditioned injections into LRG-like hosts.

Only hosts with ``type_bin`` DEV or SER are used (``lrg_only = false`` lifts this, for the test of
whether conditioning matters outside LRGs: ``host_conditioning``). The lens axis ratio and position
angle are those of the host's r-band light, measured with adaptive elliptical-Gaussian-weighted second
moments (Bernstein & Jarvis 2002): background = median of the outer ring, NaN pixels get zero weight, the
weight covariance M is iterated as M <- 2 x (weighted second-moment matrix) starting from a
circular 2-pixel Gaussian; for a Gaussian galaxy the fixed point is its covariance, and the
compact weight makes the estimate insensitive to neighbours and noise far from the centre. Then
``q = sqrt(l_min / l_max)`` of M and ``phi`` the angle of its major axis from +x towards +y.
"""

from __future__ import annotations

import numpy as np

from dhs_inject.injectors.base import BaseInjector
from dhs_inject.injectors.configs import Model2Config

LRG_TYPES = ("DEV", "SER")


def host_shape(r_band: np.ndarray, n_iter: int = 20) -> tuple[float, float]:
    """(q, phi) of a (H, W) r-band host image from adaptive second moments (see module doc)."""
    h, w = r_band.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    xx -= (w - 1) / 2
    yy -= (h - 1) / 2
    ring = np.hypot(xx, yy) >= 0.8 * min(h, w) / 2
    img = r_band - np.nanmedian(r_band[ring])
    img = np.where(np.isfinite(img), img, 0.0)
    cov = np.eye(2) * 4.0
    for _ in range(n_iter):
        inv = np.linalg.inv(cov)
        weight = np.exp(-0.5 * (inv[0, 0] * xx**2 + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy**2))
        wi = np.clip(img, 0, None) * weight
        total = wi.sum()
        if not total > 0:
            raise ValueError("no positive host light")
        m = np.array([[(wi * xx * xx).sum(), (wi * xx * yy).sum()],
                      [(wi * xx * yy).sum(), (wi * yy * yy).sum()]]) / total
        cov = np.clip(2 * m, -1e4, 1e4)
        cov[0, 0], cov[1, 1] = max(cov[0, 0], 0.25), max(cov[1, 1], 0.25)
    vals, vecs = np.linalg.eigh(cov)
    q = float(np.sqrt(vals[0] / vals[1]))
    phi = float(np.arctan2(vecs[1, 1], vecs[0, 1]) % np.pi)
    return q, phi


class Model2Injector(BaseInjector):
    def host_problem(self, host, meta):
        reason = super().host_problem(host, meta)
        if reason:
            return reason
        if self.config.lrg_only and str(meta.get("type_bin", "")).upper() not in LRG_TYPES:
            return "host_not_lrg"
        try:
            host_shape(host[1])
        except (ValueError, np.linalg.LinAlgError):
            return "host_moments_failed"
        return None

    def draw(self, hosts, meta, rng):
        params, clumps = super().draw(hosts, meta, rng)
        shapes = np.array([host_shape(h[1]) for h in hosts]).reshape(-1, 2)
        params["lens_q"] = np.clip(shapes[:, 0], self.config.min_lens_q, 1.0)
        params["lens_phi"] = shapes[:, 1]
        return params, clumps


def model2(config: Model2Config) -> Model2Injector:
    """Lens q and PA traced by the host's r-band light; LRG-like (DEV/SER) hosts only."""
    return Model2Injector(config)
