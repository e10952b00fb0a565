"""`generation.clip_skip`, webui's Clip skip: the text encoders' hidden states N layers from the
end on both SDXL encoders, in both weighting modes; 2 (SDXL's own penultimate layer) is the
default, leaves task ids as they were and is left out of the infotext."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import clients
from animagine_batch.errors import ConfigError
from animagine_batch.jobspec import prompt_sets, sweep
from animagine_batch.rundir import metadata
from conftest import REPO, one_unit, pixels


def expand(spec):
    return sweep.expand(spec, prompt_sets.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"]),
                        {"tiny": "embedded:x"})


def test_default_is_sdxls_own_layer_and_keeps_task_ids(compose):
    base = compose("demo")
    assert base.generation.clip_skip == 2
    assert [t.task_id for t in expand(base)] == \
        [t.task_id for t in expand(compose("demo", "generation.clip_skip=2"))]
    one = expand(compose("demo", "generation.clip_skip=1"))
    assert {t.clip_skip for t in one} == {1}
    assert not {t.task_id for t in one} & {t.task_id for t in expand(base)}


def test_levels_are_checked_and_split_units(compose):
    with pytest.raises(ConfigError) as e:
        compose("demo", "sweep.grid.clip_skip=[0,13,two]", "generation.clip_skip=1.5")
    text = "\n".join(e.value.problems)
    assert "sweep.grid.clip_skip[0]: 0 must be >= 1" in text
    assert "sweep.grid.clip_skip[1]: clip skip 13 is more than 12" in text
    assert "sweep.grid.clip_skip[2]: 'two' is not an integer" in text
    assert "generation.clip_skip: 1.5 is not an integer" in text
    spec = compose("demo", "sweep.grid={clip_skip:[1,2]}", "sweep.seeds=1")
    tasks = expand(spec)
    units = sweep.units(tasks, 99)
    assert sorted(u.clip_skip for u in units) == [1, 2] and len(tasks) == 6
    assert all({t.clip_skip for t in u.tasks} == {u.clip_skip} for u in units)


def _hidden(pipe, text: str, layer: int) -> torch.Tensor:
    """Both encoders' hidden states `layer` from the end, computed here from the models."""
    out = []
    for tok, enc in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        ids = tok(text, padding="max_length", max_length=77, truncation=True,
                  return_tensors="pt").input_ids
        with torch.no_grad():
            out.append(enc(ids, output_hidden_states=True).hidden_states[-layer][0])
    return torch.cat(out, dim=-1)


@pytest.mark.parametrize("layer", [1, 3])
def test_a1111_weighting_takes_both_encoders_hidden_states_n_layers_from_the_end(
        tiny_generator, layer):
    encoder = tiny_generator.passes.encoder
    pipe = tiny_generator.pipe
    text = "1girl, solo, smile"
    embeds, pooled = encoder.encode(text, layer)
    assert torch.allclose(embeds, _hidden(pipe, text, layer), atol=1e-5)
    default, default_pooled = encoder.encode(text)
    assert torch.allclose(default, _hidden(pipe, text, 2), atol=1e-5)
    assert not torch.allclose(embeds, default, atol=1e-3)
    assert torch.equal(pooled, default_pooled)  # the pooled embedding stays the final one
    with pytest.raises(ValueError, match="clip skip 6: the text encoder has 5 layers"):
        encoder.encode(text, 6)


def test_none_weighting_skips_the_negative_too(tiny_generator, tasks):
    encoder = tiny_generator.passes.encoder
    pipe = tiny_generator.pipe
    t = [x._replace(weighting="none", clip_skip=1) for x in tasks[:2]]
    (idx, args), = encoder.batches(t)
    assert idx == [0, 1] and set(args) == {"prompt_embeds", "pooled_prompt_embeds",
                                           "negative_prompt_embeds",
                                           "negative_pooled_prompt_embeds"}
    assert torch.allclose(args["prompt_embeds"][0], _hidden(pipe, t[0].prompt, 1), atol=1e-5)
    assert torch.allclose(args["negative_prompt_embeds"][1],
                          _hidden(pipe, t[1].negative_prompt, 1), atol=1e-5)
    (_, plain), = encoder.batches([x._replace(clip_skip=2) for x in t])
    assert set(plain) == {"prompt", "negative_prompt"}  # the pipeline's own path at 2


def test_images_infotext_and_ids(tiny_generator, tasks):
    t = tasks[0]
    base = tiny_generator(one_unit([t]))
    for weighting in ("a1111", "none"):
        made = {n: tiny_generator(one_unit([t._replace(clip_skip=n, weighting=weighting,
                                                       task_id=f"{weighting}{n}")]))
                for n in (1, 2, 3)}
        for n, result in made.items():
            assert result.rows[0]["status"] == "ok", result.rows[0]["error"]
            image = Image.open(io.BytesIO(result.pngs[0]))
            info = clients.webui_parse(image.text["parameters"])
            assert info.get("Clip skip") == (None if n == 2 else str(n))
            assert metadata.parse_infotext(image.text["parameters"]).get("Clip skip") == \
                (None if n == 2 else str(n))
        assert not np.array_equal(pixels(made[1].pngs[0]), pixels(made[2].pngs[0]))
        assert not np.array_equal(pixels(made[3].pngs[0]), pixels(made[2].pngs[0]))
    assert pixels(made[2].pngs[0]).tolist() == pixels(tiny_generator(one_unit(
        [t._replace(weighting="none", task_id="n")])).pngs[0]).tolist()
    assert base.rows[0]["image_sha256"] == tiny_generator(one_unit([t._replace(
        clip_skip=2)])).rows[0]["image_sha256"]
