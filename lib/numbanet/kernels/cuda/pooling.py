r"""CUDA kernels for 2-D pooling (layer: ``numbanet.pooling``).

Arrays are viewed as planes, x (P, H, W) with P = N·C, outputs (P, Ho, Wo).  Each
kernel runs one thread per element it writes: forward kernels one per output
(reading its window), backward kernels one per *input* element (a gather over the
windows that contain it).  No thread writes what another writes, there are no
atomics, and every sum runs in a fixed order (windows in row-major order), so the
results are deterministic and the max-pool gradient is summed in the CPU's order.

The windows are not tabulated as on the CPU but computed per axis from the
geometry, ``geom = (H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, adaptive)``::

    sliding:  window o reads rows [o·s − p, o·s − p + k) ∩ [0, H), o < Ho (formulas.pooled_size,
              floor or ceil mode)
              row i is read by windows [⌊(i + p − k)/s⌋ + 1, ⌊(i + p)/s⌋ + 1) ∩ [0, Ho)
    adaptive: window o reads rows [⌊o·H/Ho⌋, ⌈(o + 1)·H/Ho⌉)
              row i is read by windows [⌊i·Ho/H⌋, ⌈(i + 1)·Ho/H⌉)

Max pooling keeps its argmax (flat index h·W + w in the plane, int64, as PyTorch);
its backward routes dy[o] to x[i] where argmax[o] = i.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import _common
from ..formulas import padded_window_length, pooled_size


# -- window geometry -----------------------------------------------------------------------------

@cuda.jit(device=True)
def _window(o, size, out, kernel, stride, pad, adaptive):
    """[start, end) of the input rows (or columns) read by window o, clipped to the real input."""
    if adaptive:
        return (o * size) // out, ((o + 1) * size + out - 1) // out
    start = o * stride - pad
    return max(start, 0), min(start + kernel, size)


@cuda.jit(device=True)
def _covering(i, size, out, kernel, stride, pad, adaptive):
    """[first, stop) of the windows that read input row (or column) i."""
    if adaptive:
        return (i * out) // size, ((i + 1) * out + size - 1) // size
    below = i + pad - kernel  # window o reads i iff below < o·stride <= i + pad
    first = 0 if below < 0 else below // stride + 1
    return first, min((i + pad) // stride + 1, out)


@cuda.jit(device=True)
def _rows(oh, geom):
    return _window(oh, geom[0], geom[2], geom[4], geom[6], geom[8], geom[10])


@cuda.jit(device=True)
def _cols(ow, geom):
    return _window(ow, geom[1], geom[3], geom[5], geom[7], geom[9], geom[10])


@cuda.jit(device=True)
def _divisor(oh, ow, h0, h1, w0, w1, geom, include_pad):
    """The mean's divisor for window (oh, ow): with ``include_pad`` (1) its size counting the padding
    (``formulas.padded_window_length``: kh·kw but for ceil mode's partial windows), else its real size."""
    if include_pad:
        return float(padded_window_length(oh, geom[0], geom[4], geom[6], geom[8])
                     * padded_window_length(ow, geom[1], geom[5], geom[7], geom[9]))
    return float((h1 - h0) * (w1 - w0))


@cuda.jit(device=True)
def _element(e, rows, cols):
    """(plane, index within the plane, row, column) of flat element e of a (planes, rows, cols) array."""
    plane = e // (rows * cols)
    q = e - plane * rows * cols
    r = q // cols
    return plane, q, r, q - r * cols


# -- kernels -------------------------------------------------------------------------------------

@cuda.jit
def _max_pool_kernel(x, geom, y, argmax):
    """y[p, oh, ow] = max of the window, argmax = its flat index; ties keep the first, a NaN wins (as CPU)."""
    e = cuda.grid(1)
    if e < y.size:
        plane, q, oh, ow = _element(e, y.shape[1], y.shape[2])
        h0, h1 = _rows(oh, geom)
        w0, w1 = _cols(ow, geom)
        best = -math.inf
        best_index = h0 * x.shape[2] + w0
        for h in range(h0, h1):
            for w in range(w0, w1):
                value = x[plane, h, w]
                if value > best or value != value:
                    best = value
                    best_index = h * x.shape[2] + w
        y[plane, oh, ow] = best
        argmax[plane, oh, ow] = best_index


@cuda.jit
def _max_pool_backward_kernel(dy, argmax, geom, dx):
    """dx[p, h, w] = Σ_{windows o containing (h, w), argmax[p, o] = h·W + w} dy[p, o]."""
    e = cuda.grid(1)
    if e < dx.size:
        plane, q, h, w = _element(e, dx.shape[1], dx.shape[2])
        oh0, oh1 = _covering(h, geom[0], geom[2], geom[4], geom[6], geom[8], geom[10])
        ow0, ow1 = _covering(w, geom[1], geom[3], geom[5], geom[7], geom[9], geom[10])
        total = 0.0
        for oh in range(oh0, oh1):
            for ow in range(ow0, ow1):
                if argmax[plane, oh, ow] == q:
                    total += dy[plane, oh, ow]
        dx[plane, h, w] = total


@cuda.jit
def _mean_pool_kernel(x, geom, include_pad, y):
    """y[p, oh, ow] = (Σ_window x) / divisor."""
    e = cuda.grid(1)
    if e < y.size:
        plane, q, oh, ow = _element(e, y.shape[1], y.shape[2])
        h0, h1 = _rows(oh, geom)
        w0, w1 = _cols(ow, geom)
        total = 0.0
        for h in range(h0, h1):
            for w in range(w0, w1):
                total += x[plane, h, w]
        y[plane, oh, ow] = total / _divisor(oh, ow, h0, h1, w0, w1, geom, include_pad)


@cuda.jit
def _mean_pool_backward_kernel(dy, geom, include_pad, dx):
    """dx[p, h, w] = Σ_{windows o containing (h, w)} dy[p, o] / divisor(o)."""
    e = cuda.grid(1)
    if e < dx.size:
        plane, q, h, w = _element(e, dx.shape[1], dx.shape[2])
        oh0, oh1 = _covering(h, geom[0], geom[2], geom[4], geom[6], geom[8], geom[10])
        ow0, ow1 = _covering(w, geom[1], geom[3], geom[5], geom[7], geom[9], geom[10])
        total = 0.0
        for oh in range(oh0, oh1):
            h0, h1 = _rows(oh, geom)
            for ow in range(ow0, ow1):
                w0, w1 = _cols(ow, geom)
                total += dy[plane, oh, ow] / _divisor(oh, ow, h0, h1, w0, w1, geom, include_pad)
        dx[plane, h, w] = total


@cuda.jit
def _power_pool_kernel(x, norm_type, geom, divisor, y):
    """y[p, oh, ow] = (Σ_window x^norm_type / divisor)^(1 / norm_type)."""
    e = cuda.grid(1)
    if e < y.size:
        plane, q, oh, ow = _element(e, y.shape[1], y.shape[2])
        h0, h1 = _rows(oh, geom)
        w0, w1 = _cols(ow, geom)
        total = 0.0
        for h in range(h0, h1):
            for w in range(w0, w1):
                total += float(x[plane, h, w]) ** norm_type
        y[plane, oh, ow] = (total / divisor) ** (1.0 / norm_type)


@cuda.jit
def _power_pool_backward_kernel(dy, x, y, norm_type, geom, divisor, dx):
    """dx[p, h, w] = Σ_{windows o containing (h, w), y[o] ≠ 0} dy[o] · (x[p, h, w] / y[o])^(norm_type − 1) / divisor."""
    e = cuda.grid(1)
    if e < dx.size:
        plane, q, h, w = _element(e, dx.shape[1], dx.shape[2])
        oh0, oh1 = _covering(h, geom[0], geom[2], geom[4], geom[6], geom[8], geom[10])
        ow0, ow1 = _covering(w, geom[1], geom[3], geom[5], geom[7], geom[9], geom[10])
        value = float(x[plane, h, w])
        total = 0.0
        for oh in range(oh0, oh1):
            for ow in range(ow0, ow1):
                pooled = y[plane, oh, ow]
                if pooled != 0:
                    total += dy[plane, oh, ow] * (value / pooled) ** (norm_type - 1.0) / divisor
        dx[plane, h, w] = total


# -- public functions (the signatures of numbanet.pooling's functional API, arguments normalised) ----

def _planes(a):
    """(N, C, H, W) -> (N·C, H, W) view."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


def _sliding(input_shape, kernel_size, stride, padding, ceil_mode: bool = False) -> tuple:
    height, width = input_shape[2:]
    out_h = pooled_size(height, kernel_size[0], stride[0], padding[0], ceil_mode)
    out_w = pooled_size(width, kernel_size[1], stride[1], padding[1], ceil_mode)
    return (height, width, out_h, out_w, *kernel_size, *stride, *padding, 0)


def _adaptive(input_shape, out_hw) -> tuple:
    # kernel, stride and padding are unused by adaptive windows; 1 keeps every division defined.
    return (*input_shape[2:], *out_hw, 1, 1, 1, 1, 0, 0, 1)


def _launch(kernel, count, *args) -> None:
    if count:
        kernel[_common.launch_1d(count)](*args)


def max_pool2d(x, kernel_size, stride, padding=(0, 0), return_indices: bool = False, ceil_mode: bool = False):
    """y = max over each window; with ``return_indices`` also the int64 argmax.

    x: (N, C, H, W) device array; kernel_size, stride, padding: pairs -> y (N, C, Ho, Wo).
    """
    geom = _sliding(x.shape, kernel_size, stride, padding, ceil_mode)
    n, c = x.shape[:2]
    y = _common.empty((n, c, geom[2], geom[3]), x.dtype)
    indices = _common.empty(y.shape, np.int64)
    _launch(_max_pool_kernel, y.size, _planes(x), geom, _planes(y), _planes(indices))
    return (y, indices) if return_indices else y


def max_pool2d_backward(dy, indices, input_shape, kernel_size, stride, padding=(0, 0), ceil_mode: bool = False):
    """dx (``input_shape``) from dy and the argmax ``indices`` (N, C, Ho, Wo).

    Unlike the CPU version this needs the window geometry: each input element gathers
    from the windows that contain it instead of being scattered to.  An index outside
    the plane matches no element, so bad indices cannot write out of bounds.
    """
    dx = _common.empty(tuple(input_shape), dy.dtype)
    geom = _sliding(input_shape, kernel_size, stride, padding, ceil_mode)
    _launch(_max_pool_backward_kernel, dx.size, _planes(dy), _planes(indices), geom, _planes(dx))
    return dx


def avg_pool2d(x, kernel_size, stride, padding=(0, 0), count_include_pad: bool = True, ceil_mode: bool = False):
    """y = window mean (divisor: the window counting its padding, or its real size without
    ``count_include_pad``)."""
    geom = _sliding(x.shape, kernel_size, stride, padding, ceil_mode)
    y = _common.empty((*x.shape[:2], geom[2], geom[3]), x.dtype)
    _launch(_mean_pool_kernel, y.size, _planes(x), geom, int(bool(count_include_pad)), _planes(y))
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size, stride, padding=(0, 0), count_include_pad: bool = True,
                        ceil_mode: bool = False):
    """dx (``input_shape``) from dy (N, C, Ho, Wo) and the forward's arguments."""
    dx = _common.empty(tuple(input_shape), dy.dtype)
    geom = _sliding(input_shape, kernel_size, stride, padding, ceil_mode)
    _launch(_mean_pool_backward_kernel, dx.size, _planes(dy), geom, int(bool(count_include_pad)), _planes(dx))
    return dx


def lp_pool2d(x, norm_type, kernel_size, stride, mean: bool = False):
    """y = (Σ_window x^p)^(1/p), or the mean inside with ``mean=True``; no padding."""
    geom = _sliding(x.shape, kernel_size, stride, (0, 0))
    y = _common.empty((*x.shape[:2], geom[2], geom[3]), x.dtype)
    divisor = float(kernel_size[0] * kernel_size[1] if mean else 1)
    _launch(_power_pool_kernel, y.size, _planes(x), float(norm_type), geom, divisor, _planes(y))
    return y


def lp_pool2d_backward(dy, x, y, norm_type, kernel_size, stride, mean: bool = False):
    """dx (N, C, H, W) from dy, the forward input x and output y."""
    dx = _common.empty(x.shape, x.dtype)
    divisor = float(kernel_size[0] * kernel_size[1] if mean else 1)
    _launch(_power_pool_backward_kernel, dx.size, _planes(dy), _planes(x), _planes(y), float(norm_type),
            _sliding(x.shape, kernel_size, stride, (0, 0)), divisor, _planes(dx))
    return dx


def adaptive_avg_pool2d(x, output_size):
    """Average over PyTorch's adaptive bins; ``output_size`` a resolved pair (Ho, Wo)."""
    y = _common.empty((*x.shape[:2], *output_size), x.dtype)
    _launch(_mean_pool_kernel, y.size, _planes(x), _adaptive(x.shape, output_size), 0, _planes(y))
    return y


def adaptive_avg_pool2d_backward(dy, input_shape):
    """dx (``input_shape``) from dy (N, C, Ho, Wo); the bins follow from the two shapes."""
    dx = _common.empty(tuple(input_shape), dy.dtype)
    _launch(_mean_pool_backward_kernel, dx.size, _planes(dy), _adaptive(input_shape, dy.shape[2:]), 0,
            _planes(dx))
    return dx
