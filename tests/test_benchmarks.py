"""The benchmark scripts run (no timing is asserted: figures live in BENCHMARKS.md)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_scale_benchmark_quick_runs_and_reports_json():
    r = subprocess.run([sys.executable, "benchmarks/scale.py", "--quick"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["plan"]["tasks"] == 66 * 100 * 16 and result["resume"]["pending"] == 0
    assert result["analysis"]["rows"] == 100_000 and result["analysis"]["comparisons"] == 8
