"""Feature-space separation between groups of cutouts (e.g. real lenses vs injections vs negatives).

Given embeddings (n, dim) — e.g. a model's penultimate-layer activations — two questions:

* Can a linear probe tell the groups apart? Linear-probe ROC AUC from stratified k-fold
  cross-validated logistic regression (out-of-fold scores, so the probe never grades itself).
  An AUC near 0.5 between real lenses and injections means the model sees them alike.
* How far apart are the groups as Gaussians? The Fréchet distance
  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as in FID. A sample covariance is singular
  when n <= dim, so the distance is reported as not computable there rather than as a number.

Pure numpy/scipy/scikit-learn; obtaining embeddings (torch) is the caller's business.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dhs_eval.errors import MetricInputError
from dhs_eval.metrics import roc_auc


def _features(x: object, where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise MetricInputError(f"{where} must be a 2-D array (n, dim) of embeddings; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise MetricInputError(f"{where} contains non-finite values")
    return arr


def linear_probe_auc(features_a: object, features_b: object, *, n_folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold ROC AUC of a logistic-regression probe separating group b (1) from group a (0)."""
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"embeddings have dims {a.shape[1]} and {b.shape[1]}; they must match")
    if min(len(a), len(b)) < n_folds:
        return {"auc": math.nan, "n_a": len(a), "n_b": len(b),
                "status": f"not computable: each group needs at least n_folds={n_folds} members"}
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(probe, x, y, cv=folds, method="decision_function")
    return {"auc": roc_auc(y, scores), "n_a": len(a), "n_b": len(b), "status": "ok"}


def frechet_distance(features_a: object, features_b: object) -> dict:
    """Fréchet distance between Gaussian fits of two groups; not computable when n <= dim."""
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    dim = a.shape[1]
    if b.shape[1] != dim:
        raise MetricInputError(f"embeddings have dims {dim} and {b.shape[1]}; they must match")
    if len(a) <= dim or len(b) <= dim:
        return {"distance": math.nan, "n_a": len(a), "n_b": len(b), "dim": dim,
                "status": f"not computable: needs more samples than dimensions (n_a={len(a)}, n_b={len(b)}, dim={dim})"}
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real  # tiny imaginary parts are numerical noise of the matrix square root
    dist = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))
    return {"distance": max(dist, 0.0), "n_a": len(a), "n_b": len(b), "dim": dim, "status": "ok"}
