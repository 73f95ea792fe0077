"""Files the evaluate and report stages write; each name defined once, here."""

#: the evaluate stage's directory inside a run directory
EVALUATE_DIR = "evaluate"
#: scores joined with the manifest (and truth): one row per scored cutout
PREDICTIONS = "predictions.parquet"
#: every evaluator's results
METRICS = "metrics.json"
#: the model card, at the top of the run directory
MODEL_CARD = "MODEL_CARD.md"
#: the report stage's directory (its figures)
REPORT_DIR = "report"

EVALUATE_ARTIFACTS = {
    "predictions": f"{EVALUATE_DIR}/{PREDICTIONS}",
    "metrics": f"{EVALUATE_DIR}/{METRICS}",
}

#: training curves drawn by the report stage from the train stage's metrics (in REPORT_DIR)
TRAINING_CURVES = "training_curves.png"
#: (x, y) marginal completeness heatmaps the report stage draws when cells.parquet has both columns
HEATMAP_AXES = (("theta_e", "psfsize_r"), ("theta_e", "depth_m5"))
#: file name of one heatmap in REPORT_DIR: ``COMPLETENESS_HEATMAP.format(x="theta_e", y="psfsize_r")``
COMPLETENESS_HEATMAP = "completeness_{x}_{y}.png"
#: every stratum of every split as a table (in REPORT_DIR); the card shows only the defined ones
STRATA_CSV = "strata.csv"
#: every selection-function cell with k/n and intervals (in REPORT_DIR); the card shows marginals
CELLS_CSV = "selection_cells.csv"
#: the self-contained HTML report (figures embedded), at the top of the run directory
REPORT_HTML = "report.html"
#: ``dhs compare`` outputs (in the chosen output directory)
COMPARE_MD = "compare.md"
COMPARE_HTML = "compare.html"

REPORT_ARTIFACTS = {"model_card": MODEL_CARD, "report_html": REPORT_HTML, "strata_csv": f"{REPORT_DIR}/{STRATA_CSV}",
                    "cells_csv": f"{REPORT_DIR}/{CELLS_CSV}"}
