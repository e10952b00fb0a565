"""A1111 emphasis syntax and long prompts (weighting.py) on the tiny SDXL's two text encoders."""

import numpy as np
import pytest
import torch

from animagine_batch.jobspec import tags as T
from animagine_batch.jobspec import emphasis as W
from animagine_batch.jobspec import sweep
from conftest import one_unit, pixels

W11, W09 = 1.1, round(1 / 1.1, 6)


def test_recommended_negative_parses_into_text_weight_pairs():
    assert W.parse(T.NAMED_NEGATIVES["recommended"]) == [[
        ("nsfw, lowres, ", 1.0), ("bad", W11),
        (", text, error, fewer, extra, missing, worst quality, jpeg artifacts, low quality, "
         "watermark, unfinished, displeasing, oldest, early, chromatic aberration, signature, "
         "extra digits, artistic error, username, scan, ", 1.0),
        ("abstract", W09)]]


@pytest.mark.parametrize("text, expected", [
    ("(x)", [("x", 1.1)]),
    ("((x))", [("x", 1.21)]),
    ("[x]", [("x", W09)]),
    ("(x:1.3)", [("x", 1.3)]),
    ("((x:1.5))", [("x", 1.65)]),
    ("(low quality, worst quality:1.2)", [("low quality, worst quality", 1.2)]),
    (r"fate \(series\)", [("fate (series)", 1.0)]),
    (r"\[x\] \\ y", [("[x] \\ y", 1.0)]),
    ("a: b", [("a: b", 1.0)]),
    ("(unclosed", [("unclosed", 1.1)]),
    ("a BREAK b", [("a", 1.0), (None, -1.0), ("b", 1.0)]),
    ("1girl, [(red hair) (blue eyes)], smile", [("1girl, red hair blue eyes, smile", 1.0)]),
    ("[(a) ]", [("a ", 1.0)]),
])
def test_a1111_syntax(text, expected):
    assert W.parse_fragments(text) == expected


def test_escaped_parentheses_stay_literal_and_break_splits_segments():
    assert W.parse(r"naruto \(series\), (smile) BREAK solo") == [
        [("naruto (series), ", 1.0), ("smile", 1.1)], [("solo", 1.0)]]
    assert W.plain_text(r"naruto \(series\), (smile:1.4) BREAK solo") == \
        "naruto (series), smile solo"


@pytest.fixture(scope="module")
def encoder(tiny_generator):
    return tiny_generator.passes.encoder


def test_plain_short_prompts_equal_the_pipelines_own_encoding(tiny_generator, encoder):
    n, (pe, pp, ne, npool) = encoder.encode_pair("1girl, smile, outdoors", "lowres, text")
    with torch.no_grad():
        a, b, c, d = tiny_generator.pipe.encode_prompt(
            "1girl, smile, outdoors", device="cpu", num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt="lowres, text")
    assert n == 77
    for mine, theirs in ((pe, a), (ne, b), (pp, c), (npool, d)):
        assert torch.equal(mine, theirs[0])


def test_an_up_weighted_tag_scales_its_offset_from_the_empty_prompt(encoder):
    base, _ = encoder.encode("1girl, smile")
    strong, _ = encoder.encode("1girl, (smile:1.5)")
    stronger, _ = encoder.encode("1girl, (smile:2.0)")
    tokens = encoder.providers[0].get_token_ids(["1girl, smile"])[0]
    pos = tokens.index(encoder.providers[0].get_token_ids(["smile"], False)[0][0])
    changed = (strong != base).any(dim=-1).nonzero().flatten().tolist()
    assert changed == [pos]  # only the weighted token moves
    empty = torch.cat([p.empty_z[0] for p in encoder.providers], dim=-1)
    expected = empty[pos] + 1.5 * (base[pos] - empty[pos])
    assert torch.allclose(strong[pos], expected, atol=1e-5)
    # linear in the weight: doubling (w - 1) doubles the move
    assert torch.allclose(stronger[pos] - base[pos], 2 * (strong[pos] - base[pos]), atol=1e-5)


def test_a_down_weighted_tag_moves_towards_the_prompt_without_it(encoder):
    base, _ = encoder.encode("1girl, smile, outdoors")
    weak, _ = encoder.encode("1girl, [smile], outdoors")
    weaker, _ = encoder.encode("1girl, (smile:0.3), outdoors")
    assert (weak - base).abs().sum() < (weaker - base).abs().sum()
    assert (weak - base).abs().max() > 0


def test_tokens_after_position_77_change_the_embedding(tiny_generator, encoder):
    words = ["red"] * 45  # "red, " is two tokens: 89 tokens in all
    long_a = ", ".join(words + ["smile"])
    long_b = ", ".join(words + ["frown"])
    ea, pa = encoder.encode(long_a)
    eb, pb = encoder.encode(long_b)
    assert ea.shape[0] == eb.shape[0] == 2 * 77
    assert not torch.equal(ea[77:], eb[77:])  # the late token is encoded (second chunk)
    assert torch.equal(pa, pb)  # pooled from the first chunk only
    with torch.no_grad():  # plain diffusers truncates: the late token is lost
        ta = tiny_generator.pipe.encode_prompt(long_a, device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=False)[0]
        tb = tiny_generator.pipe.encode_prompt(long_b, device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=False)[0]
    assert torch.equal(ta, tb)


def test_weighted_whitespace_encodes(encoder):
    for text in ("1girl, [(red hair) (blue eyes)], smile", "( :0.5), smile", "[(a) ]"):
        e, _ = encoder.encode(text)
        assert e.shape[0] == 77


def test_break_starts_a_new_chunk(encoder):
    e, _ = encoder.encode("1girl BREAK smile")
    assert e.shape[0] == 2 * 77
    second, _ = encoder.encode("smile")
    assert torch.equal(e[77:], second)


def test_prompt_and_negative_are_padded_to_the_same_length(encoder):
    long = ", ".join(["red"] * 45)
    n, (pe, _, ne, _) = encoder.encode_pair("1girl", long)
    assert n == 154 and pe.shape == ne.shape
    assert torch.equal(pe[77:], encoder.empty_chunk())


def test_weighting_none_and_a1111_agree_on_plain_prompts(tiny_generator, tasks):
    plain = [t._replace(negative_prompt="lowres, text") for t in tasks[:2]]
    a = tiny_generator(one_unit([t._replace(weighting="a1111") for t in plain]))
    b = tiny_generator(one_unit([t._replace(weighting="none") for t in plain]))
    for pa, pb in zip(a.pngs, b.pngs):
        assert np.array_equal(pixels(pa), pixels(pb))
    assert b"Emphasis: None" in b.pngs[0] and b"Emphasis" not in a.pngs[0]


def test_emphasis_changes_the_image_and_batching_never_changes_a_task(tiny_generator, tasks):
    t0 = tasks[0]
    assert "(bad)" in t0.negative_prompt  # the card's negative: emphasis matters by default
    a1111 = tiny_generator(one_unit([t0]))
    literal = tiny_generator(one_unit([t0._replace(weighting="none")]))
    assert a1111.pngs[0] != literal.pngs[0]
    long = t0._replace(prompt=t0.prompt + ", " + ", ".join(["red"] * 45), task_id="long")
    mixed = tiny_generator(one_unit([long, t0]))  # two embedding lengths: two calls, no padding
    assert mixed.rows[1]["status"] == "ok"
    assert np.abs(pixels(mixed.pngs[1]) - pixels(a1111.pngs[0])).max() <= 2
    assert mixed.pngs[0] != mixed.pngs[1]


def test_weighting_is_part_of_the_task_id(compose):
    a = compose("demo", "sweep.grid={}", "prompt.weighting=a1111")
    b = compose("demo", "sweep.grid={}", "prompt.weighting=none")
    from animagine_batch.jobspec import prompt_sets as P
    from conftest import REPO

    ps = P.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"])
    ids_a = {t.task_id for t in sweep.expand(a, ps, {"tiny": "x"})}
    ids_b = {t.task_id for t in sweep.expand(b, ps, {"tiny": "x"})}
    assert ids_a and not ids_a & ids_b


def test_unknown_weighting_is_refused(tmp_path):
    from conftest import run_cli

    r = run_cli("run", "jobs/demo.yaml", "--dry-run", "prompt.weighting=compel",
                f"output.root={tmp_path}")
    assert r.returncode == 2
    assert "prompt.weighting: 'compel' is not one of a1111, none" in r.stderr
