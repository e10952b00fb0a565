"""Prompt conditioning: A1111-syntax prompts (parsed by `jobspec/emphasis.py`) and long prompts on
both SDXL text encoders.

`SDXLPromptEncoder` turns prompts into the embeddings `StableDiffusionXLPipeline` accepts
(`prompt_embeds`, `pooled_prompt_embeds` and their negatives): the parsed fragments and weights
go straight to compel's `EmbeddingsProvider`, which tokenizes them, splits long prompts into
75-token chunks (at a comma where it can, so a tag is never cut in half), encodes every chunk
and applies the weights. compel's weighting: a weight above 1 scales a token's offset from the
empty-prompt embedding; a weight below 1 blends towards the prompt with that fragment masked
out. The pooled embedding comes from the first chunk, unweighted, as A1111 and ComfyUI do.
"""

from __future__ import annotations

from collections import OrderedDict

from ..jobspec.emphasis import parse


def _pad(x, n: int, chunk):
    """`x` [k*77, dim] extended to `n` positions with copies of `chunk` [77, dim]."""
    import torch

    if x.shape[0] == n:
        return x
    return torch.cat([x, chunk.repeat((n - x.shape[0]) // chunk.shape[0], 1)])


class SDXLPromptEncoder:
    """Embeddings for A1111-syntax prompts on an SDXL pipeline's two text encoders.

    A prompt of n chunks gives `prompt_embeds` of n x 77 positions; a prompt and its negative
    are padded with empty-prompt chunks to the same length, so a task's embeddings never depend
    on the other prompts in its batch (`encode_pair` returns the length; callers batch only
    pairs of equal length). Results are cached per text: sweeps repeat prompts many times.
    """

    def __init__(self, pipe, cache_size: int = 256):
        from compel.embeddings_provider import (EmbeddingsProvider, ReturnedEmbeddingsType,
                                                SplitLongTextMode)

        self.device = pipe.text_encoder_2.device
        self.providers = [
            EmbeddingsProvider(tokenizer=tok, text_encoder=enc, truncate=False,
                               returned_embeddings_type=ReturnedEmbeddingsType
                               .PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                               split_long_text_mode=SplitLongTextMode.PHRASES,
                               device=self.device)
            for tok, enc in ((pipe.tokenizer, pipe.text_encoder),
                             (pipe.tokenizer_2, pipe.text_encoder_2))]
        self.cache: OrderedDict = OrderedDict()
        self.cache_size = cache_size
        self._empty = None

    def clear(self) -> None:
        """Forget every embedding (the text encoders changed, e.g. a LoRA was switched)."""
        self.cache.clear()
        self._empty = None

    def _segment(self, fragments: list[tuple[str, float]]):
        import torch

        texts, weights = [t for t, _ in fragments], [w for _, w in fragments]
        parts = [p.get_embeddings_for_weighted_prompt_fragments([texts], [weights],
                                                                device=self.device)[0]
                 for p in self.providers]
        n = max(x.shape[0] for x in parts)  # both tokenizers share CLIP's BPE: equal lengths
        parts = [_pad(x, n, e) for x, e in zip(parts, self._empty_chunks())]
        return torch.cat(parts, dim=-1)

    def _pooled(self, fragments: list[tuple[str, float]]):
        p = self.providers[1]
        ids, _, _ = p.get_token_ids_and_expand_weights([t for t, _ in fragments],
                                                       [w for _, w in fragments], self.device)
        out = p.text_encoder(ids[: p.max_token_count].unsqueeze(0), return_dict=True)
        return out.text_embeds[0]

    def _empty_chunks(self) -> list:
        """Each encoder's 77-position embedding of the empty prompt (padding)."""
        import torch

        if self._empty is None:
            with torch.no_grad():
                self._empty = [p.get_embeddings_for_weighted_prompt_fragments(
                    [[""]], [[1.0]], device=self.device)[0] for p in self.providers]
        return self._empty

    def empty_chunk(self):
        """The 77 x (dim1 + dim2) embedding of the empty prompt, used as padding."""
        import torch

        return torch.cat(self._empty_chunks(), dim=-1)

    def encode(self, text: str):
        """(embeds [n*77, dim], pooled [dim2]) of one prompt."""
        import torch

        hit = self.cache.get(text)
        if hit is not None:
            self.cache.move_to_end(text)
            return hit
        with torch.no_grad():
            segments = parse(text)
            embeds = torch.cat([self._segment(seg) for seg in segments], dim=0)
            pooled = self._pooled(segments[0])
        self.cache[text] = (embeds, pooled)
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return embeds, pooled

    def encode_pair(self, prompt: str, negative: str) -> tuple[int, tuple]:
        """(positions, (embeds, pooled, negative embeds, negative pooled)) of one task. An empty
        negative is encoded as the empty prompt, as the pipeline does for `negative_prompt=""`."""
        pos, pos_pooled = self.encode(prompt)
        neg, neg_pooled = self.encode(negative)
        n = max(pos.shape[0], neg.shape[0])
        if pos.shape[0] != neg.shape[0]:
            pad = self.empty_chunk()
            pos, neg = _pad(pos, n, pad), _pad(neg, n, pad)
        return n, (pos, pos_pooled, neg, neg_pooled)

    @staticmethod
    def stack(pairs: list[tuple]) -> dict:
        """Pipeline keyword arguments for a batch of `encode_pair` results of equal length."""
        import torch

        names = ("prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds",
                 "negative_pooled_prompt_embeds")
        return {name: torch.stack([p[i] for p in pairs]) for i, name in enumerate(names)}

    def batches(self, tasks):
        """(task indices, prompt arguments) per pipeline call. `none` weighting passes the texts
        (plain diffusers: brackets literal, truncated at 77 tokens); `a1111` passes embeddings,
        one call per embedding length, so a task's conditioning never depends on its batch."""
        groups: dict[tuple, list] = {}
        for i, t in enumerate(tasks):
            if t.weighting == "none":
                groups.setdefault(("none",), []).append((i, None))
            else:
                n, pair = self.encode_pair(t.prompt, t.negative_prompt)
                groups.setdefault(("a1111", n), []).append((i, pair))
        for key, members in groups.items():
            idx = [i for i, _ in members]
            if key[0] == "none":
                yield idx, {"prompt": [tasks[i].prompt for i in idx],
                            "negative_prompt": [tasks[i].negative_prompt for i in idx]}
            else:
                yield idx, self.stack([p for _, p in members])
