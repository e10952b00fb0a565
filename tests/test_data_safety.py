"""Data safety: no command destroys or leaks a run, damaged runs stay usable, reruns never mix
experiments, one writer per run, and disk full / Ctrl-C lose nothing finished.

Every destructive attempt works on a copy of the shared demo run (never the fixture itself) and
checks the run's bytes before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from analysis import load_run
from animagine_batch.rundir import RunWarning
from animagine_batch import cli
from conftest import REPO

# A small, quick job: one prompt, 64 px, one step, no scorers.
SMALL = ["runner=local", "generation.steps=1", "scorers=[]", "sweep.grid={}"]


def copy_run(demo_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "demo"
    shutil.copytree(demo_run, run)
    return run


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_prompt(tmp_path: Path) -> Path:
    path = tmp_path / "one.yaml"
    path.write_text("- {id: a, subject: 1girl, tags: [solo]}\n")
    return path


def rewrite_part(part: Path, change) -> None:
    """Apply `change(DataFrame)` to a results part, keeping its schema."""
    t = pq.read_table(part)
    df = t.to_pandas()
    change(df)
    pq.write_table(pa.Table.from_pandas(df, schema=t.schema, preserve_index=False), part)


# -- points 1 and 2: outputs onto runs ----------------------------------------------------------

def test_outputs_onto_a_run_or_an_output_root_are_refused(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    root = run.parent
    before = snapshot(root)
    (tmp_path / "link").symlink_to(run / "images")
    attempts = [
        ["export", run, "--format", "kohya", "--out", run, "--overwrite"],
        ["export", run, "--format", "kohya", "--out", run / "images", "--overwrite"],
        ["export", run, "--format", "hf-parquet", "--out", run / "results", "--overwrite"],
        ["export", run, "--format", "kohya", "--out", root, "--overwrite"],
        ["export", run, "--format", "kohya", "--out", root / "new_export"],
        ["export", run, "--format", "kohya", "--out", tmp_path / "link", "--overwrite"],
        ["table", run, "--out", sorted((run / "results").iterdir())[0]],
        ["table", run, "--out", run / "job.yaml"],
        ["table", run, "--out", run / "table.parquet"],
        ["compare", run, "--metric", "clip_score", "--out", run / "images" / "effects.csv"],
        ["regress", run, run, "--metric", "clip_score", "--out", root / "r.csv"],
        ["grid", run, "--x", "cfg", "--out", run / "images"],
        ["grid", run, "--x", "cfg", "--out", tmp_path / "link"],
    ]
    for args in attempts:
        rc, out, err = main(capsys, *args)
        assert rc == 2, (args, out, err)
        assert "no command writes its output into a run" in err or "which holds runs" in err, err
        assert "nothing was written" in err and "Traceback" not in err
    assert snapshot(root) == before  # every row, PNG and job.yaml byte as it was
    assert len(load_run(run)) == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "runs"]


def test_the_documented_places_inside_a_run_are_still_written(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    rc, out, err = main(capsys, "grid", run, "--x", "cfg", "--cell", "32")
    assert rc == 0, err
    assert (run / "grids" / "grid_cfg_seed.png").is_file()
    rc, out, err = main(capsys, "grid", run, "--x", "cfg", "--cell", "32", "--out",
                        run / "grids" / "sub")
    assert rc == 0 and (run / "grids" / "sub" / "grid_cfg_seed.png").is_file()
    shutil.rmtree(run / "grids")
    (run / "grids").symlink_to(tmp_path)  # a shared run cannot send the grids elsewhere
    rc, out, err = main(capsys, "grid", run, "--x", "cfg", "--cell", "32")
    assert rc == 2 and "grids is a link to" in err and not list(tmp_path.glob("*.png"))


def test_overwrite_replaces_only_a_previous_export(demo_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    rc, out, err = main(capsys, "export", demo_run, "--format", "kohya", "--out", mine,
                        "--overwrite")
    assert rc == 2 and "is not an export made by animagine-batch" in err
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    out_dir = tmp_path / "export"
    assert main(capsys, "export", demo_run, "--format", "kohya", "--out", out_dir)[0] == 0
    marker = json.loads((out_dir / ".animagine-batch-export.json").read_text())
    assert marker["format"] == "kohya" and marker["images"] == 24
    assert main(capsys, "export", demo_run, "--format", "hf-parquet", "--out", out_dir,
                "--overwrite")[0] == 0
    assert (out_dir / "data").is_dir() and not list(out_dir.glob("*.png"))
    # a run created inside a previous export makes it a place no export replaces
    (out_dir / "data" / "later" / "results").mkdir(parents=True)
    (out_dir / "data" / "later" / "job.yaml").write_text("job: {}\n")
    rc, out, err = main(capsys, "export", demo_run, "--format", "kohya", "--out", out_dir,
                        "--overwrite")
    assert rc == 2 and "contains the run directory" in err
    assert (out_dir / "data" / "later" / "results").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "mine"]  # no temporaries


# -- point 16: the analysis commands' arguments --------------------------------------------------

def test_bad_output_arguments_get_a_message(demo_run, tmp_path, capsys):
    cases = [
        (["table", demo_run, "--out", tmp_path / "no" / "t.csv"], "the folder", "does not exist"),
        (["table", demo_run, "--out", tmp_path / "t.json"], "unknown file type '.json'",
         "allowed: .parquet, .csv"),
        (["compare", demo_run, "--out", tmp_path / "c.xlsx"], "unknown file type '.xlsx'",
         "allowed: .csv, .parquet, .md"),
        (["compare", demo_run, "--out", tmp_path / "missing" / "c.csv"], "does not exist", ""),
        (["regress", demo_run, demo_run, "--out", tmp_path / "r"], "unknown file type '(none)'",
         ""),
        (["export", demo_run, "--format", "kohya", "--out", "/proc/no-such/x"],
         "cannot write in /proc/no-such", "choose a writable folder"),
    ]
    for args, *expected in cases:
        rc, out, err = main(capsys, *args)
        assert rc == 2, (args, err)
        assert all(e in err for e in expected), err
    assert list(tmp_path.iterdir()) == []
    for cell in ("0", "-5", "abc", "100000"):
        with pytest.raises(SystemExit) as stop:
            cli.main(["grid", str(demo_run), "--x", "cfg", "--cell", cell])
        assert stop.value.code == 2
        assert f"argument --cell: '{cell}': a cell is a whole number of pixels from 16 to 2048" \
            in capsys.readouterr().err


def test_score_option_of_the_wrong_type_is_named(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    rc, out, err = main(capsys, "score", run, "scorers=[tiny_aesthetic]",
                        "scorer.tiny_aesthetic.batch_size=abc")
    assert rc == 2 and "scorer.tiny_aesthetic" in err and "abc" in err
    assert not (run / "scores").exists()


def test_grid_file_names_from_long_levels(demo_run, tmp_path, capsys):
    # the recommended negative prompt is 241 characters: a file name over the 255-byte limit
    rc, out, err = main(capsys, "grid", demo_run, "--x", "cfg", "--z", "negative_prompt",
                        "--cell", "16", "--out", tmp_path)
    assert rc == 0, err
    files = list(tmp_path.glob("*.png"))
    assert len(files) == 1 and len(files[0].name) <= 120 + 4
    assert files[0].name.startswith("grid_cfg_seed_negative_prompt-nsfw_lowres_bad_text")


# -- point 3: reruns that change the experiment --------------------------------------------------

def test_rerun_with_another_configuration(tmp_path, capsys):
    prompts = one_prompt(tmp_path)
    base = ["run", "jobs/demo.yaml", f"output.root={tmp_path / 'out'}", f"prompts={prompts}",
            "sweep.seeds=[0]", *SMALL]
    run = tmp_path / "out" / "demo"
    assert main(capsys, *base, "sweep.grid.tags=[1,2]")[0] == 0
    first = snapshot(run)
    # an axis whose levels were numbers and are now text: the column type would change
    rc, out, err = main(capsys, *base, "sweep.grid.tags=[a,b]")
    assert rc == 2 and "column tags: int64 in the run, string now" in err
    assert "give the job a new name (name=NEW)" in err
    # the experiment changed outside the sweep: refused unless extended
    rc, out, err = main(capsys, *base, "sweep.grid.tags=[1,2]", "generation.steps=2")
    assert rc == 2 and "generation.steps: 1 -> 2" in err and "--extend" in err
    rc, out, err = main(capsys, *base, "sweep.grid.tags=[1,2]", "prompt.quality=masterpiece")
    assert rc == 2 and "prompt.quality: 'masterpiece, best quality' -> 'masterpiece'" in err
    assert snapshot(run) == first
    # the sweep's levels may change: the new tasks are added
    rc, out, err = main(capsys, *base, "sweep.grid.tags=[1,2,3]")
    assert rc == 0 and "2 done, 1 to do" in out
    job = yaml.safe_load((run / "job.yaml").read_text())
    assert job["job"]["sweep"]["grid"]["tags"] == [1, 2, 3] and len(job["history"]) == 1
    assert job["history"][0]["job"]["sweep"]["grid"]["tags"] == [1, 2]
    # explicitly extended: the earlier configuration stays in job.yaml's history
    rc, out, err = main(capsys, "run", "--extend", *base[1:], "sweep.grid.tags=[1]",
                        "generation.steps=2")
    assert rc == 0 and "0 done, 1 to do" in out
    job = yaml.safe_load((run / "job.yaml").read_text())
    assert job["job"]["generation"]["steps"] == 2 and len(job["history"]) == 2
    df = load_run(run)
    assert len(df) == 4 == df.task_id.nunique() and sorted(df.steps) == [1, 1, 1, 2]
    for rel, digest in first.items():  # nothing of the first run was touched
        if rel.startswith("images/"):
            assert hashlib.sha256((run / rel).read_bytes()).hexdigest() == digest


def test_incompatible_and_foreign_parts_are_reported_and_skipped(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    parts = sorted((run / "results").glob("part-*.parquet"))
    # a part from another sweep whose axis column is a number: it cannot be merged
    t = pq.read_table(parts[-1])
    clash = t.set_column(t.schema.get_field_index("tag_position"), "tag_position",
                         pa.array([1] * t.num_rows, pa.int64()))
    pq.write_table(clash, parts[-1])
    pq.write_table(pa.table({"a": [1, 2]}), run / "results" / "part-999999-foreign.parquet")
    pq.write_table(pa.table({"a": [1]}), run / "results" / "notes.parquet")
    with pytest.warns(RunWarning) as caught:
        df = load_run(run)
    text = " | ".join(str(w.message) for w in caught)
    assert f"{parts[-1]} cannot be merged" in text and "tag_position" in text
    assert "part-999999-foreign.parquet has no task_id, status column" in text
    assert "notes.parquet is not a results part" in text
    assert len(df) == 24 - t.num_rows and df.task_id.notna().all()
    for args in (["table", run, "--out", tmp_path / "t.parquet"],
                 ["compare", run, "--metric", "clip_score"], ["report", run]):
        rc, out, err = main(capsys, *args)
        assert rc == 0, (args, err)
    assert len(pq.read_table(tmp_path / "t.parquet")) == 24 - t.num_rows
    from animagine_batch.rundir import write as store

    store.RunStore(run, pq.read_schema(parts[0])).compact(min_parts=2)
    left = sorted(p.name for p in (run / "results").iterdir())
    assert parts[-1].name in left and "part-999999-foreign.parquet" in left  # not deleted
    assert "notes.parquet" in left and len(left) == 4


# -- points 4 and 12: paths from the table, damaged files ----------------------------------------

def test_image_paths_outside_the_run_are_never_read(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"SECRET-BYTES" * 100)
    part = sorted((run / "results").glob("part-*.parquet"))[0]
    escaped = pq.read_table(part).to_pandas().task_id[:2].tolist()

    def escape(df):
        df.loc[0, "image_path"] = "../../secret.png"
        df.loc[1, "image_path"] = str(secret)
        df.loc[0, "image_sha256"] = hashlib.sha256(secret.read_bytes()).hexdigest()
        df.loc[1, "image_sha256"] = "0" * 64  # not a duplicate of row 0
    rewrite_part(part, escape)
    for fmt in ("kohya", "hf-parquet"):
        with pytest.warns(RunWarning, match="points outside the run directory"):
            rc, out, err = main(capsys, "export", run, "--format", fmt, "--out",
                                tmp_path / fmt)
        assert rc == 0 and "22 images exported" in out and "2 damaged image(s) left out" in out
        for f in (tmp_path / fmt).rglob("*"):
            assert not f.is_file() or b"SECRET-BYTES" not in f.read_bytes()
    assert not any(t in p.name for p in (tmp_path / "kohya").iterdir() for t in escaped)
    df = load_run(run)
    row = df[df.task_id == escaped[0]].iloc[0]
    where = f"prompt_key == '{row.prompt_key}' and tag_position == '{row.tag_position}'"
    with pytest.warns(RunWarning, match="left empty: image_path '../../secret.png' points outside"):
        rc, out, err = main(capsys, "grid", run, "--x", "cfg", "--where", where, "--cell", "16",
                            "--out", tmp_path / "g")
    assert rc == 0
    rc, out, err = main(capsys, "score", run, "scorers=[tiny_aesthetic]")
    assert rc == 0 and "2 image(s) left unscored" in err and "points outside" in err
    assert "22 scored" in out


def test_a_truncated_png_is_named_and_left_out(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    df = load_run(run)
    row = df.iloc[0]  # its cell is in the report's grid (other factors held at the first row's)
    png = run / row.image_path
    png.write_bytes(png.read_bytes()[:300])
    with pytest.warns(RunWarning, match=f"{row.image_path} does not match its image_sha256"):
        rc, out, err = main(capsys, "export", run, "--format", "kohya", "--out", tmp_path / "k")
    assert rc == 0 and "23 images exported" in out and "1 damaged image(s) left out" in out
    assert not (tmp_path / "k" / f"{row.task_id}.png").exists()
    assert len(json.loads((tmp_path / "k" / "metadata.json").read_text())) == 23
    where = f"prompt_key == '{row.prompt_key}' and tag_position == '{row.tag_position}'"
    with pytest.warns(RunWarning, match=f"left empty: {row.image_path} does not match"):
        rc, out, err = main(capsys, "grid", run, "--x", "cfg", "--where", where, "--cell", "16",
                            "--out", tmp_path / "g")
    assert rc == 0
    rc, out, err = main(capsys, "score", run, "scorers=[tiny_aesthetic]")
    assert rc == 0 and f"1 image(s) left unscored: {row.image_path}" in err
    png.unlink()  # a missing PNG is named the same way
    with pytest.warns(RunWarning, match=f"{row.image_path} is missing"):
        rc, out, err = main(capsys, "report", run)
    assert rc == 0 and (run / "report" / "index.html").is_file()


def test_a_truncated_results_part_stops_every_command_with_its_name(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    part = sorted((run / "results").glob("part-*.parquet"))[1]
    part.write_bytes(part.read_bytes()[:2000])
    before = snapshot(run)
    commands = [["table", run, "--out", tmp_path / "t.csv"], ["compare", run],
                ["regress", run, run], ["grid", run, "--x", "cfg"], ["report", run],
                ["export", run, "--format", "kohya", "--out", tmp_path / "k"],
                ["score", run, "scorers=[tiny_aesthetic]"],
                ["run", "jobs/demo.yaml", f"output.root={run.parent}", "runner=local"]]
    for args in commands:
        rc, out, err = main(capsys, *args)
        assert rc == 2, (args, err)
        assert f"results file {part} is corrupt or unreadable" in err and "--verify" in err
    assert snapshot(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_run_verify_regenerates_damaged_images_and_parts(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    parts = sorted((run / "results").glob("part-*.parquet"))
    lost = pq.read_table(parts[1]).column("task_id").to_pylist()
    parts[1].write_bytes(parts[1].read_bytes()[:2000])
    df = load_run(demo_run)
    damaged = df[~df.task_id.isin(lost)].iloc[0]
    (run / damaged.image_path).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc, out, err = main(capsys, "run", "jobs/demo.yaml", f"output.root={run.parent}",
                        "runner=local", "--verify")
    assert rc == 0, err
    assert f"1 unreadable part(s) moved to damaged/: results/{parts[1].name}" in out
    assert f"1 damaged ({damaged.image_path} does not match its image_sha256" in out
    assert f"job demo: {24 - len(lost) - 1} done, {len(lost) + 1} to do" in out
    assert (run / "damaged" / "results" / parts[1].name).is_file()  # kept, not deleted
    after = load_run(run)
    assert len(after) == 24 == after.task_id.nunique() and (after.status == "ok").all()
    for r in after.itertuples():
        assert hashlib.sha256((run / r.image_path).read_bytes()).hexdigest() == r.image_sha256
    rc, out, err = main(capsys, "run", "jobs/demo.yaml", f"output.root={run.parent}",
                        "runner=local", "--verify")
    assert rc == 0 and "24 images checked, 0 damaged" in out and "24 done, 0 to do" in out


# -- point 13: one writer per run ----------------------------------------------------------------

def _start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "animagine_batch.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy(), **kw)


def _wait_for(ready, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run made no progress"
        time.sleep(0.05)


def test_a_second_run_is_refused_and_ctrl_c_is_resumable(tmp_path, tiny_dir, capsys):
    args = ["run", "jobs/demo.yaml", f"output.root={tmp_path}", f"prompts={one_prompt(tmp_path)}",
            "sweep.seeds=6", "generation.batch_size=1", *SMALL]
    first = _start(args)
    run = tmp_path / "demo"
    lock = run / ".lock"
    _wait_for(lambda: lock.is_file() and f'"pid": {first.pid}' in lock.read_text(), first)
    rc, out, err = main(capsys, *args)
    assert rc == 2 and f"run directory {run} is in use by another run (pid {first.pid} on host" \
        in err
    _wait_for(lambda: len(list((run / "results").glob("part-*"))) >= 2, first)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()
             and not ln.startswith("demo:")]  # the progress bar
    assert lines == ["interrupted: finished units are saved; rerun the same command to resume"]
    assert not (run / ".lock").exists() and not list(run.rglob(".tmp-*"))
    partial = len(load_run(run))
    assert 2 <= partial < 6
    rc, out, err = main(capsys, *args)
    assert rc == 0 and f"{partial} done, {6 - partial} to do" in out
    df = load_run(run)
    assert len(df) == 6 == df.task_id.nunique() == len(list((run / "images").iterdir()))


def test_a_lock_left_by_a_killed_run_does_not_block(demo_run, tmp_path, capsys):
    run = copy_run(demo_run, tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": "h", "since": 0}))
    rc, out, err = main(capsys, "run", "jobs/demo.yaml", f"output.root={run.parent}",
                        "runner=local")
    assert rc == 0 and "24 done, 0 to do" in out, err


def test_a_job_that_fails_before_its_first_image_leaves_no_folder(tmp_path):
    from animagine_batch.rundir.lock import RunLock

    with pytest.raises(RuntimeError, match="model failed"):
        with RunLock(tmp_path / "new_root" / "demo"):
            assert (tmp_path / "new_root" / "demo" / ".lock").is_file()
            raise RuntimeError("model failed to load")
    assert list(tmp_path.iterdir()) == []


# -- disk full mid-run ---------------------------------------------------------------------------

def test_disk_full_mid_run_stops_cleanly_and_the_rerun_completes(tmp_path, tiny_dir, capsys):
    # 64 px PNGs are ~13 kB and parts ~16 kB; a 128 px PNG is over a 32 kB file-size limit, so
    # the run fails at its second unit's first write, as on a full disk (EFBIG, not ENOSPC)
    args = ["run", "jobs/demo.yaml", f"output.root={tmp_path}", f"prompts={one_prompt(tmp_path)}",
            "sweep.seeds=[0]", *SMALL, "sweep.grid.size=[64x64,128x128]"]
    limit = 32 * 1024
    r = subprocess.run([sys.executable, "-m", "animagine_batch.cli", *args], cwd=REPO,
                       capture_output=True, text=True, env=os.environ.copy(), timeout=300,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                             (limit, limit)))
    run = tmp_path / "demo"
    assert r.returncode == 74, r.stderr
    assert f"error: cannot write {run / 'images'}/" in r.stderr and "File too large" in r.stderr
    assert "make room and rerun the same command to resume" in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(run.rglob(".tmp-*")) and not (run / ".lock").exists()
    assert len(load_run(run)) == 1  # the finished unit
    rc, out, err = main(capsys, *args)
    assert rc == 0 and "1 done, 1 to do" in out
    df = load_run(run)
    assert len(df) == 2 and sorted(df.width) == [64, 128]
