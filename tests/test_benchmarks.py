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
    analysis = result["analysis"]
    assert analysis["compare"]["rows"] == 100_000 and analysis["compare"]["rows_out"] == 8
    assert analysis["compare_distinct_prompts"]["prompts"] == 50_000
    assert analysis["regress_distinct_prompts"]["rows"] == 200_000
    assert analysis["regress_distinct_prompts"]["prompts"] == 100_000


def test_gpu_throughput_quick_runs_both_paths_and_reports_json():
    r = subprocess.run([sys.executable, "benchmarks/gpu_throughput.py", "--quick"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "gpu_throughput" and result["quick"] is True
    assert {"device", "packages", "baseline", "framework", "accel", "overlap", "scorers",
            "floor_images_per_s", "best", "targets", "total_s"} <= set(result)
    assert result["model"] == "tiny" and result["steps"] == 4 and result["width"] == 64
    base = result["baseline"]
    assert base["images"] == 3 and base["images_per_s"] > 0  # the plain diffusers path ran
    assert set(result["framework"]) == {"1", "4"}  # the framework path ran at each batch size
    for run in result["framework"].values():
        assert run["images"] == run["ok"] == run["pngs"] == run["scored"] == 4
        assert run["images_per_s"] > 0 and run["vs_baseline"] > 0 and run["of_floor"] > 0
    assert result["accel"]["optimised"] and result["accel"]["fused_qkv"] and result["overlap"]
    assert result["floor_images_per_s"] == 2.06 and result["targets"]["met"] is None


def test_gallery_scale_quick_runs_and_reports_json():
    r = subprocess.run([sys.executable, "benchmarks/gallery_scale.py", "--quick"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["build"]["rows"] == 10_000 and result["build"]["thumbnails"] == 500
    assert result["thumbnails"]["made"] == result["thumbnails"]["images"] == 40
    page = result["page"]
    if "skipped" not in page:  # no chromium on this machine
        assert page["shown_after_level"] == 8_000 and page["errors"] == 0
        assert page["cells_in_dom"] < 200  # virtualised: only the rows in view


def test_human_validity_benchmark_prints_one_json_line():
    r = subprocess.run([sys.executable, "benchmarks/human_validity.py", "--reps", "40"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "human_validity" and len(result["human"]) == 7
    assert set(result["worst"]) == {"human_coverage_95", "human_coverage_planted",
                                    "human_false_verdicts", "agreement_coverage"}
