"""Files the pipeline runner writes in every run directory (docs/architecture.md, "The run directory").

Each name is defined once, here; readers import it. Stage artifacts are constants of the package
whose stage writes them, declared in that stage's ``artifacts``.
"""

#: the resolved spec, every default filled in (TOML)
RESOLVED_SPEC = "spec.resolved.toml"
#: provenance: spec SHA-256, versions, plugins, host, command, per-stage timing and status
RUN_INFO = "run_info.json"
#: ``name==version`` of every plugin distribution, for a paper to pin
PLUGINS_TXT = "plugins.txt"
#: the run's log: every message of ``dhs run`` with a time stamp, and the traceback of a failure
LOG = "dhs.log"
#: held while a ``dhs run`` writes the directory: pid, host, start time and command of the holder
LOCK = ".dhs/lock"
#: the runner's own state: one ``<stage>.json`` per stage (input hash, completion token, metrics)
STATE_DIR = ".dhs/stages"
#: the ``[[gates]]`` verdict of a finished run: passed, counts per status, one record per gate
#: (written only when the spec has gates; dhs_core.gates)
GATES = "gates.json"
#: sweep comparison tables, written in the sweep's base directory
COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
