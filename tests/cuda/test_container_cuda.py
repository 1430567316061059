"""Sequential, Concat (Inception) and Add (residual) on the GPU: CUDA == CPU == PyTorch."""
import numpy as np
import pytest
import torch

from numbanet import nn
from numbanet.device import is_cuda, to_device, to_numpy
from numbanet.kernels.cuda import container as cuda_container
from tests.oracle import assert_close, load_torch_weights, tensor
from tests.test_container import TorchAdd, TorchConcat, _conv_pair, _inception


def check(ours, ref, x, rng, cpu_and_gpu):
    """Forward, dx and every parameter gradient: GPU vs CPU vs the torch module ``ref``."""
    dtype = x.dtype
    load_torch_weights(ref, ours)
    xt = tensor(x)
    yt = ref(xt)
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    cpu, gpu = cpu_and_gpu(ours, x, dy)
    reference = {"y": yt, "dx": xt.grad, **{"d" + name: p.grad for name, p in ref.named_parameters()}}
    assert set(reference) == set(gpu)
    for key, value in reference.items():
        assert_close(gpu[key], value, dtype, f"{key} vs torch")
        assert_close(gpu[key], cpu[key], dtype, f"{key} vs CPU")


def test_inception_concat_matches_cpu_and_torch(dtype, rng, cpu_and_gpu):
    ours, ref = _inception(2, [2, 1, 2, 1], dtype, rng)
    check(ours, ref, rng.standard_normal((2, 2, 4, 3)).astype(dtype), rng, cpu_and_gpu)


def test_concat_along_the_last_dim(rng, cpu_and_gpu):
    dtype = np.dtype(np.float32)
    (a, ta), (b, tb) = _conv_pair(2, 2, 3, 1, dtype, rng), _conv_pair(2, 2, 1, 0, dtype, rng)
    check(nn.Concat(a, b, dim=-1), TorchConcat(ta, tb, dim=-1), rng.standard_normal((1, 2, 3, 2)).astype(dtype),
          rng, cpu_and_gpu)


@pytest.mark.parametrize("projection", [False, True], ids=["identity", "projection"])
def test_residual_add_matches_cpu_and_torch(projection, dtype, rng, cpu_and_gpu):
    (c1, t1), (c2, t2) = _conv_pair(2, 2, 3, 1, dtype, rng), _conv_pair(2, 2, 1, 0, dtype, rng)
    if projection:
        (s, ts) = _conv_pair(2, 2, 1, 0, dtype, rng)
        ours, ref = nn.Add(nn.Sequential(c1, c2), s), TorchAdd(torch.nn.Sequential(t1, t2), ts)
    else:
        ours, ref = nn.Add(nn.Sequential(c1, c2)), TorchAdd(torch.nn.Sequential(t1, t2))
    check(ours, ref, rng.standard_normal((2, 2, 3, 3)).astype(dtype), rng, cpu_and_gpu)


def test_join_kernels_round_trip(rng):
    parts = [rng.standard_normal((2, c, 3, 2)).astype(np.float32) for c in (1, 3, 2)]
    for axis in range(4):
        pieces = [np.moveaxis(p, 1, axis) for p in parts]
        joined = cuda_container.concatenate([to_device(np.ascontiguousarray(p), "cuda") for p in pieces], axis)
        assert is_cuda(joined)
        np.testing.assert_array_equal(to_numpy(joined), np.concatenate(pieces, axis))
        back = cuda_container.split(joined, [p.shape[axis] for p in pieces], axis)
        for ours, theirs in zip(back, pieces):
            np.testing.assert_array_equal(to_numpy(ours), theirs)
    total = cuda_container.sum_arrays([to_device(parts[0], "cuda")] * 3)
    np.testing.assert_array_equal(to_numpy(total), parts[0] + parts[0] + parts[0])


def test_sequential_checks_the_device_of_dout(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 1, rng=rng), nn.Flatten()).to("cuda")
    model(to_device(np.zeros((1, 1, 2, 2), np.float32), "cuda"))
    with pytest.raises(TypeError, match=r"Sequential\(Conv2d, Flatten\)\.backward: dout is on cpu but the "
                                        r"forward pass ran on cuda"):
        model.backward(np.zeros((1, 8), np.float32))
