r"""Scalar formulas written once and compiled for both devices.

Each function here is plain Python on floats, registered with numba's ``register_jitable``:
called from an ``@njit`` kernel (``kernels.cpu``) Numba compiles it into that kernel, called
from a ``@cuda.jit`` kernel (``kernels.cuda``) it becomes a CUDA device function, and
numba's CUDA simulator and plain Python just call it.  A formula therefore lives in one
place, and the CPU and the GPU cannot drift apart.  (``register_jitable(inline="always")``
would inline at Numba's IR level, but numba-cuda rejects that; LLVM inlines these small
functions on both targets anyway.)  Arguments and results are float64: kernels convert an
array element with ``float(x[i])`` (CPU) or ``float64(x[i])`` (CUDA) and store the result in
the array's dtype, so every value is rounded once.

Activations share one signature so that one kernel factory per device serves them all::

    forward     f(v, a, b) -> y        v = x[i]; a, b = the activation's constants (unused: 0)
    backward    g(d, v, a, b) -> dx    d = dy[i]; v = the forward input, or its output for
                                       Sigmoid and Tanh

``ACTIVATIONS`` maps each kind ("relu", ...) to its (f, g); SELU is ``elu`` with fixed
constants and SiLU is ``swish`` with β = 1.  Overflow: ``exp`` only ever sees a non-positive
argument, so nothing overflows for any finite input (|x| = 1000 included)::

    σ(x)        = 1 / (1 + e^(−x))           for x ≥ 0,   e^x / (1 + e^x) for x < 0
    softplus(x) = max(x, 0) + log1p(e^(−|x|))

The optimizer updates take one element of the parameter, its gradient and its state and
return the new values (formulas in ``numbanet.optim``).

The kernels' on-disk cache is keyed on every file of ``numbanet.kernels`` (``kernels._cache``):
after an edit here the kernels that compile these formulas are recompiled, not loaded stale.
"""
import math

import numpy as np
from numba.extending import register_jitable

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_CUBIC = 0.044715
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# -- building blocks -------------------------------------------------------------------------------

@register_jitable
def logistic(v):
    """σ(v) = 1 / (1 + e^(−v)), without overflow."""
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@register_jitable
def softplus(v):
    """log(1 + eᵛ), without overflow."""
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@register_jitable
def gelu_tanh_inner(v):
    """√(2/π)·(v + 0.044715·v³), the argument of tanh in GELU's tanh approximation."""
    return SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v)


# -- activations: forward f(v, a, b), backward g(d, v, a, b) ----------------------------------------

@register_jitable
def relu(v, a, b):
    """max(v, 0); NaN stays NaN, as in PyTorch."""
    return 0.0 if v <= 0.0 else v


@register_jitable
def relu_backward(d, v, a, b):
    """d·[v > 0]: the derivative at exactly 0 is taken as 0 (PyTorch's choice)."""
    return d if v > 0.0 else 0.0


def relu_zero_below(dtype) -> float:
    """The largest float64 that rounds to 0 in ``dtype`` (half its smallest subnormal; 0.0 for
    float64): a float64 v, rounded to ``dtype``, is > 0 exactly when v > this.  Kernels that fuse
    ReLU into a float64 computation use it to decide ReLU's derivative as the rounded value would."""
    return float(np.finfo(dtype).smallest_subnormal) / 2


@register_jitable
def leaky_relu(v, negative_slope, b):
    return v if v > 0.0 else negative_slope * v


@register_jitable
def leaky_relu_backward(d, v, negative_slope, b):
    return d if v > 0.0 else negative_slope * d


@register_jitable
def elu(v, alpha, scale):
    """scale·v if v > 0 else scale·alpha·(eᵛ − 1): ELU (scale 1) and SELU (fixed alpha, scale)."""
    return scale * v if v > 0.0 else scale * alpha * math.expm1(v)


@register_jitable
def elu_backward(d, v, alpha, scale):
    return d * (scale if v > 0.0 else scale * alpha * math.exp(v))


@register_jitable
def gelu(v, a, b):
    """v·Φ(v) = ½·v·(1 + erf(v/√2))."""
    return 0.5 * v * (1.0 + math.erf(v * SQRT_HALF))


@register_jitable
def gelu_backward(d, v, a, b):
    """d·(Φ(v) + v·φ(v)),  φ(v) = e^(−v²/2)/√(2π)."""
    cdf = 0.5 * (1.0 + math.erf(v * SQRT_HALF))
    return d * (cdf + v * INV_SQRT_2PI * math.exp(-0.5 * v * v))


@register_jitable
def gelu_tanh(v, a, b):
    """½·v·(1 + tanh(√(2/π)·(v + 0.044715·v³)))."""
    return 0.5 * v * (1.0 + math.tanh(gelu_tanh_inner(v)))


@register_jitable
def gelu_tanh_backward(d, v, a, b):
    """d·(½·(1 + t) + ½·v·(1 − t²)·√(2/π)·(1 + 3·0.044715·v²)),  t = tanh(...)."""
    t = math.tanh(gelu_tanh_inner(v))
    slope = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * v * v)
    return d * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * slope)


@register_jitable
def swish(v, beta, b):
    """v·σ(β·v)."""
    return v * logistic(beta * v)


@register_jitable
def swish_backward(d, v, beta, b):
    """d·(s + β·v·s·(1 − s)),  s = σ(β·v)."""
    s = logistic(beta * v)
    return d * (s + beta * v * s * (1.0 - s))


@register_jitable
def mish(v, a, b):
    """v·tanh(softplus(v))."""
    return v * math.tanh(softplus(v))


@register_jitable
def mish_backward(d, v, a, b):
    """d·(t + v·(1 − t²)·σ(v)),  t = tanh(softplus(v)) (softplus' = σ)."""
    t = math.tanh(softplus(v))
    return d * (t + v * (1.0 - t * t) * logistic(v))


@register_jitable
def sigmoid(v, a, b):
    return logistic(v)


@register_jitable
def sigmoid_backward(d, y, a, b):
    """d·y·(1 − y) from the forward output y = σ(x)."""
    return d * y * (1.0 - y)


@register_jitable
def tanh(v, a, b):
    return math.tanh(v)


@register_jitable
def tanh_backward(d, y, a, b):
    """d·(1 − y²) from the forward output y = tanh(x)."""
    return d * (1.0 - y * y)


ACTIVATIONS = {
    "relu": (relu, relu_backward),
    "leaky_relu": (leaky_relu, leaky_relu_backward),
    "elu": (elu, elu_backward),
    "gelu": (gelu, gelu_backward),
    "gelu_tanh": (gelu_tanh, gelu_tanh_backward),
    "swish": (swish, swish_backward),
    "mish": (mish, mish_backward),
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
}


@register_jitable
def dice_terms(grad, value, alpha, mu, inv_std):
    """(x̂, p, ∂L/∂x̂) of one Dice element: x̂ = (x − μ)·inv_std, p = σ(x̂), ∂L/∂x̂ = dy·(1 − α)·x·p·(1 − p)."""
    normed = (value - mu) * inv_std
    p = logistic(normed)
    return normed, p, grad * (1.0 - alpha) * value * p * (1.0 - p)


@register_jitable
def dice(value, alpha, mu, inv_std):
    """x·(α + (1 − α)·σ((x − μ)·inv_std))."""
    return value * (alpha + (1.0 - alpha) * logistic((value - mu) * inv_std))


# -- optimizer updates: one element of the parameter and its state -> the new values ---------------

@register_jitable
def sgd(p, g, lr, weight_decay):
    """p − lr·(g + λ·p)."""
    return p - lr * (g + weight_decay * p)


@register_jitable
def sgd_momentum(p, g, b, lr, weight_decay, momentum, dampening, nesterov, first_step):
    """(p, b) after PyTorch's SGD step with momentum μ, dampening τ, weight decay λ::

        g ← g + λ·p;   b ← g (first step) or μ·b + (1 − τ)·g;   p ← p − lr·(g + μ·b) (nesterov) or p − lr·b
    """
    g = g + weight_decay * p
    b = g if first_step else momentum * b + (1.0 - dampening) * g
    step = g + momentum * b if nesterov else b
    return p - lr * step, b


@register_jitable
def adam(p, g, m, v, step_size, beta1, beta2, eps, bias_correction2_sqrt, weight_decay, decay_factor):
    """(p, m, v) after PyTorch's Adam / AdamW step (bias corrections computed by the caller)::

        p ← decay_factor·p           (AdamW: 1 − lr·λ;  Adam: 1)
        g ← g + weight_decay·p       (Adam's L2 term;   AdamW: weight_decay = 0)
        m ← m + (1 − β1)·(g − m),    v ← β2·v + (1 − β2)·g²
        p ← p − step_size·m / (√v / bias_correction2_sqrt + eps)

    with step_size = lr / (1 − β1ᵗ) and bias_correction2_sqrt = √(1 − β2ᵗ).
    """
    p = decay_factor * p
    g = g + weight_decay * p
    m = m + (1.0 - beta1) * (g - m)
    v = beta2 * v + (1.0 - beta2) * g * g
    return p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps), m, v


# -- pooling windows -------------------------------------------------------------------------------
# Integer rules of a sliding window along one axis (size inputs, kernel k, stride s, padding p),
# PyTorch's: the layer validates with them, and both devices build their windows from them.

@register_jitable
def pooled_size(size, kernel, stride, padding, ceil_mode):
    """Outputs along the axis: ⌊(size + 2p − k)/s⌋ + 1, or with ``ceil_mode`` ⌈(size + 2p − k)/s⌉ + 1
    less one when that last window would start in the right padding (it would read no input)."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@register_jitable
def padded_window_length(o, size, kernel, stride, padding):
    """Length of window o counting the padding but not a ceil-mode window's overhang past it:
    min(o·s − p + k, size + p) − (o·s − p).  Average pooling's divisor with count_include_pad
    is the product of the two axes' lengths (k·k except for ceil mode's last, partial windows)."""
    start = o * stride - padding
    return min(start + kernel, size + padding) - start
