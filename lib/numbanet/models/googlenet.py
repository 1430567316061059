r"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going deeper with convolutions", Table 1).

An Inception module runs four branches on the same input and concatenates them on channels:

    "0": 1x1 conv (#1x1)
    "1": 1x1 conv (#3x3 reduce) -> 3x3 conv pad 1 (#3x3)
    "2": 1x1 conv (#5x5 reduce) -> 5x5 conv pad 2 (#5x5)
    "3": 3x3 max pool stride 1 pad 1 -> 1x1 conv (pool proj)

every convolution followed by ReLU.  The network (224 x 224 input)::

    conv1 7x7/2 (64) -> maxpool 3x3/2 -> LRN -> conv2 1x1 (64) -> conv3 3x3 (192) -> LRN -> maxpool 3x3/2
    inception 3a, 3b -> maxpool -> 4a [aux1] 4b 4c 4d [aux2] 4e -> maxpool -> 5a, 5b
    global average pool -> dropout 0.4 -> fc 1024 -> num_classes

Auxiliary heads (training only), on the outputs of 4a (512 channels) and 4d (528)::

    avg pool 5x5/3 (14 -> 4) -> 1x1 conv 128 + ReLU -> fc 2048 -> 1024 + ReLU -> dropout 0.7 -> fc num_classes

(the 5x5/3 pool gives 4 x 4 only from 14-16 px maps, i.e. inputs of about 209-256 px: use
``small_input`` or ``aux_logits=False`` for other sizes).

Max pools use padding 1 where the Caffe model pools in ceil mode (same sizes: 112 -> 56 -> 28 -> 14 -> 7).
LRN: size 5, α = 1e-4, β = 0.75, k = 1 (Caffe's bvlc_googlenet); ``lrn=False`` drops it.

Forward and backward with the two side branches (x_4a, x_4d are the trunk's outputs there)::

    training:  returns (main, aux1, aux2) with aux1 = aux1(x_4a), aux2 = aux2(x_4d)
    eval:      returns main only
    backward((dmain, daux1, daux2)):
        d   = trunk_after_4d.backward(dmain)
        d  += aux2.backward(daux2)          # x_4d feeds both the trunk and aux2: gradients add
        d   = trunk_4b_to_4d.backward(d)
        d  += aux1.backward(daux1)
        dx  = trunk_up_to_4a.backward(d)

``GoogLeNetLoss``: total = CE(main) + 0.3·CE(aux1) + 0.3·CE(aux2); its backward returns the
three dlogits that ``GoogLeNet.backward`` takes.

Convolutions start from He's normal init (fan_in) with zero biases: without BatchNorm, PyTorch's
default init would shrink the signal ~√6-fold per layer over the net's 22 layers.

``width`` multiplies every channel count; ``small_input=True`` (8-32 px images) replaces
conv1 by a 3x3 stride-1 convolution and drops the first two max pools and the LRNs, and the
auxiliary heads pool adaptively to 4 x 4.

``variant="torchvision"``: the layout of torchvision's ``googlenet``, the one its ImageNet
weights need (load them with ``numbanet.models.from_torch``).  It differs from the paper in:

* every convolution is a ``BasicConv2d``: conv (no bias) -> BatchNorm (ε = 0.001) -> ReLU;
* the "5x5" branch is a 3x3 convolution (pad 1), a known slip kept for the weights' sake;
* no LRN; max pools run in ceil mode (``MaxPool2d(..., ceil_mode=True)``): 3x3/2 after conv1, conv3 and
  inception 3b, 2x2/2 after 4e (112 -> 56 -> 28 -> 14 -> 7 at 224 px, as the paper's, but the
  windows start at 0 instead of −1, so the values differ from the padded pools; the Inception
  pool branch's 3x3/1 pad-1 pool is in ceil mode there too, which changes nothing at stride 1);
* aux heads: adaptive average pool to 4 x 4 -> BasicConv2d 1x1 128 -> fc1 2048 -> 1024 + ReLU
  -> dropout 0.7 -> fc2 (children pool, conv, flatten, fc1, relu, dropout, fc2);
* dropout 0.2 before fc (the ``dropout`` default becomes 0.2);
* ``transform_input=True`` prepends ``TransformInput``, which turns an input normalised with
  the ImageNet mean/std into the (pixel − 0.5)/0.5 scaling the ported weights expect::

      y[:, c] = x[:, c]·(std_c / 0.5) + (mean_c − 0.5) / 0.5     (= (pixel − 0.5)/0.5)

  torchvision switches it on when it loads the ImageNet weights (its constructor's default is
  off, as here): pass ``transform_input=True`` to match ``googlenet(weights=...)``'s logits.

State-dict names match torchvision's except the Inception branches, "0" … "3" here and
``branch1`` … ``branch4`` there (``numbanet.models.torch_names``).  Ceil-mode pooling and
``TransformInput`` run on the CPU only.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._validate import as_float_array, check_dim, check_grad, check_ndim
from ..activation import ReLU
from ..container import Concat, Sequential
from ..conv import Conv2d
from ..data import imagenet
from ..device import is_cuda
from ..dropout import Dropout
from ..linear import Flatten, Linear
from ..loss import CrossEntropyLoss
from ..module import Module
from ..norm import BatchNorm2d, LocalResponseNorm
from ..pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, MaxPool2d
from ._common import check_choice, check_counts, check_width, he_init, scaled

VARIANTS = ("paper", "torchvision")

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per module
INCEPTION_TABLE = OrderedDict([
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
])


class ConvReLU(Sequential):
    """Conv2d followed by ReLU; children ``conv`` and ``relu``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dtype=np.float32, rng=None):
        super().__init__(OrderedDict([
            ("conv", Conv2d(in_channels, out_channels, kernel_size, stride, padding, dtype=dtype, rng=rng)),
            ("relu", ReLU()),
        ]))


class BasicConv2d(Sequential):
    """torchvision's GoogLeNet block: Conv2d (no bias: BN's β replaces it) -> BatchNorm2d (ε = 0.001)
    -> ReLU; children ``conv``, ``bn``, ``relu``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dtype=np.float32, rng=None):
        super().__init__(OrderedDict([
            ("conv", Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype,
                            rng=rng)),
            ("bn", BatchNorm2d(out_channels, eps=0.001, dtype=dtype)),
            ("relu", ReLU()),
        ]))


_CONV_BLOCK = {"paper": ConvReLU, "torchvision": BasicConv2d}


def _cpu_input(name: str, x, what: str, layout: str) -> np.ndarray:
    """x as a float array of 4 dims on the CPU; a CUDA device array gets a clear error."""
    x = as_float_array(name, x)
    if is_cuda(x):
        raise ValueError(f"{name}: {what} on the CPU only; got a CUDA device array")
    check_ndim(name, x, 4, layout)
    return x


# torchvision's transform_input: ImageNet-normalised input -> (pixel − 0.5)/0.5, per channel
_TRANSFORM_SCALE = tuple(s / 0.5 for s in imagenet.STD)
_TRANSFORM_SHIFT = tuple((m - 0.5) / 0.5 for m in imagenet.MEAN)


class TransformInput(Module):
    """torchvision GoogLeNet's ``transform_input`` (module docstring), CPU only.

    x (N, 3, H, W) -> y[:, c] = x[:, c]·scale_c + shift_c, scale_c = std_c/0.5,
    shift_c = (mean_c − 0.5)/0.5.  backward: dx = dy·scale.  No parameters.
    """

    def __init__(self):
        super().__init__()

    def _constants(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        return tuple(np.asarray(v, dtype).reshape(1, 3, 1, 1) for v in (_TRANSFORM_SCALE, _TRANSFORM_SHIFT))

    def forward(self, x: np.ndarray) -> np.ndarray:
        name = self.describe()
        x = _cpu_input(name, x, "runs", "(N, 3, H, W)")
        check_dim(name, x, 1, 3, "(N, 3, H, W)")
        scale, shift = self._constants(x.dtype)
        y = x * scale + shift
        self._save_for_backward(y.shape, y.dtype)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, dtype = self._saved()
        scale, _ = self._constants(dtype)
        return check_grad(self.describe(), dout, shape, dtype) * scale


class Inception(Concat):
    """Inception module (module docstring): branches "0" … "3" concatenated on channels.

    Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj (``out_channels``).  ``variant``
    "torchvision": BasicConv2d blocks and a 3x3 convolution in the "5x5" branch.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, dtype=np.float32, rng=None, variant: str = "paper"):
        check_choice("Inception", "variant", variant, VARIANTS)
        block = _CONV_BLOCK[variant]
        wide = 5 if variant == "paper" else 3
        super().__init__(
            block(in_channels, ch1x1, 1, dtype=dtype, rng=rng),
            Sequential(block(in_channels, ch3x3red, 1, dtype=dtype, rng=rng),
                       block(ch3x3red, ch3x3, 3, 1, 1, dtype=dtype, rng=rng)),
            Sequential(block(in_channels, ch5x5red, 1, dtype=dtype, rng=rng),
                       block(ch5x5red, ch5x5, wide, 1, wide // 2, dtype=dtype, rng=rng)),
            Sequential(MaxPool2d(3, 1, 1), block(in_channels, pool_proj, 1, dtype=dtype, rng=rng)),
        )
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj


class InceptionAux(Sequential):
    """Auxiliary classifier: children pool, conv (1x1, 128·width + ReLU), flatten, fc1, relu, dropout, fc2.

    ``variant`` "torchvision": the pool is always adaptive (4 x 4) and conv a BasicConv2d.
    """

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, small_input: bool = False,
                 dropout: float = 0.7, dtype=np.float32, rng=None, variant: str = "paper"):
        check_choice("InceptionAux", "variant", variant, VARIANTS)
        reduced, hidden = scaled(128, width), scaled(1024, width)
        adaptive = small_input or variant == "torchvision"
        super().__init__(OrderedDict([
            ("pool", AdaptiveAvgPool2d((4, 4)) if adaptive else AvgPool2d(5, 3)),
            ("conv", _CONV_BLOCK[variant](in_channels, reduced, 1, dtype=dtype, rng=rng)),
            ("flatten", Flatten()),
            ("fc1", Linear(reduced * 4 * 4, hidden, dtype=dtype, rng=rng)),
            ("relu", ReLU()),
            ("dropout", Dropout(dropout, rng)),
            ("fc2", Linear(hidden, num_classes, dtype=dtype, rng=rng)),
        ]))


_POOL_AFTER = {"inception3b": "maxpool3", "inception4e": "maxpool4"}


def _lrn() -> LocalResponseNorm:
    return LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class GoogLeNet(Module):
    """GoogLeNet (module docstring).  Children, in order: [transform], conv1, maxpool1, lrn1, conv2, conv3,
    lrn2, maxpool2, inception3a, inception3b, maxpool3, inception4a … 4e, maxpool4, inception5a, 5b,
    avgpool, dropout, fc, aux1, aux2 (pools/LRNs absent where ``small_input``/``lrn``/``variant`` drop
    them, aux heads absent when ``aux_logits=False``, transform present with ``transform_input``).

    forward(x): (N, C, H, W) -> (main, aux1, aux2) logits in training with aux heads, else main.
    backward(dout): dout = (dmain, daux1, daux2) after a forward that returned three outputs,
    or dmain alone (then the aux heads receive no gradient; so does an aux gradient given as None)
    -> dL/dx.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 width: float = 1.0, small_input: bool = False, dropout: float | None = None,
                 aux_dropout: float = 0.7, lrn: bool = True, dtype=np.float32, rng=None,
                 variant: str = "paper", transform_input: bool = False):
        super().__init__()
        check_counts("GoogLeNet", num_classes, in_channels)
        check_choice("GoogLeNet", "variant", variant, VARIANTS)
        torchvision = variant == "torchvision"
        if torchvision and small_input:
            raise ValueError("GoogLeNet: variant='torchvision' is the 224 px ImageNet layout; "
                             "small_input=True needs variant='paper'")
        if transform_input and (not torchvision or in_channels != 3):
            raise ValueError(f"GoogLeNet: transform_input needs variant='torchvision' and 3 input channels, "
                             f"got variant={variant!r}, in_channels={in_channels}")
        self.width = width = check_width("GoogLeNet", width)
        self.aux_logits, self.small_input = bool(aux_logits), bool(small_input)
        self.variant, self.transform_input = variant, bool(transform_input)
        block = _CONV_BLOCK[variant]
        c64, c192 = scaled(64, width), scaled(192, width)
        if transform_input:
            self.transform = TransformInput()
        if small_input:
            self.conv1 = block(in_channels, c64, 3, 1, 1, dtype=dtype, rng=rng)
        else:
            self.conv1 = block(in_channels, c64, 7, 2, 3, dtype=dtype, rng=rng)
            self.maxpool1 = MaxPool2d(3, 2, ceil_mode=True) if torchvision else MaxPool2d(3, 2, 1)
            if lrn and not torchvision:
                self.lrn1 = _lrn()
        self.conv2 = block(c64, c64, 1, dtype=dtype, rng=rng)
        self.conv3 = block(c64, c192, 3, 1, 1, dtype=dtype, rng=rng)
        if not small_input:
            if lrn and not torchvision:
                self.lrn2 = _lrn()
            self.maxpool2 = MaxPool2d(3, 2, ceil_mode=True) if torchvision else MaxPool2d(3, 2, 1)
        channels = c192
        for name, row in INCEPTION_TABLE.items():
            module = Inception(channels, *(scaled(c, width) for c in row), dtype=dtype, rng=rng, variant=variant)
            setattr(self, name, module)
            channels = module.out_channels
            if name in _POOL_AFTER:
                if torchvision:
                    setattr(self, _POOL_AFTER[name], MaxPool2d(2 if name == "inception4e" else 3, 2, ceil_mode=True))
                else:
                    setattr(self, _POOL_AFTER[name], MaxPool2d(3, 2, 1))
        self.avgpool = GlobalAvgPool2d(flatten=True)
        self.dropout = Dropout((0.2 if torchvision else 0.4) if dropout is None else dropout, rng)
        self.fc = Linear(channels, num_classes, dtype=dtype, rng=rng)
        # the trunk in three pieces: aux1 reads the output of the first, aux2 of the second
        trunk = list(self._modules)
        first, second = trunk.index("inception4a") + 1, trunk.index("inception4d") + 1
        self._stages = (tuple(trunk[:first]), tuple(trunk[first:second]), tuple(trunk[second:]))
        if self.aux_logits:
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, width, small_input,
                                     aux_dropout, dtype, rng, variant=variant)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, width, small_input,
                                     aux_dropout, dtype, rng, variant=variant)
        he_init(self, "fan_in", rng)

    def _run(self, stage: int, x: np.ndarray) -> np.ndarray:
        for name in self._stages[stage]:
            x = getattr(self, name)(x)
        return x

    def _run_backward(self, stage: int, dout: np.ndarray) -> np.ndarray:
        for name in reversed(self._stages[stage]):
            dout = getattr(self, name).backward(dout)
        return dout

    def forward(self, x: np.ndarray):
        with_aux = self.training and self.aux_logits
        aux = []
        for stage in range(3):
            x = self._run(stage, x)
            if with_aux and stage < 2:
                aux.append(getattr(self, f"aux{stage + 1}")(x))
        self._save_for_backward(with_aux, x.shape, x.dtype)
        return (x, *aux) if with_aux else x

    def backward(self, dout):
        with_aux, main_shape, dtype = self._saved()
        name = self.describe()
        if isinstance(dout, (tuple, list)):
            if not with_aux:
                raise ValueError(f"{name}.backward: forward returned the main logits only (eval mode or "
                                 f"aux_logits=False); pass their gradient alone, got {len(dout)} gradients")
            if len(dout) != 3:
                raise ValueError(f"{name}.backward: expected (dmain, daux1, daux2), got {len(dout)} gradients")
            dmain, *aux_grads = dout
        else:
            dmain, aux_grads = dout, [None, None]
        d = check_grad(name, dmain, main_shape, dtype)
        for stage in (2, 1, 0):
            if stage < 2 and aux_grads[stage] is not None:
                # the trunk's output here also fed aux head stage+1: the two gradients add
                d = d + getattr(self, f"aux{stage + 1}").backward(aux_grads[stage])
            d = self._run_backward(stage, d)
        return d

    def extra_repr(self) -> str:
        text = f"aux_logits={self.aux_logits}, width={self.width}, small_input={self.small_input}"
        if self.variant != "paper":
            text += f", variant={self.variant!r}, transform_input={self.transform_input}"
        return text


def googlenet(num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True, width: float = 1.0,
              small_input: bool = False, dropout: float | None = None, aux_dropout: float = 0.7, lrn: bool = True,
              dtype=np.float32, rng=None, variant: str = "paper", transform_input: bool = False) -> GoogLeNet:
    """GoogLeNet (Inception v1) for 224 x 224 images; ``small_input=True`` for 8-32 px images.

    ``variant="torchvision"``: torchvision's layout (BatchNorm, ceil-mode pools; module docstring),
    for its ImageNet weights, with ``transform_input=True`` as torchvision loads them.
    ``dropout`` (before fc) defaults to 0.4 (paper) or 0.2 (torchvision); ``lrn`` is paper-only.
    """
    return GoogLeNet(num_classes, in_channels, aux_logits, width, small_input, dropout, aux_dropout, lrn,
                     dtype, rng, variant, transform_input)


class GoogLeNetLoss(Module):
    """total = CE(main, t) + aux_weight·(CE(aux1, t) + CE(aux2, t)), aux_weight = 0.3 (the paper's).

    ``loss = crit(outputs, target)`` with outputs = (main, aux1, aux2) (training) or main alone
    (then total = CE(main)); ``crit.backward()`` returns the matching (dmain, daux1, daux2) or
    dmain, ready for ``GoogLeNet.backward``.  ``last_losses`` holds (real, aux1, aux2) (aux None
    without aux outputs) for logging.
    """

    def __init__(self, aux_weight: float = 0.3, label_smoothing: float = 0.0):
        super().__init__()
        self.aux_weight = float(aux_weight)
        self.main = CrossEntropyLoss(label_smoothing)
        self.aux1 = CrossEntropyLoss(label_smoothing)
        self.aux2 = CrossEntropyLoss(label_smoothing)
        self.last_losses = None

    def forward(self, outputs, target) -> float:
        if isinstance(outputs, (tuple, list)):
            if len(outputs) != 3:
                raise ValueError(f"{self.describe()}: expected (main, aux1, aux2) logits or main alone, "
                                 f"got {len(outputs)} outputs")
            real, aux1, aux2 = (crit(out, target) for crit, out in zip((self.main, self.aux1, self.aux2), outputs))
            self.last_losses = (real, aux1, aux2)
            self._save_for_backward(True,)
            return real + self.aux_weight * aux1 + self.aux_weight * aux2
        real = self.main(outputs, target)
        self.last_losses = (real, None, None)
        self._save_for_backward(False,)
        return real

    def backward(self, dout: float = 1.0):
        (with_aux,) = self._saved()
        dmain = self.main.backward(dout)
        if not with_aux:
            return dmain
        return (dmain, self.aux1.backward(self.aux_weight * dout), self.aux2.backward(self.aux_weight * dout))

    def extra_repr(self) -> str:
        return f"aux_weight={self.aux_weight}"
