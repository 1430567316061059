"""Conv2d and the functional convolution against PyTorch, numeric gradients and bad input."""
import re
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import numbanet as nb
from numbanet import functional as F, nn
from numbanet.gradcheck import gradcheck
from tests.oracle import assert_close, tensor


@st.composite
def conv_configs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    # include the edge case "kernel equal to the padded input" (a single output pixel)
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 4)), k=draw(st.integers(1, 4)),
                h=h, w=w, kernel=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                padding=(ph, pw), contiguous=draw(st.booleans()), bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float64, np.float32])), seed=draw(st.integers(0, 2**16)))


def make_input(rng, shape, dtype, contiguous=True):
    """A random array of ``shape``; when not ``contiguous`` it is a strided view of a bigger array."""
    if contiguous:
        return rng.standard_normal(shape).astype(dtype)
    big = rng.standard_normal((*shape[:-1], 2 * shape[-1])).astype(dtype)
    return big[..., ::2]  # non-contiguous unless the last axis has length 1


@given(conv_configs())
def test_conv2d_matches_torch(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dtype = np.dtype(cfg["dtype"])
    layer = nn.Conv2d(cfg["c"], cfg["k"], cfg["kernel"], cfg["stride"], cfg["padding"],
                      bias=cfg["bias"], dtype=dtype, rng=rng)
    x = make_input(rng, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype, cfg["contiguous"])
    y = layer(x)

    xt, wt = tensor(x), tensor(layer.weight.data)
    bt = tensor(layer.bias.data) if cfg["bias"] else None
    yt = torch.nn.functional.conv2d(xt, wt, bt, cfg["stride"], cfg["padding"])
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    assert_close(y, yt, dtype, "forward")

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    yt.backward(torch.from_numpy(dy))
    assert_close(dx, xt.grad, dtype, "dx")
    assert_close(layer.weight.grad, wt.grad, dtype, "dw")
    if cfg["bias"]:
        assert_close(layer.bias.grad, bt.grad, dtype, "db")


@given(conv_configs(), st.sampled_from(["per-tap", "stacked"]))
def test_row_shift_both_products_match_torch(cfg, product):
    """The row-shift lowering multiplies either per sample and vertical tap or with one stacked GEMM
    per task, chosen by the BLAS and the channel count (``_per_tap``): each is forced here, on the
    hypothesis shapes, for the forward pass, dX (a row-shift forward of dy) and dW."""
    rng = np.random.default_rng(cfg["seed"])
    dtype = np.dtype(cfg["dtype"])
    x = make_input(rng, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype, cfg["contiguous"])
    w = rng.standard_normal((cfg["k"], cfg["c"], *cfg["kernel"])).astype(dtype)
    b = rng.standard_normal(cfg["k"]).astype(dtype)
    stride = (1, cfg["stride"][1])  # vertical stride 1: the row-shift lowering
    xt, wt, bt = tensor(x), tensor(w), tensor(b)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, cfg["padding"])
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    with mock.patch.object(nb.kernels.cpu.conv, "_per_tap", lambda channels: product == "per-tap"):
        y = F.conv2d(x, w, b, stride, cfg["padding"])
        dx, dw, _ = F.conv2d_backward(dy, x, w, stride, cfg["padding"])
    assert_close(y, yt, dtype, f"forward ({product})")
    assert_close(dx, xt.grad, dtype, f"dx ({product})")
    assert_close(dw, wt.grad, dtype, f"dw ({product})")


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (1, 1, 0), (1, 2, 0), ((2, 3), (2, 1), (1, 0))])
def test_conv2d_gradcheck(kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((2, 3, *nb.conv.pair("test", "kernel", kernel, 1)))
    b = rng.standard_normal(2)
    dy = rng.standard_normal(F.conv2d(x, w, b, stride, padding).shape)

    def loss(x, w, b):
        return float(np.sum(F.conv2d(x, w, b, stride, padding) * dy))

    dx, dw, db = F.conv2d_backward(dy, x, w, stride, padding)
    gradcheck(loss, [x, w, b], [dx, dw, db], max_checks=None)


def test_backward_accumulates_parameter_gradients(rng):
    layer = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 2, 4, 4))
    dy = rng.standard_normal(layer(x).shape)
    layer.backward(dy, retain_graph=True)
    once = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * once[0])
    np.testing.assert_allclose(layer.bias.grad, 2 * once[1])
    layer.zero_grad()
    assert not layer.weight.grad.any() and not layer.bias.grad.any()


@pytest.mark.parametrize("stride", [(2, 2), (1, 1), (1, 2)], ids=["im2col", "row-shift", "row-shift-sw2"])
def test_large_batch_spans_several_tasks(rng, monkeypatch, stride):
    """Both lowerings (im2col for vertical stride > 1, row-shift for 1) split big batches into
    tasks of a few samples; the split must not change the result."""
    x = rng.standard_normal((7, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    dy = rng.standard_normal(F.conv2d(x, w, None, stride, 1).shape)
    whole = F.conv2d(x, w, b, stride, 1), *F.conv2d_backward(dy, x, w, stride, 1)
    monkeypatch.setattr(nb.kernels.cpu.conv, "_TASK_BYTES", 1)  # one sample per task
    chunked = F.conv2d(x, w, b, stride, 1), *F.conv2d_backward(dy, x, w, stride, 1)
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-13)


def test_output_size_rule():
    # (n' - 1) S + F = n + 2P
    assert F.conv2d_output_size(227, 227, 11, 4, 0) == (55, 55)
    assert F.conv2d_output_size(32, 32, 3, 1, 1) == (32, 32)
    assert F.conv2d_output_size(7, 8, (3, 2), (2, 3), (1, 0)) == (4, 3)


def test_state_dict_round_trip_and_names(rng):
    layer = nn.Conv2d(3, 4, 3, rng=rng)
    sd = layer.state_dict()
    assert list(sd) == ["weight", "bias"] and sd["weight"].shape == (4, 3, 3, 3)
    other = nn.Conv2d(3, 4, 3)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.weight.data, layer.weight.data)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4, 3, 3, 3\), got \(4, 3, 1, 1\)"):
        other.load_state_dict({"weight": np.zeros((4, 3, 1, 1)), "bias": np.zeros(4)})


def test_default_init_is_fan_in_uniform():
    layer = nn.Conv2d(16, 32, 3, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(16 * 9)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    assert layer.weight.dtype == np.float32


class TestBadInput:
    layer = nn.Conv2d(3, 4, 3, padding=1)

    def test_wrong_ndim(self):
        with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*expected a 4-D input of shape \(N, C, H, W\), got shape \(3, 8, 8\)"):
            self.layer(np.zeros((3, 8, 8), np.float32))

    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*expected input with 3 channels.*got shape \(2, 5, 8, 8\)"):
            self.layer(np.zeros((2, 5, 8, 8), np.float32))

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match=r"Conv2d\(3, 4.*float32 or float64, got int64"):
            self.layer(np.zeros((2, 3, 8, 8), np.int64))

    def test_dtype_mismatch(self):
        with pytest.raises(TypeError, match=r"input dtype float64 does not match the parameters' dtype float32"):
            self.layer(np.zeros((2, 3, 8, 8), np.float64))

    def test_kernel_larger_than_padded_input(self):
        with pytest.raises(ValueError, match=r"kernel \(3, 3\) is larger than the padded input \(2, 2\)"):
            nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 2, 2), np.float32))

    @pytest.mark.parametrize("stride", [0, -1, (1, 0)])
    def test_stride_not_positive(self, stride):
        with pytest.raises(ValueError, match=r"Conv2d\(3, 4\): stride must be >= 1"):
            nn.Conv2d(3, 4, 3, stride=stride)

    def test_negative_padding(self):
        with pytest.raises(ValueError, match="padding must be >= 0"):
            nn.Conv2d(3, 4, 3, padding=-1)

    def test_backward_before_forward(self):
        with pytest.raises(RuntimeError, match=r"Conv2d\(3, 4.*backward called before forward"):
            nn.Conv2d(3, 4, 3).backward(np.zeros((1, 4, 1, 1), np.float32))

    def test_dout_wrong_shape(self):
        layer = nn.Conv2d(3, 4, 3, padding=1)
        layer(np.zeros((2, 3, 8, 8), np.float32))
        with pytest.raises(ValueError, match=r"expected dout of shape \(2, 4, 8, 8\).*got \(2, 4, 6, 6\)"):
            layer.backward(np.zeros((2, 4, 6, 6), np.float32))


def test_functional_backward_checks_dy_against_the_forward_shape(rng):
    """A dy of the wrong shape used to be read out of bounds by the kernels; int/float16 dy was cast."""
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    for stride, padding in (((1, 1), (0, 0)), ((2, 2), (1, 1)), ((1, 2), (1, 0))):
        y = F.conv2d(x, w, None, stride, padding)
        expected = re.escape(f"expected dy of shape {y.shape}")
        for bad in (np.ones((2, 4, y.shape[2] + 1, y.shape[3]), np.float32), np.ones((2, 5, *y.shape[2:]), np.float32)):
            with pytest.raises(ValueError, match=rf"conv2d_backward_input: {expected} .*, got"):
                F.conv2d_backward_input(bad, w, x.shape, stride, padding)
            with pytest.raises(ValueError, match=rf"conv2d_backward_weight: {expected} .*, got"):
                F.conv2d_backward_weight(bad, x, w.shape, stride, padding)
    dy = np.ones((2, 4, 4, 4))
    for bad_dtype, message in ((np.int64, "float32 or float64, got int64"), (np.float16, "got float16"),
                               (np.float64, "expected dy of dtype float32, got float64")):
        with pytest.raises(TypeError, match=message):
            F.conv2d_backward_input(dy.astype(bad_dtype), w, x.shape)
        with pytest.raises(TypeError, match=message):
            F.conv2d_backward_weight(dy.astype(bad_dtype), x, w.shape)
    with pytest.raises(ValueError, match=r"conv2d_backward_input: expected input_shape as a tuple of 4 sizes"):
        F.conv2d_backward_input(dy.astype(np.float32), w, (2, 3, 6))


def test_constructor_arguments_must_be_ints():
    with pytest.raises(TypeError, match=r"Conv2d\(3, 4\): kernel_size must be an int or a pair of ints \(h, w\), got 3.0"):
        nn.Conv2d(3, 4, 3.0)
    with pytest.raises(TypeError, match=r"Conv2d\(3.0, 4\): in_channels must be an int, got 3.0 \(float\)"):
        nn.Conv2d(3.0, 4, 3)
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints"):
        nn.Conv2d(3, 4, 3, stride=(1, 1.5))
    with pytest.raises(ValueError, match=r"padding must be >= 0"):
        nn.Conv2d(3, 4, 3, padding=-1)
    with pytest.raises(TypeError, match=r"Linear\(4, 2.0\): out_features must be an int"):
        nn.Linear(4, 2.0)
    assert nn.Conv2d(np.int64(3), 4, (np.int32(3), 3)).kernel_size == (3, 3)


def test_an_empty_batch_gets_a_clear_error(rng):
    with pytest.raises(ValueError, match=r"Conv2d\(2, 3.*expected a non-empty input of shape \(N, C, H, W\), got shape \(0, 2, 5, 5\)"):
        nn.Conv2d(2, 3, 3)(np.zeros((0, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_backward_input: expected a non-empty input"):
        F.conv2d_backward_input(np.zeros((0, 3, 3, 3), np.float32), np.zeros((3, 2, 3, 3), np.float32), (0, 2, 5, 5))
