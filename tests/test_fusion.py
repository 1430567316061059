"""Fused passes: BatchNorm -> ReLU in a Sequential, and a residual block's BN + shortcut -> ReLU tail.

The fused path must be the separate layers bit for bit (forward, dx, every gradient and running
statistic), and match PyTorch; anything that is not numbanet's own BatchNorm and ReLU stays unfused.
"""
import copy

import numba
import numpy as np
import pytest
import torch

from numbanet import models, nn
from numbanet.models.resnet import BasicBlock, Bottleneck, projection
from numbanet.norm import _BatchNorm
from tests.test_norm import check_against_torch, make_input, randomize


class PlainReLU(nn.ReLU):
    """The same function as nn.ReLU, but a subclass: never fused."""


def unfused(module):
    """A deep copy of ``module`` whose ReLUs are ``PlainReLU`` (same parameters and buffers)."""
    twin = copy.deepcopy(module)
    for parent in twin.modules():
        for name, child in list(parent._modules.items()):
            if type(child) is nn.ReLU:
                setattr(parent, name, PlainReLU())
    return twin


def run_step(module, x, dy, train):
    module.train(train)
    y = module(x)
    dx = module.backward(dy)
    return y, dx


def assert_bitwise_equal(fused, separate, x, rng, train):
    y = fused.train(train)(x)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx = fused.backward(dy)
    y2, dx2 = run_step(separate, x, dy, train)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, dx2)
    for (name, p), (_, q) in zip(fused.named_parameters(), separate.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
    for (name, a), (_, b) in zip(fused.named_buffers(), separate.named_buffers()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def boundary_input(rng, shape, dtype):
    """Random x whose channel 0 holds -1, 0, 1 repeated: x̂ = 0 exactly there, so γ·x̂ + β = β."""
    x = rng.standard_normal(shape).astype(dtype)
    x[:, 0] = np.resize(np.array([-1.0, 0.0, 1.0], dtype), x[:, 0].shape)
    return x


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_relu_in_a_sequential_is_fused_and_matches_torch(train, dtype, rng):
    x = make_input(rng, (4, 3, 5, 6), dtype)
    ours = nn.Sequential(randomize(nn.BatchNorm2d(3, momentum=0.3, dtype=dtype), rng), nn.ReLU())
    theirs = torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.3), torch.nn.ReLU())
    check_against_torch(ours, theirs, x, rng, train)
    assert ours[1]._caches.status == "never"  # the ReLU ran inside the BatchNorm's pass


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("beta0", [0.0, 1e-45, -1e-45], ids=["zero", "tiny+", "tiny-"])
def test_fused_batchnorm_relu_is_the_separate_layers_bit_for_bit(train, beta0, dtype, rng):
    bn = randomize(nn.BatchNorm2d(3, dtype=dtype), rng)
    bn.weight.data[0], bn.bias.data[0] = 1.0, beta0  # outputs exactly β (0, or the smallest subnormal)
    fused = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=dtype), bn, nn.ReLU())
    separate = unfused(fused)
    x = rng.standard_normal((4, 2, 5, 6)).astype(dtype)
    assert_bitwise_equal(fused, separate, x, rng, train)
    bare = nn.Sequential(copy.deepcopy(bn), nn.ReLU())
    assert_bitwise_equal(bare, unfused(bare), boundary_input(rng, (4, 3, 5, 6), dtype), rng, train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_fused_relu_gradient_where_the_output_rounds_to_zero(train, rng):
    """γ·x̂ + β in (0, 2⁻¹⁵⁰] is positive in float64 but rounds to 0 in float32: the separate ReLU
    sees 0 and passes no gradient, so the fused mask must not either."""
    bn = nn.BatchNorm2d(1)
    bn.weight.data[0] = 1e-3
    bn.running_var[...] = 1e-5  # eval: x̂ = x / √(2e-5)
    x = np.resize(np.array([0.0, 0.0, 0.0, np.finfo(np.float32).smallest_subnormal], np.float32), (4, 1, 2, 2))
    fused = nn.Sequential(bn, nn.ReLU())
    separate = unfused(fused)
    assert_bitwise_equal(fused, separate, x, rng, train)
    fused.train(train)
    y = fused(x)
    fused.backward(np.ones_like(y))
    assert not y.any() and fused[0].bias.grad[0] == 0.0  # every output 0, no gradient through the ReLU


def test_only_numbanets_own_batchnorm_and_relu_fuse():
    class MyNorm(nn.BatchNorm2d):
        def forward(self, x, **kwargs):
            return super().forward(x)

    bn, relu = nn.BatchNorm2d(3), nn.ReLU()
    assert _BatchNorm.fuses_relu(bn, relu) and _BatchNorm.fuses_relu(nn.BatchNorm1d(3), relu)
    assert not _BatchNorm.fuses_relu(MyNorm(3), relu)
    assert not _BatchNorm.fuses_relu(bn, PlainReLU())
    assert not _BatchNorm.fuses_relu(nn.GroupNorm(1, 3), relu)
    assert not _BatchNorm.fuses_relu(relu, bn)
    patched = nn.ReLU()
    patched.forward = lambda x: x
    assert not _BatchNorm.fuses_relu(bn, patched)


def test_a_relu_shared_by_two_places_in_a_sequential(rng):
    relu = nn.ReLU()
    fused = nn.Sequential(nn.BatchNorm2d(3), relu, nn.Conv2d(3, 3, 1), relu, nn.BatchNorm2d(3), relu)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert_bitwise_equal(fused, unfused(fused), x, rng, True)


def block_cases(dtype, rng):
    return {
        "basic identity": BasicBlock(4, 4, dtype=dtype, rng=rng),
        "basic projection": BasicBlock(4, 8, 2, projection(4, 8, 2, dtype=dtype, rng=rng), dtype=dtype, rng=rng),
        "bottleneck": Bottleneck(16, 4, 1, None, dtype=dtype, rng=rng),
        "bottleneck v1.5": Bottleneck(8, 4, 2, projection(8, 16, 2, dtype=dtype, rng=rng), "v1.5",
                                      dtype=dtype, rng=rng),
    }


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", ["basic identity", "basic projection", "bottleneck", "bottleneck v1.5"])
def test_residual_block_tail_fusion_is_the_separate_layers_bit_for_bit(case, train, dtype, rng):
    block = block_cases(dtype, rng)[case]
    for m in block.modules():
        if isinstance(m, _BatchNorm):
            randomize(m, rng)
    channels = block.conv1.in_channels
    x = boundary_input(rng, (3, channels, 6, 6), dtype)
    assert_bitwise_equal(block, unfused(block), x, rng, train)


def test_a_resnet20_step_is_the_unfused_step_bit_for_bit(rng):
    """Every BN -> ReLU and block tail of ResNet-20 fused vs none (tests/test_models.py compares the
    fused zoo models with PyTorch)."""
    net = models.resnet20(num_classes=10, rng=rng)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    assert_bitwise_equal(net, unfused(net), x, rng, True)


def test_residual_and_relu_keywords_check_their_input(rng):
    bn = nn.BatchNorm2d(3)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.*residual must match the input, expected "
                                         r"\(2, 3, 4, 4\) float32, got \(2, 3, 4, 3\) float32"):
        bn(x, residual=x[..., :3])
    with pytest.raises(ValueError, match=r"residual must match the input.*got \(2, 3, 4, 4\) float64"):
        bn(x, residual=x.astype(np.float64))


def test_fused_passes_do_not_depend_on_the_thread_count(rng):
    net = models.resnet20(num_classes=10, rng=rng)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    dy = rng.standard_normal((4, 10)).astype(np.float32)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = run_step(copy.deepcopy(net), x, dy, True)
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(single, run_step(net, x, dy, True)):
        np.testing.assert_array_equal(a, b)
