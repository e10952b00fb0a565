"""End to end through the command line: demo run, resume, SIGKILL recovery, bad sources."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import yaml
from PIL import Image

from analysis import load_run
from animagine_batch import cli
from animagine_batch.rundir import metadata
from conftest import REPO, run_cli


def test_demo_run_has_one_ok_row_per_task(demo_run):
    df = load_run(demo_run)
    spec = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), [])[0]
    assert len(df) == 3 * 2 * 2 * 2 == len(set(df.task_id))
    assert (df.status == "ok").all()
    assert sorted(df.tag_position.unique()) == ["append", "prepend"]
    assert sorted(df.cfg.unique()) == [5.0, 7.0] and set(df.seed) == {0, 1}
    assert set(df.prompt_key) == {"miku", "naruto", "asuka"}
    assert set(df.subject) == {"1girl", "1boy"} and "naruto \\(series\\)" in df.prompt[4]
    for row in df.itertuples():
        data = (demo_run / row.image_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.image_sha256
    first = df.iloc[0]
    info = metadata.parse_infotext(Image.open(demo_run / first.image_path).text["parameters"])
    assert info["Prompt"] == first.prompt and info["Seed"] == str(first.seed)
    assert info["Sampler"] == "Euler a" and info["Size-1"] == 64
    job = yaml.safe_load((demo_run / "job.yaml").read_text())
    assert job["job"]["name"] == "demo" and job["provenance"]["diffusers"]
    assert spec.name == "demo"


def test_rerun_generates_nothing(demo_run):
    parts = sorted(p.name for p in (demo_run / "results").iterdir())
    r = run_cli("run", "jobs/demo.yaml", f"output.root={demo_run.parent}")
    assert r.returncode == 0, r.stderr
    assert "24 done, 0 to do" in r.stdout
    assert sorted(p.name for p in (demo_run / "results").iterdir()) == parts


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr
    assert "24 tasks (0 done, 24 to do) in 6 units of up to 4" in r.stdout
    assert "axis tag_position: prepend | append" in r.stdout and "axis cfg: 5.0 | 7.0" in r.stdout
    assert "prompt: masterpiece, best quality, very aesthetic, 1girl, hatsune miku" in r.stdout
    assert not (tmp_path / "out").exists()


def test_sigkill_mid_run_then_rerun_completes_exactly_once(tmp_path, capsys):
    args = ["run", "jobs/demo.yaml", f"output.root={tmp_path}", "generation.batch_size=1",
            "runner=local"]
    proc = subprocess.Popen([sys.executable, "-m", "animagine_batch.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    results = tmp_path / "demo" / "results"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(results.glob("part-*"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(load_run(tmp_path / "demo"))
    assert 3 <= partial < 24, partial
    capsys.readouterr()
    assert cli.main(args) == 0  # the rerun, in this process
    assert f"{partial} done, {24 - partial} to do" in capsys.readouterr().out
    df = load_run(tmp_path / "demo")
    assert len(df) == 24 == df.task_id.nunique() and (df.status == "ok").all()
    for row in df.itertuples():
        assert hashlib.sha256((tmp_path / "demo" / row.image_path).read_bytes()).hexdigest() \
            == row.image_sha256
    assert not list((tmp_path / "demo").rglob(".tmp-*"))
    assert len(list((tmp_path / "demo" / "images").iterdir())) == 24


def test_missing_real_model_stops_before_any_output(tmp_path):
    r = run_cli("run", "jobs/quality_tags.yaml", f"output.root={tmp_path / 'o'}")
    assert r.returncode == 2
    assert "'cagliostrolab/animagine-xl-3.1'" in r.stderr and "model.path=" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
    r = run_cli("run", "jobs/demo.yaml", f"output.root={tmp_path / 'o'}", "model.path=/no/such.ckpt")
    assert r.returncode == 2 and "pickle checkpoint" in r.stderr


def test_unwritable_output_root(tmp_path):
    r = run_cli("run", "jobs/demo.yaml", "output.root=/proc/nope")
    assert r.returncode == 2 and "output.root: /proc/nope is not writable" in r.stderr


def test_local_folder_source_matches_the_embedded_model(tmp_path, tiny_dir, demo_run):
    r = run_cli("run", "jobs/demo.yaml", f"output.root={tmp_path}", f"model.path={tiny_dir}", "runner=local",
                "model.embedded=null", "sweep.grid={}", "generation.cfg=5.0", "sweep.seeds=[0]")
    assert r.returncode == 0, r.stderr
    df = load_run(tmp_path / "demo")
    assert len(df) == 3 and (df.model == str(tiny_dir)).all()
    demo = load_run(demo_run)
    ref = demo[(demo.cfg == 5.0) & (demo.seed == 0) & (demo.tag_position == "prepend")]
    assert not set(df.task_id) & set(ref.task_id)  # another source is another identity
    for key in ("miku", "naruto", "asuka"):
        a = np.asarray(Image.open(tmp_path / "demo" / df[df.prompt_key == key].image_path.iloc[0]))
        b = np.asarray(Image.open(demo_run / ref[ref.prompt_key == key].image_path.iloc[0]))
        assert np.abs(a.astype(int) - b).max() <= 2  # same weights; batches differ


def test_long_prompts_warn_with_the_task(tmp_path):
    ps = tmp_path / "long.yaml"
    ps.write_text("- {id: long, subject: 1girl, tags: [" + ", ".join(f"tag{i}" for i in range(60))
                  + "]}\n")
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"prompts={ps}", f"output.root={tmp_path}",
                "prompt.weighting=none")
    assert r.returncode == 0, r.stderr
    assert "warning: task " in r.stdout and "(long, seed 0): prompt has" in r.stdout
    assert "with weighting none the text encoders see the first 75" in r.stdout


def test_table_command(demo_run, tmp_path):
    out = tmp_path / "t.parquet"
    assert cli.main(["table", str(demo_run), "--out", str(out)]) == 0
    import pandas as pd

    assert len(pd.read_parquet(out)) == 24
    assert cli.main(["table", str(tmp_path / "missing"), "--out", str(out)]) == 2
