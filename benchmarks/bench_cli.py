"""Start-up time of the read-only CLI against importing torch alone.

    python benchmarks/bench_cli.py [--quick]

``dhs validate examples/quickstart.toml`` loads every installed plugin, builds the spec model
from their ``Config`` classes, validates the quickstart and plans its stages. It should answer
faster than ``python -c "import torch"`` alone, which it can only do if registering plugins
imports no torch (docs/architecture.md, "Light registration"). Both are timed as whole
processes, interleaved, and the medians compared; ``dhs --help`` and ``dhs plugins`` are
reported for reference.

The last line is ``cli: ratio <r> (import torch vs dhs validate examples/quickstart.toml wall time)``
— r > 1 means validate is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DHS = [sys.executable, "-c", "import sys; from dhs_cli.main import main; sys.exit(main(sys.argv[1:]))"]
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "dhs validate": [*DHS, "validate", "examples/quickstart.toml"],
    "dhs --help": [*DHS, "--help"],
    "dhs plugins": [*DHS, "plugins"],
}


def wall(cmd: list[str]) -> float:
    env = dict(os.environ, DHS_LOAD_PLUGINS="builtin")
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    args = parser.parse_args()
    rounds = 5 if args.quick else 15
    for cmd in COMMANDS.values():  # warm the file cache: the first start-up reads every .pyc from disk
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):  # interleaved, so drifts in machine load hit every command alike
        for name, cmd in COMMANDS.items():
            times[name].append(wall(cmd))
    for name, ts in times.items():
        print(f"{name:14s} median {statistics.median(ts):6.3f} s  (min {min(ts):.3f}, max {max(ts):.3f}, n={len(ts)})")
    ratio = statistics.median(times["import torch"]) / statistics.median(times["dhs validate"])
    print(f"cli: ratio {ratio:.2f} (import torch vs dhs validate examples/quickstart.toml wall time)")


if __name__ == "__main__":
    main()
