"""CPU kernels for the losses (layer: ``numbanet.loss``).

Cross-entropy works on one row of logits per parallel iteration.  Every row is
shifted by its maximum before ``exp``, so no exponent exceeds 0 and logits of
any size (1e4 and beyond) neither overflow nor lose the answer.  Sums are taken
in float64 whatever the logits' dtype.

The mean squared error is reduced in fixed-size chunks, one per iteration, and
the per-chunk partial sums are added in order by ``total``: the result does
not depend on the number of threads.  The public functions are those of
``kernels.cuda.loss``.
"""
import math

import numpy as np
from numba import njit, prange

MSE_CHUNK = 4096


@njit(parallel=True, cache=True)
def _cross_entropy_rows_kernel(logits, target, smoothing, logsumexp, losses):
    """Per-row loss with label smoothing ε, for logits (N, C) and target (N,) int.

    logsumexp[i] = m_i + log Σ_j exp(x_ij − m_i),  m_i = max_j x_ij
    losses[i]    = logsumexp[i] − (1 − ε)·x_{i,t_i} − (ε/C)·Σ_j x_ij
                   (= (1 − ε)·(−log p_{i,t_i}) + ε·mean_j(−log p_ij))
    """
    rows, classes = logits.shape
    for i in prange(rows):
        row = logits[i]
        peak = np.float64(row[0])
        for j in range(1, classes):
            peak = max(peak, np.float64(row[j]))
        sum_exp = 0.0
        sum_logits = 0.0
        for j in range(classes):
            value = np.float64(row[j])
            sum_exp += math.exp(value - peak)
            sum_logits += value
        lse = peak + math.log(sum_exp)
        logsumexp[i] = lse
        losses[i] = lse - (1.0 - smoothing) * np.float64(row[target[i]]) - smoothing / classes * sum_logits


@njit(parallel=True, cache=True)
def _cross_entropy_backward_kernel(logits, target, logsumexp, smoothing, scale, dlogits):
    """dlogits[i, j] = scale·(softmax_ij − (1 − ε)·[j = t_i] − ε/C), softmax_ij = exp(x_ij − logsumexp[i]).

    ``scale`` is dL/dloss divided by N for the mean reduction.
    """
    rows, classes = logits.shape
    uniform = smoothing / classes
    for i in prange(rows):
        row = logits[i]
        out = dlogits[i]
        lse = logsumexp[i]
        label = target[i]
        for j in range(classes):
            grad = math.exp(np.float64(row[j]) - lse) - uniform
            if j == label:
                grad -= 1.0 - smoothing
            out[j] = scale * grad


@njit(parallel=True, cache=True)
def _squared_error_partials_kernel(prediction, target, partials):
    """partials[k] = Σ (prediction − target)² over the k-th chunk of MSE_CHUNK elements (1-D inputs)."""
    size = prediction.shape[0]
    for k in prange(partials.shape[0]):
        total = 0.0
        for idx in range(k * MSE_CHUNK, min(size, (k + 1) * MSE_CHUNK)):
            diff = np.float64(prediction[idx]) - np.float64(target[idx])
            total += diff * diff
        partials[k] = total


@njit(parallel=True, cache=True)
def _squared_error_backward_kernel(prediction, target, scale, dprediction):
    """dprediction = 2·scale·(prediction − target), elementwise on 1-D inputs."""
    for idx in prange(prediction.shape[0]):
        dprediction[idx] = 2.0 * scale * (np.float64(prediction[idx]) - np.float64(target[idx]))


def cross_entropy_rows(logits, target, smoothing: float):
    """(logsumexp (N,), per-row losses (N,)), float64, for logits (N, C) and target (N,) int64."""
    logsumexp, losses = np.empty(logits.shape[0]), np.empty(logits.shape[0])
    _cross_entropy_rows_kernel(logits, target, float(smoothing), logsumexp, losses)
    return logsumexp, losses


def cross_entropy_backward(logits, target, logsumexp, smoothing: float, scale: float):
    """dlogits (N, C) in the logits' dtype = scale·(softmax − smoothed one-hot)."""
    dlogits = np.empty_like(logits)
    _cross_entropy_backward_kernel(logits, target, logsumexp, float(smoothing), float(scale), dlogits)
    return dlogits


def squared_error_partials(prediction, target):
    """Partial sums of (prediction − target)² over chunks of MSE_CHUNK elements, float64."""
    partials = np.empty(-(-prediction.size // MSE_CHUNK))
    _squared_error_partials_kernel(prediction.reshape(-1), target.reshape(-1), partials)
    return partials


def squared_error_backward(prediction, target, scale: float):
    """dprediction = 2·scale·(prediction − target), prediction's shape and dtype."""
    dprediction = np.empty_like(prediction)
    _squared_error_backward_kernel(prediction.reshape(-1), target.reshape(-1), float(scale), dprediction.reshape(-1))
    return dprediction


def total(values) -> float:
    """Σ values (the partial sums above) as a Python float, added in order."""
    return float(np.sum(values))
