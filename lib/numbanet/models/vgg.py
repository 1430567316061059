"""VGG configurations A-E (Simonyan & Zisserman 2014, Table 1).

Every convolution is 3x3 stride 1 pad 1 followed by ReLU (config C also has 1x1
convolutions, "conv1-256/512"); five 2x2/2 max pools halve 224 px to 7 px; then
FC 25088 -> 4096 -> 4096 -> num_classes with ReLU and dropout 0.5 (torchvision's order,
so the state-dict keys ``features.<i>`` and ``classifier.{0,3,6}`` match torchvision's
vgg11/13/16/19)::

    config  weight layers  conv stages (channels; M = max pool)                   params (1000 classes)
    A       11             64 M 128 M 256x2 M 512x2 M 512x2 M                      132,863,336
    A-LRN   11             A with LocalResponseNorm after the first conv's ReLU    132,863,336
    B       13             64x2 M 128x2 M 256x2 M 512x2 M 512x2 M                  133,047,848
    C       16             B plus a 1x1 conv ending each of the last three stages  133,638,952
    D       16             64x2 M 128x2 M 256x3 M 512x3 M 512x3 M                  138,357,544
    E       19             64x2 M 128x2 M 256x4 M 512x4 M 512x4 M                  143,667,240

``avgpool`` (adaptive average to 7 x 7) is the identity at 224 px, as in torchvision.
Convolution weights start from He's normal init (fan_out, as torchvision), biases at 0.

``small_input=True`` (8-32 px images): the first two max pools are dropped (an 8 px image
reaches 1 px after the remaining three) and ``avgpool`` is a global average, so fc6 sees
512·width features.  ``width`` multiplies every channel count and the hidden FC sizes.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..activation import ReLU
from ..container import Sequential
from ..conv import Conv2d
from ..dropout import Dropout
from ..linear import Flatten, Linear
from ..norm import LocalResponseNorm
from ..pooling import AdaptiveAvgPool2d, GlobalAvgPool2d, MaxPool2d
from ._common import check_choice, check_counts, check_width, he_init, scaled

_M, _LRN = "M", "LRN"
# an int c is conv3-c; (c, 1) is conv1-c (config C)
CONFIGS = {
    "A": [64, _M, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M],
    "A-LRN": [64, _LRN, _M, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M],
    "B": [64, 64, _M, 128, 128, _M, 256, 256, _M, 512, 512, _M, 512, 512, _M],
    "C": [64, 64, _M, 128, 128, _M, 256, 256, (256, 1), _M, 512, 512, (512, 1), _M, 512, 512, (512, 1), _M],
    "D": [64, 64, _M, 128, 128, _M, 256, 256, 256, _M, 512, 512, 512, _M, 512, 512, 512, _M],
    "E": [64, 64, _M, 128, 128, _M, 256, 256, 256, 256, _M, 512, 512, 512, 512, _M,
          512, 512, 512, 512, _M],
}


def make_layers(config: str = "D", in_channels: int = 3, width: float = 1.0, small_input: bool = False,
                dtype=np.float32, rng=None) -> Sequential:
    """VGG's convolutional part for ``config`` ("A" … "E"): the ``features`` of ``vgg(config)``."""
    check_choice("VGG", "config", config, CONFIGS)
    layers = []
    pools_to_skip = 2 if small_input else 0
    channels = in_channels
    for item in CONFIGS[config]:
        if item == _M:
            if pools_to_skip:
                pools_to_skip -= 1
            else:
                layers.append(MaxPool2d(2, 2))
        elif item == _LRN:
            layers.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            out, kernel = item if isinstance(item, tuple) else (item, 3)
            out = scaled(out, width)
            layers += [Conv2d(channels, out, kernel, 1, kernel // 2, dtype=dtype, rng=rng), ReLU()]
            channels = out
    features = Sequential(*layers)
    he_init(features, "fan_out", rng)
    return features


class VGG(Sequential):
    """VGG (module docstring): children ``features``, ``avgpool``, ``flatten``, ``classifier``."""

    def __init__(self, config: str = "D", num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 small_input: bool = False, dropout: float = 0.5, dtype=np.float32, rng=None):
        check_choice("VGG", "config", config, CONFIGS)
        check_counts(f"VGG({config})", num_classes, in_channels)
        width = check_width(f"VGG({config})", width)
        features = make_layers(config, in_channels, width, small_input, dtype, rng)
        last = scaled(512, width)
        pooled = 1 if small_input else 7
        hidden = scaled(4096, width)
        classifier = Sequential(
            Linear(last * pooled * pooled, hidden, dtype=dtype, rng=rng), ReLU(), Dropout(dropout, rng),
            Linear(hidden, hidden, dtype=dtype, rng=rng), ReLU(), Dropout(dropout, rng),
            Linear(hidden, num_classes, dtype=dtype, rng=rng))
        super().__init__(OrderedDict([
            ("features", features),
            ("avgpool", GlobalAvgPool2d() if small_input else AdaptiveAvgPool2d((7, 7))),
            ("flatten", Flatten()),
            ("classifier", classifier),
        ]))
        self.config, self.width, self.small_input = config, width, bool(small_input)


def vgg(config: str = "D", num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
        small_input: bool = False, dropout: float = 0.5, dtype=np.float32, rng=None) -> VGG:
    """VGG of configuration "A", "A-LRN", "B", "C", "D" or "E" (Table 1 of the paper)."""
    return VGG(config, num_classes, in_channels, width, small_input, dropout, dtype, rng)


def _named(config: str, depth: int):
    def constructor(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                    small_input: bool = False, dropout: float = 0.5, dtype=np.float32, rng=None) -> VGG:
        return VGG(config, num_classes, in_channels, width, small_input, dropout, dtype, rng)

    constructor.__name__ = constructor.__qualname__ = f"vgg{depth}"
    constructor.__doc__ = f"VGG-{depth}: configuration {config} (``vgg(config={config!r})``)."
    return constructor


vgg11, vgg13, vgg16, vgg19 = _named("A", 11), _named("B", 13), _named("D", 16), _named("E", 19)
