r"""CUDA kernels for the losses (layer: ``numbanet.loss``).

Cross-entropy forward: one CUDA block per row of logits.  Its threads stride over
the row's C classes; a ``block_max`` gives the row maximum m_i (every exponent is then
≤ 0: no overflow for any logits), two ``block_sum`` trees give Σ exp(x − m_i) and Σ x,
all in float64.  The per-row losses are then added by one block (``sum_all``) and that
float64 scalar is the only value copied to the host.  The gradient is elementwise, one
thread per logit.  Every sum has a fixed order: no atomics, reproducible results.

Targets are checked on the host when they are host arrays.  A device target is not
copied back to be checked: a row whose class index lies outside 0..C−1 gets a NaN
loss (and NaN gradients), and the caller inspects the targets only when the loss it
copied is NaN.

Mean squared error: blocks of ``MSE_CHUNK`` elements give partial sums (one CUDA block
each), added in order by ``sum_all``.

The public functions have the names and arguments of ``numbanet.loss``'s array helpers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ..cpu.loss import MSE_CHUNK
from ._common import REDUCE_SHARED, block_max, block_sum, empty, flat, launch_1d, reduce_threads, sum_all


@cuda.jit
def _cross_entropy_rows_kernel(logits, target, smoothing, logsumexp, losses):
    """Row i per CUDA block: logsumexp[i] = m_i + log Σ_j exp(x_ij − m_i) and
    losses[i] = logsumexp[i] − (1 − ε)·x_{i,t_i} − (ε/C)·Σ_j x_ij  (NaN if t_i is not a class)."""
    shared = cuda.shared.array(REDUCE_SHARED, float64)
    i = cuda.blockIdx.x
    classes = logits.shape[1]
    peak = -math.inf
    for j in range(cuda.threadIdx.x, classes, cuda.blockDim.x):
        peak = max(peak, float64(logits[i, j]))
    peak = block_max(shared, peak)
    sum_exp = 0.0
    sum_logits = 0.0
    for j in range(cuda.threadIdx.x, classes, cuda.blockDim.x):
        value = float64(logits[i, j])
        sum_exp += math.exp(value - peak)
        sum_logits += value
    sum_exp = block_sum(shared, sum_exp)
    sum_logits = block_sum(shared, sum_logits)
    if cuda.threadIdx.x == 0:
        lse = peak + math.log(sum_exp)
        logsumexp[i] = lse
        label = target[i]
        if 0 <= label < classes:
            losses[i] = lse - (1.0 - smoothing) * float64(logits[i, label]) - smoothing / classes * sum_logits
        else:
            losses[i] = math.nan


@cuda.jit
def _cross_entropy_backward_kernel(logits, target, logsumexp, smoothing, scale, dlogits):
    """dlogits[i, j] = scale·(exp(x_ij − logsumexp[i]) − ε/C − (1 − ε)·[j = t_i]); one thread per logit."""
    k = cuda.grid(1)
    if k < logits.size:
        classes = logits.shape[1]
        i = k // classes
        j = k - i * classes
        label = target[i]
        grad = math.exp(float64(logits[i, j]) - logsumexp[i]) - smoothing / classes
        if j == label:
            grad -= 1.0 - smoothing
        if label < 0 or label >= classes:
            grad = math.nan
        dlogits[i, j] = scale * grad


@cuda.jit
def _squared_error_partials_kernel(prediction, target, partials):
    """partials[b] = Σ (prediction − target)² over chunk b (MSE_CHUNK elements), one CUDA block per chunk."""
    shared = cuda.shared.array(REDUCE_SHARED, float64)
    start = cuda.blockIdx.x * MSE_CHUNK
    end = min(prediction.size, start + MSE_CHUNK)
    total = 0.0
    for idx in range(start + cuda.threadIdx.x, end, cuda.blockDim.x):
        diff = float64(prediction[idx]) - float64(target[idx])
        total += diff * diff
    total = block_sum(shared, total)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit
def _squared_error_backward_kernel(prediction, target, scale, dprediction):
    """dprediction = 2·scale·(prediction − target), elementwise."""
    idx = cuda.grid(1)
    if idx < dprediction.size:
        dprediction[idx] = 2.0 * scale * (float64(prediction[idx]) - float64(target[idx]))


def cross_entropy_rows(logits, target, smoothing: float):
    """(logsumexp (N,), per-row losses (N,)), float64 device arrays, for logits (N, C) and target (N,)."""
    rows, classes = logits.shape
    logsumexp, losses = empty((rows,), np.float64), empty((rows,), np.float64)
    _cross_entropy_rows_kernel[rows, reduce_threads(classes)](logits, target, float(smoothing), logsumexp,
                                                              losses)
    return logsumexp, losses


def cross_entropy_backward(logits, target, logsumexp, smoothing: float, scale: float):
    """dlogits (N, C) in the logits' dtype = scale·(softmax − smoothed one-hot)."""
    dlogits = empty(logits.shape, logits.dtype)
    _cross_entropy_backward_kernel[launch_1d(logits.size)](logits, target, logsumexp, float(smoothing),
                                                           float(scale), dlogits)
    return dlogits


def squared_error_partials(prediction, target):
    """Partial sums of (prediction − target)² over chunks of MSE_CHUNK elements, a float64 device array."""
    size = prediction.size
    partials = empty((-(-size // MSE_CHUNK),), np.float64)
    _squared_error_partials_kernel[partials.size, reduce_threads(min(size, MSE_CHUNK))](
        flat(prediction), flat(target), partials)
    return partials


def squared_error_backward(prediction, target, scale: float):
    """dprediction = 2·scale·(prediction − target), prediction's shape and dtype."""
    dprediction = empty(prediction.shape, prediction.dtype)
    _squared_error_backward_kernel[launch_1d(prediction.size)](flat(prediction), flat(target), float(scale),
                                                              flat(dprediction))
    return dprediction


def total(values) -> float:
    """Σ values as a Python float: reduced on the device, then the one scalar copied to the host."""
    return float(sum_all(values).copy_to_host()[0])
