"""The joins of the composite modules on the CPU (layer: ``numbanet.container``).

NumPy is enough for the copies; the sum of two arrays (every residual block, forward and
backward) is a parallel kernel, since NumPy's add runs on one thread.
``kernels.cuda.container`` has the same functions as device kernels.
"""
import numpy as np
from numba import njit, prange


def concatenate(arrays, axis: int):
    """The arrays joined along ``axis`` (same shape elsewhere, same dtype) -> a new array."""
    return np.concatenate(arrays, axis=axis)


def split(a, sizes, axis: int) -> list:
    """``a`` cut along ``axis`` into consecutive pieces of the given sizes (views of a)."""
    return np.split(a, np.cumsum(sizes)[:-1], axis=axis)


@njit(parallel=True, cache=True)
def _add_kernel(u, v, out):
    """out[i] = u[i] + v[i] for 1-D arrays: element i read and written by one iteration."""
    for i in prange(out.size):
        out[i] = u[i] + v[i]


def add(u, v):
    """u + v (same shape and dtype) -> a new array."""
    out = np.empty(u.shape, u.dtype)
    _add_kernel(np.ascontiguousarray(u).reshape(-1), np.ascontiguousarray(v).reshape(-1), out.reshape(-1))
    return out


def sum_arrays(arrays):
    """Σ arrays, added in list order, into a new array (the inputs are left alone)."""
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a
    return total
