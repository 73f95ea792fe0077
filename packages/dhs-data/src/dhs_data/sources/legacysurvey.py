"""``legacysurvey`` data source: a lens-finding sample from Tractor sweep catalogs.

Parent sample (LRG-like hosts, extinction-corrected AB mags ``22.5 - 2.5 log10(flux / mw_transmission)``):
``TYPE != PSF``; ``FLUX_R, FLUX_Z, FLUX_W1 > 0``; ``z < 20.4``; ``r - z > 0.4``; ``z - W1 > 0.8``.

* positives: a user table of known lenses (``ra, dec, tier``) matched to catalog objects;
* N1 negatives: parent objects with ``TYPE`` in SER/DEV/REX, ``NOBS_G/R/Z >= 3`` and ``z < 20``;
* N2 negatives: confusers (rings, spirals, mergers...) from a user table (``ra, dec,
  confuser_category``) matched to catalog objects — the hard negatives a finder must reject.

N1 and N2 are drawn at ``n1_n2_ratio`` (default 85:15). Cutouts are read from ``cutout_dir``
as ``<galaxy_id>.fits`` in the cutout-service layout; a missing one is excluded by the data stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# astropy is imported where catalogs are read: registering plugins must stay light
from pydantic import Field

if TYPE_CHECKING:  # pragma: no cover
    from astropy.table import Table

from dhs_core.errors import UserError
from dhs_data.layout import MANIFEST
from dhs_data.sources.base import DataSourceConfig, file_fingerprint

SWEEP_COLUMNS = ("RA", "DEC", "TYPE", "OBJID", "FLUX_G", "FLUX_R", "FLUX_Z", "FLUX_W1",
                 "NOBS_G", "NOBS_R", "NOBS_Z", "PSFSIZE_R", "PSFDEPTH_R", "EBV")


class LegacySurveyConfig(DataSourceConfig):
    """Options of the ``legacysurvey`` data source."""

    # Tractor sweep-style catalog FITS files (columns RA, DEC, TYPE, FLUX_*, NOBS_*, PSFSIZE_R, ...)
    catalogs: list[str] = Field(min_length=1)
    # directory of cutout-service FITS files named <galaxy_id>.fits
    cutout_dir: str
    # table (FITS or parquet) of known lenses: ra, dec, tier (A/B); None = no positives
    lenses: str | None = None
    # table (FITS or parquet) of confusers: ra, dec, confuser_category; None = no N2 pool
    confusers: str | None = None
    # N1:N2 ratio of the negatives
    n1_n2_ratio: tuple[int, int] = (85, 15)
    # cap on the number of negatives (None: as many as the ratio allows)
    n_negatives: int | None = Field(default=None, ge=1)
    # match radius between user tables and the catalog, arcsec
    match_radius: float = Field(default=1.0, gt=0)
    # stamp size of the cutouts, pixels
    stamp: int = Field(default=101, ge=8)

    def stamp_size(self) -> int | None:
        """The configured stamp: cutouts of another size are excluded by the data stage."""
        return self.stamp

    def fingerprint(self) -> dict:
        """Catalogs (size and mtime; SHA-256 too up to 256 MiB — sweep files are larger and are
        not hashed on every run) and the lens and confuser tables. The cutout directory is not
        digested: a cutout replaced in place needs ``dhs run --stage data``."""
        limit = 256 << 20
        return {
            "catalogs": [file_fingerprint(p, digest_limit=limit) for p in self.catalogs],
            "lenses": file_fingerprint(self.lenses, digest_limit=limit) if self.lenses else None,
            "confusers": file_fingerprint(self.confusers, digest_limit=limit) if self.confusers else None,
        }


def _read_table(path: str, what: str, needed: tuple[str, ...]) -> Table:
    from astropy.table import Table

    p = Path(path)
    if not p.is_file():
        raise UserError(f"data.{what} = {path}: file does not exist")
    t = Table.read(p)
    t.rename_columns(t.colnames, [c.upper() for c in t.colnames])
    missing = [c for c in needed if c not in t.colnames]
    if missing:
        raise UserError(f"data.{what} = {path}: missing column(s) {', '.join(missing)}; needs {', '.join(needed)}")
    return t


def _text(values) -> list[str]:
    """FITS string columns arrive as bytes with trailing blanks."""
    return [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in np.asarray(values)]


def _mag(t: Table, band: str) -> np.ndarray:
    flux = np.asarray(t[f"FLUX_{band}"], float)
    mw = np.asarray(t[f"MW_TRANSMISSION_{band}"], float) if f"MW_TRANSMISSION_{band}" in t.colnames else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return 22.5 - 2.5 * np.log10(flux / mw)


def parent_mask(t: Table) -> np.ndarray:
    """The LRG parent cuts (module docstring)."""
    types = np.array(_text(t["TYPE"]))
    pos = (np.asarray(t["FLUX_R"]) > 0) & (np.asarray(t["FLUX_Z"]) > 0) & (np.asarray(t["FLUX_W1"]) > 0)
    r, z, w1 = _mag(t, "R"), _mag(t, "Z"), _mag(t, "W1")
    with np.errstate(invalid="ignore"):
        return (types != "PSF") & pos & (z < 20.4) & (r - z > 0.4) & (z - w1 > 0.8)


def n1_mask(t: Table) -> np.ndarray:
    types = np.array(_text(t["TYPE"]))
    nobs = np.minimum.reduce([np.asarray(t[f"NOBS_{b}"]) for b in "GRZ"])
    with np.errstate(invalid="ignore"):
        return parent_mask(t) & np.isin(types, ("SER", "DEV", "REX")) & (nobs >= 3) & (_mag(t, "Z") < 20)


def _match(cat: Table, other: Table, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into other, into cat) of matches within ``radius`` arcsec."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c_cat = SkyCoord(np.asarray(cat["RA"], float) * u.deg, np.asarray(cat["DEC"], float) * u.deg)
    c_oth = SkyCoord(np.asarray(other["RA"], float) * u.deg, np.asarray(other["DEC"], float) * u.deg)
    idx, sep, _ = c_oth.match_to_catalog_sky(c_cat)
    ok = sep.arcsec < radius
    return np.flatnonzero(ok), idx[ok]


def _galaxy_ids(t: Table) -> np.ndarray:
    if "RELEASE" in t.colnames and "BRICKID" in t.colnames:
        return np.array([f"{r}_{b}_{o}" for r, b, o in zip(t["RELEASE"], t["BRICKID"], t["OBJID"])])
    if "BRICKNAME" in t.colnames:
        return np.array([f"{b}_{o}" for b, o in zip(_text(t["BRICKNAME"]), t["OBJID"])])
    raise UserError("catalogs need RELEASE+BRICKID or BRICKNAME columns to name galaxies")


def negative_counts(n1: int, n2: int, ratio: tuple[int, int], cap: int | None) -> tuple[int, int]:
    """Largest (k1, k2) with k1:k2 = ratio, k1 <= n1, k2 <= n2, k1 + k2 <= cap."""
    r1, r2 = ratio
    if r1 < 0 or r2 < 0 or r1 + r2 == 0:
        raise UserError(f"data.n1_n2_ratio = {list(ratio)} must be two non-negative numbers, not both zero")
    f1, f2 = r1 / (r1 + r2), r2 / (r1 + r2)
    total = min(n1 / f1 if f1 else np.inf, n2 / f2 if f2 else np.inf, cap or np.inf)
    return min(n1, int(np.floor(total * f1 + 1e-9))), min(n2, int(np.floor(total * f2 + 1e-9)))


def legacysurvey_source(config: LegacySurveyConfig, ctx, out_dir: Path) -> None:
    """LRG parent sample from Tractor sweeps with N1 and N2 negative pools."""
    from astropy.table import vstack

    from dhs_data.manifest import write_manifest  # pyarrow: imported when the sample is built
    from dhs_data.stores import write_store_json

    cat = vstack([_read_table(p, "catalogs", SWEEP_COLUMNS) for p in config.catalogs], metadata_conflicts="silent")
    gid = _galaxy_ids(cat)
    role = np.full(len(cat), "", dtype=object)
    tier = np.full(len(cat), None, dtype=object)
    category = np.full(len(cat), None, dtype=object)
    if config.lenses:
        lenses = _read_table(config.lenses, "lenses", ("RA", "DEC", "TIER"))
        i_other, i_cat = _match(cat, lenses, config.match_radius)
        role[i_cat] = "lens"
        tier[i_cat] = _text(np.asarray(lenses["TIER"])[i_other])
    n2_idx = np.array([], int)
    if config.confusers:
        conf = _read_table(config.confusers, "confusers", ("RA", "DEC", "CONFUSER_CATEGORY"))
        i_other, i_cat = _match(cat, conf, config.match_radius)
        keep = role[i_cat] == ""
        n2_idx = np.unique(i_cat[keep])
        category[i_cat[keep]] = _text(np.asarray(conf["CONFUSER_CATEGORY"])[i_other[keep]])
        role[n2_idx] = "N2"
    n1_idx = np.flatnonzero(n1_mask(cat) & (role == ""))
    k1, k2 = negative_counts(len(n1_idx), len(n2_idx), config.n1_n2_ratio, config.n_negatives)
    rng = np.random.default_rng(ctx.seed_for("legacysurvey"))
    chosen_n1 = np.sort(rng.choice(n1_idx, k1, replace=False)) if k1 else np.array([], int)
    chosen_n2 = np.sort(rng.choice(n2_idx, k2, replace=False)) if k2 else np.array([], int)
    lens_idx = np.flatnonzero(role == "lens")
    rows = np.concatenate([lens_idx, chosen_n1, chosen_n2]).astype(int)
    if not len(rows):
        raise UserError("data (legacysurvey): no galaxies selected — check the catalogs and the lens/confuser tables")
    ctx.log(f"legacysurvey: {len(lens_idx)} lenses, {k1} N1 of {len(n1_idx)}, {k2} N2 of {len(n2_idx)}")
    sub = cat[rows]
    nobs_z = np.asarray(sub["NOBS_Z"])
    pool = ["N1"] * k1 + ["N2"] * k2
    write_manifest(
        {
            "galaxy_id": gid[rows].tolist(),
            "cutout_path": [f"{g}.fits" for g in gid[rows]],
            "ra": np.asarray(sub["RA"], float),
            "dec": np.asarray(sub["DEC"], float),
            "type_bin": _text(sub["TYPE"]),
            "nobs_z_bin": np.where(nobs_z <= 2, "0-2", np.where(nobs_z <= 4, "3-4", "5+")).tolist(),
            "pool": [None] * len(lens_idx) + pool,
            "confuser_category": category[rows].tolist(),
            "psfsize_r": np.asarray(sub["PSFSIZE_R"], float),
            "psfdepth_r": np.asarray(sub["PSFDEPTH_R"], float),
            "ebv": np.asarray(sub["EBV"], float),
            "label": np.array([1] * len(lens_idx) + [0] * (k1 + k2), dtype=np.int8),
            "tier": tier[rows].tolist(),
            "sample_weight": np.ones(len(rows)),
        },
        out_dir / MANIFEST,
    )
    write_store_json(out_dir, format="fits", root=Path(config.cutout_dir).resolve(), stamp=config.stamp)
