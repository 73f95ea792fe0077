"""Checks shared by every metric: one place decides what a valid (labels, scores) pair is.

Conventions: ``labels`` are 0/1 (or bool), ``scores`` are real numbers where larger means "more
lens-like", and a cutout is called positive when ``score >= threshold`` (scikit-learn's
``roc_curve`` convention). A NaN score is a failed evaluation, not a low score: it is excluded and
counted, never replaced by 0, because replacing it would silently move the operating point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dhs_eval.errors import MetricInputError, NaNScoresWarning

NAN_POLICIES = ("omit", "raise")


@dataclass(frozen=True)
class Scored:
    """Labels and finite scores after validation, and how many NaN scores were dropped."""

    labels: np.ndarray  # int8 0/1
    scores: np.ndarray  # float64, finite
    n_nan: int

    @property
    def n_pos(self) -> int:
        return int(self.labels.sum())

    @property
    def n_neg(self) -> int:
        return int(self.labels.size - self.labels.sum())

    def undefined_reason(self) -> str | None:
        """Why a two-class metric is not defined here, or None when it is."""
        if self.labels.size == 0:
            return "not defined: no validly scored examples"
        if self.n_pos == 0:
            return "not defined: no positives (only one class)"
        if self.n_neg == 0:
            return "not defined: no negatives (only one class)"
        return None


def as_labels(labels: object, where: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise MetricInputError(f"{where} must be a 1-D array; got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int8)
    if y.size and not np.issubdtype(y.dtype, np.number):
        raise MetricInputError(f"{where} must be 0/1 numbers or booleans; got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise MetricInputError(
            f"{where} must contain only 0 (non-lens) and 1 (lens); found {np.unique(y[bad])[:5].tolist()}"
        )
    return y.astype(np.int8)


def as_scores(scores: object, n: int, where: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise MetricInputError(f"{where} must be a 1-D array; got shape {s.shape}")
    if s.size != n:
        raise MetricInputError(f"{where} has {s.size} values but labels has {n}; they must match one to one")
    if np.isinf(s).any():
        raise MetricInputError(f"{where} contains {int(np.isinf(s).sum())} infinite values; scores must be finite or NaN")
    return s


def scored(labels: object, scores: object, *, nan_policy: str = "omit", where: str = "scores") -> Scored:
    """Validate a (labels, scores) pair and drop NaN scores according to ``nan_policy``."""
    if nan_policy not in NAN_POLICIES:
        raise MetricInputError(f"nan_policy={nan_policy!r}; valid: {', '.join(NAN_POLICIES)}")
    y = as_labels(labels)
    s = as_scores(scores, y.size, where)
    nan = np.isnan(s)
    n_nan = int(nan.sum())
    if n_nan:
        if nan_policy == "raise":
            raise MetricInputError(f"{where} contains {n_nan} NaN values of {s.size}; pass nan_policy='omit' to exclude them")
        warnings.warn(f"{n_nan} of {s.size} {where} are NaN and were excluded", NaNScoresWarning, stacklevel=3)
        y, s = y[~nan], s[~nan]
    return Scored(y, s, n_nan)


def as_probabilities(probs: np.ndarray, *, logits: bool, where: str = "probs") -> np.ndarray:
    """Probabilities in [0, 1]; logits are mapped through the logistic function when asked."""
    if logits:
        from scipy.special import expit

        return expit(probs)
    outside = (probs < 0) | (probs > 1)
    if outside.any():
        raise MetricInputError(
            f"{where} has {int(outside.sum())} values outside [0, 1] (min {probs.min():.4g}, max {probs.max():.4g}); "
            "calibration needs probabilities — pass logits=True if these are logits"
        )
    return probs
