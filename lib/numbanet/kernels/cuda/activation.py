r"""CUDA kernels for the activation functions (layer: ``numbanet.activation``).

Every activation is elementwise: ``elementwise(kind, x, a, b)`` launches one thread per
element, ``out[i] = f(x[i], a, b)``, a pure gather, so results do not depend on the launch.
The scalar formulas f and their derivatives are those of ``numbanet.kernels.formulas``,
shared with the CPU kernels and compiled here as CUDA device functions: evaluated in
float64 and rounded once to the array's dtype, with the overflow-free σ and softplus.
Elementwise kernels are memory-bound, so float64 arithmetic costs little on data-centre
GPUs; on consumer GPUs (float64 at 1/32 rate) GELU/Mish are the most expensive.

Dice reuses the BatchNorm statistics kernels (``kernels.cuda.norm``) for its
per-feature mean and variance and reduces its backward sums with one CUDA block per
feature (shared-memory tree, fixed order).

The public functions have the names and arguments of ``kernels.cpu.activation``'s,
taking and returning device arrays.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float64

from .. import formulas
from ..formulas import dice_terms
from ._common import REDUCE_SHARED, block_sum, empty, flat, launch_1d, reduce_threads
from .norm import block_statistics, fixed_statistics, unravel3, update_running


def _forward_kernel(formula):
    """out[i] = formula(x[i], a, b) for 1-D x, out."""
    @cuda.jit
    def kernel(x, a, b, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = formula(float64(x[i]), a, b)
    return kernel


def _backward_kernel(formula):
    """dx[i] = formula(dy[i], saved[i], a, b) for 1-D dy, saved, dx."""
    @cuda.jit
    def kernel(dy, saved, a, b, dx):
        i = cuda.grid(1)
        if i < dx.size:
            dx[i] = formula(float64(dy[i]), float64(saved[i]), a, b)
    return kernel


_KERNELS = {kind: (_forward_kernel(f), _backward_kernel(g)) for kind, (f, g) in formulas.ACTIVATIONS.items()}


def elementwise(kind: str, x, a: float = 0.0, b: float = 0.0):
    """y = f(x) elementwise for the activation ``kind`` (a key of ``formulas.ACTIVATIONS``) and its
    constants a, b; y has x's shape and dtype."""
    out = empty(x.shape, x.dtype)
    if x.size:
        _KERNELS[kind][0][launch_1d(x.size)](flat(x), float(a), float(b), flat(out))
    return out


def elementwise_backward(kind: str, dy, saved, a: float = 0.0, b: float = 0.0):
    """dx = g(dy, saved) elementwise; ``saved`` is the forward input (or output for sigmoid, tanh)
    and dy is validated by the caller: same shape, dtype and device."""
    dx = empty(saved.shape, saved.dtype)
    if dx.size:
        _KERNELS[kind][1][launch_1d(dx.size)](flat(dy), flat(saved), float(a), float(b), flat(dx))
    return dx


# -- Dice ------------------------------------------------------------------------------------------

@cuda.jit
def _dice_kernel(x, alpha, mean, inv_std, out):
    """out = x·(α + (1 − α)·σ((x − mean)·inv_std)) per channel of x (N, C, L); one thread per element."""
    i = cuda.grid(1)
    if i < x.size:
        _, channels, length = x.shape
        n, c, j = unravel3(i, channels, length)
        out[n, c, j] = formulas.dice(float64(x[n, c, j]), float64(alpha[c]), mean[c], inv_std[c])


@cuda.jit
def _dice_sums_kernel(dy, x, alpha, mean, inv_std, dalpha, grad_norm_sum, grad_norm_dot):
    """Channel c per CUDA block: dα_c = Σ dy·x·(1 − p), Σ ∂L/∂x̂ and Σ ∂L/∂x̂·x̂ over (N, L)."""
    shared = cuda.shared.array(REDUCE_SHARED, float64)
    n_batch, _, length = x.shape
    c = cuda.blockIdx.x
    a = float64(alpha[c])
    grad_alpha = 0.0
    total = 0.0
    total_dot = 0.0
    for k in range(cuda.threadIdx.x, n_batch * length, cuda.blockDim.x):
        n = k // length
        j = k - n * length
        value = float64(x[n, c, j])
        grad = float64(dy[n, c, j])
        normed, p, grad_normed = dice_terms(grad, value, a, mean[c], inv_std[c])
        grad_alpha += grad * value * (1.0 - p)
        total += grad_normed
        total_dot += grad_normed * normed
    grad_alpha = block_sum(shared, grad_alpha)
    total = block_sum(shared, total)
    total_dot = block_sum(shared, total_dot)
    if cuda.threadIdx.x == 0:
        dalpha[c] = grad_alpha
        grad_norm_sum[c] = total
        grad_norm_dot[c] = total_dot


@cuda.jit
def _dice_input_grad_kernel(dy, x, alpha, mean, inv_std, grad_norm_sum, grad_norm_dot, batch_stats, dx):
    """dx = dy·(α + (1 − α)·p) + inv_std·(∂L/∂x̂ − mean(∂L/∂x̂) − x̂·mean(∂L/∂x̂·x̂)); the means are 0
    unless ``batch_stats`` (then the statistics depend on x)."""
    i = cuda.grid(1)
    if i < x.size:
        n_batch, channels, length = x.shape
        n, c, j = unravel3(i, channels, length)
        a = float64(alpha[c])
        value = float64(x[n, c, j])
        grad = float64(dy[n, c, j])
        normed, p, grad_normed = dice_terms(grad, value, a, mean[c], inv_std[c])
        count = n_batch * length
        mean_grad = grad_norm_sum[c] / count if batch_stats else 0.0
        mean_grad_dot = grad_norm_dot[c] / count if batch_stats else 0.0
        dx[n, c, j] = grad * (a + (1.0 - a) * p) + inv_std[c] * (grad_normed - mean_grad - normed * mean_grad_dot)


def dice_forward(x3, alpha, mean, inv_std):
    """y3 = x3·(α + (1 − α)·σ(x̂)) for x3 (N, C, L), α (C,), float64 mean and inv_std (C,)."""
    y3 = empty(x3.shape, x3.dtype)
    if x3.size:
        _dice_kernel[launch_1d(x3.size)](x3, alpha, mean, inv_std, y3)
    return y3


def dice_backward(dy3, x3, alpha, mean, inv_std, batch_stats: bool):
    """(dx3 like x3, dα (C,) in α's dtype) for ``dice_forward``; formulas in ``numbanet.activation``."""
    n_batch, channels, length = x3.shape
    dalpha = empty((channels,), alpha.dtype)
    grad_norm_sum, grad_norm_dot = empty((channels,), np.float64), empty((channels,), np.float64)
    _dice_sums_kernel[channels, reduce_threads(n_batch * length)](dy3, x3, alpha, mean, inv_std, dalpha,
                                                                  grad_norm_sum, grad_norm_dot)
    dx3 = empty(x3.shape, x3.dtype)
    if x3.size:
        _dice_input_grad_kernel[launch_1d(x3.size)](dy3, x3, alpha, mean, inv_std, grad_norm_sum,
                                                    grad_norm_dot, bool(batch_stats), dx3)
    return dx3, dalpha


def dice_statistics(x3, running_mean, running_var, batch_stats: bool, eps: float):
    """(mean, var or None, inv_std), (C,) float64 device arrays, for Dice on x3 (N, C, L): the batch's
    (biased var) when ``batch_stats``, else the running statistics (var None)."""
    channels = x3.shape[1]
    if batch_stats:
        mean, var, inv_std = block_statistics(x3, 1, channels, eps)
        return mean.reshape(channels), var.reshape(channels), inv_std.reshape(channels)
    mean, inv_std = fixed_statistics(running_mean, running_var, eps)
    return mean.reshape(channels), None, inv_std.reshape(channels)


def dice_update_running(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """BatchNorm's running-statistics rule, in place on the device (var made unbiased by m/(m − 1))."""
    channels = mean.size
    update_running(running_mean, running_var, mean.reshape(1, channels), var.reshape(1, channels), count,
                   momentum)
