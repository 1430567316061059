"""Parameters: a value and the gradient that ``backward`` accumulates into it."""
from __future__ import annotations

import numpy as np

from .device import Device, device_of, is_cuda, to_device, to_numpy
from .kernels import backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    """A trainable array.

    ``data`` holds the value, ``grad`` (same shape and dtype) the gradient.
    Layers *add* into ``grad`` in ``backward``; ``Module.zero_grad`` resets it,
    exactly like PyTorch's accumulate-then-zero convention.

    On the GPU (``Module.to("cuda")``) both are numba device arrays; ``add_grad`` and
    ``zero_grad`` then run as device kernels.
    """

    def __init__(self, data: np.ndarray):
        if is_cuda(data):
            if data.dtype not in FLOAT_DTYPES:
                raise TypeError(f"Parameter: expected float32 or float64 data, got {data.dtype}")
            self.data = data
            self.grad = backend(data).tensor.zeros_like(data)
            return
        data = np.asarray(data)
        if data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter: expected float32 or float64 data, got {data.dtype}")
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def device(self) -> Device:
        """Where the value lives: ``device("cpu")`` or ``device("cuda")``."""
        return device_of(self.data)

    def zero_grad(self) -> None:
        backend(self.grad).tensor.fill(self.grad, 0)

    def add_grad(self, g) -> None:
        """grad += g (g on the parameter's device, of exactly its shape: a broadcastable
        (C,) for a (1, C) parameter would be a bug upstream): what every backward does."""
        if tuple(np.shape(g)) != self.shape:
            raise ValueError(f"Parameter.add_grad: expected a gradient of shape {self.shape} "
                             f"(the parameter's), got {tuple(np.shape(g))}")
        if device_of(g) != self.device:
            raise TypeError(f"Parameter.add_grad: the gradient is on {device_of(g)} but the parameter "
                            f"is on {self.device}")
        backend(self.grad).tensor.accumulate(self.grad, g)

    def astype(self, dtype) -> None:
        """Convert value and gradient in place of the attributes (used by ``Module.to``).

        Device arrays are converted through the host (a rare, one-off operation)."""
        dev = self.device
        self.data = to_device(to_numpy(self.data).astype(dtype), dev)
        self.grad = to_device(to_numpy(self.grad).astype(dtype), dev)

    def to_device(self, dev) -> None:
        """Move value and gradient to ``dev`` ("cpu" or "cuda"; used by ``Module.to``)."""
        self.data = to_device(self.data, dev)
        self.grad = to_device(self.grad, dev)

    def __repr__(self) -> str:
        where = ", device='cuda'" if is_cuda(self.data) else ""
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{where})"

