"""Pre-drawn noise (engine/noise.py): the tape holds exactly the draws diffusers makes, in the
dtype it asks for, and images are the same bytes with and without it.

The byte-identity tests build their own Generator (the session's `tiny_generator` carries a
conditioning cache and state other tests touch) and pin torch's thread count around both runs:
CPU image bytes depend on it."""

import numpy as np
import pytest
import torch
from conftest import one_unit

from animagine_batch.engine import noise
from animagine_batch.engine import sources as models
from animagine_batch.engine.generator import Generator
from animagine_batch.engine.schedulers import build_scheduler
from animagine_batch.jobspec import samplers
from animagine_batch.jobspec.job import ModelSpec, RunnerSpec

TINY = ModelSpec(name="tiny", embedded="tiny", id="embedded/tiny-sdxl", min_size=16, max_size=1024)


@pytest.fixture(scope="module")
def tasks(demo_tasks):
    return demo_tasks([31, 32], 3)


@pytest.fixture(scope="module")
def own():
    """A Generator of this module's own (fresh conditioning cache and generator state)."""
    return Generator(TINY, models.identity(TINY), RunnerSpec(device="cpu"), "t")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recorded_tapes(monkeypatch) -> list:
    made, real = [], noise.tape_for

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(noise, "tape_for", spy)
    return made


def with_and_without_tape(gen, unit):
    gen.passes.tape = True
    taped = gen(unit)
    gen.passes.tape = False
    try:
        plain = gen(unit)
    finally:
        gen.passes.tape = True
    return taped, plain


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_a_half_precision_tape_holds_diffusers_own_draws(dtype):
    from diffusers.utils.torch_utils import randn_tensor

    def gens():
        return [torch.Generator().manual_seed(s) for s in (5, 6)]

    for shape in ((4, 8, 8), (4, 3, 5), (3, 7, 7)):  # 256, 60 and 147 values per image
        tape = noise.NoiseTape(gens(), shape, (dtype, dtype, torch.float32), "cpu")
        theirs = gens()
        for draw in tape.draws:  # diffusers' own draws, one call after another
            assert torch.equal(draw, randn_tensor((2, *shape), generator=theirs,
                                                  device=torch.device("cpu"), dtype=draw.dtype))
    # why the tape refuses to cast: a float32 draw cast to half precision equals a half draw
    # only with fewer than 16 or a multiple of 16 values (torch's CPU sampler fills 16 at a time)
    for numel, same in ((256, True), (48, True), (15, True), (60, False), (147, False),
                        (17, False)):
        half = torch.randn(numel, generator=torch.Generator().manual_seed(3), dtype=dtype)
        cast = torch.randn(numel, generator=torch.Generator().manual_seed(3)).to(dtype)
        assert torch.equal(half, cast) is same, numel
    tape = noise.NoiseTape(gens(), (4, 3, 5), (dtype,), "cpu")
    with pytest.raises(noise.NoiseTapeError, match="a cast would change the values"):
        tape.randn((2, 4, 3, 5), generator=tape.generators, dtype=torch.float32)
    with pytest.raises(noise.NoiseTapeError, match="holds"):
        tape.randn((1, 4, 3, 5), generator=tape.generators, dtype=dtype)


def test_the_dry_run_finds_each_samplers_draws(own):
    base = own.generation.base_scheduler_config
    got = {s.key: noise.step_draws(build_scheduler(s, base), 3, torch.bfloat16, torch.bfloat16)
           for s in samplers.SAMPLERS}
    assert got == {"euler_a": (torch.bfloat16,) * 3, "euler": (), "dpmpp_2m_karras": (),
                   "dpmpp_sde_karras": (), "dpmpp_2m_sde_karras": (torch.float32,) * 3,
                   "ddim": ()}


@pytest.mark.parametrize("sampler", ["euler_a", "euler", "dpmpp_2m_sde_karras"])
def test_images_are_the_same_bytes_with_and_without_the_tape(own, tasks, sampler, one_thread,
                                                             monkeypatch):
    unit = one_unit([t._replace(sampler=sampler) for t in tasks[:2]])
    assert unit.tasks[0].seed != unit.tasks[1].seed
    tapes = recorded_tapes(monkeypatch)
    taped, plain = with_and_without_tape(own, unit)
    assert [r["status"] for r in taped.rows] == ["ok", "ok"]
    assert taped.pngs == plain.pngs and taped.pngs[0] != taped.pngs[1]
    # the tape served every draw: the latents, and each step's noise for the SDE samplers
    steps = {"euler_a": 3, "euler": 0, "dpmpp_2m_sde_karras": 3}[sampler]
    assert len(tapes) == 1 and tapes[0].used == len(tapes[0].draws) == 1 + steps


def test_no_draw_is_made_on_the_cpu_inside_the_call(own, tasks, monkeypatch):
    unit = one_unit([t._replace(sampler="euler_a") for t in tasks[:2]])
    tapes = recorded_tapes(monkeypatch)
    calls = []
    real = torch.randn

    def counting(*args, **kwargs):
        calls.append(len(tapes))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "randn", counting)
    own(unit)
    # every draw happens while the tape is made (before the pipeline call): none after it
    assert calls == [0] * (2 * 4) and len(tapes) == 1  # 2 images x (latents + 3 steps)
    assert tapes[0].used == 4


def test_a_hires_pass_continues_from_the_same_generator_state(own, tasks, one_thread):
    unit = one_unit([t._replace(hires=(1.5, 0.5, "nearest-exact")) for t in tasks[:2]])
    taped, plain = with_and_without_tape(own, unit)
    assert [r["status"] for r in taped.rows] == ["ok", "ok"] and taped.pngs == plain.pngs


def test_a_tape_that_mispredicts_the_draws_is_dropped_with_a_warning(own, tasks, one_thread,
                                                                     monkeypatch):
    unit = one_unit([t._replace(sampler="euler_a", steps=2) for t in tasks[:2]])
    _, plain = with_and_without_tape(own, unit)
    monkeypatch.setattr(noise, "step_draws", lambda *a: (torch.float32,))  # one, wrong dtype
    with pytest.warns(RuntimeWarning, match="pre-drawn noise not used for euler_a at 2 steps"):
        again = own(unit)
    assert again.pngs == plain.pngs  # rerun from the generators' saved state
    assert ("euler_a", 2) in own.passes._untaped
    own.passes._untaped.clear()


def test_an_unused_draw_is_an_error(monkeypatch):
    gens = [torch.Generator().manual_seed(1)]
    tape = noise.NoiseTape(gens, (4, 2, 2), (torch.float32, torch.float32), "cpu")
    with pytest.raises(noise.NoiseTapeError, match="used 1 of the noise tape's 2 draws"):
        with tape.served(()):
            from diffusers.utils import torch_utils

            x = torch_utils.randn_tensor((1, 4, 2, 2), generator=gens, dtype=torch.float32)
            assert np.isfinite(x.numpy()).all()
    from diffusers.utils import torch_utils

    assert torch_utils.randn_tensor is tape.original  # rebound back
