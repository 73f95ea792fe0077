"""Options of dhs-eval's evaluators.

Kept free of numerical and plotting libraries: registering the evaluators and validating a spec
import only this module; the evaluator itself (:mod:`.classification`) loads when it runs.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from dhs_core import ComponentConfig
from dhs_eval.targets import FPR_TARGETS, TIER_A_THRESHOLDS, TPR_TARGETS


class ClassificationConfig(ComponentConfig):
    """Options of the ``classification`` evaluator."""

    # splits evaluated, in report order (the held-out test split is the headline)
    splits: tuple[str, ...] = ("test", "val")
    # decision threshold on the sigmoid probability for precision/recall and the strata
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    # FPRs of the TPR-at-FPR table
    fpr_targets: tuple[float, ...] = FPR_TARGETS
    # TPRs of the FPR-at-TPR table
    tpr_targets: tuple[float, ...] = TPR_TARGETS
    # upper FPR limits of the McClish-standardised partial AUCs
    pauc_max_fprs: tuple[float, ...] = (1e-3, 1e-2)
    # bootstrap resamples for the AUC / pAUC intervals (0 disables the bootstrap)
    n_bootstrap: int = Field(2000, ge=0)
    # confidence level of every interval
    level: float = Field(0.95, gt=0.0, lt=1.0)
    # binomial interval for the k/n strata and table rates
    interval_method: Literal["jeffreys", "wilson", "clopper-pearson"] = "jeffreys"
    # equal-width probability bins of ECE/MCE and the reliability diagram
    n_calibration_bins: int = Field(15, ge=1)
    # quantile bins for theta_e / psfsize_r / psfdepth_r strata
    n_strata_bins: int = Field(4, ge=1)
    # write the ROC and calibration PNGs
    plots: bool = True


class TierAConfig(ComponentConfig):
    """Options of the ``tier_a`` evaluator."""

    # splits evaluated, in report order (the held-out test split is the headline)
    splits: tuple[str, ...] = ("test", "val")
    # detection thresholds on the sigmoid score (detected: score > t; published: p > 0.3 and p > 0.5)
    thresholds: tuple[float, ...] = TIER_A_THRESHOLDS
    # bootstrap resamples for the AUC interval (published: 2,000; 0 disables the bootstrap)
    n_bootstrap: int = Field(2000, ge=0)
    # confidence level of every interval (published: 95 %)
    level: float = Field(0.95, gt=0.0, lt=1.0)
    # write tier_a.png
    plots: bool = True

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("thresholds needs at least one score threshold, e.g. [0.3, 0.5]")
        bad = [t for t in value if not (math.isfinite(t) and 0 <= t < 1)]
        if bad:
            raise ValueError(f"thresholds = {list(value)}: score thresholds are probabilities in [0, 1) "
                             f"(detected: score > t); got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"thresholds = {list(value)} repeats a value")
        return value
