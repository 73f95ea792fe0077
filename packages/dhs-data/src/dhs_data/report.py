"""Split verification and the counts of ``data_report.json``."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pyarrow as pa

from dhs_core.errors import UserError
from dhs_data.leakage import host_keys
from dhs_data.splits import healpix_pixels

#: a KS p-value below this between two splits flags the observing conditions as unbalanced
KS_ALPHA = 0.01


def verify_splits(table: pa.Table, *, nside: int) -> dict:
    """Zero galaxies and zero HEALPix pixels shared between splits (else UserError); KS balance."""
    from scipy import stats  # imported on use: registering the data stage must stay light

    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    if any(s is None for s in split):
        raise UserError("split verification: some rows have no split")
    split = split.astype(str)
    names = sorted(set(split))
    pix = healpix_pixels(table.column("ra").to_numpy(), table.column("dec").to_numpy(), nside=nside)
    hosts = host_keys(table)
    ids = np.asarray(table.column("galaxy_id").to_pylist(), dtype=str)
    shared_pix: dict[str, int] = {}
    shared_gal: dict[str, int] = {}
    for a, b in combinations(names, 2):
        shared_pix[f"{a}|{b}"] = len(np.intersect1d(pix[split == a], pix[split == b]))
        shared_gal[f"{a}|{b}"] = len(np.intersect1d(hosts[split == a], hosts[split == b])) + len(
            np.intersect1d(ids[split == a], ids[split == b])
        )
    leaks = {k: v for k, v in shared_pix.items() if v} | {k: v for k, v in shared_gal.items() if v}
    if leaks:
        raise UserError(
            f"split verification failed: splits share HEALPix pixels (nside {nside}) {shared_pix} and galaxies "
            f"{shared_gal}; neighbouring sky in two splits leaks PSF/depth systematics — use split.scheme = 'healpix'"
        )
    balance: dict[str, dict] = {}
    for col in ("psfsize_r", "psfdepth_r"):
        values = np.asarray(table.column(col).to_pylist(), dtype=float)
        for a, b in combinations(names, 2):
            va = values[(split == a) & np.isfinite(values)]
            vb = values[(split == b) & np.isfinite(values)]
            if len(va) < 2 or len(vb) < 2:
                continue
            ks = stats.ks_2samp(va, vb)
            balance.setdefault(col, {})[f"{a}|{b}"] = {
                "statistic": float(ks.statistic), "pvalue": float(ks.pvalue), "balanced": bool(ks.pvalue >= KS_ALPHA)
            }
    return {
        "nside": nside,
        "shared_pixels": shared_pix,
        "shared_galaxies": shared_gal,
        "pixels_per_split": {n: int(len(np.unique(pix[split == n]))) for n in names},
        "ks_balance": balance,
        "balanced": all(v["balanced"] for d in balance.values() for v in d.values()),
    }


def counts(table: pa.Table) -> dict:
    """Counts by split x label x tier x pool x confuser_category, and neg:pos per split."""
    cols = ("split", "label", "tier", "pool", "confuser_category")
    values = [table.column(c).to_pylist() for c in cols]
    tally = Counter(zip(*values))
    rows = [dict(zip(cols, key), count=n) for key, n in sorted(tally.items(), key=lambda kv: tuple(map(str, kv[0])))]
    by_split: dict[str, dict] = {}
    for s, lab in zip(values[0], values[1]):
        d = by_split.setdefault(s, {"n": 0, "positives": 0, "negatives": 0})
        d["n"] += 1
        d["positives" if lab == 1 else "negatives"] += 1
    for d in by_split.values():
        d["neg_to_pos"] = d["negatives"] / d["positives"] if d["positives"] else None
    return {"by_stratum": rows, "by_split": by_split}
