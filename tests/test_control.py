"""The special-tag control analysis: synthetic tables with planted control and none, error
rates by simulation, and the command and report section end to end on the tiny model."""

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.bias import size_bias
from analysis.control import control, prompt_spearman, trend_verdicts, trends
from animagine_batch.errors import ResultsError
from animagine_batch.jobspec.tag_levels import ORDER, QUALITY_TIERS, TIER_TAG

QUALITY = list(ORDER["quality"])  # worst quality ... masterpiece


def table(n_prompts: int, seeds: int, measure, rng, levels=QUALITY, group="quality") -> pd.DataFrame:
    """One row per prompt x level (none first) x seed; `measure(level_index, prompt_effect,
    n)` gives the measured quality score (-1 is none)."""
    rows = []
    for p in range(n_prompts):
        effect = rng.normal(0, 0.5)
        for i, level in enumerate(["none", *levels]):
            values = measure(i - 1, effect, seeds)
            for s in range(seeds):
                rows.append({"task_id": f"{p}-{i}-{s}", "status": "ok", "prompt_key": f"p{p}",
                             "seed": s, "model": "m", "sampler": "Euler a", "steps": 28,
                             "cfg": 7.0, "width": 64, "height": 64, group: level,
                             "quality_score": values[s]})
    df = pd.DataFrame(rows)
    tier = np.clip(np.rint(df["quality_score"]), 0, 6).astype(int)
    df["quality_tag"] = [TIER_TAG[QUALITY_TIERS[t]] for t in tier]
    return df


def test_perfect_control_gives_a_diagonal_and_an_increasing_trend():
    rng = np.random.default_rng(1)

    def perfect(i, effect, n):
        return (i if i >= 0 else 3.5) + rng.uniform(-0.3, 0.3, n)

    df = table(12, 3, perfect, rng)
    results, trend, notes = control(df, ["quality"])
    (r,) = results
    tagged = r.confusion.loc[QUALITY]
    assert (tagged.to_numpy() == np.diag(np.full(7, 36))).all()  # 12 prompts x 3 seeds
    assert (r.levels["match"] == 1).all() and (r.levels["adjacent"] == 1).all()
    assert r.levels["chance"].round(6).tolist() == [round(1 / 7, 6)] * 7
    t = trend.iloc[0]
    assert t["group"] == "quality" and t["ci_low"] > 0 and t["verdict"] == "increasing"
    assert t["rho"] > 0.98  # below 1 only because seeds tie the prompted ranks
    # every level moves away from none (3.5) toward itself
    assert r.levels["verdict"].tolist() == ["lower"] * 4 + ["higher"] * 3
    assert (r.levels["toward"] == "yes").all()


def _simulate(n_sims, n_prompts, seeds, levels, slope, discrete, seed):
    """Arrays of n_sims tables at once: the measure is a prompt effect plus noise, plus
    `slope` x the prompted level index; the same `prompt_spearman` and `t_inference` as
    `trends` on a results table."""
    rng = np.random.default_rng(seed)
    shape = (n_sims, n_prompts, levels, seeds)
    x = np.broadcast_to(np.arange(levels)[None, None, :, None], shape).astype(float)
    y = rng.normal(0, 0.5, (n_sims, n_prompts, 1, 1)) + rng.normal(0, 1, shape) + slope * x
    if discrete:  # a four-level measure with many ties, like a rating index
        y = np.digitize(y, [-0.7, 0, 0.7]).astype(float)
    codes = np.broadcast_to(np.arange(n_sims * n_prompts).reshape(n_sims, n_prompts, 1, 1),
                            shape)
    rho = prompt_spearman(x.ravel(), y.ravel(), codes.ravel(), n_sims * n_prompts)
    return stats.t_inference(rho.reshape(n_sims, n_prompts)), (x, y)


@pytest.mark.parametrize("n_prompts,seeds,levels,discrete", [
    (5, 2, 7, False), (20, 4, 5, False), (66, 4, 4, False), (10, 4, 4, True)])
def test_no_control_trend_interval_covers_zero(n_prompts, seeds, levels, discrete):
    inf, _ = _simulate(1000, n_prompts, seeds, levels, 0.0, discrete, seed=n_prompts)
    covered = (inf.ci_low <= 0) & (inf.ci_high >= 0)
    assert covered.mean() >= 0.93, covered.mean()
    verdicts = trend_verdicts(inf)
    assert np.isin(verdicts, ["increasing", "decreasing"]).mean() <= 0.07


def test_a_moderate_control_is_found():
    inf, _ = _simulate(300, 20, 4, 5, 0.15, False, seed=7)
    assert (trend_verdicts(inf) == "increasing").mean() >= 0.9


def test_the_simulation_runs_the_code_the_report_runs():
    """`trends` on one simulated table gives what the vectorised simulation gives."""
    inf, (x, y) = _simulate(1, 8, 3, 7, 0.3, False, seed=3)
    rows = [{"status": "ok", "prompt_key": f"p{p}", "quality": QUALITY[int(x[0, p, i, s])],
             "quality_score": y[0, p, i, s], "quality_tag": "good quality"}
            for p in range(8) for i in range(7) for s in range(3)]
    got = trends(pd.DataFrame(rows), ["quality"]).iloc[0]
    assert got["rho"] == pytest.approx(float(inf.mean[0]))
    assert got["ci_low"] == pytest.approx(float(inf.ci_low[0]))


def test_too_few_prompts_gives_no_verdict():
    rng = np.random.default_rng(2)
    df = table(4, 3, lambda i, e, n: (i if i >= 0 else 3) + rng.uniform(-0.3, 0.3, n), rng)
    results, trend, _ = control(df, ["quality"])
    assert trend["verdict"].tolist() == [stats.TOO_FEW] and np.isnan(trend["ci_low"].iloc[0])
    assert (results[0].levels["verdict"] == stats.TOO_FEW).all()
    assert (results[0].levels["match"] == 1).all()  # descriptive shares are still given


def test_rating_reads_the_tagger_and_the_shorthand():
    rng = np.random.default_rng(4)
    levels = ["safe", "sensitive", "nsfw", "explicit"]  # `explicit` = the card's explicit, nsfw
    df = table(6, 2, lambda i, e, n: np.zeros(n), rng, levels=levels, group="rating")
    truth = {"none": "general", "safe": "general", "sensitive": "sensitive",
             "nsfw": "questionable", "explicit": "explicit"}
    df["wd14_rating"] = df["rating"].map(truth)
    (r,), trend, _ = control(df, ["rating"])
    assert r.levels["level"].tolist() == list(ORDER["rating"])
    assert (r.levels["match"] == 1).all() and trend.empty  # rating is not an ordinal group
    assert r.confusion.loc["explicit, nsfw", "explicit, nsfw"] == 12
    assert r.levels.set_index("level").loc["explicit, nsfw", "shift"] == pytest.approx(3.0)


def test_levels_that_are_not_one_card_tag_and_unmeasured_groups_are_named():
    rng = np.random.default_rng(5)
    df = table(5, 2, lambda i, e, n: rng.uniform(0, 6, n), rng,
               levels=["masterpiece", "masterpiece, best quality"])
    df["year"] = "none"
    results, _, notes = control(df, ["quality", "year"])
    assert "10 images prompt quality levels that are not one card level" in results[0].notes[0]
    assert results[0].levels["level"].tolist() == ["masterpiece"]
    assert any("year: not measured (no column era_year_tag, era_year)" in n
               and "anime_era" in n for n in notes)
    with pytest.raises(ResultsError, match="no special-tag axis"):
        control(df, ["cfg"])
    with pytest.raises(ResultsError, match="--group rating: not a special-tag axis"):
        control(df, ["quality"], ["rating"])


def test_size_bias_is_paired_against_the_squarest_size():
    rng = np.random.default_rng(6)
    rows = []
    for p in range(20):
        effect = rng.normal(0, 0.15)
        for s in range(4):
            for w, h in ((1216, 832), (1024, 1024), (832, 1216)):
                drop = 0.0 if w == h else 0.08  # a scorer that dislikes non-square images
                rows.append({"task_id": f"{p}-{s}-{w}", "status": "ok", "prompt_key": f"p{p}",
                             "seed": s, "model": "m", "sampler": "Euler a", "steps": 28,
                             "cfg": 7.0, "width": w, "height": h, "size": f"{w}x{h}",
                             "aesthetic_score": 0.6 + effect - drop + rng.normal(0, 0.05)})
    df = pd.DataFrame(rows)
    out = size_bias(df, ["aesthetic_score"], {"aesthetic_score": True}, ["size"])
    assert set(out["reference"]) == {"1024x1024"}
    assert out.set_index("level")["aspect"].to_dict() == {"832x1216": 0.684, "1216x832": 1.462}
    assert (out["verdict"] == "worse").all()
    assert out["mean_diff"].to_numpy() == pytest.approx([-0.08, -0.08], abs=0.02)
    with pytest.raises(ResultsError, match="one size"):
        size_bias(df[df["width"] == 1024], ["aesthetic_score"], {}, ["size"])


@pytest.fixture(scope="module")
def tiny_control_run(tmp_path_factory):
    """jobs/tag_control_tiny.yaml: the tiny model and the four stand-in scorers, 24 images."""
    from animagine_batch import cli
    from conftest import REPO

    root = tmp_path_factory.mktemp("tag-control")
    assert cli.main(["run", str(REPO / "jobs" / "tag_control_tiny.yaml"),
                     f"output.root={root}"]) == 0
    return root / "tag_control_tiny"


def test_control_command_end_to_end(tiny_control_run, tmp_path, capsys):
    from analysis import load_run
    from animagine_batch import cli

    out = tmp_path / "control"
    assert cli.main(["control", str(tiny_control_run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for group in ("quality", "year", "aesthetic", "rating"):
        assert f"== {group}: measured by" in text
    df = load_run(tiny_control_run)
    assert len(df) == 24 and (df["status"] == "ok").all()
    # the confusion matrix is the crosstab of the results table's own columns
    confusion = pd.read_csv(out / "confusion_quality.csv", index_col=0)
    assert confusion.to_numpy().sum() == 24
    expect = pd.crosstab(df["quality"], df["quality_tag"])
    for prompted_level in ("none", "masterpiece", "worst quality"):
        for measured_level, n in expect.loc[prompted_level].items():
            assert confusion.loc[prompted_level, measured_level] == n
    assert confusion.loc["none"].sum() == 18  # the quality tag is none in 6 of 8 variants
    levels = pd.read_csv(out / "control_levels.csv")
    assert set(zip(levels["group"], levels["level"])) == {
        ("quality", "masterpiece"), ("quality", "worst quality"), ("year", "newest"),
        ("year", "oldest"), ("aesthetic", "very aesthetic"), ("aesthetic", "very displeasing"),
        ("rating", "safe")}
    assert (levels["n_images"] == 3).all() and (levels["verdict"] == stats.TOO_FEW).all()
    trend = pd.read_csv(out / "control_trend.csv")
    assert trend["group"].tolist() == ["quality", "year", "aesthetic"]
    assert (trend["verdict"] == stats.TOO_FEW).all() and (trend["n_prompts"] == 3).all()
    assert all((out / f"control_{g}.png").stat().st_size > 1000
               for g in ("quality", "year", "aesthetic", "rating"))
    assert cli.main(["control", str(tiny_control_run), "--group", "year"]) == 0
    text = capsys.readouterr().out
    assert "== year" in text and "== quality" not in text
    assert cli.main(["control", str(tiny_control_run), "--bias", "size"]) == 2
    assert "the run has one size (32x32)" in capsys.readouterr().err


def test_report_has_the_control_section(tiny_control_run):
    from analysis.report import build_report

    html = build_report(tiny_control_run).read_text()
    assert "Do the special tags do what the card says?" in html
    for group in ("quality", "year", "aesthetic", "rating"):
        assert f"<h3>{group}: measured by" in html
        assert (tiny_control_run / "report" / "figures" / f"control_{group}.png").is_file()
    assert "Monotone trend" in html and "too few prompts" in html


def test_a_group_measured_by_two_scorers_is_refused(tiny_control_run, tmp_path, monkeypatch,
                                                     capsys):
    """Half the images rescored by another quality model: control refuses, the report leaves
    the group out and says why."""
    import shutil

    from analysis.report import build_report
    from animagine_batch import cli
    from animagine_batch.scorers import anime_quality
    from conftest import rescore_interrupted
    from animagine_batch.jobspec.job import ScorerSpec

    run = tmp_path / "run"
    shutil.copytree(tiny_control_run, run)
    other = ScorerSpec.make("tiny_anime_quality", {
        "kind": "anime_quality", "path": str(anime_quality.ensure_tiny(1)), "reference": "off"})
    rescore_interrupted(monkeypatch, run, (other,), 12)
    assert cli.main(["control", str(run)]) == 2
    err = capsys.readouterr().err
    assert "control: " in err and "quality_score" in err and "12 tasks by tiny_anime_quality" in err
    html = build_report(run).read_text()
    assert "<h3>year: measured by" in html and "<h3>quality: measured by" not in html
    assert "quality: left out, its measure comes from scorers that differ" in html
