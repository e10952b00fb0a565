"""Static-shape compilation (engine/compiling.py) on the CPU: each shape compiles once, padding
keeps images and rows, regional compilation reuses its graphs, and Inductor's cache persists
across processes.

Compiles are counted with dynamo's `CompileCounter` backend (it runs the captured graph as is),
so a sweep costs dynamo's tracing only; `fullgraph=True` turns a graph break into an error row."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, one_unit
from torch._dynamo.testing import CompileCounter

from animagine_batch.engine import compiling
from animagine_batch.engine import sources as models
from animagine_batch.engine.generator import Generator
from animagine_batch.jobspec import sweep
from animagine_batch.jobspec.job import ModelSpec, PipelineSpec, RunnerSpec

TINY = ModelSpec(name="tiny", embedded="tiny", id="embedded/tiny-sdxl", min_size=16, max_size=1024)
LONG = ", ".join(["red hair", "blue eyes", "school uniform", "smile"] * 12)  # > 75 tokens


@pytest.fixture(scope="module")
def tasks(demo_tasks):
    return demo_tasks([41, 42], 2)  # three prompts x two seeds, 2 steps, 64x64


class StaticCounter(CompileCounter):
    """Counts compiled graphs, and those with a symbolic (dynamic) size among their inputs."""

    def __init__(self):
        super().__init__()
        self.dynamic = 0

    def __call__(self, gm, example_inputs):
        sizes = [d for x in example_inputs if isinstance(x, torch.Tensor) for d in x.shape]
        self.dynamic += any(isinstance(v, torch.SymInt) for v in [*example_inputs, *sizes])
        return super().__call__(gm, example_inputs)


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """A counting compile backend; Inductor's cache folder under tmp_path."""
    counter = StaticCounter()
    monkeypatch.setattr(compiling, "BACKEND", counter)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    yield counter
    torch._dynamo.reset()


def compiled(mode: str, batch: int = 2) -> Generator:
    return Generator(TINY, models.identity(TINY), RunnerSpec(device="cpu"), "t",
                     pipeline=PipelineSpec(optimise="on", compile=mode), batch=batch)


def test_a_sweep_compiles_each_shape_once(counted, tasks):
    gen = compiled("unet")
    assert gen.accel["compiled"] and gen.accel["compile_mode"] == "unet"
    assert gen.passes.pad_to == 2
    wide = [t._replace(width=48, task_id=f"w{t.task_id}") for t in tasks[:3]]
    long = tasks[0]._replace(prompt=LONG, task_id="long")
    units = (sweep.units(tasks, 2) + sweep.units(wide, 2)  # 64x64 x3, 48x64 x2 (last one of 1)
             + [one_unit([tasks[1], long])])  # a prompt-length split: two calls of one image
    assert [len(u.tasks) for u in units] == [2, 2, 2, 2, 1, 2]
    results = [gen(u) for u in units]
    assert [[r["status"] for r in res.rows] for res in results] == \
        [["ok"] * len(u.tasks) for u in units], results[0].rows[0]["error"]
    assert [[r["task_id"] for r in res.rows] for res in results] == \
        [[t.task_id for t in u.tasks] for u in units]
    # (64x64, 77 tokens), (48x64, 77 tokens), (64x64, 154 tokens): padded, each compiled once
    assert counted.frame_count == 3 and counted.dynamic == 0
    again = [gen(u) for u in units[3:]]
    assert counted.frame_count == 3  # no recompile
    assert [r.pngs for r in again] == [r.pngs for r in results[3:]]


def test_padding_keeps_the_images_and_rows(tasks):
    gen = Generator(TINY, models.identity(TINY), RunnerSpec(device="cpu"), "t")
    three = list(tasks[:3])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen.passes.pad_to = 4
        padded = gen(one_unit(three))
        gen.passes.pad_to = None
        full = gen(one_unit(three + [three[2]._replace(task_id="copy")]))
    finally:
        torch.set_num_threads(before)
    assert [r["task_id"] for r in padded.rows] == [t.task_id for t in three]
    assert [r["status"] for r in padded.rows] == ["ok"] * 3 and len(padded.pngs) == 3
    assert padded.pngs == full.pngs[:3]  # the padded call is the full batch's computation
    strip = ("gen_seconds", "worker")
    assert [{k: v for k, v in r.items() if k not in strip} for r in padded.rows] == \
        [{k: v for k, v in r.items() if k not in strip} for r in full.rows[:3]]


def test_regional_compilation_reuses_its_graphs(counted, tasks):
    gen = compiled("regional")
    blocks = compiling.repeated_blocks(gen.pipe.unet)
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    assert gen.setup().endswith("UNet compiled (repeated blocks)")
    first = gen(one_unit(tasks[:2]))
    assert [r["status"] for r in first.rows] == ["ok", "ok"]
    graphs = counted.frame_count
    assert 1 <= graphs < len(blocks)  # blocks of one shape share a graph
    last = gen(one_unit(tasks[2:3]))  # padded to the compiled batch
    assert last.rows[0]["status"] == "ok" and counted.frame_count == graphs


def test_a_compile_error_falls_back_to_eager_only_under_auto(monkeypatch, tmp_path, tasks):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))

    def broken(gm, example_inputs):
        raise RuntimeError("no compiler")  # dynamo wraps it in BackendCompilerFailed

    monkeypatch.setattr(compiling, "BACKEND", broken)
    torch._dynamo.reset()
    gen = compiled("regional")
    res = gen(one_unit(tasks[:1]))
    assert res.rows[0]["status"] == "error" and "no compiler" in res.rows[0]["error"]
    undone = compiling.CompiledOrEager(gen.pipe.unet.forward.compiled,
                                       gen.pipe.unet.forward.eager, True,
                                       gen.pipe.unet.forward.undo)
    gen.pipe.unet.forward = undone
    with pytest.warns(RuntimeWarning, match="running eager"):
        res = gen(one_unit(tasks[:1]))
    assert res.rows[0]["status"] == "ok" and undone.error
    assert all(b._compiled_call_impl is None for b in compiling.repeated_blocks(gen.pipe.unet))
    torch._dynamo.reset()


WARM = """
import json, time, torch
from animagine_batch.engine import compiling
folder = compiling.use_cache("cpu")
from torch._dynamo.utils import counters
f = torch.compile(lambda x: (x.sin() * 2 + 1).relu().sum(1), fullgraph=True, dynamic=False)
f(torch.randn(8, 16))
print(json.dumps({"folder": str(folder), **counters["inductor"]}))
"""


def test_the_compile_cache_persists_across_processes(tmp_path):
    """Inductor's cache goes under the project cache folder, keyed by torch, Triton and device:
    a second process loads the compiled graph instead of compiling it."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(ANIMAGINE_BATCH_CACHE=str(tmp_path), PYTHONPATH=str(REPO))

    def run():
        r = subprocess.run([sys.executable, "-c", WARM], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    key = f"torch-{torch.__version__}-triton-"
    assert cold["folder"] == warm["folder"] == str(tmp_path / "compile" /
                                                   compiling.cache_key("cpu"))
    assert compiling.cache_key("cpu").startswith(key) and compiling.cache_key("cpu").endswith(
        "-cpu")
    assert cold.get("fxgraph_cache_miss") == 1 and not cold.get("fxgraph_cache_hit")
    assert warm.get("fxgraph_cache_hit") == 1 and not warm.get("fxgraph_cache_miss")
    assert any((tmp_path / "compile").rglob("fxgraph/*"))
