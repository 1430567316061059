"""CPU kernels for the optimizers (layer: ``numbanet.optim``).

Each update is elementwise: one iteration per element of the flattened parameter, which it
updates in place together with its state (momentum buffer, Adam moments).  No element depends
on another, so the result is the same for any thread count.  The update formulas are
``kernels.formulas``' (shared with the CUDA kernels), in float64; results are stored in the
arrays' dtype.

Every update is compiled twice from one body: parallel (``prange`` over the elements) and
serial.  A parameter with fewer than ``PARALLEL_FROM`` elements is updated by the serial one:
starting the thread pool costs more than the update (ResNet-20's SGD step with momentum, 65
parameters of 16 to 37k elements, measured 5.0 ms with every update parallel, 0.27 ms with the
small ones serial).  Both compile from the same body and agree bit for bit (``tests/test_optim.py``).
"""
from numba import njit, prange

from .. import formulas

# Parameters with at least this many elements are updated in parallel.
PARALLEL_FROM = 1 << 15


def _sgd(param, grad, lr, weight_decay):
    """p ← p − lr·(g + λ·p)."""
    for i in prange(param.shape[0]):
        param[i] = formulas.sgd(float(param[i]), float(grad[i]), lr, weight_decay)


def _sgd_momentum(param, grad, buf, lr, weight_decay, momentum, dampening, nesterov, first_step):
    """PyTorch's SGD with momentum μ, dampening τ and weight decay λ (``formulas.sgd_momentum``)."""
    for i in prange(param.shape[0]):
        param[i], buf[i] = formulas.sgd_momentum(float(param[i]), float(grad[i]), float(buf[i]), lr,
                                                 weight_decay, momentum, dampening, nesterov, first_step)


def _adam(param, grad, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps, bias_correction2_sqrt,
          weight_decay, decay_factor):
    """PyTorch's Adam / AdamW update at step t (``formulas.adam``; bias corrections from the caller)."""
    for i in prange(param.shape[0]):
        param[i], exp_avg[i], exp_avg_sq[i] = formulas.adam(
            float(param[i]), float(grad[i]), float(exp_avg[i]), float(exp_avg_sq[i]), step_size, beta1, beta2,
            eps, bias_correction2_sqrt, weight_decay, decay_factor)


def _by_size(body):
    """``body`` compiled parallel and serial, called as the one for the parameter's size."""
    parallel, serial = njit(parallel=True, cache=True)(body), njit(cache=True)(body)

    def update(param, *args):
        (parallel if param.shape[0] >= PARALLEL_FROM else serial)(param, *args)
    update.__name__, update.__doc__ = body.__name__.lstrip("_"), body.__doc__
    update.parallel, update.serial = parallel, serial
    return update


sgd = _by_size(_sgd)
sgd_momentum = _by_size(_sgd_momentum)
adam = _by_size(_adam)
