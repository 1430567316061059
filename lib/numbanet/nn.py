"""Layers (``numbanet.nn``): PyTorch's names and arguments, explicit ``backward``."""
from . import init
from .conv import Conv2d
from .module import Module
from .tensor import Parameter
from .container import Add, Concat, Identity, ModuleDict, ModuleList, Sequential
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss, MSELoss
from .pooling import (AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, LPPool2d, MaxPool2d)
from .activation import (ELU, GELU, SELU, Dice, LeakyReLU, Mish, ReLU, Sigmoid, SiLU, Swish, Tanh)
from .dropout import Dropout, Dropout2d
from .norm import (BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm, LocalResponseNorm,
                   fold_batchnorm)
