"""Configuration of the ``synthetic`` data source (the ``[data]`` section with name = "synthetic")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dhs_data.sources.base import DataSourceConfig, cutout_bytes

#: N2 confuser categories, the look-alikes a lens finder must learn to reject
CONFUSER_CATEGORIES = ("ring_proxy", "edge_on_proxy", "spiral", "blue_clumpy", "merger")


class SyntheticConfig(DataSourceConfig):
    """A DR10-like synthetic survey: catalog, g/r/z cutouts, manifest, store and truth table.

    Defaults follow the published DR10 training sets (neg:pos = 93:1, N1:N2 = 85:15, A:B = 1:11);
    a quickstart raises ``positive_fraction`` so a CPU model sees enough lenses to learn.
    The ``split`` field (HEALPix train/val/test) comes from :class:`DataSourceConfig`.
    """

    # number of cutouts (positives + negatives)
    n_hosts: int = Field(3000, ge=1, le=5_000_000)
    # stamp side in pixels (0.262"/px); 64 and 101 are the sizes the models are built for
    stamp: Literal[64, 101] = 64
    # fraction of cutouts labelled lenses (tier A + B, incl. label noise); 1/94 gives 93:1
    positive_fraction: float = Field(1.0 / 94.0, ge=0.0, le=1.0)
    # fraction of the negatives drawn from the N2 confuser pool (rest are N1)
    n2_fraction: float = Field(0.15, ge=0.0, le=1.0)
    # fraction of the positives in tier A (confident); 1/12 gives A:B = 1:11
    tier_a_fraction: float = Field(1.0 / 12.0, ge=0.0, le=1.0)
    # fraction of tier-B positives that are not lenses at all (label noise in the training set)
    label_noise_fraction: float = Field(0.10, ge=0.0, le=1.0)
    # lenses hidden among the N1 negatives, per negative (unlabelled real lenses in a survey)
    hidden_lens_rate: float = Field(1e-4, ge=0.0, le=0.1)
    # fraction of N1 negatives that are LRG-like (the hosts lens searches target)
    lrg_fraction: float = Field(0.35, ge=0.0, le=1.0)
    # relative weights of the N2 confuser categories
    confuser_mix: dict[str, float] = Field(default_factory=lambda: {c: 1.0 for c in CONFUSER_CATEGORIES})
    # mean number of faint neighbour galaxies per cutout (Poisson)
    neighbours_per_cutout: float = Field(1.2, ge=0.0, le=10.0)
    # mean number of stars per cutout (Poisson)
    stars_per_cutout: float = Field(0.3, ge=0.0, le=10.0)
    # centre of the sky patch, degrees (a high-latitude DR10-south-like field)
    ra_center: float = Field(150.0, ge=0.0, lt=360.0)
    # declination of the patch centre, degrees
    dec_center: float = Field(2.0, ge=-80.0, le=80.0)
    # side of the square sky patch in degrees; 5 deg covers ~120 nside-128 pixels
    patch_deg: float = Field(5.0, gt=0.0, le=40.0)
    # Moffat beta of the PSF (DECam seeing wings)
    psf_beta: float = Field(3.5, gt=1.0, le=10.0)
    # cutouts rendered per task (batched numpy; one task per executor call)
    chunk_size: int = Field(256, ge=1, le=100_000)
    # cutout store format written under data/ (see dhs_data.stores)
    store: Literal["shards", "npz"] = "shards"

    @model_validator(mode="after")
    def _check_mix(self) -> SyntheticConfig:
        unknown = sorted(set(self.confuser_mix) - set(CONFUSER_CATEGORIES))
        if unknown:
            raise ValueError(
                f"confuser_mix has unknown categories {unknown}; valid: {', '.join(CONFUSER_CATEGORIES)}"
            )
        if any(w < 0 for w in self.confuser_mix.values()) or sum(self.confuser_mix.values()) <= 0:
            raise ValueError("confuser_mix weights must be >= 0 with a positive sum")
        return self

    def stamp_size(self) -> int:
        """The stamp is set by the spec, so the data stage can check the preprocessor against it
        before anything is rendered."""
        return int(self.stamp)

    def estimate_bytes(self) -> int:
        """``n_hosts`` float32 g/r/z stamps plus manifest, index and truth tables; for ``npz`` one
        file per cutout, so a filesystem block more each (zip headers, rounding up to 4 KiB)."""
        per_file = 4096 if self.store == "npz" else 0
        return cutout_bytes(self.n_hosts, self.stamp) + self.n_hosts * (per_file + 512)
