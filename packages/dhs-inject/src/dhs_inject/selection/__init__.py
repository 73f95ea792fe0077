"""The selection-function stage: injection-recovery completeness on a theta_E x PSF x depth x source-mag grid."""
