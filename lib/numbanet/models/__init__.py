"""The classic convolutional networks, built from ``numbanet.nn`` layers.

Every constructor takes ``num_classes`` and ``in_channels`` (plus ``dtype`` and ``rng``).
The ImageNet-scale nets (alexnet, vgg*, googlenet, resnet18…152) also take ``width``
(a multiplier on channel counts, e.g. 0.25) and ``small_input=True`` (a small stem so
they train on 8-32 px images).  Architectures, parameter counts and the papers'
deviations are documented in each family's module.

``get_model(name, **kwargs)`` builds a model by name (``MODELS`` lists them).

Pretrained ImageNet weights: ``from_torch(model, state_dict)`` loads a PyTorch/torchvision
state dict (tensors or NumPy arrays) into a numbanet model, and ``to_torch_state_dict(model)``
exports one under torchvision's names; ``torch_name_map(model)`` lists the renaming, which
the module ``numbanet.models.torch_names`` explains per family.  The layouts torchvision's
weights need: ``resnet50(variant="v1.5")`` (and 101, 152; ResNet-18/34 as they are),
``vgg16()`` (any VGG, as it is), ``alexnet(variant="torchvision")`` and
``googlenet(variant="torchvision", transform_input=True)``; the papers' versions stay the
default.  ``numbanet.data.imagenet`` has the matching preprocessing and the 1000 class names.
"""
from __future__ import annotations

from .alexnet import AlexNet, alexnet
from .googlenet import (BasicConv2d, ConvReLU, GoogLeNet, GoogLeNetLoss, Inception, InceptionAux,
                        TransformInput, googlenet)
from .lenet import LeNet5, lenet5
from .nin import NiN, mlpconv, nin
from .resnet import (BasicBlock, Bottleneck, ResNet, ZeroPadShortcut, projection, resnet18, resnet20,
                     resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, resnet110, resnet152)
from .vgg import VGG, make_layers, vgg, vgg11, vgg13, vgg16, vgg19
from .torch_names import from_torch, to_torch_state_dict, torch_name_map

MODELS = {f.__name__: f for f in (
    lenet5, alexnet, vgg, vgg11, vgg13, vgg16, vgg19, nin, googlenet,
    resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, resnet110)}


def get_model(name: str, **kwargs):
    """``MODELS[name](**kwargs)``; an unknown name raises ValueError listing the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "get_model", "from_torch", "to_torch_state_dict", "torch_name_map",
           "BasicConv2d", "TransformInput",
           "LeNet5", "AlexNet", "VGG", "NiN", "GoogLeNet", "GoogLeNetLoss", "Inception", "InceptionAux",
           "ConvReLU", "ResNet", "BasicBlock", "Bottleneck", "ZeroPadShortcut", "projection", "mlpconv", "make_layers",
           *MODELS]
