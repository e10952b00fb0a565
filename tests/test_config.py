"""Job files compose with conf/ through Hydra and validate; bad input lists every problem."""


import pytest

from animagine_batch import cli
from animagine_batch.errors import ConfigError
from conftest import REPO, run_cli

JOBS = sorted((REPO / "jobs").glob("*.yaml"))


@pytest.mark.parametrize("job", JOBS, ids=[j.stem for j in JOBS])
def test_every_job_file_composes_and_validates(job):
    spec, raw, _ = cli.load_spec(str(job), [])
    assert spec.name == job.stem
    assert spec.sweep.axes, "every job sweeps something"
    if job.stem not in ("demo", "prompt_power", "tag_control_tiny"):  # offline, tiny model
        assert spec.model.id == "cagliostrolab/animagine-xl-3.1"
        assert spec.model.vae == "madebyollin/sdxl-vae-fp16-fix"


def test_resolutions_job_has_the_nine_buckets(compose):
    spec = compose("resolutions")
    assert spec.sweep.levels("size") == ("1024x1024", "1152x896", "896x1152", "1216x832",
                                         "832x1216", "1344x768", "768x1344", "1536x640",
                                         "640x1536")


def test_overrides_use_hydra_grammar(compose, tmp_path):
    spec = compose("demo", "generation.cfg=6", "sweep.seeds=[3,9]", f"output.root={tmp_path}",
                   "sweep.grid={steps:[2,3]}", "prompt.year=newest", "sampler=ddim")
    assert spec.generation.cfg == 6 and spec.sweep.seeds == (3, 9)
    assert spec.sweep.grid == (("steps", (2, 3)),)
    assert spec.run_dir == tmp_path / "demo"
    assert spec.prompt.year == "newest" and spec.generation.sampler == "ddim"


def test_every_problem_is_listed_with_its_key(compose):
    with pytest.raises(ConfigError) as e:
        compose("demo", "generation.width=100", "generation.steps=0", "sweep.grid.cfg=[0]",
                "generation.sampler=euler_b", "prompt.quality=masterpeice", "prompt.preset=fancy",
                "prompts=nosuchset", "sweep.grid.height=[1023]", "max_tasks=5",
                "+generaton.steps=3")
    text = "\n".join(e.value.problems)
    for needle in [
        "generation.width: 100 is not a multiple of 8",
        "generation.steps: 0 must be >= 1",
        "sweep.grid.cfg[0]: cfg 0 must be > 0",
        "generation.sampler: unknown sampler 'euler_b'; allowed: euler_a (Euler a)",
        "prompt.quality: unknown quality tag 'masterpeice'",
        "prompt.preset: unknown preset 'fancy'",
        "prompts: unknown prompt set 'nosuchset'",
        "sweep.grid.height[0]: 1023 is not a multiple of 8",
        "generaton: unknown key; allowed: name, prompts",
    ]:
        assert needle in text, needle
    assert len(e.value.problems) >= 9


def test_real_model_size_limits_and_max_tasks(compose):
    with pytest.raises(ConfigError) as e:
        compose("quality_tags", "generation.width=256", "sweep.seeds=100000", "generation.cfg=0")
    text = "\n".join(e.value.problems)
    assert "generation.cfg: cfg 0 must be > 0" in text
    assert "generation.width: 256 is outside 512-2048" in text
    assert "max_tasks: the sweep has 33,000,000 tasks, more than max_tasks=100,000" in text
    assert compose("quality_tags", "sweep.seeds=1000", "max_tasks=1000000").max_tasks == 1_000_000


def test_axis_errors(compose):
    with pytest.raises(ConfigError) as e:
        compose("demo", "sweep.zip={cfg:[1,2],steps:[2]}", "sweep.grid.colour=[red]",
                "sweep.grid.model=[tiny,nomodel]", "sweep.seeds=[1,1]")
    text = "\n".join(e.value.problems)
    assert "sweep.zip.cfg: is also a grid axis" in text
    assert "sweep.zip: lists must have equal lengths: cfg=2, steps=1" in text
    assert "sweep.grid.colour: unknown axis; allowed: model, sampler" in text
    assert "sweep.grid.model[1]: unknown model 'nomodel'" in text
    assert "sweep.seeds: repeats a seed" in text


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = run_cli("run", "jobs/demo.yaml", f"output.root={out}", "generation.steps=0",
                "prompt.rating=general")
    assert r.returncode == 2
    assert "generation.steps: 0 must be >= 1" in r.stderr
    assert "prompt.rating: unknown rating tag 'general'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_malformed_job_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: [base, _self_]\nname: x\ngeneration: {steps: 3\n")
    r = run_cli("run", str(bad), f"output.root={tmp_path / 'o'}")
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", "jobs/demo.yaml", "generation.nosuchkey=3")
    assert r.returncode == 2 and "nosuchkey" in r.stderr
    r = run_cli("run", "nosuchjob")
    assert r.returncode == 2 and "packaged jobs: cfg_steps, dataset_synthesis, demo" in r.stderr


def test_runner_optimisation_options_are_validated(tmp_path):
    from conftest import run_cli

    r = run_cli("run", "jobs/demo.yaml", "--dry-run", "pipeline.optimise=fast",
                f"output.root={tmp_path}")
    assert r.returncode == 2
    assert "pipeline.optimise: 'fast' is not one of auto, on, none" in r.stderr
    assert not (tmp_path / "demo").exists()


def test_a_zip_axis_may_repeat_a_level_but_not_a_position(compose):
    spec = compose("tag_control_tiny")
    assert spec.sweep.levels("quality") == ("none", "masterpiece", "worst quality")
    assert len(spec.sweep.zip[0][1]) == 8
    with pytest.raises(ConfigError, match=r"sweep.zip: repeats a position \(cfg, steps\)"):
        compose("demo", "sweep.grid={}", "sweep.zip={cfg:[5,7,5],steps:[2,3,2]}")
    with pytest.raises(ConfigError, match="sweep.grid.cfg: repeats a level"):
        compose("demo", "sweep.grid={cfg:[5,5]}")


def test_the_sampler_configs_are_the_sampler_table():
    """`sampler=NAME` picks conf/sampler/NAME.yaml: there is one per row of the sampler table,
    named by its key, and each sets generation.sampler to that key."""
    import yaml

    from animagine_batch.jobspec.samplers import SAMPLERS

    configs = {p.stem: p.read_text() for p in (REPO / "conf" / "sampler").glob("*.yaml")}
    assert sorted(configs) == sorted(s.key for s in SAMPLERS)
    for name, text in configs.items():
        assert text.splitlines()[0] == "# @package generation"
        assert yaml.safe_load(text) == {"sampler": name}


def test_cfg_cutoff_is_validated_and_enters_task_ids_only_when_on(compose, demo_tasks):
    with pytest.raises(ConfigError) as e:
        compose("demo", "generation.cfg_cutoff=1.5", "sweep.grid.cfg_cutoff=[none,-0.1,abc,0.5]")
    problems = [p for p in e.value.problems if "cfg_cutoff" in p]
    allowed = "must be none or 0 (off) or a number in (0, 1]"
    assert problems == [f"generation.cfg_cutoff: 1.5 {allowed}: the fraction of the steps after "
                        "which classifier-free guidance stops",
                        f"sweep.grid.cfg_cutoff[1]: -0.1 {allowed}: the fraction of the steps "
                        "after which classifier-free guidance stops",
                        f"sweep.grid.cfg_cutoff[2]: 'abc' {allowed}: the fraction of the steps "
                        "after which classifier-free guidance stops"]
    from animagine_batch.jobspec import prompt_sets, sweep

    def ids(*overrides):
        spec = compose("demo", "sweep.grid={}", *overrides)
        ps = prompt_sets.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"])
        return [t.task_id for t in sweep.expand(spec, ps, {"tiny": "x"})]

    assert ids() == ids("generation.cfg_cutoff=0") == ids("generation.cfg_cutoff=null")
    assert set(ids("generation.cfg_cutoff=0.5")).isdisjoint(ids())
    spec = compose("demo", "sweep.grid={cfg_cutoff:[0,none,0.5]}")
    assert spec.sweep.levels("cfg_cutoff") == (0, "none", 0.5)


def test_a_bad_cfg_cutoff_exits_2_naming_the_key(tmp_path):
    r = run_cli("run", str(REPO / "jobs" / "demo.yaml"), f"output.root={tmp_path}",
                "generation.cfg_cutoff=2")
    assert r.returncode == 2 and "generation.cfg_cutoff: 2 must be none or 0 (off)" in r.stderr
