"""Parameter storage on the GPU (layer: ``numbanet.tensor``), the functions of ``kernels.cpu.tensor``.

``fill`` and ``accumulate`` are the one-thread-per-element kernels of ``_common``.
"""
from __future__ import annotations

from ._common import accumulate, fill, zeros  # noqa: F401  (accumulate, fill: part of this interface)


def zeros_like(array):
    """A new device array of zeros of ``array``'s shape and dtype (a gradient, optimizer state)."""
    return zeros(array.shape, array.dtype)
