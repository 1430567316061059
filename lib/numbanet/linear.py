r"""Fully connected layer ``Linear``, ``Flatten``, and their functional forms.

Forward (every leading dimension of x is a batch dimension; write X for x
reshaped to M = ∏ leading dims rows)::

    y = x Wᵀ + b        x: (*, in),  W: (out, in),  b: (out,),  y: (*, out)

Backward, with dy = ∂L/∂y reshaped to rows dY (M, out)::

    ∂L/∂x = dY W         (M, out)·(out, in) → (M, in), reshaped back to x's shape
    ∂L/∂W = dYᵀ X        (out, M)·(M, in)   → (out, in): every row contributes
    ∂L/∂b = Σ_m dY[m]    (out,)

``Flatten`` only changes the shape, so its backward reshapes dy back to the
input's shape.

CPU kernels: ``numbanet.kernels.cpu.linear`` (the products are single-threaded BLAS calls on
blocks of rows in parallel; Numba adds the bias and reduces its gradient).  CUDA kernels:
``numbanet.kernels.cuda.linear`` (tiled shared-memory GEMMs), used for device arrays.
"""
from __future__ import annotations

import math

import numpy as np

from . import init
from ._validate import as_float_array, check_count, check_device, check_dtype_match, check_dy, check_grad, contiguous
from .device import device_of
from .kernels import backend
from .module import Module
from .tensor import Parameter


def _check(name: str, x, weight) -> tuple[np.ndarray, np.ndarray]:
    """Validate a linear call; return (x, weight) as contiguous float arrays."""
    x = as_float_array(name, x)
    weight = as_float_array(name, weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D weight of shape (out_features, in_features), "
                         f"got shape {weight.shape}")
    in_features = weight.shape[1]
    if x.ndim < 1 or x.shape[x.ndim - 1] != in_features:
        raise ValueError(f"{name}: expected input of shape (*, {in_features}) "
                         f"(last dim = in_features), got shape {x.shape}")
    check_device(name, x, weight)
    check_dtype_match(name, x, weight.dtype)
    return x, weight


def linear(x, weight, bias=None, *, name: str = "linear") -> np.ndarray:
    """y = x Wᵀ + b.

    x: (*, in); weight: (out, in); bias: (out,) or None -> y: (*, out).
    All on the CPU (NumPy arrays) or all on the GPU (device arrays; y is one too).
    """
    x, weight = _check(name, x, weight)
    check_device(name, x, bias)
    return backend(x).linear.linear(x, weight, bias)


def linear_backward(dy, x, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db) for y = linear(x, weight, bias).

    dy: (*, out); x: (*, in) the forward input; weight: (out, in)
    -> dx: (*, in), dw: (out, in), db: (out,).
    """
    x, weight = _check("linear_backward", x, weight)
    dy = check_dy("linear_backward", dy, weight, (*x.shape[:-1], weight.shape[0]))
    return backend(dy).linear.linear_backward(dy, x, weight)


class Linear(Module):
    """Fully connected layer y = x Wᵀ + b, PyTorch's arguments and weight layout (out, in).

    Weight and bias start from the fan-in uniform rule U(±1/√in_features), as in PyTorch.
    ``backward(dy)`` returns ∂L/∂x and adds into ``weight.grad`` and ``bias.grad``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, rng=None):
        super().__init__()
        name = f"Linear({in_features!r}, {out_features!r})"
        self.in_features = check_count(name, "in_features", in_features)
        self.out_features = check_count(name, "out_features", out_features)
        self.weight = init.fan_in_uniform(Parameter(np.empty((out_features, in_features), dtype)), rng=rng)
        self.bias = (init.fan_in_uniform(Parameter(np.empty(out_features, dtype)), in_features, rng)
                     if bias else None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = None if self.bias is None else self.bias.data
        y = linear(x, self.weight.data, b, name=self.describe())
        self._save_for_backward(contiguous(x), y.shape)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, y_shape = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, self.weight.dtype, like=x)
        dx, dw, db = linear_backward(dout, x, self.weight.data)
        self.weight.add_grad(dw)
        if self.bias is not None:
            self.bias.add_grad(db)
        return dx

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _flatten_dims(name: str, shape: tuple, start_dim: int, end_dim: int) -> tuple[int, int]:
    """start_dim and end_dim as non-negative axes of ``shape``, or ValueError."""
    ndim = len(shape)
    start = start_dim + ndim if start_dim < 0 else start_dim
    end = end_dim + ndim if end_dim < 0 else end_dim
    if not 0 <= start <= end < ndim:
        raise ValueError(f"{name}: cannot flatten dims {start_dim}..{end_dim} of an input of shape "
                         f"{shape} ({ndim}-D); need 0 <= start_dim <= end_dim < {ndim} after "
                         f"counting negative dims from the end")
    return start, end


def flatten(x, start_dim: int = 1, end_dim: int = -1, *, name: str = "flatten") -> np.ndarray:
    """Merge dims start_dim..end_dim (inclusive) into one.

    x: (d0, ..., dk) -> (d0, ..., d_{start-1}, d_start·…·d_end, d_{end+1}, ..., dk).
    The backward of a flatten is ``dy.reshape(x.shape)``.
    """
    x = as_float_array(name, x)
    start, end = _flatten_dims(name, x.shape, start_dim, end_dim)
    merged = math.prod(x.shape[start:end + 1])
    return x.reshape(*x.shape[:start], merged, *x.shape[end + 1:])


class Flatten(Module):
    """Flatten dims start_dim..end_dim, by default (N, C, H, W) -> (N, C·H·W) as in PyTorch."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = flatten(x, self.start_dim, self.end_dim, name=self.describe())
        self._save_for_backward(np.shape(x), y.shape, y.dtype, device_of(y))
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_shape, y_shape, dtype, device = self._saved()
        return check_grad(self.describe(), dout, y_shape, dtype, like=device).reshape(x_shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
