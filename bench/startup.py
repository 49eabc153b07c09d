"""``mixbit targets --json`` start-up time of two source trees, side by side (issue #17: before/after the layers).

Each run is a fresh interpreter (``python -c`` with the tree as the working directory, so its packages are the
ones imported); the two trees alternate run by run, so machine load hits both alike. Also the import cost of
pydantic itself and of the modules Dask sweep workers import (``allocator.sweep.run``).

    .venv/bin/python bench/startup.py --before /tmp/struct-before --after . --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "startup.json"
ENTRY = {  # the console script's target in each layout (pyproject [project.scripts])
    "flat": "from allocator.cli import main",
    "layers": "from allocator.cli.main import main",
}


def _run(tree: Path, code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _entry(tree: Path) -> str:
    layout = "layers" if (tree / "allocator" / "cli" / "main.py").is_file() else "flat"
    return f"import sys; {ENTRY[layout]}; sys.exit(main(['targets', '--json']))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    codes = {
        **{f"targets_json_{name}": (tree, _entry(tree)) for name, tree in trees.items()},
        "import_pydantic": (trees["after"], "import pydantic"),
        "import_nothing": (trees["after"], "pass"),
        "import_sweep_worker_modules": (trees["after"], "import allocator.sweep.run"),
    }
    times: dict[str, list[float]] = {name: [] for name in codes}
    load_before = os.getloadavg()
    for _ in range(args.runs):
        for name, (tree, code) in codes.items():
            times[name].append(_run(tree, code))
    result = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "runs": args.runs,
        "trees": {name: str(tree) for name, tree in trees.items()},
        "median_s": {name: round(statistics.median(values), 3) for name, values in times.items()},
        "min_s": {name: round(min(values), 3) for name, values in times.items()},
        "note": "shared 2-core machine with other engineers' tests running; runs alternate, so compare ratios",
    }
    median = result["median_s"]
    result["after_over_before"] = round(median["targets_json_after"] / median["targets_json_before"], 3)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
