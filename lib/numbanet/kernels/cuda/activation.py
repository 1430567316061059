r"""CUDA kernels for the activation functions (layer: ``numbanet.activation``).

One generic launcher serves every elementwise activation.  Each activation is a pair
of scalar *device functions* with fixed signatures::

    forward    f(v, a, b)      -> y      (v = x[i]; a, b = the activation's constants)
    backward   g(d, v, a, b)   -> dx     (d = dy[i]; v = the forward input, or output for
                                          Sigmoid and Tanh)

and the kernel factories ``_map_kernel(f)`` and ``_grad_kernel(g)`` compile them into
one-thread-per-element kernels (``out[i] = f(x[i], a, b)``): a pure gather, so results
do not depend on the launch.  The formulas are those of the CPU kernels
(``numbanet.kernels.cpu.activation``), evaluated in float64 and rounded once to the
array's dtype, with the same overflow-free σ and softplus (``exp`` of non-positive
arguments only).  Elementwise kernels are memory-bound, so float64 arithmetic costs
little on data-centre GPUs; on consumer GPUs (float64 at 1/32 rate) GELU/Mish are the
most expensive.

Dice reuses the BatchNorm statistics kernels (``kernels.cuda.norm``) for its
per-feature mean and variance and reduces its backward sums with one CUDA block per
feature (shared-memory tree, fixed order).

The public functions have the names and arguments of ``numbanet.activation``'s
functional API (``relu(x)``, ``relu_backward(dy, x)``, ...; SiLU is ``swish`` with
β = 1 there) and of its Dice helpers, taking and returning device arrays.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ...device import is_cuda
from ..cpu.activation import GELU_CUBIC, INV_SQRT_2PI, SELU_ALPHA, SELU_SCALE, SQRT_2_OVER_PI, SQRT_HALF
from ._common import REDUCE_SHARED, block_sum, empty, flat, launch_1d, reduce_threads
from .norm import block_statistics, fixed_statistics, unravel3, update_running


# -- scalar helpers ----------------------------------------------------------------------------------

@cuda.jit(device=True)
def _sigmoid_of(v):
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@cuda.jit(device=True)
def _softplus_of(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@cuda.jit(device=True)
def _gelu_tanh_inner(v):
    """√(2/π)·(v + 0.044715·v³)."""
    return SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v)


# -- forward f(v, a, b) and backward g(d, v, a, b) of each activation --------------------------------

@cuda.jit(device=True)
def _relu(v, a, b):
    return 0.0 if v <= 0.0 else v  # NaN stays NaN


@cuda.jit(device=True)
def _relu_grad(d, v, a, b):
    return d if v > 0.0 else 0.0


@cuda.jit(device=True)
def _leaky_relu(v, negative_slope, b):
    return v if v > 0.0 else negative_slope * v


@cuda.jit(device=True)
def _leaky_relu_grad(d, v, negative_slope, b):
    return d if v > 0.0 else negative_slope * d


@cuda.jit(device=True)
def _elu(v, alpha, scale):
    """scale·v if v > 0 else scale·alpha·(eᵛ − 1): ELU (scale 1) and SELU."""
    return scale * v if v > 0.0 else scale * alpha * math.expm1(v)


@cuda.jit(device=True)
def _elu_grad(d, v, alpha, scale):
    return d * (scale if v > 0.0 else scale * alpha * math.exp(v))


@cuda.jit(device=True)
def _gelu(v, a, b):
    return 0.5 * v * (1.0 + math.erf(v * SQRT_HALF))


@cuda.jit(device=True)
def _gelu_grad(d, v, a, b):
    """d·(Φ(v) + v·φ(v))."""
    cdf = 0.5 * (1.0 + math.erf(v * SQRT_HALF))
    return d * (cdf + v * INV_SQRT_2PI * math.exp(-0.5 * v * v))


@cuda.jit(device=True)
def _gelu_tanh(v, a, b):
    return 0.5 * v * (1.0 + math.tanh(_gelu_tanh_inner(v)))


@cuda.jit(device=True)
def _gelu_tanh_grad(d, v, a, b):
    t = math.tanh(_gelu_tanh_inner(v))
    slope = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * v * v)
    return d * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * slope)


@cuda.jit(device=True)
def _swish(v, beta, b):
    return v * _sigmoid_of(beta * v)


@cuda.jit(device=True)
def _swish_grad(d, v, beta, b):
    s = _sigmoid_of(beta * v)
    return d * (s + beta * v * s * (1.0 - s))


@cuda.jit(device=True)
def _mish(v, a, b):
    return v * math.tanh(_softplus_of(v))


@cuda.jit(device=True)
def _mish_grad(d, v, a, b):
    t = math.tanh(_softplus_of(v))
    return d * (t + v * (1.0 - t * t) * _sigmoid_of(v))


@cuda.jit(device=True)
def _sigmoid(v, a, b):
    return _sigmoid_of(v)


@cuda.jit(device=True)
def _sigmoid_grad(d, y, a, b):
    return d * y * (1.0 - y)


@cuda.jit(device=True)
def _tanh(v, a, b):
    return math.tanh(v)


@cuda.jit(device=True)
def _tanh_grad(d, y, a, b):
    return d * (1.0 - y * y)


# -- the generic launcher ------------------------------------------------------------------------

def _map_kernel(function):
    """out[i] = function(x[i], a, b) for 1-D x, out."""
    @cuda.jit
    def kernel(x, a, b, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = function(float64(x[i]), a, b)
    return kernel


def _grad_kernel(function):
    """dx[i] = function(dy[i], saved[i], a, b) for 1-D dy, saved, dx."""
    @cuda.jit
    def kernel(dy, saved, a, b, dx):
        i = cuda.grid(1)
        if i < dx.size:
            dx[i] = function(float64(dy[i]), float64(saved[i]), a, b)
    return kernel


class _Elementwise:
    """An activation's forward and backward kernels, launched one thread per element."""

    def __init__(self, name: str, forward, backward):
        self.name = name
        self.forward_kernel, self.backward_kernel = _map_kernel(forward), _grad_kernel(backward)

    def forward(self, x, a: float = 0.0, b: float = 0.0):
        out = empty(x.shape, x.dtype)
        if x.size:
            self.forward_kernel[launch_1d(x.size)](flat(x), float(a), float(b), flat(out))
        return out

    def backward(self, dy, saved, a: float = 0.0, b: float = 0.0):
        if not is_cuda(dy):
            raise TypeError(f"{self.name}_backward: expected dy on the GPU, like the forward's array; "
                            "move it with numbanet.to_device(dy, 'cuda')")
        if dy.shape != saved.shape or dy.dtype != saved.dtype:
            raise ValueError(f"{self.name}_backward: expected dy of shape {saved.shape} and dtype {saved.dtype} "
                             f"(the forward's), got shape {dy.shape}, dtype {dy.dtype}")
        dx = empty(saved.shape, saved.dtype)
        if dx.size:
            self.backward_kernel[launch_1d(dx.size)](flat(dy), flat(saved), float(a), float(b), flat(dx))
        return dx


_RELU = _Elementwise("relu", _relu, _relu_grad)
_LEAKY_RELU = _Elementwise("leaky_relu", _leaky_relu, _leaky_relu_grad)
_ELU = _Elementwise("elu", _elu, _elu_grad)  # and SELU
_GELU = {"none": _Elementwise("gelu", _gelu, _gelu_grad),
         "tanh": _Elementwise("gelu_tanh", _gelu_tanh, _gelu_tanh_grad)}
_SWISH = _Elementwise("swish", _swish, _swish_grad)
_MISH = _Elementwise("mish", _mish, _mish_grad)
_SIGMOID = _Elementwise("sigmoid", _sigmoid, _sigmoid_grad)
_TANH = _Elementwise("tanh", _tanh, _tanh_grad)


# -- public functions: numbanet.activation's functional API on device arrays ----------------------

def relu(x):
    """y = max(x, 0)."""
    return _RELU.forward(x)


def relu_backward(dy, x):
    """dx = dy·[x > 0]."""
    return _RELU.backward(dy, x)


def leaky_relu(x, negative_slope: float = 0.01):
    """y = x if x > 0 else negative_slope·x."""
    return _LEAKY_RELU.forward(x, negative_slope)


def leaky_relu_backward(dy, x, negative_slope: float = 0.01):
    """dx = dy if x > 0 else negative_slope·dy."""
    return _LEAKY_RELU.backward(dy, x, negative_slope)


def elu(x, alpha: float = 1.0):
    """y = x if x > 0 else alpha·(eˣ − 1)."""
    return _ELU.forward(x, alpha, 1.0)


def elu_backward(dy, x, alpha: float = 1.0):
    """dx = dy if x > 0 else dy·alpha·eˣ."""
    return _ELU.backward(dy, x, alpha, 1.0)


def selu(x):
    """y = λ·ELU_α(x) with PyTorch's constants."""
    return _ELU.forward(x, SELU_ALPHA, SELU_SCALE)


def selu_backward(dy, x):
    """dx = dy·λ if x > 0 else dy·λ·α·eˣ."""
    return _ELU.backward(dy, x, SELU_ALPHA, SELU_SCALE)


def gelu(x, approximate: str = "none"):
    """y = x·Φ(x), or its tanh approximation (approximate='tanh')."""
    return _GELU[approximate].forward(x)


def gelu_backward(dy, x, approximate: str = "none"):
    """dx = dy·GELU'(x) for the same ``approximate``."""
    return _GELU[approximate].backward(dy, x)


def swish(x, beta: float = 1.0):
    """y = x·σ(β·x)."""
    return _SWISH.forward(x, beta)


def swish_backward(dy, x, beta: float = 1.0):
    """dx = dy·(s + β·x·s·(1 − s)),  s = σ(β·x)."""
    return _SWISH.backward(dy, x, beta)


def mish(x):
    """y = x·tanh(softplus(x))."""
    return _MISH.forward(x)


def mish_backward(dy, x):
    """dx = dy·(t + x·(1 − t²)·σ(x)),  t = tanh(softplus(x))."""
    return _MISH.backward(dy, x)


def sigmoid(x):
    """y = σ(x)."""
    return _SIGMOID.forward(x)


def sigmoid_backward(dy, y):
    """dx = dy·y·(1 − y), from the forward OUTPUT y."""
    return _SIGMOID.backward(dy, y)


def tanh(x):
    """y = tanh(x)."""
    return _TANH.forward(x)


def tanh_backward(dy, y):
    """dx = dy·(1 − y²), from the forward OUTPUT y."""
    return _TANH.backward(dy, y)


# -- Dice ------------------------------------------------------------------------------------------

@cuda.jit(device=True)
def _dice_terms(grad, value, alpha, mu, inv_std):
    """(x̂, p, ∂L/∂x̂) of one element: x̂ = (x − μ)·inv_std, p = σ(x̂), ∂L/∂x̂ = dy·(1 − α)·x·p·(1 − p)."""
    normed = (value - mu) * inv_std
    p = _sigmoid_of(normed)
    return normed, p, grad * (1.0 - alpha) * value * p * (1.0 - p)


@cuda.jit
def _dice_kernel(x, alpha, mean, inv_std, out):
    """out = x·(α + (1 − α)·σ((x − mean)·inv_std)) per channel of x (N, C, L); one thread per element."""
    i = cuda.grid(1)
    if i < x.size:
        _, channels, length = x.shape
        n, c, j = unravel3(i, channels, length)
        a = float64(alpha[c])
        value = float64(x[n, c, j])
        p = _sigmoid_of((value - mean[c]) * inv_std[c])
        out[n, c, j] = value * (a + (1.0 - a) * p)


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
        normed, p, grad_normed = _dice_terms(grad, value, a, mean[c], inv_std[c])
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
        normed, p, grad_normed = _dice_terms(grad, value, a, mean[c], inv_std[c])
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
