r"""2-D pooling: max, average, power-average (Lp / L2) and adaptive/global average.

Every pooling slides a kh x kw window with stride (sh, sw) over each channel of
x (N, C, H, W) separately.  Padding ph, pw is implicit (at most half the kernel,
PyTorch's rule, so every window holds at least one real element) and the output
size follows the convolution rule::

    Ho = ⌊(H + 2·ph − kh) / sh⌋ + 1,   Wo = ⌊(W + 2·pw − kw) / sw⌋ + 1

or, with ``ceil_mode=True`` (MaxPool2d, AvgPool2d; PyTorch's rule, ``kernels.formulas.pooled_size``),
Ho = ⌈(H + 2·ph − kh) / sh⌉ + 1, less one if the last window would start in the right padding:
the last window may then reach past the padded input and is clipped.

Write W(o) for the real (non-padding) input positions in the window of output o.

Max pooling (padding counts as −∞, i.e. is never chosen)::

    y[o] = max_{i ∈ W(o)} x[i],            a[o] = argmax (flat index h·W + w in the plane)
    ∂L/∂x[i] = Σ_{o : a[o] = i} dy[o]       (the gradient is routed to the winner; overlapping
                                             windows that chose the same element add up)

Average pooling, with d(o) = |W(o)| or, with ``count_include_pad=True``, the window's size
counting the padding but not a ceil-mode overhang past it (kh·kw for every other window)::

    y[o] = (1 / d(o)) · Σ_{i ∈ W(o)} x[i],    ∂L/∂x[i] = Σ_{o : i ∈ W(o)} dy[o] / d(o)

Power-average (Lp) pooling, PyTorch's ``LPPool2d`` (no padding)::

    y[o] = (Σ_{i ∈ W(o)} x[i]^p)^(1/p),       ∂L/∂x[i] = Σ_{o : i ∈ W(o)} dy[o] · (x[i] / y[o])^(p−1)

With ``mean=True`` the sum becomes a mean, y[o] = ((1/n)·Σ x[i]^p)^(1/p) with n = kh·kw and
an extra 1/n in the gradient; for p = 2 that is the lectures' "L2 pooling", the root mean
square h = √((1/n)·Σ h̃²).  A window whose output is exactly 0 passes a zero gradient (a valid
subgradient, and PyTorch's value) instead of 0/0.  As in PyTorch, a p that is not an even
integer needs non-negative inputs (x^p or the p-th root of a negative sum is NaN).

Adaptive average pooling to (Ho, Wo) uses PyTorch's bins, which may overlap::

    rows of output oh: [⌊oh·H / Ho⌋, ⌈(oh + 1)·H / Ho⌉)       (columns alike)

``GlobalAvgPool2d`` is the (1, 1) case: the per-channel spatial mean used before the
classifier in NiN / GoogLeNet / ResNet.

CPU kernels: ``numbanet.kernels.cpu.pooling``.  The backward passes of average and
power pooling gather over the windows covering each input element; max pooling
scatters to the winners one (n, c) plane per parallel iteration.  CUDA kernels:
``numbanet.kernels.cuda.pooling`` (one thread per output, or per input element in
backward, max pooling included: a gather, no atomics), used for device arrays.
"""
from __future__ import annotations

import numpy as np

from ._validate import (as_float_array, check_dy, check_grad, check_ndim, check_nonempty,
                        check_shape, pair)
from .device import device_of, is_cuda
from .kernels import backend
from .kernels.formulas import pooled_size
from .module import Module


def _check_input(name: str, x) -> np.ndarray:
    x = as_float_array(name, x)
    check_ndim(name, x, 4, "(N, C, H, W)")
    return x


def _window_args(name: str, kernel_size, stride, padding):
    """Normalise (kernel_size, stride, padding); stride None means stride = kernel_size."""
    kernel = pair(name, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else pair(name, "stride", stride, 1)
    padding = pair(name, "padding", padding, 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{name}: padding should be at most half of the kernel size "
                         f"(padding <= kernel_size // 2), got padding {padding} for kernel_size {kernel}")
    return kernel, stride, padding


def _check_window(name: str, input_shape, kernel_size, stride, padding, ceil_mode: bool = False) -> tuple:
    """Validate the window against the input: (kernel, stride, padding, (Ho, Wo)), Ho and Wo by
    ``formulas.pooled_size`` (floor or ceil mode)."""
    kernel, stride, padding = _window_args(name, kernel_size, stride, padding)
    height, width = input_shape[2:]
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{name}: kernel {kernel} is larger than the padded input {padded} "
                         f"(input shape {tuple(input_shape)}, padding {padding})")
    out_hw = tuple(pooled_size(size, k, s, p, bool(ceil_mode))
                   for size, k, s, p in zip((height, width), kernel, stride, padding))
    return kernel, stride, padding, out_hw


# -- max pooling -----------------------------------------------------------------------------------

def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices: bool = False, ceil_mode: bool = False,
               *, name: str = "max_pool2d"):
    """y = max over each window.

    x: (N, C, H, W) -> y: (N, C, Ho, Wo); with ``return_indices`` also the int64 argmax
    (N, C, Ho, Wo), each a flat index h·W + w into its input plane (PyTorch's convention).
    ``ceil_mode``: Ho = ⌈(H + 2p − k)/s⌉ + 1 (module docstring), the last window partial.
    """
    x = _check_input(name, x)
    check_nonempty(name, x.shape, "(N, C, H, W)")
    kernel, stride, padding, _ = _check_window(name, x.shape, kernel_size, stride, padding, ceil_mode)
    return backend(x).pooling.max_pool2d(x, kernel, stride, padding, return_indices, bool(ceil_mode))


def max_pool2d_backward(dy, indices, input_shape, kernel_size=None, stride=None, padding=0,
                        ceil_mode: bool = False) -> np.ndarray:
    """dx (``input_shape`` = (N, C, H, W)) from dy and the argmax ``indices``, both (N, C, Ho, Wo).

    On the GPU the window (kernel_size, stride, padding of the forward call) is required too:
    there each input element gathers from the windows that contain it.
    """
    name = "max_pool2d_backward"
    input_shape = check_shape(name, "input_shape", input_shape, 4, "(N, C, H, W)")
    check_nonempty(name, input_shape, "(N, C, H, W)")
    window = (None, None, (0, 0), False)  # the CPU kernel scatters to the argmax: no window needed
    if kernel_size is None:
        if is_cuda(dy) or is_cuda(indices):
            raise ValueError(f"{name}: on the GPU pass the forward's kernel_size (and stride, padding): "
                             "the CUDA kernel gathers over the windows containing each input element")
        out_hw, why = tuple(np.shape(indices)[2:]), "the indices' shape"
    else:
        kernel, stride, padding, out_hw = _check_window(name, input_shape, kernel_size, stride, padding, ceil_mode)
        window = (kernel, stride, padding, bool(ceil_mode))
        why = (f"max_pool2d's output for input_shape {input_shape}, kernel_size {kernel}, stride {stride}, "
               f"padding {padding}, ceil_mode {bool(ceil_mode)}")
    expected = (*input_shape[:2], *out_hw)
    dy = check_dy(name, dy, device_of(indices), expected, why=why)
    if tuple(indices.shape) != expected or np.dtype(indices.dtype).kind not in "iu":
        raise ValueError(f"{name}: expected integer indices of shape {expected} (dy's), "
                         f"got {indices.dtype} of shape {tuple(indices.shape)}")
    return backend(dy).pooling.max_pool2d_backward(dy, indices, input_shape, *window)


# -- average pooling -------------------------------------------------------------------------------

def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad: bool = True, ceil_mode: bool = False,
               *, name: str = "avg_pool2d") -> np.ndarray:
    """y = window mean.  x: (N, C, H, W) -> y: (N, C, Ho, Wo).

    The divisor is the window's size counting the padding (kh·kw, less a ceil-mode window's
    overhang past the padding) when ``count_include_pad``, else the number of real elements in
    the window.  kernel 3, stride 1, padding 1 keeps H x W (the pooling branch of an Inception
    module).  ``ceil_mode`` as in ``max_pool2d``.
    """
    x = _check_input(name, x)
    kernel, stride, padding, _ = _check_window(name, x.shape, kernel_size, stride, padding, ceil_mode)
    return backend(x).pooling.avg_pool2d(x, kernel, stride, padding, count_include_pad, bool(ceil_mode))


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, count_include_pad: bool = True,
                        ceil_mode: bool = False) -> np.ndarray:
    """dx (``input_shape`` = (N, C, H, W)) from dy (N, C, Ho, Wo) and the forward's arguments."""
    name = "avg_pool2d_backward"
    input_shape = check_shape(name, "input_shape", input_shape, 4, "(N, C, H, W)")
    kernel, stride, padding, out_hw = _check_window(name, input_shape, kernel_size, stride, padding, ceil_mode)
    dy = check_dy(name, dy, None, (*input_shape[:2], *out_hw),
                  why=f"avg_pool2d's output for input_shape {input_shape}, kernel_size {kernel}, "
                      f"stride {stride}, padding {padding}, ceil_mode {bool(ceil_mode)}")
    return backend(dy).pooling.avg_pool2d_backward(dy, input_shape, kernel, stride, padding, count_include_pad,
                                                   bool(ceil_mode))


# -- power-average (Lp) pooling --------------------------------------------------------------------

def _check_norm_type(name: str, norm_type) -> float:
    norm_type = float(norm_type)
    if not (0 < norm_type < np.inf):
        raise ValueError(f"{name}: norm_type must be a finite number > 0, got {norm_type}")
    return norm_type


def lp_pool2d(x, norm_type, kernel_size, stride=None, mean: bool = False, *,
              name: str = "lp_pool2d") -> np.ndarray:
    """y = (Σ_window x^p)^(1/p), or ((1/n)·Σ_window x^p)^(1/p) with ``mean=True`` (n = kh·kw).

    x: (N, C, H, W) -> y: (N, C, Ho, Wo); no padding (as PyTorch).  p = 2, mean=True is
    the lectures' root-mean-square "L2 pooling".
    """
    x = _check_input(name, x)
    norm_type = _check_norm_type(name, norm_type)
    kernel, stride, _, _ = _check_window(name, x.shape, kernel_size, stride, 0)
    return backend(x).pooling.lp_pool2d(x, norm_type, kernel, stride, mean)


def lp_pool2d_backward(dy, x, y, norm_type, kernel_size, stride=None, mean: bool = False) -> np.ndarray:
    """dx (N, C, H, W) from dy, the forward input x and output y (both needed: dx ∝ (x/y)^(p−1))."""
    name = "lp_pool2d_backward"
    norm_type = _check_norm_type(name, norm_type)
    x = _check_input(name, x)
    kernel, stride, _, out_hw = _check_window(name, x.shape, kernel_size, stride, 0)
    expected = (*x.shape[:2], *out_hw)
    why = f"lp_pool2d's output for x of shape {x.shape}, kernel_size {kernel}, stride {stride}"
    y = check_dy(name, y, x, expected, name="y", why=why)
    dy = check_dy(name, dy, x, expected, why=why)
    return backend(dy).pooling.lp_pool2d_backward(dy, x, y, norm_type, kernel, stride, mean)


# -- adaptive average pooling ----------------------------------------------------------------------

def _resolve_output_size(name: str, output_size, input_shape) -> tuple[int, int]:
    """int or (h, w) pair; None in the pair keeps that input dimension (as PyTorch)."""
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    output_size = tuple(output_size)
    if len(output_size) != 2:
        raise ValueError(f"{name}: output_size must be an int or a pair (h, w), got {output_size}")
    resolved = tuple(int(input_shape[2 + axis] if size is None else size)
                     for axis, size in enumerate(output_size))
    if min(resolved) < 1:
        raise ValueError(f"{name}: output_size must be >= 1, got {output_size}")
    return resolved


def adaptive_avg_pool2d(x, output_size, *, name: str = "adaptive_avg_pool2d") -> np.ndarray:
    """Average over PyTorch's adaptive bins.  x: (N, C, H, W) -> y: (N, C, Ho, Wo) = output_size."""
    x = _check_input(name, x)
    return backend(x).pooling.adaptive_avg_pool2d(x, _resolve_output_size(name, output_size, x.shape))


def adaptive_avg_pool2d_backward(dy, input_shape) -> np.ndarray:
    """dx (``input_shape`` = (N, C, H, W)) from dy (N, C, Ho, Wo); the bins follow from the two shapes."""
    name = "adaptive_avg_pool2d_backward"
    input_shape = check_shape(name, "input_shape", input_shape, 4, "(N, C, H, W)")
    dy = as_float_array(name, dy, "dy")
    if dy.ndim != 4 or tuple(dy.shape[:2]) != input_shape[:2] or min(dy.shape[2:]) < 1:
        raise ValueError(f"{name}: expected dy of shape ({input_shape[0]}, {input_shape[1]}, Ho, Wo) with "
                         f"Ho, Wo >= 1 (N, C of input_shape {input_shape}), got {dy.shape}")
    return backend(dy).pooling.adaptive_avg_pool2d_backward(dy, input_shape)


# -- layers ----------------------------------------------------------------------------------------

class _Pool2d(Module):
    """Shared state of the sliding-window poolings: (kernel_size, stride, padding) as pairs, ceil_mode."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        name = f"{type(self).__name__}(kernel_size={kernel_size})"
        self.kernel_size, self.stride, self.padding = _window_args(name, kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class MaxPool2d(_Pool2d):
    """Max pooling; ``stride`` defaults to ``kernel_size``.  backward routes dy to the argmax.

    ``ceil_mode=True`` (PyTorch's): Ho = ⌈(H + 2p − k)/s⌉ + 1, keeping a last, partial window
    clipped at the border (torchvision's GoogLeNet pools 112 -> 56 with 3x3/2 where floor mode
    gives 55); a window that would start in the right padding is dropped.
    """

    def __init__(self, kernel_size, stride=None, padding=0, *, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, indices = max_pool2d(x, self.kernel_size, self.stride, self.padding, return_indices=True,
                                ceil_mode=self.ceil_mode, name=self.describe())
        self._save_for_backward(np.shape(x), y.dtype, indices)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        input_shape, dtype, indices = self._saved()
        dout = check_grad(self.describe(), dout, indices.shape, dtype, like=indices)
        return max_pool2d_backward(dout, indices, input_shape, self.kernel_size, self.stride, self.padding,
                                   self.ceil_mode)


class AvgPool2d(_Pool2d):
    """Average pooling, PyTorch's arguments in its order.  ``count_include_pad``: the padding
    zeros count in the mean (the divisor is the window counting its padding, which for a
    ceil-mode partial window stops at the padding's edge, as in PyTorch); ``ceil_mode`` as in
    ``MaxPool2d``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad, self.ceil_mode,
                       name=self.describe())
        self._save_for_backward(np.shape(x), y.shape, y.dtype, device_of(y))
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        input_shape, y_shape, dtype, device = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, dtype, like=device)
        return avg_pool2d_backward(dout, input_shape, self.kernel_size, self.stride, self.padding,
                                   self.count_include_pad, self.ceil_mode)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.count_include_pad else s + ", count_include_pad=False"


class LPPool2d(_Pool2d):
    """Power-average pooling y = (Σ x^p)^(1/p) (PyTorch's ``LPPool2d``; no padding).

    ``mean=True`` (not in PyTorch) averages instead of summing: with ``norm_type=2`` it is
    the lectures' root-mean-square L2 pooling.  See the module docstring for the gradient.
    """

    def __init__(self, norm_type, kernel_size, stride=None, mean: bool = False):
        super().__init__(kernel_size, stride, 0)
        self.norm_type = _check_norm_type(f"LPPool2d({norm_type})", norm_type)
        self.mean = bool(mean)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _check_input(self.describe(), x)
        y = lp_pool2d(x, self.norm_type, self.kernel_size, self.stride, self.mean, name=self.describe())
        self._save_for_backward(x, y)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, y = self._saved()
        dout = check_grad(self.describe(), dout, y.shape, y.dtype, like=y)
        return lp_pool2d_backward(dout, x, y, self.norm_type, self.kernel_size, self.stride, self.mean)

    def extra_repr(self) -> str:
        return f"norm_type={self.norm_type:g}, " + super().extra_repr() + (", mean=True" if self.mean else "")


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (int or (h, w); None keeps that input size)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = adaptive_avg_pool2d(x, self.output_size, name=self.describe())
        out = self._shaped(y)
        self._save_for_backward(np.shape(x), y.shape, out.shape, y.dtype, device_of(y))
        return out

    def _shaped(self, y):
        """The output as this layer returns it (GlobalAvgPool2d may flatten it)."""
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        input_shape, y_shape, out_shape, dtype, device = self._saved()
        dout = check_grad(self.describe(), dout, out_shape, dtype, like=device)
        return adaptive_avg_pool2d_backward(dout.reshape(y_shape), input_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    """Per-channel spatial mean: (N, C, H, W) -> (N, C, 1, 1), i.e. ``AdaptiveAvgPool2d((1, 1))``.

    The (N, C, 1, 1) shape is kept by default so that a following 1x1 convolution works
    unchanged; ``flatten=True`` returns (N, C), ready for a ``Linear`` classifier.
    Not a PyTorch class.
    """

    def __init__(self, flatten: bool = False):
        super().__init__((1, 1))
        self.flatten = bool(flatten)

    def _shaped(self, y):
        return y.reshape(y.shape[:2]) if self.flatten else y

    def extra_repr(self) -> str:
        return "flatten=True" if self.flatten else ""
