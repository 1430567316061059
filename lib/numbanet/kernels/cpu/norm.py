r"""CPU kernels for the normalisation layers (layer module: ``numbanet.norm``).

BatchNorm, InstanceNorm, GroupNorm and LayerNorm share these kernels.  Each views
its input as x (N, C, P) -- batch, channels, positions (H·W, L, or 1) -- and
normalises *blocks* of it, with the block statistics in (R, G) arrays:

    block (r, g) = { x[n, c, p] : n ∈ rows(r), c ∈ [g·C/G, (g+1)·C/G), all p }
    rows(r)      = all samples if R = 1 (BatchNorm: G = C),
                   sample r      if R = N (InstanceNorm: G = C; GroupNorm; LayerNorm: G = 1)

so element (n, c, p) reads statistics (r, g) = (n if R = N else 0, c // (C/G)).
γ and β are always per channel.  Statistics are float64 and every sum is a
float64 local of one parallel iteration: results do not depend on the thread count.
The reductions are compiled with ``fastmath={"reassoc"}``, which lets LLVM split a sum
into vector lanes (measured 2.4-3x faster on (128, 16, 32x32) inputs; a plain float sum
is one dependency chain, one add per 4 cycles); the lane order is fixed at compile time.

LocalResponseNorm's kernels are at the end: a sum over a window of channels
(used forward on x² and backward, mirrored, on the gradient terms) and the
element-wise maps around it.

The public functions at the end are those of ``kernels.cuda.norm``.
"""
import numpy as np
from numba import njit, prange

from ..._workspace import scratch
from .. import formulas


# A parameter-gradient task sums this many consecutive channels, so that a layout with few
# positions per channel (LayerNorm's (N, D, 1)) still reads whole cache lines.
_CHANNELS_PER_TASK_TARGET = 64


@njit(cache=True)
def _block_bounds(task, rows, groups, n_batch, per_group):
    """(r, g, first sample, end sample, first channel, end channel) of block number ``task``."""
    r = task // groups
    g = task - r * groups
    if rows == 1:
        return r, g, 0, n_batch, g * per_group, (g + 1) * per_group
    return r, g, r, r + 1, g * per_group, (g + 1) * per_group


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _moments_kernel(x, mean, var):
    """mean[r, g] and biased variance var[r, g] = (1/m) Σ (x − mean)² of each block of x (N, C, P).

    One pass over the block, on the shifted values d = x − K with K the block's first element
    (the "shifted data" algorithm): S1 = Σ d and S2 = Σ d² in float64 give mean = K + S1/m and
    var = S2/m − (S1/m)².  The unshifted one-pass Σx² − m·mean² cancels catastrophically when
    |mean| ≫ std; shifted by a value of the block, the two terms stay of the order of the
    variance (``tests/test_norm.py`` checks a mean of 10⁴ with unit spread).  One pass instead of
    two (mean, then squared deviations) reads x once.  One block per iteration.
    """
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    for task in prange(rows * groups):
        r, g, n_lo, n_hi, c_lo, c_hi = _block_bounds(task, rows, groups, n_batch, per_group)
        count = (n_hi - n_lo) * per_group * positions
        if count == 0:
            mean[r, g] = np.nan
            var[r, g] = np.nan
            continue
        shift = np.float64(x[n_lo, c_lo, 0])  # float() of a float32 stays float32 in Numba
        total = 0.0
        squares = 0.0
        for n in range(n_lo, n_hi):
            for c in range(c_lo, c_hi):
                for p in range(positions):
                    deviation = x[n, c, p] - shift
                    total += deviation
                    squares += deviation * deviation
        offset = total / count
        mean[r, g] = shift + offset
        var[r, g] = max(squares / count - offset * offset, 0.0)


@njit(parallel=True, cache=True)
def _normalize_kernel(x, mean, invstd, gamma, beta, residual, add_residual, relu, out):
    """out[n, c, p] = γ_c · (x[n, c, p] − mean[r, g]) · invstd[r, g] + β_c, for x, out (N, C, P);
    then, in the same pass, out ← ReLU(out + residual) (``add_residual``) or ReLU(out) (``relu``).

    The fused steps run on each (n, c) row while it is in L1, reading back the stored
    value, so the result is bit for bit BatchNorm's output rounded to the dtype, plus the
    residual in the dtype, then ReLU: what the separate layers compute.  ``residual`` is
    any array of x's type when ``add_residual`` is False (it is not read).
    One (sample, group) per iteration: the statistics are read once per group.
    """
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    for task in prange(n_batch * groups):
        n = task // groups
        g = task - n * groups
        r = n if rows > 1 else 0
        mu = mean[r, g]
        inv = invstd[r, g]
        for c in range(g * per_group, (g + 1) * per_group):
            scale = gamma[c] * inv
            shift = beta[c]
            src = x[n, c]
            dst = out[n, c]
            for p in range(positions):
                dst[p] = (src[p] - mu) * scale + shift
            if add_residual:
                skip = residual[n, c]
                for p in range(positions):
                    dst[p] = formulas.relu(dst[p] + skip[p], 0.0, 0.0)
            elif relu:
                for p in range(positions):
                    dst[p] = formulas.relu(dst[p], 0.0, 0.0)


@njit(cache=True)
def _relu_passes(value, mu, scale, shift, zero_below):
    """Whether a ReLU after normalisation passes the gradient at ``value``: the normalised
    (value − μ)·scale + shift, rounded to the array's dtype, is > 0, i.e. exceeds ``zero_below``
    (``formulas.relu_zero_below``: what rounds to 0).  Compiled without fastmath, so it is
    ``_normalize_kernel``'s expression exactly, also inside the reassociating reductions."""
    return (value - mu) * scale + shift > zero_below


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _affine_param_grads_kernel(dy, x, mean, invstd, gamma, beta, relu, zero_below, dgamma, dbeta):
    """dgamma[c] = Σ_{n,p} dy·x̂ and dbeta[c] = Σ_{n,p} dy, x̂ = (x − mean[r, g])·invstd[r, g].

    ``relu``: dy is the gradient of ReLU(γ·x̂ + β) and is taken as dy·[γ·x̂ + β > 0]
    (``_relu_passes``), the fused ReLU's backward.
    The sums run across the batch, so an iteration owns a run of consecutive channels
    (not a block); each channel's sum is taken in the same order whatever the run length.
    """
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    run = max(1, channels // _CHANNELS_PER_TASK_TARGET)
    for task in prange((channels + run - 1) // run):
        c_lo = task * run
        c_hi = min(c_lo + run, channels)
        for c in range(c_lo, c_hi):
            dgamma[c] = 0.0
            dbeta[c] = 0.0
        for n in range(n_batch):
            r = n if rows > 1 else 0
            g = c_lo // per_group
            group_end = (g + 1) * per_group
            for c in range(c_lo, c_hi):
                if c == group_end:  # stepping through the groups: no division per element
                    g += 1
                    group_end += per_group
                mu = mean[r, g]
                inv = invstd[r, g]
                scale = gamma[c] * inv
                shift = beta[c]
                sample_dy = 0.0
                sample_dy_centred = 0.0
                for p in range(positions):
                    grad = dy[n, c, p]
                    if relu and not _relu_passes(x[n, c, p], mu, scale, shift, zero_below):
                        grad = 0.0
                    sample_dy += grad
                    sample_dy_centred += grad * (x[n, c, p] - mu)
                dbeta[c] += sample_dy
                dgamma[c] += sample_dy_centred * inv


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _block_grad_sums_kernel(dy, x, mean, invstd, gamma, sum_dxhat, sum_dxhat_xhat):
    """Per block (r, g): sum_dxhat = Σ dx̂ and sum_dxhat_xhat = Σ dx̂·x̂, where dx̂ = γ_c·dy = ∂L/∂x̂."""
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    for task in prange(rows * groups):
        r, g, n_lo, n_hi, c_lo, c_hi = _block_bounds(task, rows, groups, n_batch, per_group)
        mu = mean[r, g]
        total = 0.0
        total_centred = 0.0
        for n in range(n_lo, n_hi):
            for c in range(c_lo, c_hi):
                weight = gamma[c]
                for p in range(positions):
                    dxhat = weight * dy[n, c, p]
                    total += dxhat
                    total_centred += dxhat * (x[n, c, p] - mu)
        sum_dxhat[r, g] = total
        sum_dxhat_xhat[r, g] = total_centred * invstd[r, g]


@njit(parallel=True, cache=True)
def _normalized_input_grad_kernel(dy, x, mean, invstd, gamma, beta, relu, zero_below, sum_dxhat,
                                  sum_dxhat_xhat, dx):
    """dx = invstd · (γ_c·dy − (sum_dxhat + x̂·sum_dxhat_xhat) / m), m = elements per block.

    With zero sums (statistics that are constants, e.g. evaluation-mode
    BatchNorm) this is the affine map's gradient dx = γ_c·invstd·dy.  ``relu``: dy is
    masked as in ``_affine_param_grads_kernel``.
    One (sample, group) per iteration, as in ``normalize``.
    """
    n_batch, channels, positions = x.shape
    rows, groups = mean.shape
    per_group = channels // groups
    samples_per_block = n_batch if rows == 1 else 1
    inv_count = 1.0 / (samples_per_block * per_group * positions)
    for task in prange(n_batch * groups):
        n = task // groups
        g = task - n * groups
        r = n if rows > 1 else 0
        mu = mean[r, g]
        inv = invstd[r, g]
        mean_dxhat = sum_dxhat[r, g] * inv_count
        mean_dxhat_xhat = sum_dxhat_xhat[r, g] * inv_count
        for c in range(g * per_group, (g + 1) * per_group):
            weight = gamma[c]
            scale = weight * inv
            shift = beta[c]
            for p in range(positions):
                grad = dy[n, c, p]
                if relu and not _relu_passes(x[n, c, p], mu, scale, shift, zero_below):
                    grad = 0.0
                xhat = (x[n, c, p] - mu) * inv
                dx[n, c, p] = inv * (weight * grad - mean_dxhat - xhat * mean_dxhat_xhat)


@njit(parallel=True, cache=True)
def _channel_window_sum_kernel(a, before, after, out):
    """out[n, c, p] = Σ_{c' = c − before}^{c + after} a[n, c', p] for a, out (N, C, P); channels outside [0, C) are 0."""
    n_batch, channels, positions = a.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        first = max(c - before, 0)
        end = min(c + after + 1, channels)
        window = a[n]
        dst = out[n, c]
        for p in range(positions):
            total = 0.0
            for other in range(first, end):
                total += window[other, p]
            dst[p] = total


@njit(parallel=True, cache=True)
def _lrn_output_kernel(x, scale, alpha_over_size, beta, k, out):
    """On entry scale = window sums of x²; on exit scale = k + (α/n)·scale and out = x · scale^(−β)."""
    n_batch, channels, positions = x.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        src = x[n, c]
        s = scale[n, c]
        dst = out[n, c]
        for p in range(positions):
            s[p] = k + alpha_over_size * s[p]
            dst[p] = src[p] * s[p] ** (-beta)


@njit(parallel=True, cache=True)
def _lrn_grad_terms_kernel(dy, x, scale, beta, out):
    """out = dy · x · scale^(−β−1): what output channel c sends back to every channel in its window."""
    n_batch, channels, positions = x.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        grad = dy[n, c]
        src = x[n, c]
        s = scale[n, c]
        dst = out[n, c]
        for p in range(positions):
            dst[p] = grad[p] * src[p] * s[p] ** (-beta - 1.0)


@njit(parallel=True, cache=True)
def _lrn_input_grad_kernel(dy, x, scale, window_terms, beta, coefficient, dx):
    """dx = dy · scale^(−β) − coefficient · x · window_terms, coefficient = 2αβ/n."""
    n_batch, channels, positions = x.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        grad = dy[n, c]
        src = x[n, c]
        s = scale[n, c]
        terms = window_terms[n, c]
        dst = dx[n, c]
        for p in range(positions):
            dst[p] = grad[p] * s[p] ** (-beta) - coefficient * src[p] * terms[p]


# -- the operations (same names and arguments as kernels.cuda.norm) --------------------------------

def block_statistics(x3, rows: int, groups: int, eps: float):
    """(mean, var, invstd) of the blocks of x3 (N, C, P), each (rows, groups) float64."""
    mean = np.empty((rows, groups))
    var = np.empty((rows, groups))
    _moments_kernel(x3, mean, var)
    return mean, var, 1.0 / np.sqrt(var + eps)


def fixed_statistics(running_mean, running_var, eps: float):
    """(mean, invstd), each (1, C) float64, from running statistics."""
    mean = np.asarray(running_mean, np.float64).reshape(1, -1)
    return mean, 1.0 / np.sqrt(np.asarray(running_var, np.float64).reshape(1, -1) + eps)


def update_running(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """In place: running ← (1 − momentum)·running + momentum·new, new = the average over the rows of
    the (R, C) block statistics, the variance made unbiased with m/(m − 1) (m = ``count``)."""
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean.mean(axis=0)
    running_var[...] = (1 - momentum) * running_var + momentum * (var * count / (count - 1)).mean(axis=0)


def count_batch(num_batches_tracked) -> None:
    """num_batches_tracked += 1, in place."""
    num_batches_tracked[...] += 1


def normalize(x3, mean, invstd, gamma, beta, residual3=None, relu: bool = False):
    """y3 = γ·x̂ + β for x3 (N, C, P) and (R, G) statistics; γ = 1, β = 0 when None.

    Fused in the same pass: y3 = ReLU(γ·x̂ + β + residual3) when ``residual3`` (like x3) is
    given, y3 = ReLU(γ·x̂ + β) when ``relu``; bit for bit the separate layers' result.
    """
    channels = x3.shape[1]
    gamma, beta = _affine_defaults(gamma, beta, channels, x3.dtype)
    y3 = np.empty_like(x3)
    add_residual = residual3 is not None
    residual3 = np.ascontiguousarray(residual3) if add_residual else x3
    _normalize_kernel(x3, mean, invstd, gamma, beta, residual3, add_residual, relu, y3)
    return y3


def normalize_backward(dy3, x3, mean, invstd, gamma, fixed_statistics: bool, beta=None, relu: bool = False):
    """(dx3, dγ (C,), dβ (C,)) for y3 = γ·x̂ + β; formulas in ``numbanet.norm``.

    ``fixed_statistics``: mean and invstd are constants (running statistics), not functions of x.
    ``relu``: the forward was ``normalize(..., relu=True)`` and dy3 is the gradient of its
    ReLU output: dy3·[γ·x̂ + β > 0] is used, the mask recomputed from x3 (β needed).
    """
    channels = x3.shape[1]
    gamma, beta = _affine_defaults(gamma, beta, channels, x3.dtype)
    zero_below = formulas.relu_zero_below(x3.dtype)
    dy3 = np.ascontiguousarray(dy3, dtype=x3.dtype)
    dgamma, dbeta = np.empty(channels), np.empty(channels)
    _affine_param_grads_kernel(dy3, x3, mean, invstd, gamma, beta, relu, zero_below, dgamma, dbeta)
    if fixed_statistics:
        sum_dxhat, sum_dxhat_xhat = np.zeros_like(mean), np.zeros_like(mean)
    elif mean.shape == (1, channels):
        # one block per channel spanning the batch (BatchNorm): the block sums are γ·dβ and γ·dγ
        sum_dxhat, sum_dxhat_xhat = (gamma * dbeta)[None], (gamma * dgamma)[None]
    else:
        sum_dxhat, sum_dxhat_xhat = np.empty_like(mean), np.empty_like(mean)
        _block_grad_sums_kernel(dy3, x3, mean, invstd, gamma, sum_dxhat, sum_dxhat_xhat)
    dx3 = np.empty_like(x3)
    _normalized_input_grad_kernel(dy3, x3, mean, invstd, gamma, beta, relu, zero_below, sum_dxhat,
                                  sum_dxhat_xhat, dx3)
    return dx3, dgamma.astype(x3.dtype), dbeta.astype(x3.dtype)


def _affine_defaults(gamma, beta, channels: int, dtype):
    """(γ, β) as given, or ones / zeros of (channels,) where None."""
    return (np.ones(channels, dtype) if gamma is None else gamma,
            np.zeros(channels, dtype) if beta is None else beta)


def lrn_scale(x3, size: int, alpha: float, k: float, beta: float):
    """(y3, s) with s = k + (α/n)·Σ_window x² and y3 = x3·s^(−β), for x3 (N, C, P)."""
    squares = scratch("lrn.squares", x3.shape, x3.dtype)
    np.multiply(x3, x3, out=squares)
    scale = np.empty_like(x3)
    _channel_window_sum_kernel(squares, size // 2, (size - 1) // 2, scale)
    y3 = np.empty_like(x3)
    _lrn_output_kernel(x3, scale, float(alpha) / size, float(beta), float(k), y3)
    return y3, scale


def lrn_backward(dy3, x3, scale, size: int, alpha: float, beta: float):
    """dx3 for y3 = x3·s^(−β) (formula in ``numbanet.norm``); ``scale`` = s from the forward pass."""
    terms = scratch("lrn.terms", x3.shape, x3.dtype)
    _lrn_grad_terms_kernel(dy3, x3, scale, float(beta), terms)
    window_terms = scratch("lrn.window_terms", x3.shape, x3.dtype)
    # channel c's window [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋] holds j exactly when c lies in the mirrored one
    _channel_window_sum_kernel(terms, (size - 1) // 2, size // 2, window_terms)
    dx3 = np.empty_like(x3)
    _lrn_input_grad_kernel(dy3, x3, scale, window_terms, float(beta), 2.0 * alpha * beta / size, dx3)
    return dx3
