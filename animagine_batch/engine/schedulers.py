"""Building a sampler's scheduler (a row of `jobspec/samplers.py`) for a loaded pipeline."""

from __future__ import annotations


def build_scheduler(sampler, base_config):
    """Instantiate the sampler's scheduler from the pipeline's scheduler config, so the model's
    own SDXL betas are kept (a scheduler's constructor defaults are wrong for SDXL)."""
    import diffusers

    cls = getattr(diffusers, sampler.scheduler)
    return cls.from_config(base_config, **dict(sampler.settings))
