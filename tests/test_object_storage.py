"""Run directories on object storage: a real S3-protocol server (moto's server mode) on
127.0.0.1, a run killed mid-way and resumed, and the readers (load_run, report, export, score,
grid, gallery) on the URI."""

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from animagine_batch import cli
from animagine_batch.rundir import load_run, read_parts
from animagine_batch.rundir.storage import location
from conftest import REPO

pytestmark = pytest.mark.slow
VOLATILE = ["worker", "gen_seconds"]
DEMO = ["jobs/demo.yaml", "runner=local", "runner.threads=1"]  # as the demo_run fixture


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on a free loopback port; credentials and endpoint in the environment,
    where pyarrow (and a subprocess) read them. Returns a boto3 client for making buckets."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        pytest.skip(f"moto[server] is not installed ({e}): pip install 'moto[server]'")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in (*env, "AWS_ENDPOINT_URL")}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as e:  # noqa: BLE001 - any failure to start is a reason to skip
        pytest.skip(f"moto's S3 server did not start on 127.0.0.1: {e}")
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    os.environ.update(env, AWS_ENDPOINT_URL=f"http://{host}:{port}")
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.endpoint = f"{host}:{port}"
    yield client
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    found, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix,
                                  **({"ContinuationToken": token} if token else {}))
        found += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return found


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=VOLATILE).sort_values("task_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def resumed(s3, demo_run, tmp_path_factory):
    """The demo run to s3://kill/runs by a process killed (SIGKILL) after its second part,
    then resumed in this process: (uri, rows the killed run left, the resume's output)."""
    s3.create_bucket(Bucket="kill")
    args = [sys.executable, "-m", "animagine_batch.cli", "run", *DEMO, "output.root=s3://kill/runs"]
    log = tmp_path_factory.mktemp("killed") / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                env=os.environ.copy(), start_new_session=True)
    deadline = time.time() + 300
    while len([k for k in keys(s3, "kill", "runs/demo/results/") if "part-" in k]) < 2:
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    uri = "s3://kill/runs/demo"
    partial = len(load_run(uri))
    lease = json.loads(s3.get_object(Bucket="kill", Key="runs/demo/.lock")["Body"].read())
    assert lease["pid"] == proc.pid  # the killed run's lease is left behind
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli.main(["run", *DEMO, "output.root=s3://kill/runs"]) == 0, err.getvalue()
    return uri, partial, out.getvalue() + err.getvalue()


def test_a_killed_run_resumes_with_every_task_once_and_every_image(resumed, s3, demo_run):
    uri, partial, output = resumed
    assert 2 <= partial < 24, "the run finished before it could be killed"
    assert "notice: taking over the lock of s3://kill/runs/demo from another run" in output
    assert "(its process is gone)" in output
    assert f"{partial} done, {24 - partial} to do" in output
    rows = read_parts(location(uri) / "results")  # every row of every part, not deduplicated
    assert rows.num_rows == 24 == len(set(rows["task_id"].to_pylist()))
    df = load_run(uri)
    assert (df.status == "ok").all() and len(df) == 24
    images = sorted(k for k in keys(s3, "kill", "runs/demo/images/"))
    assert images == sorted(f"runs/demo/{p}" for p in df.image_path)
    for rel in df.image_path:
        body = s3.get_object(Bucket="kill", Key=f"runs/demo/{rel}")["Body"].read()
        assert body == (demo_run / rel).read_bytes()
    # the lease is gone, nothing temporary is left, and no credential is in the run
    everything = keys(s3, "kill", "runs/")
    assert "runs/demo/.lock" not in everything and not [k for k in everything if ".tmp-" in k]
    job = s3.get_object(Bucket="kill", Key="runs/demo/job.yaml")["Body"].read().decode()
    assert "s3://kill/runs" in job and "testing" not in job


def test_load_run_from_the_uri_equals_the_local_run(resumed, demo_run):
    uri, _, _ = resumed
    pd.testing.assert_frame_equal(comparable(load_run(uri)), comparable(load_run(demo_run)))


def test_report_and_export_read_the_run_on_s3(resumed, s3, tmp_path, capsys, demo_run):
    uri, _, _ = resumed
    assert cli.main(["report", uri]) == 0
    assert capsys.readouterr().out.strip() == f"{uri}/report/index.html"
    html = s3.get_object(Bucket="kill", Key="runs/demo/report/index.html")["Body"].read()
    assert b"animagine-batch report: demo" in html
    report = keys(s3, "kill", "runs/demo/report/")
    assert any(k.startswith("runs/demo/report/grids/") for k in report)
    assert any(k.startswith("runs/demo/report/figures/") for k in report)

    out = tmp_path / "kohya"
    assert cli.main(["export", uri, "--format", "kohya", "--out", str(out)]) == 0
    assert "24 images exported (kohya" in capsys.readouterr().out
    for png in out.glob("*.png"):
        assert png.read_bytes() == (demo_run / "images" / png.name).read_bytes()
    assert len(list(out.glob("*.png"))) == 24 == len(list(out.glob("*.txt")))
    assert json.loads((out / ".animagine-batch-export.json").read_text())["run"] == uri

    hf = tmp_path / "hf"
    assert cli.main(["export", uri, "--format", "hf-parquet", "--out", str(hf)]) == 0
    shards = sorted((hf / "data").glob("*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in shards) == 24


def test_score_grid_and_gallery_read_and_write_the_run_on_s3(resumed, s3, tmp_path, capsys):
    uri, _, _ = resumed
    assert cli.main(["score", uri, "scorers=[tiny_aesthetic]"]) == 0
    assert "tiny_aesthetic: 24 scored" in capsys.readouterr().out
    assert [k for k in keys(s3, "kill", "runs/demo/scores/tiny_aesthetic/") if "part-" in k]
    assert len(load_run(uri)) == 24
    assert cli.main(["grid", uri, "--x", "cfg"]) == 0
    assert capsys.readouterr().out.split() == [f"{uri}/grids/grid_cfg_seed.png"]
    assert "runs/demo/grids/grid_cfg_seed.png" in keys(s3, "kill", "runs/demo/grids/")
    assert cli.main(["gallery", uri, "--out", str(tmp_path / "gallery"), "--workers", "1"]) == 0
    assert "24 images, 24 thumbnails (24 made" in capsys.readouterr().out
    assert len(list((tmp_path / "gallery" / "images").glob("*.png"))) == 24
    assert cli.main(["gallery", uri]) == 2
    assert "needs --out" in capsys.readouterr().err
    for command in (["export", uri, "--format", "kohya", "--out", "s3://kill/export"],
                    ["grid", uri, "--x", "cfg", "--out", "s3://kill/grids"]):
        assert cli.main(command) == 2
        assert "--out s3://kill/" in capsys.readouterr().err
    assert cli.main(["report", "s3://no-such-bucket/runs/demo"]) == 2
    assert "s3://no-such-bucket/runs/demo" in capsys.readouterr().err


def test_verify_sets_a_damaged_part_aside_on_s3_and_regenerates(resumed, s3, capsys):
    """On a copy of the run: a truncated image object and an unreadable part are found by
    `run --verify`, the part moved to damaged/, and their tasks generated again."""
    s3.create_bucket(Bucket="verify")
    for key in keys(s3, "kill", "runs/demo/"):
        if "/report/" not in key and "/scores/" not in key and "/grids/" not in key:
            s3.copy_object(Bucket="verify", Key=key, CopySource={"Bucket": "kill", "Key": key})
    part = sorted(k for k in keys(s3, "verify", "runs/demo/results/") if "part-" in k)[-1]
    body = s3.get_object(Bucket="verify", Key=part)["Body"].read()
    lost = pq.read_table(io.BytesIO(body))["task_id"].to_pylist()
    df = load_run("s3://verify/runs/demo")
    bad = df[~df.task_id.isin(lost)].image_path.iloc[0]
    s3.put_object(Bucket="verify", Key=f"runs/demo/{bad}", Body=b"\x89PNG truncated")
    s3.put_object(Bucket="verify", Key=part, Body=b"not parquet")
    capsys.readouterr()
    assert cli.main(["run", *DEMO, "output.root=s3://verify/runs", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verify: 1 unreadable part(s) moved to damaged/" in out
    assert "1 damaged" in out and f"{24 - len(lost) - 1} done" in out
    assert f"runs/demo/damaged/{part.split('demo/')[1]}" in keys(s3, "verify", "runs/demo/")
    after = load_run("s3://verify/runs/demo")
    assert len(after) == 24 and (after.status == "ok").all()


def test_a_live_lease_refuses_a_second_writer_and_an_expired_one_is_taken_over(
        s3, monkeypatch, capsys):
    from animagine_batch.errors import ConfigError
    from animagine_batch.rundir import lease
    from animagine_batch.rundir.lock import RunLock

    s3.create_bucket(Bucket="leases")
    run = "s3://leases/runs/demo"
    with RunLock(run):
        held = json.loads(s3.get_object(Bucket="leases", Key="runs/demo/.lock")["Body"].read())
        assert held["pid"] == os.getpid() and held["lease"] == "object"
        with pytest.raises(ConfigError, match=f"run directory {run} is in use by another run "
                                              rf"\(pid {os.getpid()} on host"):
            with RunLock(run):
                pass
    assert "runs/demo/.lock" not in keys(s3, "leases")
    # a lease of a live process on another host: refused until it expires
    s3.put_object(Bucket="leases", Key="runs/demo/.lock", Body=json.dumps(
        {"what": "run", "pid": 1, "host": "elsewhere", "since": 0}).encode())
    with pytest.raises(ConfigError, match="expires 60 s after its last renewal"):
        with RunLock(run):
            pass
    monkeypatch.setattr(lease, "TTL", 1.0)
    time.sleep(2.1)  # the storage's clock has a one-second resolution
    with RunLock(run):
        assert "notice: taking over the lock" in capsys.readouterr().err
    assert "runs/demo/.lock" not in keys(s3, "leases")


def test_workers_with_a_shared_root_write_their_pngs_and_return_rows_only(s3, compose, tmp_path):
    """What a Ray actor does with `WorkerContext.run_dir`: the PNGs are put by the worker (the
    same bytes the driver would write), and the result carries no bytes."""
    from animagine_batch import cli as c
    from animagine_batch import driver
    from animagine_batch.jobspec import sweep
    from animagine_batch.runners import WorkerContext
    from animagine_batch.runners.worker import Worker

    s3.create_bucket(Bucket="workers")
    spec, _, library = c.load_spec(str(REPO / "jobs" / "demo.yaml"),
                                   ["sweep.grid={}", "sweep.seeds=[3]", "scorers=[]",
                                    "runner=local", "runner.threads=1"])
    plan = driver.make_plan(spec, library)
    unit = sweep.units(plan.tasks, 4)[0]
    base = WorkerContext(job=spec.name, models=spec.models, identities=plan.identities,
                         runner=spec.runner, pipeline=spec.pipeline)
    worker = Worker(base, 1)
    plain = worker(unit)
    worker.ctx = dataclasses.replace(base, run_dir="s3://workers/runs/demo")
    shared = worker(unit)
    worker.close()
    def same(rows):
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]

    assert same(shared.rows) == same(plain.rows) and shared.pngs == [None] * len(unit.tasks)
    assert all(plain.pngs)
    for row, png in zip(plain.rows, plain.pngs):
        body = s3.get_object(Bucket="workers", Key=f"runs/demo/{row['image_path']}")
        assert body["Body"].read() == png


def test_bad_output_roots_are_refused_with_the_key_named(s3, capsys):
    cases = {
        "output.root='s3://b/runs?secret_key=hunter2'": ("carries credentials (secret_key)",
                                                       "AWS_SECRET_ACCESS_KEY"),
        "output.root=s3://user:pw@b/runs": ("carries credentials", "AWS_ACCESS_KEY_ID"),
        "output.root=nosuchfs://b/runs": ("neither pyarrow", "nosuchfs://"),
        "output.root=s3://no-such-bucket/runs": ("is not writable", "AWS_ENDPOINT_URL"),
    }
    cases["output.root=hdfs://namenode:8020/runs"] = ("not an object store", "a local path")
    for override, expected in cases.items():
        # the dry run reads the run directory too (and writes nothing: a bucket it could not
        # write to is the real run's error)
        for dry in ([], ["--dry-run"] if "no-such-bucket" not in override else []):
            rc = cli.main(["run", *DEMO, override, "sweep.seeds=[0]", *dry])
            err = capsys.readouterr().err
            assert rc == 2 and "output.root" in err and all(e in err for e in expected), err
            assert "hunter2" not in err and ":pw@" not in err
    assert "no-such-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_an_interrupted_upload_leaves_the_name_as_it_was_and_no_temporary(s3, monkeypatch):
    """pyarrow completes an upload whose stream an exception closes, with what was written: a
    run's files go up under a temporary key and are moved over their name (storage.py)."""
    from animagine_batch.rundir import storage
    from animagine_batch.rundir.write import atomic_write_bytes

    s3.create_bucket(Bucket="torn")
    part = location("s3://torn/run/results") / "part-000000-a.parquet"
    atomic_write_bytes(part, b"the whole old part")
    real = storage.RemotePath.write_bytes

    def torn(self, data):  # the stream closes (and uploads) after half of it, then Ctrl-C
        with self.fs.open_output_stream(self.path) as f:
            f.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(storage.RemotePath, "write_bytes", torn)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(part, b"a new part of many more bytes than the old one")
    monkeypatch.setattr(storage.RemotePath, "write_bytes", real)
    assert part.read_bytes() == b"the whole old part"
    objects = [k for k in keys(s3, "torn") if not k.endswith("/")]  # pyarrow's folder markers
    assert objects == ["run/results/part-000000-a.parquet"]  # no .tmp- left
    atomic_write_bytes(part, b"new")
    assert part.read_bytes() == b"new"
    assert [k for k in keys(s3, "torn") if not k.endswith("/")] == objects


def test_the_endpoint_can_be_given_in_the_uri(s3, monkeypatch, capsys):
    """`?endpoint_override=HOST:PORT&scheme=http` instead of AWS_ENDPOINT_URL (MinIO-style)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    s3.create_bucket(Bucket="query")
    root = location(f"s3://query/runs?endpoint_override={s3.endpoint}&scheme=http")
    (root / "demo" / "job.yaml").write_bytes(b"job: {}\n")
    assert str(root / "demo").startswith("s3://query/runs/demo?endpoint_override=")
    assert keys(s3, "query") == ["runs/demo/job.yaml"]
    assert [p.name for p in (root / "demo").iterdir()] == ["job.yaml"]
    query = f"s3://query/runs?endpoint_override={s3.endpoint}&scheme=http"
    assert cli.main(["run", *DEMO, f"output.root='{query}'", "--dry-run"]) == 0
    assert f"run directory s3://query/runs/demo?endpoint_override={s3.endpoint}&scheme=http" \
        in capsys.readouterr().out


def test_remote_paths_over_fsspec(tmp_path):
    """A scheme pyarrow does not know goes through fsspec (here its in-memory filesystem)."""
    pytest.importorskip("fsspec")
    root = location("memory://animagine-test/runs")
    (root / "demo" / "results" / "part-000000-a.parquet").write_bytes(b"x")
    (root / "demo" / "results" / ".tmp-1").write_bytes(b"y")
    (root / "demo" / "images" / "a.png").write_bytes(b"png")
    results = root / "demo" / "results"
    assert results.is_dir() and not results.is_file()
    assert [p.name for p in results.glob("part-*.parquet")] == ["part-000000-a.parquet"]
    assert sorted(p.name for p in (root / "demo").rglob("*")) == [
        ".tmp-1", "a.png", "part-000000-a.parquet"]
    assert (root / "demo" / "images" / "a.png").read_bytes() == b"png"
    (results / ".tmp-1").unlink()
    (results / ".tmp-1").unlink(missing_ok=True)
    assert not (results / ".tmp-1").exists()
    with pytest.raises(ValueError, match="cannot climb"):
        root / "../elsewhere"


@pytest.mark.ray
def test_the_ray_runner_with_a_shared_root_moves_rows_only(s3, request, demo_run, monkeypatch):
    """Through the driver and Ray: actors put the PNGs on the shared root, the driver receives
    rows without bytes, and the table and bytes are the local run's."""
    import ray

    from animagine_batch.rundir.write import RunStore

    received, write = [], RunStore.write
    monkeypatch.setattr(RunStore, "write", lambda self, r: (received.extend(r.pngs),
                                                            write(self, r)))

    ray_session = request.getfixturevalue("ray_session")  # after `s3` set the environment

    @ray.remote(num_cpus=0)
    def endpoint():
        return os.environ.get("AWS_ENDPOINT_URL")

    if ray.get(endpoint.remote()) != os.environ["AWS_ENDPOINT_URL"]:
        pytest.skip("this session's Ray started before the S3 server: its workers lack the "
                    "endpoint and credentials")
    assert ray_session.is_initialized()
    s3.create_bucket(Bucket="ray")
    assert cli.main(["run", "jobs/demo.yaml", "runner=ray", "runner.threads=1",
                     "runner.workers=1", "output.root=s3://ray/runs"]) == 0
    assert len(received) == 24 and not any(received)
    df = load_run("s3://ray/runs/demo")
    assert df.worker.iloc[0].split(":")[1] != str(os.getpid())  # made in an actor
    pd.testing.assert_frame_equal(comparable(df), comparable(load_run(demo_run)))
    for rel in df.image_path:
        body = s3.get_object(Bucket="ray", Key=f"runs/demo/{rel}")["Body"].read()
        assert body == (demo_run / rel).read_bytes()


def test_verify_on_object_storage_sets_aside_corrupt_parts_but_not_unanswered_reads(monkeypatch):
    """A part whose bytes are not Parquet goes to damaged/; a read the storage does not answer
    stops the check and moves nothing."""
    pytest.importorskip("fsspec")
    from animagine_batch.errors import ResultsError
    from animagine_batch.rundir import verify

    run = location("memory://animagine-verify/run")
    (run / "results" / "part-000000-a.parquet").write_bytes(b"not parquet")
    assert verify.set_aside_unreadable(run) == ["results/part-000000-a.parquet"]
    assert (run / "damaged" / "results" / "part-000000-a.parquet").read_bytes() == b"not parquet"

    (run / "results" / "part-000001-b.parquet").write_bytes(b"whatever")

    def unanswered(path, columns=None):
        raise OSError("AWS Error NETWORK_CONNECTION: curlCode: 28, Timeout was reached")

    monkeypatch.setattr(verify, "read_table", unanswered)
    with pytest.raises(ResultsError, match="nothing was set aside: rerun when the storage answers"):
        verify.set_aside_unreadable(run)
    assert (run / "results" / "part-000001-b.parquet").exists()
