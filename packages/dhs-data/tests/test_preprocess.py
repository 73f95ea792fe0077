import warnings

import numpy as np
import pytest

from dhs_core.errors import SpecError
from dhs_data.preprocess import annulus_comparison, annulus_mask, center_crop, raw_robust


def _reference_raw_robust(x, r_in, r_out, clip, eps=1e-6):
    """Independent per-band loop with explicit pixel radii."""
    out = np.empty_like(x)
    h, w = x.shape[-2:]
    for b in range(x.shape[0]):
        ring = [x[b, i, j] for i in range(h) for j in range(w)
                if r_in <= np.hypot(i - (h - 1) / 2, j - (w - 1) / 2) < r_out]
        med = np.median(ring)
        mad = np.median(np.abs(np.array(ring) - med))
        out[b] = np.clip((x[b] - med) / (1.4826 * mad + eps), -clip, clip)
    return out


def test_raw_robust_matches_reference_and_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 0.5, (2, 3, 64, 64)).astype(np.float32)
    x[:, :, 30:34, 30:34] += 100  # a bright core gets clipped
    got = raw_robust(x, annulus=(20, 32), clip=10.0)
    assert got.dtype == np.float32 and got.shape == x.shape
    for n in range(2):
        np.testing.assert_allclose(got[n], _reference_raw_robust(x[n], 20, 32, 10.0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(raw_robust(x[n]), got[n], rtol=1e-6)
    assert got.max() == 10.0


def test_gaussian_sky_becomes_unit_normal():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 2.0, (3, 101, 101)).astype(np.float32)
    y = raw_robust(x, annulus="stamp101")
    assert abs(np.median(y)) < 0.05 and abs(y.std() - 1.0) < 0.05


def test_annulus_presets_and_outer_fraction():
    x = np.random.default_rng(2).normal(size=(3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(raw_robust(x, annulus="stamp64"), raw_robust(x, annulus=(20, 32)))
    np.testing.assert_array_equal(raw_robust(x, annulus="outer_20pct"), raw_robust(x, annulus=(25.6, 32)))
    np.testing.assert_array_equal(raw_robust(x, outer_fraction=0.2), raw_robust(x, annulus=(25.6, 32)))
    m = annulus_mask((64, 64), 20, 32)
    assert m.sum() == pytest.approx(np.pi * (32**2 - 20**2), rel=0.03)


def test_annulus_not_fitting_and_host_light_warning():
    x = np.zeros((3, 64, 64), np.float32)
    with pytest.raises(SpecError, match="does not fit a 64x64"):
        raw_robust(x, annulus=(32.5, 45))
    with pytest.raises(SpecError, match="not a preset"):
        raw_robust(x, annulus="wide")
    with pytest.raises(SpecError, match="r_in < r_out"):
        raw_robust(x, annulus=(30, 20))
    with pytest.warns(UserWarning, match="host-galaxy light"):
        raw_robust(np.ones((3, 101, 101), np.float32), annulus=(10, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw_robust(np.ones((3, 101, 101), np.float32), annulus=(32.5, 45))


def test_center_crop_101_to_64():
    x = np.arange(3 * 101 * 101, dtype=np.float32).reshape(3, 101, 101)
    y = center_crop(x, 64)
    assert y.shape == (3, 64, 64)
    np.testing.assert_array_equal(y, x[:, 18:82, 18:82])
    assert y[0, 32, 32] == x[0, 50, 50]  # the galaxy centre stays within half a pixel
    assert center_crop(np.stack([x, x]), 64).shape == (2, 3, 64, 64)
    with pytest.raises(SpecError, match="larger than"):
        center_crop(x, 128)


def test_annulus_comparison_detects_host_light_and_tracks_depth():
    rng = np.random.default_rng(3)
    n = 200
    psfdepth = rng.uniform(200, 3000, n)
    sigma = 1 / np.sqrt(psfdepth)  # psfdepth is inverse variance
    x = rng.normal(0, 1, (n, 3, 101, 101)).astype(np.float32) * sigma[:, None, None, None].astype(np.float32)
    flat = annulus_comparison(x, psfdepth_r=psfdepth)
    y, xx = np.mgrid[0:101, 0:101]
    host = np.exp(-np.hypot(y - 50, xx - 50) / 8.0).astype(np.float32)  # exponential host profile
    lit = annulus_comparison(x + 0.05 * host, psfdepth_r=psfdepth)
    for band in "grz":
        assert flat["bands"][band]["median_ks"]["pvalue"] > 1e-3
        assert lit["bands"][band]["median_ks"]["pvalue"] < 1e-6
        assert lit["bands"][band]["median_a"] > lit["bands"][band]["median_b"]
        assert flat["bands"][band]["mad_b_vs_psfdepth_r"]["rho"] < -0.9


def test_chain_applies_its_steps_in_order_as_composed_by_hand():
    from dhs_core import plugins

    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.0, (2, 3, 101, 101)).astype(np.float32) + 3.0
    chain = plugins.build("preprocessor", {"name": "chain", "steps": [
        {"name": "center_crop", "size": 64}, {"name": "raw_robust", "annulus": [20, 32], "clip": 5.0}]})
    expected = raw_robust(center_crop(x, 64), annulus=(20, 32), clip=5.0)
    assert np.array_equal(chain(x), expected) and chain(x).shape == (2, 3, 64, 64)
    # the order matters: the 101 px annulus [32.5, 45] fits before the crop, not after it
    before = plugins.build("preprocessor", {"name": "chain", "steps": [
        {"name": "raw_robust", "annulus": [32.5, 45]}, {"name": "center_crop", "size": 64}]})
    assert np.array_equal(before(x), center_crop(raw_robust(x, annulus=(32.5, 45)), 64))


def test_chain_steps_are_validated_and_stored_resolved():
    from pydantic import ValidationError

    from dhs_core import plugins

    _, cfg = plugins.resolve("preprocessor", {"name": "chain", "steps": [{"name": "center_crop"}]})
    assert cfg.steps == [{"name": "center_crop", "size": 64}]  # defaults written out
    for steps, match in (([{"name": "no_such"}], r"steps\[0\].*raw_robust"),
                         ([{"name": "center_crop", "size": 0}], r"steps\[0\]"),
                         ([{"name": "chain", "steps": [{"name": "center_crop"}]}], "chain inside a chain"),
                         ([], "at least 1")):
        with pytest.raises((ValidationError, Exception), match=match):
            plugins.resolve("preprocessor", {"name": "chain", "steps": steps})
