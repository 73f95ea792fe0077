import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

from dhs_core import run
from dhs_core.errors import UserError
from dhs_data.sources.legacysurvey import negative_counts
from dhs_data.stores import write_fits


def _flux(mag):
    return 10 ** ((22.5 - np.asarray(mag)) / 2.5)


def build_survey(root, *, n_lrg=60, seed=0):
    """Sweep-like catalog: n_lrg N1-eligible LRGs, 3 lenses, 12 confusers, and objects each failing one cut."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []

    def add(kind, z, rz, zw1, typ="DEV", nobs=4, ra=None, dec=None):
        rows.append({"RELEASE": 10000, "BRICKID": 1, "OBJID": len(rows), "TYPE": typ,
                     "RA": rng.uniform(0, 40) if ra is None else ra, "DEC": rng.uniform(-10, 10) if dec is None else dec,
                     "FLUX_G": _flux(z + 2.5), "FLUX_R": _flux(z + rz), "FLUX_Z": _flux(z), "FLUX_W1": _flux(z - zw1),
                     "NOBS_G": nobs, "NOBS_R": nobs, "NOBS_Z": nobs, "PSFSIZE_R": rng.uniform(1, 1.6),
                     "PSFDEPTH_R": rng.uniform(500, 3000), "EBV": 0.02, "KIND": kind})

    for _ in range(n_lrg):
        add("n1", 19.5, 1.0, 1.2)
    add("fail_psf", 19.5, 1.0, 1.2, typ="PSF")
    add("fail_z", 20.6, 1.0, 1.2)
    add("fail_rz", 19.5, 0.2, 1.2)
    add("fail_zw1", 19.5, 1.0, 0.5)
    add("parent_not_n1_nobs", 19.5, 1.0, 1.2, nobs=2)
    add("parent_not_n1_exp", 19.5, 1.0, 1.2, typ="EXP")
    add("parent_not_n1_faint", 20.2, 1.0, 1.2)
    for _ in range(3):
        add("lens", 19.0, 1.0, 1.2)
    for _ in range(12):
        add("confuser", 18.0, 0.3, 0.2, typ="EXP")
    cat = Table(rows=[{k: v for k, v in r.items() if k != "KIND"} for r in rows])
    cat.write(root / "sweep-000.fits", overwrite=True)
    kinds = np.array([r["KIND"] for r in rows])
    lens = cat[kinds == "lens"]
    Table({"ra": lens["RA"] + 0.1 / 3600, "dec": lens["DEC"], "tier": ["A", "B", "A"]}).write(root / "lenses.fits")
    conf = cat[kinds == "confuser"]
    Table({"ra": conf["RA"], "dec": conf["DEC"], "confuser_category": ["ring", "spiral", "merger"] * 4}).write(
        root / "confusers.fits")
    pix = rng.normal(0, 0.01, (3, 16, 16)).astype(np.float32)
    for r in rows:
        write_fits(root / "cutouts", f"{r['RELEASE']}_{r['BRICKID']}_{r['OBJID']}.fits", pix)
    return {"name": "legacysurvey", "catalogs": [str(root / "sweep-000.fits")], "cutout_dir": str(root / "cutouts"),
            "lenses": str(root / "lenses.fits"), "confusers": str(root / "confusers.fits"), "stamp": 16,
            "split": {"fractions": {"train": 0.7, "test": 0.3}}}


def test_legacysurvey_selection(tmp_path):
    spec = build_survey(tmp_path / "s")
    res = run({"run": {"name": "ls", "seed": 1, "out_dir": str(tmp_path / "run")}, "data": spec})
    m = pq.read_table(res.run_dir / "data/manifest.parquet").to_pylist()
    objids = {int(r["galaxy_id"].split("_")[2]): r for r in m}
    lens = [r for r in m if r["label"] == 1]
    assert len(lens) == 3 and sorted(r["tier"] for r in lens) == ["A", "A", "B"]
    n1 = [r for r in m if r["pool"] == "N1"]
    n2 = [r for r in m if r["pool"] == "N2"]
    # 12 confusers allow 12 * 85/15 = 68 N1, but only 60 are eligible: 60 N1 and 60 * 15/85 -> 10 N2
    assert (len(n1), len(n2)) == (60, 10)
    assert all(0 <= i < 60 for i, r in objids.items() if r["pool"] == "N1")
    assert all(r["confuser_category"] in ("ring", "spiral", "merger") for r in n2)
    assert not set(range(60, 67)) & set(objids)  # each object failing a cut is absent
    report = json.loads((res.run_dir / "data/data_report.json").read_text())
    assert set(report["by_split"]) == {"train", "test"}


@pytest.mark.parametrize("n1, n2, ratio, cap, want", [
    (1000, 1000, (85, 15), None, (1000, 176)),
    (1000, 15, (85, 15), None, (85, 15)),
    (1000, 1000, (85, 15), 100, (85, 15)),
    (50, 0, (1, 0), None, (50, 0)),
])
def test_negative_counts(n1, n2, ratio, cap, want):
    got = negative_counts(n1, n2, ratio, cap)
    assert got == want


def test_missing_catalog_column(tmp_path):
    Table({"RA": [1.0], "DEC": [2.0]}).write(tmp_path / "bad.fits")
    spec = {"name": "legacysurvey", "catalogs": [str(tmp_path / "bad.fits")], "cutout_dir": str(tmp_path)}
    with pytest.raises(UserError, match="missing column"):
        run({"run": {"name": "ls", "seed": 1, "out_dir": str(tmp_path / "run")}, "data": spec})
    assert not (tmp_path / "run/data").exists()
