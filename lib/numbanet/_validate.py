"""Input checks shared by every layer.

Every message names the layer, what was expected and what was received, so a
student reading a traceback knows which line of their network to look at.
"""
from __future__ import annotations

import operator

import numpy as np

from .device import CUDA, Device, device_of, is_cuda
from .tensor import FLOAT_DTYPES


def as_float_array(layer: str, x, name: str = "input") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array or raise ``TypeError``.

    A CUDA device array is returned as it is (it must already be C-contiguous): the
    layer then runs on the GPU; ``check_device`` compares it with the parameters.
    """
    if is_cuda(x):
        if not hasattr(x, "copy_to_host"):  # e.g. a CuPy array or PyTorch CUDA tensor: a zero-copy view
            from numba import cuda
            x = cuda.as_cuda_array(x)
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{layer}: expected {name} of dtype float32 or float64, got {x.dtype}")
        if not x.is_c_contiguous():
            raise ValueError(f"{layer}: {name} is a non-contiguous CUDA device array of shape {x.shape}; "
                             "the GPU kernels need C-contiguous arrays (copy it, e.g. "
                             "numbanet.to_device(numbanet.to_numpy(x), 'cuda'))")
        return x
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: expected {name} of dtype float32 or float64, got {x.dtype}")
    return np.ascontiguousarray(x)


def contiguous(x):
    """``x`` as a C-contiguous array on its own device (device arrays are already contiguous:
    ``as_float_array`` checks that)."""
    return x if is_cuda(x) else np.ascontiguousarray(x)


def check_ndim(layer: str, x: np.ndarray, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{layer}: expected a {ndim}-D input of shape {layout}, got shape {x.shape}")


def check_nonempty(layer: str, shape, layout: str) -> None:
    """Raise a clear ValueError for an input with no elements (an empty batch, N = 0), which the
    layers whose kernels split the batch into tasks or planes cannot take."""
    if 0 in tuple(shape):
        raise ValueError(f"{layer}: expected a non-empty input of shape {layout}, got shape {tuple(shape)} "
                         "(an empty batch? skip it before calling the layer)")


def check_dim(layer: str, x: np.ndarray, axis: int, size: int, layout: str) -> None:
    if x.shape[axis] != size:
        raise ValueError(
            f"{layer}: expected input of shape {layout} with {size} at dim {axis}, got shape {x.shape}")


def check_dtype_match(layer: str, x: np.ndarray, dtype: np.dtype) -> None:
    if x.dtype != dtype:
        raise TypeError(
            f"{layer}: input dtype {x.dtype} does not match the parameters' dtype {dtype}; "
            f"convert the input with x.astype(np.{dtype}) or the model with model.to(np.{x.dtype})")


def _check_upstream(where: str, name: str, grad, expected_shape: tuple, dtype, like, why: str):
    """The one rule for every upstream gradient, layer or functional, CPU or CUDA: a float32/float64
    array (no silent cast of integers or float16), on ``like``'s device, of ``expected_shape`` (the
    kernels index it by that shape and do not bounds-check) and, when ``dtype`` is given, of it."""
    grad = as_float_array(where, grad, name=name)
    check_device(where, grad, like, name=name, reference="the forward pass ran")
    if grad.shape != tuple(expected_shape):
        raise ValueError(f"{where}: expected {name} of shape {tuple(expected_shape)} ({why}), got {grad.shape}")
    if dtype is not None and grad.dtype != dtype:
        raise TypeError(f"{where}: expected {name} of dtype {np.dtype(dtype)}, got {grad.dtype}")
    return grad


def check_grad(layer: str, dout, expected_shape: tuple, dtype: np.dtype, like=None) -> np.ndarray:
    """Validate the upstream gradient handed to a layer's ``backward``.

    ``like``: the forward pass's device, or an array from it (its input or output); dout
    must be on that device.
    """
    return _check_upstream(f"{layer}.backward", "dout", dout, expected_shape, dtype, like,
                           "the forward output's shape")


def check_dy(function: str, dy, like, expected_shape=None, dtype=None, *, name: str = "dy",
             why: str = "the forward's") -> np.ndarray:
    """Validate ``dy`` (or another array named ``name``) handed to a functional ``*_backward``.

    ``like``: the forward's array (``F.relu_backward(dy, x)``: x), its ``Device``, or None.
    dy must be on its device and have ``expected_shape`` (default: like's shape), the shape the
    forward gives for the call's input shape and window, and ``dtype`` (default: an array
    ``like``'s dtype; with a Device or None, any float dtype).
    """
    has_array = like is not None and not isinstance(like, Device)
    expected_shape = like.shape if expected_shape is None else expected_shape
    dtype = like.dtype if dtype is None and has_array else dtype
    return _check_upstream(function, name, dy, expected_shape, dtype, like, why)


def check_shape(function: str, name: str, shape, ndim: int, layout: str) -> tuple[int, ...]:
    """``shape`` (e.g. input_shape) as a tuple of ``ndim`` non-negative ints, or a ValueError."""
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"{function}: expected {name} as a tuple of ints {layout}, got {shape!r}") from None
    if len(shape) != ndim or min(shape, default=0) < 0:
        raise ValueError(f"{function}: expected {name} as a tuple of {ndim} sizes {layout}, got {shape}")
    return shape


def _as_int(value):
    """``value`` as an int when it is one (Python or NumPy integer, not bool), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def pair(layer: str, name: str, value, minimum: int) -> tuple[int, int]:
    """Normalise an int-or-pair argument (kernel_size, stride, padding) and range-check it."""
    if _as_int(value) is not None:
        value = (value, value)
    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or any(_as_int(v) is None for v in items):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if len(items) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair (h, w), got {items}")
    value = tuple(_as_int(v) for v in items)
    if min(value) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return value


def check_count(layer: str, name: str, value, minimum: int = 1) -> int:
    """A size argument (channels, features) as an int >= ``minimum``, or a clear error."""
    count = _as_int(value)
    if count is None:
        raise TypeError(f"{layer}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if count < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {count}")
    return count


PARAMETERS = "the layer's parameters are"


def check_device(layer: str, x, *others, name: str = "input", reference: str = PARAMETERS) -> None:
    """The one device check: raise a TypeError naming the layer, both devices and the fix unless
    ``x`` and every array (or ``Device``) in ``others`` (None entries skipped) are on one device.

    ``name`` says what x is; ``reference`` what the others are, with its verb ("the layer's
    parameters are", "the forward pass ran", "the input is", ...).
    """
    x_dev = device_of(x)
    for other in others:
        if other is None:
            continue
        other_dev = other if isinstance(other, Device) else device_of(other)
        if other_dev == x_dev:
            continue
        if reference == PARAMETERS:
            fix = ("move the model with model.to('cuda')" if x_dev == CUDA
                   else "move the input with numbanet.to_device(x, 'cuda')")
            fix += " (or bring both to the CPU with model.to('cpu') and numbanet.to_numpy)"
        else:
            fix = f"move {name} there with numbanet.to_device({name}, '{other_dev}')"
        raise TypeError(f"{layer}: {name} is on {x_dev} but {reference} on {other_dev}; {fix}")
