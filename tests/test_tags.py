import pytest

from animagine_batch.jobspec import tags as T


def test_special_tag_vocabulary_is_the_cards():
    assert T.QUALITY_TAGS == ("masterpiece", "best quality", "great quality", "good quality",
                              "normal quality", "low quality", "worst quality")
    assert T.RATING_TAGS == ("safe", "sensitive", "nsfw", "explicit, nsfw")
    assert T.YEAR_TAGS == ("newest", "recent", "mid", "early", "oldest")
    assert T.AESTHETIC_TAGS == ("very aesthetic", "aesthetic", "displeasing", "very displeasing")


def test_presets_verbatim():
    names = [p.name for p in T.QUALITY_PRESETS]
    assert names == ["(None)", "Standard v3.0", "Standard v3.1", "Light v3.1", "Heavy v3.1"]
    assert [p.name for p in T.STYLE_PRESETS] == [
        "(None)", "Cinematic", "Photographic", "Anime", "Manga", "Digital Art", "Pixel art",
        "Fantasy art", "Neonpunk", "3D Model"]
    std31 = T.find_preset(T.QUALITY_PRESETS, "standard_v3_1")
    assert std31.positive == "{prompt}, masterpiece, best quality, very aesthetic, absurdres"
    assert std31.negative == T.RECOMMENDED_NEGATIVE
    assert T.RECOMMENDED_NEGATIVE.startswith("nsfw, lowres, (bad), text, error, fewer, extra")
    assert T.RECOMMENDED_NEGATIVE.endswith("username, scan, [abstract]")
    light = T.find_preset(T.QUALITY_PRESETS, "Light v3.1")
    assert light.negative == ("nsfw, (low quality, worst quality:1.2), very displeasing, 3d, "
                              "watermark, signature, ugly, poorly drawn")
    assert T.find_preset(T.STYLE_PRESETS, "3D Model").positive.endswith("dramatic lighting")


@pytest.mark.parametrize("raw, expected", [
    ("souryuu_asuka_langley", "souryuu asuka langley"),
    ("fate_(series)", r"fate \(series\)"),
    ("naruto_(series)", r"naruto \(series\)"),
    (r"fate \(series\)", r"fate \(series\)"),  # already escaped: unchanged
    ("^_^", "^_^"),
    ("(o)_(o)", "(o)_(o)"),
    ("(red_eyes:1.2)", "(red eyes:1.2)"),  # emphasis syntax kept as syntax
    ("[abstract]", "[abstract]"),
    ("((masterpiece))", "((masterpiece))"),
])
def test_normalise_tag(raw, expected):
    assert T.normalise_tag(raw) == expected


def test_strip_emphasis():
    assert T.strip_emphasis(r"(masterpiece), ((best quality)), [abstract], (red eyes:1.3), "
                            r"fate \(series\)") == "masterpiece, best quality, abstract, red eyes, fate (series)"
    assert T.strip_emphasis("a BREAK b") == "a, b"


@pytest.mark.parametrize("score, tag", [
    (0.0, "very displeasing"), (0.27, "very displeasing"), (0.2700001, "displeasing"),
    (0.45, "displeasing"), (0.4500001, "aesthetic"), (0.71, "aesthetic"),
    (0.7100001, "very aesthetic"), (1.0, "very aesthetic"),
])
def test_aesthetic_bins_are_half_open(score, tag):
    assert T.aesthetic_tag(score) == tag


def test_unknown_special_tag_lists_allowed_values():
    with pytest.raises(ValueError) as e:
        T.parse_special("quality", "masterpeice")
    assert "'masterpeice'" in str(e.value) and "best quality" in str(e.value)
    with pytest.raises(ValueError, match="'explicit, nsfw'"):
        T.parse_special("rating", "general")
    assert T.parse_special("rating", "explicit") == ["explicit, nsfw"]
    assert T.parse_special("quality", "masterpiece, best quality, absurdres") == [
        "masterpiece", "best quality", "absurdres"]
    assert T.parse_special("year", "none") == []


def test_split_tags_respects_brackets():
    assert T.split_tags("a, (b, c:1.2), d") == ["a", "(b, c:1.2)", "d"]


def test_an_unclosed_brace_is_text_not_a_variant():
    assert T.split_tags("1girl, :{, smile, outdoors") == ["1girl", ":{", "smile", "outdoors"]
    assert T.split_tags("a, {b, c|d}, e") == ["a", "{b, c|d}", "e"]


def test_field_text_treats_what_pandas_reads_for_null_as_missing():
    import pandas as pd

    for missing in (None, float("nan"), pd.NA, "", "  ", 3):
        assert T.field_text(missing) is None
    assert T.field_text(" #compass ") == "#compass"
    column = pd.Series(["vocaloid", None], dtype="str")  # a results column with a null
    assert [T.field_text(v) for v in column] == ["vocaloid", None]
