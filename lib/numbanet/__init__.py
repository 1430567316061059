"""numbanet: convolutional networks from scratch, with explicit backward and Numba kernels."""
import os

# Numba's parallel kernels (OpenMP threads) and BLAS (its own threads) take turns
# on the same cores many times per layer.  With OpenMP's default spin-waiting the
# idle pool keeps burning a core while the other works: im2col + GEMM chunks ran
# ~9x slower here.  Passive waiting must be set before the OpenMP runtime starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .random import manual_seed
# nb.device("cuda") etc.; the function shadows the submodule's name on the package, so
# import the module's other names with ``from numbanet.device import ...``.
from .device import device, to_device, to_numpy
from .tensor import Parameter
from .module import Module
from . import functional, nn, optim
from .gradcheck import gradcheck
from .summary import summary
from .checkpoint import load, save
from . import data, models, train

__version__ = "0.1.0"
__all__ = ["Module", "Parameter", "data", "functional", "gradcheck", "load", "manual_seed", "models",
           "nn", "optim", "save", "summary", "train"]
__all__ += ["device", "to_device", "to_numpy"]
