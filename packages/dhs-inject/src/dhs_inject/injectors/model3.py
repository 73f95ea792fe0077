"""Model 3: real source morphology (HDF/HUDF galaxy stamps) or re-injected real arcs.

Sources are pixel stamps from :mod:`dhs_inject.stamps` (a FITS directory, or by default the isolated
galaxies of scikit-image's Hubble Deep Field image), bilinearly interpolated in the source plane by
the engine's stamp path. Each stamp has unit total flux; the band fluxes come from the drawn r
magnitude and the prior's g-r, r-z colours (one morphology for all bands: the HDF JPEG's channel
stretch is not a calibrated colour, see :mod:`dhs_inject.stamps`). With ``source_size = "prior"``
the stamp's pixel scale is set so that its half-light radius equals the drawn ``src_r_e``; with
``"native"`` the stamp keeps its native scale and ``src_r_e`` records the resulting size. A random
dihedral orientation (8 rotations/flips, exact on the pixel grid) decorrelates repeated stamps.

Pitfall: a stamp whose source-plane pixels are much smaller than the ray-shooting sub-pixels is
point-sampled (aliased), exactly as a Sersic profile of the same R_e would be; raise
``supersample`` for sources much smaller than ``pixel_scale / supersample``.

``real_arc_residuals``: instead of lensing a stamp, the arc of a real lens is extracted from a
positive cutout by median-filter host subtraction (:mod:`dhs_inject.arc_residuals`) and added to
the host; magnification is unknown (NaN) and the injected flux is that of the residual.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dhs_inject import engine
from dhs_inject.arc_residuals import extract_arc_residuals, fit_to_size
from dhs_inject.errors import InjectionParameterError
from dhs_inject.injectors.base import BaseInjector
from dhs_inject.injectors.configs import Model3Config
from dhs_inject.priors import draw_parameters, perturb_parameters
from dhs_inject.stamps import hdf_stamps, load_fits_stamps

UNUSED_SERSIC = ("src_n", "src_q", "src_phi")


def _orient(images: np.ndarray, orient: np.ndarray) -> np.ndarray:
    """Apply dihedral orientation codes 0..7 (k = code % 4 quarter turns, flip if code >= 4)."""
    out = np.empty_like(images)
    for i, code in enumerate(orient):
        im = np.rot90(images[i], k=int(code) % 4, axes=(-2, -1))
        out[i] = np.flip(im, axis=-1) if code >= 4 else im
    return out


def _load_positives(path: str) -> np.ndarray:
    file = Path(path)
    if not file.is_file() or file.suffix != ".npy":
        raise InjectionParameterError(
            f"model3 real_arc_residuals {path!r} is not an existing .npy file of (M, 3, H, W) lens cutouts")
    cutouts = np.load(file, allow_pickle=False)
    if cutouts.ndim != 4 or cutouts.shape[1] != 3 or len(cutouts) == 0:
        raise InjectionParameterError(
            f"model3 real_arc_residuals {path!r} has shape {cutouts.shape}; expected (M, 3, H, W) with M >= 1")
    return cutouts


class Model3Injector(BaseInjector):
    def __init__(self, config: Model3Config):
        super().__init__(config)
        self.residuals = None
        self.library = None
        if config.real_arc_residuals is not None:
            self.residuals = extract_arc_residuals(
                _load_positives(config.real_arc_residuals), filter_size=config.arc_filter_size,
                clip_sigma=config.arc_clip_sigma, core_radius=config.arc_core_radius)
        elif config.stamp_dir is not None:
            self.library = load_fits_stamps(config.stamp_dir, config.stamp_pixel_scale)
        else:
            self.library = hdf_stamps(config.hdf_min_area, config.hdf_min_snr)

    def _orientation(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, 8, n) if self.config.random_orientation else np.zeros(n, int)

    def draw(self, hosts, meta, rng):
        n = len(hosts)
        if self.residuals is not None:
            params = {"arc_index": rng.integers(0, len(self.residuals), n), "arc_orient": self._orientation(n, rng)}
            return params, _orient(self.residuals[params["arc_index"]], params["arc_orient"])
        params = draw_parameters(self.config.prior, n, rng)
        for key in UNUSED_SERSIC:
            params.pop(key)
        lib = self.library
        params["src_stamp_index"] = rng.integers(0, len(lib.stamps), n)
        params["src_stamp_orient"] = self._orientation(n, rng)
        half_light = lib.half_light_pix[params["src_stamp_index"]]
        if self.config.source_size == "native":
            params["src_stamp_scale"] = np.full(n, lib.native_scale)
            params["src_r_e"] = half_light * lib.native_scale
        else:
            params["src_stamp_scale"] = params["src_r_e"] / half_light
        return params, _orient(lib.stamps[params["src_stamp_index"]], params["src_stamp_orient"])

    def perturbed(self, params, sources):
        """Sensitivity perturbations of stamp sources: the stamps stay, ``src_r_e_scale`` scales their
        arcsec-per-pixel (so the half-light radius) instead of clump offsets; re-injected real arc
        residuals have no parameters to perturb but the PSF (refused otherwise)."""
        pert = self.config.perturb
        if self.residuals is not None:
            if not pert.is_identity():
                raise InjectionParameterError("model3 with real_arc_residuals re-injects observed arcs: there is no source "
                                 "parameter to perturb; drop the sensitivity variant or use stamp sources")
            return params, sources, 1.0
        shown, _, psf_scale = perturb_parameters(pert, self.config.prior, params, None)
        if shown is not params and pert.src_r_e_scale != 1.0:
            shown["src_stamp_scale"] = shown["src_stamp_scale"] * pert.src_r_e_scale
        return shown, sources, psf_scale

    def render(self, params, sources, psfsize_r: torch.Tensor, n_pix: int, rng) -> engine.ArcImages:
        kernels = engine.make_kernels(psfsize_r, pixel_scale=self.config.pixel_scale, model=self.config.psf,
                                      moffat_beta=self.config.moffat_beta, band_scale=self.config.band_scale)
        if self.residuals is not None:
            arcs = torch.as_tensor(fit_to_size(sources, n_pix), dtype=self.dtype, device=self.device)
            nan = torch.full((len(arcs),), float("nan"), dtype=self.dtype, device=self.device)
            return engine.ArcImages(arcs=arcs, magnification=nan, source_flux=arcs.sum(dim=(-2, -1)),
                                    kernels=kernels)
        return engine.simulate_arcs(params, n_pix=n_pix, pixel_scale=self.config.pixel_scale,
                                    supersample=self.config.supersample, kernels=kernels,
                                    max_supersample=self.config.max_supersample, tolerance=self.config.tolerance,
                                    psf_convolution=self.config.psf_convolution, stamps=sources,
                                    dtype=self.dtype, device=self.device)


def model3(config: Model3Config) -> Model3Injector:
    """Real source morphology: lensed HDF/HUDF galaxy stamps, or re-injected real arc residuals."""
    return Model3Injector(config)
