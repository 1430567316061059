"""Devices: nb.device, moving arrays and modules, state dicts, and the errors that name both devices."""
import os
import subprocess
import sys

import numpy as np
import pytest

import numbanet as nb
from numbanet import nn
from numbanet._validate import check_device
from numbanet.device import CPU, CUDA, Device, device_of, is_cuda, to_device, to_numpy


def test_device_names_and_equality():
    assert nb.device("cpu") == CPU == "cpu" and nb.device("cuda") == CUDA == "cuda"
    assert nb.device("CUDA:0") == CUDA and Device(CUDA) is not CUDA and Device(CUDA) == CUDA
    assert str(CUDA) == "cuda" and repr(CPU) == "device(type='cpu')" and len({CPU, Device("cpu")}) == 1
    assert CUDA != "tpu"
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda', got 'tpu'"):
        nb.device("tpu")


def test_asking_for_cuda_without_a_gpu_says_how_to_get_one(monkeypatch):
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    for ask in (lambda: nb.device("cuda"), lambda: nb.to_device(np.zeros(2), "cuda"),
                lambda: nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError, match=r"no CUDA GPU is available.*Runtime > Change runtime type > GPU.*"
                                               r"NUMBA_ENABLE_CUDASIM=1 before numba is imported"):
            ask()
    assert nb.device("cpu") == CPU  # the CPU needs nothing


def test_arrays_move_and_come_back(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    x_dev = nb.to_device(x, "cuda")
    assert is_cuda(x_dev) and not is_cuda(x) and device_of(x_dev) == CUDA and device_of(x) == CPU
    assert nb.to_device(x_dev, "cuda") is x_dev
    back = nb.to_numpy(x_dev)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32 and np.array_equal(back, x)
    assert np.array_equal(nb.to_device(x_dev, nb.device("cpu")), x)
    assert nb.to_device(np.array(3), "cuda").shape == ()  # a 0-d array stays 0-d
    assert np.array_equal(nb.to_numpy(x[:, ::2]), x[:, ::2])
    assert to_device(x.T, "cuda").is_c_contiguous()


def bn_net(rng):
    return nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2, rng=rng))


def test_module_to_moves_parameters_gradients_and_buffers_and_back(rng):
    model = bn_net(rng)
    before = model.state_dict()
    for p in model.parameters():
        p.grad[...] = 1.5
    assert model.to("cuda") is model and model.device == CUDA
    for name, p in model.named_parameters():
        assert is_cuda(p.data) and is_cuda(p.grad) and p.device == CUDA, name
        assert "device='cuda'" in repr(p)
    for name, buffer in model.named_buffers():
        assert is_cuda(buffer), name
    bn = model[1]
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert all(np.array_equal(state[k], before[k]) for k in before)
    assert all((to_numpy(p.grad) == 1.5).all() for p in model.parameters())
    model.zero_grad()
    assert all(is_cuda(p.grad) and not to_numpy(p.grad).any() for p in model.parameters())
    model.to(np.float64)  # a dtype change keeps the device
    assert all(is_cuda(p.data) and p.dtype == np.float64 for p in model.parameters())
    assert is_cuda(bn.running_mean) and bn.running_mean.dtype == np.float64
    model.to("cpu")
    assert model.device == CPU
    assert all(isinstance(p.data, np.ndarray) and isinstance(p.grad, np.ndarray) for p in model.parameters())
    assert all(isinstance(b, np.ndarray) for _, b in model.named_buffers())
    assert nn.ReLU().device == CPU and nn.ReLU().to("cuda").device == CPU  # parameter-free


def test_load_state_dict_into_a_model_on_the_gpu(rng):
    source, target = bn_net(rng), bn_net(np.random.default_rng(99)).to("cuda")
    source[1].running_mean[...] = 0.25
    target.load_state_dict(source.state_dict())
    for (name, ours), (_, theirs) in zip(target.state_dict().items(), source.state_dict().items()):
        assert np.array_equal(ours, theirs), name
    assert all(is_cuda(p.data) for p in target.parameters()) and is_cuda(target[1].running_mean)


def test_gpu_forward_matches_after_moving_there_and_back(rng):
    model = bn_net(rng).eval()
    x = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    y = model(x)
    y_dev = model.to("cuda")(nb.to_device(x, "cuda"))
    np.testing.assert_allclose(to_numpy(y_dev), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.to("cpu")(x), y)


def test_mixed_devices_name_the_layer_and_both_devices(rng):
    layer = nn.Linear(3, 2, rng=rng)
    x = rng.standard_normal((1, 3)).astype(np.float32)
    with pytest.raises(TypeError, match=r"Linear\(in_features=3, out_features=2, bias=True\): input is on cuda "
                                        r"but the layer's parameters are on cpu; move the model with "
                                        r"model.to\('cuda'\)"):
        layer(nb.to_device(x, "cuda"))
    layer.to("cuda")
    with pytest.raises(TypeError, match=r"Linear\(in_features=3.*: input is on cpu but the layer's parameters are "
                                        r"on cuda; move the input with numbanet.to_device\(x, 'cuda'\)"):
        layer(x)
    with pytest.raises(TypeError, match="my_layer: weight is on cpu but the layer's parameters are on cuda"):
        check_device("my_layer", x, layer.weight.data, name="weight")


def test_non_contiguous_device_arrays_are_refused_clearly(rng):
    x_dev = nb.to_device(rng.standard_normal((1, 2, 4, 4)).astype(np.float32), "cuda")
    with pytest.raises(ValueError, match=r"MaxPool2d\(.*input is a non-contiguous CUDA device array of shape "
                                         r"\(1, 2, 4, 2\)"):
        nn.MaxPool2d(2)(x_dev[:, :, :, ::2])


def test_importing_numbanet_does_not_import_numba_cuda():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = "import sys, numbanet; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


# Compiles engineer-A kernels (GEMM, convolution, linear, pooling, joins) to PTX for a T4 (sm_75)
# with NVVM, outside the simulator: NVVM rejects what only the simulator accepts (array
# expressions on local arrays, shapes that are not compile-time constants, Python objects).
# No GPU is needed, only libNVVM and libdevice; numba-cuda asks the driver and NVRTC for the
# compute capability and the libdevice path, so those three look-ups are pinned here.
_PTX_SCRIPT = r'''
import glob, os, sys, types as pytypes
os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
libdevice = sorted(glob.glob(os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "nvvm/libdevice/*.bc"))
                   + glob.glob("/usr/local/cuda*/nvvm/libdevice/*.bc"))
if not libdevice:
    print("SKIP: no libdevice (CUDA toolkit) found"); sys.exit(0)
try:
    from numba.cuda.cudadrv import libs, nvrtc, nvvm
    import numba.cuda.dispatcher as dispatcher
    nvrtc.get_supported_ccs = lambda: ((7, 5), (8, 0), (9, 0))
    libs.get_libdevice = nvvm.get_libdevice = lambda: libdevice[-1]
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(7, 5))
    import numba
    import numpy as np
    from numba import cuda, types
    cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=(7, 5))
except Exception as error:
    print(f"SKIP: cannot compile PTX here ({type(error).__name__}: {str(error)[:200]})"); sys.exit(0)
from numbanet.kernels.cuda import _common as C, conv as K, container as Q, linear as L, pooling as P

def arr(dtype, ndim):
    return types.Array(numba.from_dtype(np.dtype(dtype)), ndim, "C")

I, F, INT3 = types.int64, types.float64, arr(np.int64, 3)
tup = lambda n: types.UniTuple(types.int64, n)
failures = []
for dt in (np.float32, np.float64):
    A = lambda ndim: arr(dt, ndim)
    gemm_args = lambda a, b, c, geom: (A(a), A(b), A(c), I, I, I, I, tup(geom))
    kernels = {
        "fill": (C._fill_kernel, (A(1), numba.from_dtype(np.dtype(dt)))),
        "copy": (C._copy_kernel, (A(1), A(1))), "accumulate": (C._accumulate_kernel, (A(1), A(1))),
        "sum_leading": (C._sum_leading_kernel, (A(2), A(1))),
        "conv bias": (K._add_channel_bias_kernel, (A(3), A(1))), "conv db": (K._channel_sum_kernel, (A(3), A(1))),
        "row bias": (L._add_row_bias_kernel, (A(2), A(1))), "column sum": (L._column_sum_kernel, (A(2), A(1))),
        "max pool": (P._max_pool_kernel, (A(3), tup(11), A(3), INT3)),
        "max pool dx": (P._max_pool_backward_kernel, (A(3), INT3, tup(11), A(3))),
        "mean pool": (P._mean_pool_kernel, (A(3), tup(11), I, A(3))),
        "mean pool dx": (P._mean_pool_backward_kernel, (A(3), tup(11), I, A(3))),
        "power pool": (P._power_pool_kernel, (A(3), F, tup(11), F, A(3))),
        "power pool dx": (P._power_pool_backward_kernel, (A(3), A(3), A(3), F, tup(11), F, A(3))),
        "copy slab": (Q._copy_slab_kernel, (A(3), I, A(3), I, I)), "add": (Q._add_kernel, (A(1), A(1), A(1))),
    }
    for key, gemm in C._MATMUL.items():
        kernels[f"matmul {key}"] = (gemm.kernel(dt, (16, 16, 4, 4)), gemm_args(2, 2, 2, 1))
    for key, gemm in C._MATMUL_SPLIT.items():
        kernels[f"matmul split {key}"] = (gemm.kernel(dt, (16, 16, 4, 4)), gemm_args(2, 2, 3, 1))
    for tile in [(4, 16, 1, 4), (8, 8, 1, 1)]:  # the small tiles of skinny products
        kernels[f"matmul {tile}"] = (C._MATMUL["n", "n"].kernel(dt, tile), gemm_args(2, 2, 2, 1))
    for name, gemm, shapes, geom in [("conv", K._FORWARD, (4, 4, 4), 11), ("conv dx", K._BACKWARD_INPUT, (4, 4, 4), 11),
                                     ("conv dw", K._BACKWARD_WEIGHT, (4, 4, 3), 11),
                                     ("1x1", K._POINTWISE_FORWARD, (2, 3, 3), 1),
                                     ("1x1 dx", K._POINTWISE_INPUT, (2, 3, 3), 1),
                                     ("1x1 dw", K._POINTWISE_WEIGHT, (3, 3, 3), 1)]:
        kernels[name] = (gemm.kernel(dt, (16, 16, 4, 4)), gemm_args(*shapes, geom))
    for name, (kernel, signature) in kernels.items():
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(7, 5))
        except Exception as error:
            failures.append(f"{name} {dt.__name__}: {type(error).__name__}: {str(error)[:300]}")
            continue
        shared = sum(int(n) for n in __import__("re").findall(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]", ptx))
        if shared > 48 * 1024:
            failures.append(f"{name} {dt.__name__}: {shared} bytes of static shared memory > 48 KiB")
print("FAILURES:" if failures else "OK", *failures, sep="\n")
'''


def test_kernels_compile_to_ptx_for_a_real_gpu():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.setdefault("CUDA_HOME", "/usr/local/cuda")
    out = subprocess.run([sys.executable, "-c", _PTX_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    assert out.stdout.strip() == "OK", out.stdout


def test_initialisers_fill_parameters_on_the_gpu_like_on_the_cpu():
    cpu_layer, gpu_layer = nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 3).to("cuda")
    for fill in (lambda p, rng: nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu", rng=rng),
                 lambda p, rng: nn.init.xavier_uniform_(p, rng=rng),
                 lambda p, rng: nn.init.uniform_(p, -0.5, 0.5, rng=rng)):
        fill(cpu_layer.weight, np.random.default_rng(0))
        fill(gpu_layer.weight, np.random.default_rng(0))
        assert is_cuda(gpu_layer.weight.data)
        np.testing.assert_array_equal(to_numpy(gpu_layer.weight.data), cpu_layer.weight.data)
    nn.init.constant_(gpu_layer.bias, 0.25)
    nn.init.zeros_(cpu_layer.bias)
    np.testing.assert_array_equal(to_numpy(gpu_layer.bias.data), np.full(3, 0.25, np.float32))
    gpu_layer.apply(lambda m: nn.init.ones_(m.bias) if isinstance(m, nn.Conv2d) else None)
    np.testing.assert_array_equal(to_numpy(gpu_layer.bias.data), np.ones(3, np.float32))


def test_a_cache_keeps_its_own_copy_of_a_device_input():
    layer = nn.ReLU()
    x_host = np.array([[-1.0, 2.0]])
    x = to_device(x_host, "cuda")
    layer(x)
    x.copy_to_device(np.array([[3.0, -4.0]]))  # the caller overwrites its input after forward
    np.testing.assert_array_equal(to_numpy(layer.backward(to_device(np.ones((1, 2)), "cuda"))), [[0.0, 1.0]])
