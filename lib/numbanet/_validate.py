"""Input checks shared by every layer.

Every message names the layer, what was expected and what was received, so a
student reading a traceback knows which line of their network to look at.
"""
from __future__ import annotations

import numpy as np

from .device import Device, check_same_device, device_of, is_cuda
from .tensor import FLOAT_DTYPES


def as_float_array(layer: str, x, name: str = "input") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array or raise ``TypeError``.

    A CUDA device array is returned as it is (it must already be C-contiguous): the
    layer then runs on the GPU; ``check_same_device`` compares it with the parameters.
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
        expected = like if isinstance(like, Device) else device_of(like)
        if device_of(dout) != expected:
            raise TypeError(f"{layer}.backward: dout is on {device_of(dout)} but the forward pass ran "
                            f"on {expected}; move dout there with numbanet.to_device(dout, '{expected}')")
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


def check_device(layer: str, x, *params, name: str = "input") -> None:
    """Raise a TypeError naming the layer and both devices unless ``x`` and every given
    parameter array (None entries are skipped) live on the same device."""
    for param in params:
        if param is not None:
            check_same_device(layer, x, param, name)
