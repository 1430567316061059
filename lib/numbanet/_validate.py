"""Input checks shared by every layer.

Every message names the layer, what was expected and what was received, so a
student reading a traceback knows which line of their network to look at.
"""
from __future__ import annotations

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


def check_dim(layer: str, x: np.ndarray, axis: int, size: int, layout: str) -> None:
    if x.shape[axis] != size:
        raise ValueError(
            f"{layer}: expected input of shape {layout} with {size} at dim {axis}, got shape {x.shape}")


def check_dtype_match(layer: str, x: np.ndarray, dtype: np.dtype) -> None:
    if x.dtype != dtype:
        raise TypeError(
            f"{layer}: input dtype {x.dtype} does not match the parameters' dtype {dtype}; "
            f"convert the input with x.astype(np.{dtype}) or the model with model.to(np.{x.dtype})")


def check_grad(layer: str, dout, expected_shape: tuple, dtype: np.dtype, like=None) -> np.ndarray:
    """Validate the upstream gradient handed to ``backward``.

    ``like``: the forward pass's device, or an array from it (its input or output); dout
    must be on that device.
    """
    dout = as_float_array(layer, dout, name="dout")
    if like is not None:
        check_device(f"{layer}.backward", dout, like, name="dout", reference="the forward pass ran")
    if dout.shape != tuple(expected_shape):
        raise ValueError(
            f"{layer}.backward: expected dout of shape {tuple(expected_shape)} "
            f"(the forward output's shape), got {dout.shape}")
    if dout.dtype != dtype:
        raise TypeError(f"{layer}.backward: expected dout of dtype {dtype}, got {dout.dtype}")
    return dout


def pair(layer: str, name: str, value, minimum: int) -> tuple[int, int]:
    """Normalise an int-or-pair argument (kernel_size, stride, padding) and range-check it."""
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair (h, w), got {value}")
    if min(value) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return value


def not_run_yet(layer: str) -> RuntimeError:
    return RuntimeError(f"{layer}.backward called before forward: run the layer on an input first")


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


def check_dy(function: str, dy, like):
    """The ``dy`` handed to a functional backward (``F.relu_backward(dy, x)``, ...): a float array
    on the device, with the shape and dtype, of the forward's array ``like``."""
    dy = as_float_array(function, dy, name="dy")
    check_device(function, dy, like, name="dy", reference="the forward's array is")
    if dy.shape != like.shape or dy.dtype != like.dtype:
        raise ValueError(f"{function}: expected dy of shape {like.shape} and dtype {like.dtype} (the forward's), "
                         f"got {dy.shape} of dtype {dy.dtype}")
    return dy
