"""Decoded images to 8-bit pixels on the device: only uint8 crosses to the host.

The pipeline returns its decoded images as a tensor on the device (`output_type="pt"`: the
VAE's output denormalised and clamped to [0, 1] by diffusers, in the VAE's dtype). `from_tensor`
casts them to float32, replaces NaN by 0, scales by 255, rounds half to even and clips to 0-255
on the device, the same operations in the same order as diffusers' `output_type="np"` followed
by numpy's conversion (`from_array`), so the bytes are the same; it also notes per image whether
every value was finite (a NaN survives the clamp). On CUDA the uint8 batch is copied into pinned
host memory without blocking and a CUDA event marks its end: the generation thread goes on to the
next unit, and the first reader of `values` or `finite` (the finishing thread under the
overlapped runner) waits for the copy.
"""

from __future__ import annotations

import numpy as np


class _Piece:
    """One pipeline call's images: task positions, and host arrays (maybe still arriving)."""

    def __init__(self, indices, values, finite, event=None):
        self.indices, self.values, self.finite, self.event = list(indices), values, finite, event

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        values, finite = self.values, self.finite
        if not isinstance(values, np.ndarray):  # host tensors
            values, finite = values.numpy(), finite.numpy()
        return values, finite


class Pixels:
    """A unit's 8-bit RGB images [n, H, W, 3] in task order (`values`) and whether each decoded
    image was finite (`finite` [n]); made of one piece per pipeline call."""

    def __init__(self, pieces: list[_Piece], count: int):
        self.pieces, self.count = pieces, count
        self._arrays: tuple | None = None

    def __len__(self) -> int:
        return self.count

    @classmethod
    def from_tensor(cls, images) -> "Pixels":
        """Pixels of decoded images [n, 3, H, W] in [0, 1] on any device."""
        import torch

        x = images.float()
        finite = torch.isfinite(x).flatten(1).all(1)
        q = x.nan_to_num(nan=0.0).mul(255).round().clamp(0, 255).to(torch.uint8)
        q = q.permute(0, 2, 3, 1).contiguous()
        if q.device.type != "cuda":
            return cls([_Piece(range(len(q)), q.cpu().numpy(), finite.cpu().numpy())], len(q))
        host = torch.empty(q.shape, dtype=torch.uint8, pin_memory=True)
        host_finite = torch.empty(finite.shape, dtype=torch.bool, pin_memory=True)
        host.copy_(q, non_blocking=True)
        host_finite.copy_(finite, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return cls([_Piece(range(len(q)), host, host_finite, event)], len(q))

    @classmethod
    def from_array(cls, images: np.ndarray) -> "Pixels":
        """Pixels of float images [n, H, W, 3] in [0, 1] on the host (diffusers'
        `output_type="np"`), converted as diffusers' `numpy_to_pil` does."""
        values = (np.nan_to_num(images, nan=0.0) * 255).round().clip(0, 255).astype(np.uint8)
        finite = np.isfinite(images).reshape(len(images), -1).all(1)
        return cls([_Piece(range(len(images)), values, finite)], len(images))

    @classmethod
    def gather(cls, parts: list[tuple[list[int], "Pixels"]], count: int) -> "Pixels":
        """One unit's pixels from each call's pixels and the task positions they hold."""
        pieces = [_Piece([indices[i] for i in piece.indices], piece.values, piece.finite,
                         piece.event) for indices, pixels in parts for piece in pixels.pieces]
        return cls(pieces, count)

    @classmethod
    def concat(cls, parts: list["Pixels"]) -> "Pixels":
        """The pixels of consecutive parts of a unit, one after another."""
        offset, placed = 0, []
        for part in parts:
            placed.append((list(range(offset, offset + len(part))), part))
            offset += len(part)
        return cls.gather(placed, offset)

    def _host(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            got = [(piece.indices, *piece.arrays()) for piece in self.pieces]
            first = got[0][1]
            values = np.empty((self.count, *first.shape[1:]), dtype=np.uint8)
            finite = np.empty(self.count, dtype=bool)
            for indices, v, f in got:
                values[indices], finite[indices] = v, f
            self._arrays = values, finite
        return self._arrays

    @property
    def values(self) -> np.ndarray:
        return self._host()[0]

    @property
    def finite(self) -> np.ndarray:
        return self._host()[1]
