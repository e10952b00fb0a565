"""8-bit conversion on the device (engine/pixels.py) gives the bytes of diffusers' `np` output
converted on the host, and a unit's pieces land at their tasks' positions."""

import numpy as np
import pytest
import torch
from conftest import one_unit

from animagine_batch.engine.pixels import Pixels


def host_path(images: torch.Tensor) -> Pixels:
    """What the engine did before: diffusers' `pt_to_numpy`, then the numpy conversion."""
    return Pixels.from_array(images.cpu().permute(0, 2, 3, 1).float().numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_device_conversion_gives_the_host_conversions_bytes(dtype):
    rng = torch.Generator().manual_seed(0)
    x = torch.rand((3, 3, 16, 16), generator=rng)
    x[0, 0, 0, :8] = (torch.arange(8) + 0.5) / 255  # exact halves: round half to even
    x[0, 1, 0, :4] = torch.tensor([0.0, 1.0, -0.25, 1.5])
    x[1, 2, 3, 4] = float("nan")
    x = x.to(dtype)
    device, host = Pixels.from_tensor(x), host_path(x)
    assert device.values.dtype == np.uint8 and device.values.shape == (3, 16, 16, 3)
    assert np.array_equal(device.values, host.values)
    assert device.finite.tolist() == host.finite.tolist() == [True, False, True]
    assert device.values[1, 3, 4, 2] == 0  # NaN as 0, as numpy's nan_to_num does


def test_the_pipeline_images_are_the_bytes_of_the_np_output(tiny_generator, tasks):
    import diffusers

    pipe = tiny_generator.pipe
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(
        tiny_generator.generation.base_scheduler_config)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def run(output_type):
            gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
            return pipe(prompt=["a", "b"], width=64, height=64, num_inference_steps=2,
                        generator=gens, output_type=output_type).images

        on_host = Pixels.from_array(np.asarray(run("np")))
        on_device = Pixels.from_tensor(run("pt"))
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(on_host.values, on_device.values)
    assert on_device.values[0].tobytes() != on_device.values[1].tobytes()


def test_pieces_go_to_their_tasks_positions():
    def solid(*levels):
        x = torch.stack([torch.full((3, 2, 2), v / 255) for v in levels])
        return Pixels.from_tensor(x)

    unit = Pixels.gather([([0, 3], solid(10, 13)), ([1, 2], solid(11, 12))], 4)
    assert [int(v[0, 0, 0]) for v in unit.values] == [10, 11, 12, 13]
    halves = Pixels.concat([unit, solid(14)])
    assert len(halves) == 5 and [int(v[0, 0, 0]) for v in halves.values] == [10, 11, 12, 13, 14]
    assert halves.finite.all()


def test_a_unit_split_by_prompt_length_keeps_task_order(tiny_generator, tasks):
    long = tasks[1]._replace(prompt=", ".join(["red hair"] * 40), task_id="long")
    res = tiny_generator(one_unit([tasks[0], long, tasks[2]]))
    alone = tiny_generator(one_unit([long]))
    assert [r["status"] for r in res.rows] == ["ok"] * 3
    assert res.pngs[1] == alone.pngs[0]  # its own call in both: the same bytes
