"""numbanet: convolutional networks from scratch, with explicit backward and Numba kernels."""
from .random import manual_seed
from .tensor import Parameter
from .module import Module
from . import functional, nn, optim
from .gradcheck import gradcheck

__version__ = "0.1.0"
__all__ = ["Module", "Parameter", "functional", "gradcheck", "manual_seed", "nn", "optim"]
