r"""CUDA kernels for the normalisation layers (layer module: ``numbanet.norm``).

The same block view as the CPU kernels (``numbanet.kernels.cpu.norm``): the input is
x (N, C, P) and BatchNorm, InstanceNorm, GroupNorm and LayerNorm normalise *blocks*
of it, with the statistics in (R, G) float64 arrays::

    block (r, g) = { x[n, c, p] : n ∈ rows(r), c ∈ [g·C/G, (g+1)·C/G), all p }
    rows(r)      = all samples if R = 1 (BatchNorm),  sample r if R = N (the others)

Two kinds of kernel:

* *Block reductions* (statistics, parameter gradients, the backward's block sums): one
  CUDA block per statistics block (BatchNorm: one per channel), its threads striding
  over the block's m elements (consecutive threads read consecutive positions:
  coalesced), each summing its share in order in a float64 local, then the shared-memory
  tree ``block_sum``.  The result depends only on the shapes, never on timing: no atomics.
* *Elementwise maps* (normalise, the input gradient, LocalResponseNorm): one thread per
  element, which gathers the statistics of its block.

The functions exported here have the names and arguments of the array helpers of
``numbanet.norm`` (``block_statistics`` ↔ ``_block_statistics``, ...), which call them
when the input is a device array; validation stays in the layer module.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from .. import formulas
from ._common import REDUCE_SHARED, block_sum, empty, fill, launch_1d, reduce_threads, scratch


# -- indexing ---------------------------------------------------------------------------------------

@cuda.jit(device=True)
def unravel3(i, channels, positions):
    """(n, c, p) of flat index i of a C-contiguous (N, C, P) array."""
    plane = channels * positions
    n = i // plane
    rest = i - n * plane
    c = rest // positions
    return n, c, rest - c * positions


@cuda.jit(device=True)
def _statistics_index(n, c, rows, per_group):
    """(r, g) of the statistics block that element (n, c, ·) belongs to."""
    return (n if rows > 1 else 0), c // per_group


@cuda.jit(device=True)
def _block_element(k, r, g, rows, per_group, positions):
    """(n, c, p) of the k-th element of block (r, g), k < m; k runs over positions fastest."""
    per_sample = per_group * positions
    s = k // per_sample
    rest = k - s * per_sample
    c_offset = rest // positions
    n = s if rows == 1 else r
    return n, g * per_group + c_offset, rest - c_offset * positions


@cuda.jit(device=True)
def _block_count(n_batch, rows, per_group, positions):
    """m, the number of elements in a block."""
    return (n_batch if rows == 1 else 1) * per_group * positions


# -- statistics --------------------------------------------------------------------------------------

@cuda.jit
def _moments_kernel(x, eps, mean, var, invstd):
    """Block (r, g) per CUDA block: mean, biased var = (1/m) Σ (x − mean)², invstd = 1/√(var + ε).

    Two passes (mean, then squared deviations) as on the CPU: the one-pass Σx² − m·mean²
    cancels catastrophically when |mean| ≫ std.
    """
    shared = cuda.shared.array(REDUCE_SHARED, float64)
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    r = cuda.blockIdx.x // groups
    g = cuda.blockIdx.x - r * groups
    count = _block_count(n_batch, rows, per_group, positions)
    total = 0.0
    for k in range(cuda.threadIdx.x, count, cuda.blockDim.x):
        n, c, p = _block_element(k, r, g, rows, per_group, positions)
        total += x[n, c, p]
    mu = block_sum(shared, total) / count
    squares = 0.0
    for k in range(cuda.threadIdx.x, count, cuda.blockDim.x):
        n, c, p = _block_element(k, r, g, rows, per_group, positions)
        deviation = x[n, c, p] - mu
        squares += deviation * deviation
    variance = block_sum(shared, squares) / count
    if cuda.threadIdx.x == 0:
        mean[r, g] = mu
        var[r, g] = variance
        invstd[r, g] = 1.0 / math.sqrt(variance + eps)


@cuda.jit
def _fixed_statistics_kernel(running_mean, running_var, eps, mean, invstd):
    """mean[0, c] = running_mean[c], invstd[0, c] = 1/√(running_var[c] + ε)."""
    c = cuda.grid(1)
    if c < running_mean.size:
        mean[0, c] = running_mean[c]
        invstd[0, c] = 1.0 / math.sqrt(float64(running_var[c]) + eps)


@cuda.jit
def _update_running_kernel(mean, var, correction, momentum, running_mean, running_var):
    """running ← (1 − α)·running + α·(average over the R rows), var scaled by m/(m − 1)."""
    c = cuda.grid(1)
    if c < running_mean.size:
        rows = mean.shape[0]
        total_mean = 0.0
        total_var = 0.0
        for r in range(rows):
            total_mean += mean[r, c]
            total_var += var[r, c] * correction
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * (total_mean / rows)
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * (total_var / rows)


@cuda.jit
def _increment_kernel(counter):
    if cuda.grid(1) == 0:
        counter[0] += 1


def count_batch(num_batches_tracked) -> None:
    """num_batches_tracked += 1 on the device (a 0-d integer array), with no copy to the host."""
    _increment_kernel[1, 1](num_batches_tracked.reshape(1))


def block_statistics(x3, rows: int, groups: int, eps: float):
    """(mean, var, invstd) of the blocks of x3 (N, C, P), each a (rows, groups) float64 device array."""
    mean, var, invstd = (empty((rows, groups), np.float64) for _ in range(3))
    count = (x3.shape[0] if rows == 1 else 1) * (x3.shape[1] // groups) * x3.shape[2]
    _moments_kernel[rows * groups, reduce_threads(count)](x3, float(eps), mean, var, invstd)
    return mean, var, invstd


def fixed_statistics(running_mean, running_var, eps: float):
    """(mean, invstd), each (1, C) float64 device arrays, from running statistics (C,)."""
    channels = running_mean.size
    mean, invstd = empty((1, channels), np.float64), empty((1, channels), np.float64)
    _fixed_statistics_kernel[launch_1d(channels)](running_mean, running_var, float(eps), mean, invstd)
    return mean, invstd


def update_running(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """In place: running ← (1 − momentum)·running + momentum·new, new = the average over the rows of
    mean (R, C) and of var·m/(m − 1) (unbiased; m = ``count`` values per block)."""
    _update_running_kernel[launch_1d(running_mean.size)](mean, var, count / (count - 1), float(momentum),
                                                         running_mean, running_var)


# -- normalise and its backward ------------------------------------------------------------------

@cuda.jit(device=True)
def _normalized(value, mu, scale, shift):
    """(value − μ)·scale + shift in float64: the forward and the fused ReLU's mask use this one
    expression, so they round (and contract into an FMA) alike."""
    return (value - mu) * scale + shift


@cuda.jit
def _normalize_kernel(x, mean, invstd, gamma, beta, residual, add_residual, relu, out):
    """out[n, c, p] = (x[n, c, p] − mean[r, g]) · γ_c·invstd[r, g] + β_c; then, fused,
    out ← ReLU(out + residual) (``add_residual``) or ReLU(out) (``relu``), reading the stored
    value back so that it is the separate layers' result bit for bit (``kernels.cpu.norm``)."""
    i = cuda.grid(1)
    if i < x.size:
        _, channels, positions = x.shape
        rows, groups = mean.shape
        n, c, p = unravel3(i, channels, positions)
        r, g = _statistics_index(n, c, rows, channels // groups)
        out[n, c, p] = _normalized(x[n, c, p], mean[r, g], gamma[c] * invstd[r, g], beta[c])
        if add_residual:
            out[n, c, p] = formulas.relu(float64(out[n, c, p] + residual[n, c, p]), 0.0, 0.0)
        elif relu:
            out[n, c, p] = formulas.relu(float64(out[n, c, p]), 0.0, 0.0)


@cuda.jit(device=True)
def _masked_grad(dy, x, mu, inv, gamma, beta, relu, zero_below):
    """dy as float64, or for the fused ReLU dy·[normalised x, rounded to the dtype, > 0]."""
    if relu and not _normalized(x, mu, gamma * inv, beta) > zero_below:
        return 0.0
    return float64(dy)


@cuda.jit
def _affine_param_grads_kernel(dy, x, mean, invstd, gamma, beta, relu, zero_below, per_channel_blocks,
                               dgamma, dbeta, sum_dxhat, sum_dxhat_xhat):
    """Channel c per CUDA block: dβ_c = Σ_{n,p} dy,  dγ_c = Σ_{n,p} dy·x̂ (stored in the parameters' dtype).

    ``relu``: dy is masked by the fused ReLU (``_masked_grad``).
    ``per_channel_blocks`` (BatchNorm: one statistics block per channel over the batch): the
    backward's block sums are then γ_c·dβ_c and γ_c·dγ_c, written here in float64.
    """
    shared = cuda.shared.array(REDUCE_SHARED, float64)
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    c = cuda.blockIdx.x
    g = c // (channels // groups)
    total = 0.0
    total_xhat = 0.0
    for k in range(cuda.threadIdx.x, n_batch * positions, cuda.blockDim.x):
        n = k // positions
        p = k - n * positions
        r = n if rows > 1 else 0
        grad = _masked_grad(dy[n, c, p], x[n, c, p], mean[r, g], invstd[r, g], gamma[c], beta[c], relu,
                            zero_below)
        total += grad
        total_xhat += grad * (x[n, c, p] - mean[r, g]) * invstd[r, g]
    total = block_sum(shared, total)
    total_xhat = block_sum(shared, total_xhat)
    if cuda.threadIdx.x == 0:
        dbeta[c] = total
        dgamma[c] = total_xhat
        if per_channel_blocks:
            sum_dxhat[0, c] = gamma[c] * total
            sum_dxhat_xhat[0, c] = gamma[c] * total_xhat


@cuda.jit
def _block_grad_sums_kernel(dy, x, mean, invstd, gamma, sum_dxhat, sum_dxhat_xhat):
    """Block (r, g) per CUDA block: Σ dx̂ and Σ dx̂·x̂ with dx̂ = γ_c·dy = ∂L/∂x̂."""
    shared = cuda.shared.array(REDUCE_SHARED, float64)
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    r = cuda.blockIdx.x // groups
    g = cuda.blockIdx.x - r * groups
    mu = mean[r, g]
    total = 0.0
    total_centred = 0.0
    for k in range(cuda.threadIdx.x, _block_count(n_batch, rows, per_group, positions), cuda.blockDim.x):
        n, c, p = _block_element(k, r, g, rows, per_group, positions)
        dxhat = gamma[c] * float64(dy[n, c, p])
        total += dxhat
        total_centred += dxhat * (x[n, c, p] - mu)
    total = block_sum(shared, total)
    total_centred = block_sum(shared, total_centred)
    if cuda.threadIdx.x == 0:
        sum_dxhat[r, g] = total
        sum_dxhat_xhat[r, g] = total_centred * invstd[r, g]


@cuda.jit
def _normalized_input_grad_kernel(dy, x, mean, invstd, gamma, beta, relu, zero_below, sum_dxhat,
                                  sum_dxhat_xhat, dx):
    """dx = invstd · (γ_c·dy − (Σ dx̂ + x̂·Σ dx̂·x̂) / m); zero sums give the affine map's γ_c·invstd·dy.
    ``relu``: dy masked as in ``_affine_param_grads_kernel``."""
    i = cuda.grid(1)
    if i < x.size:
        n_batch, channels, positions = x.shape
        rows, groups = mean.shape
        per_group = channels // groups
        n, c, p = unravel3(i, channels, positions)
        r, g = _statistics_index(n, c, rows, per_group)
        inv = invstd[r, g]
        inv_count = 1.0 / _block_count(n_batch, rows, per_group, positions)
        grad = _masked_grad(dy[n, c, p], x[n, c, p], mean[r, g], inv, gamma[c], beta[c], relu, zero_below)
        xhat = (x[n, c, p] - mean[r, g]) * inv
        dx[n, c, p] = inv * (gamma[c] * grad - sum_dxhat[r, g] * inv_count
                             - xhat * (sum_dxhat_xhat[r, g] * inv_count))


def _affine_or_default(array, channels: int, dtype, value: float):
    """γ or β as given, or a (channels,) device array filled with ``value`` when None."""
    if array is not None:
        return array
    default = empty((channels,), dtype)
    fill(default, value)
    return default


def normalize(x3, mean, invstd, gamma, beta, residual3=None, relu: bool = False):
    """y3 = γ_c·(x3 − mean)·invstd + β_c for x3 (N, C, P) and (R, G) statistics; γ = 1, β = 0 when None.
    Fused: ReLU(… + residual3) with ``residual3``, ReLU(…) with ``relu`` (as ``kernels.cpu.norm``)."""
    channels = x3.shape[1]
    gamma = _affine_or_default(gamma, channels, x3.dtype, 1.0)
    beta = _affine_or_default(beta, channels, x3.dtype, 0.0)
    y3 = empty(x3.shape, x3.dtype)
    add_residual = residual3 is not None
    if x3.size:
        _normalize_kernel[launch_1d(x3.size)](x3, mean, invstd, gamma, beta, residual3 if add_residual else x3,
                                              add_residual, relu, y3)
    return y3


def normalize_backward(dy3, x3, mean, invstd, gamma, fixed_statistics: bool, beta=None, relu: bool = False):
    """(dx3, dγ (C,), dβ (C,)) for y3 = normalize(x3, mean, invstd, γ, β), all in x3's dtype.

    ``fixed_statistics``: mean and invstd are constants (running statistics), not functions of x.
    ``relu``: the forward was ``normalize(..., relu=True)``; dy3 is masked by its ReLU (recomputed).
    """
    n_batch, channels, positions = x3.shape
    rows, groups = mean.shape
    gamma = _affine_or_default(gamma, channels, x3.dtype, 1.0)
    beta = _affine_or_default(beta, channels, x3.dtype, 0.0)
    zero_below = formulas.relu_zero_below(x3.dtype)
    dgamma, dbeta = empty((channels,), x3.dtype), empty((channels,), x3.dtype)
    sum_dxhat, sum_dxhat_xhat = empty((rows, groups), np.float64), empty((rows, groups), np.float64)
    per_channel_blocks = rows == 1 and groups == channels and not fixed_statistics
    _affine_param_grads_kernel[channels, reduce_threads(n_batch * positions)](
        dy3, x3, mean, invstd, gamma, beta, relu, zero_below, per_channel_blocks, dgamma, dbeta, sum_dxhat,
        sum_dxhat_xhat)
    if fixed_statistics:
        fill(sum_dxhat, 0.0)
        fill(sum_dxhat_xhat, 0.0)
    elif not per_channel_blocks:
        count = (n_batch if rows == 1 else 1) * (channels // groups) * positions
        _block_grad_sums_kernel[rows * groups, reduce_threads(count)](
            dy3, x3, mean, invstd, gamma, sum_dxhat, sum_dxhat_xhat)
    dx3 = empty(x3.shape, x3.dtype)
    if x3.size:
        _normalized_input_grad_kernel[launch_1d(x3.size)](dy3, x3, mean, invstd, gamma, beta, relu, zero_below,
                                                          sum_dxhat, sum_dxhat_xhat, dx3)
    return dx3, dgamma, dbeta


# -- LocalResponseNorm ----------------------------------------------------------------------------

@cuda.jit
def _lrn_output_kernel(x, size, alpha_over_size, beta, k, scale, out):
    """scale = k + (α/n)·Σ_{c' ∈ [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋]} x[n, c', p]²,  out = x·scale^(−β)."""
    i = cuda.grid(1)
    if i < x.size:
        _, channels, positions = x.shape
        n, c, p = unravel3(i, channels, positions)
        total = 0.0
        for other in range(max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, channels)):
            value = float64(x[n, other, p])
            total += value * value
        scale[n, c, p] = k + alpha_over_size * total
        out[n, c, p] = x[n, c, p] * scale[n, c, p] ** (-beta)


@cuda.jit
def _lrn_grad_terms_kernel(dy, x, scale, beta, terms):
    """terms = dy·x·scale^(−β−1): what output channel c sends back to every channel in its window."""
    i = cuda.grid(1)
    if i < x.size:
        _, channels, positions = x.shape
        n, c, p = unravel3(i, channels, positions)
        terms[n, c, p] = dy[n, c, p] * x[n, c, p] * scale[n, c, p] ** (-beta - 1.0)


@cuda.jit
def _lrn_input_grad_kernel(dy, x, scale, terms, size, beta, coefficient, dx):
    """dx = dy·scale^(−β) − coefficient·x·Σ_{c ∈ [j − ⌊(n−1)/2⌋, j + ⌊n/2⌋]} terms[c] (the mirrored window)."""
    i = cuda.grid(1)
    if i < x.size:
        _, channels, positions = x.shape
        n, c, p = unravel3(i, channels, positions)
        total = 0.0
        for other in range(max(c - (size - 1) // 2, 0), min(c + size // 2 + 1, channels)):
            total += terms[n, other, p]
        dx[n, c, p] = dy[n, c, p] * scale[n, c, p] ** (-beta) - coefficient * x[n, c, p] * total


def lrn_scale(x3, size: int, alpha: float, k: float, beta: float):
    """(y3, s) with s = k + (α/n)·Σ_window x² and y3 = x3·s^(−β), for x3 (N, C, P), both like x3."""
    scale, y3 = empty(x3.shape, x3.dtype), empty(x3.shape, x3.dtype)
    if x3.size:
        _lrn_output_kernel[launch_1d(x3.size)](x3, int(size), float(alpha) / size, float(beta), float(k),
                                               scale, y3)
    return y3, scale


def lrn_backward(dy3, x3, scale, size: int, alpha: float, beta: float):
    """dx3 for y3 = x3·s^(−β), s = ``scale`` from ``lrn_scale`` (formula in ``numbanet.norm``)."""
    dx3 = empty(x3.shape, x3.dtype)
    if x3.size:
        terms = scratch("lrn.terms", x3.shape, x3.dtype)
        _lrn_grad_terms_kernel[launch_1d(x3.size)](dy3, x3, scale, float(beta), terms)
        _lrn_input_grad_kernel[launch_1d(x3.size)](dy3, x3, scale, terms, int(size), float(beta),
                                                   2.0 * alpha * beta / size, dx3)
    return dx3

