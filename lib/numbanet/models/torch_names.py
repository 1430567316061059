r"""Loading PyTorch / torchvision weights: state-dict names between numbanet and torchvision.

A state dict maps a dotted name, the path of child modules then the parameter or buffer,
to an array: ``layer1.0.bn1.running_var`` is the running variance of the BatchNorm ``bn1``
of block 0 of ``layer1``.  numbanet's models name their children as torchvision does, so
most names are the same; the arrays themselves never need a transpose (Conv2d weight
(out, in, kh, kw), Linear weight (out, in), BatchNorm weight, bias, running_mean,
running_var (C,) in both libraries).  Per family, numbanet name -> torchvision name::

    ResNet     identical: conv1.weight, bn1.*, layer<i>.<j>.conv1.weight, layer<i>.<j>.bn2.*,
               layer<i>.<j>.downsample.0.weight (1x1 conv), downsample.1.* (its BN), fc.*
    VGG        identical: features.<i>.* (the index counts ReLUs and pools too), classifier.{0,3,6}.*
    AlexNet    features.conv1 … conv5  -> features.0, 3, 6, 8, 10      (torchvision numbers its
               classifier.fc6, fc7, fc8 -> classifier.1, 4, 6           Sequential's children)
    GoogLeNet  inception<k>.<b>.… -> inception<k>.branch<b+1>.…  (numbanet's Concat names its
               branches 0 … 3, torchvision's Inception has branch1 … branch4); the rest is
               identical: conv1.conv.weight, conv1.bn.*, aux1.conv.conv.weight, aux1.fc1.*, fc.*
    others     identical

``num_batches_tracked`` (BatchNorm's step count) is ignored on import and exported, so
that ``torch_model.load_state_dict(..., strict=True)`` accepts the result.

Shapes and names catch most mismatches of architecture, not all.  What they cannot see:

* ResNet-50/101/152: the paper's bottleneck (``variant="v1"``, stride in conv1) and
  torchvision's (``"v1.5"``, stride in conv2) have the same parameters; ``from_torch`` warns
  when it loads into a v1 bottleneck ResNet.
* GoogLeNet: torchvision's ImageNet model rescales its input (``transform_input=True``), a
  setting without weights.

torchvision's layouts: ``resnet*(variant="v1.5")`` (BasicBlock nets: either), ``vgg*()``,
``alexnet(variant="torchvision")``, ``googlenet(variant="torchvision", transform_input=True)``.
"""
from __future__ import annotations

import re
import warnings
from collections import OrderedDict

import numpy as np

from ..module import Module
from .alexnet import AlexNet
from .googlenet import GoogLeNet
from .resnet import Bottleneck, ResNet

_IGNORED = "num_batches_tracked"

_ALEXNET = {"features.conv1": "features.0", "features.conv2": "features.3", "features.conv3": "features.6",
            "features.conv4": "features.8", "features.conv5": "features.10",
            "classifier.fc6": "classifier.1", "classifier.fc7": "classifier.4", "classifier.fc8": "classifier.6"}
_INCEPTION_BRANCH = re.compile(r"^(inception\d[a-z])\.([0-3])\.")


def _alexnet_name(name: str) -> str:
    module, _, leaf = name.rpartition(".")
    return f"{_ALEXNET.get(module, module)}.{leaf}"


def _googlenet_name(name: str) -> str:
    return _INCEPTION_BRANCH.sub(lambda m: f"{m[1]}.branch{int(m[2]) + 1}.", name)


def _renamer(model: Module):
    if isinstance(model, AlexNet):
        return _alexnet_name
    if isinstance(model, GoogLeNet):
        return _googlenet_name
    return lambda name: name


def _check_model(owner: str, model) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{owner}: expected a numbanet Module, got {type(model).__name__}")


def torch_name_map(model: Module) -> "OrderedDict[str, str]":
    """numbanet state-dict name -> torchvision's, for every parameter and buffer of ``model``."""
    _check_model("torch_name_map", model)
    rename = _renamer(model)
    names = [name for name, _ in model.named_parameters()] + [name for name, _ in model.named_buffers()]
    return OrderedDict((name, rename(name)) for name in names)


def _shapes(model: Module) -> dict:
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    shapes.update((name, tuple(b.shape)) for name, b in model.named_buffers())
    return shapes


def _as_numpy(value) -> np.ndarray:
    """A torch tensor (CPU or GPU, any float type) or anything array-like, as a NumPy array,
    without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        try:
            return value.numpy()
        except TypeError:  # bfloat16 / float16 variants NumPy lacks: widen first
            return value.float().numpy()
    return np.asarray(value)


def _hint(model: Module, missing: list, unexpected: list) -> str:
    """A likely cause, for the mismatches a reader meets first."""
    if isinstance(model, GoogLeNet):
        if missing and all(k.startswith("aux") for k in missing):
            return "the state_dict has no aux heads: build the model with aux_logits=False"
        if unexpected and all(k.startswith("aux") for k in unexpected):
            return "the state_dict has aux heads: build the model with aux_logits=True"
    if isinstance(model, (GoogLeNet, AlexNet)) and model.variant != "torchvision":
        constructor = type(model).__name__.lower()
        return f"torchvision's weights need {constructor}(variant='torchvision')"
    return ""


def from_torch(model: Module, state_dict) -> Module:
    """Copy a PyTorch / torchvision ``state_dict`` into ``model`` (in place) and return ``model``.

    state_dict: name -> torch tensor or NumPy array, with torchvision's names (module
    docstring), e.g. ``torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict()``.
    Values are converted to the model's dtype (and device); ``num_batches_tracked`` entries
    are ignored.  Nothing is copied unless everything fits: otherwise one ValueError lists
    every missing key, every unexpected key and every shape mismatch (both shapes).
    Needs no torch installation for NumPy values.
    """
    owner = f"from_torch({type(model).__name__})"
    _check_model(owner, model)
    if not hasattr(state_dict, "items"):
        raise TypeError(f"{owner}: expected a state_dict (a mapping name -> array), got {type(state_dict).__name__}")
    shapes = _shapes(model)
    expected = {torch_name: name for name, torch_name in torch_name_map(model).items()
                if not torch_name.endswith(_IGNORED)}
    incoming = {key: value for key, value in state_dict.items() if not key.endswith(_IGNORED)}
    missing = [key for key in expected if key not in incoming]
    unexpected = [key for key in incoming if key not in expected]
    arrays, wrong_shape = {}, []
    for key, value in incoming.items():
        if key in expected:
            name, array = expected[key], _as_numpy(value)
            if array.shape != shapes[name]:
                wrong_shape.append(f"{key}: the model expects {shapes[name]}, the state_dict has {array.shape}")
            arrays[name] = array
    if missing or unexpected or wrong_shape:
        lines = [f"{owner}: the state_dict does not fit the model "
                 f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong_shape)} wrong shape)"]
        if missing:
            lines.append(f"missing keys (the model has them, the state_dict does not): {', '.join(missing)}")
        if unexpected:
            lines.append(f"unexpected keys (in the state_dict, not in the model): {', '.join(unexpected)}")
        if wrong_shape:
            lines.append("wrong shapes: " + "; ".join(wrong_shape))
        hint = _hint(model, missing, unexpected)
        if hint:
            lines.append(f"hint: {hint}")
        raise ValueError("\n".join(lines))
    # the buffers the import leaves alone (num_batches_tracked) keep their values
    arrays.update((name, value) for name, value in model.named_buffers() if name not in arrays)
    model.load_state_dict(arrays)
    if isinstance(model, ResNet) and model.variant == "v1" and any(isinstance(m, Bottleneck) for m in model.modules()):
        warnings.warn(f"{owner}: this ResNet strides in the bottlenecks' conv1 (variant='v1', the paper's); "
                      "torchvision's ResNet-50/101/152 stride in conv2 (variant='v1.5') with the same shapes. "
                      "Build the model with variant='v1.5' for torchvision's weights.", UserWarning, stacklevel=2)
    return model


def to_torch_state_dict(model: Module) -> "OrderedDict[str, np.ndarray]":
    """``model``'s parameters and buffers (NumPy copies) under torchvision's names, the inverse
    of ``from_torch``: ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in ...})``."""
    _check_model("to_torch_state_dict", model)
    names = torch_name_map(model)
    return OrderedDict((names[name], array) for name, array in model.state_dict().items())
