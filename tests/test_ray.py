"""The Ray runner: same rows and bytes as the local runner, clusters, faults, model switching."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import load_run
from animagine_batch import cli, driver
from animagine_batch.jobspec import sweep
from probes import WorkerContext, live_pipelines, make_runner
from conftest import REPO

pytestmark = [pytest.mark.ray, pytest.mark.slow]
VOLATILE = ["worker", "gen_seconds"]


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=VOLATILE).sort_values("task_id").reset_index(drop=True)


def test_ray_gives_the_same_table_and_bytes_as_local(ray_session, tmp_path):
    """CPU image bytes depend on torch's thread count, so both runners pin one thread each."""
    common = ["jobs/demo.yaml", "runner.threads=1"]
    assert cli.main(["run", *common, f"output.root={tmp_path / 'l'}"]) == 0
    assert cli.main(["run", *common, f"output.root={tmp_path / 'r'}", "runner=ray",
                     "runner.workers=2"]) == 0
    ray_df, local_df = load_run(tmp_path / "r" / "demo"), load_run(tmp_path / "l" / "demo")
    assert ray_df.worker.nunique() == 2 and local_df.worker.nunique() == 1
    pd.testing.assert_frame_equal(comparable(ray_df), comparable(local_df))
    for rel in local_df.image_path:
        assert (tmp_path / "r" / "demo" / rel).read_bytes() == \
            (tmp_path / "l" / "demo" / rel).read_bytes()


@pytest.mark.parametrize("runner_name", ["local", "ray"])
def test_three_models_never_more_than_one_pipeline_per_worker(ray_session, runner_name):
    workers = 2 if runner_name == "ray" else 1
    spec, raw, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), [
        "sweep.grid={model:[tiny,tiny_b,tiny_c]}", "sweep.seeds=2", "scorers=[]",
        "runner=" + runner_name, f"runner.workers={workers}", "runner.optimise=on"])
    plan = driver.make_plan(spec, dirs)
    units = sweep.units(plan.tasks, 2)
    assert [u.model for u in units] == ["tiny"] * 3 + ["tiny_b"] * 3 + ["tiny_c"] * 3
    ctx = WorkerContext(spec.name, spec.models, plan.identities, spec.runner, spec.pipeline,
                        images={"tiny": 6, "tiny_b": 6, "tiny_c": 5})
    # pipelines other fixtures hold in this process (the local runner runs in-process)
    baseline = live_pipelines() if runner_name == "local" else 0
    runner = make_runner(runner_name)
    runner.start(ctx, units[0].model)
    try:
        results = list(runner.run(units))
    finally:
        runner.close()
    assert len(results) == 9
    assert max(r.extra["live_pipelines"] for r in results) - baseline == 1
    # each worker weighs its share of each model's images (here: too few to compile)
    share = {"tiny": 6 // workers, "tiny_b": 6 // workers, "tiny_c": -(-5 // workers)}
    assert {r.extra["setup"] for r in results} == {
        f"{m} on cpu: float32, VAE float32, SDPA, fused QKV, channels_last, UNet eager "
        f"({n} images < pipeline.compile_min_images (1500))" for m, n in share.items()}
    assert {r.rows[0]["model"] for r in results} == {"embedded/tiny-sdxl", "embedded/tiny-sdxl-b",
                                                    "embedded/tiny-sdxl-c"}


def test_failing_task_becomes_error_rows(ray_session, tmp_path, monkeypatch):
    """A unit that raises inside a Ray worker becomes error rows and the run goes on (the
    halving of a unit that runs out of memory is worker code: tests/test_generate.py)."""
    monkeypatch.setenv("ANIMAGINE_BATCH_INJECT_FAULT", "seed=1")
    ray_session.shutdown()  # the run starts its own Ray, which forwards the fault variable
    try:
        assert cli.main(["run", "jobs/demo.yaml", f"output.root={tmp_path}", "runner=ray",
                         "runner.threads=1", "scorers=[]", "sweep.grid={}",
                         "generation.batch_size=1"]) == 0
    finally:
        monkeypatch.delenv("ANIMAGINE_BATCH_INJECT_FAULT")
        ray_session.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                         num_cpus=2)
    df = load_run(tmp_path / "demo")
    assert len(df) == 6 == df.task_id.nunique()
    assert (df[df.seed == 0].status == "ok").all()
    failed = df[df.seed == 1]
    assert (failed.status == "error").all() and len(failed) == 3
    assert (failed.error == "RuntimeError: injected fault for seed 1").all()


def _worker_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"ray::UnitWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _listening(pid: int) -> tuple[set, set]:
    """(listening (ip, port) pairs, command lines) of a process and its descendants."""
    import psutil

    sockets, cmdlines = set(), set()
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return sockets, cmdlines
    for proc in procs:
        try:
            cmdlines.add(" ".join(proc.cmdline()))
            sockets |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                        if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return sockets, cmdlines


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def test_killed_worker_has_its_unit_retried_and_ray_listens_on_loopback_only(tmp_path):
    """A local Ray run (no address): a killed worker's unit is retried, and every socket the
    run's processes listen on is on loopback. The loopback setting is left out of the
    environment, so the runner must set it itself (SPEC.md section 8)."""
    args = [sys.executable, "-m", "animagine_batch.cli", "run", "jobs/demo.yaml",
            f"output.root={tmp_path}", "runner=ray", "runner.threads=1", "generation.batch_size=1",
            "scorers=[]"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    results = tmp_path / "demo" / "results"
    sockets, cmdlines, last = set(), set(), [0.0]

    def watch():  # a few times a second: psutil reads every process's socket table
        if time.time() - last[0] > 0.5:
            found, lines = _listening(proc.pid)
            sockets.update(found)
            cmdlines.update(lines)
            last[0] = time.time()

    deadline = time.time() + 180
    while time.time() < deadline and len(list(results.glob("part-*"))) < 3:
        watch()
        time.sleep(0.05)
    pids = _worker_pids()
    assert pids, "no Ray worker process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    while proc.poll() is None:
        watch()
        time.sleep(0.1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    df = load_run(tmp_path / "demo")
    assert len(df) == 24 == df.task_id.nunique() and (df.status == "ok").all()
    # every unit written exactly once: the parts (merged as they accumulate) cover 24 unit parts
    from animagine_batch.rundir import compact

    assert sum(p.last - p.first + 1 for p in compact.parts(results)) == 24
    assert "worker utilisation" in out
    assert any("raylet" in c for c in cmdlines), "the Ray processes were not seen"
    assert sockets, "no listening socket was seen"
    assert all(_loopback(ip) for ip, _ in sockets), sorted(sockets)
    # Ray keeps its dashboard process for internal modules; with include_dashboard=False it
    # runs without the web frontend and serves nothing
    dashboards = [c for c in cmdlines if "dashboard/dashboard.py" in c]
    assert all("--disable-frontend" in c for c in dashboards), dashboards
    dashboard_ports = {int(m.group(1)) for c in dashboards if (m := re.search(r"--port=(\d+)", c))}
    assert not ({port for _, port in sockets} & (dashboard_ports | {8265}))


def test_killed_driver_resumes(ray_session, tmp_path, capsys):
    args = [sys.executable, "-m", "animagine_batch.cli", "run", "jobs/demo.yaml",
            f"output.root={tmp_path}", "runner=ray", "runner.threads=1", "generation.batch_size=1",
            "scorers=[]"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy(), start_new_session=True)
    results = tmp_path / "demo" / "results"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(results.glob("part-*"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    partial = len(load_run(tmp_path / "demo"))
    assert 3 <= partial < 24
    capsys.readouterr()
    # resumed in this process, on the session's Ray
    assert cli.main(["run", "jobs/demo.yaml", f"output.root={tmp_path}", "runner=ray",
                     "runner.threads=1", "generation.batch_size=1", "scorers=[]"]) == 0
    assert f"{partial} done, {24 - partial} to do" in capsys.readouterr().out
    df = load_run(tmp_path / "demo")
    assert len(df) == 24 == df.task_id.nunique() and (df.status == "ok").all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_through_an_existing_head_node(tmp_path, demo_run):
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")  # short: Unix socket paths
    ray_bin = Path(sys.executable).parent / "ray"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the head's GCS accepts connections
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        time.sleep(5)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        env["RAY_AUTH_MODE"] = "token"  # `ray start` turns token authentication on
        r = subprocess.run([sys.executable, "-m", "animagine_batch.cli", "run", "jobs/demo.yaml",
                            f"output.root={tmp_path / 'out'}", "runner=ray",
                            f"runner.address=127.0.0.1:{port}",
                            "runner.threads=1"],  # as the demo run's: same bytes
                           cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        df = load_run(tmp_path / "out" / "demo")
        ref = load_run(demo_run)
        # the whole demo job: another seed list would batch the images (and their scores'
        # float arithmetic) differently
        assert len(df) == 24 and (df.status == "ok").all()
        pd.testing.assert_frame_equal(comparable(df), comparable(ref))
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
