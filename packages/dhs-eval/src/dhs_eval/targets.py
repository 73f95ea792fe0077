"""Default operating points of a lens search: the FPRs and TPRs the field reports.

Kept apart from :mod:`dhs_eval.metrics` (which needs scikit-learn) so that evaluator configs can
name them without importing a numerical library.
"""

#: FPRs of the "TPR at FPR" table (the follow-up budget of a survey-scale search).
FPR_TARGETS = (1e-2, 1e-3, 1e-4)
#: TPRs of the "FPR at TPR" table (how much contamination buys a given completeness).
TPR_TARGETS = (0.99, 0.95, 0.90, 0.85, 0.80, 0.70, 0.50)
#: score thresholds of the published Tier-A recall (p > 0.3 and p > 0.5, detected: score > t).
TIER_A_THRESHOLDS = (0.3, 0.5)
