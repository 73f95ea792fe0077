"""Injection throughput at equal accuracy: dhs default vs lenstronomy vs caustics, identical parameters.

Work per injection: 3 bands (g, r, z), 101 x 101 pixels at 0.262"/pixel, SIE + external shear,
elliptical Sersic source (default prior, no clumps), Gaussian PSF with per-band FWHM.

1. Image agreement: on a few draws, the three codes at fixed supersampling 3 with the PSF on the
   pixel grid (near-identical numerics) are compared: differences of ~1e-3 of the peak check that
   the parameters mean the same thing in each code (a convention error shows as tens of per cent).
   They are not zero: dhs drops the ray through the singular lens centre, which lenstronomy and
   caustics deflect by zero (the bench's lens sits on a pixel centre; with the lens moved off the
   sub-pixel lattice dhs and lenstronomy differ by 7.5e-4 of the peak on the same draws, a rest
   not traced further). lenstronomy's b_n = 1.9992 n - 0.3271 is passed to dhs and caustics;
   caustics' Sersic ``Re`` is the major-axis radius R_e / sqrt(q) and its ``Ie`` the surface
   brightness at Re.
2. Accuracy: on ``--accuracy-draws`` draws, each code's r band at fixed supersampling s in
   ``--levels`` is compared with a converged reference (dhs float64, adaptive up to 243, tolerance
   1e-3, sub-pixel PSF; itself checked against a brute-force float64 reference in
   packages/dhs-inject/tests/test_convergence.py). A level meets the tolerance when every draw has
   its total flux within 1 % and every pixel within 1 % of the peak. lenstronomy is tried with its
   PSF on the pixel grid and with ``supersampling_convolution`` (PSF at the sub-pixel scale);
   caustics with its best CPU configuration (PSF on the pixel grid after binning, torch.compile,
   chunks of 128 injections).
3. Throughput: interleaved rounds (one dhs default batch, one dhs fixed-3 batch, a few
   lenstronomy injections, one caustics batch), each code at the lowest level that met the
   tolerance or, where none did, at the highest level tried (its ratio is then a lower bound).
   Ratios are per round (same machine state), median and range.

    python benchmarks/bench_inject.py [--quick] [--batch 128] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from dhs_inject import engine, psf, render
from dhs_inject.priors import PriorConfig, draw_parameters

N_PIX, PIXEL_SCALE, TOLERANCE = 101, 0.262, 0.01
BAND_SCALE = (1.05, 1.00, 0.94)
CAUSTICS_CHUNK = 128
# the converged reference of the accuracy table: dhs float64, adaptive to this level at tolerance
# 1e-3 (itself checked against brute force by the convergence suite, tests/test_convergence.py)
REF_MAX_SUPERSAMPLE = 2187


def lenstronomy_b_n(n):
    return 1.9992 * np.asarray(n) - 0.3271


def lenstronomy_renderer(params, psfsize_r, supersample: int, subpixel_psf: bool = False, bands=(0, 1, 2),
                         prebuild: bool = True):
    """A function rendering injection i with lenstronomy (one ImageModel call per band).

    With ``prebuild`` every injection's ImageModels are built up front; otherwise call
    ``render_one.prepare(i)`` before timing ``render_one(i)``: it builds injection i's models and
    drops the others (at supersampling 27 with the sub-pixel PSF each model holds ~0.3 GB of
    sub-pixel grids, so 128 injections x 3 bands do not fit in memory)."""
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
    n_inj = len(psfsize_r)
    fwhms = [[round(float(psfsize_r[i] * BAND_SCALE[band]), 3) for band in range(3)] for i in range(n_inj)]

    def numerics(fwhm: float) -> dict:
        if not subpixel_psf:
            return {"supersampling_factor": supersample}
        # the whole (5 sigma truncated) PSF convolved on the sub-pixel grid
        size = 2 * math.ceil(5 * fwhm / psf.FWHM_PER_SIGMA / PIXEL_SCALE) + 1
        return {"supersampling_factor": supersample, "supersampling_convolution": True,
                "supersampling_kernel_size": min(size, N_PIX)}

    # one ImageModel per PSF, all built before the clock starts: this setup (or the equivalent
    # update_psf per band) would cost lenstronomy ~20 % more; dhs builds its kernels inside the timing
    def build(fwhm: float):
        return ImageModel(data, PSF(psf_type="GAUSSIAN", fwhm=fwhm, pixel_size=PIXEL_SCALE),
                          lens_model_class=lens_model, source_model_class=light_model, kwargs_numerics=numerics(fwhm))

    models = {fwhm: build(fwhm) for row in fwhms for fwhm in set(row)} if prebuild else {}

    def render_one(i: int) -> np.ndarray:
        kw_lens = [dict(theta_E=params["theta_e"][i], e1=params["lens_e1"][i], e2=params["lens_e2"][i],
                        center_x=0.0, center_y=0.0),
                   dict(gamma1=params["gamma1"][i], gamma2=params["gamma2"][i])]
        n, r_e = params["src_n"][i], params["src_r_e"][i]
        b = float(lenstronomy_b_n(n))
        out = []
        for band in bands:
            amp = flux[i, band] / (2 * math.pi * n * r_e**2 * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n))
            kw_src = [dict(amp=amp, R_sersic=r_e, n_sersic=n, e1=params["src_e1"][i], e2=params["src_e2"][i],
                           center_x=params["src_x"][i], center_y=params["src_y"][i])]
            out.append(models[fwhms[i][band]].image(kw_lens, kw_src))
        return np.stack(out)

    def prepare(i: int) -> None:
        wanted = {fwhms[i][band] for band in bands}
        for fwhm in set(models) - wanted:
            del models[fwhm]
        for fwhm in wanted - set(models):
            models[fwhm] = build(fwhm)

    render_one.prepare = prepare
    return render_one


def dhs_renderer(params, psfsize_r, device: str, dtype=torch.float32, compile: bool = True, **numerics):
    """dhs batch renderer returning (N, 3, H, W); ``numerics`` are simulate_arcs' supersample,
    psf_convolution, max_supersample, tolerance (default: the engine's defaults)."""

    def render_batch() -> torch.Tensor:
        kernels = engine.make_kernels(torch.as_tensor(psfsize_r, dtype=torch.float32, device=device),
                                      pixel_scale=PIXEL_SCALE, band_scale=BAND_SCALE)
        arc = engine.simulate_arcs(params, n_pix=N_PIX, pixel_scale=PIXEL_SCALE, kernels=kernels, compile=compile,
                                   dtype=dtype, **numerics)
        arc.arcs.sum().item()  # forces completion (CUDA sync)
        render_batch.refined = arc.refined_fraction
        return arc.arcs

    return render_batch


def caustics_renderer(params, psfsize_r, supersample: int, device: str):
    """caustics' SIE, external shear and Sersic (its functional API, batched by broadcasting over
    chunks of injections), sub-pixel mean, then the PSF on the pixel grid (FFT), torch.compile'd."""
    from caustics.lenses.func import reduced_deflection_angle_external_shear, reduced_deflection_angle_sie
    from caustics.light.func import brightness_sersic

    dt = torch.float32
    t = {k: torch.as_tensor(np.asarray(v, dtype=float), dtype=dt, device=device)
         for k, v in params.items() if np.ndim(v) == 1 and np.asarray(v).dtype.kind in "fiu"}
    n = np.asarray(params["src_n"], dtype=float)
    b = torch.as_tensor(lenstronomy_b_n(n), dtype=dt, device=device)
    q_src = t["src_q"]
    re_major = t["src_r_e"] / torch.sqrt(q_src)  # caustics' Re: along the major axis
    flux = torch.as_tensor(engine.band_fluxes(params["src_r_mag"], params["src_g_r"], params["src_r_z"]),
                           dtype=dt, device=device)
    # Ie: surface brightness at Re of a unit-flux profile (total = Ie Re^2 q 2 pi n e^b b^-2n Gamma(2n))
    n_t = t["src_n"]
    ie = 1.0 / (re_major**2 * q_src * 2 * math.pi * n_t * torch.exp(b) * b ** (-2 * n_t) * torch.exp(torch.lgamma(2 * n_t)))
    x, y = render.subpixel_grid(N_PIX, PIXEL_SCALE, supersample, dt, device)
    kernels = engine.make_kernels(torch.as_tensor(psfsize_r, dtype=dt, device=device), pixel_scale=PIXEL_SCALE,
                                  band_scale=BAND_SCALE)
    s = supersample
    # injections per chunk: 128, fewer where the sub-pixel grid is large (memory)
    chunk = max(1, min(CAUSTICS_CHUNK, (1 << 24) // x.numel()))

    # caustics' SIE core softening s: a sub-pixel exactly on the lens centre (odd grid, odd stamp)
    # gets 0/0 = NaN without it; 1e-8" changes no other deflection measurably
    def unit_image(lens_q, lens_phi, theta_e, g1, g2, sx, sy, sq, sphi, sn, sre, sie_, sb):
        shape = (-1, 1, 1)
        ax, ay = reduced_deflection_angle_sie(0.0, 0.0, lens_q.reshape(shape), lens_phi.reshape(shape),
                                              theta_e.reshape(shape), x, y, s=1e-8)
        gx, gy = reduced_deflection_angle_external_shear(0.0, 0.0, g1.reshape(shape), g2.reshape(shape), x, y)
        sb_ = brightness_sersic(sx.reshape(shape), sy.reshape(shape), sq.reshape(shape), sphi.reshape(shape),
                                sn.reshape(shape), sre.reshape(shape), sie_.reshape(shape), x - ax - gx, y - ay - gy,
                                sb.reshape(shape))
        return sb_.reshape(-1, N_PIX, s, N_PIX, s).mean(dim=(2, 4)) * PIXEL_SCALE**2

    compiled = torch.compile(unit_image, dynamic=False)

    def render_batch() -> torch.Tensor:
        out = []
        for lo in range(0, len(psfsize_r), chunk):
            sl = slice(lo, lo + chunk)
            unit = compiled(t["lens_q"][sl], t["lens_phi"][sl], t["theta_e"][sl], t["gamma1"][sl], t["gamma2"][sl],
                            t["src_x"][sl], t["src_y"][sl], q_src[sl], t["src_phi"][sl], n_t[sl], re_major[sl],
                            ie[sl], b[sl])
            out.append(psf.convolve(unit[:, None], kernels[sl] * flux[sl, :, None, None]))
        arcs = torch.cat(out)
        arcs.sum().item()
        return arcs

    return render_batch


def _errors(ours: np.ndarray, ref: np.ndarray) -> float:
    """Worst over draws of max(total-flux error, max pixel error / peak); arrays (N, H, W)."""
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    flux = np.abs(ours.sum(axis=(-2, -1)) / ref.sum(axis=(-2, -1)) - 1)
    pix = np.abs(ours - ref).max(axis=(-2, -1)) / np.abs(ref).max(axis=(-2, -1))
    return float(np.maximum(flux, pix).max())


def _subset(params, rows):
    return {k: np.asarray(v)[rows] for k, v in params.items()}


def agreement(params, psfsize_r, device, has_caustics: bool) -> dict[str, float]:
    """Max |difference| / peak between the codes at fixed 3 with the PSF on the pixel grid."""
    rows = np.arange(4)
    p, fwhm = _subset(params, rows), psfsize_r[rows]
    ours = dhs_renderer(p, fwhm, device, dtype=torch.float64, compile=False, supersample=3,
                        psf_convolution="pixel")().cpu().numpy()
    lt = lenstronomy_renderer(p, fwhm, 3)
    ref = np.stack([lt(i) for i in range(len(rows))])
    out = {"lenstronomy": float((np.abs(ours - ref).max(axis=(-2, -1)) / np.abs(ref).max(axis=(-2, -1))).max())}
    if has_caustics:
        c = caustics_renderer(p, fwhm, 3, device)().cpu().numpy()
        out["caustics"] = float((np.abs(c - ours).max(axis=(-2, -1)) / np.abs(ours).max(axis=(-2, -1))).max())
    return out


def accuracy_levels(params, psfsize_r, device, levels, has_caustics: bool):
    """Error of each code/configuration at each fixed level, r band, against the converged reference."""
    p, fwhm = params, psfsize_r
    ref = dhs_renderer(p, fwhm, device, dtype=torch.float64, compile=False, max_supersample=REF_MAX_SUPERSAMPLE,
                       tolerance=1e-3)().cpu().numpy()[:, 1]
    errors = {"dhs default": {"adaptive": _errors(dhs_renderer(p, fwhm, device)().cpu().numpy()[:, 1], ref)},
              # the error of the "pixel" PSF mode alone (the render converged as in the default)
              "dhs adaptive + PSF on pixels": {"adaptive": _errors(dhs_renderer(
                  p, fwhm, device, psf_convolution="pixel")().cpu().numpy()[:, 1], ref)}}
    for name, sub in (("lenstronomy (PSF on pixels)", False), ("lenstronomy (sub-pixel PSF)", True)):
        errors[name] = {}
        for s in levels:
            lt = lenstronomy_renderer(p, fwhm, s, subpixel_psf=sub, bands=(1,))
            errors[name][s] = _errors(np.stack([lt(i)[0] for i in range(len(fwhm))]), ref)
            if errors[name][s] <= TOLERANCE:
                break
    if has_caustics:
        errors["caustics"] = {}
        for s in levels:
            errors["caustics"][s] = _errors(caustics_renderer(p, fwhm, s, device)().cpu().numpy()[:, 1], ref)
            if errors["caustics"][s] <= TOLERANCE:
                break
    return errors


def _chosen(errs: dict) -> tuple[int, bool]:
    """Lowest level meeting the tolerance, else the highest tried; and whether it met it."""
    for s, e in errs.items():
        if e <= TOLERANCE:
            return s, True
    return max(errs), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws, levels and rounds")
    parser.add_argument("--batch", type=int, default=128, help="dhs / caustics batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--levels", default=None, help="fixed supersampling levels tried, e.g. 3,9,27")
    parser.add_argument("--accuracy-draws", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # as the selection_function stage does: batch arrays reuse heap pages (docs/inject.md)
    from dhs_core.allocator import retain_freed_memory

    print(f"malloc tuning (dhs_core.allocator.retain_freed_memory): {'on' if retain_freed_memory() else 'off'}")
    rounds, per_round, n_acc, levels = (3, 2, 6, (3, 9, 27)) if args.quick else (8, 4, 16, (3, 9, 27))
    levels = tuple(int(v) for v in args.levels.split(",")) if args.levels else levels
    n_acc = args.accuracy_draws or n_acc
    rng = np.random.default_rng(0)
    params = draw_parameters(PriorConfig(), args.batch, rng)
    engine.lens_e1e2(params)
    params["src_b_n"] = lenstronomy_b_n(params["src_n"])  # the same profile in all three codes
    psfsize_r = rng.uniform(1.0, 1.6, args.batch)
    try:
        import caustics  # noqa: F401  (optional benchmark dependency: the "caustics" extra)
        has_caustics = True
    except ImportError:
        has_caustics = False
        print("caustics not installed: skipped (install dhs-inject[bench] or caustics==1.7.1 to compare)")
    print(f"threads={torch.get_num_threads()} device={args.device} batch={args.batch} {N_PIX}px 3 bands "
          "SIE+shear+Sersic+Gaussian PSF")
    agree = agreement(params, psfsize_r, args.device, has_caustics)
    print("image agreement at fixed 3, PSF on pixels (max |diff| / peak vs dhs): "
          + ", ".join(f"{k} {v:.1e}" for k, v in agree.items()))
    rows = np.arange(n_acc)
    errors = accuracy_levels(_subset(params, rows), psfsize_r[rows], args.device, levels, has_caustics)
    print(f"accuracy on {n_acc} draws, r band, vs dhs float64 adaptive ({REF_MAX_SUPERSAMPLE}, tol 1e-3) + sub-pixel PSF; "
          f"tolerance {TOLERANCE:.0%} (flux and pixel / peak, worst draw):")
    for name, errs in errors.items():
        print(f"  {name}: " + ", ".join(f"{s}: {e:.2%}" for s, e in errs.items()))
    lt_name = min((n for n in errors if n.startswith("lenstronomy")),
                  key=lambda n: (not _chosen(errors[n])[1], _chosen(errors[n])[0]))
    lt_level, lt_met = _chosen(errors[lt_name])
    lt = lenstronomy_renderer(params, psfsize_r, lt_level, subpixel_psf="sub-pixel" in lt_name, prebuild=False)
    if lt_level >= 27 and not args.quick:
        per_round = 1  # ~10 s or more per injection at 27
    default = dhs_renderer(params, psfsize_r, args.device)
    fixed3 = dhs_renderer(params, psfsize_r, args.device, supersample=3, psf_convolution="pixel")
    codes = {"dhs default": default, "dhs fixed-3": fixed3}
    if has_caustics:
        c_level, c_met = _chosen(errors["caustics"])
        codes["caustics"] = caustics_renderer(params, psfsize_r, c_level, args.device)
    start = time.perf_counter()
    for fn in codes.values():  # warm-up: torch.compile, excluded from the rates
        fn()
    warmup = time.perf_counter() - start
    lt.prepare(0)
    lt(0)
    batch = len(psfsize_r)
    rates = {name: [] for name in [*codes, "lenstronomy"]}
    for r in range(rounds):
        for name, fn in codes.items():
            start = time.perf_counter()
            fn()
            rates[name].append(batch / (time.perf_counter() - start))
        elapsed = 0.0
        for k in range(per_round):
            i = (r * per_round + k) % batch
            lt.prepare(i)  # its ImageModels, outside the clock
            start = time.perf_counter()
            lt(i)
            elapsed += time.perf_counter() - start
        rates["lenstronomy"].append(per_round / elapsed)
    rates = {k: np.array(v) for k, v in rates.items()}
    print(f"warm-up (torch.compile, excluded): {warmup:.1f} s")
    if render.fast_kernel_failure():
        print(f"dhs compiled kernel unavailable, eager path measured: {render.fast_kernel_failure()}")
    refined = float(default.refined.mean())
    print(f"{rounds} interleaved rounds; dhs default refined {refined:.1%} of pixels")
    labels = {"dhs default": f"adaptive <= {engine.MAX_SUPERSAMPLE} + sub-pixel PSF", "dhs fixed-3": "fixed 3 + PSF on pixels",
              "lenstronomy": f"{lt_name} at {lt_level}" + ("" if lt_met else ", tolerance NOT met")}
    if has_caustics:
        labels["caustics"] = f"fixed {c_level}, PSF on pixels" + ("" if c_met else ", tolerance NOT met")
    for name, v in rates.items():
        print(f"  {name} ({labels[name]}): median {np.median(v):.2f} injections/s (rounds {v.min():.2f}-{v.max():.2f})")
    for name in rates:
        if name == "dhs default":
            continue
        ratio = rates["dhs default"] / rates[name]
        bound = "" if name == "dhs fixed-3" or ("NOT" not in labels[name]) else " (lower bound: it misses the tolerance)"
        print(f"  dhs default / {name}: median {np.median(ratio):.2f}, range {ratio.min():.2f}-{ratio.max():.2f}{bound}")
    ratio = rates["dhs default"] / rates["lenstronomy"]
    print(f"inject: ratio {np.median(ratio):.1f} (dhs default vs lenstronomy {lt_name} at {lt_level}, "
          "3-band injections/s, median of interleaved rounds)")


if __name__ == "__main__":
    main()
