"""CLIP tokenizer files built offline from the real CLIP BPE that ships inside open_clip, so
token ids match real CLIP (SPEC.md section 5)."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from ..cache import build_once, cache_dir

VERSION = 1  # of the saved tokenizer folder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocab (49,408 entries) and merges from open_clip's bundled BPE file."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    units = list(_bytes_to_unicode().values())
    tokens = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def make_tokenizer(pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], pad_token=pad_token,
                         model_max_length=77)


def tokenizer_dir() -> Path:
    """A saved CLIP tokenizer (identical to SDXL's first tokenizer) for token counting."""
    return build_once(cache_dir() / "tokenizers" / f"clip-v{VERSION}",
                      lambda folder: make_tokenizer().save_pretrained(folder))
