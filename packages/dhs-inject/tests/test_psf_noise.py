"""PSF kernels, convolution and noise estimators against closed forms and scipy."""

import numpy as np
import pytest
import torch
from scipy import signal

from dhs_inject import noise, psf
from dhs_inject.errors import InjectionParameterError


def test_kernels_are_normalised_and_have_the_requested_fwhm():
    fwhm = torch.tensor([[1.0, 1.4, 2.0]], dtype=torch.float64)
    for kern in (psf.gaussian_kernel(fwhm, 0.1), psf.moffat_kernel(fwhm, 0.1, beta=3.0)):
        np.testing.assert_allclose(kern.sum(dim=(-2, -1)).numpy(), 1.0, rtol=1e-12)
        centre = kern.shape[-1] // 2
        for b, f in enumerate((1.0, 1.4, 2.0)):
            row = kern[0, b, centre].numpy()
            half = int(round(f / 2 / 0.1))  # FWHM/2 in pixels from the centre: half maximum
            assert abs(row[centre + half] / row[centre] - 0.5) < 0.01


def test_band_fwhm_scaling():
    out = psf.band_fwhm(torch.tensor([1.2]))
    np.testing.assert_allclose(out.numpy(), [[1.26, 1.2, 1.128]], rtol=1e-6)


def _kernels(rng):
    """One of each path of psf.convolve: Gaussian (separable, even: Toeplitz products), separable but
    asymmetric (Toeplitz), Moffat and a random non-separable, asymmetric kernel (FFT), plus a kernel
    wider than the smallest stamp."""
    return {
        "gaussian": psf.gaussian_kernel(torch.tensor([[0.8, 1.3, 2.0], [0.5, 0.9, 1.1]], dtype=torch.float64), 0.262),
        "separable_asymmetric": torch.tensor(np.einsum("nbi,nbj->nbij", rng.uniform(size=(2, 3, 9)),
                                                       rng.uniform(size=(2, 3, 9)))),
        "moffat": psf.moffat_kernel(torch.full((2, 3), 1.0, dtype=torch.float64), 0.262),
        "random": torch.tensor(rng.uniform(size=(2, 3, 7, 7))),
    }


@pytest.mark.parametrize("shape", [(33, 33), (20, 31), (7, 9), (1, 5)])
def test_convolution_matches_scipy(shape):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 3, *shape))
    for name, kern in _kernels(rng).items():
        out = psf.convolve(torch.tensor(img), kern).numpy()
        for n in range(2):
            for b in range(3):
                ref = signal.fftconvolve(img[n, b], kern[n, b].numpy(), mode="same")
                np.testing.assert_allclose(out[n, b], ref, atol=1e-10, err_msg=f"{name} {shape}")


def test_convolution_broadcasts_one_image_over_bands():
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(2, 1, 25, 25))
    for kern in _kernels(rng).values():
        out = psf.convolve(torch.tensor(img), kern).numpy()
        assert out.shape == (2, 3, 25, 25)
        ref = signal.fftconvolve(img[1, 0], kern[1, 2].numpy(), mode="same")
        np.testing.assert_allclose(out[1, 2], ref, atol=1e-10)
        shared = psf.convolve(torch.tensor(img), kern[0])  # (B, K, K) kernels shared by the N images
        ref = signal.fftconvolve(img[1, 0], kern[0, 2].numpy(), mode="same")
        np.testing.assert_allclose(shared[1, 2].numpy(), ref, atol=1e-10)


def test_convolution_of_faint_tails_makes_no_denormal_floats():
    # a source whose profile underflows far out, blurred by a narrow and a wide PSF in one batch:
    # every output value is zero or a normal float (denormals would slow the arithmetic ~10x)
    y, x = np.mgrid[-50:51, -50:51]
    img = np.exp(-0.5 * (x**2 + y**2) / 1.5**2)[None, None].astype(np.float32)
    kern = psf.gaussian_kernel(torch.tensor([[0.3, 1.0, 2.5]], dtype=torch.float32), 0.262)
    out = psf.convolve(torch.tensor(img), kern)
    tiny = torch.finfo(torch.float32).tiny
    assert int(((out != 0) & (out.abs() < tiny)).sum()) == 0
    np.testing.assert_allclose(out.sum(dim=(-2, -1)).numpy(), img.sum(), rtol=1e-5)


def test_non_normalisable_kernel_is_refused(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.zeros((5, 5)))
    with pytest.raises(InjectionParameterError, match="not normalisable"):
        psf.kernel_from_file(path)
    np.save(path, np.ones((5, 5)))
    assert abs(psf.kernel_from_file(path).sum() - 1) < 1e-12


def test_sky_sigma_estimators():
    rng = np.random.default_rng(1)
    img = torch.tensor(rng.normal(0, 0.02, size=(4, 3, 64, 64)))
    img[:, :, 5, 5] = np.nan  # NaN pixels are ignored
    img[:, :, 2:6, 50:54] = 5.0  # a bright neighbour barely moves the MAD
    sigma = noise.sky_sigma_from_ring(img)
    np.testing.assert_allclose(sigma.numpy(), 0.02, rtol=0.1)
    # Gaussian PSF: sum(P^2) = 1/(4 pi s^2) -> sigma_pix = 1/(sqrt(psfdepth) sqrt(4 pi) s)
    s_pix = 1.3 / 2.3548200450309493 / 0.262
    kern = psf.gaussian_kernel(torch.tensor([[1.3]], dtype=torch.float64), 0.262)
    got = noise.sky_sigma_from_psfdepth(torch.tensor([[400.0]], dtype=torch.float64), kern)
    np.testing.assert_allclose(got.numpy(), 1 / (20 * np.sqrt(4 * np.pi) * s_pix), rtol=1e-3)
