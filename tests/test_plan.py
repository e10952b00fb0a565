"""The plan: the prompt set as validation read it, expanded into tasks."""

from animagine_batch import cli, driver
from animagine_batch.jobspec.prompt_sets import PromptLibrary
from conftest import REPO


def entries(n: int, prefix: str) -> str:
    return "prompts:\n" + "".join(f"  - {{id: {prefix}{i}, subject: 1girl, tags: [{prefix}{i}]}}\n"
                                   for i in range(n))


def test_the_plan_expands_the_entries_validation_counted(tmp_path):
    """A prompt set is read once per invocation: grown past max_tasks after the job was
    validated, the file does not change the plan, whose tasks are the counted entries."""
    ps = tmp_path / "set.yaml"
    ps.write_text(entries(2, "a"))
    spec, _, prompt_sets = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), [
        f"prompts={ps}", "sweep.grid={}", "sweep.seeds=1", "max_tasks=2"])
    ps.write_text(entries(50, "b"))
    plan = driver.make_plan(spec, prompt_sets)
    assert [t.prompt_key for t in plan.tasks] == ["a0", "a1"]
    assert [e.key for e in plan.prompt_set.entries] == ["a0", "a1"]
    assert len(PromptLibrary(prompt_sets.dirs).load(str(ps)).entries) == 50  # a new invocation


def test_wildcard_variants_counted_are_the_variants_planned():
    spec, _, prompt_sets = cli.load_spec(str(REPO / "jobs" / "prompt_power.yaml"), [])
    plan = driver.make_plan(spec, prompt_sets)
    keys = {t.prompt_key for t in plan.tasks}
    assert {e.key for e in plan.prompt_set.entries} == keys and len(keys) > 3
    assert any("~" in k for k in keys)  # expanded variants, not the templates
    assert not any("{" in t.prompt or "__" in t.prompt for t in plan.tasks)
