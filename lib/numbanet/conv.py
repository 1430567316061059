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
device array.
"""
from __future__ import annotations

import numba
import numpy as np

from . import init
from ._validate import as_float_array, check_device, check_dtype_match, check_grad, check_ndim, contiguous, pair
from ._workspace import scratch
from .device import is_cuda
from .kernels.cpu import blas, conv as cpu
from .module import Module
from .tensor import Parameter


def conv2d_output_size(height: int, width: int, kernel_size, stride=1, padding=0) -> tuple[int, int]:
    """(Ho, Wo) by the size rule (n' − 1)·S + F = n + 2P (floor when S does not divide evenly)."""
    kh, kw = pair("conv2d", "kernel_size", kernel_size, 1)
    sh, sw = pair("conv2d", "stride", stride, 1)
    ph, pw = pair("conv2d", "padding", padding, 0)
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def _check(name: str, x, weight, stride, padding):
    """Validate a convolution call; return (x, weight, stride, padding, (Ho, Wo))."""
    x = as_float_array(name, x)
    check_ndim(name, x, 4, "(N, C, H, W)")
    weight = as_float_array(name, weight, "weight")
    check_ndim(name, weight, 4, "(out_channels, in_channels, kh, kw)")
    check_device(name, x, weight)
    check_dtype_match(name, x, weight.dtype)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"{name}: expected input with {weight.shape[1]} channels, shape "
                         f"(N, {weight.shape[1]}, H, W), got shape {x.shape}")
    stride = pair(name, "stride", stride, 1)
    padding = pair(name, "padding", padding, 0)
    kh, kw = weight.shape[2:]
    hp, wp = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if kh > hp or kw > wp:
        raise ValueError(f"{name}: kernel ({kh}, {kw}) is larger than the padded input ({hp}, {wp}) "
                         f"(input shape {x.shape}, padding {padding})")
    out_hw = ((hp - kh) // stride[0] + 1, (wp - kw) // stride[1] + 1)
    return x, weight, stride, padding, out_hw


# A task (``kernels.cpu.conv``: a few samples lowered, multiplied and written back by one
# thread) holds about this many bytes of matrices, so that they stay in the core's cache.
# Measured on ResNet-20 and the bench/conv_cpu.py shapes: 1 MiB beat 256 KiB and 2 MiB.
_TASK_BYTES = 1 << 20


def _per_task(n: int, sample_bytes: int) -> int:
    """Samples per task: about _TASK_BYTES each, spread evenly (a function of n and the shape only,
    never of the thread count, so that results do not depend on it)."""
    per = max(1, min(n, _TASK_BYTES // max(sample_bytes, 1)))
    tasks = -(-n // per)
    return -(-n // tasks)


def _tasks(n: int, sample_elements: int, dtype, slots: int) -> tuple[int, np.ndarray]:
    """(samples per task, workspace): a task holds ``sample_elements`` numbers per sample (its
    lowered matrices), the workspace (slots, per_task*sample_elements) one row per slot."""
    per_task = _per_task(n, sample_elements * np.dtype(dtype).itemsize)
    return per_task, scratch("conv.workspace", (slots, per_task * sample_elements), dtype)


def _slots() -> int:
    return numba.get_num_threads()


def _is_pointwise(kernel_hw, stride, padding) -> bool:
    return tuple(kernel_hw) == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _row_shift_weights(weight: np.ndarray) -> np.ndarray:
    """W (K, C, kh, kw) -> (kh*K, C*kw) with row i*K + k = W[k, :, i, :].ravel() (matches ``im2row``)."""
    k, c, kh, kw = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(kh * k, c * kw)


def _conv_row_shift(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, padding, sw: int, wo: int,
                    out: np.ndarray) -> None:
    """out (N, K, Ho*wo) = bias + conv(x, weight) for vertical stride 1; x (N, C, H, W) C-contiguous."""
    n, c, h, _ = x.shape
    k, _, kh, kw = weight.shape
    block = (h + 2 * padding[0]) * wo
    per_task, workspace = _tasks(n, (c * kw + kh * k) * block, x.dtype, _slots())
    with blas.single_threaded():
        cpu.row_shift_conv(x, _row_shift_weights(weight), bias, padding[0], padding[1], sw, wo, per_task,
                           workspace, out)


def _cuda():
    """The CUDA kernels, imported on first use so that ``import numbanet`` needs no numba.cuda."""
    from .kernels.cuda import conv as cuda_conv
    return cuda_conv


def conv2d(x, weight, bias=None, stride=1, padding=0, *, name: str = "conv2d") -> np.ndarray:
    """y = conv2d(x, w) + b.

    x: (N, C, H, W); weight: (K, C, kh, kw); bias: (K,) or None -> y: (N, K, Ho, Wo).
    All on the CPU (NumPy arrays) or all on the GPU (device arrays; y is one too).
    """
    x, weight, stride, padding, (ho, wo) = _check(name, x, weight, stride, padding)
    check_device(name, x, bias)
    if is_cuda(x):
        return _cuda().conv2d(x, weight, bias, stride, padding)
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    n, c = x.shape[:2]
    k, _, kh, kw = weight.shape
    w2 = weight.reshape(k, -1)
    bias = np.zeros(k, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    positions = ho * wo
    y = np.empty((n, k, positions), x.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        with blas.single_threaded():
            cpu.pointwise_conv(x.reshape(n, c, -1), w2, bias, y)
    elif stride[0] == 1:
        _conv_row_shift(x, weight, bias, padding, stride[1], wo, y)
    else:
        per_task, workspace = _tasks(n, (c * kh * kw + k) * positions, x.dtype, _slots())
        with blas.single_threaded():
            cpu.im2col_conv(x, w2, bias, padding[0], padding[1], kh, kw, stride[0], stride[1], ho, wo, per_task,
                            workspace, y)
    return y.reshape(n, k, ho, wo)


def conv2d_backward_input(dy, weight, input_shape, stride=1, padding=0) -> np.ndarray:
    """dx = ∂L/∂x, shape ``input_shape`` (N, C, H, W), from dy (N, K, Ho, Wo) and weight (K, C, kh, kw)."""
    if is_cuda(dy) or is_cuda(weight):
        check_device("conv2d_backward_input", dy, weight, name="dy")
        return _cuda().conv2d_backward_input(dy, weight, tuple(input_shape), pair("conv2d", "stride", stride, 1),
                                             pair("conv2d", "padding", padding, 0))
    weight = np.ascontiguousarray(weight)
    dy = np.ascontiguousarray(dy, dtype=weight.dtype)
    stride, padding = pair("conv2d", "stride", stride, 1), pair("conv2d", "padding", padding, 0)
    n, c, h, w = input_shape
    k, _, kh, kw = weight.shape
    ho, wo = dy.shape[2:]
    w2t = np.ascontiguousarray(weight.reshape(k, -1).T)
    if _is_pointwise((kh, kw), stride, padding):
        dx = np.empty((n, c, h * w), dy.dtype)
        with blas.single_threaded():
            cpu.pointwise_matmul(w2t, dy.reshape(n, k, -1), dx)
        return dx.reshape(n, c, h, w)
    ph, pw = padding
    if stride == (1, 1) and ph < kh and pw < kw:
        # dx = conv2d(dy, flipped kernel with in/out swapped, padding k−1−p): a forward pass.
        flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        dx = np.empty((n, c, h * w), dy.dtype)
        _conv_row_shift(dy, flipped, np.zeros(c, dy.dtype), (kh - 1 - ph, kw - 1 - pw), 1, w, dx)
        return dx.reshape(n, c, h, w)
    dx = np.empty((n, c, h, w), dy.dtype)
    positions = ho * wo
    per_task, workspace = _tasks(n, (k + c * kh * kw) * positions, dy.dtype, _slots())
    with blas.single_threaded():
        cpu.col2im_input_grad(dy.reshape(n, k, -1), w2t, ph, pw, kh, kw, stride[0], stride[1], ho, wo, per_task,
                              workspace, dx)
    return dx


def conv2d_backward_weight(dy, x, weight_shape, stride=1, padding=0, *, bias: bool = True):
    """(dw, db) = (∂L/∂w of shape ``weight_shape``, ∂L/∂b of shape (K,)) from dy and the forward input x.

    With ``bias=False`` (a layer without bias) db is not computed and None is returned in its place.
    """
    if is_cuda(dy) or is_cuda(x):
        check_device("conv2d_backward_weight", dy, x, name="dy")
        dw, db = _cuda().conv2d_backward_weight(dy, x, tuple(weight_shape), pair("conv2d", "stride", stride, 1),
                                                pair("conv2d", "padding", padding, 0))
        return dw, (db if bias else None)
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    stride, padding = pair("conv2d", "stride", stride, 1), pair("conv2d", "padding", padding, 0)
    k, c, kh, kw = weight_shape
    n = x.shape[0]
    ho, wo = dy.shape[2:]
    positions = ho * wo
    dy3 = dy.reshape(n, k, -1)
    db = None
    if bias:
        db = np.empty(k, x.dtype)
        cpu.channel_sum(dy3, db)
    groups = cpu.WEIGHT_GRAD_GROUPS
    if _is_pointwise((kh, kw), stride, padding):
        partials = np.empty((groups, k, c), x.dtype)
        with blas.single_threaded():
            cpu.pointwise_weight_grad(dy3, x.reshape(n, c, -1), partials)
        return partials.sum(axis=0).reshape(weight_shape), db
    if stride[0] == 1:
        return _backward_weight_row_shift(dy3, x, weight_shape, padding, stride[1], wo), db
    per_task, workspace = _tasks(n, (k + c * kh * kw) * positions, x.dtype, groups)
    partials = np.empty((groups, k, c * kh * kw), x.dtype)
    with blas.single_threaded():
        cpu.im2col_weight_grad(dy3, x, padding[0], padding[1], kh, kw, stride[0], stride[1], ho, wo, per_task,
                               workspace, partials)
    return partials.sum(axis=0).reshape(weight_shape), db


def _backward_weight_row_shift(dy3: np.ndarray, x: np.ndarray, weight_shape, padding, sw: int,
                               wo: int) -> np.ndarray:
    """dW (K, C, kh, kw) for vertical stride 1, from dy (N, K, Ho*Wo) and the forward input x (N, C, H, W).

    dW[k, :, i, :] = Σ_{n,h,ow} dy_shift[i*K + k, (n, h, ow)] · rows[:, (n, h, ow)], with
    dy_shift = ``_shifted_grad(dy)`` (dy moved down by i rows, the kh shifts stacked) and
    rows = ``_im2row(x padded)``, both built per task (kernels.cpu.conv.row_shift_weight_grad).
    """
    k, c, kh, kw = weight_shape
    n, _, h, _ = x.shape
    block = (h + 2 * padding[0]) * wo
    groups = cpu.WEIGHT_GRAD_GROUPS
    per_task, workspace = _tasks(n, (c * kw + kh * k) * block, x.dtype, groups)
    partials = np.empty((groups, kh * k, c * kw), x.dtype)
    with blas.single_threaded():
        cpu.row_shift_weight_grad(dy3, x, padding[0], padding[1], sw, wo, per_task, workspace, partials)
    dw_rows = partials.sum(axis=0)
    return np.ascontiguousarray(dw_rows.reshape(kh, k, c, kw).transpose(1, 2, 0, 3))


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
        name = f"Conv2d({in_channels}, {out_channels})"
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{name}: channel counts must be >= 1")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1)
        self.stride = pair(name, "stride", stride, 1)
        self.padding = pair(name, "padding", padding, 0)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = init.fan_in_uniform(
            Parameter(np.empty((out_channels, in_channels, *self.kernel_size), dtype)), rng=rng)
        self.bias = init.fan_in_uniform(Parameter(np.empty(out_channels, dtype)), fan_in, rng) if bias else None
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = None if self.bias is None else self.bias.data
        y = conv2d(x, self.weight.data, b, self.stride, self.padding, name=self.describe())
        self._cache = (contiguous(x), y.shape)
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
