"""LeNet-5, the lectures' version (LeCun et al. 1998, simplified).

    input 1 x 28 x 28
    conv1  6 @ 5x5, pad 2     -> 6 x 28 x 28      activation
    pool1  2x2 average, /2    -> 6 x 14 x 14
    conv2 16 @ 5x5            -> 16 x 10 x 10     activation
    pool2  2x2 average, /2    -> 16 x 5 x 5
    flatten                   -> 400
    fc1 400 -> 120, fc2 120 -> 84 (each followed by the activation), fc3 84 -> num_classes

61,706 parameters for 1 x 28 x 28 inputs and 10 classes.  The original used
sigmoid-like squashing (tanh); ``activation="relu"`` gives the modern variant.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..activation import ReLU, Sigmoid, Tanh
from ..container import Sequential
from ..conv import Conv2d, conv2d_output_size
from ..linear import Flatten, Linear
from ..pooling import AvgPool2d
from ._common import check_choice, check_counts

ACTIVATIONS = {"tanh": Tanh, "sigmoid": Sigmoid, "relu": ReLU}


class LeNet5(Sequential):
    """LeNet-5 (see the module docstring); children conv1, act1, pool1, …, fc3.

    ``input_size`` (the square input's side, 28 by default) fixes fc1's input size
    16·s·s with s = ((input_size − 4) / 2 − 4) / 2 (both poolings floor).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh",
                 input_size: int = 28, dtype=np.float32, rng=None):
        check_counts("LeNet5", num_classes, in_channels)
        check_choice("LeNet5", "activation", activation, ACTIVATIONS)
        side = _feature_side(input_size)
        act = ACTIVATIONS[activation]
        super().__init__(OrderedDict([
            ("conv1", Conv2d(in_channels, 6, 5, padding=2, dtype=dtype, rng=rng)),
            ("act1", act()),
            ("pool1", AvgPool2d(2, 2)),
            ("conv2", Conv2d(6, 16, 5, dtype=dtype, rng=rng)),
            ("act2", act()),
            ("pool2", AvgPool2d(2, 2)),
            ("flatten", Flatten()),
            ("fc1", Linear(16 * side * side, 120, dtype=dtype, rng=rng)),
            ("act3", act()),
            ("fc2", Linear(120, 84, dtype=dtype, rng=rng)),
            ("act4", act()),
            ("fc3", Linear(84, num_classes, dtype=dtype, rng=rng)),
        ]))
        self.activation = activation
        self.input_size = input_size


def _feature_side(input_size: int) -> int:
    """Side of conv2's pooled output for a square input of ``input_size`` pixels."""
    if not isinstance(input_size, (int, np.integer)) or input_size < 12:
        raise ValueError(f"LeNet5: input_size must be an int >= 12 (two 5x5 convolutions and two "
                         f"2x2 poolings), got {input_size!r}")
    side = conv2d_output_size(input_size, input_size, 5, 1, 2)[0] // 2
    return (conv2d_output_size(side, side, 5)[0]) // 2


def lenet5(num_classes: int = 10, in_channels: int = 1, activation: str = "tanh",
           input_size: int = 28, dtype=np.float32, rng=None) -> LeNet5:
    """LeNet-5 for ``input_size`` x ``input_size`` images; activation "tanh", "sigmoid" or "relu"."""
    return LeNet5(num_classes, in_channels, activation, input_size, dtype, rng)
