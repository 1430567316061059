"""Linear, Flatten and the tiled GEMM on the GPU: CUDA == CPU == PyTorch (simulator-sized shapes)."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy
from numbanet.kernels.cuda import _common
from tests.oracle import assert_close, tensor


# cpu_and_gpu is a plain function: sharing it between examples is safe
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), in_features=st.integers(1, 9),
       out_features=st.integers(1, 9), bias=st.booleans(), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_linear_matches_cpu_and_torch(lead, in_features, out_features, bias, dtype, seed, cpu_and_gpu):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    layer = nn.Linear(in_features, out_features, bias=bias, dtype=dtype, rng=rng)
    x = rng.standard_normal((*lead, in_features)).astype(dtype)
    xt, wt = tensor(x), tensor(layer.weight.data)
    bt = tensor(layer.bias.data) if bias else None
    yt = torch.nn.functional.linear(xt, wt, bt)
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    cpu, gpu = cpu_and_gpu(layer, x, dy)
    for key, ref in {"y": yt, "dx": xt.grad, "dweight": wt.grad, "dbias": bt.grad if bias else None}.items():
        if ref is not None:
            assert gpu[key].shape == cpu[key].shape and gpu[key].dtype == dtype
            assert_close(gpu[key], ref, dtype, f"{key} vs torch")
            assert_close(gpu[key], cpu[key], dtype, f"{key} vs CPU")


def test_flatten_then_linear_on_the_device(rng, cpu_and_gpu):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, rng=rng))
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    cpu, gpu = cpu_and_gpu(model, x, dy)
    for key in cpu:
        assert_close(gpu[key], cpu[key], np.float32, key)
    assert gpu["dx"].shape == x.shape


@pytest.mark.parametrize("tile", [None, (4, 4, 2, 2), (8, 4, 1, 3), (4, 8, 2, 1)], ids=str)
@pytest.mark.parametrize("trans", ["nn", "nt", "tn"])
def test_tiled_matmul_matches_numpy(trans, tile, rng):
    """Every operand layout and several tile shapes, with ragged edges (no size divides the tile)."""
    m, depth, n = 7, 11, 9
    a, b = rng.standard_normal((m, depth)), rng.standard_normal((depth, n))
    a_dev = to_device(a.T.copy() if trans[0] == "t" else a, "cuda")
    b_dev = to_device(b.T.copy() if trans[1] == "t" else b, "cuda")
    out = _common.matmul(a_dev, b_dev, trans_a=trans[0] == "t", trans_b=trans[1] == "t", tile=tile)
    assert_close(to_numpy(out), a @ b, np.float64, f"{trans} {tile}")


@pytest.mark.parametrize("splits", [2, 5])
def test_split_k_matmul_adds_the_parts_in_order(splits, rng):
    a, b = rng.standard_normal((3, 13)).astype(np.float32), rng.standard_normal((13, 4)).astype(np.float32)
    a_dev, b_dev = to_device(a, "cuda"), to_device(b, "cuda")
    out = to_numpy(_common.matmul(a_dev, b_dev, splits=splits))
    assert_close(out, a @ b, np.float32, f"{splits} splits")
    assert np.array_equal(out, to_numpy(_common.matmul(a_dev, b_dev, splits=splits))), "not deterministic"


def test_launch_configurations_are_valid_on_hardware():
    for n in [1, 31, 32, 33, 1000, 10**7]:
        blocks, threads = _common.launch_1d(n)
        assert threads % 32 == 0 and 32 <= threads <= 1024 and blocks * threads >= n
    assert [_common.reduce_threads(n) for n in (1, 64, 65, 10**6)] == [32, 64, 128, 256]
    for m, n in [(1, 1), (3, 500), (64, 64), (1000, 7)]:
        ty, tx, ry, rx = _common.gemm_tile(m, n)
        assert ty * tx <= 1024
        slab = max(ty, tx) * (ty * ry + 1 + tx * rx + 1) * 8  # float64 slabs of A and B
        assert slab <= 48 * 1024
    assert _common.split_k(64, 576, 64 * 56 * 56) > 1 and _common.split_k(64, 576, 100) == 1


def test_functional_linear_dispatches_and_errors_name_both_devices(rng):
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    xd, wd, bd = (to_device(a, "cuda") for a in (x, w, b))
    y = F.linear(xd, wd, bd)
    assert is_cuda(y)
    assert_close(to_numpy(y), F.linear(x, w, b), np.float64, "y")
    dy = rng.standard_normal((4, 2))
    for ours, theirs, what in zip(F.linear_backward(to_device(dy, "cuda"), xd, wd), F.linear_backward(dy, x, w),
                                  ["dx", "dw", "db"]):
        assert is_cuda(ours)
        assert_close(to_numpy(ours), theirs, np.float64, what)
    layer = nn.Linear(3, 2, dtype=np.float64)
    with pytest.raises(TypeError, match=r"Linear\(in_features=3, out_features=2, bias=True\): input is on cuda but "
                                        r"the layer's parameters are on cpu"):
        layer(xd)
    layer.to("cuda")
    with pytest.raises(TypeError, match=r"Linear\(in_features=3.*input is on cpu but the layer's parameters are on cuda"):
        layer(x)
    with pytest.raises(ValueError, match=r"Linear\(in_features=3.*expected input of shape \(\*, 3\)"):
        layer(to_device(np.zeros((4, 5)), "cuda"))
    with pytest.raises(TypeError, match="linear_backward: dy is on cpu but the forward pass ran on cuda"):
        F.linear_backward(dy, xd, wd)


@pytest.mark.gpu
@pytest.mark.parametrize("m, depth, n", [(512, 1024, 256), (128, 9216, 4096), (1, 4096, 1000)])
def test_matmul_bigger_shapes_on_a_real_gpu(m, depth, n):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, depth)).astype(np.float32), rng.standard_normal((depth, n)).astype(np.float32)
    out = to_numpy(_common.matmul(to_device(a, "cuda"), to_device(b, "cuda")))
    assert_close(out, a.astype(np.float64) @ b, np.float32, "matmul", factor=20)


@pytest.mark.gpu
def test_linear_bigger_shapes_on_a_real_gpu():
    rng = np.random.default_rng(0)
    layer = nn.Linear(2048, 1000, rng=rng)
    x = rng.standard_normal((256, 2048)).astype(np.float32)
    dy = rng.standard_normal((256, 1000)).astype(np.float32)
    y, dx = layer(x), layer.backward(dy)
    dw = layer.weight.grad.copy()
    layer.zero_grad()
    layer.to("cuda")
    y_dev, dx_dev = layer(to_device(x, "cuda")), layer.backward(to_device(dy, "cuda"))
    for ours, theirs, what in [(y_dev, y, "y"), (dx_dev, dx, "dx"), (layer.weight.grad, dw, "dw")]:
        assert_close(to_numpy(ours), theirs, np.float32, what, factor=20)
