"""CPU kernels for 2-D pooling (layer: ``numbanet.pooling``).

Every pooling here reads rectangular windows, so a window is described per
axis by two small tables (``_Axis``), built once per call:

    window o covers input rows [row_start[o], row_end[o])        (clipped to the real input)
    input row h is covered by windows [row_first[h], row_stop[h])

The forward kernels read each window through the first pair of tables; the
backward kernels of average and power pooling *gather*: each input element
sums the gradients of the windows that cover it, so each (n, c) plane is
written by exactly one parallel iteration and every sum has a fixed order.
Padding never has to be materialised: a padded position contributes 0 to a
sum and -inf to a max, i.e. nothing, so clipping the window is enough.

Arrays are viewed as planes: x (P, H, W) with P = N·C, outputs (P, Ho, Wo).
The public functions at the end are those of ``kernels.cuda.pooling``, with
validated arguments (window pairs, resolved output sizes).
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..formulas import padded_window_length, pooled_size


class _Axis(NamedTuple):
    """The windows of one spatial axis."""
    start: np.ndarray  # window o reads inputs [start[o], end[o])
    end: np.ndarray
    first: np.ndarray  # input i is read by windows [first[i], stop[i])
    stop: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.end - self.start


def _axis(size: int, start: np.ndarray, end: np.ndarray) -> _Axis:
    """Build the tables from window bounds that never decrease with o (true for every pooling here)."""
    start, end = np.clip(start, 0, size), np.clip(end, 0, size)
    inputs = np.arange(size)
    return _Axis(start, end, np.searchsorted(end, inputs, side="right"),
                 np.searchsorted(start, inputs, side="right"))


def _sliding_axis(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False) -> _Axis:
    out = pooled_size(size, kernel, stride, padding, ceil_mode)
    start = np.arange(out, dtype=np.int64) * stride - padding
    return _axis(size, start, start + kernel)


def _adaptive_axis(size: int, out: int) -> _Axis:
    """PyTorch's adaptive bins: [⌊o·size/out⌋, ⌈(o+1)·size/out⌉)."""
    o = np.arange(out, dtype=np.int64)
    return _axis(size, (o * size) // out, -((-(o + 1) * size) // out))


class _Geometry(NamedTuple):
    rows: _Axis
    cols: _Axis

    @property
    def out_hw(self) -> tuple[int, int]:
        return len(self.rows.start), len(self.cols.start)

    def window_sizes(self) -> np.ndarray:
        """(Ho, Wo) float64: the number of real input elements in each window."""
        return np.multiply.outer(self.rows.lengths, self.cols.lengths).astype(np.float64)

    def constant(self, value: float) -> np.ndarray:
        return np.full(self.out_hw, float(value))


def _sliding(input_shape, kernel_size, stride, padding, ceil_mode: bool = False) -> _Geometry:
    height, width = input_shape[2:]
    return _Geometry(_sliding_axis(height, kernel_size[0], stride[0], padding[0], ceil_mode),
                     _sliding_axis(width, kernel_size[1], stride[1], padding[1], ceil_mode))


def _adaptive(input_shape, out_hw) -> _Geometry:
    height, width = input_shape[2:]
    return _Geometry(_adaptive_axis(height, out_hw[0]), _adaptive_axis(width, out_hw[1]))


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N·C, H, W) view: pooling treats every channel of every sample alike."""
    return a.reshape(-1, a.shape[2], a.shape[3])


@njit(cache=True)
def _max_over_windows(line, start, end, best, arg, arg_of):
    """best[o], arg[o] = max of line[start[o]:end[o]] and arg_of[w] of its position w, for every window o.

    The scan runs window position by window position (j-th element of every window, then the
    (j+1)-th), so the inner loop runs across windows, without branches, and vectorises; within a
    window the elements are still taken in order, with PyTorch's rule: a larger value or a NaN
    replaces the best (re-reading the last element, then, changes nothing).
    """
    for o in range(start.shape[0]):
        best[o] = line[start[o]]
        arg[o] = arg_of[start[o]]
    longest = 0
    for o in range(start.shape[0]):
        longest = max(longest, end[o] - start[o])
    for j in range(1, longest):
        for o in range(start.shape[0]):
            # a window shorter than ``longest`` re-reads its last element, which changes nothing
            w = min(start[o] + j, end[o] - 1)
            value = line[w]
            current = best[o]
            take = (value > current) | (value != value)
            best[o] = value if take else current
            arg[o] = arg_of[w] if take else arg[o]


@njit(parallel=True, cache=True)
def _max_pool_kernel(x, row_start, row_end, col_start, col_end, y, argmax):
    """y[p, oh, ow] = max of the window; argmax[p, oh, ow] = its flat index h·W + w in the plane.

    Ties keep the first maximum in row-major order and a NaN wins (the last one), exactly as PyTorch.
    The max is separable: first over each window's columns, for every input row (``row_max``,
    with the column in ``row_arg``), then over each window's rows of that.  Taking the first
    maximum of each row and then the first row with the overall maximum is the first maximum in
    row-major order; with NaNs, the last row's last NaN.  A 3x3 window costs 6 comparisons instead
    of 9 at stride 1, in loops without branches that vectorise: the reduced GoogLeNet's 11
    max-poolings per training step (batch 128) took 375 ms with the window-by-window scan and take
    198 ms this way (cProfile), faster than PyTorch's max_pool2d with indices on these shapes.
    """
    planes, height, width = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    columns = np.arange(width)
    for p in prange(planes):
        plane = x[p]
        row_max = np.empty((height, out_w), x.dtype)
        row_arg = np.empty((height, out_w), np.int64)
        for h in range(height):
            _max_over_windows(plane[h], col_start, col_end, row_max[h], row_arg[h], columns)
        for oh in range(out_h):
            best, arg = y[p, oh], argmax[p, oh]
            first = row_start[oh]
            for ow in range(out_w):
                best[ow] = row_max[first, ow]
                arg[ow] = first * width + row_arg[first, ow]
            for h in range(first + 1, row_end[oh]):
                candidate = row_max[h]
                candidate_arg = row_arg[h]
                for ow in range(out_w):
                    value = candidate[ow]
                    current = best[ow]
                    take = (value > current) | (value != value)
                    best[ow] = value if take else current
                    arg[ow] = h * width + candidate_arg[ow] if take else arg[ow]


@njit(parallel=True, cache=True)
def _max_pool_backward_kernel(dy, argmax, dx):
    """dx[p, argmax[p, o]] += dy[p, o] for dy, argmax (P, Ho·Wo) and dx (P, H·W).

    A scatter, but a safe one: each plane belongs to one iteration, which walks
    its outputs in order, so overlapping windows (stride < kernel) that chose the
    same input element add up without a race and in a fixed order.
    """
    planes, outputs = dy.shape
    for p in prange(planes):
        grad_in = dx[p]
        grad_in[:] = 0
        grad_out = dy[p]
        route = argmax[p]
        for o in range(outputs):
            grad_in[route[o]] += grad_out[o]


@njit(parallel=True, cache=True)
def _mean_pool_kernel(x, row_start, row_end, col_start, col_end, divisor, y):
    """y[p, oh, ow] = (Σ_{window} x[p, h, w]) / divisor[oh, ow]."""
    planes = x.shape[0]
    out_h, out_w = y.shape[1], y.shape[2]
    for p in prange(planes):
        plane = x[p]
        for oh in range(out_h):
            for ow in range(out_w):
                total = 0.0
                for h in range(row_start[oh], row_end[oh]):
                    row = plane[h]
                    for w in range(col_start[ow], col_end[ow]):
                        total += row[w]
                y[p, oh, ow] = total / divisor[oh, ow]


@njit(parallel=True, cache=True)
def _mean_pool_backward_kernel(dy, row_first, row_stop, col_first, col_stop, divisor, dx):
    """dx[p, h, w] = Σ_{windows (oh, ow) covering (h, w)} dy[p, oh, ow] / divisor[oh, ow]."""
    planes, height, width = dx.shape
    for p in prange(planes):
        grad_out = dy[p]
        for h in range(height):
            for w in range(width):
                total = 0.0
                for oh in range(row_first[h], row_stop[h]):
                    for ow in range(col_first[w], col_stop[w]):
                        total += grad_out[oh, ow] / divisor[oh, ow]
                dx[p, h, w] = total


@njit(parallel=True, cache=True)
def _power_pool_kernel(x, norm_type, row_start, row_end, col_start, col_end, divisor, y):
    """y[p, oh, ow] = (Σ_{window} x[p, h, w]^norm_type / divisor[oh, ow])^(1 / norm_type)."""
    planes = x.shape[0]
    out_h, out_w = y.shape[1], y.shape[2]
    inverse = 1.0 / norm_type
    for p in prange(planes):
        plane = x[p]
        for oh in range(out_h):
            for ow in range(out_w):
                total = 0.0
                for h in range(row_start[oh], row_end[oh]):
                    row = plane[h]
                    for w in range(col_start[ow], col_end[ow]):
                        total += float(row[w]) ** norm_type
                y[p, oh, ow] = (total / divisor[oh, ow]) ** inverse


@njit(parallel=True, cache=True)
def _power_pool_backward_kernel(dy, x, y, norm_type, row_first, row_stop, col_first, col_stop, divisor, dx):
    """dx[p, h, w] = Σ_{covering (oh, ow), y ≠ 0} dy · (x[p, h, w] / y[p, oh, ow])^(norm_type − 1) / divisor.

    A window whose output is 0 (all its inputs 0) passes no gradient: 0 is a
    valid subgradient of the norm there, and it is what PyTorch returns.
    """
    planes, height, width = dx.shape
    exponent = norm_type - 1.0
    for p in prange(planes):
        grad_out = dy[p]
        pooled = y[p]
        for h in range(height):
            for w in range(width):
                value = float(x[p, h, w])
                total = 0.0
                for oh in range(row_first[h], row_stop[h]):
                    for ow in range(col_first[w], col_stop[w]):
                        if pooled[oh, ow] != 0:
                            total += grad_out[oh, ow] * (value / pooled[oh, ow]) ** exponent / divisor[oh, ow]
                dx[p, h, w] = total


# -- the operations (same names and arguments as kernels.cuda.pooling) -----------------------------

def max_pool2d(x, kernel_size, stride, padding=(0, 0), return_indices: bool = False, ceil_mode: bool = False):
    """y = max over each window; with ``return_indices`` also the int64 argmax (flat h·W + w per plane).

    x: (N, C, H, W); kernel_size, stride, padding: pairs -> y (N, C, Ho, Wo).
    """
    geometry = _sliding(x.shape, kernel_size, stride, padding, ceil_mode)
    y = np.empty((*x.shape[:2], *geometry.out_hw), x.dtype)
    indices = np.empty(y.shape, np.int64)
    _max_pool_kernel(_planes(x), geometry.rows.start, geometry.rows.end, geometry.cols.start, geometry.cols.end,
                     _planes(y), _planes(indices))
    return (y, indices) if return_indices else y


def max_pool2d_backward(dy, indices, input_shape, kernel_size=None, stride=None, padding=(0, 0),
                        ceil_mode: bool = False):
    """dx (``input_shape``) from dy and the argmax ``indices`` (N, C, Ho, Wo): each plane scatters
    dy to its winners, so the window arguments are not needed here."""
    dy = np.ascontiguousarray(dy)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    n, c, h, w = input_shape
    # A wrong index would write outside dx: the kernel does not bounds-check.
    if indices.size and (indices.min() < 0 or indices.max() >= h * w):
        raise ValueError(f"max_pool2d_backward: indices must lie in [0, H·W) = [0, {h * w}), "
                         f"got [{indices.min()}, {indices.max()}]")
    dx = np.empty((n, c, h, w), dy.dtype)
    _max_pool_backward_kernel(dy.reshape(n * c, -1), indices.reshape(n * c, -1), dx.reshape(n * c, -1))
    return dx


def _mean_pool(x, geometry: _Geometry, divisor: np.ndarray) -> np.ndarray:
    y = np.empty((*x.shape[:2], *geometry.out_hw), x.dtype)
    _mean_pool_kernel(_planes(x), geometry.rows.start, geometry.rows.end, geometry.cols.start, geometry.cols.end,
                      divisor, _planes(y))
    return y


def _mean_pool_backward(dy, input_shape, geometry: _Geometry, divisor: np.ndarray) -> np.ndarray:
    dy = np.ascontiguousarray(dy)
    dx = np.empty(tuple(input_shape), dy.dtype)
    _mean_pool_backward_kernel(_planes(dy), geometry.rows.first, geometry.rows.stop, geometry.cols.first,
                               geometry.cols.stop, divisor, _planes(dx))
    return dx


def _avg_divisor(geometry: _Geometry, input_shape, kernel_size, stride, padding, count_include_pad: bool):
    """(Ho, Wo) float64: with ``count_include_pad`` the windows' lengths counting the padding
    (``formulas.padded_window_length``: kh·kw but for ceil mode's partial windows), else the
    number of real elements in each window."""
    if not count_include_pad:
        return geometry.window_sizes()
    lengths = [[padded_window_length(o, size, k, s, p) for o in range(out)]
               for size, k, s, p, out in zip(input_shape[2:], kernel_size, stride, padding, geometry.out_hw)]
    return np.multiply.outer(*lengths).astype(np.float64)


def avg_pool2d(x, kernel_size, stride, padding=(0, 0), count_include_pad: bool = True, ceil_mode: bool = False):
    """y = window mean (divisor: the window counting its padding, or its real elements without
    ``count_include_pad``)."""
    geometry = _sliding(x.shape, kernel_size, stride, padding, ceil_mode)
    return _mean_pool(x, geometry, _avg_divisor(geometry, x.shape, kernel_size, stride, padding, count_include_pad))


def avg_pool2d_backward(dy, input_shape, kernel_size, stride, padding=(0, 0), count_include_pad: bool = True,
                        ceil_mode: bool = False):
    """dx (``input_shape``) from dy (N, C, Ho, Wo) and the forward's arguments."""
    geometry = _sliding(input_shape, kernel_size, stride, padding, ceil_mode)
    divisor = _avg_divisor(geometry, input_shape, kernel_size, stride, padding, count_include_pad)
    return _mean_pool_backward(dy, input_shape, geometry, divisor)


def _lp_divisor(geometry: _Geometry, kernel_size, mean: bool) -> np.ndarray:
    return geometry.constant(kernel_size[0] * kernel_size[1] if mean else 1)


def lp_pool2d(x, norm_type, kernel_size, stride, mean: bool = False):
    """y = (Σ_window x^p)^(1/p), or the mean inside with ``mean=True``; no padding."""
    geometry = _sliding(x.shape, kernel_size, stride, (0, 0))
    y = np.empty((*x.shape[:2], *geometry.out_hw), x.dtype)
    _power_pool_kernel(_planes(x), float(norm_type), geometry.rows.start, geometry.rows.end, geometry.cols.start,
                       geometry.cols.end, _lp_divisor(geometry, kernel_size, mean), _planes(y))
    return y


def lp_pool2d_backward(dy, x, y, norm_type, kernel_size, stride, mean: bool = False):
    """dx (N, C, H, W) from dy, the forward input x and output y."""
    geometry = _sliding(x.shape, kernel_size, stride, (0, 0))
    x = np.ascontiguousarray(x)
    dx = np.empty(x.shape, x.dtype)
    _power_pool_backward_kernel(_planes(np.ascontiguousarray(dy, dtype=x.dtype)), _planes(x),
                                _planes(np.ascontiguousarray(y)), float(norm_type), geometry.rows.first,
                                geometry.rows.stop, geometry.cols.first, geometry.cols.stop,
                                _lp_divisor(geometry, kernel_size, mean), _planes(dx))
    return dx


def adaptive_avg_pool2d(x, output_size):
    """Average over PyTorch's adaptive bins; ``output_size`` a resolved pair (Ho, Wo)."""
    geometry = _adaptive(x.shape, output_size)
    return _mean_pool(x, geometry, geometry.window_sizes())


def adaptive_avg_pool2d_backward(dy, input_shape):
    """dx (``input_shape``) from dy (N, C, Ho, Wo); the bins follow from the two shapes."""
    geometry = _adaptive(input_shape, np.shape(dy)[2:])
    return _mean_pool_backward(dy, input_shape, geometry, geometry.window_sizes())
