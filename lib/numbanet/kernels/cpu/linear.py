"""CPU kernels for the fully connected layer (layer: ``numbanet.linear``).

The three matrix products (y = x Wᵀ, dx = dy W, dW = dyᵀ x) are ``matmul``: the rows of the
result are cut into a few blocks, and each parallel iteration multiplies one block with a
single-threaded BLAS call (``blas.gemm``: MKL or OpenBLAS).  The blocks depend on the shape only,
and every element is computed by one call, so the result does not depend on the thread count.
What is left for Numba is the bias: adding it to every row of the output and summing the
upstream gradient over the rows.  The public functions are those of ``kernels.cuda.linear``.
"""
import numpy as np
from numba import njit, prange

from .blas import gemm, one_thread_per_call

# Row blocks of a product: at most this many, of at least _BLOCK_ROWS rows (a function of the
# shape only, so that the result is the same on any thread count).
_MAX_BLOCKS = 8
_BLOCK_ROWS = 16


@njit(parallel=True, cache=True)
def matmul(a, b, transpose_b, out):
    """out (M, N) = a (M, K) @ op(b), op(b) = b (K, N), or bᵀ for b (N, K) when ``transpose_b``;
    a and b row-major (one compiled version for the three products: see ``blas.gemm``).

    The M rows go to up to 8 blocks of >= 16 rows, one BLAS call per block.
    """
    rows = out.shape[0]
    blocks = max(1, min(_MAX_BLOCKS, rows // _BLOCK_ROWS))
    for block in prange(blocks):
        r0 = block * rows // blocks
        r1 = (block + 1) * rows // blocks
        gemm(a[r0:r1], b, out[r0:r1], 0.0, np.False_, transpose_b)


def linear(x, weight, bias=None):
    """y = x Wᵀ + b for validated x (*, in), weight (out, in), bias (out,) or None -> y (*, out)."""
    out_features, in_features = weight.shape
    rows = np.ascontiguousarray(x).reshape(-1, in_features)
    y = np.empty((rows.shape[0], out_features), x.dtype)
    with one_thread_per_call():
        matmul(rows, np.ascontiguousarray(weight), True, y)
    if bias is not None:
        _add_row_bias(y, np.ascontiguousarray(bias, dtype=x.dtype))
    return y.reshape(*x.shape[:-1], out_features)


def linear_backward(dy, x, weight):
    """(dx (*, in), dw (out, in), db (out,)) for y = linear(x, weight, bias) and dy (*, out)."""
    weight = np.ascontiguousarray(weight)
    x = np.ascontiguousarray(x, dtype=weight.dtype)
    out_features, in_features = weight.shape
    dy_rows = np.ascontiguousarray(dy, dtype=weight.dtype).reshape(-1, out_features)
    dx = np.empty((dy_rows.shape[0], in_features), weight.dtype)
    dw = np.empty((out_features, in_features), weight.dtype)
    with one_thread_per_call():
        matmul(dy_rows, weight, False, dx)
        # dW = dyᵀ x: a row-major copy of dyᵀ (batch x out, small next to W) keeps one compiled matmul
        matmul(np.ascontiguousarray(dy_rows.T), x.reshape(-1, in_features), False, dw)
    db = np.empty(out_features, weight.dtype)
    _column_sum(dy_rows, db)
    return dx.reshape(x.shape), dw, db


@njit(parallel=True, cache=True)
def _add_row_bias(y, bias):
    """y[m, j] += bias[j] in place, for y (M, F) and bias (F,); one row per iteration."""
    rows, features = y.shape
    for m in prange(rows):
        row = y[m]
        for j in range(features):
            row[j] += bias[j]


@njit(parallel=True, cache=True)
def _column_sum(dy, dbias):
    """dbias[j] = Σ_m dy[m, j] for dy (M, F); one feature per iteration, summed in row order."""
    rows, features = dy.shape
    for j in prange(features):
        total = 0.0
        for m in range(rows):
            total += dy[m, j]
        dbias[j] = total
