r"""CUDA kernels for 2-D convolution (layer: ``numbanet.conv``).

Implicit GEMM: the three products of the CPU's im2col scheme run on the tiled
shared-memory GEMM of ``_common.TiledGemm``, but the im2col matrix is never
built: the GEMM's operand accessors compute, for each element it loads, where in
x (or dy) that element lives, and return 0 for positions in the padding::

    forward   Y[k, (n,oh,ow)]  = Σ_{(c,i,j)}  W[k, (c,i,j)] · x_pad[n, c, oh·sh+i, ow·sw+j]
    dX        dX[c, (n,h,w)]   = Σ_{(k,i,j)}  W[k, (c,i,j)] · dy[n, k, (h+ph−i)/sh, (w+pw−j)/sw]
                                 (terms whose division is not exact or out of range are 0)
    dW        dW[k, (c,i,j)]   = Σ_{(n,oh,ow)} dy[n, k, oh, ow] · x_pad[n, c, oh·sh+i, ow·sw+j]
    db        db[k]            = Σ_{n,oh,ow} dy[n, k, oh, ow]

The dX product is the transposed convolution written as a *gather*: each output
element dx[n, c, h, w] is one thread's sum over the taps that read it, so no
col2im scatter and no atomics are needed.  dW has a long reduction (N·Ho·Wo) and
few outputs, so it is split over the reduction (split-K) and the partial products
are added in a fixed order.  A 1x1 stride-1 unpadded convolution is a plain
(batched) matrix product and uses accessors without the im2col arithmetic.

Every result is deterministic: each output element is summed by one thread in a
fixed order (the db block reduction uses a fixed tree).
"""
from __future__ import annotations

from numba import cuda, float64

from . import _common

_REDUCE_SHARED = _common.REDUCE_SHARED  # a module constant: shared-array shapes must be compile-time


# -- operand accessors (geom = (C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo)) ---------------------------

@cuda.jit(device=True)
def _load_weight(w, k, r, geom):
    """A(k, r) = w[k, c, i, j] with r = (c·kh + i)·kw + j: the weight as a (K, C·kh·kw) matrix."""
    taps = geom[3] * geom[4]
    c = r // taps
    ij = r - c * taps
    i = ij // geom[4]
    return w[k, c, i, ij - i * geom[4]]


@cuda.jit(device=True)
def _load_patch(x, r, col, geom):
    """B(r, col) = x_pad[n, c, oh·sh + i, ow·sw + j]: the implicit im2col matrix (C·kh·kw, N·Ho·Wo)."""
    taps = geom[3] * geom[4]
    c = r // taps
    ij = r - c * taps
    i = ij // geom[4]
    j = ij - i * geom[4]
    positions = geom[9] * geom[10]
    n = col // positions
    p = col - n * positions
    oh = p // geom[10]
    ow = p - oh * geom[10]
    h = oh * geom[5] + i - geom[7]
    w = ow * geom[6] + j - geom[8]
    if h < 0 or h >= geom[1] or w < 0 or w >= geom[2]:
        return x.dtype.type(0)
    return x[n, c, h, w]


@cuda.jit(device=True)
def _store_output(y, split, k, col, value, geom):
    """Y[k, (n, oh, ow)] -> y[n, k, oh, ow]."""
    positions = geom[9] * geom[10]
    n = col // positions
    p = col - n * positions
    oh = p // geom[10]
    y[n, k, oh, p - oh * geom[10]] = value


# dX: rows c, columns (n, h, w), reduction r = (k, i, j).

@cuda.jit(device=True)
def _load_weight_by_input_channel(w, c, r, geom):
    """A(c, r) = w[k, c, i, j] with r = (k·kh + i)·kw + j."""
    taps = geom[3] * geom[4]
    k = r // taps
    ij = r - k * taps
    i = ij // geom[4]
    return w[k, c, i, ij - i * geom[4]]


@cuda.jit(device=True)
def _load_grad_patch(dy, r, col, geom):
    """B(r, col) = dy[n, k, oh, ow] for the output (oh, ow) whose tap (i, j) reads input (h, w), else 0."""
    taps = geom[3] * geom[4]
    k = r // taps
    ij = r - k * taps
    i = ij // geom[4]
    j = ij - i * geom[4]
    plane = geom[1] * geom[2]
    n = col // plane
    q = col - n * plane
    h = q // geom[2]
    w = q - h * geom[2]
    hp = h + geom[7] - i  # = oh·sh when tap i of output row oh reads input row h
    wp = w + geom[8] - j
    if hp < 0 or wp < 0:
        return dy.dtype.type(0)
    oh = hp // geom[5]
    ow = wp // geom[6]
    if oh * geom[5] != hp or ow * geom[6] != wp or oh >= geom[9] or ow >= geom[10]:
        return dy.dtype.type(0)
    return dy[n, k, oh, ow]


@cuda.jit(device=True)
def _store_input_grad(dx, split, c, col, value, geom):
    """dX[c, (n, h, w)] -> dx[n, c, h, w]."""
    plane = geom[1] * geom[2]
    n = col // plane
    q = col - n * plane
    h = q // geom[2]
    dx[n, c, h, q - h * geom[2]] = value


# dW: rows k, columns (c, i, j), reduction r = (n, oh, ow).

@cuda.jit(device=True)
def _load_grad_by_position(dy, k, r, geom):
    """A(k, r) = dy[n, k, oh, ow] with r = (n·Ho + oh)·Wo + ow."""
    positions = geom[9] * geom[10]
    n = r // positions
    p = r - n * positions
    oh = p // geom[10]
    return dy[n, k, oh, p - oh * geom[10]]


@cuda.jit(device=True)
def _load_patch_transposed(x, r, col, geom):
    """B(r, col) = im2col(x)[col, r]: the patch matrix read with the roles of rows and columns swapped."""
    return _load_patch(x, col, r, geom)


# 1x1, stride 1, no padding: arrays viewed as (N, C, P), P = H·W; geom = (P,).

@cuda.jit(device=True)
def _load_pixels(x, c, col, geom):
    """B(c, col) = x[n, c, p] with col = n·P + p."""
    n = col // geom[0]
    return x[n, c, col - n * geom[0]]


@cuda.jit(device=True)
def _load_pixels_by_position(a, row, r, geom):
    """A(row, r) = a[n, row, p] with r = n·P + p."""
    n = r // geom[0]
    return a[n, row, r - n * geom[0]]


@cuda.jit(device=True)
def _load_pixels_transposed(x, r, c, geom):
    """B(r, c) = x[n, c, p] with r = n·P + p."""
    n = r // geom[0]
    return x[n, c, r - n * geom[0]]


@cuda.jit(device=True)
def _store_pixels(y, split, row, col, value, geom):
    """C[row, n·P + p] -> y[n, row, p]."""
    n = col // geom[0]
    y[n, row, col - n * geom[0]] = value


_FORWARD = _common.TiledGemm(_load_weight, _load_patch, _store_output, True, False)
_BACKWARD_INPUT = _common.TiledGemm(_load_weight_by_input_channel, _load_grad_patch, _store_input_grad,
                                    True, False)
_BACKWARD_WEIGHT = _common.TiledGemm(_load_grad_by_position, _load_patch_transposed,
                                     _common.store_split_rows, True, True)
_POINTWISE_FORWARD = _common.TiledGemm(_common.load_rows, _load_pixels, _store_pixels, True, False)
_POINTWISE_INPUT = _common.TiledGemm(_common.load_cols, _load_pixels, _store_pixels, False, False)
_POINTWISE_WEIGHT = _common.TiledGemm(_load_pixels_by_position, _load_pixels_transposed,
                                      _common.store_split_rows, True, True)


# -- bias ----------------------------------------------------------------------------------------------

@cuda.jit
def _add_channel_bias_kernel(y, bias):
    """y[n, k, p] += bias[k] for y (N, K, P); one thread per element."""
    e = cuda.grid(1)
    if e < y.size:
        positions = y.shape[2]
        row = e // positions
        k = row % y.shape[1]
        y[row // y.shape[1], k, e - row * positions] += bias[k]


@cuda.jit
def _channel_sum_kernel(dy, dbias):
    """dbias[k] = Σ_{n,p} dy[n, k, p]: one block per channel k, a block-level tree reduction.

    Thread t sums p = t, t + T, t + 2T, ... of every sample in order, then ``block_sum``
    adds the T partial sums in a fixed tree: deterministic, no atomics.
    """
    shared = cuda.shared.array(_REDUCE_SHARED, dtype=float64)
    k = cuda.blockIdx.x
    total = 0.0
    for n in range(dy.shape[0]):
        for p in range(cuda.threadIdx.x, dy.shape[2], cuda.blockDim.x):
            total += dy[n, k, p]
    total = _common.block_sum(shared, total)
    if cuda.threadIdx.x == 0:
        dbias[k] = total


# -- public functions (the signatures of numbanet.conv's functional API) -----------------------------

def _is_pointwise(kernel_hw, stride, padding) -> bool:
    return tuple(kernel_hw) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def _geometry(input_shape, kernel_hw, stride, padding, out_hw) -> tuple:
    _, c, h, w = input_shape
    return (c, h, w, *kernel_hw, *stride, *padding, *out_hw)


def _output_hw(input_shape, kernel_hw, stride, padding) -> tuple[int, int]:
    return ((input_shape[2] + 2 * padding[0] - kernel_hw[0]) // stride[0] + 1,
            (input_shape[3] + 2 * padding[1] - kernel_hw[1]) // stride[1] + 1)


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
    """y = conv2d(x, w) + b on the GPU.

    x: (N, C, H, W); weight: (K, C, kh, kw); bias: (K,) or None (device arrays);
    stride, padding: pairs -> y: (N, K, Ho, Wo), a new device array.
    """
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    ho, wo = _output_hw(x.shape, (kh, kw), stride, padding)
    y = _common.empty((n, k, ho, wo), x.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        _POINTWISE_FORWARD(weight.reshape(k, c), x.reshape(n, c, h * w), y.reshape(n, k, ho * wo),
                           k, n * h * w, c, (h * w,))
    else:
        _FORWARD(weight, x, y, k, n * ho * wo, c * kh * kw,
                 _geometry(x.shape, (kh, kw), stride, padding, (ho, wo)))
    if bias is not None and y.size:
        _add_channel_bias_kernel[_common.launch_1d(y.size)](y.reshape(n, k, ho * wo), bias)
    return y


def conv2d_backward_input(dy, weight, input_shape, stride=(1, 1), padding=(0, 0)):
    """dx = ∂L/∂x of shape ``input_shape`` (N, C, H, W) from dy (N, K, Ho, Wo) and weight (K, C, kh, kw)."""
    n, c, h, w = (int(s) for s in input_shape)
    k, _, kh, kw = weight.shape
    ho, wo = dy.shape[2:]
    dx = _common.empty((n, c, h, w), dy.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        _POINTWISE_INPUT(weight.reshape(k, c), dy.reshape(n, k, h * w), dx.reshape(n, c, h * w),
                         c, n * h * w, k, (h * w,))
    else:
        _BACKWARD_INPUT(weight, dy, dx, c, n * h * w, k * kh * kw,
                        _geometry((n, c, h, w), (kh, kw), stride, padding, (ho, wo)))
    return dx


def conv2d_backward_weight(dy, x, weight_shape, stride=(1, 1), padding=(0, 0), bias: bool = True):
    """(dw, db): ∂L/∂w of shape ``weight_shape`` (K, C, kh, kw) and ∂L/∂b (K,) from dy and the input x;
    db is None when not ``bias``."""
    k, c, kh, kw = (int(s) for s in weight_shape)
    n, _, h, w = x.shape
    ho, wo = dy.shape[2:]
    positions = ho * wo
    db = _common.empty((k,), x.dtype) if bias else None
    if k and bias:
        _channel_sum_kernel[k, _common.reduce_threads(n * positions)](dy.reshape(n, k, positions), db)
    dw = _common.empty((k, c, kh, kw), x.dtype)
    rows, cols, depth = k, c * kh * kw, n * positions
    splits = _common.split_k(rows, cols, depth)
    parts = dw.reshape(1, rows, cols) if splits == 1 else _common.scratch("conv.dw_splits", (splits, rows, cols),
                                                                           x.dtype)
    if depth == 0:
        _common.fill(dw, 0)
        return dw, db
    if _is_pointwise((kh, kw), stride, padding):
        _POINTWISE_WEIGHT(dy.reshape(n, k, positions), x.reshape(n, c, h * w), parts, rows, cols, depth,
                          (positions,), splits=splits)
    else:
        _BACKWARD_WEIGHT(dy, x, parts, rows, cols, depth,
                         _geometry(x.shape, (kh, kw), stride, padding, (ho, wo)), splits=splits)
    if splits > 1:
        _common.sum_leading(parts, dw)
    return dw, db


def conv2d_backward(dy, x, weight, stride=(1, 1), padding=(0, 0)):
    """(dx, dw, db) for y = conv2d(x, weight, bias, stride, padding), all device arrays."""
    dx = conv2d_backward_input(dy, weight, x.shape, stride, padding)
    dw, db = conv2d_backward_weight(dy, x, weight.shape, stride, padding)
    return dx, dw, db
