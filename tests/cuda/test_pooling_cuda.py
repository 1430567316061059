"""Pooling on the GPU: CUDA == CPU == PyTorch, forward and backward (simulator-sized shapes)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import HealthCheck, given, settings, strategies as st

from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy
from tests.oracle import assert_close, tensor


@st.composite
def window_configs(draw):
    """kernel 1-3, stride 1-2 (or None), padding <= kernel // 2, one window at least; non-square."""
    kernel = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 6))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 6))
    stride = draw(st.sampled_from([None, (draw(st.integers(1, 2)), draw(st.integers(1, 2)))]))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel=kernel, stride=stride,
                padding=padding, dtype=np.dtype(draw(st.sampled_from([np.float64, np.float32]))),
                seed=draw(st.integers(0, 2**16)))


def check(layer, torch_fn, x, rng, cpu_and_gpu):
    """The layer on the GPU against the CPU and against ``torch_fn``, forward and backward."""
    dtype = x.dtype
    xt = tensor(x)
    yt = torch_fn(xt)
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    cpu, gpu = cpu_and_gpu(layer, x, dy)
    for key, ref in [("y", yt), ("dx", xt.grad)]:
        assert gpu[key].dtype == dtype
        assert_close(gpu[key], ref, dtype, f"{key} vs torch")
        assert_close(gpu[key], cpu[key], dtype, f"{key} vs CPU")


SETTINGS = settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(cfg=window_configs())
def test_max_pool_matches_cpu_and_torch(cfg, cpu_and_gpu):
    rng = np.random.default_rng(cfg["seed"])
    # integer values: ties must go to the first maximum in row-major order, as on the CPU and in torch
    x = rng.integers(-2, 3, size=cfg["shape"]).astype(cfg["dtype"])
    args = cfg["kernel"], cfg["stride"], cfg["padding"]
    check(nn.MaxPool2d(*args), lambda t: tF.max_pool2d(t, *args), x, rng, cpu_and_gpu)
    _, indices = F.max_pool2d(to_device(x, "cuda"), *args, return_indices=True)
    assert is_cuda(indices) and indices.dtype == np.int64
    np.testing.assert_array_equal(to_numpy(indices), F.max_pool2d(x, *args, return_indices=True)[1])


@SETTINGS
@given(cfg=window_configs(), count_include_pad=st.booleans())
def test_avg_pool_matches_cpu_and_torch(cfg, count_include_pad, cpu_and_gpu):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    args = cfg["kernel"], cfg["stride"], cfg["padding"]
    check(nn.AvgPool2d(*args, count_include_pad=count_include_pad),
          lambda t: tF.avg_pool2d(t, *args, count_include_pad=count_include_pad), x, rng, cpu_and_gpu)


@SETTINGS
@given(cfg=window_configs(), count_include_pad=st.booleans())
def test_ceil_mode_pooling_matches_cpu_and_torch(cfg, count_include_pad, cpu_and_gpu):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.integers(-2, 3, size=cfg["shape"]).astype(cfg["dtype"])  # ties: the first maximum, as on the CPU
    args = cfg["kernel"], cfg["stride"], cfg["padding"]
    check(nn.MaxPool2d(*args, ceil_mode=True), lambda t: tF.max_pool2d(t, *args, ceil_mode=True), x, rng,
          cpu_and_gpu)
    check(nn.AvgPool2d(*args, ceil_mode=True, count_include_pad=count_include_pad),
          lambda t: tF.avg_pool2d(t, *args, ceil_mode=True, count_include_pad=count_include_pad), x, rng,
          cpu_and_gpu)


def test_torchvision_googlenet_runs_on_the_gpu(rng):
    """Its ceil-mode max pools were CPU only; now the whole network runs on the device."""
    from numbanet import models
    model = models.googlenet(num_classes=3, width=1 / 16, variant="torchvision", aux_logits=False,
                             rng=np.random.default_rng(0)).to(np.float64).eval()
    x = rng.standard_normal((1, 3, 40, 40))
    expected = model(x)
    model.to("cuda")
    np.testing.assert_allclose(to_numpy(model(to_device(x, "cuda"))), expected, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       out_h=st.integers(1, 6), out_w=st.one_of(st.none(), st.integers(1, 6)),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_adaptive_avg_pool_matches_cpu_and_torch(n, c, h, w, out_h, out_w, dtype, seed, cpu_and_gpu):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    check(nn.AdaptiveAvgPool2d((out_h, out_w)), lambda t: tF.adaptive_avg_pool2d(t, (out_h, out_w)), x, rng,
          cpu_and_gpu)


@pytest.mark.parametrize("norm_type, kernel, stride, mean", [(2, 2, None, True), (3, (2, 3), 1, False)])
def test_lp_pool_matches_cpu_and_torch(norm_type, kernel, stride, mean, dtype, rng, cpu_and_gpu):
    x = rng.uniform(0.5, 2.0, size=(2, 2, 5, 4)).astype(dtype)
    x[0, 0, :2, :2] = 0  # an all-zero window passes a zero gradient
    divisor = int(np.prod(np.broadcast_to(kernel, 2))) if mean else 1  # kh·kw

    def torch_fn(t):
        y = tF.lp_pool2d(t, norm_type, kernel, stride)
        return y / divisor ** (1 / norm_type) if mean else y

    check(nn.LPPool2d(norm_type, kernel, stride, mean=mean), torch_fn, x, rng, cpu_and_gpu)


def test_overlapping_max_windows_collect_every_gradient(dtype, cpu_and_gpu):
    """A spike that wins all 9 windows around it gathers 9 gradients (no atomics needed)."""
    x = np.zeros((1, 2, 5, 4), dtype)
    x[:, :, 2, 1] = 5.0
    cpu, gpu = cpu_and_gpu(nn.MaxPool2d(3, 1, 1), x, np.ones_like(x))
    assert gpu["dx"][0, 0, 2, 1] == 9
    assert np.array_equal(gpu["dx"], cpu["dx"])


def test_global_avg_pool_flatten(rng, cpu_and_gpu):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    cpu, gpu = cpu_and_gpu(nn.GlobalAvgPool2d(flatten=True), x, rng.standard_normal((2, 3)).astype(np.float32))
    assert_close(gpu["y"], x.mean(axis=(2, 3)), np.float32, "y")
    assert_close(gpu["dx"], cpu["dx"], np.float32, "dx")


def test_functional_backward_forms_and_errors(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    xd = to_device(x, "cuda")
    y, indices = F.max_pool2d(xd, 2, return_indices=True)
    dy = to_device(rng.standard_normal(y.shape), "cuda")
    expected = F.max_pool2d_backward(to_numpy(dy), to_numpy(indices), x.shape)
    np.testing.assert_array_equal(to_numpy(F.max_pool2d_backward(dy, indices, x.shape, 2)), expected)
    with pytest.raises(ValueError, match="max_pool2d_backward: on the GPU pass the forward's kernel_size"):
        F.max_pool2d_backward(dy, indices, x.shape)
    with pytest.raises(TypeError, match="max_pool2d_backward: dy is on cuda but the forward pass ran on cpu"):
        F.max_pool2d_backward(dy, to_numpy(indices), x.shape, 2)
    dx = F.avg_pool2d_backward(dy, x.shape, 2)
    assert is_cuda(dx)
    assert_close(to_numpy(dx), F.avg_pool2d_backward(to_numpy(dy), x.shape, 2), np.float64, "avg dx")
    dx = F.adaptive_avg_pool2d_backward(dy, x.shape)
    assert_close(to_numpy(dx), F.adaptive_avg_pool2d_backward(to_numpy(dy), x.shape), np.float64, "adaptive dx")
    layer = nn.MaxPool2d(2)
    layer(xd)
    with pytest.raises(TypeError, match=r"MaxPool2d\(kernel_size=\(2, 2\).*dout is on cpu but the forward pass "
                                        r"ran on cuda"):
        layer.backward(np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(2, 2\).*expected a 4-D input"):
        layer(to_device(np.zeros((2, 4, 4)), "cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("make_layer, torch_fn", [
    (lambda: nn.MaxPool2d(3, 2, 1), lambda t: tF.max_pool2d(t, 3, 2, 1)),
    (lambda: nn.AvgPool2d(3, 1, 1), lambda t: tF.avg_pool2d(t, 3, 1, 1)),
    (lambda: nn.AdaptiveAvgPool2d((6, 6)), lambda t: tF.adaptive_avg_pool2d(t, (6, 6))),
], ids=["max", "avg", "adaptive"])
def test_pooling_bigger_shapes_on_a_real_gpu(make_layer, torch_fn):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 64, 55, 55)).astype(np.float32)
    xt = tensor(x)
    yt = torch_fn(xt)
    dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    layer = make_layer()
    y = layer(to_device(x, "cuda"))
    dx = layer.backward(to_device(dy, "cuda"))
    assert_close(to_numpy(y), yt, np.float32, "y")
    assert_close(to_numpy(dx), xt.grad, np.float32, "dx")
