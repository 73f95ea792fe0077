"""Diagnostic: do two sky annuli give the same sky level and noise, and do they track conditions?

For a sample of cutouts, per band: the two-sample KS test between the annulus medians of
annulus A and annulus B, the same for their MADs, and the Spearman correlation of each
annulus's MAD (the noise it would normalise by) with psfsize_r and psfdepth_r. A small KS p for
medians means one annulus still contains host light; a MAD that does not anti-correlate with
psfdepth_r means it is not measuring sky noise.
"""

from __future__ import annotations

import warnings

import numpy as np

from dhs_data.preprocess.annulus import annulus_radii, annulus_stats


def annulus_comparison(
    cutouts: np.ndarray,
    *,
    psfsize_r: np.ndarray | None = None,
    psfdepth_r: np.ndarray | None = None,
    annulus_a: tuple[float, float] | str = (20, 32),
    annulus_b: tuple[float, float] | str = (32.5, 45),
) -> dict:
    """Compare two annuli over ``cutouts`` ``(N,3,H,W)``; returns a JSON-ready dict."""
    from scipy import stats  # imported on use: registering preprocessors must stay light

    from dhs_data.stores.base import BANDS  # the stores package imports pyarrow; same reason

    x = np.asarray(cutouts, dtype=np.float32)
    with warnings.catch_warnings():  # an annulus inside host light is what this diagnostic measures
        warnings.simplefilter("ignore", UserWarning)
        ra = annulus_radii(annulus_a, x.shape[-2:])
        rb = annulus_radii(annulus_b, x.shape[-2:])
    med_a, mad_a = annulus_stats(x, *ra)
    med_b, mad_b = annulus_stats(x, *rb)
    out: dict = {"annulus_a": list(ra), "annulus_b": list(rb), "n": int(x.shape[0]), "bands": {}}
    for j, band in enumerate(BANDS):
        ks_med = stats.ks_2samp(med_a[:, j], med_b[:, j])
        ks_mad = stats.ks_2samp(mad_a[:, j], mad_b[:, j])
        entry = {
            "median_ks": {"statistic": float(ks_med.statistic), "pvalue": float(ks_med.pvalue)},
            "mad_ks": {"statistic": float(ks_mad.statistic), "pvalue": float(ks_mad.pvalue)},
            "median_a": float(np.median(med_a[:, j])),
            "median_b": float(np.median(med_b[:, j])),
        }
        for cond_name, cond in (("psfsize_r", psfsize_r), ("psfdepth_r", psfdepth_r)):
            if cond is None:
                continue
            for tag, mad in (("a", mad_a[:, j]), ("b", mad_b[:, j])):
                rho = stats.spearmanr(mad, np.asarray(cond, float))
                entry[f"mad_{tag}_vs_{cond_name}"] = {"rho": float(rho.statistic), "pvalue": float(rho.pvalue)}
        out["bands"][band] = entry
    return out
