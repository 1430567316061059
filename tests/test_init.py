"""numbanet.init: fans, gains, distributions (statistically) and reproducibility, against torch.nn.init."""
import math

import numpy as np
import pytest
import torch

import numbanet
from numbanet import init, nn
from numbanet.tensor import Parameter

# 256·64·3·3 = 147 456 draws: a sample std is within ~0.2% of the truth (1 s.d.), so 2% is safe
BIG = (256, 64, 3, 3)
FAN_IN, FAN_OUT = 64 * 9, 256 * 9


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


def _param(shape=BIG, dtype=np.float32):
    return Parameter(np.zeros(shape, dtype))


@pytest.mark.parametrize("nonlinearity, param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                                 ("tanh", None), ("relu", None), ("leaky_relu", None),
                                                 ("leaky_relu", 0.2), ("selu", None)])
def test_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3, 3), (2, 3, 5), (6, 2, 1, 4), (1, 1)])
def test_fans_match_torch(shape):
    assert init.fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_of_layers():
    assert init.fans(nn.Conv2d(3, 16, (5, 3)).weight.shape) == (3 * 15, 16 * 15)
    assert init.fans(nn.Linear(20, 7).weight.shape) == (20, 7)


def test_fan_in_uniform_bound_and_variance():
    p = init.fan_in_uniform(_param(), rng=np.random.default_rng(0))
    bound = 1 / math.sqrt(FAN_IN)
    assert p.dtype == np.float32
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.999 * bound
    assert p.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    bias = init.fan_in_uniform(_param((10_000,)), FAN_IN, np.random.default_rng(1))
    assert np.abs(bias.data).max() <= bound and np.abs(bias.data).max() > 0.99 * bound


def test_default_layer_init_uses_torchs_bound():
    """PyTorch's default kaiming_uniform_(a=√5) on Conv2d/Linear has the same bound 1/√fan_in."""
    for ours, theirs in [(nn.Conv2d(64, 256, 3), torch.nn.Conv2d(64, 256, 3)),
                         (nn.Linear(300, 500), torch.nn.Linear(300, 500))]:
        for name in ("weight", "bias"):
            mine, ref = getattr(ours, name).data, getattr(theirs, name).detach().numpy()
            assert np.abs(mine).max() <= 1 / math.sqrt(init.fans(ours.weight.shape)[0])
            assert mine.std() == pytest.approx(ref.std(), rel=0.05 if name == "weight" else 0.2)


@pytest.mark.parametrize("mode, fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT)])
@pytest.mark.parametrize("nonlinearity, a", [("relu", 0.0), ("leaky_relu", 0.1), ("tanh", 0.0)])
def test_kaiming_normal_std(mode, fan, nonlinearity, a):
    p = init.kaiming_normal(_param(), a=a, mode=mode, nonlinearity=nonlinearity, rng=np.random.default_rng(2))
    std = init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    ref = torch.nn.init.kaiming_normal_(torch.empty(BIG), a=a, mode=mode, nonlinearity=nonlinearity)
    assert p.data.std() == pytest.approx(std, rel=0.02)
    assert ref.std().item() == pytest.approx(std, rel=0.02)
    assert abs(p.data.mean()) < 0.02 * std


@pytest.mark.parametrize("mode, fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT)])
def test_kaiming_uniform_bound(mode, fan):
    p = init.kaiming_uniform(_param(), mode=mode, nonlinearity="relu", rng=np.random.default_rng(3))
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan)
    ref = torch.nn.init.kaiming_uniform_(torch.empty(BIG), mode=mode, nonlinearity="relu")
    assert bound * 0.999 < np.abs(p.data).max() <= bound * (1 + 1e-6)
    assert ref.abs().max().item() == pytest.approx(np.abs(p.data).max(), rel=1e-3)
    assert p.data.std() == pytest.approx(math.sqrt(2.0 / fan), rel=0.02)  # the kaiming variance gain²/fan


def test_xavier():
    gain = 1.5
    scale = math.sqrt(2.0 / (FAN_IN + FAN_OUT))
    uniform = init.xavier_uniform(_param(), gain, np.random.default_rng(4))
    assert np.abs(uniform.data).max() <= gain * math.sqrt(3) * scale
    assert uniform.data.std() == pytest.approx(gain * scale, rel=0.02)
    normal = init.xavier_normal(_param(), gain, np.random.default_rng(5))
    assert normal.data.std() == pytest.approx(gain * scale, rel=0.02)
    assert torch.nn.init.xavier_normal_(torch.empty(BIG), gain).std().item() == pytest.approx(gain * scale, rel=0.02)


def test_simple_fills_keep_dtype():
    p = _param((3, 4), np.float64)
    assert np.all(init.ones(p).data == 1) and p.dtype == np.float64
    assert np.all(init.zeros(p).data == 0)
    assert np.all(init.constant(p, 0.25).data == 0.25)
    u = init.uniform(_param((10_000,)), -2.0, 3.0, np.random.default_rng(6)).data
    assert u.dtype == np.float32 and u.min() >= -2 and u.max() < 3 and u.mean() == pytest.approx(0.5, abs=0.05)
    n = init.normal(_param((10_000,)), 1.0, 0.5, np.random.default_rng(7)).data
    assert n.mean() == pytest.approx(1.0, abs=0.02) and n.std() == pytest.approx(0.5, rel=0.03)


def test_reproducible_with_seeded_rng_and_manual_seed():
    draw = lambda rng: init.kaiming_normal(_param((8, 3, 3, 3)), rng=rng).data  # noqa: E731
    np.testing.assert_array_equal(draw(np.random.default_rng(42)), draw(np.random.default_rng(42)))
    assert not np.array_equal(draw(np.random.default_rng(42)), draw(np.random.default_rng(43)))
    numbanet.manual_seed(11)
    first = nn.Conv2d(3, 4, 3).weight.data.copy(), draw(None)
    numbanet.manual_seed(11)
    second = nn.Conv2d(3, 4, 3).weight.data, draw(None)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_bad_input():
    with pytest.raises(ValueError, match=r"init: fan-in and fan-out need a weight with >= 2 dims, got shape \(5,\)"):
        init.kaiming_normal(_param((5,)))
    with pytest.raises(ValueError, match=r"init: mode must be 'fan_in' or 'fan_out', got 'fan_avg'"):
        init.kaiming_uniform(_param((3, 3)), mode="fan_avg")
    with pytest.raises(ValueError, match=r"init: unknown nonlinearity 'swish'"):
        init.calculate_gain("swish")


def test_torchs_in_place_names_are_the_same_initialisers():
    for name in ("uniform", "normal", "constant", "zeros", "ones", "kaiming_uniform", "kaiming_normal",
                 "xavier_uniform", "xavier_normal"):
        assert getattr(init, name + "_") is getattr(init, name)
        assert callable(getattr(torch.nn.init, name + "_"))
    layer = nn.Linear(3, 2)
    init.zeros_(layer.bias)
    init.constant_(layer.weight.data, 0.5)  # a plain array works too
    assert not layer.bias.data.any() and np.all(layer.weight.data == 0.5)
