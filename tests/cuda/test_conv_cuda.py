"""Conv2d on the GPU: CUDA == CPU == PyTorch, forward and backward (simulator-sized shapes)."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy
from numbanet.kernels.cuda import conv as cuda_conv
from tests.oracle import assert_close, tensor


@st.composite
def conv_configs(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), k=draw(st.integers(1, 3)),
                h=draw(st.integers(max(1, kh - 2 * ph), 6)), w=draw(st.integers(max(1, kw - 2 * pw), 6)),
                kernel=(kh, kw), stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), padding=(ph, pw),
                bias=draw(st.booleans()), dtype=np.dtype(draw(st.sampled_from([np.float64, np.float32]))),
                seed=draw(st.integers(0, 2**16)))


def check_conv(cfg, cpu_and_gpu):
    """The layer on the GPU against the same layer on the CPU and against torch."""
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"]
    layer = nn.Conv2d(cfg["c"], cfg["k"], cfg["kernel"], cfg["stride"], cfg["padding"], bias=cfg["bias"],
                      dtype=dtype, rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])).astype(dtype)
    xt, wt = tensor(x), tensor(layer.weight.data)
    bt = tensor(layer.bias.data) if cfg["bias"] else None
    yt = torch.nn.functional.conv2d(xt, wt, bt, cfg["stride"], cfg["padding"])
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    cpu, gpu = cpu_and_gpu(layer, x, dy)
    reference = {"y": yt, "dx": xt.grad, "dweight": wt.grad, "dbias": None if bt is None else bt.grad}
    for key, ref in reference.items():
        if ref is None:
            continue
        assert gpu[key].dtype == dtype
        assert_close(gpu[key], ref, dtype, f"{key} vs torch")
        assert_close(gpu[key], cpu[key], dtype, f"{key} vs CPU")


# cpu_and_gpu is a plain function: sharing it between examples is safe
@settings(max_examples=5, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs())
def test_conv2d_matches_cpu_and_torch(cfg, cpu_and_gpu):
    check_conv(cfg, cpu_and_gpu)


@pytest.mark.parametrize("kernel, stride, padding", [
    ((1, 1), (1, 1), (0, 0)),   # pointwise: the plain-GEMM path
    ((1, 1), (2, 1), (0, 0)),   # 1x1 but strided: the implicit-im2col path
    ((3, 3), (2, 2), (1, 1)),   # stride 2: dX gathers only every other tap
    ((2, 3), (1, 2), (1, 0)),
], ids=["1x1", "1x1-strided", "3x3-s2-p1", "2x3-mixed"])
def test_conv2d_paths(kernel, stride, padding, dtype, cpu_and_gpu):
    check_conv(dict(n=2, c=2, k=3, h=5, w=4, kernel=kernel, stride=stride, padding=padding, bias=True,
                    dtype=dtype, seed=7), cpu_and_gpu)


def test_weight_gradient_split_over_the_batch_matches(monkeypatch, rng):
    """dW's split-K path (taken for long reductions on a real GPU) adds its parts correctly."""
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    expected_w, expected_b = F.conv2d_backward_weight(dy, x, (3, 2, 3, 3), 1, 1)
    monkeypatch.setattr(cuda_conv._common, "split_k", lambda *args, **kwargs: 3)
    for shape in [(3, 2, 3, 3), (3, 2, 1, 1)]:
        padding = 1 if shape[2] == 3 else 0
        want_w = expected_w if shape[2] == 3 else F.conv2d_backward_weight(dy, x, shape, 1, 0)[0]
        dw, db = F.conv2d_backward_weight(to_device(dy, "cuda"), to_device(x, "cuda"), shape, 1, padding)
        assert_close(to_numpy(dw), want_w, np.float32, f"dw {shape}")
        assert_close(to_numpy(db), expected_b, np.float32, "db")


def test_functional_forms_dispatch_and_are_deterministic(rng):
    x, w, b = (rng.standard_normal(s) for s in [(2, 2, 4, 3), (3, 2, 2, 2), (3,)])
    xd, wd, bd = (to_device(a, "cuda") for a in (x, w, b))
    y1, y2 = F.conv2d(xd, wd, bd, 1, 1), F.conv2d(xd, wd, bd, 1, 1)
    assert is_cuda(y1)
    assert np.array_equal(to_numpy(y1), to_numpy(y2)), "two runs differ"
    assert_close(to_numpy(y1), F.conv2d(x, w, b, 1, 1), np.float64, "forward")
    dy = rng.standard_normal(y1.shape)
    for ours, theirs, what in zip(F.conv2d_backward(to_device(dy, "cuda"), xd, wd, 1, 1),
                                  F.conv2d_backward(dy, x, w, 1, 1), ["dx", "dw", "db"]):
        assert is_cuda(ours)
        assert_close(to_numpy(ours), theirs, np.float64, what)


def test_backward_accumulates_on_the_device(rng):
    layer = nn.Conv2d(2, 2, 3, padding=1, rng=rng).to("cuda")
    x = to_device(rng.standard_normal((1, 2, 3, 3)).astype(np.float32), "cuda")
    dy = to_device(rng.standard_normal((1, 2, 3, 3)).astype(np.float32), "cuda")
    layer(x)
    layer.backward(dy)
    once = to_numpy(layer.weight.grad)
    layer(x)
    layer.backward(dy)
    assert_close(to_numpy(layer.weight.grad), 2 * once, np.float32, "accumulated dw")
    layer.zero_grad()
    assert not to_numpy(layer.weight.grad).any() and is_cuda(layer.weight.grad)


def test_device_mismatch_names_the_layer_and_both_devices(rng):
    layer = nn.Conv2d(2, 3, 3, rng=rng)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    with pytest.raises(TypeError, match=r"Conv2d\(2, 3, kernel_size=\(3, 3\).*input is on cuda but the "
                                        r"layer's parameters are on cpu.*model.to\('cuda'\)"):
        layer(to_device(x, "cuda"))
    layer.to("cuda")
    with pytest.raises(TypeError, match=r"Conv2d\(2, 3.*input is on cpu but the layer's parameters are on cuda"):
        layer(x)
    layer(to_device(x, "cuda"))
    with pytest.raises(TypeError, match=r"Conv2d\(2, 3.*backward: dout is on cpu but the forward pass ran on cuda"):
        layer.backward(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(2, 3.*expected input with 2 channels"):
        layer(to_device(np.zeros((1, 3, 4, 4), np.float32), "cuda"))
    with pytest.raises(TypeError, match=r"Conv2d\(2, 3.*input dtype float64 does not match"):
        layer(to_device(np.zeros((1, 2, 4, 4)), "cuda"))
    with pytest.raises(TypeError, match="conv2d: input is on cuda but the layer's parameters are on cpu"):
        F.conv2d(to_device(x, "cuda"), to_device(layer.weight.data, "cuda"), np.zeros(3, np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("n, c, k, size, kernel, stride, padding", [
    (8, 32, 64, 28, 3, 1, 1), (4, 64, 128, 14, 1, 1, 0), (4, 16, 32, 31, 5, 2, 2), (2, 3, 64, 64, 7, 2, 3)])
def test_conv2d_bigger_shapes_on_a_real_gpu(n, c, k, size, kernel, stride, padding):
    rng = np.random.default_rng(0)
    dtype = np.dtype(np.float32)
    layer = nn.Conv2d(c, k, kernel, stride, padding, rng=rng)
    x = rng.standard_normal((n, c, size, size)).astype(dtype)
    xt, wt, bt = tensor(x), tensor(layer.weight.data), tensor(layer.bias.data)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding)
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    layer.to("cuda")
    y = layer(to_device(x, "cuda"))
    dx = layer.backward(to_device(dy, "cuda"))
    # long float32 sums (up to N·Ho·Wo = 6272 terms in dW): a looser bound than the tiny shapes'
    for ours, ref, what in [(y, yt, "y"), (dx, xt.grad, "dx"), (layer.weight.grad, wt.grad, "dw"),
                            (layer.bias.grad, bt.grad, "db")]:
        assert_close(to_numpy(ours), ref, dtype, what, factor=20)
