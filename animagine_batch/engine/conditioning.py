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

        class Layer(EmbeddingsProvider):
            """compel's provider taking the hidden states `clip_skip` layers from the end."""

            clip_skip = 2

            def _encode_token_ids_to_embeddings(self, token_ids, attention_mask=None):
                out = self.text_encoder(token_ids, attention_mask, output_hidden_states=True,
                                        return_dict=True)
                if self.clip_skip >= len(out.hidden_states):
                    raise ValueError(f"clip skip {self.clip_skip}: the text encoder has "
                                     f"{len(out.hidden_states) - 1} layers")
                return out.hidden_states[-self.clip_skip]

        def providers(clip_skip: int) -> list:
            made = []
            for tok, enc in ((pipe.tokenizer, pipe.text_encoder),
                             (pipe.tokenizer_2, pipe.text_encoder_2)):
                p = (EmbeddingsProvider if clip_skip == 2 else Layer)(
                    tokenizer=tok, text_encoder=enc, truncate=False,
                    returned_embeddings_type=ReturnedEmbeddingsType
                    .PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,  # hidden_states[-2]: clip skip 2
                    split_long_text_mode=SplitLongTextMode.PHRASES, device=self.device)
                p.clip_skip = clip_skip
                made.append(p)
            return made

        self.pipe = pipe
        self.device = pipe.text_encoder_2.device
        self._providers = providers
        self.layers = {2: providers(2)}  # clip skip -> a provider per encoder
        self.providers = self.layers[2]
        self.cache: OrderedDict = OrderedDict()
        self.cache_size = cache_size
        self._empty: dict = {}

    def clear(self) -> None:
        """Forget every embedding (the text encoders changed, e.g. a LoRA was switched)."""
        self.cache.clear()
        self._empty = {}

    def _layer(self, clip_skip: int) -> list:
        if clip_skip not in self.layers:
            self.layers[clip_skip] = self._providers(clip_skip)
        return self.layers[clip_skip]

    def _segment(self, fragments: list[tuple[str, float]], clip_skip: int = 2):
        import torch

        texts, weights = [t for t, _ in fragments], [w for _, w in fragments]
        parts = [p.get_embeddings_for_weighted_prompt_fragments([texts], [weights],
                                                                device=self.device)[0]
                 for p in self._layer(clip_skip)]
        n = max(x.shape[0] for x in parts)  # both tokenizers share CLIP's BPE: equal lengths
        parts = [_pad(x, n, e) for x, e in zip(parts, self._empty_chunks(clip_skip))]
        return torch.cat(parts, dim=-1)

    def _pooled(self, fragments: list[tuple[str, float]]):
        p = self.providers[1]
        ids, _, _ = p.get_token_ids_and_expand_weights([t for t, _ in fragments],
                                                       [w for _, w in fragments], self.device)
        out = p.text_encoder(ids[: p.max_token_count].unsqueeze(0), return_dict=True)
        return out.text_embeds[0]

    def _empty_chunks(self, clip_skip: int = 2) -> list:
        """Each encoder's 77-position embedding of the empty prompt (padding)."""
        import torch

        if clip_skip not in self._empty:
            with torch.no_grad():
                self._empty[clip_skip] = [p.get_embeddings_for_weighted_prompt_fragments(
                    [[""]], [[1.0]], device=self.device)[0] for p in self._layer(clip_skip)]
        return self._empty[clip_skip]

    def empty_chunk(self, clip_skip: int = 2):
        """The 77 x (dim1 + dim2) embedding of the empty prompt, used as padding."""
        import torch

        return torch.cat(self._empty_chunks(clip_skip), dim=-1)

    def encode(self, text: str, clip_skip: int = 2):
        """(embeds [n*77, dim], pooled [dim2]) of one prompt. `clip_skip` (webui's count)
        chooses the hidden states both encoders give; the pooled embedding is the second
        encoder's final one, as in webui and diffusers."""
        import torch

        hit = self.cache.get((text, clip_skip))
        if hit is not None:
            self.cache.move_to_end((text, clip_skip))
            return hit
        with torch.no_grad():
            segments = parse(text)
            embeds = torch.cat([self._segment(seg, clip_skip) for seg in segments], dim=0)
            pooled = self._pooled(segments[0])
        self.cache[(text, clip_skip)] = (embeds, pooled)
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return embeds, pooled

    def encode_pair(self, prompt: str, negative: str, clip_skip: int = 2) -> tuple[int, tuple]:
        """(positions, (embeds, pooled, negative embeds, negative pooled)) of one task. An empty
        negative is encoded as the empty prompt, as the pipeline does for `negative_prompt=""`."""
        pos, pos_pooled = self.encode(prompt, clip_skip)
        neg, neg_pooled = self.encode(negative, clip_skip)
        n = max(pos.shape[0], neg.shape[0])
        if pos.shape[0] != neg.shape[0]:
            pad = self.empty_chunk(clip_skip)
            pos, neg = _pad(pos, n, pad), _pad(neg, n, pad)
        return n, (pos, pos_pooled, neg, neg_pooled)

    def plain(self, prompts: list[str], negatives: list[str], clip_skip: int) -> dict:
        """`none` weighting at another clip skip than 2: diffusers' own encoding of the texts
        (truncated at 77 tokens, brackets literal) with its `clip_skip` (N - 2 in webui's
        count), the negatives encoded the same way (the pipeline would give them layer -2)."""
        import torch

        with torch.no_grad():
            pos, _, pooled, _ = self.pipe.encode_prompt(
                prompts, device=self.device, do_classifier_free_guidance=False,
                clip_skip=clip_skip - 2)
            neg, _, neg_pooled, _ = self.pipe.encode_prompt(
                negatives, device=self.device, do_classifier_free_guidance=False,
                clip_skip=clip_skip - 2)
        return {"prompt_embeds": pos, "pooled_prompt_embeds": pooled,
                "negative_prompt_embeds": neg, "negative_pooled_prompt_embeds": neg_pooled}

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
                groups.setdefault(("none", t.clip_skip), []).append((i, None))
            else:
                n, pair = self.encode_pair(t.prompt, t.negative_prompt, t.clip_skip)
                groups.setdefault(("a1111", t.clip_skip, n), []).append((i, pair))
        for key, members in groups.items():
            idx = [i for i, _ in members]
            if key[0] == "a1111":
                yield idx, self.stack([p for _, p in members])
                continue
            prompts = [tasks[i].prompt for i in idx]
            negatives = [tasks[i].negative_prompt for i in idx]
            if key[1] == 2:  # the pipeline's own encoding
                yield idx, {"prompt": prompts, "negative_prompt": negatives}
            else:
                yield idx, self.plain(prompts, negatives, key[1])
