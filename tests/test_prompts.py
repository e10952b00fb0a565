from pathlib import Path

import pytest

from animagine_batch.jobspec import prompt_sets as S
from animagine_batch.jobspec import prompts as P
from animagine_batch.jobspec import tags as T
from animagine_batch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DIRS = [REPO / "conf" / "prompt_sets"]
ASUKA = S.PromptEntry(key="asuka", subject="1girl", character="souryuu_asuka_langley",
                      series="neon_genesis_evangelion", tags=("solo", "upper_body"))


def test_template_order_prepend_and_append():
    opts = P.PromptOptions(quality="masterpiece, best quality", aesthetic="very aesthetic",
                           rating="safe", year="newest", negative="none")
    pre = P.build(ASUKA, opts)
    assert pre.prompt == ("masterpiece, best quality, very aesthetic, 1girl, souryuu asuka langley, "
                          "neon genesis evangelion, solo, upper body, safe, newest")
    app = P.build(ASUKA, P.PromptOptions(**{**opts.__dict__, "tag_position": "append"}))
    assert app.prompt == ("1girl, souryuu asuka langley, neon genesis evangelion, solo, upper body, "
                          "safe, masterpiece, best quality, very aesthetic, newest")
    assert pre.negative == app.negative == ""


def test_presets_compose_like_the_demo_app():
    built = P.build(ASUKA, P.PromptOptions(preset="Standard v3.1", style="anime",
                                           negative="lowres, extra user negative"))
    assert built.prompt == ("1girl, souryuu asuka langley, neon genesis evangelion, solo, upper body, "
                            "masterpiece, best quality, very aesthetic, absurdres, anime artwork, "
                            "anime style, key visual, vibrant, studio anime, highly detailed")
    style_neg = T.find_preset(T.STYLE_PRESETS, "Anime").negative
    assert built.negative == f"{style_neg}, {T.RECOMMENDED_NEGATIVE}, lowres, extra user negative"


def test_none_preset_adds_nothing_but_the_apps_none_preset_keeps_its_negative():
    assert P.build(ASUKA, P.PromptOptions(negative="none")).negative == ""
    assert P.build(ASUKA, P.PromptOptions(preset="(None)", negative="none")).negative == "nsfw, lowres"


def test_content_prompt_drops_special_tags_presets_and_emphasis():
    entry = S.PromptEntry(key="x", subject="1girl", character="artoria_pendragon_(fate)",
                          tags=("(red_eyes:1.2)", "masterpiece", "smile"))
    built = P.build(entry, P.PromptOptions(quality="best quality", rating="sensitive",
                                           preset="heavy_v3_1", style="cinematic"))
    assert built.content == "1girl, artoria pendragon (fate), red eyes, smile"
    assert r"artoria pendragon \(fate\)" in built.prompt


def test_unknown_values_are_errors_listing_the_allowed():
    problems = P.check_options(P.PromptOptions(quality="best", preset="standard", style="anim",
                                               tag_position="middle", negative="recomended_neg"))
    text = "\n".join(problems)
    assert "quality: unknown quality tag 'best'" in text
    assert "'Standard v3.1'" in text and "'Anime'" in text
    assert "tag_position: 'middle' is not one of prepend, append" in text
    assert "negative: unknown named negative 'recomended_neg'" in text


def test_character_set_has_fifty_well_formed_entries():
    ps = S.load_prompt_set("characters", DIRS)
    assert len(ps.entries) >= 50
    for e in ps.entries:
        assert e.subject in ("1girl", "1boy") and e.character and e.series
    assert len({e.key for e in ps.entries}) == len(ps.entries)


def test_yaml_and_csv_user_sets(tmp_path):
    csv_set = S.load_prompt_set(str(REPO / "conf" / "prompt_sets" / "example.csv"), DIRS)
    assert [e.key for e in csv_set.entries] == ["frieren", "luffy", "landscape"]
    assert csv_set.entries[0].tags == ("solo", "elf", "white hair", "outdoors")
    assert csv_set.entries[2].subject is None
    y = tmp_path / "mine.yaml"
    y.write_text("- {character: hatsune_miku, series: vocaloid}\n- 1girl, solo, smile\n")
    ys = S.load_prompt_set(str(y), DIRS)
    assert [e.key for e in ys.entries] == ["hatsune_miku", "p0001"]
    assert ys.entries[1].tags == ("1girl", "solo", "smile")


def test_bad_prompt_sets(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown prompt set 'nope'; named sets: .*characters"):
        S.load_prompt_set("nope", DIRS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts:\n  - {charactr: x}\n")
    with pytest.raises(ConfigError, match=r"entry 0 has unknown field\(s\) charactr"):
        S.load_prompt_set(str(bad), DIRS)
    dup = tmp_path / "dup.yaml"
    dup.write_text("- {id: a, character: x}\n- {id: a, character: y}\n")
    with pytest.raises(ConfigError, match="share the id 'a'"):
        S.load_prompt_set(str(dup), DIRS)
    broken = tmp_path / "broken.yaml"
    broken.write_text("prompts: [a, b\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        S.load_prompt_set(str(broken), DIRS)
