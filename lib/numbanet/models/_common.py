"""Helpers shared by the model constructors: argument checks and the width multiplier."""
from __future__ import annotations

import numpy as np

from .. import init
from ..conv import Conv2d
from ..module import Module


def check_counts(owner: str, num_classes: int, in_channels: int) -> None:
    """Every constructor takes ``num_classes`` and ``in_channels``; both must be positive ints."""
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


def check_width(owner: str, width: float) -> float:
    """The width multiplier must be a positive number (1.0 = the paper's channel counts)."""
    if isinstance(width, bool) or not isinstance(width, (int, float, np.integer, np.floating)) or not width > 0:
        raise ValueError(f"{owner}: width must be a positive number (1.0 = the paper's channels), "
                         f"got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """round(channels · width), at least 1: the channel count of a width-multiplied layer."""
    return max(1, int(round(channels * width)))


def check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")


def he_init(model: Module, mode: str, rng=None) -> None:
    """Every Conv2d weight ~ N(0, 2/fan) (He et al. 2015, for ReLU networks), biases 0.

    Keeps the activations' scale through deep ReLU stacks, which PyTorch's default
    U(±1/√fan_in) (variance 1/(3·fan_in)) shrinks by ~√6 per layer without BatchNorm.
    """
    for module in model.modules():
        if isinstance(module, Conv2d):
            init.kaiming_normal(module.weight, mode=mode, nonlinearity="relu", rng=rng)
            if module.bias is not None:
                init.zeros(module.bias)
