"""The joins of the composite modules on the CPU (layer: ``numbanet.container``).

NumPy is enough here; ``kernels.cuda.container`` has the same functions as device kernels.
"""
import numpy as np


def concatenate(arrays, axis: int):
    """The arrays joined along ``axis`` (same shape elsewhere, same dtype) -> a new array."""
    return np.concatenate(arrays, axis=axis)


def split(a, sizes, axis: int) -> list:
    """``a`` cut along ``axis`` into consecutive pieces of the given sizes (views of a)."""
    return np.split(a, np.cumsum(sizes)[:-1], axis=axis)


def add(u, v):
    """u + v (same shape and dtype) -> a new array."""
    return u + v


def sum_arrays(arrays):
    """Σ arrays, added in list order, into a new array (the inputs are left alone)."""
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a
    return total
