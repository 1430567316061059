"""CPU kernels for the activation functions (layer: ``numbanet.activation``).

Every activation is elementwise: ``elementwise(kind, x, a, b)`` runs one ``prange`` over
the flat index, iteration i reading element i and writing element i (a pure gather).
The scalar formulas are those of ``numbanet.kernels.formulas``, shared with the CUDA
kernels; each kind's kernel is made by a factory (one closure per formula, cached on
disk like any ``cache=True`` function) and compiled on first use.

Dice's kernels reduce over each feature (channel); each channel belongs to one
parallel iteration and its sums run in a fixed order.

The public functions have the names and arguments of ``kernels.cuda.activation``'s.
"""
import numpy as np
from numba import njit, prange

from .. import formulas
from ..formulas import dice_terms


def _forward_kernel(formula):
    """out[i] = formula(x[i], a, b) for 1-D x, out."""
    @njit(parallel=True, cache=True)
    def kernel(x, a, b, out):
        for i in prange(x.size):
            out[i] = formula(float(x[i]), a, b)
    return kernel


def _backward_kernel(formula):
    """dx[i] = formula(dy[i], saved[i], a, b) for 1-D dy, saved, dx."""
    @njit(parallel=True, cache=True)
    def kernel(dy, saved, a, b, dx):
        for i in prange(saved.size):
            dx[i] = formula(float(dy[i]), float(saved[i]), a, b)
    return kernel


_KERNELS = {kind: (_forward_kernel(f), _backward_kernel(g)) for kind, (f, g) in formulas.ACTIVATIONS.items()}


def elementwise(kind: str, x, a: float = 0.0, b: float = 0.0):
    """y = f(x) elementwise for the activation ``kind`` (a key of ``formulas.ACTIVATIONS``) and its
    constants a, b; y has x's shape and dtype."""
    out = np.empty_like(x)
    _KERNELS[kind][0](x.reshape(-1), float(a), float(b), out.reshape(-1))
    return out


def elementwise_backward(kind: str, dy, saved, a: float = 0.0, b: float = 0.0):
    """dx = g(dy, saved) elementwise; ``saved`` is the forward input (or output for sigmoid, tanh)
    and dy is validated by the caller: same shape and dtype."""
    dx = np.empty_like(saved)
    _KERNELS[kind][1](dy.reshape(-1), saved.reshape(-1), float(a), float(b), dx.reshape(-1))
    return dx


# -- Dice ------------------------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _channel_moments_kernel(x, mean, var):
    """Per channel c of x (N, C, L): mean[c] and the biased variance var[c] over N·L values."""
    n_batch, channels, length = x.shape
    count = n_batch * length
    for c in prange(channels):
        total = 0.0
        for n in range(n_batch):
            for j in range(length):
                total += x[n, c, j]
        mu = total / count
        squares = 0.0
        for n in range(n_batch):
            for j in range(length):
                d = x[n, c, j] - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / count


@njit(parallel=True, cache=True)
def _dice_kernel(x, alpha, mean, inv_std, out):
    """out = x·(α + (1 − α)·σ((x − mean)·inv_std)), per channel of x (N, C, L)."""
    n_batch, channels, length = x.shape
    for c in prange(channels):
        a, mu, scale = float(alpha[c]), float(mean[c]), float(inv_std[c])
        for n in range(n_batch):
            for j in range(length):
                out[n, c, j] = formulas.dice(float(x[n, c, j]), a, mu, scale)


@njit(parallel=True, cache=True)
def _dice_backward_kernel(dy, x, alpha, mean, inv_std, batch_stats, dx, dalpha):
    """dx and dα for ``_dice_kernel``; see ``numbanet.activation`` for the formulas.

    With ``batch_stats`` the mean and inv_std came from this batch, so the
    gradient also flows through them (the batch-norm backward of x̂).
    """
    n_batch, channels, length = x.shape
    count = n_batch * length
    for c in prange(channels):
        a, mu, scale = float(alpha[c]), float(mean[c]), float(inv_std[c])
        grad_alpha = 0.0
        grad_norm_sum = 0.0       # Σ ∂L/∂x̂
        grad_norm_dot = 0.0       # Σ ∂L/∂x̂ · x̂
        for n in range(n_batch):
            for j in range(length):
                v, g = float(x[n, c, j]), float(dy[n, c, j])
                normed, p, grad_normed = dice_terms(g, v, a, mu, scale)
                grad_alpha += g * v * (1.0 - p)
                grad_norm_sum += grad_normed
                grad_norm_dot += grad_normed * normed
        dalpha[c] = grad_alpha
        mean_grad = grad_norm_sum / count if batch_stats else 0.0
        mean_grad_dot = grad_norm_dot / count if batch_stats else 0.0
        for n in range(n_batch):
            for j in range(length):
                v, g = float(x[n, c, j]), float(dy[n, c, j])
                normed, p, grad_normed = dice_terms(g, v, a, mu, scale)
                dx[n, c, j] = (g * (a + (1.0 - a) * p)
                               + scale * (grad_normed - mean_grad - normed * mean_grad_dot))


def dice_statistics(x3, running_mean, running_var, batch_stats: bool, eps: float):
    """(mean, var or None, inv_std), (C,) float64, for Dice on x3 (N, C, L): the batch's (biased
    var) when ``batch_stats``, else the running statistics (var None)."""
    if not batch_stats:
        mean, var = np.asarray(running_mean, np.float64), np.asarray(running_var, np.float64)
        return mean, None, 1.0 / np.sqrt(var + eps)
    channels = x3.shape[1]
    mean, var = np.empty(channels), np.empty(channels)
    _channel_moments_kernel(x3, mean, var)
    return mean, var, 1.0 / np.sqrt(var + eps)


def dice_update_running(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """BatchNorm's running-statistics rule, in place (var made unbiased by m/(m − 1))."""
    running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean
    running_var[...] = (1.0 - momentum) * running_var + momentum * var * (count / (count - 1))


def dice_forward(x3, alpha, mean, inv_std):
    """y3 = x3·(α + (1 − α)·σ(x̂)) for x3 (N, C, L), α (C,), float64 mean and inv_std (C,)."""
    y3 = np.empty(x3.shape, x3.dtype)
    _dice_kernel(x3, np.ascontiguousarray(alpha), mean, inv_std, y3)
    return y3


def dice_backward(dy3, x3, alpha, mean, inv_std, batch_stats: bool):
    """(dx3 like x3, dα (C,) in α's dtype) for ``dice_forward``; formulas in ``numbanet.activation``."""
    dx3, dalpha = np.empty(x3.shape, x3.dtype), np.empty(x3.shape[1], alpha.dtype)
    _dice_backward_kernel(np.ascontiguousarray(dy3), x3, np.ascontiguousarray(alpha), mean, inv_std,
                          batch_stats, dx3, dalpha)
    return dx3, dalpha
