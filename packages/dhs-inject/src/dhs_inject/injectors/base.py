"""Shared machinery of the injectors: config fields, host checks, retries and the result batch."""

from __future__ import annotations

import numpy as np
import torch

from dhs_inject import engine, noise
from dhs_inject.errors import require
from dhs_inject.injectors.configs import InjectorConfig
from dhs_inject.priors import draw_clumps, draw_parameters, perturb_parameters


class BaseInjector:
    """Draws parameters, renders arcs, adds them to hosts, retries failures on new hosts."""

    def __init__(self, config: InjectorConfig):
        from dhs_models.inference import require_device

        self.config = config
        self.dtype = torch.float64 if config.dtype == "float64" else torch.float32
        # "cuda" on a machine without CUDA is refused here, before any host is drawn
        self.device = require_device(getattr(config, "device", "cpu"), what="injector device")

    # hooks for subclasses -------------------------------------------------
    def host_problem(self, host: np.ndarray, meta: dict[str, object]) -> str | None:
        """Reason this host cannot be used, or None."""
        return None if np.isfinite(host).all() else "host_nonfinite"

    def draw(self, hosts: np.ndarray, meta: dict[str, np.ndarray], rng: np.random.Generator):
        """Parameters (dict of (n,) arrays) and clumps for the given hosts."""
        params = draw_parameters(self.config.prior, len(hosts), rng)
        clumps, params["n_clumps"], params["clump_frac"] = draw_clumps(self.config.prior, params["src_r_e"], rng)
        return params, clumps

    def perturbed(self, params, clumps):
        """(params, clumps, PSF FWHM scale) to render under ``config.perturb`` (see
        :func:`dhs_inject.priors.perturb_parameters`)."""
        return perturb_parameters(self.config.perturb, self.config.prior, params, clumps)

    def render(self, params, clumps, psfsize_r: torch.Tensor, n_pix: int, rng) -> engine.ArcImages:
        kernels = engine.make_kernels(psfsize_r, pixel_scale=self.config.pixel_scale, model=self.config.psf,
                                      moffat_beta=self.config.moffat_beta, band_scale=self.config.band_scale)
        return engine.simulate_arcs(params, n_pix=n_pix, pixel_scale=self.config.pixel_scale,
                                    supersample=self.config.supersample, kernels=kernels,
                                    max_supersample=self.config.max_supersample, tolerance=self.config.tolerance,
                                    psf_convolution=self.config.psf_convolution, clumps=clumps,
                                    dtype=self.dtype, compile=self.config.fast_kernel, device=self.device)

    # protocol -------------------------------------------------------------
    def inject(self, hosts: np.ndarray, host_meta: dict[str, np.ndarray], rng: np.random.Generator, *,
               overrides: dict[str, np.ndarray] | None = None):
        """Inject one arc into each host slot (retrying a failed host on a new one).

        ``overrides`` maps drawn parameter names (e.g. ``src_r_mag``) to (N,) per-host values that
        replace the drawn ones after the draw, so the random stream is the same with or without
        them (an injection-built training set sets each source magnitude relative to its host's).
        """
        hosts = np.asarray(hosts)
        require(hosts.ndim == 4 and hosts.shape[1] == 3 and hosts.shape[2] == hosts.shape[3],
                f"hosts must be (N, 3, H, H) g, r, z cutouts; got shape {hosts.shape}")
        require("psfsize_r" in host_meta, "host_meta needs 'psfsize_r' (r-band PSF FWHM, arcsec)")
        n = len(hosts)
        failures: dict[str, int] = {}
        chosen = np.full(n, -1)
        order = list(rng.permutation(n))
        queue = list(rng.permutation(n))  # replacement hosts for retries
        for slot in range(n):
            candidates = [order[slot]] + queue[: self.config.max_retries]
            for attempt, idx in enumerate(candidates):
                meta = {k: v[idx] for k, v in host_meta.items()}
                reason = self.host_problem(hosts[idx], meta)
                if reason is None:
                    chosen[slot] = idx
                    break
                failures[reason] = failures.get(reason, 0) + 1
                if attempt > 0:
                    queue.pop(0)
        ok = chosen >= 0
        idx = chosen[ok]
        if idx.size == 0:  # every host failed (e.g. no LRG-like host for model2): the engine needs >= 1 arc
            size = hosts.shape[-1]
            return engine.InjectionBatch(
                images=np.zeros((0, 3, size, size), np.float32), arcs=np.zeros((0, 3, size, size), np.float32),
                magnification=np.zeros(0), arc_snr=np.zeros(0), injected_flux=np.zeros((0, 3)), params={},
                host_index=np.zeros(0, int), n_ok=0, n_failed=int(sum(failures.values())), n_dropped=n,
                failures=failures, arc_flux=np.zeros((0, 3)), source_flux=np.zeros((0, 3)))
        sel_meta = {k: np.asarray(v)[idx] for k, v in host_meta.items()}
        params, clumps = self.draw(hosts[idx], sel_meta, rng)
        for key, values in (overrides or {}).items():
            require(key in params, f"override {key!r} is not a drawn parameter; drawn: {sorted(params)}")
            values = np.asarray(values, dtype=float)
            require(values.shape == (n,), f"override {key!r} needs one value per host ({n}); got shape {values.shape}")
            params[key] = values[idx]
        # a sensitivity perturbation changes what is rendered, never what was drawn (and records
        # the drawn values): the same rng stream is consumed whatever the perturbation
        shown, shown_clumps, psf_scale = self.perturbed(params, clumps)
        engine.lens_e1e2(params)
        if shown is not params:
            engine.lens_e1e2(shown)
        dev = self.device
        psfsize = torch.as_tensor(np.asarray(sel_meta["psfsize_r"], float) * psf_scale, dtype=self.dtype, device=dev)
        arc = self.render(shown, shown_clumps, psfsize, hosts.shape[-1], rng)
        host_t = torch.as_tensor(hosts[idx], dtype=self.dtype, device=dev)
        if self.config.noise == "psfdepth" and "psfdepth_r" in sel_meta:
            depth = torch.as_tensor(np.asarray(sel_meta["psfdepth_r"], float), dtype=self.dtype, device=dev)
            sigma = noise.sky_sigma_from_psfdepth(depth[:, None].expand(-1, 3), arc.kernels)
        else:
            sigma = noise.sky_sigma_from_ring(host_t)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        images, arcs, snr, flux = engine.inject_arcs(host_t, arc, sky_sigma=sigma,
                                                     arc_poisson_gain=self.config.arc_poisson_gain, generator=gen)
        def host(t: torch.Tensor) -> np.ndarray:  # results come back to the CPU as numpy
            return t.detach().cpu().numpy()

        snr_np = host(snr)
        finite = host(torch.isfinite(images).flatten(1).all(1)) & np.isfinite(snr_np)
        if not finite.all():
            failures["nonfinite_result"] = failures.get("nonfinite_result", 0) + int((~finite).sum())
        keep = finite
        return engine.InjectionBatch(
            images=host(images)[keep].astype(np.float32), arcs=host(arcs)[keep].astype(np.float32),
            magnification=host(arc.magnification)[keep], arc_snr=snr_np[keep],
            injected_flux=host(flux)[keep], arc_flux=host(arc.arcs.sum(dim=(-2, -1)))[keep],
            source_flux=host(arc.source_flux)[keep], params={k: np.asarray(v)[keep] for k, v in params.items()},
            host_index=idx[keep], n_ok=int(keep.sum()), n_failed=int(sum(failures.values())),
            n_dropped=int(n - keep.sum()), failures=failures)
