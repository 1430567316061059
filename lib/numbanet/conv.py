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

import numpy as np

from . import init
from ._validate import as_float_array, check_device, check_dtype_match, check_grad, check_ndim, contiguous, pair
from ._workspace import scratch
from .device import is_cuda
from .kernels.cpu import conv as cpu
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


# im2col / im2row matrices are built for a few samples at a time: a chunk of about this many
# bytes stays in cache between im2col writing it and the GEMM reading it, and the
# scratch memory stays small for big batches.
_CHUNK_BYTES = 8 << 20


def _batch_chunks(n: int, row_bytes: int):
    """Split range(n) into consecutive (start, stop) chunks of about _CHUNK_BYTES of columns each."""
    step = max(1, _CHUNK_BYTES // max(row_bytes, 1))
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def _padded(x: np.ndarray, padding) -> np.ndarray:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    xp = scratch("conv.padded", (n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    cpu.pad(x, ph, pw, xp)
    return xp


def _is_pointwise(kernel_hw, stride, padding) -> bool:
    return tuple(kernel_hw) == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _row_shift_weights(weight: np.ndarray) -> np.ndarray:
    """W (K, C, kh, kw) -> (kh*K, C*kw) with row i*K + k = W[k, :, i, :].ravel() (matches ``im2row``)."""
    k, c, kh, kw = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(kh * k, c * kw)


def _conv_row_shift(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, padding, sw: int, wo: int,
                    out: np.ndarray) -> None:
    """out (N, K, Ho*wo) = bias + conv(x, weight) for vertical stride 1; x (N, C, H, W) C-contiguous.

    Per chunk of samples: rows = im2row(x padded), Z = W_rows @ rows, out = Σ_i Z shifted by i rows.
    """
    n, c, h, _ = x.shape
    k, _, kh, kw = weight.shape
    w_rows = _row_shift_weights(weight)
    hp = h + 2 * padding[0]
    block = hp * wo
    for start, stop in _batch_chunks(n, (c * kw + kh * k) * block * x.itemsize):
        rows = scratch("conv.cols", (c * kw, (stop - start) * block), x.dtype)
        cpu.im2row(x[start:stop], padding[0], padding[1], kw, sw, wo, rows)
        z = scratch("conv.gemm_out", (kh * k, (stop - start) * block), x.dtype)
        np.matmul(w_rows, rows, out=z)
        cpu.sum_row_shifts(z, kh, hp, wo, bias, out[start:stop])


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
    n, c = x.shape[:2]
    k, _, kh, kw = weight.shape
    w2 = weight.reshape(k, -1)
    bias = np.zeros(k, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        y = np.matmul(w2, x.reshape(n, c, -1))
        cpu.add_channel_bias(y, bias)
        return y.reshape(n, k, ho, wo)
    positions = ho * wo
    y = np.empty((n, k, positions), x.dtype)
    if stride[0] == 1:
        _conv_row_shift(np.ascontiguousarray(x), weight, bias, padding, stride[1], wo, y)
        return y.reshape(n, k, ho, wo)
    xp = _padded(x, padding)
    for start, stop in _batch_chunks(n, c * kh * kw * positions * x.itemsize):
        cols = scratch("conv.cols", (c * kh * kw, (stop - start) * positions), x.dtype)
        cpu.im2col(xp[start:stop], kh, kw, stride[0], stride[1], ho, wo, cols)
        y_knp = scratch("conv.gemm_out", (k, (stop - start) * positions), x.dtype)
        np.matmul(w2, cols, out=y_knp)
        cpu.unfold_output(y_knp, bias, y[start:stop])
    return y.reshape(n, k, ho, wo)


def _grad_channel_major(dy: np.ndarray) -> np.ndarray:
    """dy (N, K, Ho, Wo) rearranged to the GEMM layout (K, N·Ho·Wo), in a scratch buffer."""
    n, k = dy.shape[:2]
    dy_knp = scratch("conv.grad_out", (k, n * dy.shape[2] * dy.shape[3]), dy.dtype)
    cpu.to_channel_major(dy.reshape(n, k, -1), dy_knp)
    return dy_knp


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
    w2t = weight.reshape(k, -1).T
    if _is_pointwise((kh, kw), stride, padding):
        return np.matmul(w2t, dy.reshape(n, k, -1)).reshape(n, c, h, w)
    ph, pw = padding
    if stride == (1, 1) and ph < kh and pw < kw:
        # dx = conv2d(dy, flipped kernel with in/out swapped, padding k−1−p): a forward pass.
        flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        dx = np.empty((n, c, h * w), dy.dtype)
        _conv_row_shift(dy, flipped, np.zeros(c, dy.dtype), (kh - 1 - ph, kw - 1 - pw), 1, w, dx)
        return dx.reshape(n, c, h, w)
    dx = np.empty((n, c, h, w), dy.dtype)
    dxp = dx if ph == 0 and pw == 0 else scratch("conv.padded", (n, c, h + 2 * ph, w + 2 * pw), dy.dtype)
    dy_knp = _grad_channel_major(dy)
    positions = ho * wo
    for start, stop in _batch_chunks(n, c * kh * kw * positions * dy.itemsize):
        dcols = scratch("conv.cols", (c * kh * kw, (stop - start) * positions), dy.dtype)
        np.matmul(w2t, dy_knp[:, start * positions:stop * positions], out=dcols)
        cpu.col2im(dcols, kh, kw, stride[0], stride[1], ho, wo, dxp[start:stop])
    if dxp is not dx:
        cpu.crop(dxp, ph, pw, dx)
    return dx


def conv2d_backward_weight(dy, x, weight_shape, stride=1, padding=0) -> tuple[np.ndarray, np.ndarray]:
    """(dw, db) = (∂L/∂w of shape ``weight_shape``, ∂L/∂b of shape (K,)) from dy and the forward input x."""
    if is_cuda(dy) or is_cuda(x):
        check_device("conv2d_backward_weight", dy, x, name="dy")
        return _cuda().conv2d_backward_weight(dy, x, tuple(weight_shape), pair("conv2d", "stride", stride, 1),
                                              pair("conv2d", "padding", padding, 0))
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    stride, padding = pair("conv2d", "stride", stride, 1), pair("conv2d", "padding", padding, 0)
    k, c, kh, kw = weight_shape
    n = x.shape[0]
    ho, wo = dy.shape[2:]
    positions = ho * wo
    db = np.empty(k, x.dtype)
    cpu.channel_sum(dy.reshape(n, k, -1), db)
    if _is_pointwise((kh, kw), stride, padding):
        # dW = Σ_n dy_n (K, P) @ x_nᵀ (P, C): per-sample products straight from NCHW (no transposes),
        # summed over chunks of samples whose (chunk, K, C) products fill about _CHUNK_BYTES.
        x3, dy3 = x.reshape(n, c, -1), dy.reshape(n, k, -1)
        dw = np.zeros((k, c), x.dtype)
        for start, stop in _batch_chunks(n, k * c * x.itemsize):
            per_sample = scratch("conv.dw_partial", (stop - start, k, c), x.dtype)
            np.matmul(dy3[start:stop], x3[start:stop].transpose(0, 2, 1), out=per_sample)
            dw += per_sample.sum(axis=0)
        return dw.reshape(weight_shape), db
    if stride[0] == 1:
        return _backward_weight_row_shift(dy, x, weight_shape, padding, stride[1]), db
    xp = _padded(x, padding)
    dy_knp = _grad_channel_major(dy)
    dw = np.zeros((k, c * kh * kw), x.dtype)
    partial = scratch("conv.dw_partial", (k, c * kh * kw), x.dtype)
    for start, stop in _batch_chunks(n, c * kh * kw * positions * x.itemsize):
        cols = scratch("conv.cols", (c * kh * kw, (stop - start) * positions), x.dtype)
        cpu.im2col(xp[start:stop], kh, kw, stride[0], stride[1], ho, wo, cols)
        np.matmul(dy_knp[:, start * positions:stop * positions], cols.T, out=partial)
        dw += partial
    return dw.reshape(weight_shape), db


def _backward_weight_row_shift(dy: np.ndarray, x: np.ndarray, weight_shape, padding, sw: int) -> np.ndarray:
    """dW (K, C, kh, kw) for vertical stride 1, from dy (N, K, Ho, Wo) and the forward input x (N, C, H, W).

    dW[k, :, i, :] = Σ_{n,h,ow} dy_shift[i*K + k, (n, h, ow)] · rows[:, (n, h, ow)]: one GEMM per chunk
    of samples, with dy_shift = ``shifted_grad(dy)`` (dy moved down by i rows, the kh shifts stacked)
    and rows = ``im2row(x padded)``, both built per chunk so that the GEMM reads them from cache.
    """
    k, c, kh, kw = weight_shape
    n, _, h, _ = x.shape
    hp = h + 2 * padding[0]
    wo = dy.shape[3]
    block = hp * wo
    dy3 = dy.reshape(n, k, -1)
    dw_rows = np.zeros((kh * k, c * kw), dy.dtype)
    partial = scratch("conv.dw_partial", (kh * k, c * kw), dy.dtype)
    for start, stop in _batch_chunks(n, (c * kw + kh * k) * block * dy.itemsize):
        rows = scratch("conv.cols", (c * kw, (stop - start) * block), dy.dtype)
        cpu.im2row(x[start:stop], padding[0], padding[1], kw, sw, wo, rows)
        dy_shifted = scratch("conv.grad_out", (kh * k, (stop - start) * block), dy.dtype)
        cpu.shifted_grad(dy3[start:stop], kh, hp, wo, dy_shifted)
        np.matmul(dy_shifted, rows.T, out=partial)
        dw_rows += partial
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
        dw, db = conv2d_backward_weight(dout, x, self.weight.shape, self.stride, self.padding)
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
