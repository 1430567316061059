r"""CUDA kernels for the joins of the composite modules (layer: ``numbanet.container``).

On the CPU, ``Concat`` and ``Add`` join their branches with NumPy (``np.concatenate``,
``np.split``, ``+``); device arrays need kernels for the same three operations:

    concatenate:  y[a, o_b + s, z] = x_b[a, s, z]            (view every array as (A, S, Z)
    split:        piece_b[a, s, z] = y[a, o_b + s, z]         around the joined axis, o_b the
    add:          y = u + v                                   offset of branch b)
    sum_arrays:   y = Σ_b x_b   (the input gradients of the branches, in branch order)

One thread per element written: plain copies and sums, deterministic.
"""
from __future__ import annotations

import math

from numba import cuda

from . import _common


@cuda.jit
def _copy_slab_kernel(src, src_offset, dst, dst_offset, count):
    """dst[a, dst_offset + s, z] = src[a, src_offset + s, z] for s < count; arrays (A, S, Z)."""
    e = cuda.grid(1)
    inner = dst.shape[2]
    if e < dst.shape[0] * count * inner:
        a = e // (count * inner)
        q = e - a * count * inner
        s = q // inner
        z = q - s * inner
        dst[a, dst_offset + s, z] = src[a, src_offset + s, z]


@cuda.jit
def _add_kernel(u, v, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = u[i] + v[i]


def _slabs(shape, axis: int):
    """(A, S, Z): the elements before, along and after ``axis``."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _copy_slab(src3, src_offset: int, dst3, dst_offset: int, count: int) -> None:
    total = dst3.shape[0] * count * dst3.shape[2]
    if total:
        _copy_slab_kernel[_common.launch_1d(total)](src3, src_offset, dst3, dst_offset, count)


def concatenate(arrays, axis: int):
    """The device arrays joined along ``axis`` (same shape elsewhere, same dtype) -> a new device array."""
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = _common.empty(shape, arrays[0].dtype)
    out3 = out.reshape(_slabs(shape, axis))
    offset = 0
    for a in arrays:
        outer, size, inner = _slabs(a.shape, axis)
        _copy_slab(a.reshape(outer, size, inner), 0, out3, offset, size)
        offset += size
    return out


def split(a, sizes, axis: int) -> list:
    """``a`` cut along ``axis`` into consecutive pieces of the given sizes (new device arrays)."""
    a3 = a.reshape(_slabs(a.shape, axis))
    pieces, offset = [], 0
    for size in sizes:
        shape = list(a.shape)
        shape[axis] = size
        piece = _common.empty(shape, a.dtype)
        _copy_slab(a3, offset, piece.reshape(_slabs(shape, axis)), 0, size)
        pieces.append(piece)
        offset += size
    return pieces


def add(u, v):
    """u + v (same shape and dtype) -> a new device array."""
    out = _common.empty(u.shape, u.dtype)
    if out.size:
        _add_kernel[_common.launch_1d(out.size)](_common.flat(u), _common.flat(v), _common.flat(out))
    return out


def sum_arrays(arrays):
    """Σ arrays, added in list order, into a new device array (the inputs are left alone)."""
    total = _common.empty(arrays[0].shape, arrays[0].dtype)
    _common.copy(arrays[0], total)
    for a in arrays[1:]:
        _common.accumulate(total, a)
    return total
