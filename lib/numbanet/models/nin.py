"""Network in Network (Lin, Chen & Yan 2014), the paper's CIFAR-10 model.

An *mlpconv* layer is a k x k convolution followed by two 1x1 convolutions (a small
MLP applied at every position), each with ReLU.  The classifier is the last mlpconv's
num_classes maps, averaged over space (global average pooling): no fully connected layer::

    input 3 x 32 x 32
    mlpconv1  5x5 pad 2 -> 192, 1x1 -> 160, 1x1 -> 96     -> 96 x 32 x 32
    pool1     max 3x3 /2 (pad 1), dropout 0.5             -> 96 x 16 x 16
    mlpconv2  5x5 pad 2 -> 192, 1x1 -> 192, 1x1 -> 192    -> 192 x 16 x 16
    pool2     average 3x3 /2 (pad 1), dropout 0.5         -> 192 x 8 x 8
    mlpconv3  3x3 pad 1 -> 192, 1x1 -> 192, 1x1 -> C      -> C x 8 x 8
    avgpool   global average                              -> C

966,986 parameters for 3 input channels and C = 10.  Convolutions start from He's normal
init (fan_in) with zero biases.  The Caffe model pools in ceil
mode; padding 1 gives the same output sizes (32 -> 16 -> 8; an 8 px input: 8 -> 4 -> 2).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..activation import ReLU
from ..container import Sequential
from ..conv import Conv2d
from ..dropout import Dropout
from ..pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from ._common import check_counts, he_init


def mlpconv(in_channels: int, channels: tuple[int, int, int], kernel_size: int, padding: int,
            dtype=np.float32, rng=None) -> Sequential:
    """k x k conv -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU (children "0" … "5")."""
    c1, c2, c3 = channels
    return Sequential(Conv2d(in_channels, c1, kernel_size, 1, padding, dtype=dtype, rng=rng), ReLU(),
                      Conv2d(c1, c2, 1, dtype=dtype, rng=rng), ReLU(),
                      Conv2d(c2, c3, 1, dtype=dtype, rng=rng), ReLU())


class NiN(Sequential):
    """NiN (module docstring): children mlpconv1, pool1, dropout1, mlpconv2, pool2, dropout2,
    mlpconv3, avgpool; the output is (N, num_classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5,
                 dtype=np.float32, rng=None):
        check_counts("NiN", num_classes, in_channels)
        super().__init__(OrderedDict([
            ("mlpconv1", mlpconv(in_channels, (192, 160, 96), 5, 2, dtype, rng)),
            ("pool1", MaxPool2d(3, 2, 1)),
            ("dropout1", Dropout(dropout, rng)),
            ("mlpconv2", mlpconv(96, (192, 192, 192), 5, 2, dtype, rng)),
            ("pool2", AvgPool2d(3, 2, 1, count_include_pad=False)),
            ("dropout2", Dropout(dropout, rng)),
            ("mlpconv3", mlpconv(192, (192, 192, num_classes), 3, 1, dtype, rng)),
            ("avgpool", GlobalAvgPool2d(flatten=True)),
        ]))
        he_init(self, "fan_in", rng)


def nin(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5, dtype=np.float32, rng=None) -> NiN:
    """Network in Network for 32 x 32 images (also runs on 8-31 px inputs)."""
    return NiN(num_classes, in_channels, dropout, dtype, rng)
