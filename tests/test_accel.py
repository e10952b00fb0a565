"""GPU optimisations (accel.py) leave CPU runs unchanged; the overlapped local runner gives the
same results, in the same order, as one unit at a time."""

import threading

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, one_unit, pixels

from animagine_batch.engine import accel
from animagine_batch.engine import sources as models
from animagine_batch.jobspec import sweep
from animagine_batch.jobspec.job import ModelSpec, PipelineSpec, RunnerSpec
from animagine_batch.errors import ConfigError
from animagine_batch.engine.generator import Generator
from animagine_batch.runners.base import WorkerContext
from animagine_batch.runners.local import LocalRunner
from animagine_batch.jobspec.job import ScorerSpec

TINY = ModelSpec(name="tiny", embedded="tiny", id="embedded/tiny-sdxl", min_size=16, max_size=1024)
TINY_B = ModelSpec(name="tiny_b", embedded="tiny", seed=1, id="embedded/tiny-sdxl-b", min_size=16,
                   max_size=1024)


@pytest.fixture(scope="module")
def tasks(demo_tasks):
    """Seeds 21-24: the fault injected at seed 22 below depends on them."""
    return demo_tasks([21, 22, 23, 24], 2)


def test_options_are_checked():
    assert accel.options(PipelineSpec()) == {"optimise": "auto", "compile": "auto",
                                           "overlap": "auto", "precision": "auto"}
    assert accel.options(PipelineSpec(compile="Regional"))["compile"] == "regional"
    assert accel.options(PipelineSpec(compile=True, overlap=False))["compile"] == "true"
    for bad in (PipelineSpec(optimise="max"), PipelineSpec(compile="sometimes"),
                PipelineSpec(overlap=3)):
        with pytest.raises(ConfigError, match="pipeline"):
            accel.options(bad)
    with pytest.raises(ConfigError) as e:  # every bad value at once
        accel.options(PipelineSpec(optimise="max", compile="sometimes", overlap=3))
    assert [p.split(":")[0] for p in e.value.problems] == \
        ["pipeline.optimise", "pipeline.compile", "pipeline.overlap"]


def test_auto_does_nothing_on_cpu(tiny_generator, tasks):
    assert not accel.active(PipelineSpec(), "cpu") and accel.active(PipelineSpec(), "cuda:0")
    assert not accel.overlap(PipelineSpec(), "cpu") and accel.overlap(PipelineSpec(), "cuda")
    assert accel.vae_dtype(torch.float16, "cpu") == torch.float32
    assert accel.vae_dtype(torch.bfloat16, "cuda") == torch.bfloat16
    pipe = tiny_generator.pipe
    assert tiny_generator.accel == {"optimised": False, "reason": "pipeline.optimise: auto on cpu"}
    assert tiny_generator.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}
    assert "forward" not in vars(pipe.unet) and "decode" not in vars(pipe.vae)
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous() and not getattr(pipe, "fusing_unet", False)
    # the same bytes as a pipeline the optimiser never saw
    plain = Generator(TINY, models.identity(TINY), RunnerSpec(device="cpu"), "t",
                      pipeline=PipelineSpec(optimise="none"))
    unit = one_unit(tasks[:2])
    assert plain(unit).pngs == tiny_generator(unit).pngs


def test_on_optimises_a_cpu_pipeline_too(tiny_generator, tasks):
    gen = Generator(TINY, models.identity(TINY),
                    RunnerSpec(device="cpu"), "t",
                    pipeline=PipelineSpec(optimise="on", compile=False))
    pipe = gen.pipe
    assert gen.accel["optimised"] and gen.accel["fused_qkv"] and not gen.accel["compiled"]
    assert gen.accel["vae_dtype"] == "float32"  # no float16 anywhere: nothing to change
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == \
        {"FusedAttnProcessor2_0"}
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    unit = one_unit(tasks[:2])
    a, b = gen(unit), tiny_generator(unit)
    assert [r["status"] for r in a.rows] == ["ok", "ok"]

    for x, y in zip(a.pngs, b.pngs):  # same image up to float rounding
        assert np.abs(pixels(x) - pixels(y)).mean() < 1.0


class FlakyScorer:
    """Fails on any batch holding task `bad` (a post-processing error)."""

    name = "flaky"
    bad = None

    def __call__(self, images, rows):
        if any(r["task_id"] == self.bad for r in rows):
            raise ValueError("scorer broke")
        return {"flaky": [float(r["seed"]) for r in rows]}


def run_local(units, overlap: bool):
    conf = yaml.safe_load((REPO / "conf" / "scorer" / "tiny_aesthetic.yaml").read_text())
    ctx = WorkerContext(job="t", models={"tiny": TINY, "tiny_b": TINY_B},
                        identities={"tiny": models.identity(TINY), "tiny_b": models.identity(TINY_B)},
                        runner=RunnerSpec(device="cpu"),
                        pipeline=PipelineSpec(overlap=overlap),
                        scorers=(ScorerSpec.make("tiny_aesthetic", conf),))
    runner = LocalRunner()
    runner.start(ctx, units[0].model)
    assert runner.overlap is overlap
    runner.worker.scorers += (FlakyScorer(),)
    runner.worker.generator.finisher.scorers = runner.worker.scorers
    try:
        return list(runner.run(units))
    finally:
        runner.close()


def test_overlapped_local_runner_gives_identical_results(tasks, monkeypatch):
    monkeypatch.setenv("ANIMAGINE_BATCH_INJECT_FAULT", "seed=22")  # a generation error
    monkeypatch.setattr(FlakyScorer, "bad", tasks[2].task_id)  # a scoring error
    other = [t._replace(model="tiny_b", task_id=f"b{t.task_id}") for t in tasks[:4]]
    units = sweep.units(tasks[:8], 2) + sweep.units(other, 2) + sweep.units(tasks[8:10], 2)
    assert [u.model for u in units] == ["tiny"] * 4 + ["tiny_b"] * 2 + ["tiny"]
    plain = run_local(units, False)
    threads: list = []
    finish = Generator.finish

    def recording(self, staged):
        threads.append(threading.current_thread().name)
        return finish(self, staged)

    monkeypatch.setattr(Generator, "finish", recording)
    over = run_local(units, True)
    assert len(threads) == len(units) and all(name.startswith("finish") for name in threads)
    assert [r.unit_id for r in over] == [r.unit_id for r in plain] == [u.unit_id for u in units]
    statuses = [[row["status"] for row in r.rows] for r in plain]
    assert statuses == [["error"] * 2, ["error"] * 2] + [["error"] * 2, ["ok"] * 2] * 2 + [
        ["error"] * 2]
    assert plain[0].rows[0]["error"] == "RuntimeError: injected fault for seed 22"
    assert plain[1].rows[0]["error"] == "scoring failed: ValueError: scorer broke"
    for a, b in zip(plain, over):
        assert a.pngs == b.pngs
        strip = [{k: v for k, v in row.items() if k != "gen_seconds"} for row in a.rows]
        assert strip == [{k: v for k, v in row.items() if k != "gen_seconds"} for row in b.rows]
        assert all(row["gen_seconds"] > 0 for row in b.rows)


def test_overlapped_runner_reports_a_failing_model_in_order(tasks):
    broken = ModelSpec(name="broken", path="/nonexistent/model")
    units = sweep.units(tasks[:4], 2) + sweep.units(
        [t._replace(model="broken") for t in tasks[4:6]], 2) + sweep.units(tasks[6:8], 2)
    ctx = WorkerContext(job="t", models={"tiny": TINY, "broken": broken},
                        identities={"tiny": models.identity(TINY), "broken": "x"},
                        runner=RunnerSpec(device="cpu"), pipeline=PipelineSpec(overlap=True))
    runner = LocalRunner()
    runner.start(ctx, "tiny")
    got = []
    with pytest.raises(ConfigError):
        for result in runner.run(units):
            got.append(result.unit_id)
    runner.close()
    assert got == [u.unit_id for u in units[:2]]


def test_compile_falls_back_to_eager_only_under_auto():
    import torch._dynamo.exc as dynamo_exc

    class Broken(dynamo_exc.TorchDynamoException):
        pass

    def compiled(x):
        raise Broken("no compiler here")

    forward = accel.CompiledOrEager(compiled, lambda x: x + 1, fallback=True)
    with pytest.warns(RuntimeWarning, match="running eager"):
        assert forward(1) == 2
    assert forward(2) == 3 and "Broken" in forward.error
    with pytest.raises(Broken):
        accel.CompiledOrEager(compiled, lambda x: x + 1, fallback=False)(1)


def test_a_lora_loaded_after_fusing_unfuses_first():
    from animagine_batch.offline.lora import ensure_lora

    gen = Generator(TINY, models.identity(TINY),
                    RunnerSpec(device="cpu"), "t",
                    pipeline=PipelineSpec(optimise="on", compile=False))
    pipe = gen.pipe
    assert pipe.fusing_unet
    gen.passes.adapters.use(((str(ensure_lora()), 1.0),))
    assert not pipe.fusing_unet and pipe.fusing_vae
    assert "FusedAttnProcessor2_0" not in {
        type(p).__name__ for p in pipe.unet.attn_processors.values()}


def test_auto_compiles_only_for_enough_images_on_a_capable_gpu(monkeypatch):
    auto = PipelineSpec()  # compile: auto, compile_min_images: 1500
    assert accel.compile_wanted(auto, "cpu") == (False, "not a CUDA device")
    assert accel.compile_wanted(auto, "cuda", images=1499) == \
        (False, "1499 images < pipeline.compile_min_images (1500)")
    assert accel.compile_wanted(PipelineSpec(compile=True), "cpu", images=3) == \
        (True, "compile: true")
    assert accel.compile_wanted(PipelineSpec(compile=False), "cuda")[0] is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    assert accel.compile_wanted(auto, "cuda", images=1500) == (True, "compile: auto")
    assert accel.compile_wanted(auto, "cuda:0")[0]  # unknown size counts as many
    assert accel.compile_wanted(PipelineSpec(compile_min_images=0), "cuda", images=1)[0]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert accel.compile_wanted(auto, "cuda", images=5000)[1].startswith("GPU without bf16")


def test_each_worker_weighs_its_share_of_the_images():
    ctx = WorkerContext(job="j", models={}, identities={}, runner=RunnerSpec(),
                        images={"a": 1001, "b": 8})
    assert ctx.shared_by(4).images == {"a": 251, "b": 2} and ctx.shared_by(1) is ctx
    unknown = WorkerContext(job="j", models={}, identities={}, runner=RunnerSpec())
    assert unknown.shared_by(8).images is None


def test_the_run_hands_its_pending_count_to_the_optimiser(tmp_path, monkeypatch, capsys):
    from animagine_batch import cli

    seen = []
    real = accel.apply

    def spy(pipe, pipeline, device, dtype, images=None):
        seen.append(images)
        return real(pipe, pipeline, device, dtype, images)

    monkeypatch.setattr(accel, "apply", spy)
    args = ["run", str(REPO / "jobs" / "demo.yaml"), f"output.root={tmp_path}", "runner=local",
            "scorers=[]", "sweep.grid={}", "sweep.seeds=[1,2,3]", "generation.steps=1"]
    assert cli.main(args) == 0
    made = len(list((tmp_path / "demo" / "images").glob("*.png")))
    assert made > 3 and seen == [made]
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("worker ")]
    assert len(said) == 1 and said[0].endswith(
        ": tiny on cpu: pipeline as loaded (pipeline.optimise: auto on cpu)"), said
    assert cli.main(args + ["sweep.seeds=[1,2,3,4]"]) == 0  # a resume counts what is left
    assert seen[1] == made / 3


def test_execution_options_are_checked_under_the_key_written(compose):
    with pytest.raises(ConfigError, match=r"pipeline.compile_min_images: -1 must be >= 0"):
        compose("demo", "pipeline.compile_min_images=-1")
    with pytest.raises(ConfigError, match=r"runner.compile_min_images: -1 must be >= 0"):
        compose("demo", "runner.compile_min_images=-1")  # the old name still works


def test_the_old_runner_keys_are_read_as_pipeline_keys_with_a_notice(compose):
    spec = compose("demo", "runner.dtype=float16", "runner.optimise=on", "pipeline.compile=false")
    assert (spec.pipeline.dtype, spec.pipeline.optimise, spec.pipeline.compile) == \
        ("float16", "on", False)
    assert not hasattr(spec.runner, "dtype")
    assert [w for w in spec.warnings if "is now" in w] == [
        "runner.dtype is now pipeline.dtype; runner.dtype still works and is read as "
        "pipeline.dtype",
        "runner.optimise is now pipeline.optimise; runner.optimise still works and is read as "
        "pipeline.optimise"]
    assert not [w for w in compose("demo").warnings if "is now" in w]


def test_the_summary_says_what_was_done_and_why():
    gen_done = {"optimised": True, "dtype": "bfloat16", "vae_dtype": "bfloat16", "compiled": False,
                "compile_reason": "12 images < pipeline.compile_min_images (1000)"}
    assert accel.summary(gen_done) == (
        "bfloat16, VAE bfloat16, SDPA, fused QKV, channels_last, "
        "UNet eager (12 images < pipeline.compile_min_images (1000))")
    assert accel.summary({**gen_done, "compiled": True}).endswith(", UNet compiled")


def test_fp8_is_refused_where_it_cannot_run_naming_the_key(monkeypatch, tmp_path):
    from conftest import run_cli

    from animagine_batch.engine import fp8

    args = ("run", str(REPO / "jobs" / "demo.yaml"), f"output.root={tmp_path}", "runner=local",
            "pipeline.precision=fp8")
    r = run_cli(*args, "runner.device=cpu")
    assert r.returncode == 2, r.stderr
    assert ("pipeline.precision: fp8 needs a CUDA GPU of compute capability 8.9 or higher (Ada, "
            "Hopper or newer); this worker runs on cpu; allowed here: auto") in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "demo" / "results").exists()
    real = __import__("importlib").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a: None if name == "torchao" else real(name, *a))
    assert fp8.problems("cpu")[0] == ("pipeline.precision: fp8 needs torchao, which is not "
                                      "installed (pip install 'animagine-batch[fp8]'); allowed "
                                      "without it: auto")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    assert fp8.problems("cuda:0")[1] == (
        "pipeline.precision: fp8 needs a CUDA GPU of compute capability 8.9 or higher (Ada, "
        "Hopper or newer); NVIDIA A100 has 8.0; allowed here: auto")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert fp8.problems("cuda:0") == [fp8.problems("cpu")[0]]  # an H100 lacks only torchao
    with pytest.raises(ConfigError, match="needs torchao"):
        accel.check(PipelineSpec(precision="fp8"), "cuda:0")
    accel.check(PipelineSpec(), "cpu")  # auto runs anywhere


def test_fp8_options_are_checked_with_the_job(compose):
    with pytest.raises(ConfigError) as e:
        compose("demo", "pipeline.precision=fp4")
    assert e.value.problems == ["pipeline.precision: 'fp4' is not one of auto, fp8"]
    with pytest.raises(ConfigError) as e:
        compose("demo", "pipeline.precision=fp8", "pipeline.dtype=float16",
                "pipeline.optimise=none", "pipeline.compile=false", "loras=[{path: x}]")
    text = "\n".join(e.value.problems)
    for needle in ("pipeline.dtype: 'float16' cannot run pipeline.precision: fp8 (float8 matrix "
                   "products with bfloat16 activations); allowed with fp8: auto or bfloat16",
                   "pipeline.optimise: none leaves the pipeline as loaded, but "
                   "pipeline.precision: fp8 quantizes it; allowed with fp8: auto or on",
                   "pipeline.compile: false: pipeline.precision: fp8 runs compiled (eager "
                   "float8 is slower than bfloat16); allowed with fp8: auto, true, unet or "
                   "regional",
                   "pipeline.precision: fp8 quantizes the UNet's Linear layers, which LoRAs are "
                   "not loaded into; allowed with LoRAs: auto"):
        assert needle in text, needle
    spec = compose("demo", "pipeline.precision=fp8", "pipeline.compile=regional")
    assert (spec.pipeline.precision, spec.pipeline.compile) == ("fp8", "regional")
    assert accel.compile_wanted(spec.pipeline, "cuda", images=3) == (True, "compile: regional")
    assert accel.compile_wanted(PipelineSpec(precision="fp8"), "cuda", images=3) == \
        (True, "precision: fp8 runs compiled")
