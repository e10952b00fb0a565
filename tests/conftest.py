"""Shared, session-wide fixtures: offline environment, the tiny model, one demo run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One compute thread per process (before torch is imported, inherited by subprocesses): on two
# cores, two OpenMP threads slow down badly whenever another process computes beside them (a Ray
# worker beside the driver, a CLI subprocess; the demo run took four times as long). Image bytes
# depend on the thread count, so every run of the suite uses the same one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The same vector instructions on every x86 machine (before torch is imported, inherited by
# subprocesses and the local Ray's workers): CPU kernels are chosen by the instruction set, and
# an AVX-512 machine computes other float roundings than an AVX2 one (17 of the demo's 24 PNGs
# differed). The golden record (tests/test_golden.py) is made under these caps.
for _name, _cap in (("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"),
                    ("MKL_ENABLE_INSTRUCTIONS", "AVX2")):
    os.environ.setdefault(_name, _cap)
os.environ.setdefault("ANIMAGINE_BATCH_CACHE", str(REPO / ".pytest_cache" / "animagine-cache"))
# Ray on loopback only: must be set before ray is imported anywhere (SPEC.md section 8)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None):
    """Run the command line in a subprocess; returns CompletedProcess with text output."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "animagine_batch.cli", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from animagine_batch import offline

    return offline.ensure_model("tiny")


@pytest.fixture(scope="session")
def tiny_generator(tiny_dir):
    from animagine_batch.engine import sources as models
    from animagine_batch.jobspec.job import ModelSpec, RunnerSpec
    from animagine_batch.engine.generator import Generator

    spec = ModelSpec(name="tiny", embedded="tiny", id="embedded/tiny-sdxl", min_size=16, max_size=1024)
    return Generator(spec, models.identity(spec), RunnerSpec(device="cpu"), job="t")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """jobs/demo.yaml run once, in-process with the local runner and one torch thread (CPU image
    bytes depend on the thread count; test_ray checks that the Ray runner gives the same table,
    test_golden that the table and bytes are the committed ones); many tests read it (never
    write to it)."""
    from animagine_batch import cli

    root = tmp_path_factory.mktemp("demo-out")
    assert cli.main(["run", str(REPO / "jobs" / "demo.yaml"), f"output.root={root}",
                     "runner=local", "runner.threads=1"]) == 0
    return root / "demo"


@pytest.fixture(scope="session")
def compose():
    """Compose and validate a job with overrides, as the CLI does."""
    from animagine_batch import cli

    def _compose(job: str, *overrides: str):
        return cli.load_spec(str(REPO / "jobs" / f"{job}.yaml") if "/" not in job else job,
                             list(overrides))[0]

    return _compose


@pytest.fixture(scope="session")
def demo_tasks(compose):
    """The demo job's tasks on the tiny model with no sweep axes: `demo_tasks(seeds, steps)`."""
    from animagine_batch.jobspec import prompt_sets as P
    from animagine_batch.jobspec import sweep

    def _tasks(seeds: list[int], steps: int):
        spec = compose("demo", "sweep.grid={}", f"sweep.seeds={seeds}", f"generation.steps={steps}")
        ps = P.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"])
        return sweep.expand(spec, ps, {"tiny": "embedded:test"})

    return _tasks


@pytest.fixture(scope="module")
def tasks(demo_tasks):
    """Fifteen demo tasks (three prompts, seeds 11-15, 3 steps); a module may override it."""
    return demo_tasks([11, 12, 13, 14, 15], 3)


def one_unit(tasks_):
    """All of `tasks_` as one unit."""
    from animagine_batch.jobspec import sweep

    return sweep.units(tasks_, 99)[0]


def rescore_interrupted(monkeypatch, run, specs, chunk: int) -> None:
    """Rescore `run` in parts of `chunk` images and stop (as on Ctrl-C) once the first part is
    written: half a rescoring, as an interrupted `score` leaves it."""
    from animagine_batch.rundir import write as store
    from animagine_batch.score import rescore

    monkeypatch.setattr("animagine_batch.score.CHUNK", chunk)
    write, calls = store.atomic_write_table, []

    def interrupted(path, table):
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        write(path, table)

    monkeypatch.setattr(store, "atomic_write_table", interrupted)
    try:
        rescore(run, specs, "cpu")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the rescoring was not interrupted")
    finally:
        monkeypatch.undo()


def pixels(png: bytes):
    """A PNG's RGB pixels as an int array."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def start_session_ray():
    """Start the session's local Ray (127.0.0.1, 2 CPUs); a module that needs another Ray starts
    this one again when it is done."""
    import ray

    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             num_cpus=2, runtime_env={"env_vars": {
                 k: os.environ[k] for k in ("ANIMAGINE_BATCH_CACHE", "HF_HUB_OFFLINE")}})
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    return ray


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (127.0.0.1) for the in-process Ray tests."""
    ray = start_session_ray()
    yield ray
    ray.shutdown()


CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def chromium_driver(profile: Path, downloads: Path | None = None, size: str = "1400,1000"):
    """Selenium driving the system chromium through the system chromedriver, offline, with a
    fresh profile (the browser tests and benchmarks/gallery_scale.py)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for downloads
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--window-size={size}", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
