"""scripts/readme_results.py: the block is built from the JSON files, --check tells stale from fresh."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "readme_results.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numbers_come_from_the_json_and_missing_files_are_noted(script: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    sweep = {
        "sweep_file": "x.toml",
        "machine": {"node": "testnode", "cpus": 7},
        "cli": {"points": 123, "workers": 3, "process_wall_s": 4.56, "workload_s": 1.0},
        "kill_and_resume": {"duplicates": 0, "lost": 0},
        "goal_s": 60.0,
    }
    (results / "sweep.json").write_text(json.dumps(sweep))
    block = script.render_block(results, image=None)
    assert block.startswith(script.START) and block.endswith(script.END)
    assert "| `x.toml` | 123 | 3 | 4.6 |" in block
    assert "node `testnode`; 7 CPUs" in block
    assert "_No `bench/results/sim_speed.json` yet" in block


def test_check_is_1_when_stale_and_0_after_a_rewrite(script: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(SCRIPT.parents[1] / "bench" / "results", results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{script.START}\nold numbers\n{script.END}\n\nafter\n")
    args = ["--readme", str(readme), "--results", str(results)]
    assert script.main([*args, "--check"]) == 1
    assert script.main([*args, "--no-plot"]) == 0
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# title\n") and text.endswith("\nafter\n")
    assert script.main([*args, "--check"]) == 0


def test_markers_are_appended_when_absent(script: ModuleType) -> None:
    text = script.replace_block("# title\n", f"{script.START}\nx\n{script.END}")
    assert text == f"# title\n\n{script.START}\nx\n{script.END}\n"
