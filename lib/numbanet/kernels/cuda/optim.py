"""CUDA kernels for the optimizers (layer: ``numbanet.optim``).

The functions of ``kernels.cpu.optim`` with the same names and arguments: flattened
(1-D) device arrays updated in place, one thread per element, which reads and writes
only its own element of the parameter and of its state (momentum buffer, Adam
moments).  The update formulas are ``kernels.formulas``' (shared with the CPU
kernels), in float64; results are stored in the arrays' dtype.  Parameters,
gradients and state never leave the device.
"""
from __future__ import annotations

from numba import cuda, float64

from .. import formulas
from ._common import launch_1d


@cuda.jit
def _sgd_kernel(param, grad, lr, weight_decay):
    i = cuda.grid(1)
    if i < param.size:
        param[i] = formulas.sgd(float64(param[i]), float64(grad[i]), lr, weight_decay)


@cuda.jit
def _sgd_momentum_kernel(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step):
    i = cuda.grid(1)
    if i < param.size:
        p, b = formulas.sgd_momentum(float64(param[i]), float64(grad[i]), float64(buf[i]), lr, weight_decay,
                                     momentum, dampening, nesterov, first_step)
        param[i] = p
        buf[i] = b


@cuda.jit
def _adam_kernel(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
                 weight_decay, decay_factor):
    i = cuda.grid(1)
    if i < param.size:
        p, m, v = formulas.adam(float64(param[i]), float64(grad[i]), float64(exp_avg[i]), float64(exp_avg_sq[i]),
                                step_size, beta1, beta2, eps, bias_correction2_sqrt, weight_decay, decay_factor)
        param[i] = p
        exp_avg[i] = m
        exp_avg_sq[i] = v


def sgd(param, grad, lr, weight_decay) -> None:
    """p ← p − lr·(g + λ·p)."""
    if param.size:
        _sgd_kernel[launch_1d(param.size)](param, grad, float(lr), float(weight_decay))


def sgd_momentum(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step) -> None:
    """PyTorch's SGD with momentum μ, dampening τ, weight decay λ (``formulas.sgd_momentum``)."""
    if param.size:
        _sgd_momentum_kernel[launch_1d(param.size)](param, grad, buf, float(lr), float(weight_decay),
                                                    float(momentum), float(dampening), bool(nesterov),
                                                    bool(first_step))


def adam(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
         weight_decay, decay_factor) -> None:
    """PyTorch's Adam / AdamW update at step t (``formulas.adam``; bias corrections from the caller)."""
    if param.size:
        _adam_kernel[launch_1d(param.size)](param, grad, exp_avg, exp_avg_sq, float(step_size), float(beta1),
                                            float(beta2), float(eps), float(bias_correction2_sqrt),
                                            float(weight_decay), float(decay_factor))
