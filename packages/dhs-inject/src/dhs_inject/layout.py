"""Files the selection-function stage writes; each name defined once, here.

Names are relative to the stage's directory; :data:`ARTIFACTS` gives them relative to the run
directory, as the stage declares them.
"""

#: the selection-function stage's directory inside a run directory
SELECTION_DIR = "selection_function"
#: one row per grid cell and threshold: counts and completeness with intervals
CELLS = "cells.parquet"
#: one row per sensitivity variant, grid cell and threshold: completeness of the variant and its
#: Delta C against the unperturbed grid (common random numbers)
SENSITIVITY = "sensitivity.parquet"
#: the pre-grid injection QA: measurements and checks (dhs_inject.selection.qa)
QA = "qa.json"
#: one row per prior set, grid cell and threshold (the dual-prior report)
PRIOR_SETS = "prior_sets.parquet"
#: threshold, grid, injector and counts of the whole grid
META = "meta.json"
#: one row per injection (parameters, host, score, status)
INJECTIONS = "injections.parquet"
#: finished cells, one file each (resume per cell)
CELL_DIR = "cells"
#: stamps for the report's gallery: injected examples (detected / missed per θE) and top false positives
GALLERY = "gallery.npz"

#: the selection-function stage's named artifacts, relative to the run directory
ARTIFACTS = {
    "cells": f"{SELECTION_DIR}/{CELLS}",
    "meta": f"{SELECTION_DIR}/{META}",
    "gallery": f"{SELECTION_DIR}/{GALLERY}",
    "sensitivity": f"{SELECTION_DIR}/{SENSITIVITY}",
    "prior_sets": f"{SELECTION_DIR}/{PRIOR_SETS}",
    "qa": f"{SELECTION_DIR}/{QA}",
}
