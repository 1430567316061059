"""Activations and Dice on the GPU: CUDA == CPU == PyTorch, forward and backward (simulator-sized shapes)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy
from tests.oracle import assert_close, tensor
from tests.test_activation import ACTIVATIONS, IDS, torch_dice

DTYPES = st.sampled_from([np.float64, np.float32])
# (batch 1-2, channels 1-3, up to two spatial dims <= 5)
SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.lists(st.integers(1, 5), max_size=2)).map(
    lambda t: (t[0], t[1], *t[2]))


def run_both(make_layer, x, dy):
    """(y, dx) of the layer on the CPU and on the GPU (the latter copied back)."""
    cpu_layer, gpu_layer = make_layer(), make_layer().to("cuda")
    y, dx = cpu_layer(x), cpu_layer.backward(dy)
    y_dev = gpu_layer(to_device(x, "cuda"))
    assert is_cuda(y_dev)
    dx_dev = gpu_layer.backward(to_device(dy, "cuda"))
    assert is_cuda(dx_dev)
    return (y, dx), (to_numpy(y_dev), to_numpy(dx_dev))


@pytest.mark.parametrize("make_layer, torch_fn", [a[1:] for a in ACTIVATIONS], ids=IDS)
@settings(max_examples=3)
@given(shape=SHAPES, dtype=DTYPES, seed=st.integers(0, 2**16))
def test_matches_cpu_and_torch(make_layer, torch_fn, shape, dtype, seed):
    rng, dtype = np.random.default_rng(seed), np.dtype(dtype)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x[rng.random(shape) < 0.1] = 0.0
    dy = rng.standard_normal(shape).astype(dtype)
    (y, dx), (y_gpu, dx_gpu) = run_both(make_layer, x, dy)
    xt = tensor(x.astype(np.float64))  # the reference in float64: float32 PyTorch rounds more than we do
    yt = torch_fn(xt)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    assert y_gpu.dtype == dtype and dx_gpu.dtype == dtype
    assert_close(y_gpu, yt, dtype, "forward vs torch")
    assert_close(dx_gpu, xt.grad, dtype, "dx vs torch")
    assert_close(y_gpu, y, dtype, "forward vs CPU")
    assert_close(dx_gpu, dx, dtype, "dx vs CPU")


@pytest.mark.parametrize("make_layer, torch_fn", [a[1:] for a in ACTIVATIONS], ids=IDS)
def test_extreme_inputs_match_cpu(make_layer, torch_fn):
    x = np.array([-1000.0, -700.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 700.0, 1000.0], np.float32)
    (y, dx), (y_gpu, dx_gpu) = run_both(make_layer, x, np.ones_like(x))
    assert np.isfinite(y_gpu).all() and np.isfinite(dx_gpu).all()
    assert_close(y_gpu, y, np.float32, "forward")
    assert_close(dx_gpu, dx, np.float32, "dx")


def test_relu_keeps_nan_and_functional_forms_dispatch():
    x = np.array([np.nan, -1.0, 0.0, 2.0])
    y = to_numpy(F.relu(to_device(x, "cuda")))
    assert np.isnan(y[0]) and (y[1:] == [0, 0, 2]).all()
    x = np.array([-2.0, 0.5, 3.0])
    x_dev, dy_dev = to_device(x, "cuda"), to_device(np.ones(3), "cuda")
    for forward, backward in [(F.gelu, F.gelu_backward), (F.silu, F.silu_backward), (F.selu, F.selu_backward)]:
        np.testing.assert_allclose(to_numpy(forward(x_dev)), forward(x), rtol=1e-14)
        np.testing.assert_allclose(to_numpy(backward(dy_dev, x_dev)), backward(np.ones(3), x), rtol=1e-14)


@settings(max_examples=6)
@given(n=st.integers(1, 2), c=st.integers(1, 3), length=st.sampled_from([None, 1, 4]), training=st.booleans(),
       dtype=DTYPES, seed=st.integers(0, 2**16))
def test_dice_matches_cpu_and_torch(n, c, length, training, dtype, seed):
    rng, dtype = np.random.default_rng(seed), np.dtype(dtype)
    shape = (n, c) if length is None else (n, c, length)
    if training and n * (length or 1) < 2:
        shape = (2, *shape[1:])
    alpha, mean, var = rng.uniform(-1, 1, c), rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def make_layer():
        layer = nn.Dice(c, dtype=dtype).train(training)
        layer.alpha.data[:], layer.running_mean[:], layer.running_var[:] = alpha, mean, var
        return layer

    x, dy = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    cpu_layer, gpu_layer = make_layer(), make_layer().to("cuda")
    y, dx = cpu_layer(x), cpu_layer.backward(dy)
    y_gpu = to_numpy(gpu_layer(to_device(x, "cuda")))
    dx_gpu = to_numpy(gpu_layer.backward(to_device(dy, "cuda")))
    assert is_cuda(gpu_layer.running_mean) and is_cuda(gpu_layer.alpha.grad)

    # the reference in float64 (from the same float32-rounded values): a 2-sample batch
    # normalisation with eps = 1e-8 is ill-conditioned enough that float32 PyTorch is off by 2e-5
    alpha_t = tensor(alpha.astype(dtype).astype(np.float64))
    running = [torch.tensor(mean.astype(dtype).astype(np.float64)), torch.tensor(var.astype(dtype).astype(np.float64))]
    xt = tensor(x.astype(np.float64))
    yt = torch_dice(xt, alpha_t, *running, training)
    yt.backward(torch.from_numpy(dy.astype(np.float64)))
    for ours, cpu, ref, what in [(y_gpu, y, yt, "forward"), (dx_gpu, dx, xt.grad, "dx"),
                                 (to_numpy(gpu_layer.alpha.grad), cpu_layer.alpha.grad, alpha_t.grad, "dalpha"),
                                 (to_numpy(gpu_layer.running_mean), cpu_layer.running_mean, running[0], "mean"),
                                 (to_numpy(gpu_layer.running_var), cpu_layer.running_var, running[1], "var")]:
        assert_close(ours, ref, dtype, f"{what} vs torch")
        assert_close(ours, cpu, dtype, f"{what} vs CPU")


def test_dice_functional_on_device_matches_cpu(rng):
    x, dy, alpha = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2)), rng.uniform(-1, 1, 2)
    dev = [to_device(a, "cuda") for a in (x, dy, alpha)]
    np.testing.assert_allclose(to_numpy(F.dice(dev[0], dev[2], training=True)), F.dice(x, alpha, training=True),
                               rtol=1e-12)
    dx, dalpha = F.dice_backward(dev[1], dev[0], dev[2], training=True)
    dx_cpu, dalpha_cpu = F.dice_backward(dy, x, alpha, training=True)
    np.testing.assert_allclose(to_numpy(dx), dx_cpu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(dalpha), dalpha_cpu, rtol=1e-12, atol=1e-14)


def test_errors_name_the_layer_and_devices():
    layer = nn.ReLU()
    layer(to_device(np.ones((2, 3)), "cuda"))
    with pytest.raises(TypeError, match=r"ReLU\(\)\.backward: dout is on cpu but the forward pass ran on cuda"):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(TypeError, match="relu_backward: dy is on cpu but the forward pass ran on cuda"):
        F.relu_backward(np.ones(3), to_device(np.ones(3), "cuda"))
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        F.gelu(to_device(np.ones(3), "cuda"), approximate="fast")
    dice = nn.Dice(3)
    with pytest.raises(TypeError, match=r"Dice\(3.*input is on cuda but the layer's parameters are on cpu"):
        dice(to_device(np.ones((2, 3), np.float32), "cuda"))


# Engineer B's kernels (activation, dropout, norm, loss, optim) compiled to PTX for a T4 (sm_75) with
# NVVM outside the simulator, with the set-up of tests/cuda/test_device_cuda.py (which pins the
# driver and NVRTC look-ups): NVVM rejects what only the simulator accepts.
_B_KERNELS = r'''
from numba.cuda.random import xoroshiro128p_type
from numbanet.kernels.cuda import _common as C, activation as A, dropout as D, loss as L, norm as N, optim as O

def arr(dtype, ndim):
    return types.Array(dtype, ndim, "C")

F, I, B = types.float64, types.int64, types.boolean
failures = []
for dt in (types.float32, types.float64):
    x3, v, st, st1, m2, i1 = arr(dt, 3), arr(dt, 1), arr(F, 2), arr(F, 1), arr(dt, 2), arr(I, 1)
    kernels = {
        "moments": (N._moments_kernel, (x3, F, st, st, st)),
        "fixed statistics": (N._fixed_statistics_kernel, (v, v, F, st, st)),
        "running update": (N._update_running_kernel, (st, st, F, F, v, v)),
        "normalize": (N._normalize_kernel, (x3, st, st, v, v, x3, B, B, x3)),
        "affine grads": (N._affine_param_grads_kernel, (x3, x3, st, st, v, v, B, F, B, v, v, st, st)),
        "block grad sums": (N._block_grad_sums_kernel, (x3, x3, st, st, v, st, st)),
        "norm dx": (N._normalized_input_grad_kernel, (x3, x3, st, st, v, v, B, F, st, st, x3)),
        "lrn": (N._lrn_output_kernel, (x3, I, F, F, F, x3, x3)),
        "lrn terms": (N._lrn_grad_terms_kernel, (x3, x3, x3, F, x3)),
        "lrn dx": (N._lrn_input_grad_kernel, (x3, x3, x3, x3, I, F, F, x3)),
        "dice": (A._dice_kernel, (x3, v, st1, st1, x3)),
        "dice sums": (A._dice_sums_kernel, (x3, x3, v, st1, st1, v, st1, st1)),
        "dice dx": (A._dice_input_grad_kernel, (x3, x3, v, st1, st1, st1, st1, B, x3)),
        "cross entropy": (L._cross_entropy_rows_kernel, (m2, i1, F, st1, st1)),
        "cross entropy dx": (L._cross_entropy_backward_kernel, (m2, i1, st1, F, F, m2)),
        "mse partials": (L._squared_error_partials_kernel, (v, v, st1)),
        "mse dx": (L._squared_error_backward_kernel, (v, v, F, v)),
        "sum all": (C._sum_all_kernel, (v, st1)),
        "sgd": (O._sgd_kernel, (v, v, F, F)),
        "sgd momentum": (O._sgd_momentum_kernel, (v, v, v, F, F, F, F, B, B)),
        "adam": (O._adam_kernel, (v, v, v, v, F, F, F, F, F, F, F)),
        "dropout mask": (D._apply_mask_kernel, (v, arr(B, 1), dt, v)),
        "dropout draw": (D._draw_keep_kernel, (arr(xoroshiro128p_type, 1), F, arr(B, 1))),
        "count batch": (N._increment_kernel, (i1,)),
    }
    for name, (forward, backward) in A._KERNELS.items():  # every formula of kernels.formulas.ACTIVATIONS
        kernels[name] = (forward, (v, F, F, v))
        kernels[name + " dx"] = (backward, (v, v, F, F, v))
    for name, (kernel, signature) in kernels.items():
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(7, 5))
        except Exception as error:
            failures.append(f"{name} {dt}: {type(error).__name__}: {str(error)[:300]}")
            continue
        shared = sum(int(n) for n in __import__("re").findall(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]", ptx))
        if shared > 48 * 1024:
            failures.append(f"{name} {dt}: {shared} bytes of static shared memory > 48 KiB")
print("FAILURES:" if failures else "OK", *failures, sep="\n")
'''


def test_kernels_compile_to_ptx_for_a_real_gpu():
    from test_device_cuda import _PTX_SCRIPT
    setup = _PTX_SCRIPT[:_PTX_SCRIPT.index("from numbanet.kernels.cuda import")]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.setdefault("CUDA_HOME", "/usr/local/cuda")
    out = subprocess.run([sys.executable, "-c", setup + _B_KERNELS], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    assert out.stdout.strip() == "OK", out.stdout
