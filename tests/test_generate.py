"""Generation: per-image seeds, batch independence, status rows, samplers built from config."""

import numpy as np
import pytest

from animagine_batch.engine.pixels import Pixels
from animagine_batch.engine.schedulers import build_scheduler
from animagine_batch.jobspec import samplers
from conftest import one_unit, pixels


def test_image_is_the_same_alone_and_in_a_batch(tiny_generator, tasks):
    target = tasks[0]
    alone = tiny_generator(one_unit([target]))
    batch = tiny_generator(one_unit([tasks[5], target, tasks[3], tasks[10]]))
    assert [r["status"] for r in batch.rows] == ["ok"] * 4
    a, b = pixels(alone.pngs[0]), pixels(batch.pngs[1])
    assert np.abs(a - b).max() <= 2
    again = tiny_generator(one_unit([tasks[5], target, tasks[3], tasks[10]]))
    assert again.pngs == batch.pngs  # same composition: byte-identical
    assert [r["image_sha256"] for r in again.rows] == [r["image_sha256"] for r in batch.rows]


def test_out_of_memory_halves_the_batch_down_to_what_fits(tiny_generator, tasks, monkeypatch):
    four = tasks[:4]
    alone = [tiny_generator(one_unit([t])).pngs[0] for t in four]
    monkeypatch.setenv("ANIMAGINE_BATCH_INJECT_FAULT", "oom_above=1")  # only one image fits
    res = tiny_generator(one_unit(four))
    assert [r["status"] for r in res.rows] == ["ok"] * 4
    assert res.pngs == alone  # halved down to single images: each is its image alone
    monkeypatch.setenv("ANIMAGINE_BATCH_INJECT_FAULT", "oom_above=0")  # not even one fits
    res = tiny_generator(one_unit(four[:1]))
    assert res.rows[0]["status"] == "error" and res.pngs == [None]
    assert res.rows[0]["error"] == "RuntimeError: CUDA out of memory (injected)"


def test_seeds_are_per_image_never_shared_or_offset(tiny_generator, tasks):
    same_seed_other_prompt = [t for t in tasks if t.seed == tasks[0].seed and t is not tasks[0]][0]
    res = tiny_generator(one_unit([tasks[0], tasks[1]]))
    assert res.pngs[0] != res.pngs[1]
    # the second image of a batch is its own seed's image, not seed+1 of the first
    second_alone = tiny_generator(one_unit([tasks[1]]))
    assert np.abs(pixels(second_alone.pngs[0]) - pixels(res.pngs[1])).max() <= 2
    twin = same_seed_other_prompt._replace(prompt=tasks[0].prompt,
                   negative_prompt=tasks[0].negative_prompt, task_id="twin")
    res2 = tiny_generator(one_unit([tasks[0], twin]))
    assert np.abs(pixels(res2.pngs[0]) - pixels(res2.pngs[1])).max() <= 2


def test_rows_carry_the_contract_columns(tiny_generator, tasks):
    res = tiny_generator(one_unit(tasks[:2]))
    row = res.rows[0]
    assert row["status"] == "ok" and row["error"] is None
    assert row["image_path"] == f"images/{tasks[0].task_id}.png"
    assert row["sampler"] == "Euler a" and row["steps"] == 3 and row["seed"] == 11
    assert row["model"] == "embedded/tiny-sdxl" and row["gen_seconds"] > 0
    assert row["prompt_tokens"] > 10
    assert pixels(res.pngs[0]).shape == (64, 64, 3)


def test_exception_becomes_error_rows(tiny_generator, tasks, monkeypatch):
    def boom(unit_):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(tiny_generator.generation, "_generate", boom)
    res = tiny_generator(one_unit(tasks[:3]))
    assert [r["status"] for r in res.rows] == ["error"] * 3
    assert res.rows[0]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert res.pngs == [None] * 3


def test_nonfinite_and_blank_images_get_status_nan(tiny_generator, tasks, monkeypatch):
    images = np.random.default_rng(0).random((3, 64, 64, 3)).astype(np.float32)
    images[0, 5, 5, 1] = np.nan
    images[1] = 0.0
    monkeypatch.setattr(tiny_generator.generation, "_generate",
                        lambda unit_: Pixels.from_array(images))
    res = tiny_generator(one_unit(tasks[:3]))
    assert [r["status"] for r in res.rows] == ["nan", "nan", "ok"]
    assert "non-finite" in res.rows[0]["error"] and "blank" in res.rows[1]["error"]
    assert res.pngs[0] is None and res.pngs[1] is None and res.pngs[2] is not None


@pytest.mark.parametrize("sampler", samplers.SAMPLERS, ids=[s.key for s in samplers.SAMPLERS])
def test_samplers_keep_the_sdxl_betas(sampler, tiny_generator):
    sched = build_scheduler(sampler, tiny_generator.generation.base_scheduler_config)
    assert type(sched).__name__ == sampler.scheduler
    cfg = sched.config
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert cfg.steps_offset == 1 and cfg.timestep_spacing == "leading"
    for key, value in sampler.settings:
        assert cfg[key] == value


def test_every_sampler_generates(tiny_generator, tasks):
    for s in samplers.SAMPLERS:
        t = tasks[0]._replace(sampler=s.key, task_id=s.key)
        res = tiny_generator(one_unit([t]))
        assert res.rows[0]["status"] == "ok", (s.key, res.rows[0]["error"])
        assert res.rows[0]["sampler"] == s.name


def test_out_of_memory_halves_the_batch(tiny_generator, tasks, monkeypatch):
    calls = []
    real = tiny_generator.generation._generate

    def fake(unit_):
        calls.append(len(unit_.tasks))
        if len(unit_.tasks) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(unit_)

    monkeypatch.setattr(tiny_generator.generation, "_generate", fake)
    res = tiny_generator(one_unit(tasks[:4]))
    assert calls == [4, 2, 1, 1, 2, 1, 1]
    assert [r["status"] for r in res.rows] == ["ok"] * 4
    monkeypatch.undo()
    alone = tiny_generator(one_unit([tasks[2]]))
    assert res.pngs[2] == alone.pngs[0]  # generated alone after the split: the same bytes
    monkeypatch.setattr(tiny_generator.generation, "_generate", lambda u: (_ for _ in ()).throw(
        RuntimeError("CUDA out of memory")))
    res = tiny_generator(one_unit(tasks[:2]))
    assert [r["status"] for r in res.rows] == ["error"] * 2  # a single image that still fails


def test_cfg_cutoff_changes_pixels_when_on_and_nothing_when_off(tiny_generator, tasks):
    import torch

    two = [t._replace(cfg=30.0, steps=4) for t in tasks[:2]]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        off = tiny_generator(one_unit(two))
        on = tiny_generator(one_unit([t._replace(cfg_cutoff=0.25) for t in two]))
        last = tiny_generator(one_unit([t._replace(cfg_cutoff=1.0) for t in two]))
        alone = tiny_generator(one_unit([two[1]._replace(cfg_cutoff=0.25)]))
    finally:
        torch.set_num_threads(before)
    assert [r["status"] for r in on.rows] == ["ok", "ok"]
    for a, b in zip(on.pngs, off.pngs):
        assert np.abs(pixels(a) - pixels(b)).max() >= 2  # guidance stopped after step 1 of 4
    assert [pixels(p).tolist() for p in last.pngs] == [pixels(p).tolist() for p in off.pngs]
    # a batch keeps each image's own conditional half (diffusers' callback fails on batches)
    assert np.abs(pixels(alone.pngs[0]) - pixels(on.pngs[1])).max() <= 2


def test_cfg_cutoff_is_recorded_in_the_results_and_the_infotext(tmp_path):
    from analysis import load_run
    from animagine_batch import cli
    from animagine_batch.rundir.metadata import parse_infotext
    from conftest import REPO
    from PIL import Image

    base = ["run", str(REPO / "jobs" / "demo.yaml"), "runner=local", "runner.threads=1",
            "scorers=[]", "sweep.seeds=[1]", "generation.steps=2"]
    assert cli.main(base + [f"output.root={tmp_path / 'a'}",
                            "sweep.grid={cfg_cutoff:[none,0.5]}"]) == 0
    df = load_run(tmp_path / "a" / "demo")
    assert sorted(df.cfg_cutoff.unique()) == ["0.5", "none"] and (df.status == "ok").all()
    for level, want in (("0.5", "0.5"), ("none", None)):
        row = df[df.cfg_cutoff == level].iloc[0]
        text = Image.open(tmp_path / "a" / "demo" / row.image_path).info["parameters"]
        assert parse_infotext(text).get("CFG cutoff") == want
    assert cli.main(base + [f"output.root={tmp_path / 'b'}", "sweep.grid={}",
                            "generation.cfg_cutoff=0.5"]) == 0
    assert set(load_run(tmp_path / "b" / "demo").cfg_cutoff) == {"0.5"}  # set, not swept
    assert cli.main(base + [f"output.root={tmp_path / 'c'}", "sweep.grid={}"]) == 0
    assert "cfg_cutoff" not in load_run(tmp_path / "c" / "demo").columns  # off: no column
