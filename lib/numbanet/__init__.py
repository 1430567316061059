"""numbanet: convolutional networks from scratch, with explicit backward and Numba kernels."""
# Numba's threading layer is left to Numba (TBB if installed, else OpenMP, else workqueue).
# The convolutions call BLAS single-threaded from inside their parallel kernels
# (kernels/cpu/conv.py), so BLAS's worker threads, whose spin-waiting once starved Numba's
# OpenMP threads, no longer run between kernels; measured on a ResNet-20 training step,
# the OpenMP layer is then 25% faster than workqueue (whose threads sleep between kernels,
# ~150 µs per launch against ~2 µs), also when torch is imported first.

from . import _memory
_memory.tune()  # keep freed arrays' memory for the next training step (see numbanet._memory)

from .random import manual_seed  # noqa: E402
# nb.device("cuda") etc.; the function shadows the submodule's name on the package, so
# import the module's other names with ``from numbanet.device import ...``.
from .device import device, to_device, to_numpy
from .tensor import Parameter
from .caching import is_grad_enabled, no_grad
from .module import Module
from . import functional, nn, optim
from .gradcheck import gradcheck
from .summary import summary
from .checkpoint import load, save
from .kernels.cpu.blas import blas_backend
from ._memory import malloc_state
from . import data, models, train

__version__ = "0.1.0"
__all__ = ["Module", "Parameter", "blas_backend", "data", "malloc_state", "functional", "gradcheck", "load", "manual_seed", "models",
           "nn", "optim", "save", "summary", "train"]
__all__ += ["device", "to_device", "to_numpy", "no_grad", "is_grad_enabled"]
