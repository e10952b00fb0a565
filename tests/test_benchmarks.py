"""The benchmark scripts, in their quick forms: each figure they report is checked against the
target BENCHMARKS.md states for it, with room for a shared machine (the full-size runs there
are ten times larger and were measured idle). Statistics figures come from seeded
simulations, so their bounds are exact for the code as it is."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _last_json(script: str, *args: str, timeout: int = 600) -> dict:
    """Run a benchmark script; the JSON object its last line prints."""
    r = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_scale_benchmark_quick_runs_and_reports_json():
    result = _last_json("scale.py", "--quick")
    plan, killed = result["plan"], result["killed_run"]
    assert plan["tasks"] == 66 * 100 * 16 and plan["units"] == plan["tasks"] // 4  # batch 4
    # targets for 1,000,000 tasks: <= 5 s and <= 1 GiB; this is a tenth of that
    assert plan["seconds"] <= 5 and plan["rss_added_mib"] <= 256, plan
    # a killed run of 25,000 units in the parts the compaction leaves: 0x61a8, 6+1+10+8 parts
    new = killed["compacted"]
    assert new["parts"] == 25 and new["load_run"]["rows"] == new["resume"]["done"] == 100_000
    assert new["resume"]["pending"] == plan["tasks"] - 100_000 and new["resume"]["clashes"] == 0
    # the targets (1,000,000 tasks: resume < 10 s, load_run < 20 s) are judged on the full run
    # (BENCHMARKS.md); here the figures are there, and the ratios below are the test
    assert new["resume"]["seconds"] > 0 and new["load_run"]["seconds"] > 0, new
    old, same = killed["uncompacted_baseline"], killed["compacted_baseline"]
    assert old["parts"] == 2_000 and same["parts"] == 7 + 13 and old["resume"]["done"] == 8_000
    assert same["resume"]["done"] == 8_000 and same["load_run"]["rows"] == 8_000
    # one part per unit costs about a millisecond a part to resume from: parts that stay few
    # cost far less (measured: 60-100x at 2,000 units)
    assert killed["ratios"]["resume_same_size"] >= 5 and killed["ratios"]["load_run_same_size"] >= 5
    analysis = result["analysis"]
    assert analysis["compare"]["rows"] == 100_000 and analysis["compare"]["rows_out"] == 8
    assert analysis["compare_distinct_prompts"]["prompts"] == 50_000
    assert analysis["regress_distinct_prompts"]["rows"] == 200_000
    assert analysis["regress_distinct_prompts"]["prompts"] == 100_000
    for name, a in analysis.items():  # target for 1,000,000 rows: <= 20 s
        assert a["load_seconds"] <= a["seconds"] <= 20 and a["rss_added_mib"] <= 512, (name, a)


def test_gpu_throughput_quick_runs_both_paths_and_reports_json():
    result = _last_json("gpu_throughput.py", "--quick")
    assert result["benchmark"] == "gpu_throughput" and result["quick"] is True
    assert {"device", "packages", "baseline", "framework", "accel", "overlap", "scorers",
            "floor_images_per_s", "best", "targets", "total_s"} <= set(result)
    assert result["model"] == "tiny" and result["steps"] == 4 and result["width"] == 64
    base = result["baseline"]
    assert base["images"] == 3 and base["images_per_s"] > 0  # the plain diffusers path ran
    assert set(result["framework"]) == {"1", "4"}  # the framework path ran at each batch size
    for run in result["framework"].values():
        assert run["images"] == run["ok"] == run["pngs"] == run["scored"] == 4 and not run["errors"]
        rate = run["images"] / run["seconds"]
        assert run["images_per_s"] == pytest.approx(rate, rel=0.01)
        assert run["vs_baseline"] == pytest.approx(rate / base["images_per_s"], rel=0.01)
        assert run["of_floor"] == pytest.approx(rate / result["floor_images_per_s"], rel=0.01)
    # on a CPU the framework keeps up with the plain diffusers loop (BENCHMARKS.md: 0.99-1.07
    # in steady state); four images of a quick run are noisy, so only a loss of half is caught
    assert result["framework"]["4"]["vs_baseline"] >= 0.5
    assert result["best"]["images_per_s"] == max(r["images_per_s"]
                                                 for r in result["framework"].values())
    assert result["accel"]["optimised"] and result["accel"]["fused_qkv"] and result["overlap"]
    assert result["floor_images_per_s"] == 2.06 and result["targets"]["met"] is None


def test_gallery_scale_quick_runs_and_reports_json():
    result = _last_json("gallery_scale.py", "--quick")
    build = result["build"]
    assert build["rows"] == 10_000 and build["thumbnails"] == 500
    # column-wise, dictionary-coded data: 10 MB for 100,000 rows (README), a tenth here
    assert build["data_js_mib"] <= 1.5 and build["detail_mib"] <= 4
    assert result["thumbnails"]["made"] == result["thumbnails"]["images"] == 40
    page = result["page"]
    if "skipped" not in page:  # no chromium on this machine
        assert page["shown_after_level"] == 8_000 and page["errors"] == 0
        assert page["cells_in_dom"] < 200 and page["cells_in_dom_after_scroll"] < 200
        # filtering and sorting 10,000 rows stay interactive
        assert max(page["filter_level_ms"], page["filter_score_ms"], page["sort_ms"]) < 500


def test_human_validity_benchmark_prints_one_json_line():
    result = _last_json("human_validity.py", "--reps", "40", timeout=300)
    assert result["benchmark"] == "human_validity" and len(result["human"]) == 7
    worst = result["worst"]
    # 40 seeded sets of votes per configuration (the documented figures use 5,000): each 95%
    # interval covers at least 34 times out of 40, false verdicts at most 4 of 40
    assert worst["human_coverage_95"] >= 0.85 and worst["human_coverage_planted"] >= 0.85
    assert worst["human_false_verdicts"] <= 0.1 and worst["agreement_coverage"] >= 0.85
    planted = next(r for r in result["human"] if r["prompts"] == 20 and r["strengths"] == [0, 0.8])
    assert planted["detected"] == [1.0]  # a 69% preference over 20 prompts is found


def _probe(tmp_path, *args, timeout=600):
    r = subprocess.run([sys.executable, "benchmarks/gpu_probe.py", "--quick", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "OUT": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    # every line printed is also in $OUT, in order, as it went
    assert [json.loads(ln) for ln in (tmp_path / "gpu_probe.jsonl").read_text().splitlines()] \
        == lines
    return lines


def _one(lines, step, **match):
    found = [r for r in lines if r["step"] == step and all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (step, match, [r["step"] for r in lines])
    return found[0]


def test_gpu_probe_quick_reports_every_step(tmp_path):
    lines = _probe(tmp_path, "--budget-s", "200")
    steps = [(r["step"], r.get("name") or r.get("mode") or r.get("variant")) for r in lines]
    assert steps == [
        ("environment", None), ("build", None), ("baseline_start", None), ("scorers", None),
        ("variant", "eager"), ("profile", "eager"), ("variant", "regional"),
        ("profile", "regional"), ("variant", "regional_fp8"), ("compile_warm", "dir"),
        ("compile_warm", "artifacts"), ("variant", "unet_static"), ("profile", "unet_static"),
        ("baseline_end", None), ("summary", None)]
    env = lines[0]
    assert env["versions"]["torch"] and env["device"] == "cpu" and env["compile_backend"] == "aot_eager"
    for shape in env["sdpa"].values():  # the default backend is one that runs these inputs
        assert shape["ms"]["MATH"] > 0 and shape["ms"][shape["default"]] > 0
    knows = env["framework_knows"]
    assert set(knows) == {"compile: regional", "compile: unet", "precision: fp8"}

    start, end = _one(lines, "baseline_start"), _one(lines, "baseline_end")
    for base in (start, end):  # 1 warm-up + 4 images on the baseline's own pipeline
        assert base["images"] == 4 and not base["cut_short"]
        assert base["images_per_s"] == pytest.approx(4 / base["seconds"], rel=1e-3)
        assert base["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert end["same_pixels_as_start"] is True  # never the framework's mutated pipeline

    scorers = _one(lines, "scorers")["scorers"]
    assert scorers["aesthetic"]["class"] == "ViTForImageClassification"
    assert scorers["aesthetic"]["columns"] == ["aesthetic_score", "aesthetic_tag"]
    assert "clip_score" in scorers["clip"]["columns"] and scorers["wd14"]["tags"] == 64
    assert "wd14_rating" in scorers["wd14"]["columns"]
    assert scorers["wd14"]["providers"] == ["CPUExecutionProvider"]
    assert all(s["s_per_image"] > 0 and s["params"] > 0 for s in scorers.values())

    eager = _one(lines, "variant", name="eager")
    flops = eager["unet_flops"]
    for name in ("eager", "regional", "unet_static"):
        v = _one(lines, "variant", name=name)
        # 4 timed images in 2 units of 2, every PNG written and every image scored
        assert v["images"] == v["ok"] == v["pngs"] == v["scored"] == 4 and not v["errors"]
        assert v["images_per_s"] == pytest.approx(4 / v["seconds"], rel=1e-3)
        assert v["steady_images_per_s"] > 0 and v["unet_calls"] == 2 * 2  # 2 units x 2 steps
        assert v["unet_flops"] == flops > 0
        assert v["unet_tflop_per_s"] == pytest.approx(flops / v["unet_ms"] * 1000 / 1e12, abs=1e-3)
        assert v["peak_mem_gib"] > 0 and v["warmup_s"] > 0
        assert v["via"] == ("framework" if name == "eager" or knows[
            f"compile: {v['wanted']['compile']}"] else "direct")
    assert eager["in_effect"] == {"compile": None, "precision": None} and eager["vs_eager"] is None
    for name in ("regional", "unet_static"):
        v = _one(lines, "variant", name=name)
        assert v["in_effect"]["compile"] == v["wanted"]["compile"]
        assert v["graphs_compiled"] == 1  # one static shape, no graph break
        assert v["compile_s"] > 0 and v["first_unet_call_s"] > v["unet_ms"] / 1000
        # aot_eager runs eager's operators: the same seeds give the same pixels
        assert v["vs_eager"]["seeds"] == [0, 1] and v["vs_eager"]["max_abs"] <= 1
    fp8 = _one(lines, "variant", name="regional_fp8")
    assert "compute capability 8.9" in fp8["skipped"]

    for prof in (r for r in lines if r["step"] == "profile"):
        assert prof["calls"] == 3 and prof["source"] == "CPU operators"
        assert {"matmul", "conv", "attention", "norm"} <= set(prof["ms"])
        assert sum(prof["share"].values()) == pytest.approx(1.0, abs=0.01)
    warm = _one(lines, "compile_warm", mode="dir")
    assert warm["compile_s"] > 0 and warm["first_call_s"] > warm["steady_ms"] / 1000
    assert warm["graphs_compiled"] == 1 and warm["via"] == _one(lines, "variant", name="regional")["via"]
    assert "aot_eager" in _one(lines, "compile_warm", mode="artifacts")["skipped"]

    summary = lines[-1]
    mean = (start["images_per_s"] + end["images_per_s"]) / 2
    assert summary["baseline"]["mean"] == pytest.approx(mean)
    assert set(summary["variants"]) == {"eager", "regional", "unet_static"}
    for name, v in summary["variants"].items():
        rate = _one(lines, "variant", name=name)["images_per_s"]
        assert v["vs_baseline"] == pytest.approx(rate / mean, abs=1e-3)
        assert v["of_floor"] == pytest.approx(rate / 2.06, abs=1e-3)
    assert summary["compile"] == {"cold_s": _one(lines, "variant", name="regional")["compile_s"],
                                  "warm_s": {"dir": warm["compile_s"]}}
    targets = summary["targets"]
    assert {k: t["target"] for k, t in targets.items()} == {
        "images_per_s_without_fp8": 1.2, "images_per_s_with_fp8": 1.5, "vs_baseline": 2.5,
        "warm_compile_s": 40.0}
    assert all(t["met"] is None for t in targets.values())  # a CPU check decides nothing
    assert targets["warm_compile_s"]["value"] == warm["compile_s"]
    assert "variant:regional_fp8" in summary["skipped"] and not summary["errors"]
    # about 40 s on this 2-core machine when idle (the default --budget-s is 55); room for load
    assert summary["total_s"] < 120


def test_gpu_probe_budget_skips_what_cannot_finish(tmp_path):
    lines = _probe(tmp_path, "--budget-s", "12", "--scorers", "")
    for r in lines:
        if r["step"] in ("variant", "compile_warm"):
            assert r["skipped"].startswith("budget: needs ~"), r
    assert _one(lines, "baseline_end")["images"] >= 1  # the closing baseline always runs
    summary = lines[-1]
    assert summary["variants"] == {} and "variant:eager" in summary["skipped"]
    assert all(t["value"] is None and t["met"] is None for t in summary["targets"].values())


@pytest.mark.parametrize("args, message", [
    (["--variants", "regional"], "--variants: needs eager"),
    (["--batch", "4", "--images", "6"], "--images must be a positive multiple of --batch")])
def test_gpu_probe_refuses_bad_arguments(args, message):
    r = subprocess.run([sys.executable, "benchmarks/gpu_probe.py", "--quick", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr


def test_gpu_probe_parts_classify_kernels_and_keep_time_for_the_last_baseline():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from probe_parts import Budget, kernel_class

    assert kernel_class("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64") == "matmul"
    assert kernel_class("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc") == "conv"
    assert kernel_class("pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>") == "attention"
    assert kernel_class("triton_per_fused_native_group_norm_3") == "norm"
    assert kernel_class("triton_poi_fused_add_silu_7") == "elementwise"
    assert kernel_class("Memcpy DtoD (Device -> Device)") == "copy"
    assert kernel_class("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    budget = Budget(100.0)
    budget.reserve = 30.0
    assert budget.refuse(60.0) is None
    assert budget.refuse(80.0).startswith("budget: needs ~80 s, 70 s left after the 30 s kept")
    assert budget.refuse(80.0, keep=False) is None
@pytest.mark.ray
def test_ray_feed_quick_meets_its_targets_and_reads_units_lazily():
    result = _last_json("ray_feed.py", "--quick")
    lazy, old = result["lazy"], result["ray_data"]
    assert lazy["units"] == 250_800 and lazy["tasks"] == 1_003_200
    # the figures the targets are judged by (BENCHMARKS.md), measured and consistent
    assert 0 < lazy["first_unit_after_start_s"] and 0 < lazy["peak_rss_mib"], lazy
    assert isinstance(result["targets_met"], bool)
    # the runner reads the driver's units as it needs them: two in flight past those returned
    assert lazy["measured_units"] == 1_000 and lazy["units_read"] <= 1_000 + 2 * 2
    assert old["small"]["units"] == 300 and old["large"]["units"] == 4_000
    assert lazy["per_unit_ms"] > 0 and old["small"]["per_unit_ms"] > 0
