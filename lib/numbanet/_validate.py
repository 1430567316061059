"""Input checks shared by every layer.

Every message names the layer, what was expected and what was received, so a
student reading a traceback knows which line of their network to look at.
"""
from __future__ import annotations

import numpy as np

from .tensor import FLOAT_DTYPES


def as_float_array(layer: str, x, name: str = "input") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array or raise ``TypeError``."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            raise TypeError(
                f"{layer}: {name} is a CUDA device array but the layer's parameters are on the CPU; "
                "move the model with model.to('cuda') or the array with numbanet.to_numpy(x)")
        x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: expected {name} of dtype float32 or float64, got {x.dtype}")
    return np.ascontiguousarray(x)


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


def check_grad(layer: str, dout, expected_shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Validate the upstream gradient handed to ``backward``."""
    dout = as_float_array(layer, dout, name="dout")
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
