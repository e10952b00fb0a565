"""clip scorer on its offline stand-in (tiny_clip: registered tiny open_clip config, weights file)."""

import numpy as np
import pytest
from PIL import Image

from animagine_batch.errors import ConfigError
from animagine_batch.scorers.clip import ClipScorer

CONTENT = "1girl, hatsune miku, vocaloid, solo, smile"
FULL = "masterpiece, best quality, very aesthetic, 1girl, hatsune miku, vocaloid, solo, smile, safe"


def images(n=4):
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer("tiny_clip", {"embedded": "tiny", "batch_size": 3, "store_embeddings": True},
                      "cpu")


def test_columns_types_and_ranges(scorer):
    rows = [{"content_prompt": CONTENT, "prompt": FULL}] * 4
    out = scorer(images(), rows)
    assert set(out) == set(ClipScorer.columns({"store_embeddings": True}))
    cos, score = np.array(out["clip_cosine"]), np.array(out["clip_score"])
    assert ((cos >= -1) & (cos <= 1)).all()
    assert np.allclose(score, 100 * np.maximum(cos, 0), atol=1e-4)
    emb = [np.frombuffer(b, dtype=np.float16) for b in out["clip_image_embedding"]]
    assert all(e.shape == (32,) for e in emb)
    assert np.allclose([np.linalg.norm(e.astype(np.float32)) for e in emb], 1, atol=1e-2)
    assert out["clip_truncated"] == [False] * 4


def test_scores_the_content_prompt_not_the_special_tags(scorer):
    ims = images(2)
    img, txt_content = scorer.embed(ims, [CONTENT] * 2)
    _, txt_full = scorer.embed(ims, [FULL] * 2)
    out = scorer(ims, [{"content_prompt": CONTENT, "prompt": FULL}] * 2)
    assert np.allclose(out["clip_cosine"], (img * txt_content).sum(1), atol=1e-5)
    assert not np.allclose(out["clip_cosine"], (img * txt_full).sum(1), atol=1e-4)


def test_truncation_is_flagged(scorer):
    long = ", ".join(f"tag number {i}" for i in range(40))
    assert scorer.truncated(long) and not scorer.truncated(CONTENT)
    out = scorer(images(2), [{"content_prompt": long}, {"content_prompt": CONTENT}])
    assert out["clip_truncated"] == [True, False]


def test_missing_weights_name_the_scorer():
    with pytest.raises(ConfigError) as e:
        ClipScorer("clip", {"model": "ViT-H-14", "pretrained": "/no/such/weights.pt"}, "cpu")
    assert "scorer 'clip'" in str(e.value) and "scorer.clip.pretrained=" in str(e.value)


def test_half_precision_casts_the_input_to_the_layers_dtype(scorer):
    """open_clip's fp16 keeps embeddings and norms in float32, so the first parameter's dtype is
    not the input's: a GPU run cast to it failed every unit. fp16 on the CPU runs the same code."""
    half = ClipScorer("tiny_clip", {"embedded": "tiny", "precision": "fp16"}, "cpu")
    assert str(half.dtype) == "torch.float16"
    rows = [{"content_prompt": CONTENT}] * 3
    got, want = half(images(3), rows), scorer(images(3), rows)
    assert np.allclose(got["clip_cosine"], want["clip_cosine"], atol=2e-2)


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        ClipScorer.check("tiny_clip", {"embedded": "tiny", "precision": "fp8"})
    assert "scorer.tiny_clip.precision: 'fp8'" in str(e.value) and "bf16" in str(e.value)
