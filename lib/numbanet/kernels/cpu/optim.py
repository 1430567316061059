"""CPU kernels for the optimizers (layer: ``numbanet.optim``).

Each update is elementwise: one parallel iteration per element of the flattened
parameter, which it updates in place together with its state (momentum buffer,
Adam moments).  No element depends on another, so the result is the same for
any thread count.  The update formulas are ``kernels.formulas``' (shared with the
CUDA kernels), in float64; results are stored in the arrays' dtype.
"""
from numba import njit, prange

from .. import formulas


@njit(parallel=True, cache=True)
def sgd(param, grad, lr, weight_decay):
    """p ← p − lr·(g + λ·p)."""
    for i in prange(param.shape[0]):
        param[i] = formulas.sgd(float(param[i]), float(grad[i]), lr, weight_decay)


@njit(parallel=True, cache=True)
def sgd_momentum(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step):
    """PyTorch's SGD with momentum μ, dampening τ and weight decay λ (``formulas.sgd_momentum``)."""
    for i in prange(param.shape[0]):
        param[i], buf[i] = formulas.sgd_momentum(float(param[i]), float(grad[i]), float(buf[i]), lr,
                                                 weight_decay, momentum, dampening, nesterov, first_step)


@njit(parallel=True, cache=True)
def adam(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
         weight_decay, decay_factor):
    """PyTorch's Adam / AdamW update at step t (``formulas.adam``; bias corrections from the caller)."""
    for i in prange(param.shape[0]):
        param[i], exp_avg[i], exp_avg_sq[i] = formulas.adam(
            float(param[i]), float(grad[i]), float(exp_avg[i]), float(exp_avg_sq[i]), step_size, beta1, beta2,
            eps, bias_correction2_sqrt, weight_decay, decay_factor)
