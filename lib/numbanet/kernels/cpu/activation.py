"""CPU kernels for the activation functions (layer: ``numbanet.activation``).

Every activation is elementwise, so each kernel is one ``prange`` over the
flat index: iteration i reads element i and writes element i (a pure gather).
The scalar formulas live in small ``@njit`` helpers shared by the forward and
backward kernels; they work in float64 and the result is rounded once to the
array's dtype.

Overflow: ``exp`` is only ever called on a non-positive argument, so nothing
overflows for any finite input (|x| = 1000 included):

    σ(x)        = 1 / (1 + e^(−x))           for x ≥ 0,   e^x / (1 + e^x) for x < 0
    softplus(x) = max(x, 0) + log1p(e^(−|x|))

Dice's kernels reduce over each feature (channel); each channel belongs to one
parallel iteration and its sums run in a fixed order.
"""
import math

from numba import njit, prange

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_CUBIC = 0.044715
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# -- scalar helpers --------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _sigmoid(v):
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(cache=True, inline="always")
def _gelu_tanh_inner(v):
    """√(2/π)·(v + 0.044715·v³), the argument of tanh in the tanh approximation."""
    return SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v)


# -- ReLU family -----------------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def relu(x, out):
    """out = max(x, 0) (NaN stays NaN, as in PyTorch)."""
    for i in prange(x.size):
        out[i] = 0.0 if x[i] <= 0.0 else x[i]


@njit(parallel=True, cache=True)
def relu_backward(dy, x, dx):
    """dx = dy · [x > 0]; the derivative at exactly 0 is taken as 0 (PyTorch's choice)."""
    for i in prange(x.size):
        dx[i] = dy[i] if x[i] > 0.0 else 0.0


@njit(parallel=True, cache=True)
def leaky_relu(x, negative_slope, out):
    """out = x if x > 0 else negative_slope·x."""
    for i in prange(x.size):
        v = float(x[i])
        out[i] = v if v > 0.0 else negative_slope * v


@njit(parallel=True, cache=True)
def leaky_relu_backward(dy, x, negative_slope, dx):
    """dx = dy if x > 0 else negative_slope·dy."""
    for i in prange(x.size):
        g = float(dy[i])
        dx[i] = g if x[i] > 0.0 else negative_slope * g


@njit(parallel=True, cache=True)
def elu(x, alpha, scale, out):
    """out = scale·x if x > 0 else scale·alpha·(e^x − 1).  ELU: scale = 1; SELU: fixed alpha, scale."""
    for i in prange(x.size):
        v = float(x[i])
        out[i] = scale * v if v > 0.0 else scale * alpha * math.expm1(v)


@njit(parallel=True, cache=True)
def elu_backward(dy, x, alpha, scale, dx):
    """dx = dy·scale if x > 0 else dy·scale·alpha·e^x."""
    for i in prange(x.size):
        v = float(x[i])
        dx[i] = dy[i] * (scale if v > 0.0 else scale * alpha * math.exp(v))


# -- smooth gates: GELU, Swish/SiLU, Mish ------------------------------------------------------------

@njit(parallel=True, cache=True)
def gelu(x, out):
    """out = x·Φ(x) = ½·x·(1 + erf(x/√2))."""
    for i in prange(x.size):
        v = float(x[i])
        out[i] = 0.5 * v * (1.0 + math.erf(v * SQRT_HALF))


@njit(parallel=True, cache=True)
def gelu_backward(dy, x, dx):
    """dx = dy·(Φ(x) + x·φ(x)),  φ(x) = e^(−x²/2)/√(2π)."""
    for i in prange(x.size):
        v = float(x[i])
        cdf = 0.5 * (1.0 + math.erf(v * SQRT_HALF))
        dx[i] = dy[i] * (cdf + v * INV_SQRT_2PI * math.exp(-0.5 * v * v))


@njit(parallel=True, cache=True)
def gelu_tanh(x, out):
    """out = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    for i in prange(x.size):
        v = float(x[i])
        out[i] = 0.5 * v * (1.0 + math.tanh(_gelu_tanh_inner(v)))


@njit(parallel=True, cache=True)
def gelu_tanh_backward(dy, x, dx):
    """dx = dy·(½·(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²)),  t = tanh(...)."""
    for i in prange(x.size):
        v = float(x[i])
        t = math.tanh(_gelu_tanh_inner(v))
        slope = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * v * v)
        dx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * slope)


@njit(parallel=True, cache=True)
def swish(x, beta, out):
    """out = x·σ(β·x)."""
    for i in prange(x.size):
        v = float(x[i])
        out[i] = v * _sigmoid(beta * v)


@njit(parallel=True, cache=True)
def swish_backward(dy, x, beta, dx):
    """dx = dy·(s + β·x·s·(1 − s)),  s = σ(β·x)."""
    for i in prange(x.size):
        v = float(x[i])
        s = _sigmoid(beta * v)
        dx[i] = dy[i] * (s + beta * v * s * (1.0 - s))


@njit(parallel=True, cache=True)
def mish(x, out):
    """out = x·tanh(softplus(x))."""
    for i in prange(x.size):
        v = float(x[i])
        out[i] = v * math.tanh(_softplus(v))


@njit(parallel=True, cache=True)
def mish_backward(dy, x, dx):
    """dx = dy·(t + x·(1 − t²)·σ(x)),  t = tanh(softplus(x)) (softplus' = σ)."""
    for i in prange(x.size):
        v = float(x[i])
        t = math.tanh(_softplus(v))
        dx[i] = dy[i] * (t + v * (1.0 - t * t) * _sigmoid(v))


# -- saturating: sigmoid, tanh (their backward reads the forward *output*) --------------------------

@njit(parallel=True, cache=True)
def sigmoid(x, out):
    """out = σ(x) = 1 / (1 + e^(−x)), without overflow."""
    for i in prange(x.size):
        out[i] = _sigmoid(float(x[i]))


@njit(parallel=True, cache=True)
def sigmoid_backward(dy, y, dx):
    """dx = dy·y·(1 − y) with y = σ(x)."""
    for i in prange(y.size):
        s = float(y[i])
        dx[i] = dy[i] * s * (1.0 - s)


@njit(parallel=True, cache=True)
def tanh(x, out):
    """out = tanh(x)."""
    for i in prange(x.size):
        out[i] = math.tanh(float(x[i]))


@njit(parallel=True, cache=True)
def tanh_backward(dy, y, dx):
    """dx = dy·(1 − y²) with y = tanh(x)."""
    for i in prange(y.size):
        t = float(y[i])
        dx[i] = dy[i] * (1.0 - t * t)


# -- Dice ------------------------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def channel_moments(x, mean, var):
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
def dice(x, alpha, mean, inv_std, out):
    """out = x·(α + (1 − α)·p),  p = σ((x − mean)·inv_std), per channel of x (N, C, L)."""
    n_batch, channels, length = x.shape
    for c in prange(channels):
        a, mu, scale = float(alpha[c]), float(mean[c]), float(inv_std[c])
        for n in range(n_batch):
            for j in range(length):
                v = float(x[n, c, j])
                p = _sigmoid((v - mu) * scale)
                out[n, c, j] = v * (a + (1.0 - a) * p)


@njit(parallel=True, cache=True)
def dice_backward(dy, x, alpha, mean, inv_std, batch_stats, dx, dalpha):
    """dx and dα for ``dice``; see ``numbanet.activation`` for the formulas.

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
                normed = (v - mu) * scale
                p = _sigmoid(normed)
                grad_alpha += g * v * (1.0 - p)
                grad_normed = g * (1.0 - a) * v * p * (1.0 - p)
                grad_norm_sum += grad_normed
                grad_norm_dot += grad_normed * normed
        dalpha[c] = grad_alpha
        mean_grad = grad_norm_sum / count if batch_stats else 0.0
        mean_grad_dot = grad_norm_dot / count if batch_stats else 0.0
        for n in range(n_batch):
            for j in range(length):
                v, g = float(x[n, c, j]), float(dy[n, c, j])
                normed = (v - mu) * scale
                p = _sigmoid(normed)
                grad_normed = g * (1.0 - a) * v * p * (1.0 - p)
                dx[n, c, j] = (g * (a + (1.0 - a) * p)
                               + scale * (grad_normed - mean_grad - normed * mean_grad_dot))
