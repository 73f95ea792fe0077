import hashlib

import healpy as hp
import numpy as np
import pytest
from pydantic import ValidationError

from dhs_core.errors import UserError
from dhs_data.splits import SplitConfig, assign_splits, healpix_pixels


def _reference_split(ra, dec, nside, seed, fractions):
    """Independent implementation of the split rule (sha256 of seed:pixel, cut by fractions) on top of healpy."""
    pix = hp.ang2pix(nside, np.radians(90.0 - dec), np.radians(ra))  # theta/phi form, RING
    out = []
    for p in pix:
        u = int(hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:16], 16) / 2**64
        acc = 0.0
        for name, f in fractions.items():
            acc += f
            if u < acc:
                out.append(name)
                break
        else:
            out.append(list(fractions)[-1])
    return pix, np.array(out)


@pytest.mark.parametrize("fractions", [{"train": 0.7, "val": 0.15, "test": 0.15}, {"train": 0.7, "test": 0.3}])
@pytest.mark.parametrize("nside", [32, 128])
def test_assign_splits_matches_healpy_reference(fractions, nside):
    rng = np.random.default_rng(1)
    ra = rng.uniform(0, 360, 3000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    got = assign_splits(ra, dec, nside=nside, seed=7, fractions=fractions)
    pix, want = _reference_split(ra, dec, nside, 7, fractions)
    assert (got == want).all()
    np.testing.assert_array_equal(healpix_pixels(ra, dec, nside=nside), pix)
    # whole pixels go to one split
    for p in np.unique(pix):
        assert len(set(got[pix == p])) == 1
    # pixel fractions close to requested (3000 distinct pixels at these nsides, binomial noise)
    for name, f in fractions.items():
        assert abs((got == name).mean() - f) < 0.04


def test_seed_changes_assignment_and_is_deterministic():
    ra, dec = np.linspace(0, 359, 500), np.linspace(-60, 60, 500)
    a = assign_splits(ra, dec, seed=1, fractions={"train": 0.5, "test": 0.5})
    assert (a == assign_splits(ra, dec, seed=1, fractions={"train": 0.5, "test": 0.5})).all()
    assert (a != assign_splits(ra, dec, seed=2, fractions={"train": 0.5, "test": 0.5})).any()


@pytest.mark.parametrize("fractions", [{"train": 0.7, "val": 0.2}, {"train": 1.2, "val": -0.2}, {}])
def test_fractions_must_sum_to_one(fractions):
    with pytest.raises(UserError, match="fractions"):
        assign_splits([1.0], [2.0], fractions=fractions)
    with pytest.raises(ValidationError, match="fractions"):
        SplitConfig(fractions=fractions)


@pytest.mark.parametrize("nside", [0, 100, 3, -4])
def test_nside_power_of_two(nside):
    with pytest.raises(UserError, match="power of two"):
        assign_splits([1.0], [2.0], nside=nside, fractions={"train": 1.0})
    with pytest.raises(ValidationError, match="power of two"):
        SplitConfig(nside=nside)


def test_split_config_defaults_and_frozen():
    c = SplitConfig()
    assert (c.scheme, c.nside, c.seed, c.fractions) == ("healpix", 128, 42, {"train": 0.7, "val": 0.15, "test": 0.15})
    with pytest.raises(ValidationError):
        c.nside = 64
    with pytest.raises(ValidationError):
        SplitConfig(unknown=1)
