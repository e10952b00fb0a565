"""Animagine XL 3.1 vocabulary: special tags, demo-app presets, negatives, tag normalisation.

Everything here is data from the model card and the model's public demo app (see SPEC.md, section 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUALITY_TAGS = (
    "masterpiece",
    "best quality",
    "great quality",
    "good quality",
    "normal quality",
    "low quality",
    "worst quality",
)
RATING_TAGS = ("safe", "sensitive", "nsfw", "explicit, nsfw")
# The WD tagger's four ratings are the card's four rating tags: the one mapping between them.
WD_RATING_TAG = {"general": "safe", "sensitive": "sensitive", "questionable": "nsfw",
                 "explicit": "explicit, nsfw"}
YEAR_TAGS = ("newest", "recent", "mid", "early", "oldest")
AESTHETIC_TAGS = ("very aesthetic", "aesthetic", "displeasing", "very displeasing")

# Danbooru's resolution tag used in the card's recommended quality suffix; not a special tag.
EXTRA_QUALITY_TAGS = ("absurdres",)

SPECIAL_TAG_GROUPS: dict[str, tuple[str, ...]] = {
    "quality": QUALITY_TAGS,
    "rating": RATING_TAGS,
    "year": YEAR_TAGS,
    "aesthetic": AESTHETIC_TAGS,
}
ALL_SPECIAL_TAGS = frozenset(
    t.strip() for group in SPECIAL_TAG_GROUPS.values() for v in group for t in v.split(",")
) | frozenset(EXTRA_QUALITY_TAGS)

RECOMMENDED_QUALITY = "masterpiece, best quality, very aesthetic, absurdres"
RECOMMENDED_NEGATIVE = (
    "nsfw, lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg artifacts, "
    "low quality, watermark, unfinished, displeasing, oldest, early, chromatic aberration, "
    "signature, extra digits, artistic error, username, scan, [abstract]"
)

# Card buckets of the aesthetic score: half-open bins (SPEC.md: the authors' strict bins were a bug).
AESTHETIC_CUTS = (0.27, 0.45, 0.71)


@dataclass(frozen=True)
class Preset:
    name: str  # the demo app's display name
    positive: str  # template with {prompt}
    negative: str


QUALITY_PRESETS = (
    Preset("(None)", "{prompt}", "nsfw, lowres"),
    Preset(
        "Standard v3.0",
        "{prompt}, masterpiece, best quality",
        "nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, "
        "fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, "
        "signature, watermark, username, blurry, artist name",
    ),
    Preset("Standard v3.1", "{prompt}, " + RECOMMENDED_QUALITY, RECOMMENDED_NEGATIVE),
    Preset(
        "Light v3.1",
        "{prompt}, (masterpiece), best quality, very aesthetic, perfect face",
        "nsfw, (low quality, worst quality:1.2), very displeasing, 3d, watermark, signature, "
        "ugly, poorly drawn",
    ),
    Preset(
        "Heavy v3.1",
        "{prompt}, (masterpiece), (best quality), (ultra-detailed), very aesthetic, illustration, "
        "disheveled hair, perfect composition, moist skin, intricate details",
        "nsfw, longbody, lowres, bad anatomy, bad hands, missing fingers, pubic hair, extra digit, "
        "fewer digits, cropped, worst quality, low quality, very displeasing",
    ),
)

STYLE_PRESETS = (
    Preset("(None)", "{prompt}", ""),
    Preset(
        "Cinematic",
        "{prompt}, cinematic still, emotional, harmonious, vignette, highly detailed, high budget, "
        "bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
        "nsfw, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, "
        "mutated, ugly, disfigured",
    ),
    Preset(
        "Photographic",
        "{prompt}, cinematic photo, 35mm photograph, film, bokeh, professional, 4k, highly detailed",
        "nsfw, drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, "
        "deformed, ugly",
    ),
    Preset(
        "Anime",
        "{prompt}, anime artwork, anime style, key visual, vibrant, studio anime, highly detailed",
        "nsfw, photo, deformed, black and white, realism, disfigured, low contrast",
    ),
    Preset(
        "Manga",
        "{prompt}, manga style, vibrant, high-energy, detailed, iconic, Japanese comic style",
        "nsfw, ugly, deformed, noisy, blurry, low contrast, realism, photorealistic, "
        "Western comic style",
    ),
    Preset(
        "Digital Art",
        "{prompt}, concept art, digital artwork, illustrative, painterly, matte painting, "
        "highly detailed",
        "nsfw, photo, photorealistic, realism, ugly",
    ),
    Preset(
        "Pixel art",
        "{prompt}, pixel-art, low-res, blocky, pixel art style, 8-bit graphics",
        "nsfw, sloppy, messy, blurry, noisy, highly detailed, ultra textured, photo, realistic",
    ),
    Preset(
        "Fantasy art",
        "{prompt}, ethereal fantasy concept art, magnificent, celestial, ethereal, painterly, epic, "
        "majestic, magical, fantasy art, cover art, dreamy",
        "nsfw, photographic, realistic, realism, 35mm film, dslr, cropped, frame, text, deformed, "
        "glitch, noise, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, "
        "disfigured, sloppy, duplicate, mutated, black and white",
    ),
    Preset(
        "Neonpunk",
        "{prompt}, neonpunk style, cyberpunk, vaporwave, neon, vibes, vibrant, stunningly beautiful, "
        "crisp, detailed, sleek, ultramodern, magenta highlights, dark purple shadows, high contrast, "
        "cinematic, ultra detailed, intricate, professional",
        "nsfw, painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, "
        "disfigured",
    ),
    Preset(
        "3D Model",
        "{prompt}, professional 3d model, octane render, highly detailed, volumetric, "
        "dramatic lighting",
        "nsfw, ugly, deformed, noisy, low poly, blurry, painting",
    ),
)

NAMED_NEGATIVES = {"none": "", "recommended": RECOMMENDED_NEGATIVE}

# Danbooru kaomoji tags keep their underscores and parentheses (list used by the WD tagger demos).
KAOMOJI = frozenset(
    "0_0 (o)_(o) +_+ +_- ._. <o>_<o> <|>_<|> =_= >_< 3_3 6_9 >_o @_@ ^_^ o_o u_u x_x |_| ||_||".split()
)


def slug(name: str) -> str:
    """`Standard v3.1` -> `standard_v3_1`; `(None)` -> `none`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def preset_names(presets: tuple[Preset, ...]) -> list[str]:
    return [slug(p.name) for p in presets]


def find_preset(presets: tuple[Preset, ...], name: str) -> Preset | None:
    """Look a preset up by display name or slug, case-insensitively."""
    key = slug(str(name))
    for p in presets:
        if slug(p.name) == key:
            return p
    return None


def split_tags(text: str) -> list[str]:
    """Split a comma-separated tag string, ignoring commas escaped or inside brackets (and
    inside `{a, b|c}` variants of dynamicprompts syntax)."""
    parts, depth, buf, i = [], 0, [], 0
    closing = text.rfind("}")  # a `{` with no `}` after it is text (the kaomoji `:{`)
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch in "([" or (ch == "{" and i < closing):
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def field_text(value) -> str | None:
    """A prompt-set field (`subject`, `character`, `series`) or a text cell read back from a
    results table: its text, or None when it is missing. pandas reads a null string as None, NaN
    or NA (all truthy or unorderable), so anything that is not a non-blank string is missing."""
    if isinstance(value, str):
        return value.strip() or None
    return None


def _wrapped_in_emphasis(tag: str) -> bool:
    if len(tag) < 2 or (tag[0], tag[-1]) not in (("(", ")"), ("[", "]")):
        return False
    depth = 0
    for i, ch in enumerate(tag):
        if ch in "([" and (i == 0 or tag[i - 1] != "\\"):
            depth += 1
        elif ch in ")]" and tag[i - 1] != "\\":
            depth -= 1
            if depth == 0 and i != len(tag) - 1:
                return False  # `(a) and (b)`: closes before the end
    return True


def normalise_tag(tag: str) -> str:
    """One Danbooru tag to prompt form: underscores to spaces, parentheses escaped.

    Kaomoji (`^_^`, `(o)_(o)`) are kept as they are, and a tag wholly wrapped in A1111 emphasis
    (`(red eyes:1.2)`, `[abstract]`) keeps its brackets as syntax.
    """
    tag = tag.strip()
    if tag in KAOMOJI:
        return tag
    if _wrapped_in_emphasis(tag):
        return tag[0] + normalise_tag_body(tag[1:-1]) + tag[-1]
    return normalise_tag_body(tag)


def normalise_tag_body(tag: str) -> str:
    weight = ""
    m = re.fullmatch(r"(.*?)(:\s*[0-9.]+)", tag)
    if m and not m.group(1).endswith("\\"):
        tag, weight = m.group(1), m.group(2)
    if tag in KAOMOJI:
        return tag + weight
    if _wrapped_in_emphasis(tag):
        return normalise_tag(tag) + weight
    tag = tag.replace("_", " ")
    tag = re.sub(r"(?<!\\)([()])", r"\\\1", tag)
    return re.sub(r"\s+", " ", tag).strip() + weight


def strip_emphasis(text: str) -> str:
    """A1111 prompt text to plain text: drop `(`, `)`, `[`, `]`, `:1.2` weights and `BREAK`;
    unescape `\\(` to `(`."""
    out = re.sub(r"(?<!\\):\s*-?[0-9]*\.?[0-9]+\s*(?=[)\]])", "", text)
    out = re.sub(r"(?<!\\)[()\[\]]", "", out)
    out = re.sub(r"\bBREAK\b", ",", out)
    out = out.replace("\\(", "(").replace("\\)", ")").replace("\\[", "[").replace("\\]", "]")
    return ", ".join(t.strip() for t in out.split(",") if t.strip())


def aesthetic_tag(score: float, cuts: tuple[float, float, float] = AESTHETIC_CUTS) -> str:
    """The card's aesthetic bucket for a score, with half-open bins (low, high]."""
    if score != score:  # NaN
        return ""
    if score > cuts[2]:
        return "very aesthetic"
    if score > cuts[1]:
        return "aesthetic"
    if score > cuts[0]:
        return "displeasing"
    return "very displeasing"


def parse_special(group: str, value: str) -> list[str]:
    """Validate the value of a special-tag field (`none`, one tag, or a comma list of the group's
    tags) and return its tags. Raises ValueError listing the allowed values."""
    text = str(value).strip()
    if text.lower() in ("", "none"):
        return []
    allowed = SPECIAL_TAG_GROUPS[group]
    if group == "rating":
        if text == "explicit":
            text = "explicit, nsfw"
        if text in allowed:
            return [text]
        raise ValueError(f"unknown rating tag {value!r}; allowed: none, " + ", ".join(
            repr(a) for a in allowed))
    extra = EXTRA_QUALITY_TAGS if group == "quality" else ()
    tags = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tags if t not in allowed and t not in extra]
    if bad:
        raise ValueError(
            f"unknown {group} tag {', '.join(map(repr, bad))}; allowed: none, "
            + ", ".join(allowed + extra)
        )
    return tags


def prompted_rating(tags) -> str | None:
    """The card's rating tag that a prompt's tags ask for, the most explicit first (`explicit`
    stands for `explicit, nsfw`); None when it has none."""
    found = {t.strip() for t in tags}
    for tag in reversed(RATING_TAGS):
        if tag.split(",")[0] in found:
            return tag
    return None
