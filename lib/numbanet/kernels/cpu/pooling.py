"""CPU kernels for 2-D pooling (layer: ``numbanet.pooling``).

Every pooling here reads rectangular windows, so a window is described per
axis by two small tables that the layer module builds once per call:

    window o covers input rows [row_start[o], row_end[o])        (clipped to the real input)
    input row h is covered by windows [row_first[h], row_stop[h])

The forward kernels read each window through the first pair of tables; the
backward kernels of average and power pooling *gather*: each input element
sums the gradients of the windows that cover it, so each (n, c) plane is
written by exactly one parallel iteration and every sum has a fixed order.
Padding never has to be materialised: a padded position contributes 0 to a
sum and -inf to a max, i.e. nothing, so clipping the window is enough.

Arrays are viewed as planes: x (P, H, W) with P = N·C, outputs (P, Ho, Wo).
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def max_pool(x, row_start, row_end, col_start, col_end, y, argmax):
    """y[p, oh, ow] = max of the window; argmax[p, oh, ow] = its flat index h·W + w in the plane.

    Ties keep the first maximum in row-major order and a NaN wins, exactly as PyTorch.
    """
    planes, width = x.shape[0], x.shape[2]
    out_h, out_w = y.shape[1], y.shape[2]
    for p in prange(planes):
        plane = x[p]
        for oh in range(out_h):
            for ow in range(out_w):
                best = -np.inf
                best_index = row_start[oh] * width + col_start[ow]
                for h in range(row_start[oh], row_end[oh]):
                    row = plane[h]
                    for w in range(col_start[ow], col_end[ow]):
                        value = row[w]
                        if value > best or value != value:
                            best = value
                            best_index = h * width + w
                y[p, oh, ow] = best
                argmax[p, oh, ow] = best_index


@njit(parallel=True, cache=True)
def max_pool_backward(dy, argmax, dx):
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
def mean_pool(x, row_start, row_end, col_start, col_end, divisor, y):
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
def mean_pool_backward(dy, row_first, row_stop, col_first, col_stop, divisor, dx):
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
def power_pool(x, norm_type, row_start, row_end, col_start, col_end, divisor, y):
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
def power_pool_backward(dy, x, y, norm_type, row_first, row_stop, col_first, col_stop, divisor, dx):
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
