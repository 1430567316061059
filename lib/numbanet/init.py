r"""Weight initialisation (``numbanet.nn.init``), in place on a ``Parameter``.

Fan-in of a weight of shape (out, in, kh, kw) is ``in*kh*kw``; fan-out is ``out*kh*kw``.

* ``fan_in_uniform``: the lectures' rule, U(-1/√fan_in, 1/√fan_in).  This is
  also PyTorch's default for Conv2d and Linear weights and biases
  (``kaiming_uniform_(a=√5)`` reduces to exactly this bound).
* ``kaiming_normal`` / ``kaiming_uniform`` (MSRA, He et al. 2015): variance
  gain²/fan, gain = √(2/(1+a²)), chosen so ReLU layers keep activations' scale.
* ``xavier_uniform`` / ``xavier_normal`` (Glorot & Bengio 2010): variance 2/(fan_in+fan_out).

Each also has PyTorch's trailing-underscore name (``kaiming_normal_``, ``zeros_``, ...).  They
take a Parameter (or an array) on the CPU or the GPU; on the GPU the values are drawn on the
host from the same generator and copied over.
"""
from __future__ import annotations

import math

import numpy as np

from .device import is_cuda
from .random import get_rng
from .tensor import Parameter


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shaped (out, in, *kernel) or (out, in)."""
    if len(shape) < 2:
        raise ValueError(f"init: fan-in and fan-out need a weight with >= 2 dims, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, mode: str) -> int:
    fan_in, fan_out = fans(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's gains: linear/sigmoid 1, tanh 5/3, relu √2, leaky_relu √(2/(1+a²)), selu 3/4."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"init: unknown nonlinearity {nonlinearity!r}")


def _array(param):
    """The array an initialiser fills: a Parameter's value, or the array itself."""
    return param.data if isinstance(param, Parameter) else param


def _draw(param, draw, shift: float, scale: float):
    """Fill the parameter with scale·draw(out) + shift, drawn in its dtype.  A host array is
    drawn into directly (no float64 temporary: big FC layers); a device array (a parameter on
    the GPU) is drawn on the host with the same generator and copied to it."""
    target = _array(param)
    values = np.empty(target.shape, target.dtype) if is_cuda(target) else target
    draw(out=values, dtype=values.dtype)
    values *= scale
    values += shift
    if is_cuda(target):
        target.copy_to_device(values)
    return param


def uniform(param: Parameter, low: float = 0.0, high: float = 1.0, rng=None) -> Parameter:
    """U(low, high), drawn directly in the parameter's dtype."""
    return _draw(param, get_rng(rng).random, low, high - low)


def normal(param: Parameter, mean: float = 0.0, std: float = 1.0, rng=None) -> Parameter:
    """N(mean, std²), drawn directly in the parameter's dtype."""
    return _draw(param, get_rng(rng).standard_normal, mean, std)


def constant(param: Parameter, value: float) -> Parameter:
    target = _array(param)
    if is_cuda(target):
        target.copy_to_device(np.full(target.shape, value, target.dtype))
    else:
        target[...] = value
    return param


def zeros(param: Parameter) -> Parameter:
    return constant(param, 0.0)


def ones(param: Parameter) -> Parameter:
    return constant(param, 1.0)


def fan_in_uniform(param: Parameter, fan_in: int | None = None, rng=None) -> Parameter:
    """U(-1/√fan_in, 1/√fan_in).  Pass ``fan_in`` for a bias (its own shape has no fan)."""
    fan_in = fans(param.shape)[0] if fan_in is None else fan_in
    bound = 1.0 / math.sqrt(fan_in)
    return uniform(param, -bound, bound, rng)


def kaiming_uniform(param: Parameter, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", rng=None) -> Parameter:
    """U(-b, b) with b = gain·√(3/fan)."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(param.shape, mode))
    return uniform(param, -bound, bound, rng)


def kaiming_normal(param: Parameter, a: float = 0.0, mode: str = "fan_in",
                   nonlinearity: str = "leaky_relu", rng=None) -> Parameter:
    """N(0, std²) with std = gain/√fan (MSRA initialisation)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(param.shape, mode))
    return normal(param, 0.0, std, rng)


def xavier_uniform(param: Parameter, gain: float = 1.0, rng=None) -> Parameter:
    fan_in, fan_out = fans(param.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(param, -bound, bound, rng)


def xavier_normal(param: Parameter, gain: float = 1.0, rng=None) -> Parameter:
    fan_in, fan_out = fans(param.shape)
    return normal(param, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


# PyTorch's in-place names (``torch.nn.init.kaiming_normal_`` etc.): the same functions, which
# already work in place on a Parameter (or a NumPy or device array), on the CPU or the GPU.
uniform_, normal_, constant_, zeros_, ones_ = uniform, normal, constant, zeros, ones
kaiming_uniform_, kaiming_normal_ = kaiming_uniform, kaiming_normal
xavier_uniform_, xavier_normal_ = xavier_uniform, xavier_normal
