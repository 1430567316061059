"""CUDA kernels for the optimizers (layer: ``numbanet.optim``).

The same updates as the CPU kernels (``numbanet.kernels.cpu.optim``), with the same
names and arguments: flattened (1-D) device arrays updated in place, one thread per
element, which reads and writes only its own element of the parameter and of its
state (momentum buffer, Adam moments).  Arithmetic in float64, stored in the arrays'
dtype.  Parameters, gradients and state never leave the device.
"""
from __future__ import annotations

import math

from numba import cuda, float64

from ._common import launch_1d, zeros


@cuda.jit
def _sgd_kernel(param, grad, lr, weight_decay):
    i = cuda.grid(1)
    if i < param.size:
        p = float64(param[i])
        param[i] = p - lr * (grad[i] + weight_decay * p)


@cuda.jit
def _sgd_momentum_kernel(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step):
    i = cuda.grid(1)
    if i < param.size:
        p = float64(param[i])
        g = grad[i] + weight_decay * p
        b = g if first_step else momentum * buf[i] + (1.0 - dampening) * g
        buf[i] = b
        step = g + momentum * b if nesterov else b
        param[i] = p - lr * step


@cuda.jit
def _adam_kernel(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
                 weight_decay, decay_factor):
    i = cuda.grid(1)
    if i < param.size:
        p = decay_factor * float64(param[i])
        g = grad[i] + weight_decay * p
        m = exp_avg[i] + (1.0 - beta1) * (g - exp_avg[i])
        v = beta2 * exp_avg_sq[i] + (1.0 - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


def sgd(param, grad, lr, weight_decay) -> None:
    """p ← p − lr·(g + λ·p)."""
    if param.size:
        _sgd_kernel[launch_1d(param.size)](param, grad, float(lr), float(weight_decay))


def sgd_momentum(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step) -> None:
    """PyTorch's SGD with momentum μ, dampening τ, weight decay λ (formulas: CPU kernel ``sgd_momentum``)."""
    if param.size:
        _sgd_momentum_kernel[launch_1d(param.size)](param, grad, buf, float(lr), float(weight_decay),
                                                    float(momentum), float(dampening), bool(nesterov),
                                                    bool(first_step))


def adam(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
         weight_decay, decay_factor) -> None:
    """PyTorch's Adam / AdamW update at step t (formulas: CPU kernel ``adam``)."""
    if param.size:
        _adam_kernel[launch_1d(param.size)](param, grad, exp_avg, exp_avg_sq, float(step_size), float(beta1),
                                            float(beta2), float(eps), float(bias_correction2_sqrt),
                                            float(weight_decay), float(decay_factor))


def zeros_like(array):
    """A device array of zeros like ``array`` (new optimizer state)."""
    return zeros(array.shape, array.dtype)
