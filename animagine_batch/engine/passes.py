"""How a unit becomes pipeline calls: prompt conditioning (`conditioning.py`), the unit's LoRA
set (`loras.py`) and the optional hi-res pass, on one loaded SDXL pipeline."""

from __future__ import annotations

import numpy as np

from ..jobspec.sweep import Unit
from ..jobspec.values import hires_side
from . import loras
from .conditioning import SDXLPromptEncoder


class Passes:
    def __init__(self, pipe):
        self.pipe = pipe
        self.encoder = SDXLPromptEncoder(pipe)
        self.adapters = loras.LoraAdapters(pipe)
        self._img2img = None

    def images(self, unit: Unit) -> np.ndarray:
        """Float images [0, 1] of a unit's tasks, in task order (scheduler already set)."""
        import torch

        if self.adapters.use(unit.loras):
            self.encoder.clear()  # a LoRA may change the text encoders
        images: list = [None] * len(unit.tasks)
        for idx, prompt_args in self.encoder.batches(unit.tasks):
            gens = [torch.Generator("cpu").manual_seed(unit.tasks[i].seed) for i in idx]
            for i, image in zip(idx, self._run(unit, prompt_args, gens)):
                images[i] = image
        return np.stack(images)

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

    def _run(self, unit: Unit, prompt_args: dict, generators: list) -> np.ndarray:
        """One pipeline call, then (with `unit.hires`) the upscale and img2img pass with the
        same CFG, steps and generators, as the demo app does."""
        import torch

        common = {"num_inference_steps": unit.steps, "guidance_scale": unit.cfg,
                  "generator": generators, **prompt_args}
        if unit.hires is None:
            return np.asarray(self.pipe(width=unit.width, height=unit.height, output_type="np",
                                        **common).images)
        scale, strength, upscaler = unit.hires
        latents = self.pipe(width=unit.width, height=unit.height, output_type="latent",
                            **common).images
        factor = self.pipe.vae_scale_factor  # 8 for SDXL
        size = (hires_side(unit.height, scale) // factor, hires_side(unit.width, scale) // factor)
        latents = torch.nn.functional.interpolate(latents, size=size, mode=upscaler)
        return np.asarray(self.img2img(image=latents, strength=strength, output_type="np",
                                       **common).images)
