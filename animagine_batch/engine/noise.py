"""Pre-drawn noise: every draw a pipeline call makes from its per-image CPU generators, made up
front and moved to the device once, so no CPU->GPU copy (a stream sync) happens inside the
denoising loop.

diffusers draws each image's initial latents and, for ancestral and SDE samplers, each step's
noise with `randn_tensor`, from the image's own `torch.Generator` on the CPU, then copies the
batch to the device: one blocking copy per step. A `NoiseTape` makes the same draws from the
same generators in the same order before the call (`torch.randn` of one image's shape, in the
dtype diffusers asks for), holds them on the device, and serves them to diffusers by rebinding
`randn_tensor` in the modules that call it (`diffusers.utils.torch_utils`, the pipeline's module
and the scheduler's module, which import the name) while the call runs. The images are the
same bytes as without the tape.

Which draws a call makes comes from a dry run of a copy of the scheduler over the call's steps
on a tiny zero sample (`step_draws`), which records the dtype of every draw it asks for: Euler a
draws in the model's dtype every step, DPM++ 2M SDE in float32, Euler, DDIM (eta 0) and the
non-SDE DPM++ samplers not at all. The tape draws in exactly that dtype and refuses to serve a
draw of another shape or dtype: a float32 draw cast to float16 or bfloat16 equals a half-
precision draw only when the tensor has fewer than 16 or a multiple of 16 elements (torch's CPU
normal sampler fills 16 values at a time and redraws the tail), so casting would silently
change images of other sizes. A tape that is asked for a draw it does not hold, or that holds
draws the call never asked for, raises `NoiseTapeError` (the caller reruns the call without the
tape from the generators' saved state).
"""

from __future__ import annotations

import contextlib
import copy as copying
import inspect
import json
import sys

_DRAWS: dict = {}  # (scheduler class, config, steps, dtypes) -> the step draws' dtypes


class NoiseTapeError(RuntimeError):
    """diffusers asked for a draw the tape does not hold as drawn (shape, dtype or count)."""


def _torch_utils():
    import diffusers.utils.torch_utils as torch_utils

    return torch_utils


@contextlib.contextmanager
def _bound(modules, fn):
    """`randn_tensor` of each module (that has one) rebound to `fn` for the block."""
    saved = [(m, m.randn_tensor) for m in modules if hasattr(m, "randn_tensor")]
    for m, _ in saved:
        m.randn_tensor = fn
    try:
        yield
    finally:
        for m, old in saved:
            m.randn_tensor = old


def step_draws(scheduler, steps: int, latents_dtype, model_dtype) -> tuple:
    """The dtypes of the noise draws `scheduler` makes over a pipeline call of `steps` steps,
    in order (one per drawing step), found by running a copy of it on a 1x4x2x2 zero sample the
    way the SDXL pipeline does (`set_timesteps`, `set_begin_index(0)`, `scale_model_input`,
    then `step` with eta 0 and a generator where it takes them). Cached per configuration."""
    import torch

    key = (type(scheduler).__qualname__, json.dumps(dict(scheduler.config), sort_keys=True,
                                                    default=str), steps, latents_dtype, model_dtype)
    if key in _DRAWS:
        return _DRAWS[key]
    copy = copying.deepcopy(scheduler)
    asked: list = []

    def record(shape, generator=None, device=None, dtype=None, layout=None):
        asked.append(dtype)
        return torch.zeros(shape, dtype=dtype)

    params = inspect.signature(copy.step).parameters
    kwargs = {k: v for k, v in (("eta", 0.0), ("generator", torch.Generator()))
              if k in params}
    sample = torch.zeros((1, 4, 2, 2), dtype=latents_dtype)
    with _bound((_torch_utils(), sys.modules[type(scheduler).__module__]), record):
        copy.set_timesteps(steps, device="cpu")
        if hasattr(copy, "set_begin_index"):
            copy.set_begin_index(0)
        for t in copy.timesteps:
            x = copy.scale_model_input(sample, t)
            out = torch.zeros(x.shape, dtype=model_dtype)
            sample = copy.step(out, t, sample, **kwargs, return_dict=False)[0]
    _DRAWS[key] = tuple(asked)
    return _DRAWS[key]


class NoiseTape:
    """The draws of one pipeline call: for each dtype in `dtypes`, in order, one
    `torch.randn(shape)` per generator (image), stacked into the batch, on `device`."""

    def __init__(self, generators: list, shape: tuple, dtypes: tuple, device):
        import torch

        self.generators = generators
        self.original = _torch_utils().randn_tensor
        self.used = 0
        runs: list = []  # consecutive draws of one dtype: one tensor, one copy to the device
        for dtype in dtypes:
            draw = torch.cat([torch.randn((1, *shape), generator=g, dtype=dtype)
                              for g in generators])
            if runs and runs[-1][0] == dtype:
                runs[-1][1].append(draw)
            else:
                runs.append((dtype, [draw]))
        self.draws: list = []
        for _, draws in runs:
            block = torch.stack(draws)
            if torch.device(device).type == "cuda":
                block = block.pin_memory().to(device, non_blocking=True)
            else:
                block = block.to(device)
            self.draws += list(block.unbind(0))

    def randn(self, shape, generator=None, device=None, dtype=None, layout=None):
        """`randn_tensor` while the tape is served: the next draw for the tape's generators,
        diffusers' own function for any other."""
        if generator is not self.generators:
            return self.original(shape, generator=generator, device=device, dtype=dtype,
                                 layout=layout)
        if self.used == len(self.draws):
            raise NoiseTapeError(f"diffusers asked for draw {self.used + 1}; the noise tape "
                                 f"holds {len(self.draws)}")
        draw = self.draws[self.used]
        if tuple(shape) != tuple(draw.shape) or dtype != draw.dtype:
            raise NoiseTapeError(
                f"diffusers asked for draw {self.used + 1} as {tuple(shape)} {dtype}; the noise "
                f"tape holds {tuple(draw.shape)} {draw.dtype} (a cast would change the values)")
        self.used += 1
        return draw.to("cpu" if device is None else device)

    @contextlib.contextmanager
    def served(self, modules):
        """Serve the tape to the modules' `randn_tensor` for the block; at its end every draw
        must have been used (else the generators would not be where diffusers leaves them)."""
        with _bound((_torch_utils(), *modules), self.randn):
            yield self
        if self.used != len(self.draws):
            raise NoiseTapeError(f"the call used {self.used} of the noise tape's "
                                 f"{len(self.draws)} draws")


def tape_for(pipe, generators: list, shape: tuple, steps: int, latents_dtype) -> NoiseTape:
    """The tape of one base-pass call of an SDXL pipeline: the initial latents (in the
    conditioning's dtype, as the pipeline draws them), then the scheduler's step draws."""
    dtypes = (latents_dtype, *step_draws(pipe.scheduler, steps, latents_dtype, pipe.unet.dtype))
    return NoiseTape(generators, shape, dtypes, pipe._execution_device)


def modules_of(pipe) -> tuple:
    """The modules whose `randn_tensor` a call of `pipe` uses: its own and its scheduler's."""
    return (sys.modules[type(pipe).__module__], sys.modules[type(pipe.scheduler).__module__])
