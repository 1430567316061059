"""Reusable scratch buffers for the CPU kernels.

Allocating an im2col matrix inside an ``@njit`` function on every call was
measured ~8x slower than filling a buffer allocated once by NumPy and reused,
so the layers ask this pool for named scratch arrays.  A buffer only grows.
Scratch memory never escapes: results handed to the caller are fresh arrays.
"""
from __future__ import annotations

import numpy as np

_buffers: dict[tuple[str, np.dtype], np.ndarray] = {}


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` backed by the pool buffer ``name``.

    Two scratch arrays that are alive at the same time must have different names.
    Contents are undefined: kernels that use it overwrite every element.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    key = (name, dtype)
    buf = _buffers.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        _buffers[key] = buf
    return buf[:size].reshape(shape)

