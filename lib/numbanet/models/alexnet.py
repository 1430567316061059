"""AlexNet, the lectures' simplified single-tower table (Krizhevsky et al. 2012; CS231n).

    input 3 x 227 x 227
    conv1  96 @ 11x11 /4, pad 0   -> 96 x 55 x 55     ReLU   (227 − 11)/4 + 1 = 55
    pool1  max 3x3 /2             -> 96 x 27 x 27
    norm1  LRN                    -> 96 x 27 x 27
    conv2 256 @ 5x5, pad 2        -> 256 x 27 x 27    ReLU
    pool2  max 3x3 /2             -> 256 x 13 x 13
    norm2  LRN                    -> 256 x 13 x 13
    conv3 384 @ 3x3, pad 1        -> 384 x 13 x 13    ReLU
    conv4 384 @ 3x3, pad 1        -> 384 x 13 x 13    ReLU
    conv5 256 @ 3x3, pad 1        -> 256 x 13 x 13    ReLU
    pool5  max 3x3 /2             -> 256 x 6 x 6
    fc6 9216 -> 4096, fc7 4096 -> 4096 (each: dropout before, ReLU after), fc8 4096 -> num_classes

62,378,344 parameters with 1000 classes (no grouped convolutions: the paper's two-GPU
split would halve conv2, conv4 and conv5).  LRN: size 5, α = 1e-4, β = 0.75, k = 2
(the paper's constants; numbanet's α is divided by the window size, as in PyTorch and Caffe).

``avgpool`` (adaptive average to 6 x 6) is the identity at 227 px and lets other input
sizes reach the same classifier, as in torchvision.

``small_input=True`` (8-32 px images): conv1 becomes 3x3 stride 1 pad 1, every max pool
gets padding 1 (so an 8 px map goes 8 -> 4 -> 2 -> 1 instead of vanishing), and
``avgpool`` is a global average, so fc6 sees 256·width features.  ``width`` multiplies
every channel count and the two hidden fully connected sizes.

``variant="torchvision"``: torchvision's ``alexnet`` (the one-GPU model of Krizhevsky's 2014
"One weird trick" paper), the layout its ImageNet weights need::

    conv1 64 @ 11x11 /4, pad 2 -> ReLU -> pool1 -> conv2 192 @ 5x5, pad 2 -> ReLU -> pool2
    -> conv3 384 -> conv4 256 -> conv5 256 (3x3, pad 1, each + ReLU) -> pool5
    avgpool (adaptive 6 x 6) -> classifier as above                       61,100,840 parameters

no LRN; 224 px inputs (224 -> 55 -> 27 -> 13 -> 6).  The children keep this module's names;
``numbanet.models.torch_names`` maps them to torchvision's ``features.0`` … ``classifier.6``.
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
from ._common import check_choice, check_counts, check_width, scaled

VARIANTS = ("paper", "torchvision")
# conv1 … conv5 output channels
_CHANNELS = {"paper": (96, 256, 384, 384, 256), "torchvision": (64, 192, 384, 256, 256)}


def _lrn() -> LocalResponseNorm:
    return LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)


class AlexNet(Sequential):
    """AlexNet (module docstring): children ``features``, ``avgpool``, ``flatten``, ``classifier``.

    features: conv1, relu1, pool1, norm1, conv2, relu2, pool2, norm2, conv3, relu3, conv4,
    relu4, conv5, relu5, pool5 (no norm1, norm2 in the torchvision variant); classifier:
    dropout6, fc6, relu6, dropout7, fc7, relu7, fc8.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 small_input: bool = False, dropout: float = 0.5, dtype=np.float32, rng=None,
                 variant: str = "paper"):
        check_counts("AlexNet", num_classes, in_channels)
        check_choice("AlexNet", "variant", variant, VARIANTS)
        if variant == "torchvision" and small_input:
            raise ValueError("AlexNet: variant='torchvision' is the 224 px ImageNet layout; "
                             "small_input=True needs variant='paper'")
        width = check_width("AlexNet", width)
        c1, c2, c3, c4, c5 = (scaled(c, width) for c in _CHANNELS[variant])
        hidden = scaled(4096, width)
        pool_pad = 1 if small_input else 0
        stem = (Conv2d(in_channels, c1, 3, 1, 1, dtype=dtype, rng=rng) if small_input
                else Conv2d(in_channels, c1, 11, 4, 0 if variant == "paper" else 2, dtype=dtype, rng=rng))
        lrn1, lrn2 = ([("norm1", _lrn())], [("norm2", _lrn())]) if variant == "paper" else ([], [])
        features = Sequential(OrderedDict([
            ("conv1", stem), ("relu1", ReLU()), ("pool1", MaxPool2d(3, 2, pool_pad)), *lrn1,
            ("conv2", Conv2d(c1, c2, 5, 1, 2, dtype=dtype, rng=rng)), ("relu2", ReLU()),
            ("pool2", MaxPool2d(3, 2, pool_pad)), *lrn2,
            ("conv3", Conv2d(c2, c3, 3, 1, 1, dtype=dtype, rng=rng)), ("relu3", ReLU()),
            ("conv4", Conv2d(c3, c4, 3, 1, 1, dtype=dtype, rng=rng)), ("relu4", ReLU()),
            ("conv5", Conv2d(c4, c5, 3, 1, 1, dtype=dtype, rng=rng)), ("relu5", ReLU()),
            ("pool5", MaxPool2d(3, 2, pool_pad)),
        ]))
        pooled = 1 if small_input else 6
        classifier = Sequential(OrderedDict([
            ("dropout6", Dropout(dropout, rng)), ("fc6", Linear(c5 * pooled * pooled, hidden, dtype=dtype, rng=rng)),
            ("relu6", ReLU()),
            ("dropout7", Dropout(dropout, rng)), ("fc7", Linear(hidden, hidden, dtype=dtype, rng=rng)),
            ("relu7", ReLU()),
            ("fc8", Linear(hidden, num_classes, dtype=dtype, rng=rng)),
        ]))
        super().__init__(OrderedDict([
            ("features", features),
            ("avgpool", GlobalAvgPool2d() if small_input else AdaptiveAvgPool2d((6, 6))),
            ("flatten", Flatten()),
            ("classifier", classifier),
        ]))
        self.width, self.small_input, self.variant = width, bool(small_input), variant


def alexnet(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, small_input: bool = False,
            dropout: float = 0.5, dtype=np.float32, rng=None, variant: str = "paper") -> AlexNet:
    """The lectures' AlexNet (227 x 227 inputs; ``small_input=True`` for 8-32 px images);
    ``variant="torchvision"``: torchvision's (64/192/384/256/256 channels, no LRN, 224 px)."""
    return AlexNet(num_classes, in_channels, width, small_input, dropout, dtype, rng, variant)
