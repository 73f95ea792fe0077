"""Files a data directory holds; each name defined once, here (imported by every reader).

The data stage writes a data directory at ``<run>/data``; ``dhs data pack`` and data sources
write the same layout elsewhere. Names are relative to the data directory, and :data:`ARTIFACTS`
gives the data stage's artifacts relative to the run directory.
"""

#: the data stage's directory inside a run directory
DATA_DIR = "data"
#: where the data stage builds the data directory before swapping it in as DATA_DIR
DATA_STAGING = ".data.partial"
#: marker file the data stage writes into every data directory it makes: the stage replaces a
#: directory only when it recognises it as its own (this marker, or store.json with a manifest)
DATA_MARKER = ".dhs-data"
#: where the data stage moves the previous data directory while it swaps the new one in
DATA_PREVIOUS = ".data.previous"
#: the manifest: one row per cutout that passed the data stage's checks
MANIFEST = "manifest.parquet"
#: counts, exclusions by reason, split sizes, pixel statistics
DATA_REPORT = "data_report.json"
#: rows the data stage excluded, with the reason
EXCLUDED = "excluded.parquet"
#: per-cutout truth of simulated data (injection parameters), when the source has any
TRUTH = "truth.parquet"
#: which cutout store the directory holds and how to open it
STORE_INFO = "store.json"
#: directory of the packed shards (``dhs data pack``), relative to the data directory
SHARDS_DIR = "shards"
#: packed shards: per-cutout index (shard, offset, CRC-32), inside the shard directory
SHARD_INDEX = "index.parquet"
#: report of ``dhs data pack``
PACK_REPORT = "pack_report.json"
#: report of ``dhs data import``: counts, exclusions by reason and split, the first excluded rows
IMPORT_REPORT = "import_report.json"
#: every row ``dhs data import`` left out (source file, row, id, split, reason, detail)
IMPORT_EXCLUDED = "import_excluded.parquet"

#: the data stage's named artifacts, relative to the run directory (``Stage.artifacts``)
ARTIFACTS = {
    "manifest": f"{DATA_DIR}/{MANIFEST}",
    "data_report": f"{DATA_DIR}/{DATA_REPORT}",
    "truth": f"{DATA_DIR}/{TRUTH}",
}
