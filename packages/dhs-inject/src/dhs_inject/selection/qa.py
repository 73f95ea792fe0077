"""Injection QA before the grid: the published pre-grid check list, on a small host sample.

Run by the selection-function stage before any cell (``qa.json``; with ``qa = "stop"``, the
default, a failed check stops the stage with the reason, ``qa = "warn"`` logs it and goes on).
On ``qa_n`` distinct hosts (fewer when the pool is smaller) drawn from the stage's host pool
(seed ``qa``), one injection each with the
injector's prior over the grid's whole theta_E and source-magnitude range:

* **success rate**: validly scored injections / attempts (a check: at least ``QA_MIN_SUCCESS``);
* **flux conservation** per band: |sum(injected image - host) - sum(arc)| / sum(arc), mean over
  injections (a check: at most ``QA_MAX_FLUX_ERROR``; exactly 0 up to float rounding unless arc
  Poisson noise is on) — the arc the stage scores is the arc it rendered, nothing lost or added;
* **host-only FPR** at every threshold: the hosts scored without an arc. For an FPR threshold a
  check (when the negatives resolve the target): a host pool whose FPR is significantly above
  the target (one-sided binomial test, p < ``QA_FPR_P``) holds lenses or confusers the threshold
  was not set on;
* **detection rate** at every threshold on the default hosts and on the same hosts with their
  core suppressed (the central ``core_radius`` pixels replaced by the median of the ring out to
  twice that, per band), with the same arcs (common random numbers): how much detection leans on
  the host's core (reported, not a check);
* **mean arc SNR** (reported).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the success rate below which the QA fails: failed injections would dominate the grid
QA_MIN_SUCCESS = 0.9
#: mean relative flux-conservation error per band above which the QA fails
QA_MAX_FLUX_ERROR = 1e-3
#: one-sided binomial p-value below which a host-only FPR is "above its target"
QA_FPR_P = 1e-3
#: radius (pixels) of the suppressed host core
CORE_RADIUS = 5.0


def suppress_core(hosts: np.ndarray, radius: float = CORE_RADIUS) -> np.ndarray:
    """(N, 3, H, W) hosts with the pixels within ``radius`` of the centre replaced by the median of
    the ring radius..2 radius, per cutout and band (the lens galaxy's core removed, its sky kept)."""
    hosts = np.array(hosts, dtype=np.float32, copy=True)
    h, w = hosts.shape[-2:]
    y, x = np.mgrid[:h, :w]
    r = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2)
    core, ring = r < radius, (r >= radius) & (r < 2 * radius)
    fill = np.median(hosts[..., ring], axis=-1)  # (N, 3)
    hosts[..., core] = fill[..., None]
    return hosts


def run_qa(*, store, finder, injector, host_keys: list[str], host_meta: dict[str, np.ndarray],
           thresholds: list[tuple[str, Any]], seed: int, batch_size: int, exact_flux: bool = True) -> dict[str, Any]:
    """The QA report (JSON-ready): every measurement, each check with its pass/fail and reason.

    ``exact_flux`` False (arc Poisson noise on): flux conservation is reported, not checked."""
    from scipy import stats

    from dhs_data.stores import read_readable
    from dhs_models.inference import score_images

    hosts, readable, _ = read_readable(store, host_keys)
    meta = {k: np.asarray(v)[readable] for k, v in host_meta.items()}
    n_unreadable = int((~readable).sum())
    if hosts is None:
        return {"n": 0, "checks": [{"name": "success_rate", "passed": False, "value": 0.0,
                                    "reason": "no QA host could be read"}], "passed": False}
    columns = finder.metadata_columns

    def score(images, index):
        m = np.stack([meta[c][index].astype(np.float32) for c in columns], 1) if columns else None
        return score_images(finder.model, images, preprocess=finder.preprocess, meta=m, batch_size=batch_size,
                            device=finder.device)

    host_scores = score(hosts, np.arange(len(hosts)))
    batch = injector.inject(hosts, meta, np.random.default_rng(seed))
    # the same arcs into the core-suppressed hosts: the same generator state, so the same draws
    suppressed = injector.inject(suppress_core(hosts), meta, np.random.default_rng(seed))
    inj_scores = score(batch.images, batch.host_index)
    sup_scores = score(suppressed.images, suppressed.host_index)
    n_attempted = batch.n_ok + batch.n_failed + n_unreadable
    valid = np.isfinite(inj_scores)
    success = float(valid.sum() / n_attempted) if n_attempted else 0.0
    added = (batch.images.astype(np.float64) - hosts[batch.host_index].astype(np.float64)).sum(axis=(-2, -1))
    arc_flux = batch.arcs.astype(np.float64).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        flux_err = np.abs(added - arc_flux) / np.abs(arc_flux)
    flux_by_band = {band: float(np.nanmean(flux_err[:, i])) if len(flux_err) else None
                    for i, band in enumerate("grz")}
    per_threshold, checks = {}, []
    valid_host_scores = host_scores[np.isfinite(host_scores)]
    n_host = int(valid_host_scores.size)
    for name, thr in thresholds:
        k_host = int((valid_host_scores >= thr.threshold).sum())
        entry = {"threshold": thr.threshold, "host_fpr": k_host / n_host if n_host else None,
                 "host_false_positives": k_host, "n_hosts_scored": n_host,
                 "detection_rate": float((inj_scores[valid] >= thr.threshold).mean()) if valid.any() else None,
                 "detection_rate_core_suppressed": (float((sup_scores[np.isfinite(sup_scores)] >= thr.threshold).mean())
                                                    if np.isfinite(sup_scores).any() else None)}
        if thr.target_fpr is not None and thr.resolvable and n_host:
            p = float(stats.binomtest(k_host, n_host, thr.target_fpr, alternative="greater").pvalue)
            entry["host_fpr_p_value"] = p
            checks.append({"name": f"host_fpr[{name}]", "passed": p >= QA_FPR_P, "value": entry["host_fpr"],
                           "reason": f"{k_host}/{n_host} QA hosts score >= {thr.threshold:.4g}, target FPR "
                                     f"{thr.target_fpr:g} (one-sided binomial p = {p:.2g}; fails below {QA_FPR_P:g}: "
                                     "the host pool holds lenses or confusers the threshold was not set on)"})
        per_threshold[name] = entry
    checks.insert(0, {"name": "success_rate", "passed": success >= QA_MIN_SUCCESS, "value": success,
                      "reason": f"{int(valid.sum())}/{n_attempted} QA injections scored validly "
                                f"(needs >= {QA_MIN_SUCCESS:.0%}); failures: {dict(batch.failures)}"})
    worst = max((v for v in flux_by_band.values() if v is not None), default=None)
    if exact_flux:
        checks.insert(1, {"name": "flux_conservation", "passed": worst is not None and worst <= QA_MAX_FLUX_ERROR,
                          "value": worst, "reason": f"mean |sum(image - host) - sum(arc)| / sum(arc) per band "
                                                    f"{flux_by_band} (needs <= {QA_MAX_FLUX_ERROR:g})"})
    snr = batch.arc_snr[np.isfinite(batch.arc_snr)]
    return {
        "n": len(host_keys), "n_unreadable": n_unreadable, "n_attempted": n_attempted, "n_ok": int(valid.sum()),
        "success_rate": success, "flux_conservation_error": flux_by_band,
        "mean_arc_snr": float(snr.mean()) if snr.size else None, "core_radius_pix": CORE_RADIUS,
        "thresholds": per_threshold, "checks": checks, "passed": all(c["passed"] for c in checks),
    }
