"""The demo app's six samplers as a table: job key, display name, diffusers class, settings.

The engine builds each scheduler with `from_config(pipe.scheduler.config, **settings)`
(`schedulers.py`), so the model's own SDXL betas are kept (a scheduler's constructor defaults
are wrong for SDXL).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampler:
    key: str  # used in job files
    name: str  # demo-app / A1111 name, stored in results and infotext
    scheduler: str  # diffusers class name
    settings: tuple[tuple[str, object], ...] = ()


SAMPLERS = (
    Sampler("euler_a", "Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("euler", "Euler", "EulerDiscreteScheduler"),
    Sampler("dpmpp_2m_karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler",
            (("use_karras_sigmas", True),)),
    Sampler("dpmpp_sde_karras", "DPM++ SDE Karras", "DPMSolverSinglestepScheduler",
            (("use_karras_sigmas", True),)),
    Sampler("dpmpp_2m_sde_karras", "DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler",
            (("use_karras_sigmas", True), ("algorithm_type", "sde-dpmsolver++"))),
    Sampler("ddim", "DDIM", "DDIMScheduler"),
)


def find(name: str) -> Sampler | None:
    """Look a sampler up by job key (`euler_a`) or display name (`Euler a`)."""
    text = str(name).strip()
    for s in SAMPLERS:
        if text in (s.key, s.name) or text.lower() == s.name.lower():
            return s
    return None


def get(name: str) -> Sampler:
    found = find(name)
    if found is None:
        raise ValueError(
            f"unknown sampler {name!r}; allowed: "
            + ", ".join(f"{s.key} ({s.name})" for s in SAMPLERS)
        )
    return found
