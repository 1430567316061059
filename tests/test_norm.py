"""Normalisation layers against PyTorch, running statistics by hand, folding, numeric gradients, bad input."""
import numba
import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st

from numbanet import functional as F, nn
from numbanet.gradcheck import gradcheck
from tests.oracle import TORCH_DTYPE, assert_close, load_torch_weights, tensor

EPS = 1e-5


def make_input(rng, shape, dtype, contiguous=True, loc=0.0, scale=1.0):
    """Random normal array of ``shape``; when not ``contiguous`` a transposed view (reversed strides)."""
    if contiguous:
        return (loc + scale * rng.standard_normal(shape)).astype(dtype)
    return (loc + scale * rng.standard_normal(shape[::-1])).astype(dtype).T


def randomize(layer, rng):
    """Non-trivial γ, β and running statistics, so that every term of the formulas matters."""
    for name, param in layer.named_parameters():
        values = rng.uniform(0.5, 1.5, param.shape) if name.endswith("weight") else rng.standard_normal(param.shape)
        param.data[...] = values
    for name, buffer in layer.named_buffers():
        if name.endswith("running_mean"):
            buffer[...] = rng.standard_normal(buffer.shape)
        elif name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)
    return layer


def check_against_torch(ours, theirs, x, rng, train=True):
    """Forward, dx, every parameter gradient and every buffer after the step, vs a torch module.

    ``theirs`` gets our parameters and buffers first (same names: the state dicts must match).
    """
    dtype = x.dtype
    theirs = theirs.to(TORCH_DTYPE[dtype])
    load_torch_weights(theirs, ours)
    ours.train(train)
    theirs.train(train)
    y = ours(x)
    # the oracle gets a contiguous copy: torch 2.13's eval-mode BatchNorm backward returns dx in the
    # wrong element order for a channels_last-strided input with a contiguous dy
    xt = tensor(np.ascontiguousarray(x))
    yt = theirs(xt)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, yt, dtype, "forward")

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ours.backward(dy)
    yt.backward(torch.from_numpy(dy))
    assert_close(dx, xt.grad, dtype, "dx")
    their_params = dict(theirs.named_parameters())
    assert set(their_params) == {name for name, _ in ours.named_parameters()}
    for name, param in ours.named_parameters():
        assert_close(param.grad, their_params[name].grad, dtype, f"d{name}")
    their_buffers = dict(theirs.named_buffers())
    assert set(their_buffers) == {name for name, _ in ours.named_buffers()}
    for name, buffer in ours.named_buffers():
        if name == "num_batches_tracked":
            assert buffer.dtype == np.int64 and int(buffer) == int(their_buffers[name])
        else:
            assert_close(buffer, their_buffers[name], dtype, name)


# --------------------------------------------------------------------------------------------
# against PyTorch: Hypothesis-drawn configurations
# --------------------------------------------------------------------------------------------

KINDS = ["BatchNorm2d", "BatchNorm1d-NC", "BatchNorm1d-NCL", "InstanceNorm2d", "InstanceNorm2d-tracked",
         "GroupNorm", "LayerNorm"]


def build(kind, shape, groups, trailing, dtype):
    """(ours, theirs) for ``kind`` on inputs of ``shape``."""
    c = shape[1]
    if kind.startswith("BatchNorm"):
        ours_cls, theirs_cls = (nn.BatchNorm2d, torch.nn.BatchNorm2d) if kind == "BatchNorm2d" else \
            (nn.BatchNorm1d, torch.nn.BatchNorm1d)
        return ours_cls(c, momentum=0.3, dtype=dtype), theirs_cls(c, momentum=0.3)
    if kind == "InstanceNorm2d":
        return nn.InstanceNorm2d(c, dtype=dtype), torch.nn.InstanceNorm2d(c)
    if kind == "InstanceNorm2d-tracked":
        return (nn.InstanceNorm2d(c, affine=True, track_running_stats=True, dtype=dtype),
                torch.nn.InstanceNorm2d(c, affine=True, track_running_stats=True))
    if kind == "GroupNorm":
        return nn.GroupNorm(groups, c, dtype=dtype), torch.nn.GroupNorm(groups, c)
    normalized = shape[len(shape) - trailing:]
    return nn.LayerNorm(normalized, dtype=dtype), torch.nn.LayerNorm(normalized)


@st.composite
def norm_configs(draw):
    kind = draw(st.sampled_from(KINDS))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = {"BatchNorm1d-NC": (n, c), "BatchNorm1d-NCL": (n, c, w)}.get(kind, (n, c, h, w))
    return dict(kind=kind, shape=shape, train=draw(st.booleans()), contiguous=draw(st.booleans()),
                groups=draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0])),
                trailing=draw(st.integers(1, 3)), dtype=np.dtype(draw(st.sampled_from([np.float64, np.float32]))),
                loc=draw(st.sampled_from([0.0, 3.0])), seed=draw(st.integers(0, 2**16)))


@given(norm_configs())
def test_layer_matches_torch(cfg):
    kind, shape, train = cfg["kind"], cfg["shape"], cfg["train"]
    positions = int(np.prod(shape[2:]))
    # PyTorch refuses these too (tested below): one value per channel / spatial element in training
    assume(not (kind.startswith("BatchNorm") and train and shape[0] * positions == 1))
    assume(not (kind.startswith("InstanceNorm") and (train or kind == "InstanceNorm2d") and positions == 1))
    assume(not (kind == "GroupNorm" and shape[0] * shape[1] // cfg["groups"] * positions == 1))
    # one element per block: x̂ = 0 and dx = 0 exactly, but PyTorch's float32 rounding noise there is
    # amplified by 1/√ε ≈ 316 (ours is 0; float64 noise stays far below the tolerance)
    block = {"GroupNorm": shape[1] // cfg["groups"] * positions,
             "LayerNorm": int(np.prod(shape[len(shape) - cfg["trailing"]:]))}.get(kind, 2)
    assume(block > 1 or cfg["dtype"] == np.float64)
    rng = np.random.default_rng(cfg["seed"])
    ours, theirs = build(kind, shape, cfg["groups"], cfg["trailing"], cfg["dtype"])
    x = make_input(rng, shape, cfg["dtype"], cfg["contiguous"], loc=cfg["loc"])
    check_against_torch(randomize(ours, rng), theirs, x, rng, train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_layer_and_mode_matches_torch(kind, train, dtype):
    """Every kind in both modes, whatever Hypothesis drew: shifted, non-contiguous input."""
    rng = np.random.default_rng(3)
    shape = {"BatchNorm1d-NC": (5, 4), "BatchNorm1d-NCL": (2, 4, 5)}.get(kind, (2, 4, 3, 5))
    ours, theirs = build(kind, shape, 2, 2, dtype)
    x = make_input(rng, shape, dtype, contiguous=False, loc=2.0, scale=3.0)
    check_against_torch(randomize(ours, rng), theirs, x, rng, train)


@given(n=st.integers(1, 3), c=st.integers(1, 6), h=st.integers(1, 5), w=st.integers(1, 5),
       size=st.integers(1, 7), alpha=st.sampled_from([1e-4, 0.5, 2.0]), beta=st.sampled_from([0.75, 0.5, 1.3]),
       k=st.sampled_from([1.0, 2.0]), four_d=st.booleans(), contiguous=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_local_response_norm_matches_torch(n, c, h, w, size, alpha, beta, k, four_d, contiguous, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c, h, w) if four_d else (n, c, w)
    x = make_input(rng, shape, np.dtype(dtype), contiguous)
    check_against_torch(nn.LocalResponseNorm(size, alpha, beta, k), torch.nn.LocalResponseNorm(size, alpha, beta, k),
                        x, rng)


def test_batchnorm_several_steps_match_torch(dtype, rng):
    """Five training steps then evaluation: outputs, gradients and buffers follow torch's all along."""
    ours, theirs = randomize(nn.BatchNorm2d(3, dtype=dtype), rng), torch.nn.BatchNorm2d(3)
    for step in range(5):
        x = make_input(rng, (2, 3, 4, 5), dtype, loc=step)
        check_against_torch(ours, theirs, x, rng, train=True)
        ours.zero_grad()
        theirs.zero_grad()
    check_against_torch(ours, theirs, make_input(rng, (1, 3, 2, 1), dtype), rng, train=False)


# --------------------------------------------------------------------------------------------
# BatchNorm: running statistics, evaluation mode, folding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_statistics_are_an_ema_of_the_unbiased_variance(momentum, rng):
    bn = nn.BatchNorm2d(3, momentum=momentum, dtype=np.float64)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(1, 6):
        x = rng.normal(loc=[[[step]], [[-2.0]], [[0.5]]], scale=[[[1.0]], [[3.0]], [[0.2]]], size=(4, 3, 2, 5))
        bn(x)
        weight = 1.0 / step if momentum is None else momentum  # None: cumulative average
        running_mean = (1 - weight) * running_mean + weight * x.mean(axis=(0, 2, 3))
        running_var = (1 - weight) * running_var + weight * x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_mean, running_mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, running_var, rtol=1e-12)
    assert bn.num_batches_tracked.dtype == np.int64 and int(bn.num_batches_tracked) == 5


def test_eval_normalises_with_running_statistics_not_the_batch(rng):
    bn = randomize(nn.BatchNorm2d(3, dtype=np.float64), rng)
    for _ in range(5):
        bn(rng.normal(2.0, 3.0, size=(4, 3, 3, 2)))
    bn.eval()
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    gamma, beta = bn.weight.data[:, None, None], bn.bias.data[:, None, None]

    def by_running_statistics(x):
        return gamma * (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + EPS) + beta

    single = rng.standard_normal((1, 3, 1, 1))  # its own statistics would give y = β exactly
    shifted = rng.normal(50.0, 0.1, size=(4, 3, 2, 3))  # its own statistics would remove the shift
    for x in (single, shifted):
        y = bn(x)
        np.testing.assert_allclose(y, by_running_statistics(x), rtol=1e-12, atol=1e-12)
        axes = (0, 2, 3)
        own = gamma * (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + EPS) + beta
        assert np.abs(y - own).max() > 0.5  # so an implementation using the batch's statistics fails
    np.testing.assert_array_equal(bn.running_mean, mean)  # evaluation leaves the statistics alone
    np.testing.assert_array_equal(bn.running_var, var)
    assert int(bn.num_batches_tracked) == 5


def test_batchnorm_without_running_statistics_uses_the_batch_in_eval(rng):
    bn = nn.BatchNorm1d(2, track_running_stats=False, dtype=np.float64).eval()
    x = rng.normal(5.0, 2.0, size=(6, 2))
    np.testing.assert_allclose(bn(x), (x - x.mean(0)) / np.sqrt(x.var(0) + EPS), rtol=1e-12)
    assert list(bn.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6)])
def test_affine_params_reproduce_eval_forward(shape, dtype, rng):
    bn = randomize(nn.BatchNorm1d(3, dtype=dtype), rng).eval()
    x = make_input(rng, shape, dtype)
    scale, shift = bn.affine_params()
    assert scale.dtype == dtype and scale.shape == (3,)
    broadcast = (slice(None),) + (None,) * (len(shape) - 2)
    assert_close(bn(x), scale[broadcast] * x + shift[broadcast], dtype, "scale·x + shift")


@pytest.mark.parametrize("conv_bias,stride,padding", [(True, 1, 1), (False, 2, 0), (True, (2, 1), (0, 1))])
def test_fold_batchnorm_equals_conv_then_eval_batchnorm(conv_bias, stride, padding, dtype, rng):
    conv = nn.Conv2d(3, 4, 3, stride, padding, bias=conv_bias, dtype=dtype, rng=rng)
    bn = randomize(nn.BatchNorm2d(4, dtype=dtype), rng).eval()
    x = make_input(rng, (2, 3, 7, 6), dtype)
    folded = nn.fold_batchnorm(conv, bn)
    assert isinstance(folded, nn.Conv2d) and folded.bias is not None and folded.weight.dtype == dtype
    assert (folded.stride, folded.padding) == (conv.stride, conv.padding)
    assert_close(folded(x), bn(conv(x)), dtype, "folded conv")


def test_fold_batchnorm_channel_mismatch():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(5.*normalises 5 channels but Conv2d\(3, 4.*4 output channels"):
        nn.fold_batchnorm(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5))


def test_batchnorm_state_dict_and_dtype_conversion():
    bn = nn.BatchNorm2d(4)
    assert list(bn.state_dict()) == list(torch.nn.BatchNorm2d(4).state_dict())
    assert bn.weight.dtype == bn.running_var.dtype == np.float32
    bn.to(np.float64)
    assert bn.weight.dtype == bn.running_mean.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    assert list(nn.InstanceNorm2d(2, track_running_stats=True).state_dict()) == \
        list(torch.nn.InstanceNorm2d(2, track_running_stats=True).state_dict())


# --------------------------------------------------------------------------------------------
# numeric gradients (float64, training mode)
# --------------------------------------------------------------------------------------------

GRADCHECK_LAYERS = {
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3, dtype=np.float64), (2, 3, 3, 2)),
    "BatchNorm1d-NC": (lambda: nn.BatchNorm1d(3, dtype=np.float64), (4, 3)),
    "BatchNorm1d-NCL": (lambda: nn.BatchNorm1d(2, dtype=np.float64), (2, 2, 3)),
    "BatchNorm2d-eval": (lambda: nn.BatchNorm2d(3, dtype=np.float64).eval(), (2, 3, 2, 2)),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(3, affine=True, dtype=np.float64), (2, 3, 2, 3)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4, dtype=np.float64), (2, 4, 3, 2)),
    "LayerNorm": (lambda: nn.LayerNorm((3, 2), dtype=np.float64), (2, 2, 3, 2)),
    "LocalResponseNorm": (lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5), (2, 4, 2, 3)),
}


@pytest.mark.parametrize("name", list(GRADCHECK_LAYERS))
def test_gradcheck(name):
    rng = np.random.default_rng(7)
    factory, shape = GRADCHECK_LAYERS[name]
    layer = randomize(factory(), rng)
    x = rng.normal(1.0, 2.0, shape)
    dy = rng.standard_normal(shape)
    params = [p.data for p in layer.parameters()]

    def loss(x, *params):  # the layer reads the perturbed arrays in place
        return float(np.sum(layer(x) * dy))

    layer(x)
    dx = layer.backward(dy)
    gradcheck(loss, [x, *params], [dx, *(p.grad for p in layer.parameters())], max_checks=None)


def test_functional_forms_match_the_layers(rng):
    x = rng.standard_normal((3, 4, 2, 3))
    dy = rng.standard_normal(x.shape)
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    running = [np.zeros(4), np.ones(4)]
    cases = [
        (nn.BatchNorm2d(4, dtype=np.float64),
         lambda: F.batch_norm(x, *running, gamma, beta, training=True),
         lambda: F.batch_norm_backward(dy, x, *running, gamma, training=True)),
        (nn.GroupNorm(2, 4, dtype=np.float64),
         lambda: F.group_norm(x, 2, gamma, beta), lambda: F.group_norm_backward(dy, x, 2, gamma)),
        (nn.InstanceNorm2d(4, affine=True, dtype=np.float64),
         lambda: F.instance_norm(x, weight=gamma, bias=beta), lambda: F.instance_norm_backward(dy, x, weight=gamma)),
    ]
    for layer, forward, backward in cases:
        layer.weight.data[...], layer.bias.data[...] = gamma, beta
        np.testing.assert_array_equal(forward(), layer(x))
        dx, dgamma, dbeta = backward()
        np.testing.assert_array_equal(dx, layer.backward(dy))
        np.testing.assert_array_equal(dgamma, layer.weight.grad)
        np.testing.assert_array_equal(dbeta, layer.bias.grad)
    np.testing.assert_array_equal(running[0], cases[0][0].running_mean)  # F.batch_norm updated in place

    layer = nn.LayerNorm((2, 3), dtype=np.float64)
    np.testing.assert_array_equal(F.layer_norm(x, (2, 3)), layer(x))
    np.testing.assert_array_equal(F.layer_norm_backward(dy, x, (2, 3))[0], layer.backward(dy))
    layer = nn.LocalResponseNorm(3, 0.5)
    np.testing.assert_array_equal(F.local_response_norm(x, 3, 0.5), layer(x))
    np.testing.assert_array_equal(F.local_response_norm_backward(dy, x, 3, 0.5), layer.backward(dy))


def test_results_do_not_depend_on_the_thread_count(rng):
    layers = [nn.BatchNorm2d(4, dtype=np.float64), nn.GroupNorm(2, 4, dtype=np.float64),
              nn.LayerNorm((4, 5, 6), dtype=np.float64), nn.LocalResponseNorm(3, 0.5)]
    x = rng.standard_normal((3, 4, 5, 6))
    dy = rng.standard_normal(x.shape)

    def run():
        return [(layer(x), layer.backward(dy)) for layer in layers]

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = run()
    finally:
        numba.set_num_threads(threads)
    for (y1, dx1), (y2, dx2) in zip(single, run()):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(dx1, dx2)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------

# name, factory, a good input shape, a wrong-ndim shape and the expected layout, a wrong-channel shape
BAD_INPUT = [
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), (2, 3, 4, 4),
     (3, 4, 4), r"expected a 4-D input of shape \(N, C, H, W\), got shape \(3, 4, 4\)", (2, 5, 4, 4)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(3), (4, 3),
     (2, 3, 4, 4), r"expected a 2-D or 3-D input of shape \(N, C\) or \(N, C, L\), got shape \(2, 3, 4, 4\)",
     (4, 5)),
    ("InstanceNorm2d", lambda: nn.InstanceNorm2d(3), (2, 3, 4, 4),
     (2, 3, 16), r"expected a 4-D input of shape \(N, C, H, W\), got shape \(2, 3, 16\)", (2, 5, 4, 4)),
    ("GroupNorm", lambda: nn.GroupNorm(3, 6), (2, 6, 4),
     (6,), r"expected an input of shape \(N, C, \*\) with at least 2 dims, got shape \(6,\)", (2, 3, 4)),
    ("LayerNorm", lambda: nn.LayerNorm((4, 4)), (2, 3, 4, 4),
     (4,), r"expected input of shape \(\*, 4, 4\) ending in normalized_shape \(4, 4\), got shape \(4,\)", None),
    ("LocalResponseNorm", lambda: nn.LocalResponseNorm(2), (2, 3, 4),
     (2, 3), r"expected an input of shape \(N, C, \*\) with at least 3 dims, got shape \(2, 3\)", None),
]
IDS = [case[0] for case in BAD_INPUT]


@pytest.mark.parametrize("name,factory,good,bad_ndim,message,bad_channels", BAD_INPUT, ids=IDS)
class TestBadInput:
    def test_wrong_ndim(self, name, factory, good, bad_ndim, message, bad_channels):
        with pytest.raises(ValueError, match=rf"{name}\(.*{message}"):
            factory()(np.zeros(bad_ndim, np.float32))

    def test_integer_dtype(self, name, factory, good, bad_ndim, message, bad_channels):
        with pytest.raises(TypeError, match=rf"{name}\(.*expected input of dtype float32 or float64, got int64"):
            factory()(np.zeros(good, np.int64))

    def test_dout_wrong_shape(self, name, factory, good, bad_ndim, message, bad_channels):
        layer = factory()
        layer(np.ones(good, np.float32) + np.arange(np.prod(good), dtype=np.float32).reshape(good))
        wrong = good[:-1] + (good[-1] + 1,)
        with pytest.raises(ValueError, match=rf"{name}\(.*backward: expected dout of shape {re_shape(good)}.*"
                                             rf"got {re_shape(wrong)}"):
            layer.backward(np.zeros(wrong, np.float32))

    def test_backward_before_forward(self, name, factory, good, bad_ndim, message, bad_channels):
        with pytest.raises(RuntimeError, match=rf"{name}\(.*backward called before forward"):
            factory().backward(np.zeros(good, np.float32))


@pytest.mark.parametrize("name,factory,good,bad_ndim,message,bad_channels",
                         [case for case in BAD_INPUT if case[5] is not None],
                         ids=[case[0] for case in BAD_INPUT if case[5] is not None])
def test_channel_mismatch(name, factory, good, bad_ndim, message, bad_channels):
    with pytest.raises(ValueError, match=rf"{name}\(.*expected input with {good[1]} channels.*"
                                         rf"got shape {re_shape(bad_channels)}"):
        factory()(np.zeros(bad_channels, np.float32))


def re_shape(shape) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_parameter_dtype_mismatch():
    with pytest.raises(TypeError, match=r"BatchNorm2d\(3.*input dtype float64 does not match the parameters' dtype float32"):
        nn.BatchNorm2d(3)(np.zeros((2, 3, 2, 2)))


@pytest.mark.parametrize("layer,shape,what", [
    (nn.BatchNorm1d(3), (1, 3), "value per channel"),
    (nn.BatchNorm2d(3), (1, 3, 1, 1), "value per channel"),
    (nn.InstanceNorm2d(3, track_running_stats=True), (2, 3, 1, 1), "spatial element"),
])
def test_single_value_in_training(layer, shape, what):
    with pytest.raises(ValueError, match=rf"{type(layer).__name__}\(3.*expected more than 1 {what} when "
                                         rf"training, got input shape {re_shape(shape)}"):
        layer(np.zeros(shape, np.float32))
    layer.eval()(np.zeros(shape, np.float32))  # evaluation uses fixed statistics: fine


def test_group_norm_single_value_like_torch():
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 2.*expected more than 1 value per group in the batch, "
                                         r"got input shape \(1, 2, 1, 1\)"):
        nn.GroupNorm(2, 2)(np.zeros((1, 2, 1, 1), np.float32))
    nn.GroupNorm(2, 2)(np.zeros((2, 2, 1, 1), np.float32))  # one value per group and sample: allowed


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels must be divisible by num_groups, got num_channels=5"):
        nn.GroupNorm(2, 5)
    with pytest.raises(ValueError, match=r"BatchNorm2d: num_features must be >= 1, got 0"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match=r"LocalResponseNorm: size must be >= 1, got 0"):
        nn.LocalResponseNorm(0)
    with pytest.raises(ValueError, match=r"affine_params needs running statistics"):
        nn.BatchNorm2d(2, track_running_stats=False).affine_params()


def test_functional_bad_arguments():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"batch_norm: running_mean and running_var are required when not normalising"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"batch_norm: expected weight with 3 elements, got shape \(2,\)"):
        F.batch_norm(x, None, None, np.ones(2), training=True)
    with pytest.raises(ValueError, match=r"group_norm: expected a channel count divisible by num_groups=2"):
        F.group_norm(x, 2)


def test_functional_backward_checks_dy(rng):
    x = rng.standard_normal((2, 4, 3, 3))
    cases = [("batch_norm", lambda dy: F.batch_norm_backward(dy, x, None, None, training=True)),
             ("instance_norm", lambda dy: F.instance_norm_backward(dy, x)),
             ("group_norm", lambda dy: F.group_norm_backward(dy, x, 2)),
             ("layer_norm", lambda dy: F.layer_norm_backward(dy, x, (3, 3))),
             ("local_response_norm", lambda dy: F.local_response_norm_backward(dy, x, 3))]
    for name, backward in cases:
        with pytest.raises(ValueError, match=rf"{name}_backward: expected dy of shape \(2, 4, 3, 3\) .*got \(2, 4, 3\)"):
            backward(np.ones((2, 4, 3)))
        with pytest.raises(TypeError, match=rf"{name}_backward: expected dy of dtype float32 or float64, got int64"):
            backward(np.ones(x.shape, np.int64))
        with pytest.raises(TypeError, match=rf"{name}_backward: expected dy of dtype float64, got float32"):
            backward(np.ones(x.shape, np.float32))


def test_batch_statistics_of_an_empty_batch_get_a_clear_error():
    for layer in (nn.BatchNorm2d(2), nn.GroupNorm(1, 2), nn.InstanceNorm2d(2), nn.LocalResponseNorm(3)):
        with pytest.raises(ValueError, match=r"expected a non-empty input of shape .*got shape \(0, 2, 3, 3\)"):
            layer(np.zeros((0, 2, 3, 3), np.float32))
    assert nn.LayerNorm(3)(np.zeros((0, 3), np.float32)).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_statistics_stay_accurate_for_a_large_mean(dtype):
    """The one-pass moments shift by a value of the block: a mean of 1e4 with unit spread must not
    lose the variance to cancellation (the unshifted Σx² − m·mean² would, in float32)."""
    from numbanet.kernels.cpu import norm as cpu_norm

    rng = np.random.default_rng(11)
    x = (1e4 + rng.standard_normal((16, 3, 50))).astype(dtype)
    mean, var, _ = cpu_norm.block_statistics(x, 1, 3, 1e-5)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(mean[0], exact.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var[0], exact.var(axis=(0, 2)), rtol=1e-9)
