"""Sweep expansion is pure and deterministic; ids are content hashes; units batch correctly."""

from animagine_batch.jobspec import prompt_sets as P
from animagine_batch.jobspec import sweep
from conftest import REPO

DIRS = [REPO / "conf" / "prompt_sets"]
IDS = {"tiny": "embedded:tiny-x", "tiny_b": "embedded:tiny-y"}


def expand(spec):
    return sweep.expand(spec, P.load_prompt_set(spec.prompts, DIRS), IDS)


def test_grid_zip_seeds_order_and_count(compose):
    spec = compose("demo", "sweep.grid={quality:[none,masterpiece],cfg:[5,7]}",
                   "sweep.zip={steps:[2,3,4],sampler:[euler,ddim,euler_a]}", "sweep.seeds=[7,8]")
    tasks = expand(spec)
    assert len(tasks) == 3 * 2 * 2 * 3 * 2
    first = tasks[:6]
    assert [t.seed for t in first] == [7, 8, 7, 8, 7, 8]
    assert [(t.steps, t.sampler) for t in first[::2]] == [(2, "euler"), (3, "ddim"), (4, "euler_a")]
    assert dict(tasks[6].axes)["cfg"] == 7 and dict(tasks[12].axes)["quality"] == "masterpiece"
    assert [t.prompt_key for t in tasks[::24]] == ["miku", "naruto", "asuka"]
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert expand(spec) == tasks  # deterministic


def test_seeds_count_from_base(compose):
    tasks = expand(compose("demo", "sweep.seeds=3", "sweep.base_seed=100", "sweep.grid={}"))
    assert [t.seed for t in tasks[:3]] == [100, 101, 102]


def test_task_id_depends_on_what_makes_the_image_only(compose):
    a = {t.task_id for t in expand(compose("demo"))}
    assert a == {t.task_id for t in expand(compose("demo", "generation.batch_size=1",
                                                   "output.root=/elsewhere", "name=other"))}
    for override in ["sweep.base_seed=5", "prompt.year=newest", "generation.steps=3",
                     "generation.width=128", "generation.sampler=ddim", "prompt.negative=none"]:
        assert not a & {t.task_id for t in expand(compose("demo", override))}, override
    spec = compose("demo")
    other_model = sweep.expand(spec, P.load_prompt_set("demo", DIRS), {"tiny": "embedded:other"})
    assert not a & {t.task_id for t in other_model}


def test_size_axis_sets_width_and_height(compose):
    tasks = expand(compose("demo", "sweep.grid={size:[64x128,128x64]}", "sweep.seeds=1"))
    assert {(t.width, t.height) for t in tasks} == {(64, 128), (128, 64)}
    assert dict(tasks[0].axes) == {"size": "64x128"}


def test_units_group_by_model_sampler_steps_cfg_size(compose):
    spec = compose("demo", "sweep.grid={cfg:[5,7],size:[64x64,64x128]}", "sweep.seeds=3",
                   "generation.batch_size=4")
    tasks = expand(spec)
    units = sweep.units(tasks, 4)
    assert sum(len(u.tasks) for u in units) == len(tasks)
    assert sorted(t.task_id for u in units for t in u.tasks) == sorted(t.task_id for t in tasks)
    for u in units:
        assert 1 <= len(u.tasks) <= 4
        assert {(t.model, t.sampler, t.steps, t.cfg, t.width, t.height) for t in u.tasks} == {
            (u.model, u.sampler, u.steps, u.cfg, u.width, u.height)}
    # 4 groups of 9 tasks -> 3 units each (4 + 4 + 1)
    assert [len(u.tasks) for u in units] == [4, 4, 1] * 4
    assert sweep.units(tasks, 4) == units


def test_units_order_models_first():
    base = dict(index=0, prompt_key="k", subject=None, character=None, series=None, prompt="p",
                negative_prompt="", content_prompt="", sampler="euler_a", steps=2, cfg=7.0,
                width=64, height=64, seed=0, axes=())
    t = [sweep.Task(task_id=str(i), model=m, **base) for i, m in enumerate(["a", "b", "a", "b"])]
    t[1] = t[1]._replace(steps=3)
    units = sweep.units(t, 8)
    assert [u.model for u in units] == ["a", "b", "b"]


def test_sample_draws_a_seeded_subset_of_the_sweep(compose):
    full = expand(compose("demo", "sweep.grid={cfg:[5,6,7],tags:[smile,'crying, rain']}",
                          "sweep.seeds=4"))
    spec = compose("demo", "sweep.grid={cfg:[5,6,7],tags:[smile,'crying, rain']}", "sweep.seeds=4",
                   "sweep.sample=10")
    a, b = expand(spec), expand(spec)
    assert len(a) == 10 and a == b  # rerunning draws the same tasks
    assert {t.task_id for t in a} <= {t.task_id for t in full}
    assert [t.index for t in a] == list(range(10))
    other = expand(compose("demo", "sweep.grid={cfg:[5,6,7],tags:[smile,'crying, rain']}",
                           "sweep.seeds=4", "sweep.sample=10", "sweep.base_seed=100"))
    assert {t.seed for t in other} <= set(range(100, 104))
    assert len(expand(compose("demo", "sweep.seeds=1", "sweep.sample=1000"))) == 12  # all of them
    assert "crying, rain" in " ".join(t.prompt for t in full)
    assert any(t.content_prompt.endswith("smile, crying, rain") or
               t.content_prompt.endswith("crying, rain") for t in full)
