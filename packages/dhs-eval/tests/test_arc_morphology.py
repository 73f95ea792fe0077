"""Arc-morphology statistics against closed-form cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dhs_eval.diagnostics import arc_morphology as am
from dhs_eval.errors import MetricInputError

N = 64  # stamp size (px)


def _grid(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    c = (n - 1) / 2
    y, x = np.mgrid[0:n, 0:n].astype(float)
    return x - c, y - c


def _gaussian(a: float, b: float, angle: float = 0.0) -> np.ndarray:
    x, y = _grid()
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    return np.exp(-0.5 * (u**2 / a**2 + v**2 / b**2))


def _bands(image: np.ndarray, colours=(1.0, 1.0, 1.0)) -> np.ndarray:
    return np.stack([c * image for c in colours])[None]


def test_white_noise_high_frequency_fraction_is_the_area_fraction_above_the_cut():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(400, 3, N, N))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(N), np.fft.fftfreq(N)))
    for cut in (0.15, 0.25, 0.4):
        # a flat spectrum: expected fraction = (# frequencies above the cut) / (# non-zero frequencies)
        expected = (k > cut).sum() / (k.size - 1)
        got = am.high_frequency_fraction(noise, k_cut=cut)
        assert got.mean() == pytest.approx(expected, abs=0.003)


def test_smooth_gaussian_has_no_high_frequency_power():
    # FT of a sigma = 4 px Gaussian falls as exp(-2 pi^2 sigma^2 k^2) = e^-19.7 at k = 0.25
    assert am.high_frequency_fraction(_bands(_gaussian(4.0, 4.0)))[0] < 1e-8


def test_round_blob_has_zero_anisotropy_and_a_streak_has_one():
    assert am.structure_tensor_anisotropy(_bands(_gaussian(5.0, 5.0)))[0] == pytest.approx(0.0, abs=1e-9)
    x, y = _grid()
    for angle in (0.0, np.pi / 6, np.pi / 2):
        # an infinitely long thin line: every gradient is normal to it (rank-1 tensor)
        distance = -x * np.sin(angle) + y * np.cos(angle)
        line = np.exp(-0.5 * distance**2 / 0.8**2)
        assert am.structure_tensor_anisotropy(_bands(line))[0] > 0.98


@pytest.mark.parametrize("a,b,angle", [(8.0, 4.0, 0.0), (7.0, 2.5, 0.7), (9.0, 3.0, 2.0)])
def test_elliptical_gaussian_anisotropy_closed_form(a, b, angle):
    # for I = exp(-x^2/2A^2 - y^2/2B^2) and w = I: J ∝ diag(B/A, A/B), so (λ1-λ2)/(λ1+λ2) = (A²-B²)/(A²+B²);
    # smoothing by sigma adds sigma^2 to both axes' variances
    # (axes of a few px or more: central differences underestimate gradients of narrower profiles)
    sigma = 1.0
    big, small = a**2 + sigma**2, b**2 + sigma**2
    expected = (big - small) / (big + small)
    got = am.structure_tensor_anisotropy(_bands(_gaussian(a, b, angle)), smoothing=sigma)[0]
    assert got == pytest.approx(expected, abs=0.01)


def test_colour_changing_across_the_arc_is_coherent_along_it_is_not():
    # uniform-colour round source seen through a broader g PSF than z: the colour is a function of
    # radius only, so ∇colour ∥ ∇I everywhere
    source = _gaussian(3.0, 3.0)
    g = ndimage.gaussian_filter(source, 2.5)
    r = ndimage.gaussian_filter(source, 2.0)
    z = ndimage.gaussian_filter(source, 1.5)
    across = np.stack([g, r, z])[None] + 1e-3
    assert am.colour_gradient_coherence(across)[0] > 0.99
    # a horizontal streak (∇I vertical) whose colour varies only along x: ∇colour ⊥ ∇I
    x, y = _grid()
    profile = np.exp(-0.5 * y**2 / 3.0**2) + 1e-3
    tint = 0.3 * np.sin(2 * np.pi * x / 16)
    along = np.stack([profile * np.exp(tint), profile, profile * np.exp(-tint)])[None]
    assert am.colour_gradient_coherence(along)[0] < 0.01


def test_colour_coherence_of_random_colour_noise_is_one_half():
    rng = np.random.default_rng(1)
    blob = _gaussian(6.0, 6.0)
    tint = ndimage.gaussian_filter(rng.normal(size=(300, N, N)), (0, 2, 2)) * 0.5
    stamps = np.stack([blob * np.exp(tint), np.broadcast_to(blob, tint.shape), blob * np.exp(-tint)], axis=1)
    # isotropic colour fluctuations: E[cos²] between a fixed and a random direction is 1/2
    assert am.colour_gradient_coherence(stamps).mean() == pytest.approx(0.5, abs=0.03)


def test_constant_colour_is_not_defined():
    assert np.isnan(am.colour_gradient_coherence(_bands(_gaussian(4.0, 4.0), (0.5, 1.0, 2.0)))[0])


def test_local_variance_ratio_noise_is_one_and_a_ring_adds_its_variance():
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(300, 3, N, N)) / np.sqrt(3)  # unit variance in the band sum
    assert np.mean(am.local_variance_ratio(noise, radius=12.0)) == pytest.approx(1.0, abs=0.03)
    # a zero-mean azimuthal pattern of amplitude A on the annulus adds A²/2 to its variance
    x, y = _grid()
    r, phi = np.hypot(x, y), np.arctan2(y, x)
    amp, r0, half_width = 3.0, 14.0, 3.0
    ring = np.where(np.abs(r - r0) <= half_width, amp * np.cos(4 * phi), 0.0)
    stamps = noise + ring[None, None] / 3
    ratio = am.local_variance_ratio(stamps, radius=r0, half_width=half_width)
    assert np.mean(ratio) == pytest.approx(1 + amp**2 / 2, rel=0.03)


def test_arc_radius_of_a_ring_and_noise_free_arcs_have_infinite_ratio():
    x, y = _grid()
    ring = np.exp(-0.5 * (np.hypot(x, y) - 15.0) ** 2 / 1.5**2)
    assert am.arc_radius(_bands(ring), smoothing=0.0)[0] == pytest.approx(15.0, abs=0.3)
    # all the light within the annulus and nothing outside: the off-annulus variance is zero
    thin_arc = (np.abs(np.hypot(x, y) - 15.0) <= 1.0) * (1 + np.cos(np.arctan2(y, x)))
    assert np.isinf(am.local_variance_ratio(_bands(thin_arc))[0])


def test_median_filter_residual_closed_forms():
    x, y = _grid()
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))  # away from the reflected edges
    # the median of a plane over a symmetric window is its centre value: a tilted sky leaves nothing
    plane = 2.0 + 0.05 * x - 0.03 * y
    assert np.abs(am.median_filter_residual(_bands(plane))[inner]).max() < 1e-12
    # a 2 px wide streak on a flat background occupies 14 of the 49 window pixels, fewer than half,
    # so the median is the background and the streak is returned exactly
    streak = 5.0 * (np.abs(y - 0.5) < 1.0)
    residual = am.median_filter_residual(_bands(1.0 + streak), size=7)
    assert np.allclose(residual[inner], _bands(streak)[inner])


def test_median_filter_residual_keeps_most_of_an_arc_beyond_a_compact_galaxy():
    x, y = _grid()
    galaxy = 10 * np.exp(-0.5 * (x**2 + y**2) / 4.0**2)
    arc = np.exp(-0.5 * (np.hypot(x, y) - 14.0) ** 2 / 0.7**2) * (np.abs(np.arctan2(y, x)) < 1.0)
    residual = am.median_filter_residual(_bands(galaxy + arc), size=7)[0, 1]
    on_arc = arc > 0.5
    assert np.median(residual[on_arc] / arc[on_arc]) > 0.6


def test_arc_statistics_shapes_and_bad_input():
    rng = np.random.default_rng(3)
    stats = am.arc_statistics(rng.normal(size=(5, 3, 32, 32)))
    assert set(stats) == set(am.STATISTICS) and all(v.shape == (5,) for v in stats.values())
    with pytest.raises(MetricInputError, match="N, 3, H, W"):
        am.arc_statistics(np.zeros((5, 2, 32, 32)))
    with pytest.raises(MetricInputError, match="non-finite"):
        am.high_frequency_fraction(np.full((1, 3, 8, 8), np.nan))
    with pytest.raises(MetricInputError, match="odd"):
        am.median_filter_residual(np.zeros((1, 3, 8, 8)), size=4)
    # an all-zero residual defines none of the ratios
    assert np.isnan(am.structure_tensor_anisotropy(np.zeros((1, 3, 16, 16))))[0]
    assert np.isnan(am.high_frequency_fraction(np.zeros((1, 3, 16, 16))))[0]
