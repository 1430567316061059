r"""Residual networks (He, Zhang, Ren & Sun 2015): ImageNet ResNet-18/34/50/101/152 and CIFAR ResNet-6n+2.

A residual block computes y = ReLU(F(x) + shortcut(x)), with batch normalisation after
every convolution (convolutions have no bias: BN's β replaces it)::

    BasicBlock (18, 34):   F = conv3x3(stride s) -> BN -> ReLU -> conv3x3 -> BN
    Bottleneck (50+):      F = conv1x1 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv1x1 (x4 channels) -> BN

shortcut = identity, or where the shape changes (stride 2 or more channels) a projection
``downsample`` = 1x1 conv with stride s -> BN (option B of the paper).  Backward: the sum
sends dy to both paths and x feeds both, so with d = ReLU'·dy::

    dx = F.backward(d) + (d  or  downsample.backward(d))

Where the bottleneck strides: ``variant="v1"`` (the paper, default) in the first 1x1
convolution; ``variant="v1.5"`` (torchvision, Caffe2) in the 3x3, which costs more
multiply-adds (ResNet-50: 3.86 G vs 4.09 G at 224 px) for the same parameters.

ImageNet layout (224 x 224 input; Table 1)::

    conv1 7x7/2, 64 -> BN -> ReLU -> maxpool 3x3/2 (pad 1)          112 -> 56
    layer1 .. layer4: blocks of width 64, 128, 256, 512, the first block of layer2..4 stride 2
    global average pool -> fc (512 or 2048 -> num_classes)
    blocks per layer: 18: 2 2 2 2   34: 3 4 6 3   50: 3 4 6 3   101: 3 4 23 3   152: 3 8 36 3

CIFAR layout (32 x 32 input; Section 4.2): conv 3x3 16 -> BN -> ReLU, three layers of n
BasicBlocks of width 16, 32, 64 (stride 2 at layer2, layer3), global average pool, fc:
6n + 2 weight layers (n = 3, 5, 7, 9, 18 for ResNet-20/32/44/56/110).  The paper's CIFAR
nets use shortcut option A, a parameter-free identity that subsamples and pads the new
channels with zeros (``shortcut="A"``, 269,722 parameters for ResNet-20); the default here is
option B, the projection (272,474 for ResNet-20).

``width`` multiplies every channel count; ``small_input=True`` (8-32 px images) replaces
the ImageNet stem by a 3x3 stride-1 convolution without the max pool.  Convolution
weights start from He's normal init (fan_out, as torchvision); BN γ = 1, β = 0.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._validate import as_float_array, check_grad, check_ndim
from ..activation import ReLU, relu_backward
from ..container import Sequential, run_chain, run_chain_backward
from ..conv import Conv2d
from ..linear import Linear
from ..module import Module
from ..kernels import backend
from ..norm import BatchNorm2d, _BatchNorm
from ..pooling import GlobalAvgPool2d, MaxPool2d
from ._common import check_choice, check_counts, check_width, he_init, scaled

VARIANTS = ("v1", "v1.5")
SHORTCUTS = ("A", "B")


class _ResidualBlock(Module):
    """y = ReLU(F(x) + shortcut(x)); F runs the children named in ``_body``, shortcut is
    ``downsample`` (None: identity).

    Fused passes (``numbanet.container.run_chain``; bit for bit the unfused layers): each
    BatchNorm -> ReLU inside F runs as one pass, and F's last BatchNorm, the residual add and
    the final ReLU run as one, ``bn(h, residual=shortcut(x))``.  Backward then applies the final
    ReLU's derivative once, to the gradient both paths share.
    """

    _body: tuple[str, ...]
    expansion: int

    def forward(self, x: np.ndarray) -> np.ndarray:
        body = [getattr(self, name) for name in self._body]
        fuse_tail = _BatchNorm.fuses_relu(body[-1], self.relu)
        out, fused = run_chain(body[:-1] if fuse_tail else body, x)
        skip = x if self.downsample is None else self.downsample(x)
        if out.shape != skip.shape:  # before the fused tail: its output has the body's shape
            raise ValueError(f"{self.describe()}: residual shape {out.shape} does not match the shortcut's "
                             f"{skip.shape}; a block that changes stride or channels needs a downsample")
        if fuse_tail:
            y = body[-1](out, residual=skip)
        else:
            y = self.relu(backend(out).container.add(out, skip))
        self._save_for_backward(y, fused, fuse_tail)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y, fused, fuse_tail = self._saved()
        dout = check_grad(self.describe(), dout, y.shape, y.dtype, like=y)
        body = [getattr(self, name) for name in self._body]
        if fuse_tail:
            d = relu_backward(dout, y)  # y > 0 exactly where the ReLU's input was > 0
            dx = body[-1].backward(d)
            body = body[:-1]
        else:
            d = dx = self.relu.backward(dout)
        dx_skip = d if self.downsample is None else self.downsample.backward(d)  # reverse of forward's order
        dx = run_chain_backward(body, fused, dx)
        return backend(dx).container.add(dx, dx_skip)


class BasicBlock(_ResidualBlock):
    """conv1 (3x3, stride) -> bn1 -> relu1 -> conv2 (3x3) -> bn2, + shortcut, -> relu.

    in_planes -> planes channels (``expansion`` = 1).
    """

    expansion = 1
    _body = ("conv1", "bn1", "relu1", "conv2", "bn2")

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: Module | None = None,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.conv1 = Conv2d(in_planes, planes, 3, stride, 1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, 1, 1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.downsample = downsample
        self.relu = ReLU()


class Bottleneck(_ResidualBlock):
    """conv1 (1x1) -> bn1 -> relu1 -> conv2 (3x3) -> bn2 -> relu2 -> conv3 (1x1) -> bn3, + shortcut, -> relu.

    in_planes -> 4·planes channels (``expansion`` = 4).  The stride sits in conv1
    (``variant="v1"``, the paper) or conv2 (``"v1.5"``, torchvision).
    """

    expansion = 4
    _body = ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3")

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: Module | None = None,
                 variant: str = "v1", dtype=np.float32, rng=None):
        super().__init__()
        check_choice("Bottleneck", "variant", variant, VARIANTS)
        stride1, stride3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = Conv2d(in_planes, planes, 1, stride1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, stride3, 1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.relu2 = ReLU()
        self.conv3 = Conv2d(planes, planes * self.expansion, 1, bias=False, dtype=dtype, rng=rng)
        self.bn3 = BatchNorm2d(planes * self.expansion, dtype=dtype)
        self.downsample = downsample
        self.relu = ReLU()
        self.variant = variant


def projection(in_planes: int, out_planes: int, stride: int, dtype=np.float32, rng=None) -> Sequential:
    """Option B shortcut: 1x1 conv (stride, no bias) -> BN; children "0", "1" as torchvision's downsample."""
    return Sequential(Conv2d(in_planes, out_planes, 1, stride, bias=False, dtype=dtype, rng=rng),
                      BatchNorm2d(out_planes, dtype=dtype))


class ZeroPadShortcut(Module):
    """Option A shortcut: y[:, :C] = x[:, :, ::s, ::s], the extra out_planes − C channels zero.

    Parameter-free.  Backward: dx[:, :, ::s, ::s] = dy[:, :C], zero elsewhere.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"ZeroPadShortcut: out_planes ({out_planes}) must be >= in_planes ({in_planes})")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: np.ndarray) -> np.ndarray:
        name = self.describe()
        x = as_float_array(name, x)
        check_ndim(name, x, 4, f"(N, {self.in_planes}, H, W)")
        if x.shape[1] != self.in_planes:
            raise ValueError(f"{name}: expected input of shape (N, {self.in_planes}, H, W), got {x.shape}")
        s = self.stride
        sub = x[:, :, ::s, ::s]
        y = np.zeros((x.shape[0], self.out_planes, *sub.shape[2:]), x.dtype)
        y[:, :self.in_planes] = sub
        self._save_for_backward(x.shape, y.shape, y.dtype)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_shape, y_shape, dtype = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, dtype)
        dx = np.zeros(x_shape, dtype)
        dx[:, :, ::self.stride, ::self.stride] = dout[:, :self.in_planes]
        return dx

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class ResNet(Sequential):
    """ResNet (module docstring): children conv1, bn1, relu, [maxpool], layer1 … layerK, avgpool, fc
    (torchvision's names; blocks are ``layer<i>.<j>``)."""

    def __init__(self, block: type, layers, num_classes: int = 1000, in_channels: int = 3,
                 widths=(64, 128, 256, 512), width: float = 1.0, small_input: bool = False,
                 variant: str = "v1", shortcut: str = "B", dtype=np.float32, rng=None):
        owner = f"ResNet({block.__name__}, {list(layers)})"
        check_counts(owner, num_classes, in_channels)
        width = check_width(owner, width)
        check_choice(owner, "variant", variant, VARIANTS)
        check_choice(owner, "shortcut", shortcut, SHORTCUTS)
        stem = scaled(widths[0], width)
        children = [("conv1", Conv2d(in_channels, stem, 3, 1, 1, bias=False, dtype=dtype, rng=rng) if small_input
                     else Conv2d(in_channels, stem, 7, 2, 3, bias=False, dtype=dtype, rng=rng)),
                    ("bn1", BatchNorm2d(stem, dtype=dtype)),
                    ("relu", ReLU())]
        if not small_input:
            children.append(("maxpool", MaxPool2d(3, 2, 1)))
        in_planes = stem
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            planes = scaled(planes, width)
            stage = []
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                out_planes = planes * block.expansion
                downsample = None
                if stride != 1 or in_planes != out_planes:
                    downsample = (ZeroPadShortcut(in_planes, out_planes, stride) if shortcut == "A"
                                  else projection(in_planes, out_planes, stride, dtype, rng))
                extra = {"variant": variant} if block is Bottleneck else {}
                stage.append(block(in_planes, planes, stride, downsample, dtype=dtype, rng=rng, **extra))
                in_planes = out_planes
            children.append((f"layer{i + 1}", Sequential(*stage)))
        children += [("avgpool", GlobalAvgPool2d(flatten=True)),
                     ("fc", Linear(in_planes, num_classes, dtype=dtype, rng=rng))]
        super().__init__(OrderedDict(children))
        he_init(self, "fan_out", rng)
        self.width, self.small_input, self.variant, self.shortcut = width, bool(small_input), variant, shortcut


_IMAGENET = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
             101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}


def _imagenet(depth: int):
    block, layers = _IMAGENET[depth]

    def constructor(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                    small_input: bool = False, variant: str = "v1", dtype=np.float32, rng=None) -> ResNet:
        return ResNet(block, layers, num_classes, in_channels, width=width, small_input=small_input,
                      variant=variant, dtype=dtype, rng=rng)

    constructor.__name__ = constructor.__qualname__ = f"resnet{depth}"
    constructor.__doc__ = (f"ResNet-{depth} ({block.__name__}s {list(layers)}) for 224 x 224 images; "
                           f"``small_input=True`` for 8-32 px; ``variant`` 'v1' (paper) or 'v1.5'.")
    return constructor


def _cifar(depth: int):
    n = (depth - 2) // 6

    def constructor(num_classes: int = 10, in_channels: int = 3, shortcut: str = "B",
                    dtype=np.float32, rng=None) -> ResNet:
        return ResNet(BasicBlock, (n, n, n), num_classes, in_channels, widths=(16, 32, 64), small_input=True,
                      shortcut=shortcut, dtype=dtype, rng=rng)

    constructor.__name__ = constructor.__qualname__ = f"resnet{depth}"
    constructor.__doc__ = (f"CIFAR ResNet-{depth} (6n+2, n = {n}; 16/32/64 channels) for 32 x 32 images; "
                           f"``shortcut`` 'B' (projection, default) or 'A' (zero padding, the paper's).")
    return constructor


resnet18, resnet34, resnet50, resnet101, resnet152 = (_imagenet(d) for d in (18, 34, 50, 101, 152))
resnet20, resnet32, resnet44, resnet56, resnet110 = (_cifar(d) for d in (20, 32, 44, 56, 110))
