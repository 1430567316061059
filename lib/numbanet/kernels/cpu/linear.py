"""CPU kernels for the fully connected layer (layer: ``numbanet.linear``).

The two matrix products (y = x Wᵀ, dx = dy W, dW = dyᵀ x) run in BLAS through
``numpy.matmul``; what is left for Numba is the bias: adding it to every row
of the output and summing the upstream gradient over the rows.
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def add_row_bias(y, bias):
    """y[m, j] += bias[j] in place, for y (M, F) and bias (F,); one row per iteration."""
    rows, features = y.shape
    for m in prange(rows):
        row = y[m]
        for j in range(features):
            row[j] += bias[j]


@njit(parallel=True, cache=True)
def column_sum(dy, dbias):
    """dbias[j] = Σ_m dy[m, j] for dy (M, F); one feature per iteration, summed in row order."""
    rows, features = dy.shape
    for j in prange(features):
        total = 0.0
        for m in range(rows):
            total += dy[m, j]
        dbias[j] = total
