"""Layers (``numbanet.nn``): PyTorch's names and arguments, explicit ``backward``."""
from . import init
from .conv import Conv2d
from .module import Module
from .tensor import Parameter
