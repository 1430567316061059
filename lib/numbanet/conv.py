r"""2-D convolution: ``Conv2d`` and its functional form.

Forward (cross-correlation, as every deep-learning library computes it)::

    y[n, k, oh, ow] = b[k] + Σ_{c,i,j} w[k, c, i, j] · x_pad[n, c, oh·sh + i, ow·sw + j]
    Ho = ⌊(H + 2·ph − kh) / sh⌋ + 1,   Wo = ⌊(W + 2·pw − kw) / sw⌋ + 1

Backward, with dy = ∂L/∂y::

    ∂L/∂w[k, c, i, j] = Σ_{n,oh,ow} dy[n, k, oh, ow] · x_pad[n, c, oh·sh + i, ow·sw + j]
                        (cross-correlation of the input with the upstream gradient)
    ∂L/∂b[k]          = Σ_{n,oh,ow} dy[n, k, oh, ow]
    ∂L/∂x             = full convolution of the (stride-dilated) dy with the flipped kernel,
                        computed here as Wᵀ·dy followed by col2im.

CPU kernels: ``numbanet.kernels.cpu.conv``.  A 1x1 stride-1 convolution is a batched
matrix product.  With vertical stride 1 the forward pass copies only the kw horizontal
taps of the input (``im2row``, 3x instead of im2col's 9x for a 3x3 kernel), does one
GEMM for all (i, k) and sums the kh vertical taps as row shifts of its output, adding
the bias and writing NCHW in the same pass; dW reuses those rows, and dX is the same
forward convolution of dy with the flipped, transposed kernel (padding kh−1−ph).
Vertical stride > 1 uses im2col + one GEMM, and col2im for dX.
CUDA kernels: ``numbanet.kernels.cuda.conv`` (the same three products as implicit
GEMMs on a tiled shared-memory kernel; dX as a gather, no atomics), used when x is a
device array; ``backend(x).conv`` picks the module.
"""
from __future__ import annotations

import numpy as np

from . import init
from ._validate import (as_float_array, check_count, check_device, check_dtype_match, check_dy, check_grad, check_ndim,
                        check_nonempty, check_shape, contiguous, pair)
from .kernels import backend
from .module import Module
from .tensor import Parameter


def conv2d_output_size(height: int, width: int, kernel_size, stride=1, padding=0) -> tuple[int, int]:
    """(Ho, Wo) by the size rule (n' − 1)·S + F = n + 2P (floor when S does not divide evenly)."""
    kh, kw = pair("conv2d", "kernel_size", kernel_size, 1)
    sh, sw = pair("conv2d", "stride", stride, 1)
    ph, pw = pair("conv2d", "padding", padding, 0)
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def _geometry(name: str, input_shape: tuple, weight_shape: tuple, stride, padding):
    """Check that a weight of ``weight_shape`` fits a non-empty input of ``input_shape``; return
    (stride, padding, (Ho, Wo))."""
    check_nonempty(name, input_shape, "(N, C, H, W)")
    if input_shape[1] != weight_shape[1]:
        raise ValueError(f"{name}: expected input with {weight_shape[1]} channels, shape "
                         f"(N, {weight_shape[1]}, H, W), got shape {tuple(input_shape)}")
    stride = pair(name, "stride", stride, 1)
    padding = pair(name, "padding", padding, 0)
    kh, kw = weight_shape[2:]
    hp, wp = input_shape[2] + 2 * padding[0], input_shape[3] + 2 * padding[1]
    if kh > hp or kw > wp:
        raise ValueError(f"{name}: kernel ({kh}, {kw}) is larger than the padded input ({hp}, {wp}) "
                         f"(input shape {tuple(input_shape)}, padding {padding})")
    return stride, padding, ((hp - kh) // stride[0] + 1, (wp - kw) // stride[1] + 1)


def _check(name: str, x, weight, stride, padding):
    """Validate a convolution call; return (x, weight, stride, padding, (Ho, Wo))."""
    x = as_float_array(name, x)
    check_ndim(name, x, 4, "(N, C, H, W)")
    weight = as_float_array(name, weight, "weight")
    check_ndim(name, weight, 4, "(out_channels, in_channels, kh, kw)")
    check_device(name, x, weight)
    check_dtype_match(name, x, weight.dtype)
    return (x, weight, *_geometry(name, x.shape, weight.shape, stride, padding))


def _check_dy(name: str, dy, input_shape, weight_shape, stride, padding, like):
    """dy checked against the output (N, K, Ho, Wo) that conv2d gives for these shapes and window."""
    _, _, (ho, wo) = _geometry(name, input_shape, weight_shape, stride, padding)
    return check_dy(name, dy, like, (input_shape[0], weight_shape[0], ho, wo),
                    why=f"conv2d's output for input_shape {tuple(input_shape)}, weight shape "
                        f"{tuple(weight_shape)}, stride {stride}, padding {padding}")


def conv2d(x, weight, bias=None, stride=1, padding=0, *, name: str = "conv2d") -> np.ndarray:
    """y = conv2d(x, w) + b.

    x: (N, C, H, W); weight: (K, C, kh, kw); bias: (K,) or None -> y: (N, K, Ho, Wo).
    All on the CPU (NumPy arrays) or all on the GPU (device arrays; y is one too).
    """
    x, weight, stride, padding, _ = _check(name, x, weight, stride, padding)
    check_device(name, x, bias)
    return backend(x).conv.conv2d(x, weight, bias, stride, padding)


def conv2d_backward_input(dy, weight, input_shape, stride=1, padding=0) -> np.ndarray:
    """dx = ∂L/∂x, shape ``input_shape`` (N, C, H, W), from dy (N, K, Ho, Wo) and weight (K, C, kh, kw)."""
    name = "conv2d_backward_input"
    input_shape = check_shape(name, "input_shape", input_shape, 4, "(N, C, H, W)")
    weight = as_float_array(name, weight, "weight")
    check_ndim(name, weight, 4, "(out_channels, in_channels, kh, kw)")
    dy = _check_dy(name, dy, input_shape, weight.shape, stride, padding, like=weight)
    return backend(dy).conv.conv2d_backward_input(dy, weight, input_shape, pair("conv2d", "stride", stride, 1),
                                                  pair("conv2d", "padding", padding, 0))


def conv2d_backward_weight(dy, x, weight_shape, stride=1, padding=0, *, bias: bool = True):
    """(dw, db) = (∂L/∂w of shape ``weight_shape``, ∂L/∂b of shape (K,)) from dy and the forward input x.

    With ``bias=False`` (a layer without bias) db is not computed and None is returned in its place.
    """
    name = "conv2d_backward_weight"
    weight_shape = check_shape(name, "weight_shape", weight_shape, 4, "(out_channels, in_channels, kh, kw)")
    x = as_float_array(name, x)
    check_ndim(name, x, 4, "(N, C, H, W)")
    dy = _check_dy(name, dy, x.shape, weight_shape, stride, padding, like=x)
    return backend(dy).conv.conv2d_backward_weight(dy, x, weight_shape, pair("conv2d", "stride", stride, 1),
                                                   pair("conv2d", "padding", padding, 0), bias=bias)


def conv2d_backward(dy, x, weight, stride=1, padding=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db) for y = conv2d(x, weight, bias, stride, padding)."""
    dx = conv2d_backward_input(dy, weight, x.shape, stride, padding)
    dw, db = conv2d_backward_weight(dy, x, weight.shape, stride, padding)
    return dx, dw, db


class Conv2d(Module):
    """2-D convolution layer, PyTorch's arguments and weight layout (out, in, kh, kw).

    Weights and bias start from the fan-in uniform rule U(±1/√(in·kh·kw)), as in PyTorch.
    ``backward(dy)`` returns ∂L/∂x and adds into ``weight.grad`` and ``bias.grad``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, dtype=np.float32, rng=None):
        super().__init__()
        name = f"Conv2d({in_channels!r}, {out_channels!r})"
        self.in_channels = check_count(name, "in_channels", in_channels)
        self.out_channels = check_count(name, "out_channels", out_channels)
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1)
        self.stride = pair(name, "stride", stride, 1)
        self.padding = pair(name, "padding", padding, 0)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = init.fan_in_uniform(
            Parameter(np.empty((out_channels, in_channels, *self.kernel_size), dtype)), rng=rng)
        self.bias = init.fan_in_uniform(Parameter(np.empty(out_channels, dtype)), fan_in, rng) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = None if self.bias is None else self.bias.data
        y = conv2d(x, self.weight.data, b, self.stride, self.padding, name=self.describe())
        self._save_for_backward(contiguous(x), y.shape)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, y_shape = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, self.weight.dtype, like=x)
        dw, db = conv2d_backward_weight(dout, x, self.weight.shape, self.stride, self.padding,
                                        bias=self.bias is not None)
        self.weight.add_grad(dw)
        if self.bias is not None:
            self.bias.add_grad(db)
        return conv2d_backward_input(dout, self.weight.data, x.shape, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s
