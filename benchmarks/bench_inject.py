"""Injection throughput: dhs batched engine vs lenstronomy ImageModel, identical parameters, one run.

Work per injection: 3 bands (g, r, z), 101 x 101 pixels at 0.262"/pixel, supersampling 3,
SIE + external shear, elliptical Sersic source, Gaussian PSF with per-band FWHM.
lenstronomy renders one band at a time through its standard ImageModel API (a new kwargs set per
injection; one ImageModel per PSF FWHM, built before timing); dhs renders the whole batch at once
(torch.compile'd fused ray-shooting kernel, its compilation excluded as a warm-up and reported;
PSF kernels are built inside the timing). Both codes get a warm-up call. The machine may be
shared: run several times and quote the range.

    python benchmarks/bench_inject.py [--quick] [--batch 128] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from dhs_inject import engine, render
from dhs_inject.priors import PriorConfig, draw_parameters
from dhs_inject.sources import sersic_b_n

N_PIX, PIXEL_SCALE, SUPERSAMPLE = 101, 0.262, 3
BAND_SCALE = (1.05, 1.00, 0.94)


def lenstronomy_rate(params, psfsize_r, n_inj: int) -> float:
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    ra0 = -(N_PIX - 1) / 2 * PIXEL_SCALE
    data = ImageData(image_data=np.zeros((N_PIX, N_PIX)), ra_at_xy_0=ra0, dec_at_xy_0=ra0,
                     transform_pix2angle=np.eye(2) * PIXEL_SCALE)
    lens_model, light_model = LensModel(["SIE", "SHEAR"]), LightModel(["SERSIC_ELLIPSE"])
    flux = engine.band_fluxes(params["src_r_mag"], params["src_g_r"], params["src_r_z"])
    fwhms = [[round(float(psfsize_r[i] * BAND_SCALE[band]), 3) for band in range(3)] for i in range(n_inj)]
    # one ImageModel per PSF, all built before the clock starts: this setup (or the equivalent
    # update_psf per band) would cost lenstronomy ~20 % more; dhs builds its kernels inside the timing
    models = {fwhm: ImageModel(data, PSF(psf_type="GAUSSIAN", fwhm=fwhm), lens_model_class=lens_model,
                               source_model_class=light_model,
                               kwargs_numerics={"supersampling_factor": SUPERSAMPLE})
              for row in fwhms for fwhm in row}
    start = time.perf_counter()
    for i in range(n_inj):
        kw_lens = [dict(theta_E=params["theta_e"][i], e1=params["lens_e1"][i], e2=params["lens_e2"][i],
                        center_x=0.0, center_y=0.0),
                   dict(gamma1=params["gamma1"][i], gamma2=params["gamma2"][i])]
        n, r_e = params["src_n"][i], params["src_r_e"][i]
        b = float(sersic_b_n(torch.tensor(n)))
        for band in range(3):
            fwhm = fwhms[i][band]
            amp = flux[i, band] / (2 * math.pi * n * r_e**2 * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n))
            kw_src = [dict(amp=amp, R_sersic=r_e, n_sersic=n, e1=params["src_e1"][i], e2=params["src_e2"][i],
                           center_x=params["src_x"][i], center_y=params["src_y"][i])]
            models[fwhm].image(kw_lens, kw_src)
    return n_inj / (time.perf_counter() - start)


def dhs_rate(params, psfsize_r, batch: int, repeats: int, device: str) -> float:
    def once():
        kernels = engine.make_kernels(torch.as_tensor(psfsize_r, dtype=torch.float32, device=device),
                                      pixel_scale=PIXEL_SCALE, band_scale=BAND_SCALE)
        arc = engine.simulate_arcs(params, n_pix=N_PIX, pixel_scale=PIXEL_SCALE, supersample=SUPERSAMPLE,
                                   kernels=kernels, compile=True)
        return arc.arcs.sum().item()  # forces completion (CUDA sync)

    start = time.perf_counter()
    once()  # warm-up: torch.compile (cached in-process after the first call), excluded from the rate
    warmup = time.perf_counter() - start
    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return repeats * batch / (time.perf_counter() - start), warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 1 minute)")
    parser.add_argument("--batch", type=int, default=64, help="dhs batch size (64 fits the caches of a 2-core CPU best)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    params = draw_parameters(PriorConfig(), args.batch, rng)
    engine.lens_e1e2(params)
    psfsize_r = rng.uniform(1.0, 1.6, args.batch)
    n_lt = min(30 if args.quick else 100, args.batch)
    repeats = 3 if args.quick else 10
    lenstronomy_rate(params, psfsize_r, 2)  # warm-up: imports and first-call caches
    dhs1, warmup = dhs_rate(params, psfsize_r, args.batch, repeats, args.device)
    lt = lenstronomy_rate(params, psfsize_r, n_lt)
    dhs2, _ = dhs_rate(params, psfsize_r, args.batch, repeats, args.device)  # bracket the baseline in time
    dhs = 0.5 * (dhs1 + dhs2)
    print(f"threads={torch.get_num_threads()} device={args.device} batch={args.batch} "
          f"{N_PIX}px ss{SUPERSAMPLE} 3 bands SIE+shear+Sersic+Gaussian PSF")
    print(f"dhs warm-up (torch.compile, excluded): {warmup:.1f} s")
    if render.fast_kernel_failure():  # the injectors' fallback: the figure below is the eager path's
        print(f"dhs compiled kernel unavailable, eager path measured: {render.fast_kernel_failure()}")
    print(f"dhs: {dhs:.1f} injections/s (passes before/after the baseline: {dhs1:.0f}, {dhs2:.0f})   "
          f"lenstronomy: {lt:.2f} injections/s ({n_lt} injections)")
    print(f"inject: ratio {dhs / lt:.1f} (dhs batched 3-band injections/s vs lenstronomy ImageModel per band)")


if __name__ == "__main__":
    main()
