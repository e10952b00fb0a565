"""Votes, selections, thumbnails, the gallery's data files, the rating server's API and the
commands built on them (gallery, rate, agreement, compare --metric human, export --select)."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import load_run, ratings, simulate
from animagine_batch.rundir import selection
from analysis.gallery import build_gallery
from analysis.pairs import PairScheduler
from analysis.rate_server import RatingApp
from analysis.webserver import make_server
from conftest import REPO, run_cli


def vote(i: int, **kw) -> dict:
    v = {"vote_id": f"v{i}", "time": ratings.now(), "rater": "ann", "axis": "strategy",
         "prompt_key": "p0", "seed": 0, "left_task": "a", "right_task": "b", "left_level": "s0",
         "right_level": "s1", "choice": "left", "mode": "balanced", "shown_ms": 10}
    return {**v, **kw}


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """10 prompts x 2 seeds x 3 strategies with 64 px PNGs; a planted aesthetic effect of s1."""
    return simulate.write_image_run(tmp_path_factory.mktemp("sim") / "sim", 10, 2,
                                    [0.0, 0.15, 0.0], seed=3)


def test_votes_append_concurrently_and_read_back(tmp_path):
    logs = [ratings.VoteLog(tmp_path), ratings.VoteLog(tmp_path)]
    threads = [threading.Thread(target=lambda k=k: [logs[k % 2].append(vote(100 * k + i))
                                                     for i in range(50)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    votes, torn = ratings.read_votes(tmp_path)
    assert len(votes) == 200 and torn == 0 and votes["vote_id"].is_unique
    assert len(ratings.vote_files(tmp_path)) == 2  # one file per server
    assert list(votes.columns) == [*ratings.FIELDS, "file"] and votes["seed"].dtype == "int64"


def test_a_torn_last_line_is_skipped_and_a_corrupt_line_is_an_error(tmp_path):
    log = ratings.VoteLog(tmp_path)
    log.append(vote(1))
    log.close()
    with open(log.path, "ab") as f:
        f.write(b'{"vote_id": "v2", "ti')  # a crash in the middle of a write
    votes, torn = ratings.read_votes(tmp_path)
    assert len(votes) == 1 and torn == 1
    log.path.write_bytes(b"not json\n" + log.path.read_bytes())
    with pytest.raises(ratings.ResultsError, match=r"line 1: not a vote record"):
        ratings.read_votes(tmp_path)
    with pytest.raises(ValueError, match="choice 'maybe'"):
        ratings.VoteLog(tmp_path).append(vote(3, choice="maybe"))
    with pytest.raises(ValueError, match="rater name"):
        ratings.check_rater("  ")


def test_pairs_are_balanced_over_prompts_and_level_pairs(sim_run):
    df = load_run(sim_run)
    s = PairScheduler(df, "strategy", ["s0", "s1", "s2"], ["strategy"], seed=1)
    assert len(s.candidates) == 10 * 2 * 3  # prompts x seeds x pairs of levels
    for _ in range(60):
        pair, _left = s.next("ann")
        assert pair.prompt_key == df.set_index("task_id").loc[pair.task_b, "prompt_key"]
        s.record(pair.index, "ann", "left", pair.task_a)
    assert s.pair_votes.tolist() == [20, 20, 20]
    assert s.prompt_votes.min() == s.prompt_votes.max() == 2
    assert s.cand_votes.max() == 1  # nobody saw a pair twice before seeing them all


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _post(url: str, body: dict):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rating_api_serves_blind_pairs_and_saves_votes(sim_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    df = load_run(run)
    app = RatingApp(run, df, "strategy", ["s0", "s1"], ["strategy"], seed=2)
    server = make_server(app, 0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert b"Left is better" in _get(base + "/")[1]
        pair = json.loads(_get(base + "/api/next?rater=ann")[1])
        images = [Image.open(io.BytesIO(_get(base + pair[side])[1])) for side in ("left", "right")]
        assert all("parameters" not in im.info for im in images)  # the infotext names the level
        assert pair["prompt"].startswith("1girl, character")
        status, body = _post(base + "/api/vote", {"token": pair["token"], "choice": "right",
                                                  "rater": "ann"})
        assert status == 200 and body == {"saved": True, "votes": 1}
        assert _post(base + "/api/vote", {"token": pair["token"], "choice": "left",
                                          "rater": "ann"})[0] == 409  # one vote per pair
        assert _post(base + "/api/vote", {"token": "x", "choice": "best", "rater": "ann"})[0] == 400
        votes, _ = ratings.read_votes(run)
        v = votes.iloc[0]
        index = df.set_index("task_id")
        assert v.choice == "right" and v.rater == "ann" and v.axis == "strategy"
        assert {index.loc[v.left_task, "strategy"], index.loc[v.right_task, "strategy"]} == \
            {"s0", "s1"} and v.left_level == index.loc[v.left_task, "strategy"]
        assert index.loc[v.left_task, "seed"] == index.loc[v.right_task, "seed"] == v.seed
        right = np.asarray(images[1].convert("RGB"))
        assert np.array_equal(right, np.asarray(Image.open(run / index.loc[v.right_task,
                                                                           "image_path"]).convert("RGB")))
    finally:
        server.shutdown()
        server.server_close()


def test_rate_and_compare_human_bad_input(sim_run, capsys):
    from animagine_batch import cli

    def fails(*args):
        assert cli.main(list(args)) == 2
        return capsys.readouterr().err

    assert "--by colour: not an axis of this run; axes: strategy" in fails(
        "rate", str(sim_run), "--by", "colour")
    assert "--levels s9: not a level of strategy" in fails(
        "rate", str(sim_run), "--by", "strategy", "--levels", "s0", "s9")
    assert "no votes on --by strategy" in fails(
        "compare", str(sim_run), "--by", "strategy", "--metric", "human")
    assert "--metric human needs --by AXIS" in fails("compare", str(sim_run), "--metric", "human")
    assert "has no votes in ratings/" in fails("agreement", str(sim_run))
    assert "--port 70000: allowed: 0" in fails("rate", str(sim_run), "--by", "strategy",
                                              "--port", "70000")


@pytest.fixture(scope="module")
def voted_run(sim_run, tmp_path_factory):
    """sim_run with 120 votes of two raters that prefer s1 (log-odds 1.2), 80% in line with the
    aesthetic score."""
    run = tmp_path_factory.mktemp("voted") / "sim"
    shutil.copytree(sim_run, run)
    df = load_run(run).set_index("task_id")
    rng = np.random.default_rng(5)
    s = PairScheduler(df.reset_index(), "strategy", ["s0", "s1", "s2"], ["strategy"], seed=5)
    log = ratings.VoteLog(run)
    strength = {"s0": 0.0, "s1": 1.2, "s2": 0.0}
    for i in range(120):
        rater = "ann" if i % 2 else "bob"
        pair, a_left = s.next(rater)
        left, right = (pair.task_a, pair.task_b) if a_left else (pair.task_b, pair.task_a)
        d = strength[df.loc[left, "strategy"]] - strength[df.loc[right, "strategy"]]
        choice = "left" if rng.random() < 1 / (1 + np.exp(-d)) else "right"
        log.append(vote(i, rater=rater, prompt_key=pair.prompt_key, seed=pair.seed,
                        left_task=left, right_task=right, left_level=df.loc[left, "strategy"],
                        right_level=df.loc[right, "strategy"], choice=choice))
        s.record(pair.index, rater, choice, left)
    return run


def test_compare_human_and_agreement_commands(voted_run, tmp_path):
    r = run_cli("compare", str(voted_run), "--by", "strategy", "--metric", "human",
                "--out", str(tmp_path / "h.csv"))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "h.csv").set_index("level")
    assert list(table.index) == ["s1", "s2"] and (table.reference == "s0").all()
    assert table.loc["s1", "strength"] > 0 and table.loc["s1", "n_prompts"] == 10
    assert table.loc["s1", "ci_low"] < table.loc["s1", "strength"] < table.loc["s1", "ci_high"]
    assert "human: 120 votes by 2 raters on 10 prompts" in r.stdout
    r = run_cli("agreement", str(voted_run), "--out", str(tmp_path / "a.csv"))
    assert r.returncode == 0, r.stderr
    a = pd.read_csv(tmp_path / "a.csv").set_index("metric")
    assert a.loc["aesthetic_score", "n_votes"] == 120
    assert "rank correlation" in r.stdout and "inter-rater agreement: 2 raters" in r.stdout


def test_report_reads_in_a_minute(voted_run, tmp_path):
    """Summary in words, forest plot above the tables, verdict first, rounded numbers, a human
    section, no nan rows."""
    run = tmp_path / "sim"
    shutil.copytree(voted_run, run)
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    html = (run / "report" / "index.html").read_text()
    summary = html.split('id="summary-text"')[1].split("</p>")[0]
    assert "raised aesthetic_score by" in summary and "over 10 prompts" in summary
    assert "raters preferred `s1` to `s0`" in summary
    assert html.index('id="forest"') < html.index('class="effects"') < html.index("Human ratings")
    assert '<tr><th class="text">verdict</th>' in html
    assert "nan" not in html.split("Effects of each axis")[1].lower().split("<script")[0]
    assert not __import__("re").search(r"\de-0\d", html)
    assert (run / "report" / "figures" / "forest.png").is_file()


def test_gallery_data_and_infotext(sim_run, tmp_path):
    out = tmp_path / "g"
    index, counts = build_gallery(sim_run, out, thumb_size=32, workers=1, progress=False)
    assert counts["made"] == counts["thumbnails"] == 60 and index == out / "index.html"
    data = json.loads((out / "data.js").read_text()[len("window.GALLERY="):-2])
    df = load_run(sim_run)
    assert data["n"] == 60 and data["ids"] == df["task_id"].tolist()
    strategy = data["factors"]["strategy"]
    assert strategy["levels"] == ["s0", "s1", "s2"] and strategy["design"] and strategy["axis"]
    assert [strategy["levels"][c] for c in strategy["codes"]] == df["strategy"].tolist()
    assert data["scores"]["aesthetic_score"]["values"][0] == pytest.approx(
        float(df["aesthetic_score"].iloc[0]), rel=1e-3)
    assert all((out / "thumbs" / t).is_file() for t in data["thumb"])
    with Image.open(out / "thumbs" / data["thumb"][0]) as im:
        assert im.format == "WEBP" and max(im.size) == 32
    detail = json.loads((out / "detail" / "00000.js").read_text()[len("galleryDetail(0,"):-3])
    with Image.open(sim_run / df["image_path"].iloc[7]) as im:
        assert detail[7]["infotext"] == im.info["parameters"]  # what webui reads
    again, counts = build_gallery(sim_run, out, thumb_size=32, workers=1, progress=False)
    assert counts["made"] == 0 and counts["kept"] == 60
    r = run_cli("gallery", str(sim_run), "--out", str(tmp_path / "f" / "x"), "--thumb-size", "8")
    assert r.returncode == 2 and "--thumb-size 8: allowed: 16 to 1024" in r.stderr


def test_thumbnails_resume_after_a_kill(tmp_path):
    run = simulate.write_image_run(tmp_path / "big", 60, 3, [0.0], size=320, seed=1)
    out = tmp_path / "g"
    proc = subprocess.Popen([sys.executable, "-m", "animagine_batch.cli", "gallery", str(run),
                             "--out", str(out), "--workers", "1"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while len(list((out / "thumbs").glob("*.webp"))) < 10 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").glob("*.webp")}
    assert 10 <= len(before) < 180, "the build finished before it could be killed"
    assert not (out / "index.html").exists()
    for name in before:
        with Image.open(out / "thumbs" / name) as im:
            im.load()  # every thumbnail there is whole
    r = run_cli("gallery", str(run), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"180 thumbnails ({180 - len(before)} made, {len(before)} already there)" in r.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").glob("*.webp")}
    assert len(after) == 180 and all(after[n] == t for n, t in before.items())
    assert not list((out / "thumbs").glob("*.tmp-*"))


def stems(export) -> list[str]:
    """The task ids of a kohya export: its metadata.json keys are image file names."""
    return [Path(k).stem for k in json.loads((export / "metadata.json").read_text())]


def test_export_select_and_reject(demo_run, tmp_path):
    run = tmp_path / "runs" / "demo"  # exports go outside the folder that holds the run
    shutil.copytree(demo_run, run)
    df = load_run(run)
    ids = df["task_id"].tolist()
    sel = tmp_path / "selection.json"
    sel.write_text(json.dumps({"format": selection.FORMAT, "keep": ids[:3], "starred": ids[3:5],
                               "reject": ids[5:8]}))
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(tmp_path / "k"),
                "--select", str(sel))
    assert r.returncode == 0, r.stderr
    meta = stems(tmp_path / "k")
    assert sorted(meta) == sorted(ids[:5])
    best = df[df.task_id.isin(ids[:5])].aesthetic_score.median()
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(tmp_path / "m"),
                "--select", str(sel), "--min-aesthetic", str(best))
    kept = set(df[df.task_id.isin(ids[:5]) & (df.aesthetic_score >= best)].task_id)
    assert set(stems(tmp_path / "m")) == kept
    assert f"5 kept or starred, {len(kept)} of them pass the filters" in r.stdout
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(tmp_path / "r"),
                "--reject", str(sel))
    assert set(stems(tmp_path / "r")) == set(ids[8:]) | \
        set(ids[:5])
    (tmp_path / "bad.json").write_text(json.dumps({"format": selection.FORMAT,
                                                   "keep": ["0123456789abcdef"]}))
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(tmp_path / "b"),
                "--select", str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "1 task ids are not in the run, e.g. 0123456789abcdef" in r.stderr
    assert not (tmp_path / "b").exists()
    (tmp_path / "ids.txt").write_text("\n".join(ids[:2]) + "\n")  # one task id a line
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(tmp_path / "t"),
                "--select", str(tmp_path / "ids.txt"))
    assert r.returncode == 0 and sorted(stems(tmp_path / "t")) == sorted(ids[:2])


def test_served_gallery_saves_the_selection_to_the_run(sim_run, tmp_path):
    from analysis.gallery.serve import GalleryApp

    run = tmp_path / "run"
    shutil.copytree(sim_run, run)
    index, _ = build_gallery(run, workers=1, progress=False)
    ids = load_run(run)["task_id"].tolist()
    server = make_server(GalleryApp(run, index.parent, set(ids)), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert b"gallery.js" in _get(base + "/")[1]
        assert _get(base + "/run/images/" + ids[0] + ".png")[1][:4] == b"\x89PNG"
        with pytest.raises(urllib.error.HTTPError):
            _get(base + "/run/images/../job.yaml")
        body = {"format": selection.FORMAT, "keep": ids[:2], "starred": [], "reject": [ids[2]]}
        status, reply = _post(base + "/api/selection", body)
        assert status == 200 and reply["saved"]
        saved = json.loads((run / "selection.json").read_text())
        assert saved["keep"] == ids[:2] and saved["reject"] == [ids[2]]
        assert json.loads(_get(base + "/api/selection")[1])["keep"] == ids[:2]
        status, reply = _post(base + "/api/selection", {**body, "keep": ["nope"]})
        assert status == 400 and "not in the run" in reply["error"]
    finally:
        server.shutdown()
        server.server_close()
