"""numbanet: convolutional networks from scratch, with explicit backward and Numba kernels."""
import os

import numba

# Numba's parallel kernels and BLAS (its own threads) take turns on the same cores many
# times per layer.  With Numba's OpenMP layer, spin-waiting threads starved the other pool:
# im2col + GEMM chunks ran up to ~9x slower, and ~10x slower again when torch had been
# imported first (its OpenMP runtime spins too).  The workqueue layer's threads sleep when
# idle, whatever else is loaded.  A layer chosen by the user (NUMBA_THREADING_LAYER) wins.
# (workqueue does not allow two Python threads to run parallel kernels at the same time.)
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

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
