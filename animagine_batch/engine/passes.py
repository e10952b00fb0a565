"""How a unit becomes pipeline calls: prompt conditioning (`conditioning.py`), the unit's LoRA
set (`loras.py`) and the optional hi-res pass, on one loaded SDXL pipeline."""

from __future__ import annotations

import warnings

from ..jobspec.sweep import Unit
from ..jobspec.values import hires_side
from . import compiling, loras, noise
from .conditioning import SDXLPromptEncoder
from .pixels import Pixels


def cfg_cutoff(ratio: float):
    """diffusers' `SDXLCFGCutoffCallback` at `ratio` of the steps (after step
    int(steps x ratio) the pipeline stops guiding), for batches of any size: diffusers' own keeps
    the last row of the conditioning (`[-1:]`), which fails for a batch of more than one image,
    where this keeps the conditional half (the second half of the negative-then-positive batch)."""
    from diffusers.callbacks import SDXLCFGCutoffCallback

    class BatchCFGCutoff(SDXLCFGCutoffCallback):
        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            cutoff = int(pipeline.num_timesteps * self.config.cutoff_step_ratio)
            if step_index == cutoff and pipeline.do_classifier_free_guidance:
                for name in self.tensor_inputs:
                    x = callback_kwargs[name]
                    callback_kwargs[name] = x[x.shape[0] // 2:]
                pipeline._guidance_scale = 0.0
            return callback_kwargs

    return BatchCFGCutoff(cutoff_step_ratio=float(ratio))


class Passes:
    def __init__(self, pipe):
        self.pipe = pipe
        self.encoder = SDXLPromptEncoder(pipe)
        self.adapters = loras.LoraAdapters(pipe)
        self._img2img = None
        self.tape = True  # pre-drawn noise for the base pass (noise.py)
        self.pad_to: int | None = None  # a compiled UNet's batch: smaller calls are padded
        self._untaped: set = set()  # (sampler, steps) whose draws the tape did not predict

    def images(self, unit: Unit) -> Pixels:
        """The 8-bit images of a unit's tasks, in task order (scheduler already set)."""
        import torch

        if self.adapters.use(unit.loras):
            self.encoder.clear()  # a LoRA may change the text encoders
        calls = []
        for idx, prompt_args in self.encoder.batches(unit.tasks):
            gens = [torch.Generator("cpu").manual_seed(unit.tasks[i].seed) for i in idx]
            if self.pad_to:  # the compiled shape; the padding images are dropped
                prompt_args, gens = compiling.pad(prompt_args, gens, self.pad_to,
                                                  unit.tasks[idx[-1]].seed)
            decoded = self._run(unit, prompt_args, gens)[: len(idx)]
            calls.append((idx, Pixels.from_tensor(decoded)))
        return Pixels.gather(calls, len(unit.tasks))

    @property
    def img2img(self):
        """The hi-res pass's img2img pipeline, sharing every component with the main one."""
        if self._img2img is None:
            from diffusers import StableDiffusionXLImg2ImgPipeline

            self._img2img = StableDiffusionXLImg2ImgPipeline(**self.pipe.components,
                                                             add_watermarker=False)
            self._img2img.set_progress_bar_config(disable=True)
        self._img2img.scheduler = self.pipe.scheduler
        return self._img2img

    def _run(self, unit: Unit, prompt_args: dict, generators: list):
        """Decoded images [n, 3, H, W] in [0, 1] on the device: one pipeline call, then (with `unit.hires`) the upscale and img2img pass with the
        same CFG, steps and generators, as the demo app does."""
        import torch

        common = {"num_inference_steps": unit.steps, "guidance_scale": unit.cfg,
                  "generator": generators, **prompt_args}
        if unit.cfg_cutoff is not None:
            common["callback_on_step_end"] = cfg_cutoff(unit.cfg_cutoff)
        if unit.hires is None:
            return self._base(unit, common, "pt")
        scale, strength, upscaler = unit.hires
        latents = self._base(unit, common, "latent")
        factor = self.pipe.vae_scale_factor  # 8 for SDXL
        size = (hires_side(unit.height, scale) // factor, hires_side(unit.width, scale) // factor)
        latents = torch.nn.functional.interpolate(latents, size=size, mode=upscaler)
        return self.img2img(image=latents, strength=strength, output_type="pt", **common).images

    def _base(self, unit: Unit, common: dict, output_type: str):
        """The base pass's images, its noise served from a `noise.NoiseTape` (same bytes, no
        host copy inside the loop). A tape whose draws do not match the call's is dropped: the
        generators go back to their saved state and the call runs without it."""
        def call():
            return self.pipe(width=unit.width, height=unit.height, output_type=output_type,
                             **common).images

        key = (unit.sampler, unit.steps)
        if not self.tape or key in self._untaped:
            return call()
        generators = common["generator"]
        embeds = common.get("prompt_embeds")
        dtype = embeds.dtype if embeds is not None else self.pipe.text_encoder_2.dtype
        factor = self.pipe.vae_scale_factor
        shape = (self.pipe.unet.config.in_channels, unit.height // factor, unit.width // factor)
        states = [g.get_state() for g in generators]
        try:
            tape = noise.tape_for(self.pipe, generators, shape, unit.steps, dtype)
            with tape.served(noise.modules_of(self.pipe)):
                return call()
        except noise.NoiseTapeError as e:
            warnings.warn(f"pre-drawn noise not used for {unit.sampler} at {unit.steps} steps: "
                          f"{e}", RuntimeWarning, stacklevel=2)
            self._untaped.add(key)
            for g, state in zip(generators, states):
                g.set_state(state)
            return call()
