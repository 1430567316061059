"""Parameters: a value and the gradient that ``backward`` accumulates into it."""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    """A trainable array.

    ``data`` holds the value, ``grad`` (same shape and dtype) the gradient.
    Layers *add* into ``grad`` in ``backward``; ``Module.zero_grad`` resets it,
    exactly like PyTorch's accumulate-then-zero convention.
    """

    def __init__(self, data: np.ndarray):
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

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def astype(self, dtype) -> None:
        """Convert value and gradient in place of the attributes (used by ``Module.to``)."""
        self.data = self.data.astype(dtype)
        self.grad = self.grad.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"
