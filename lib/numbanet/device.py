"""Devices: where arrays live and where the kernels run.

Two devices exist: ``"cpu"`` (NumPy arrays, the ``kernels.cpu`` Numba kernels) and
``"cuda"`` (numba device arrays, the ``kernels.cuda`` kernels).  A layer runs on the
device of its input; its parameters must be on the same one::

    model.to("cuda")                      # parameters, gradients and buffers move
    x = nb.to_device(x, "cuda")           # the data too
    y = model(x)                          # a device array; y_host = nb.to_numpy(y)

Nothing in this module imports ``numba.cuda`` until a GPU is asked for, so that
``import numbanet`` stays fast and works without CUDA.  Device arrays are recognised
by their ``__cuda_array_interface__`` (real GPUs, and CuPy / PyTorch tensors) or the
``__cuda_ndarray__`` flag (numba's arrays, including the simulator's).

Without a GPU, set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported: numba's CUDA
simulator then runs the same kernels (slowly) on the CPU, which is how the tests run.
"""
from __future__ import annotations

import numpy as np

_NO_GPU_HELP = (
    "no CUDA GPU is available (numba.cuda.is_available() is False). "
    "On Colab choose Runtime > Change runtime type > GPU (e.g. T4) and restart; "
    "elsewhere install the NVIDIA driver and `pip install numba-cuda[cu12]`. "
    "To test without a GPU, set NUMBA_ENABLE_CUDASIM=1 before numba is imported "
    "(numba's CUDA simulator runs the kernels on the CPU, slowly).")


class Device:
    """A device: ``Device("cpu")`` or ``Device("cuda")``.  Compares equal to its name."""

    __slots__ = ("type",)

    def __init__(self, name="cpu"):
        name = name.type if isinstance(name, Device) else str(name).lower()
        if name == "cuda:0":
            name = "cuda"
        if name not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {name!r}")
        object.__setattr__(self, "type", name)

    def __setattr__(self, name, value):
        raise AttributeError("Device is immutable")

    def __eq__(self, other) -> bool:
        if isinstance(other, Device):
            return self.type == other.type
        if isinstance(other, str):
            try:
                return self == Device(other)
            except ValueError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.type)

    def __str__(self) -> str:
        return self.type

    def __repr__(self) -> str:
        return f"device(type={self.type!r})"


CPU = Device("cpu")
CUDA = Device("cuda")


def require_cuda() -> None:
    """Raise a RuntimeError explaining how to get a GPU unless ``numba.cuda.is_available()``."""
    from numba import cuda
    if not cuda.is_available():
        raise RuntimeError(f"device('cuda'): {_NO_GPU_HELP}")


def device(name="cpu") -> Device:
    """``device("cpu")`` or ``device("cuda")``; the latter checks that a GPU (or the simulator) is there."""
    dev = Device(name)
    if dev == CUDA:
        require_cuda()
    return dev


def is_cuda(x) -> bool:
    """True for a CUDA device array (numba, the simulator's, or anything with ``__cuda_array_interface__``)."""
    return not isinstance(x, np.ndarray) and (
        hasattr(x, "__cuda_array_interface__") or bool(getattr(x, "__cuda_ndarray__", False)))


def device_of(x) -> Device:
    """The device an array lives on."""
    return CUDA if is_cuda(x) else CPU


def to_device(x, dev):
    """``x`` on ``dev``: a numba device array for "cuda" (copied from the host), a NumPy array for "cpu".

    An array already on ``dev`` is returned as it is.  Host arrays go to the GPU C-contiguous.
    """
    dev = device(dev)
    if dev == CPU:
        return to_numpy(x)
    if is_cuda(x):
        return x
    from numba import cuda
    return cuda.to_device(np.asarray(x, order="C"))  # (np.ascontiguousarray would make a 0-d array 1-d)


def to_numpy(x) -> np.ndarray:
    """A NumPy array holding ``x`` (copied to the host if ``x`` is a device array)."""
    if is_cuda(x):
        if hasattr(x, "copy_to_host"):
            return x.copy_to_host()
        from numba import cuda
        return cuda.as_cuda_array(x).copy_to_host()
    return np.asarray(x)
