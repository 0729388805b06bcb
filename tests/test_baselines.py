"""README.md shows the performance tables of the curated baselines (benchmarks/baselines/*.json),
exactly as ``python benchmarks/baseline_table.py <baseline>`` prints them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINES = sorted((ROOT / "benchmarks" / "baselines").glob("*.json"))


def test_there_are_baselines():
    assert {p.name for p in BASELINES} >= {"h100.json", "h200.json"}


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda p: p.name)
def test_readme_has_the_baseline_tables(baseline):
    p = subprocess.run([sys.executable, "benchmarks/baseline_table.py", str(baseline.relative_to(ROOT)),
                        "--check", "README.md"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (
        f"README.md is out of date with {baseline.name}; paste the output of "
        f"`python benchmarks/baseline_table.py benchmarks/baselines/{baseline.name}`:\n{p.stdout}{p.stderr}")
