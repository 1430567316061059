"""Activations (and Dice) against PyTorch, extreme inputs, numeric gradients and bad input."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, strategies as st

from numbanet import functional as F, nn
from numbanet.gradcheck import gradcheck
from tests.oracle import assert_close, tensor

DTYPES = st.sampled_from([np.float64, np.float32])

# (id, our layer, the PyTorch function)
ACTIVATIONS = [
    ("relu", nn.ReLU, torch.relu),
    ("leaky_relu", lambda: nn.LeakyReLU(), tF.leaky_relu),
    ("leaky_relu_0.2", lambda: nn.LeakyReLU(0.2), lambda t: tF.leaky_relu(t, 0.2)),
    ("elu", nn.ELU, tF.elu),
    ("elu_0.7", lambda: nn.ELU(0.7), lambda t: tF.elu(t, 0.7)),
    ("selu", nn.SELU, tF.selu),
    ("gelu", nn.GELU, tF.gelu),
    ("gelu_tanh", lambda: nn.GELU("tanh"), lambda t: tF.gelu(t, approximate="tanh")),
    ("silu", nn.SiLU, tF.silu),
    ("swish_1.702", lambda: nn.Swish(1.702), lambda t: t * torch.sigmoid(1.702 * t)),
    ("mish", nn.Mish, tF.mish),
    ("sigmoid", nn.Sigmoid, torch.sigmoid),
    ("tanh", nn.Tanh, torch.tanh),
]
IDS = [a[0] for a in ACTIVATIONS]


def make_input(rng, shape, dtype, contiguous, scale=3.0):
    """Random values with some exact zeros (the ReLU-family kink); optionally a transposed view."""
    x = rng.standard_normal(shape[::-1] if not contiguous else shape) * scale
    x[rng.random(x.shape) < 0.1] = 0.0
    return (x.T if not contiguous else x).astype(dtype)


def check_against_torch(layer, torch_fn, x, dtype, rng):
    y = layer(x)
    xt = tensor(x)
    yt = torch_fn(xt)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, yt, dtype, "forward")
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    yt.backward(torch.from_numpy(np.ascontiguousarray(dy)))
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, xt.grad, dtype, "dx")


@pytest.mark.parametrize("make_layer, torch_fn", [a[1:] for a in ACTIVATIONS], ids=IDS)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), dtype=DTYPES,
       contiguous=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_torch(make_layer, torch_fn, shape, dtype, contiguous, seed):
    rng, dtype = np.random.default_rng(seed), np.dtype(dtype)
    check_against_torch(make_layer(), torch_fn, make_input(rng, shape, dtype, contiguous), dtype, rng)


@pytest.mark.parametrize("make_layer, torch_fn", [a[1:] for a in ACTIVATIONS], ids=IDS)
def test_extreme_inputs_no_overflow(make_layer, torch_fn, dtype):
    """|x| up to 1000: no warning, no NaN, no inf where the function is bounded, same as PyTorch."""
    x = np.array([-1000.0, -700.0, -100.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 100.0, 700.0, 1000.0], dtype)
    layer = make_layer()
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = layer(x)
        dx = layer.backward(np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    xt = tensor(x)
    yt = torch_fn(xt)
    yt.backward(torch.ones_like(yt))
    assert_close(y, yt, dtype, "forward")
    assert_close(dx, xt.grad, dtype, "dx")


def test_relu_family_derivative_at_zero(dtype):
    x = np.zeros(3, dtype)
    for layer, expected in [(nn.ReLU(), 0.0), (nn.LeakyReLU(0.1), 0.1), (nn.ELU(0.5), 0.5)]:
        layer(x)
        np.testing.assert_array_equal(layer.backward(np.ones(3, dtype)), np.full(3, expected, dtype))


def test_relu_keeps_nan_like_torch():
    y = F.relu(np.array([np.nan, -1.0, 2.0]))
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2


def test_functional_pairs_match_layers(rng):
    x = rng.standard_normal((3, 4))
    dy = rng.standard_normal((3, 4))
    for forward, backward, layer, uses_output in [
            (F.gelu, F.gelu_backward, nn.GELU(), False),
            (lambda x: F.swish(x, 2.0), lambda dy, x: F.swish_backward(dy, x, 2.0), nn.Swish(2.0), False),
            (F.silu, F.silu_backward, nn.SiLU(), False),
            (F.selu, F.selu_backward, nn.SELU(), False),
            (F.sigmoid, F.sigmoid_backward, nn.Sigmoid(), True),
            (F.tanh, F.tanh_backward, nn.Tanh(), True)]:
        y = forward(x)
        np.testing.assert_array_equal(y, layer(x))
        np.testing.assert_array_equal(backward(dy, y if uses_output else x), layer.backward(dy))


def test_swish_1702_approximates_gelu():
    x = np.linspace(-4, 4, 101)
    assert np.abs(F.swish(x, 1.702) - F.gelu(x)).max() < 0.03


@pytest.mark.parametrize("make_layer", [a[1] for a in ACTIVATIONS], ids=IDS)
def test_gradcheck(make_layer):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks of ReLU / LeakyReLU / ELU
    layer = make_layer()
    dy = rng.standard_normal(x.shape)
    layer(x)
    dx = layer.backward(dy)
    gradcheck(lambda x: float(np.sum(layer(x) * dy)), [x], [dx], max_checks=None)


# -- Dice --------------------------------------------------------------------------------------------

def torch_dice(x, alpha, running_mean, running_var, training, momentum=0.1, eps=1e-8):
    """Dice written from the DIN paper with torch ops; updates the running statistics like BatchNorm."""
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * count / (count - 1))
    else:
        mean, var = running_mean, running_var
    p = torch.sigmoid((x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps))
    a = alpha.view(shape)
    return p * x + (1 - p) * a * x


@given(n=st.integers(1, 4), c=st.integers(1, 4), length=st.sampled_from([None, 1, 3]), training=st.booleans(),
       dtype=DTYPES, contiguous=st.booleans(), seed=st.integers(0, 2**16))
def test_dice_matches_torch(n, c, length, training, dtype, contiguous, seed):
    rng, dtype = np.random.default_rng(seed), np.dtype(dtype)
    shape = (n, c) if length is None else (n, c, length)
    if training and n * (length or 1) < 2:
        n, shape = 2, (2, *shape[1:])
    layer = nn.Dice(c, dtype=dtype)
    layer.alpha.data[:] = rng.uniform(-1, 1, c)
    layer.running_mean[:] = rng.standard_normal(c)
    layer.running_var[:] = rng.uniform(0.5, 2, c)
    layer.train(training)
    alpha = tensor(layer.alpha.data)
    running = [torch.tensor(layer.running_mean), torch.tensor(layer.running_var)]
    x = make_input(rng, shape, dtype, contiguous, scale=1.0)
    check_against_torch(layer, lambda t: torch_dice(t, alpha, *running, training), x, dtype, rng)
    assert_close(layer.alpha.grad, alpha.grad, dtype, "dalpha")
    assert_close(layer.running_mean, running[0], dtype, "running_mean")
    assert_close(layer.running_var, running[1], dtype, "running_var")


def test_dice_running_statistics_match_batchnorm(rng):
    x = rng.standard_normal((6, 3, 4)) * 2 + 1
    layer = nn.Dice(3).to(np.float64)
    bn = torch.nn.BatchNorm1d(3, momentum=0.1).double()
    for _ in range(3):
        layer(x)
        bn(torch.from_numpy(x))
    np.testing.assert_allclose(layer.running_mean, bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, bn.running_var.numpy(), rtol=1e-12)
    assert list(layer.state_dict()) == ["alpha", "running_mean", "running_var"]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4)])
def test_dice_gradcheck(training, shape):
    rng = np.random.default_rng(0)
    layer = nn.Dice(shape[1], eps=1e-5).to(np.float64).train(training)
    layer.alpha.data[:] = rng.uniform(-1, 1, shape[1])
    layer.running_var[:] = 2.0
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)

    def loss(x, alpha):
        return float(np.sum(F.dice(x, alpha, layer.running_mean, layer.running_var, False, eps=1e-5) * dy)
                     if not training else np.sum(F.dice(x, alpha, training=True, eps=1e-5) * dy))

    layer(x)
    dx = layer.backward(dy)
    gradcheck(loss, [x, layer.alpha.data.copy()], [dx, layer.alpha.grad], max_checks=None)
    fdx, fdalpha = F.dice_backward(dy, x, layer.alpha.data, layer.running_mean, layer.running_var,
                                   training, eps=1e-5)
    np.testing.assert_array_equal(fdx, dx)
    np.testing.assert_array_equal(fdalpha, layer.alpha.grad)


def test_dice_extreme_inputs_no_overflow():
    x = np.array([[-1000.0, 1000.0], [1000.0, -1000.0], [0.0, 0.0]])
    layer = nn.Dice(2).to(np.float64)
    layer.alpha.data[:] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer(x)
        dx = layer.backward(np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(dx).all()


# -- bad input ---------------------------------------------------------------------------------------

class TestBadInput:
    def test_integer_dtype(self):
        with pytest.raises(TypeError, match=r"ReLU\(\): expected input of dtype float32 or float64, got int64"):
            nn.ReLU()(np.zeros(3, np.int64))

    def test_backward_before_forward(self):
        with pytest.raises(RuntimeError, match=r"GELU\(approximate='none'\)\.backward called before forward"):
            nn.GELU().backward(np.zeros(3))

    def test_dout_wrong_shape_and_dtype(self):
        layer = nn.Sigmoid()
        layer(np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match=r"Sigmoid\(\)\.backward: expected dout of shape \(2, 3\).*got \(3, 2\)"):
            layer.backward(np.zeros((3, 2), np.float32))
        with pytest.raises(TypeError, match=r"expected dout of dtype float32, got float64"):
            layer.backward(np.zeros((2, 3), np.float64))

    def test_functional_backward_shape(self):
        with pytest.raises(ValueError, match=r"relu_backward: expected dy of shape \(3,\).*got \(4,\)"):
            F.relu_backward(np.zeros(4), np.zeros(3))

    def test_gelu_approximate(self):
        with pytest.raises(ValueError, match=r"approximate must be 'none' or 'tanh', got 'erf'"):
            nn.GELU("erf")

    def test_dice_feature_count(self):
        with pytest.raises(ValueError, match=r"Dice\(3.*expected input of shape \(N, C\) or \(N, C, L\) "
                                             r"with 3 at dim 1, got shape \(4, 2\)"):
            nn.Dice(3)(np.zeros((4, 2), np.float32))

    def test_dice_ndim(self):
        with pytest.raises(ValueError, match=r"Dice\(3.*expected a 2-D input \(N, C\) or 3-D input"):
            nn.Dice(3)(np.zeros((4, 3, 2, 2), np.float32))

    def test_dice_dtype_mismatch(self):
        with pytest.raises(TypeError, match=r"input dtype float64 does not match the parameters' dtype float32"):
            nn.Dice(3)(np.zeros((4, 3)))

    def test_dice_single_value_in_training(self):
        with pytest.raises(ValueError, match=r"Dice\(3.*expected more than 1 value per feature"):
            nn.Dice(3)(np.zeros((1, 3), np.float32))
        nn.Dice(3).eval()(np.zeros((1, 3), np.float32))  # eval uses the running statistics


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "selu", "gelu", "swish", "silu", "mish",
                                  "sigmoid", "tanh"])
def test_functional_backward_checks_dy_shape_and_dtype(name, rng):
    backward = getattr(F, f"{name}_backward")
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"expected dy of shape \(3, 4\) \(the forward.s\), got \(4, 3\)"):
        backward(np.ones((4, 3)), x)
    for bad, message in ((np.ones((3, 4), np.int64), "float32 or float64, got int64"),
                         (np.ones((3, 4), np.float16), "float32 or float64, got float16"),
                         (np.ones((3, 4), np.float32), "expected dy of dtype float64, got float32")):
        with pytest.raises(TypeError, match=message):
            backward(bad, x)


def test_dice_backward_checks_dy_on_the_cpu_too(rng):
    x, alpha = rng.standard_normal((4, 3)), np.zeros(3)
    with pytest.raises(ValueError, match=r"dice_backward: expected dy of shape \(4, 3\)"):
        F.dice_backward(np.ones((4, 2)), x, alpha)
    with pytest.raises(TypeError, match=r"dice_backward: expected dy of dtype float32 or float64, got int64"):
        F.dice_backward(np.ones((4, 3), np.int64), x, alpha)
