"""numbanet.models: shapes, parameter counts, every network against an equivalent torch graph,
gradient checks, GoogLeNet's three-headed forward/backward and its loss, a few training steps.

Lecture-table numbers (AlexNet CONV1, VGG memory, GoogLeNet's per-module table, ResNet
FLOPs, ...) are checked through ``numbanet.summary`` in tests/test_summary.py.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import torch
import numbanet as nb
from numbanet import models, nn, optim
from numbanet.gradcheck import gradcheck
from numbanet.models.resnet import _ResidualBlock
from tests.oracle import TORCH_DTYPE, assert_close, load_torch_weights, tensor

DTYPES = pytest.mark.parametrize("dtype", [np.dtype(np.float64), np.dtype(np.float32)], ids=["f64", "f32"])


# -- torch mirrors: the same function and the same parameter names ------------------------------------
class TorchConcat(torch.nn.Module):
    def __init__(self, children):
        super().__init__()
        for name, child in children:
            self.add_module(name, child)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class TorchResidual(torch.nn.Module):
    """y = relu(body(x) + shortcut(x)) with our block's child names."""

    def __init__(self, body, children):
        super().__init__()
        self.body = body
        for name, child in children:
            self.add_module(name, child)
        if "downsample" not in self._modules:
            self.downsample = None

    def forward(self, x):
        out = x
        for name in self.body:
            out = getattr(self, name)(out)
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchZeroPad(torch.nn.Module):
    def __init__(self, out_planes, stride):
        super().__init__()
        self.out_planes, self.stride = out_planes, stride

    def forward(self, x):
        sub = x[:, :, ::self.stride, ::self.stride]
        return torch.nn.functional.pad(sub, (0, 0, 0, 0, 0, self.out_planes - x.shape[1]))


class TorchGoogLeNet(torch.nn.Module):
    def __init__(self, stages, children):
        super().__init__()
        self.stages = stages
        for name, child in children:
            self.add_module(name, child)

    def forward(self, x):
        aux = []
        for i, stage in enumerate(self.stages):
            for name in stage:
                x = getattr(self, name)(x)
            if self.training and hasattr(self, "aux1") and i < 2:
                aux.append(getattr(self, f"aux{i + 1}")(x))
        return (x, *aux) if aux else x


def mirror(module, dtype):
    """A torch module computing what ``module`` computes (dropout must have p = 0)."""
    t = TORCH_DTYPE[np.dtype(dtype)]
    children = [(name, mirror(child, dtype)) for name, child in module.named_children()]
    if isinstance(module, nn.Conv2d):
        return torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                               module.padding, bias=module.bias is not None, dtype=t)
    if isinstance(module, nn.BatchNorm2d):
        return torch.nn.BatchNorm2d(module.num_features, module.eps, module.momentum, dtype=t)
    if isinstance(module, nn.Linear):
        return torch.nn.Linear(module.in_features, module.out_features, dtype=t)
    if isinstance(module, nn.GlobalAvgPool2d):
        return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten() if module.flatten
                                   else torch.nn.Identity())
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return torch.nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, nn.MaxPool2d):
        return torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, nn.AvgPool2d):
        return torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                  count_include_pad=module.count_include_pad)
    if isinstance(module, nn.LocalResponseNorm):
        return torch.nn.LocalResponseNorm(module.size, module.alpha, module.beta, module.k)
    if isinstance(module, nn.Flatten):
        return torch.nn.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, nn.Dropout):
        assert module.p == 0, "mirror: build the model with dropout=0 to compare deterministically"
        return torch.nn.Identity()
    for ours, theirs in ((nn.ReLU, torch.nn.ReLU), (nn.Tanh, torch.nn.Tanh), (nn.Sigmoid, torch.nn.Sigmoid)):
        if isinstance(module, ours):
            return theirs()
    if isinstance(module, models.ZeroPadShortcut):
        return TorchZeroPad(module.out_planes, module.stride)
    if isinstance(module, nn.Concat):
        return TorchConcat(children)
    if isinstance(module, _ResidualBlock):
        return TorchResidual(module._body, children)
    if isinstance(module, models.GoogLeNet):
        return TorchGoogLeNet(module._stages, children)
    if isinstance(module, nn.Sequential):
        seq = torch.nn.Sequential()
        for name, child in children:
            seq.add_module(name, child)
        return seq
    raise TypeError(f"mirror: no torch equivalent for {type(module).__name__}")


def _compare(ours, x, dtype, rng, training=True, factor=1.0):
    """Forward (every output), dx, every parameter gradient and the running statistics vs torch."""
    ref = mirror(ours, dtype)
    load_torch_weights(ref, ours)
    ours.train(training)
    ref.train(training)
    ours.zero_grad()
    y, xt = ours(x), tensor(x)
    yt = ref(xt)
    ys, yts = (y, yt) if isinstance(y, tuple) else ((y,), (yt,))
    assert len(ys) == len(yts)
    for i, (a, b) in enumerate(zip(ys, yts)):
        assert a.dtype == dtype
        assert_close(a, b, dtype, f"forward output {i}", factor)
    douts = [rng.normal(size=a.shape).astype(dtype) for a in ys]
    dx = ours.backward(tuple(douts) if isinstance(y, tuple) else douts[0])
    torch.autograd.backward(yts, [torch.tensor(d) for d in douts])
    assert_close(dx, xt.grad, dtype, "dx", factor)
    ref_params = dict(ref.named_parameters())
    assert set(ref_params) == {name for name, _ in ours.named_parameters()}
    for name, p in ours.named_parameters():
        if ref_params[name].grad is None:  # a head that did not run (GoogLeNet's aux heads in eval mode)
            assert not p.grad.any(), name
        else:
            assert_close(p.grad, ref_params[name].grad, dtype, f"grad of {name}", factor)
    ref_state = ref.state_dict()
    for name, buffer in ours.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            assert_close(buffer, ref_state[name], dtype, name, factor)


# -- output shapes ---------------------------------------------------------------------------------
SMALL = {  # name: (constructor kwargs, input shape): 8-32 px inputs and width multipliers keep these fast
    "lenet5": (dict(), (1, 28, 28)),
    "lenet5-relu-32px": (dict(activation="relu", input_size=32, in_channels=3), (3, 32, 32)),
    "alexnet-small": (dict(width=1 / 16, small_input=True), (3, 8, 8)),
    "alexnet-227": (dict(width=1 / 32), (3, 227, 227)),
    "vgg11-small": (dict(width=1 / 16, small_input=True), (1, 8, 8)),
    "vgg13-small": (dict(width=1 / 16, small_input=True), (1, 12, 12)),
    "vgg16-small": (dict(width=1 / 16, small_input=True), (3, 32, 32)),
    "vgg19-small": (dict(width=1 / 16, small_input=True), (1, 8, 8)),
    "vgg-A-LRN-small": (dict(config="A-LRN", width=1 / 16, small_input=True), (1, 8, 8)),
    "vgg-C-small": (dict(config="C", width=1 / 16, small_input=True), (1, 8, 8)),
    "vgg16-32px": (dict(width=1 / 16), (3, 32, 32)),
    "nin": (dict(), (3, 32, 32)),
    "nin-8px": (dict(in_channels=1), (1, 8, 8)),
    "googlenet-small": (dict(width=1 / 16, small_input=True), (1, 8, 8)),
    "googlenet-224": (dict(width=1 / 16), (3, 224, 224)),
    "resnet18-small": (dict(width=1 / 16, small_input=True), (1, 8, 8)),
    "resnet34-small": (dict(width=1 / 16, small_input=True), (1, 8, 8)),
    "resnet50-small": (dict(width=1 / 16, small_input=True), (1, 16, 16)),
    "resnet101-small": (dict(width=1 / 16, small_input=True, variant="v1.5"), (1, 8, 8)),
    "resnet152-small": (dict(width=1 / 16, small_input=True), (1, 8, 8)),
    "resnet18-64px": (dict(width=1 / 16), (3, 64, 64)),
    "resnet20": (dict(), (3, 32, 32)),
    "resnet32-A": (dict(shortcut="A"), (1, 8, 8)),
    "resnet44": (dict(in_channels=1), (1, 8, 8)),
    "resnet56-A": (dict(in_channels=1, shortcut="A"), (1, 8, 8)),
    "resnet110": (dict(in_channels=1), (1, 8, 8)),
}


def _build(key, **extra):
    kwargs, shape = SMALL[key]
    name = key.split("-")[0]
    kwargs = dict(kwargs, in_channels=kwargs.get("in_channels", shape[0]), **extra)
    if name == "vgg" or "config" in kwargs:
        return models.vgg(**kwargs), shape
    return models.get_model(name, **kwargs), shape


@pytest.mark.parametrize("key", list(SMALL))
def test_output_shapes(key, rng):
    model, shape = _build(key, num_classes=7)
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    for training in (True, False):
        model.train(training)
        y = model(x)
        if isinstance(model, models.GoogLeNet) and training:
            assert [a.shape for a in y] == [(2, 7)] * 3
        else:
            assert y.shape == (2, 7) and y.dtype == np.float32


def test_every_constructor_is_listed():
    assert set(models.MODELS) == {"lenet5", "alexnet", "vgg", "vgg11", "vgg13", "vgg16", "vgg19", "nin",
                                  "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                  "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; choose one of: lenet5, alexnet"):
        models.get_model("resnet19")


# -- parameter counts -----------------------------------------------------------------------------
def test_parameter_counts_of_the_small_nets():
    assert models.lenet5().num_parameters() == 61_706  # 156 + 2,416 + 48,120 + 10,164 + 850
    assert models.nin().num_parameters() == 966_986
    # CIFAR ResNet-6n+2: conv 3x3 (3 -> 16) + BN, n BasicBlocks of 16/32/64 channels, fc 64 -> 10.
    for n, depth in ((3, 20), (5, 32), (7, 44), (9, 56), (18, 110)):
        blocks = sum(2 * (9 * w * w + 2 * w) * n for w in (16, 32, 64))
        first_convs = 9 * 32 * 32 - 9 * 16 * 32 + 9 * 64 * 64 - 9 * 32 * 64  # layer2/3 start from half width
        option_a = 9 * 3 * 16 + 32 + blocks - first_convs + 64 * 10 + 10
        projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # 1x1 conv + BN where the width doubles
        assert models.get_model(f"resnet{depth}", shortcut="A").num_parameters() == option_a
        assert models.get_model(f"resnet{depth}").num_parameters() == option_a + projections
    assert models.resnet20(shortcut="A").num_parameters() == 269_722  # the paper's "0.27M"


@pytest.mark.parametrize("depth, variant, count", [(18, "v1", 11_689_512), (50, "v1", 25_557_032),
                                                    (50, "v1.5", 25_557_032)])
def test_imagenet_resnet_parameter_counts(depth, variant, count):
    # torchvision's resnet18 / resnet50 counts; where the bottleneck strides does not change them
    # (ResNet-34/101/152 are counted with their FLOPs in test_summary.py)
    assert models.get_model(f"resnet{depth}", variant=variant).num_parameters() == count


def test_vgg_parameter_counts_table_2():
    # Table 2 of Simonyan & Zisserman: A, A-LRN 133M; B 133M; C 134M; D 138M; E 144M; all agree.
    # Every configuration shares the classifier 25,088 -> 4,096 -> 4,096 -> 1,000 (VGG-16's full
    # count, which includes it, is asserted on the built net in test_summary.py).
    classifier = (25_088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    expected = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952,
                "D": 138_357_544, "E": 143_667_240}
    published = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
    for config, count in expected.items():
        assert models.make_layers(config).num_parameters() + classifier == count
        assert round(count / 1e6) == published[config]
    # config C's 1x1 convolutions: 256·256 + 256 and twice 512·512 + 512 on top of B
    assert expected["C"] - expected["B"] == 65_792 + 2 * 262_656


def test_alexnet_and_googlenet_parameter_counts():
    # lectures' AlexNet, single tower: conv 34,944 + 614,656 + 885,120 + 1,327,488 + 884,992,
    # fc 37,752,832 + 16,781,312 + 4,097,000 (the paper's grouped version has 60.97M)
    assert models.alexnet().num_parameters() == 62_378_344
    # GoogLeNet without the auxiliary heads: 6,998,552 = 6,990,272 weights + 8,280 biases.  In the
    # paper's unit (K = 1024 weights, biases excluded) that is 6,826.4K; the paper's params column
    # adds up to 6,797.7K, read as "~6.8M" (and the decks' "5 million" is the paper's "12x fewer than
    # AlexNet").  The gap is conv1 (9.2K vs 2.7K) and the Inception rows the paper miscounts, see
    # test_summary.py::test_googlenet_table.  Each aux head adds 3.19M (fc1 2048 x 1024 dominates).
    full = models.googlenet()
    assert full.num_parameters() == 13_378_280
    trunk = models.googlenet(aux_logits=False)
    assert trunk.num_parameters() == 6_998_552
    assert sum(p.size for name, p in trunk.named_parameters() if name.endswith("weight")) == 6_990_272
    assert full.aux1.num_parameters() == 3_188_840 and full.aux2.num_parameters() == 3_190_888


def test_weight_layer_counts_match_the_names():
    """VGG-11 … VGG-19 and ResNet-18 … ResNet-152 are named after their weight layers on the main path."""
    def weight_layers(model):
        return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for name, m in model.named_modules()
                   if "downsample" not in name)

    for config, count in {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}.items():
        assert weight_layers(models.vgg(config, width=1 / 64, small_input=True)) == count
    for depth in (18, 34, 50, 101, 152):
        assert weight_layers(models.get_model(f"resnet{depth}", width=1 / 64)) == depth
    for depth in (20, 32, 44, 56, 110):
        assert weight_layers(models.get_model(f"resnet{depth}")) == depth


def test_torchvision_state_dict_names():
    """The names a later issue maps torchvision's checkpoints onto."""
    keys = set(models.resnet50(width=1 / 16).state_dict())
    assert {"conv1.weight", "bn1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
            "layer1.0.bn3.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
            "layer4.2.conv3.weight", "fc.weight", "fc.bias"} <= keys
    assert "layer1.1.downsample.0.weight" not in keys and "conv1.bias" not in keys
    keys = set(models.vgg16(width=1 / 16).state_dict())
    convs = {int(k.split(".")[1]) for k in keys if k.startswith("features.") and k.endswith(".weight")}
    assert convs == {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}
    assert {k for k in keys if k.startswith("classifier")} == {f"classifier.{i}.{p}" for i in (0, 3, 6)
                                                               for p in ("weight", "bias")}
    g = models.googlenet(width=1 / 16)
    assert {"conv1.conv.weight", "conv3.conv.weight", "inception3a.1.1.conv.weight", "inception5b.3.1.conv.bias",
            "aux1.conv.conv.weight", "aux1.fc1.weight", "aux2.fc2.bias", "fc.weight"} <= set(g.state_dict())


def test_bottleneck_stride_placement():
    v1 = models.resnet50(width=1 / 16, variant="v1").layer2[0]
    v15 = models.resnet50(width=1 / 16, variant="v1.5").layer2[0]
    assert v1.conv1.stride == (2, 2) and v1.conv2.stride == (1, 1)
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)
    assert v1.downsample[0].stride == (2, 2) and v1.downsample[0].kernel_size == (1, 1)


# -- every architecture against torch ---------------------------------------------------------------
TORCH_CASES = ["lenet5", "lenet5-relu-32px", "alexnet-small", "vgg-A-LRN-small", "vgg-C-small", "vgg16-32px",
               "nin-8px", "googlenet-small", "googlenet-224", "resnet50-small", "resnet18-64px", "resnet32-A"]


@DTYPES
@pytest.mark.parametrize("key", TORCH_CASES)
def test_model_matches_torch(key, dtype):
    rng = np.random.default_rng(len(key))
    kwargs = {"dropout": 0.0}
    if key.startswith("googlenet"):
        kwargs["aux_dropout"] = 0.0
    if key.startswith(("lenet", "resnet")):
        kwargs = {}
    model, shape = _build(key, num_classes=5, dtype=dtype, rng=rng, **kwargs)
    x = rng.normal(size=(2, *shape)).astype(dtype)
    # up to ~60 layers: float32 round-off compounds (BatchNorm in training divides by small batch
    # deviations), so the per-layer tolerance gets a depth allowance
    _compare(model, x, dtype, rng, training=True, factor=20)
    _compare(model, x, dtype, rng, training=False, factor=20)


# (N, H, W); BatchNorm in training normalises N·Ho·Wo values per channel, at least 4 here
# (with 2 or 3 the normalised values are nearly fixed and float32 round-off dominates dx)
image = st.tuples(st.integers(1, 3), st.integers(4, 7), st.integers(4, 7))


@DTYPES
@given(nhw=image, in_planes=st.integers(1, 4), planes=st.integers(1, 3), stride=st.integers(1, 2),
       kind=st.sampled_from(["basic", "v1", "v1.5", "basic-A"]), contiguous=st.booleans())
def test_residual_blocks_match_torch(dtype, nhw, in_planes, planes, stride, kind, contiguous):
    rng = np.random.default_rng(sum(nhw) + 10 * in_planes + planes + stride)
    n, h, w = nhw
    block_type = models.BasicBlock if kind.startswith("basic") else models.Bottleneck
    out_planes = planes * block_type.expansion
    if kind == "basic-A":
        in_planes = min(in_planes, out_planes)
    downsample = None
    if stride != 1 or in_planes != out_planes:
        downsample = (models.ZeroPadShortcut(in_planes, out_planes, stride) if kind == "basic-A"
                      else models.projection(in_planes, out_planes, stride, dtype, rng))
    extra = {} if block_type is models.BasicBlock else {"variant": kind}
    block = block_type(in_planes, planes, stride, downsample, dtype=dtype, rng=rng, **extra)
    x = rng.normal(size=(n, in_planes, w, h)).astype(dtype)
    x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)) if contiguous else x.transpose(0, 1, 3, 2)
    _compare(block, x, dtype, rng, training=True, factor=5)  # 5-8 layers deep
    _compare(block, x, dtype, rng, training=False, factor=5)


@DTYPES
@given(nhw=image, in_channels=st.integers(1, 4), widths=st.lists(st.integers(1, 3), min_size=6, max_size=6))
def test_inception_matches_torch(dtype, nhw, in_channels, widths):
    rng = np.random.default_rng(sum(nhw) + sum(widths))
    n, h, w = nhw
    module = models.Inception(in_channels, *widths, dtype=dtype, rng=rng)
    assert module.out_channels == widths[0] + widths[2] + widths[4] + widths[5]
    _compare(module, rng.normal(size=(n, in_channels, h, w)).astype(dtype), dtype, rng)


# -- gradient checks (float64) ---------------------------------------------------------------------
def _gradcheck(model, x, rng, params=4, max_checks=30):
    """Centred differences of L = Σ R·y (every output) for x and a few parameter tensors."""
    y = model(x)
    outputs = y if isinstance(y, tuple) else (y,)
    weights = [rng.normal(size=a.shape) for a in outputs]
    model.zero_grad()
    dx = model.backward(tuple(weights) if isinstance(y, tuple) else weights[0])
    named = list(model.named_parameters())
    chosen = [named[i] for i in sorted(rng.choice(len(named), size=min(params, len(named)), replace=False))]

    def loss(*_):
        out = model(x)
        return sum(float(np.sum(w * a)) for w, a in zip(weights, out if isinstance(out, tuple) else (out,)))

    gradcheck(loss, [x, *[p.data for _, p in chosen]], [dx, *[p.grad for _, p in chosen]], max_checks=max_checks)


@pytest.mark.parametrize("kind", ["basic", "basic-A", "v1", "v1.5"])
def test_residual_block_gradcheck(kind, rng):
    block_type = models.BasicBlock if kind.startswith("basic") else models.Bottleneck
    out_planes = 3 * block_type.expansion
    downsample = (models.ZeroPadShortcut(2, out_planes, 2) if kind == "basic-A"
                  else models.projection(2, out_planes, 2, np.float64, rng))
    extra = {} if block_type is models.BasicBlock else {"variant": kind}
    block = block_type(2, 3, 2, downsample, dtype=np.float64, rng=rng, **extra)
    _gradcheck(block, rng.normal(size=(2, 2, 5, 4)), rng, params=len(list(block.parameters())))


def test_inception_gradcheck(rng):
    module = models.Inception(3, 2, 2, 3, 1, 2, 2, dtype=np.float64, rng=rng)
    _gradcheck(module, rng.normal(size=(2, 3, 4, 5)), rng, params=len(list(module.parameters())), max_checks=20)


def test_googlenet_end_to_end_gradcheck(rng):
    model = models.googlenet(4, 1, width=1 / 16, small_input=True, dropout=0.0, aux_dropout=0.0,
                             dtype=np.float64, rng=rng)
    _gradcheck(model.train(), rng.normal(size=(2, 1, 8, 8)), rng, params=6, max_checks=12)


def test_resnet_end_to_end_gradcheck(rng):
    model = models.resnet50(3, 1, width=1 / 16, small_input=True, dtype=np.float64, rng=rng)
    _gradcheck(model.train(), rng.normal(size=(2, 1, 16, 16)), rng, params=6, max_checks=12)


# -- GoogLeNet: train/eval outputs, routing of the three gradients, the loss -------------------------
def _tiny_googlenet(rng, **kwargs):
    return models.googlenet(3, 1, width=1 / 16, small_input=True, dropout=0.0, aux_dropout=0.0,
                            dtype=np.float64, rng=rng, **kwargs)


def test_googlenet_train_and_eval_outputs(rng):
    model = _tiny_googlenet(rng)
    x = rng.normal(size=(2, 1, 8, 8))
    with nb.no_grad():  # a training forward that is not differentiated, so the eval one below is
        main, aux1, aux2 = model.train()(x)
    assert main.shape == aux1.shape == aux2.shape == (2, 3)
    evaluated = model.eval()(x)
    np.testing.assert_allclose(evaluated, main)  # no dropout and no BN: eval = training's main output
    with pytest.raises(ValueError, match=r"GoogLeNet\(aux_logits=True, width=0.0625, small_input=True\).backward: "
                                         r"forward returned the main logits only .* got 3 gradients"):
        model.backward((main, aux1, aux2))
    assert model.backward(np.ones_like(main)).shape == x.shape
    plain = _tiny_googlenet(rng, aux_logits=False)
    assert isinstance(plain.train()(x), np.ndarray) and not hasattr(plain, "aux1")
    model.train()(x)
    with pytest.raises(ValueError, match=r"expected \(dmain, daux1, daux2\), got 2 gradients"):
        model.backward((main, aux1))
    with pytest.raises(ValueError, match=r"backward: expected dout of shape \(2, 3\)"):
        model.backward((main[:1], aux1, aux2))


def test_googlenet_backward_sums_the_three_paths(rng):
    """dx is linear in (dmain, daux1, daux2): each head's contribution adds at its branch point."""
    model = _tiny_googlenet(rng).train()
    x = rng.normal(size=(2, 1, 8, 8))
    grads = [rng.normal(size=(2, 3)) for _ in range(3)]
    zero = np.zeros((2, 3))

    def dx_and_aux_grads(dmain, daux1, daux2):
        model(x)
        model.zero_grad()
        dx = model.backward((dmain, daux1, daux2))
        return dx, model.aux1.fc2.weight.grad.copy(), model.conv1.conv.weight.grad.copy()

    together = dx_and_aux_grads(*grads)
    parts = [dx_and_aux_grads(*[g if i == j else zero for j, g in enumerate(grads)]) for i in range(3)]
    for k in range(3):
        np.testing.assert_allclose(together[k], sum(p[k] for p in parts), rtol=1e-10, atol=1e-12)
    assert not parts[0][1].any() and not parts[2][1].any()  # aux1's head only learns from aux1's loss
    model(x)
    model.zero_grad()
    np.testing.assert_allclose(model.backward(grads[0]), parts[0][0], rtol=1e-10, atol=1e-12)  # main only


def test_googlenet_loss(rng):
    outputs = tuple(rng.normal(size=(4, 5)) for _ in range(3))
    target = np.array([0, 4, 2, 2])
    crit = models.GoogLeNetLoss()
    total = crit(outputs, target)
    separate = [nn.CrossEntropyLoss()(o, target) for o in outputs]
    assert crit.last_losses == pytest.approx(separate)
    assert total == pytest.approx(separate[0] + 0.3 * separate[1] + 0.3 * separate[2])
    dmain, daux1, daux2 = crit.backward()
    for d, out, weight in ((dmain, outputs[0], 1.0), (daux1, outputs[1], 0.3), (daux2, outputs[2], 0.3)):
        ref = nn.CrossEntropyLoss()
        ref(out, target)
        np.testing.assert_allclose(d, weight * ref.backward())
    assert crit(outputs[0], target) == pytest.approx(separate[0])
    assert isinstance(crit.backward(), np.ndarray)
    with pytest.raises(ValueError, match=r"GoogLeNetLoss\(aux_weight=0.3\): expected \(main, aux1, aux2\) logits "
                                         r"or main alone, got 2 outputs"):
        crit(outputs[:2], target)


# -- a few training steps lower the loss ------------------------------------------------------------
@pytest.mark.parametrize("key", ["lenet5", "googlenet-small", "resnet20"])
def test_training_steps_lower_the_loss(key):
    rng = np.random.default_rng(7)
    model, shape = _build(key, num_classes=4, rng=rng, **({"width": 1 / 8} if key.startswith("googlenet") else {}))
    if key == "resnet20":
        shape = (3, 8, 8)
    x = rng.normal(size=(16, *shape)).astype(np.float32)
    target = rng.integers(0, 4, size=16)
    crit = models.GoogLeNetLoss() if isinstance(model, models.GoogLeNet) else nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        losses.append(crit(model(x), target))
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    assert losses[-1] < 0.8 * losses[0], losses


# -- bad arguments ----------------------------------------------------------------------------------
def test_bad_arguments():
    with pytest.raises(ValueError, match=r"VGG: config must be one of \['A', 'A-LRN', 'B', 'C', 'D', 'E'\], got 'F'"):
        models.vgg("F")
    with pytest.raises(ValueError, match=r"LeNet5: activation must be one of \['tanh', 'sigmoid', 'relu'\], "
                                         r"got 'gelu'"):
        models.lenet5(activation="gelu")
    with pytest.raises(ValueError, match=r"LeNet5: input_size must be an int >= 12"):
        models.lenet5(input_size=8)
    with pytest.raises(ValueError, match=r"variant must be one of \['v1', 'v1.5'\], got 'v2'"):
        models.resnet50(variant="v2")
    with pytest.raises(ValueError, match=r"shortcut must be one of \['A', 'B'\], got 'C'"):
        models.resnet20(shortcut="C")
    with pytest.raises(ValueError, match=r"GoogLeNet: width must be a positive number .* got 0"):
        models.googlenet(width=0)
    with pytest.raises(ValueError, match=r"AlexNet: num_classes must be a positive int, got 0"):
        models.alexnet(num_classes=0)
    with pytest.raises(ValueError, match=r"NiN: in_channels must be a positive int, got 1.5"):
        models.nin(in_channels=1.5)
    block = models.BasicBlock(2, 3, 1, None)
    with pytest.raises(ValueError, match=r"BasicBlock\(\): residual shape \(1, 3, 4, 4\) does not match the "
                                         r"shortcut's \(1, 2, 4, 4\); a block that changes stride or channels "
                                         r"needs a downsample"):
        block(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"Bottleneck\(\).backward called before forward"):
        models.Bottleneck(4, 1).backward(np.zeros((1, 4, 2, 2), np.float32))
