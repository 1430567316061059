"""CPU kernels for the optimizers (layer: ``numbanet.optim``).

Each update is elementwise: one parallel iteration per element of the flattened
parameter, which it updates in place together with its state (momentum buffer,
Adam moments).  No element depends on another, so the result is the same for
any thread count.  Arithmetic is done in float64 and stored in the arrays' dtype.
"""
import math

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def sgd(param, grad, lr, weight_decay):
    """p ← p − lr·(g + λ·p)."""
    for i in prange(param.shape[0]):
        p = np.float64(param[i])
        param[i] = p - lr * (grad[i] + weight_decay * p)


@njit(parallel=True, cache=True)
def sgd_momentum(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step):
    """PyTorch's SGD with momentum μ, dampening τ and weight decay λ::

        g ← g + λ·p
        b ← g                       on the first step
        b ← μ·b + (1 − τ)·g         afterwards
        p ← p − lr·(g + μ·b)        (nesterov)   or   p ← p − lr·b
    """
    for i in prange(param.shape[0]):
        p = np.float64(param[i])
        g = grad[i] + weight_decay * p
        b = g if first_step else momentum * buf[i] + (1.0 - dampening) * g
        buf[i] = b
        step = g + momentum * b if nesterov else b
        param[i] = p - lr * step


@njit(parallel=True, cache=True)
def adam(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
         weight_decay, decay_factor):
    """PyTorch's Adam / AdamW update at step t (bias corrections computed by the caller)::

        p ← decay_factor·p                    (AdamW: 1 − lr·λ;  Adam: 1)
        g ← g + weight_decay·p                (Adam's L2 term;   AdamW: weight_decay = 0)
        m ← m + (1 − β1)·(g − m)
        v ← β2·v + (1 − β2)·g²
        p ← p − step_size·m / (√v / bias_correction2_sqrt + eps)

    with step_size = lr / (1 − β1ᵗ) and bias_correction2_sqrt = √(1 − β2ᵗ).
    """
    for i in prange(param.shape[0]):
        p = decay_factor * np.float64(param[i])
        g = grad[i] + weight_decay * p
        m = exp_avg[i] + (1.0 - beta1) * (g - exp_avg[i])
        v = beta2 * exp_avg_sq[i] + (1.0 - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)
