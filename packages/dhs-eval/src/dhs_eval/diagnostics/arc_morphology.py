"""Arc-morphology statistics of arc residual images, to compare injected arcs with real ones.

A finder trained or calibrated on injections is only trustworthy if injected arcs look like real
arcs at the level the network can see. These statistics summarise an arc residual (the cutout
with the lens galaxy's light removed) in four numbers whose distributions can be compared
between real lenses and injections (e.g. with :func:`dhs_eval.stats.ks_test`).

Input: residuals ``(N, 3, H, W)`` in g, r, z (any linear flux unit), batched on the first axis;
every function returns ``(N,)`` float64, NaN where the statistic is not defined for a stamp
(e.g. an all-zero residual). Common ingredients:

* ``I = g + r + z``, the colour-blind band-sum intensity, and ``I_s = G_sigma * I``, its Gaussian
  smoothing (``smoothing`` px, default 1) which suppresses pixel noise before differentiating;
* gradients are central differences (``numpy.gradient``; one-sided at the stamp edge);
* the signal weight ``w = max(I_s, 0)``: statistics describe where the arc light is, and negative
  residual pixels (over-subtracted host, noise troughs) carry no weight.

The statistics:

``high_frequency_fraction``
    ``Σ_{|k| > k_cut} P(k) / Σ_{k ≠ 0} P(k)`` with ``P = |FFT(I − mean I)|²`` and ``|k|`` the radial
    spatial frequency in cycles/pixel (``numpy.fft.fftfreq``; Nyquist 0.5). Default cut 0.25 (half
    Nyquist). Ground-based arcs are convolved with a ~1.3" PSF (≈ 5 px FWHM), which removes almost
    all power above the cut, so what remains there is noise and unresolved knots. Noise-free
    smooth injections have almost none; white noise has the area fraction of frequencies above
    the cut (its spectrum is flat). No apodisation window is applied: residual stamps go to ~0 or
    to stationary noise at their edges, so the periodic FFT boundary adds little power.

``structure_tensor_anisotropy``
    ``(λ1 − λ2) / (λ1 + λ2)`` of the signal-weighted structure tensor of the whole stamp,
    ``J = Σ_pixels w ∇I_s ∇I_sᵀ``, i.e. ``sqrt((Jxx − Jyy)² + 4 Jxy²) / (Jxx + Jyy)``. 0 when the
    intensity gradients point in every direction equally (a round blob, a complete Einstein ring),
    1 when they all share one axis (a straight streak); an arc is in between, the more so the
    shorter and straighter it is. For an elliptical Gaussian with smoothed axes a > b it equals
    ``(a² − b²) / (a² + b²)``. Arcs are tangentially stretched images, so this measures the
    elongation the lens produced; injections from overly compact or overly smooth sources shift it.

``colour_gradient_coherence``
    The signal-weighted mean of ``cos² θ`` between the gradient of the g−z colour and the intensity
    gradient: ``Σ w cos² θ / Σ w`` over pixels where the smoothed g and z fluxes are both positive
    and both gradients are non-zero, with colour ``c = ln(g_s / z_s)`` (g−z in magnitudes is
    ``−2.5 log10 e · c``; the sign does not matter for ``cos²``). ``∇I`` points across the arc, its
    perpendicular along the arc (tangentially), so 1 means the colour changes only across the arc
    (what a smooth source of one colour seen through band-dependent PSFs produces, g's PSF being
    broader), 0 means it changes only along the arc (differently coloured star-forming knots along
    a real arc), and 1/2 means unrelated directions (noise). NaN when the colour is constant.

``local_variance_ratio``
    ``var(I on the annulus) / var(I off the annulus)``, the annulus being the pixels whose distance
    from the stamp centre (the lens galaxy, which cutouts are centred on) is within ``half_width``
    px of the arc radius. The arc radius is the signal-weighted mean radius ``Σ w r / Σ w`` unless
    given. A real arc adds structure at the Einstein radius above the residual noise elsewhere; a
    residual-noise-only stamp has a ratio near 1, a noise-free injected arc an unbounded one (the
    off-annulus variance is 0: reported as inf), which flags injections lacking realistic noise.

``median_filter_residual`` removes the lens galaxy from a real cutout: each band minus its
``size × size`` median filter. A median filter follows a smooth, centrally concentrated galaxy
profile but not features narrower than about half its width, so arcs (1–3 px wide after the PSF)
stay in the residual, while the sky and the galaxy's smooth profile are removed. The median of a
plane over a symmetric window is its centre value, so sky gradients cancel exactly; a streak
covering fewer than half the window's pixels is returned unchanged on a flat background. It is an
approximate host model: the curvature of a compact galaxy core leaves a residual there, and an
arc's wings inside the window lower the recovered arc flux, so real residuals are compared with
injected arcs both as true arcs and after the same median-filter subtraction.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dhs_eval.errors import MetricInputError

#: the statistics computed by :func:`arc_statistics`, in report order
STATISTICS = ("high_frequency_fraction", "structure_tensor_anisotropy", "colour_gradient_coherence",
              "local_variance_ratio")


def _residuals(residuals: object, where: str = "residuals") -> np.ndarray:
    arr = np.asarray(residuals, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise MetricInputError(f"{where} must be (N, 3, H, W) g, r, z images; got shape {arr.shape}")
    if arr.shape[2] < 3 or arr.shape[3] < 3:
        raise MetricInputError(f"{where} stamps must be at least 3x3 pixels; got {arr.shape[2]}x{arr.shape[3]}")
    if not np.isfinite(arr).all():
        raise MetricInputError(f"{where} contains non-finite pixels; exclude those stamps first")
    return arr


def _smooth(images: np.ndarray, smoothing: float) -> np.ndarray:
    """Gaussian smoothing over the last two axes only (never across stamps or bands)."""
    if smoothing <= 0:
        return images
    sigma = (0,) * (images.ndim - 2) + (smoothing, smoothing)
    return ndimage.gaussian_filter(images, sigma=sigma, mode="nearest")


def _gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d/dx, d/dy) with x along columns and y along rows, batched."""
    gy, gx = np.gradient(images, axis=(-2, -1))
    return gx, gy


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def high_frequency_fraction(residuals: object, *, k_cut: float = 0.25) -> np.ndarray:
    """Fraction of the band-sum image's (mean-subtracted) Fourier power above radial frequency ``k_cut``."""
    if not 0.0 < k_cut < np.sqrt(0.5):
        raise MetricInputError(f"k_cut = {k_cut}: must lie in (0, 0.707) cycles/pixel (Nyquist is 0.5 per axis)")
    arr = _residuals(residuals)
    intensity = arr.sum(axis=1)
    intensity = intensity - intensity.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(intensity)) ** 2
    ky = np.fft.fftfreq(arr.shape[2])[:, None]
    kx = np.fft.fftfreq(arr.shape[3])[None, :]
    k = np.hypot(kx, ky)
    above = (k > k_cut).astype(np.float64)
    total = power.sum(axis=(-2, -1))  # the k = 0 term is zero after the mean subtraction
    return _ratio((power * above).sum(axis=(-2, -1)), total)


def structure_tensor_anisotropy(residuals: object, *, smoothing: float = 1.0) -> np.ndarray:
    """(λ1 − λ2)/(λ1 + λ2) of the signal-weighted structure tensor of each stamp (0 round, 1 a streak)."""
    arr = _residuals(residuals)
    smooth = _smooth(arr.sum(axis=1), smoothing)
    gx, gy = _gradients(smooth)
    w = np.clip(smooth, 0.0, None)
    jxx = (w * gx * gx).sum(axis=(-2, -1))
    jyy = (w * gy * gy).sum(axis=(-2, -1))
    jxy = (w * gx * gy).sum(axis=(-2, -1))
    return _ratio(np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy**2), jxx + jyy)


def colour_gradient_coherence(residuals: object, *, smoothing: float = 1.0) -> np.ndarray:
    """Signal-weighted mean cos² of the angle between ∇(g−z colour) and ∇I (1 across the arc, 0 along it)."""
    arr = _residuals(residuals)
    smooth = _smooth(arr, smoothing)
    g, z = smooth[:, 0], smooth[:, 2]
    intensity = smooth.sum(axis=1)
    valid = (g > 0) & (z > 0) & (intensity > 0)
    colour = np.zeros_like(g)
    colour[valid] = np.log(g[valid] / z[valid])
    cx, cy = _gradients(colour)
    ix, iy = _gradients(intensity)
    c2, i2 = cx * cx + cy * cy, ix * ix + iy * iy
    # the colour gradient is only meaningful where the colour and its neighbours are defined
    neighbours_valid = ndimage.minimum_filter(valid.astype(np.uint8), size=(1, 3, 3), mode="nearest") > 0
    # colour is dimensionless: a gradient below 1e-12 per pixel is round-off of a constant colour
    use = neighbours_valid & (c2 > 1e-24) & (i2 > 0)
    cos2 = np.zeros_like(g)
    cos2[use] = (cx[use] * ix[use] + cy[use] * iy[use]) ** 2 / (c2[use] * i2[use])
    w = np.where(use, intensity, 0.0)
    return _ratio((w * cos2).sum(axis=(-2, -1)), w.sum(axis=(-2, -1)))


def _radius_grid(h: int, w: int) -> np.ndarray:
    y = np.arange(h) - (h - 1) / 2
    x = np.arange(w) - (w - 1) / 2
    return np.hypot(x[None, :], y[:, None])


def arc_radius(residuals: object, *, smoothing: float = 1.0) -> np.ndarray:
    """Signal-weighted mean distance (px) of the residual light from the stamp centre."""
    arr = _residuals(residuals)
    w = np.clip(_smooth(arr.sum(axis=1), smoothing), 0.0, None)
    r = _radius_grid(arr.shape[2], arr.shape[3])
    return _ratio((w * r).sum(axis=(-2, -1)), w.sum(axis=(-2, -1)))


def local_variance_ratio(residuals: object, *, half_width: float = 3.0, radius: object = None,
                         smoothing: float = 1.0) -> np.ndarray:
    """var(I) within ``half_width`` px of the arc radius / var(I) elsewhere in the stamp."""
    if half_width <= 0:
        raise MetricInputError(f"half_width = {half_width}: the annulus half-width must be > 0 pixels")
    arr = _residuals(residuals)
    n = len(arr)
    r_arc = arc_radius(arr, smoothing=smoothing) if radius is None else np.broadcast_to(
        np.asarray(radius, dtype=np.float64), (n,))
    intensity = arr.sum(axis=1)
    r = _radius_grid(arr.shape[2], arr.shape[3])
    out = np.full(n, np.nan)
    for i in range(n):  # annuli differ per stamp; the per-stamp work is two masked variances
        if not np.isfinite(r_arc[i]):
            continue
        on = np.abs(r - r_arc[i]) <= half_width
        if on.sum() < 2 or (~on).sum() < 2:
            continue
        var_on, var_off = intensity[i][on].var(), intensity[i][~on].var()
        out[i] = var_on / var_off if var_off > 0 else (np.inf if var_on > 0 else np.nan)
    return out


def median_filter_residual(images: object, *, size: int = 7) -> np.ndarray:
    """Each band minus its ``size × size`` median filter: the lens galaxy removed, thin arcs kept."""
    if size < 3 or size % 2 == 0:
        raise MetricInputError(f"median filter size = {size}: must be an odd number of pixels >= 3")
    arr = _residuals(images, "images")
    return arr - ndimage.median_filter(arr, size=(1, 1, size, size), mode="reflect")


def arc_statistics(residuals: object, *, k_cut: float = 0.25, smoothing: float = 1.0,
                   half_width: float = 3.0) -> dict[str, np.ndarray]:
    """All four statistics of :data:`STATISTICS` for a batch of residuals, as ``{name: (N,)}``."""
    arr = _residuals(residuals)
    return {
        "high_frequency_fraction": high_frequency_fraction(arr, k_cut=k_cut),
        "structure_tensor_anisotropy": structure_tensor_anisotropy(arr, smoothing=smoothing),
        "colour_gradient_coherence": colour_gradient_coherence(arr, smoothing=smoothing),
        "local_variance_ratio": local_variance_ratio(arr, half_width=half_width, smoothing=smoothing),
    }
