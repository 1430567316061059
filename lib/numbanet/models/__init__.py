"""The classic convolutional networks, built from ``numbanet.nn`` layers.

Every constructor takes ``num_classes`` and ``in_channels`` (plus ``dtype`` and ``rng``).
The ImageNet-scale nets (alexnet, vgg*, googlenet, resnet18…152) also take ``width``
(a multiplier on channel counts, e.g. 0.25) and ``small_input=True`` (a small stem so
they train on 8-32 px images).  Architectures, parameter counts and the papers'
deviations are documented in each family's module.

``get_model(name, **kwargs)`` builds a model by name (``MODELS`` lists them).
"""
from __future__ import annotations

from .alexnet import AlexNet, alexnet
from .googlenet import ConvReLU, GoogLeNet, GoogLeNetLoss, Inception, InceptionAux, googlenet
from .lenet import LeNet5, lenet5
from .nin import NiN, mlpconv, nin
from .resnet import (BasicBlock, Bottleneck, ResNet, ZeroPadShortcut, projection, resnet18, resnet20,
                     resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, resnet110, resnet152)
from .vgg import VGG, make_layers, vgg, vgg11, vgg13, vgg16, vgg19

MODELS = {f.__name__: f for f in (
    lenet5, alexnet, vgg, vgg11, vgg13, vgg16, vgg19, nin, googlenet,
    resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, resnet110)}


def get_model(name: str, **kwargs):
    """``MODELS[name](**kwargs)``; an unknown name raises ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "get_model",
           "LeNet5", "AlexNet", "VGG", "NiN", "GoogLeNet", "GoogLeNetLoss", "Inception", "InceptionAux",
           "ConvReLU", "ResNet", "BasicBlock", "Bottleneck", "ZeroPadShortcut", "projection", "mlpconv", "make_layers",
           *MODELS]
