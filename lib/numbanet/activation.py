r"""Activation functions: elementwise non-linearities, plus Dice (which normalises over the batch).

Forward y = f(x) and backward dx = dy · f'(x), elementwise::

    ReLU        f = max(x, 0)                               f' = [x > 0]   (0 at x = 0, as PyTorch)
    LeakyReLU   f = x if x > 0 else s·x                     f' = 1 if x > 0 else s       (s = 0.01)
    ELU         f = x if x > 0 else α·(eˣ − 1)              f' = 1 if x > 0 else α·eˣ   (α = 1)
    SELU        λ·ELU_α(x), α ≈ 1.6733, λ ≈ 1.0507 (self-normalising constants)
    GELU        f = x·Φ(x) = ½x·(1 + erf(x/√2))             f' = Φ(x) + x·φ(x)
    GELU tanh   f = ½x·(1 + tanh(√(2/π)·(x + 0.044715x³)))  (the lectures' form, ``approximate='tanh'``)
                f' = ½(1 + t) + ½x·(1 − t²)·√(2/π)·(1 + 3·0.044715x²)
    Swish       f = x·σ(βx)  (β fixed)                      f' = s + βx·s·(1 − s),  s = σ(βx)
    SiLU        Swish with β = 1.  (β = 1.702 approximates GELU.)
    Mish        f = x·tanh(softplus(x))                     f' = t + x·(1 − t²)·σ(x)
    Sigmoid     f = σ(x) = 1 / (1 + e⁻ˣ)                    f' = y·(1 − y)
    Tanh        f = tanh(x)                                 f' = 1 − y²

σ and softplus are evaluated without overflow for any finite x (see the kernels).
Sigmoid's and Tanh's backward read the forward *output* y; the others read x.

Dice (Zhou et al., "Deep Interest Network", 2018), per feature c with a trainable α_c::

    x̂ = (x − E[x]) / √(Var[x] + ε),   p = σ(x̂),   y = p·x + (1 − p)·α·x = x·(α + (1 − α)·p)

In training, E and Var are the batch mean and biased variance of feature c (over N, and
over L for (N, C, L) input), and running estimates are updated like BatchNorm's
(momentum 0.1, unbiased variance); in eval the running estimates are used.  α starts at 0
and ε = 1e-8, as in the paper.  Backward, with g = ∂L/∂x̂ = dy·(1 − α)·x·p·(1 − p)::

    ∂L/∂α = Σ dy·x·(1 − p)
    ∂L/∂x = dy·(α + (1 − α)·p) + (g − mean(g) − x̂·mean(g·x̂)) / √(Var + ε)    (training)
    ∂L/∂x = dy·(α + (1 − α)·p) + g / √(Var + ε)                               (eval)

the second term being the batch-norm backward of x̂ (the means are over the feature's values).

Kernels: ``numbanet.kernels.cpu.activation``; on the GPU (device-array inputs)
``numbanet.kernels.cuda.activation``.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_device, check_dim, check_dtype_match, check_dy, check_grad, check_nonempty
from .kernels import backend
from .kernels.formulas import SELU_ALPHA, SELU_SCALE
from .module import Module
from .tensor import Parameter


def _forward(kind: str, name: str, x, a: float = 0.0, b: float = 0.0):
    """y = f(x) for the activation ``kind`` (``kernels.formulas.ACTIVATIONS``), after validating x."""
    x = as_float_array(name, x)
    return backend(x).activation.elementwise(kind, x, a, b)


def _backward(kind: str, dy, saved, a: float = 0.0, b: float = 0.0):
    """dx = g(dy, saved), after checking dy against the forward's array ``saved``."""
    dy = check_dy(f"{kind}_backward", dy, saved)
    return backend(saved).activation.elementwise_backward(kind, dy, saved, a, b)


def relu(x, *, name: str = "relu") -> np.ndarray:
    """y = max(x, 0), any shape."""
    return _forward("relu", name, x)


def relu_backward(dy, x) -> np.ndarray:
    """dx = dy·[x > 0] (zero at x = 0)."""
    return _backward("relu", dy, x)


def leaky_relu(x, negative_slope: float = 0.01, *, name: str = "leaky_relu") -> np.ndarray:
    """y = x if x > 0 else negative_slope·x."""
    return _forward("leaky_relu", name, x, negative_slope)


def leaky_relu_backward(dy, x, negative_slope: float = 0.01) -> np.ndarray:
    """dx = dy if x > 0 else negative_slope·dy."""
    return _backward("leaky_relu", dy, x, negative_slope)


def elu(x, alpha: float = 1.0, *, name: str = "elu") -> np.ndarray:
    """y = x if x > 0 else alpha·(eˣ − 1)."""
    return _forward("elu", name, x, alpha, 1.0)


def elu_backward(dy, x, alpha: float = 1.0) -> np.ndarray:
    """dx = dy if x > 0 else dy·alpha·eˣ."""
    return _backward("elu", dy, x, alpha, 1.0)


def selu(x, *, name: str = "selu") -> np.ndarray:
    """y = λ·ELU_α(x) with PyTorch's α = 1.6732632…, λ = 1.0507009…"""
    return _forward("elu", name, x, SELU_ALPHA, SELU_SCALE)


def selu_backward(dy, x) -> np.ndarray:
    """dx = dy·λ if x > 0 else dy·λ·α·eˣ."""
    return _backward("elu", dy, x, SELU_ALPHA, SELU_SCALE)


_GELU_KINDS = {"none": "gelu", "tanh": "gelu_tanh"}


def _gelu_kind(name: str, approximate: str) -> str:
    if approximate not in _GELU_KINDS:
        raise ValueError(f"{name}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU_KINDS[approximate]


def gelu(x, approximate: str = "none", *, name: str = "gelu") -> np.ndarray:
    """y = x·Φ(x) (exact, erf) or its tanh approximation (``approximate='tanh'``, the lectures')."""
    return _forward(_gelu_kind(name, approximate), name, x)


def gelu_backward(dy, x, approximate: str = "none") -> np.ndarray:
    """dx = dy·GELU'(x) for the same ``approximate``."""
    return _backward(_gelu_kind("gelu_backward", approximate), dy, x)


def swish(x, beta: float = 1.0, *, name: str = "swish") -> np.ndarray:
    """y = x·σ(β·x)."""
    return _forward("swish", name, x, beta)


def swish_backward(dy, x, beta: float = 1.0) -> np.ndarray:
    """dx = dy·(s + β·x·s·(1 − s)),  s = σ(β·x)."""
    return _backward("swish", dy, x, beta)


def silu(x, *, name: str = "silu") -> np.ndarray:
    """y = x·σ(x) (Swish with β = 1)."""
    return swish(x, 1.0, name=name)


def silu_backward(dy, x) -> np.ndarray:
    """dx = dy·(s + x·s·(1 − s)),  s = σ(x)."""
    return swish_backward(dy, x, 1.0)


def mish(x, *, name: str = "mish") -> np.ndarray:
    """y = x·tanh(softplus(x))."""
    return _forward("mish", name, x)


def mish_backward(dy, x) -> np.ndarray:
    """dx = dy·(t + x·(1 − t²)·σ(x)),  t = tanh(softplus(x))."""
    return _backward("mish", dy, x)


def sigmoid(x, *, name: str = "sigmoid") -> np.ndarray:
    """y = 1 / (1 + e⁻ˣ)."""
    return _forward("sigmoid", name, x)


def sigmoid_backward(dy, y) -> np.ndarray:
    """dx = dy·y·(1 − y), from the forward OUTPUT y."""
    return _backward("sigmoid", dy, y)


def tanh(x, *, name: str = "tanh") -> np.ndarray:
    """y = tanh(x)."""
    return _forward("tanh", name, x)


def tanh_backward(dy, y) -> np.ndarray:
    """dx = dy·(1 − y²), from the forward OUTPUT y."""
    return _backward("tanh", dy, y)


# -- Dice ------------------------------------------------------------------------------------------

def _dice_input(name: str, x, alpha) -> tuple[np.ndarray, np.ndarray]:
    """Validate x (N, C) or (N, C, L) against alpha (C,); return x and its (N, C, L) view."""
    x = as_float_array(name, x)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2-D input (N, C) or 3-D input (N, C, L), got shape {x.shape}")
    check_nonempty(name, x.shape, "(N, C) or (N, C, L)")
    check_dim(name, x, 1, len(alpha), "(N, C) or (N, C, L)")
    check_dtype_match(name, x, alpha.dtype)
    check_device(name, x, alpha)
    return x, x.reshape(x.shape[0], x.shape[1], -1)


def _as_alpha(alpha):
    """α as an array on its own device."""
    return alpha if hasattr(alpha, "shape") else np.asarray(alpha)


def _dice_statistics(name: str, x3: np.ndarray, running_mean, running_var, training: bool, eps: float):
    """(mean, batch variance or None, 1/√(var + ε), batch_stats) per feature, all float64."""
    batch_stats = training or running_mean is None
    if running_mean is not None:
        check_device(name, x3, running_mean, running_var, name="input (running statistics)")
    count = x3.shape[0] * x3.shape[2]
    if batch_stats and count < 2:
        raise ValueError(f"{name}: expected more than 1 value per feature to compute batch statistics, "
                         f"got {count} (input viewed as (N, C, L) = {x3.shape})")
    return (*backend(x3).activation.dice_statistics(x3, running_mean, running_var, batch_stats, eps),
            batch_stats)


def _update_running(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """BatchNorm's rule: r ← (1 − m)·r + m·batch value, with the unbiased batch variance."""
    backend(running_mean).activation.dice_update_running(running_mean, running_var, mean, var, count, momentum)


def _dice_forward(x3, alpha, mean, inv_std, out_shape) -> np.ndarray:
    return backend(x3).activation.dice_forward(x3, alpha, mean, inv_std).reshape(out_shape)


def _dice_backward(dy, x3, alpha, mean, inv_std, batch_stats: bool):
    dx3, dalpha = backend(x3).activation.dice_backward(dy.reshape(x3.shape), x3, alpha, mean, inv_std,
                                                       batch_stats)
    return dx3.reshape(dy.shape), dalpha


def dice(x, alpha, running_mean=None, running_var=None, training: bool = False, momentum: float = 0.1,
         eps: float = 1e-8, *, name: str = "dice") -> np.ndarray:
    """y = x·(α + (1 − α)·σ(x̂)) with x̂ the per-feature standardised x.

    x: (N, C) or (N, C, L); alpha, running_mean, running_var: (C,) -> y: same shape as x.
    Batch statistics are used when ``training`` (then the running ones, if given, are
    updated in place) or when no running statistics are given; else the running ones.
    """
    alpha = _as_alpha(alpha)
    x, x3 = _dice_input(name, x, alpha)
    mean, var, inv_std, batch_stats = _dice_statistics(name, x3, running_mean, running_var, training, eps)
    if training and running_mean is not None:
        _update_running(running_mean, running_var, mean, var, x3.shape[0] * x3.shape[2], momentum)
    return _dice_forward(x3, alpha, mean, inv_std, x.shape)


def dice_backward(dy, x, alpha, running_mean=None, running_var=None, training: bool = False,
                  eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dα) for ``dice`` called with the same arguments (running statistics as the forward used
    them: in training they are not read; batch statistics are recomputed from x)."""
    alpha = _as_alpha(alpha)
    x, x3 = _dice_input("dice_backward", x, alpha)
    dy = check_dy("dice_backward", dy, x)
    mean, _, inv_std, batch_stats = _dice_statistics("dice_backward", x3, running_mean, running_var,
                                                     training, eps)
    return _dice_backward(dy, x3, alpha, mean, inv_std, batch_stats)


# -- layers ----------------------------------------------------------------------------------------

class _Activation(Module):
    """An elementwise activation: ``_forward(x)`` and ``_backward(dy, saved)``.

    ``saved`` is the forward input x, or the output y when ``saves_output`` (Sigmoid, Tanh).
    """

    saves_output = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(self.describe(), x)
        y = self._forward(x)
        self._save_for_backward(y if self.saves_output else x)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (saved,) = self._saved()
        dout = check_grad(self.describe(), dout, saved.shape, saved.dtype, like=saved)
        return self._backward(dout, saved)


class ReLU(_Activation):
    """y = max(x, 0)."""

    def _forward(self, x):
        return relu(x)

    def _backward(self, dy, x):
        return relu_backward(dy, x)


class LeakyReLU(_Activation):
    """y = x if x > 0 else negative_slope·x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def _forward(self, x):
        return leaky_relu(x, self.negative_slope)

    def _backward(self, dy, x):
        return leaky_relu_backward(dy, x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(_Activation):
    """y = x if x > 0 else alpha·(eˣ − 1)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def _forward(self, x):
        return elu(x, self.alpha)

    def _backward(self, dy, x):
        return elu_backward(dy, x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(_Activation):
    """y = λ·ELU_α(x) with the fixed self-normalising α, λ."""

    def _forward(self, x):
        return selu(x)

    def _backward(self, dy, x):
        return selu_backward(dy, x)


class GELU(_Activation):
    """y = x·Φ(x); ``approximate='tanh'`` uses the lectures' tanh formula."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        _gelu_kind(f"GELU(approximate={approximate!r})", approximate)
        self.approximate = approximate

    def _forward(self, x):
        return gelu(x, self.approximate)

    def _backward(self, dy, x):
        return gelu_backward(dy, x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Swish(_Activation):
    """y = x·σ(β·x) with a fixed (not trained) β.  Not a PyTorch class; β = 1 is ``SiLU``."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    def _forward(self, x):
        return swish(x, self.beta)

    def _backward(self, dy, x):
        return swish_backward(dy, x, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class SiLU(Swish):
    """y = x·σ(x)."""

    def __init__(self):
        super().__init__(1.0)

    def extra_repr(self) -> str:
        return ""


class Mish(_Activation):
    """y = x·tanh(softplus(x))."""

    def _forward(self, x):
        return mish(x)

    def _backward(self, dy, x):
        return mish_backward(dy, x)


class Sigmoid(_Activation):
    """y = σ(x); backward uses y·(1 − y)."""

    saves_output = True

    def _forward(self, x):
        return sigmoid(x)

    def _backward(self, dy, y):
        return sigmoid_backward(dy, y)


class Tanh(_Activation):
    """y = tanh(x); backward uses 1 − y²."""

    saves_output = True

    def _forward(self, x):
        return tanh(x)

    def _backward(self, dy, y):
        return tanh_backward(dy, y)


class Dice(Module):
    """Data-adaptive activation of DIN: y = x·(α + (1 − α)·σ(x̂)), x̂ batch-normalised per feature.

    Input (N, num_features) or (N, num_features, L).  ``alpha`` (num_features,) is trained
    and starts at 0; ``running_mean``/``running_var`` buffers serve eval mode, as in
    BatchNorm1d (same momentum rule).  Formulas: module docstring.
    """

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.1, dtype=np.float32):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"Dice({num_features}): num_features must be >= 1")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.alpha = Parameter(np.zeros(num_features, dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        name = self.describe()
        x, x3 = _dice_input(name, x, self.alpha.data)
        mean, var, inv_std, batch_stats = _dice_statistics(
            name, x3, self.running_mean, self.running_var, self.training, self.eps)
        if self.training:
            _update_running(self.running_mean, self.running_var, mean, var, x3.shape[0] * x3.shape[2],
                            self.momentum)
        self._save_for_backward(x3, x.shape, mean, inv_std, batch_stats)
        return _dice_forward(x3, self.alpha.data, mean, inv_std, x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x3, x_shape, mean, inv_std, batch_stats = self._saved()
        dout = check_grad(self.describe(), dout, x_shape, self.alpha.dtype, like=x3)
        dx, dalpha = _dice_backward(dout, x3, self.alpha.data, mean, inv_std, batch_stats)
        self.alpha.add_grad(dalpha)
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}"
