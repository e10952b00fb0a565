"""Synthetic result tables with known effects: the error rates of `compare` and `regress`.

One image's score is `clip(0.5 + prompt + level + prompt x level + seed noise, 0, 1)` with
prompt ~ N(0, 0.15), seed noise ~ N(0, 0.1) per image and an optional prompt x level interaction
(an effect that differs between prompts). The true difference of two levels is the mean over the
prompt population of the expected clipped difference, which has a closed form.

The simulations run `analysis.stats` on thousands of tables at once (arrays of replicates x
prompts), the same functions `compare` and `regress` call; `compare_frame` and `regress_frames`
turn one replicate into results tables so a test can check that the table path gives the same
numbers. Used by tests/test_stats_validity.py and benchmarks/stats_validity.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from scipy import stats as sps

from . import stats

CENTRE, PROMPT_SD, NOISE_SD = 0.5, 0.15, 0.1
CHUNK = 250  # replicates simulated at once (memory: CHUNK x prompts x seeds x levels x metrics)


def clipped_mean(mu, sd):
    """E[clip(X, 0, 1)] for X ~ N(mu, sd^2)."""
    def above(c):  # E[(X - c)+]
        z = (mu - c) / sd
        return (mu - c) * sps.norm.cdf(z) + sd * sps.norm.pdf(z)
    return above(0.0) - above(1.0)


def true_differences(effects, interaction_sd: float = 0.0) -> np.ndarray:
    """True mean difference of each level against the first."""
    sd = np.sqrt(PROMPT_SD ** 2 + NOISE_SD ** 2 + interaction_sd ** 2)
    means = clipped_mean(CENTRE + np.asarray(effects, float), sd)
    return means[1:] - means[0]


def scores(rng, reps: int, prompts: int, seeds: int, effects, interaction_sd: float = 0.0,
           prompt_effect=None) -> np.ndarray:
    """Scores (reps, prompts, seeds, levels) of one run."""
    levels = len(effects)
    p = prompt_effect if prompt_effect is not None else _normal(rng, PROMPT_SD, (reps, prompts))
    x = CENTRE + p[:, :, None, None] + np.asarray(effects, np.float32)
    if interaction_sd:
        x = x + _normal(rng, interaction_sd, (reps, prompts, 1, levels))
    return np.clip(x + _normal(rng, NOISE_SD, (reps, prompts, seeds, levels)), 0, 1)


def _normal(rng, sd: float, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sd)


def compare_cell(prompts: int, seeds: int, effects, reps: int, interaction_sd: float = 0.0,
                 seed: int = 0) -> dict:
    """Error rates of the comparison of every level against the first over `reps` tables."""
    rng = np.random.default_rng(seed)
    truth = true_differences(effects, interaction_sd)
    family = len(effects) - 1
    null = np.isclose(np.asarray(effects[1:], float), effects[0])
    false, covered, covered95, simultaneous, found, disagree = 0, 0, 0, 0, 0, 0
    for lo in range(0, reps, CHUNK):
        s = scores(rng, min(CHUNK, reps - lo), prompts, seeds, effects, interaction_sd)
        d = (s[..., 1:] - s[..., :1]).mean(axis=2).transpose(0, 2, 1)  # reps, levels-1, prompts
        inf = stats.t_inference(d, family)
        verdict = stats.compare_verdicts(inf)
        wrong = np.where(null, verdict != "no difference",
                         verdict == np.where(truth > 0, "worse", "better"))
        false += wrong.any(axis=1).sum()
        hit = (inf.ci_low <= truth) & (truth <= inf.ci_high)
        covered += hit.sum(axis=0)
        simultaneous += hit.all(axis=1).sum()
        inf95 = stats.t_inference(d, 1)
        covered95 += ((inf95.ci_low <= truth) & (truth <= inf95.ci_high)).sum(axis=0)
        found += (verdict == np.where(truth > 0, "better", "worse")).sum(axis=0)
        disagree += ((inf.p_adj < stats.ALPHA) != (verdict != "no difference")).sum()
    return {"prompts": prompts, "seeds": seeds, "levels": len(effects), "reps": reps,
            "effects": [float(e) for e in effects], "interaction_sd": interaction_sd,
            "true_differences": truth.round(5).tolist(), "false_verdicts": float(false / reps),
            "coverage": (covered / reps).round(4).tolist(),
            "coverage_95": (covered95 / reps).round(4).tolist(),
            "simultaneous_coverage": float(simultaneous / reps),
            "detected": [None if z else round(float(f / reps), 4) for z, f in zip(null, found)],
            "disagreements": int(disagree)}


def regress_runs(rng, reps: int, prompts: int, seeds: int, levels: int, drops, failure: float,
                 interaction_sd: float = 0.0):
    """Baseline and candidate scores (reps, metrics, prompts, seeds, levels) on the same prompts,
    and their `ok` masks (reps, prompts, seeds, levels): each task fails (status nan) with
    probability `failure` in each run. `drops` is the candidate's shift per metric, which an
    interaction varies between prompts."""
    shape = (reps, len(drops), prompts, seeds, levels)
    x = CENTRE + _normal(rng, PROMPT_SD, shape[:3])[..., None, None]
    shift = np.asarray(drops, np.float32)[None, :, None, None, None]
    if interaction_sd:
        shift = shift + _normal(rng, interaction_sd, shape[:3])[..., None, None]
    base = np.clip(x + _normal(rng, NOISE_SD, shape), 0, 1)
    cand = np.clip(x + shift + _normal(rng, NOISE_SD, shape), 0, 1)
    ok = [rng.random((reps, prompts, seeds, levels)) >= failure for _ in range(2)]
    return base, cand, ok[0], ok[1]


def regress_cell(prompts: int, seeds: int, levels: int, drops, reps: int, failure: float = 0.02,
                 interaction_sd: float = 0.0, seed: int = 0) -> dict:
    """Gate outcomes of `reps` baseline/candidate pairs: overall rows of every metric and of the
    failure rate, one Bonferroni family."""
    rng = np.random.default_rng(seed)
    drops = np.asarray(drops, float)
    family = len(drops) + 1
    alarms, found = 0, np.zeros(len(drops))
    for lo in range(0, reps, CHUNK):
        n = min(CHUNK, reps - lo)
        base, cand, ok_b, ok_c = regress_runs(rng, n, prompts, seeds, levels, drops, failure,
                                              interaction_sd)
        both = (ok_b & ok_c)[:, None]
        with np.errstate(invalid="ignore"):
            d = np.where(both, cand - base, 0).sum(axis=(3, 4)) / both.sum(axis=(3, 4))
        fail = ((~ok_c).astype(float) - (~ok_b)).mean(axis=(2, 3))[:, None]
        inf_m = stats.t_inference(d, family)
        inf_f = stats.t_inference(fail, family)
        regressed = np.concatenate([stats.gate_verdicts(inf_f, False),
                                    stats.gate_verdicts(inf_m, True)], axis=1) == "regressed"
        alarms += regressed[:, np.r_[True, drops >= 0]].any(axis=1).sum()
        found += regressed[:, 1:].sum(axis=0)
    return {"prompts": prompts, "seeds": seeds, "levels": levels, "reps": reps,
            "drops": drops.tolist(), "failure": failure, "interaction_sd": interaction_sd,
            "false_alarms": float(alarms / reps),
            "detected": [round(float(f / reps), 4) if d < 0 else None for d, f in zip(drops, found)]}


def _frame(prompts: int, seeds: int, levels: int) -> pd.DataFrame:
    p, s, lv = np.meshgrid(np.arange(prompts), np.arange(seeds), np.arange(levels), indexing="ij")
    p, s, lv = p.ravel(), s.ravel(), lv.ravel()
    return pd.DataFrame({
        "task_id": [f"t{a}-{b}-{c}" for a, b, c in zip(p, s, lv)], "status": "ok", "model": "m",
        "prompt_key": [f"p{a}" for a in p], "prompt": [f"prompt {a}" for a in p],
        "negative_prompt": "", "seed": s, "sampler": "Euler a", "steps": 28, "cfg": 7.0,
        "width": 832, "height": 1216, "strategy": [f"s{c}" for c in lv]})


def compare_frame(scores_one: np.ndarray) -> pd.DataFrame:
    """One replicate (prompts, seeds, levels) as a results table with a `strategy` axis."""
    df = _frame(*scores_one.shape)
    return df.assign(score=scores_one.ravel())


def regress_frames(base: np.ndarray, cand: np.ndarray, ok_b: np.ndarray, ok_c: np.ndarray):
    """One replicate (metrics, prompts, seeds, levels) as baseline and candidate tables with
    metrics m0, m1, ... and a `strategy` axis; failed tasks are status `nan` without scores."""
    out = []
    for values, ok in ((base, ok_b), (cand, ok_c)):
        df = _frame(*values.shape[1:])
        df["status"] = np.where(ok.ravel(), "ok", "nan")
        for k, v in enumerate(values):
            df[f"m{k}"] = np.where(ok.ravel(), v.ravel(), np.nan)
        out.append(df)
    return out


def write_run(run_dir: Path | str, df: pd.DataFrame, axes: dict | None = None,
              higher_is_better: dict | None = None, parts: int = 1) -> Path:
    """A results table as a run directory that `load_run`, `compare` and `regress` read: results
    parts carrying the scorer directions in their metadata, and a job.yaml naming the axes."""
    run = Path(run_dir)
    (run / "results").mkdir(parents=True, exist_ok=True)
    meta = {"animagine_batch": json.dumps(
        {"scorers": {"sim": {"higher_is_better": higher_is_better or {}}}})}
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    step = -(-len(df) // parts) or 1
    for i, lo in enumerate(range(0, max(len(df), 1), step)):
        pq.write_table(table.slice(lo, step), run / "results" / f"part-{i:06d}-sim.parquet")
    (run / "job.yaml").write_text(yaml.safe_dump({"job": {"sweep": {"grid": axes or {}}}}))
    return run


def write_image_run(run_dir: Path | str, prompts: int, seeds: int, effects, size: int = 64,
                    distinct_images: int | None = None, seed: int = 0) -> Path:
    """A run directory with PNG images: `simulate.scores` as `aesthetic_score` over a `strategy`
    axis, a noisy `clip_score`, and one PNG (with an A1111 `parameters` chunk) per row, or per
    row of a pool of `distinct_images` shared by the rows (for very large synthetic runs)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    rng = np.random.default_rng(seed)
    s = scores(rng, 1, prompts, seeds, effects)[0]
    df = compare_frame(s).rename(columns={"score": "aesthetic_score"})
    df["aesthetic_score"] = df["aesthetic_score"].astype("float32")
    df["clip_score"] = (20 + 5 * rng.standard_normal(len(df))).astype("float32")
    df["job"] = Path(run_dir).name
    df["content_prompt"] = [f"1girl, character {p[1:]}, smile" for p in df["prompt_key"]]
    df["prompt"] = df["strategy"] + ", " + df["content_prompt"]
    df["width"] = df["height"] = size
    images = Path(run_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    pool = len(df) if distinct_images is None else min(distinct_images, len(df))
    paths, shas = [], []
    for i in range(pool):
        r = df.iloc[i]
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8) // 4 + \
            np.uint8(int(191 * float(r["aesthetic_score"])))
        info = PngInfo()
        info.add_text("parameters", f"{r['prompt']}\nNegative prompt: \nSteps: 28, Sampler: "
                                    f"Euler a, CFG scale: 7, Seed: {r['seed']}, Size: {size}x{size}")
        path = images / f"{r['task_id']}.png"
        Image.fromarray(pixels).save(path, pnginfo=info, compress_level=1)
        paths.append(f"images/{path.name}")
        shas.append(hashlib.sha256(path.read_bytes()).hexdigest())
    df["image_path"] = [paths[i % pool] for i in range(len(df))]
    df["image_sha256"] = [shas[i % pool] for i in range(len(df))]
    levels = [f"s{k}" for k in range(len(effects))]
    return write_run(run_dir, df, {"strategy": levels},
                     {"aesthetic_score": True, "clip_score": True})
