"""compare, regress and the report refuse to compare a metric whose values come from scorers
that differ in weights or preprocessing, and say why."""

import shutil

import pytest

from analysis.provenance import metric_sources, mismatches
from animagine_batch import cli
from animagine_batch.score import rescore
from animagine_batch.jobspec.job import ScorerSpec
from conftest import rescore_interrupted

SQUASH = ScorerSpec.make("tiny_clip", {"kind": "clip", "embedded": "tiny", "batch_size": 16,
                                       "store_embeddings": True, "resize_mode": "squash",
                                       "licence": "none (random weights)"})


@pytest.fixture(scope="module")
def squashed(demo_run, tmp_path_factory):
    """A copy of the demo run whose CLIP scores were all remade with squash resizing."""
    run = tmp_path_factory.mktemp("squashed") / "demo"
    shutil.copytree(demo_run, run)
    rescore(run, (SQUASH,), "cpu")
    return run


def test_regress_refuses_runs_with_different_clip_preprocessing(demo_run, squashed, capsys):
    code = cli.main(["regress", str(demo_run), str(squashed)])
    err = capsys.readouterr().err
    head = err.split(" cannot be compared")[0]
    assert code == 2 and head.startswith("error: regress: ") and set(
        head.removeprefix("error: regress: ").split(", ")) == {"clip_score", "clip_cosine"}
    assert "preprocessing.resize_mode: 'shortest' vs 'squash'" in err
    assert "--allow-scorer-mismatch" in err and "aesthetic_score" not in err
    # a metric the two runs scored alike is compared as before (3 prompts: cannot decide)
    assert cli.main(["regress", str(demo_run), str(squashed), "--metric", "aesthetic_score"]) == 2
    assert "cannot decide" in capsys.readouterr().err
    cli.main(["regress", str(demo_run), str(squashed), "--allow-scorer-mismatch"])
    captured = capsys.readouterr()
    assert "warning: comparing anyway" in captured.err and "clip_score" in captured.out


def test_compare_refuses_a_run_rescored_halfway(demo_run, tmp_path, monkeypatch, capsys):
    """A rescoring with other preprocessing interrupted after its first part: 8 tasks carry the
    new CLIP scores, 16 the old ones."""
    run = tmp_path / "demo"
    shutil.copytree(demo_run, run)
    rescore_interrupted(monkeypatch, run, (SQUASH,), 8)
    sources = metric_sources(run, ["clip_score", "aesthetic_score"])
    assert sorted(s["tasks"] for s in sources["clip_score"]) == [8, 16]
    assert [s["tasks"] for s in sources["aesthetic_score"]] == [24]
    code = cli.main(["compare", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "compare: " in err and "cannot be compared" in err
    assert "16 tasks by tiny_clip; 8 tasks by tiny_clip" in err and "resize_mode" in err
    assert cli.main(["compare", str(run), "--metric", "aesthetic_score"]) == 0
    assert cli.main(["compare", str(run), "--allow-scorer-mismatch"]) == 0
    assert "warning: comparing anyway" in capsys.readouterr().err
    from analysis.report import build_report

    html = build_report(run).read_text()
    assert "Metrics left out" in html and "clip_score: 16 tasks" in html
    assert mismatches({"": demo_run}, ["clip_score", "aesthetic_score"]) == {}
