r"""CUDA kernels for the fully connected layer (layer: ``numbanet.linear``).

With X the input as M rows (M = ∏ leading dims) and dY the upstream gradient::

    Y  = X Wᵀ + b      tiled GEMM, Wᵀ read in place          (M, in)·(in, out)
    dX = dY W          tiled GEMM                            (M, out)·(out, in)
    dW = dYᵀ X         tiled GEMM, dYᵀ read in place, split  (out, M)·(M, in)
                       over M when M is long (fixed-order sum of the parts)
    db = Σ_m dY[m]     one thread per feature, summing its column in row order

All products go through ``_common.matmul`` (see ``TiledGemm``); every output is
one thread's fixed-order sum, so results are deterministic.
"""
from __future__ import annotations

from numba import cuda

from . import _common


@cuda.jit
def _add_row_bias_kernel(y, bias):
    """y[m, j] += bias[j] for y (M, F); one thread per element."""
    e = cuda.grid(1)
    if e < y.size:
        m = e // y.shape[1]
        j = e - m * y.shape[1]
        y[m, j] += bias[j]


@cuda.jit
def _column_sum_kernel(dy, dbias):
    """dbias[j] = Σ_m dy[m, j] for dy (M, F): a gather, one thread per feature j.

    Neighbouring threads read neighbouring columns of the same row, so each step of
    the loop is one coalesced row read.  The sum runs in row order (float64 accumulator).
    """
    j = cuda.grid(1)
    if j < dy.shape[1]:
        total = 0.0
        for m in range(dy.shape[0]):
            total += dy[m, j]
        dbias[j] = total


def linear(x, weight, bias=None):
    """y = x Wᵀ + b on the GPU.  x: (*, in); weight: (out, in); bias: (out,) or None -> y: (*, out)."""
    out_features, in_features = weight.shape
    rows = x.size // in_features
    y = _common.matmul(x.reshape(rows, in_features), weight, trans_b=True)
    if bias is not None and y.size:
        _add_row_bias_kernel[_common.launch_1d(y.size)](y, bias)
    return y.reshape(*x.shape[:-1], out_features)


def linear_backward(dy, x, weight):
    """(dx, dw, db) for y = linear(x, weight, bias), all device arrays.

    dy: (*, out); x: (*, in) the forward input; weight: (out, in) -> dx: (*, in), dw: (out, in), db: (out,).
    """
    out_features, in_features = weight.shape
    rows = x.size // in_features
    dy_rows = dy.reshape(rows, out_features)
    dx = _common.matmul(dy_rows, weight).reshape(*x.shape)
    dw = _common.matmul(dy_rows, x.reshape(rows, in_features), trans_a=True)
    db = _common.empty((out_features,), weight.dtype)
    _column_sum_kernel[_common.launch_1d(out_features)](dy_rows, db)
    return dx, dw, db
