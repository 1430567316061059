"""Normalisation layers on the GPU: CUDA == CPU == PyTorch, forward, backward, running statistics."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy
from tests.oracle import TORCH_DTYPE, assert_close, load_torch_weights, tensor
from tests.test_norm import KINDS, build, make_input, randomize


def gpu_copy(layer):
    """A copy of ``layer`` (arguments, state and mode) moved to the GPU."""
    return copy.deepcopy(layer).to("cuda")


def check_cpu_gpu_torch(ours, theirs, x, rng, train=True):
    """Forward, dx, parameter gradients and buffers after one step: GPU vs CPU vs a torch module."""
    dtype = x.dtype
    theirs = theirs.to(TORCH_DTYPE[dtype]).train(train)
    load_torch_weights(theirs, ours)
    ours.train(train)
    gpu = gpu_copy(ours)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, dx = ours(x), ours.backward(dy)
    y_dev = gpu(to_device(x, "cuda"))
    dx_dev = gpu.backward(to_device(dy, "cuda"))
    assert is_cuda(y_dev) and is_cuda(dx_dev)
    xt = tensor(x)
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))
    for ours_gpu, ours_cpu, ref, what in [(y_dev, y, yt, "forward"), (dx_dev, dx, xt.grad, "dx")]:
        assert_close(to_numpy(ours_gpu), ref, dtype, f"{what} vs torch")
        assert_close(to_numpy(ours_gpu), ours_cpu, dtype, f"{what} vs CPU")
    their_params = dict(theirs.named_parameters())
    for (name, param), (_, cpu_param) in zip(gpu.named_parameters(), ours.named_parameters()):
        assert is_cuda(param.grad)
        assert_close(to_numpy(param.grad), their_params[name].grad, dtype, f"d{name} vs torch")
        assert_close(to_numpy(param.grad), cpu_param.grad, dtype, f"d{name} vs CPU")
    their_buffers = dict(theirs.named_buffers())
    for (name, buffer), (_, cpu_buffer) in zip(gpu.named_buffers(), ours.named_buffers()):
        assert is_cuda(buffer)
        if name == "num_batches_tracked":
            assert to_numpy(buffer).item() == int(cpu_buffer) == int(their_buffers[name])
        else:
            assert_close(to_numpy(buffer), their_buffers[name], dtype, f"{name} vs torch")
            assert_close(to_numpy(buffer), cpu_buffer, dtype, f"{name} vs CPU")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=2)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 5),
       groups_pick=st.integers(0, 2), trailing=st.integers(1, 3), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_layer_matches_cpu_and_torch(kind, train, n, c, h, w, groups_pick, trailing, dtype, seed):
    dtype = np.dtype(dtype)
    shape = {"BatchNorm1d-NC": (n, c), "BatchNorm1d-NCL": (n, c, w)}.get(kind, (n, c, h, w))
    positions = int(np.prod(shape[2:]))
    divisors = [g for g in range(1, c + 1) if c % g == 0]
    groups = divisors[groups_pick % len(divisors)]
    # the configurations PyTorch refuses, and float32 blocks of one element (see tests/test_norm.py)
    assume(not (kind.startswith("BatchNorm") and train and n * positions == 1))
    assume(not (kind.startswith("InstanceNorm") and (train or kind == "InstanceNorm2d") and positions == 1))
    block = {"GroupNorm": c // groups * positions, "LayerNorm": int(np.prod(shape[len(shape) - trailing:]))}
    assume(block.get(kind, 2) > 1 or (kind == "GroupNorm" and n > 1 and dtype == np.float64))
    rng = np.random.default_rng(seed)
    ours, theirs = build(kind, shape, groups, trailing, dtype)
    x = make_input(rng, shape, dtype, loc=2.0)
    check_cpu_gpu_torch(randomize(ours, rng), theirs, x, rng, train)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_local_response_norm_matches_cpu_and_torch(size, dtype, rng):
    x = make_input(rng, (2, 4, 2, 3), dtype)
    check_cpu_gpu_torch(nn.LocalResponseNorm(size, 0.5, 0.75, 2.0), torch.nn.LocalResponseNorm(size, 0.5, 0.75, 2.0),
                        x, rng)


@pytest.mark.parametrize("momentum", [0.3, None])
def test_batchnorm_running_statistics_over_steps(momentum, rng):
    """Three training steps then eval: the device's running statistics and counter follow the CPU's."""
    cpu = nn.BatchNorm2d(3, momentum=momentum)
    gpu = nn.BatchNorm2d(3, momentum=momentum).to("cuda")
    for step in range(4):
        if step == 3:
            cpu.eval(), gpu.eval()
        x = make_input(rng, (2, 3, 2, 2), np.float32, loc=step, scale=step + 1)
        assert_close(to_numpy(gpu(to_device(x, "cuda"))), cpu(x), np.float32, f"step {step}")
        assert_close(to_numpy(gpu.running_mean), cpu.running_mean, np.float32, "running_mean")
        assert_close(to_numpy(gpu.running_var), cpu.running_var, np.float32, "running_var")
    assert to_numpy(gpu.num_batches_tracked).item() == 3
    assert [a.tolist() for a in gpu.affine_params()] == [a.tolist() for a in cpu.affine_params()]


def test_functional_forms_on_device_match_the_layers(rng):
    x, dy = rng.standard_normal((2, 4, 2, 3)), rng.standard_normal((2, 4, 2, 3))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    xd, dyd, gd, bd = (to_device(a, "cuda") for a in (x, dy, gamma, beta))
    running = [np.zeros(4), np.ones(4)]
    running_dev = [to_device(a, "cuda") for a in running]
    cases = [
        (lambda x, g, b, r: F.batch_norm(x, *r, g, b, training=True),
         lambda dy, x, g, r: F.batch_norm_backward(dy, x, *r, g, training=True)),
        (lambda x, g, b, r: F.batch_norm(x, *r, g, b, training=False),
         lambda dy, x, g, r: F.batch_norm_backward(dy, x, *r, g, training=False)),
        (lambda x, g, b, r: F.group_norm(x, 2, g, b), lambda dy, x, g, r: F.group_norm_backward(dy, x, 2, g)),
        (lambda x, g, b, r: F.instance_norm(x, weight=g, bias=b),
         lambda dy, x, g, r: F.instance_norm_backward(dy, x, weight=g)),
        (lambda x, g, b, r: F.group_norm(x, 1, None, None), lambda dy, x, g, r: F.group_norm_backward(dy, x, 1)),
    ]
    for forward, backward in cases:
        np.testing.assert_allclose(to_numpy(forward(xd, gd, bd, running_dev)), forward(x, gamma, beta, running),
                                   rtol=1e-12, atol=1e-12)
        for ours, theirs in zip(backward(dyd, xd, gd, running_dev), backward(dy, x, gamma, running)):
            np.testing.assert_allclose(to_numpy(ours), theirs, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(running[0], np.zeros(4))  # F.batch_norm updated the running statistics in place
    for ours, theirs in zip(running_dev, running):
        assert is_cuda(ours)
        np.testing.assert_allclose(to_numpy(ours), theirs, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(F.layer_norm(xd, (2, 3))), F.layer_norm(x, (2, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(F.layer_norm_backward(dyd, xd, (2, 3))[0]),
                               F.layer_norm_backward(dy, x, (2, 3))[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(F.local_response_norm_backward(dyd, xd, 3, 0.5)),
                               F.local_response_norm_backward(dy, x, 3, 0.5), rtol=1e-12, atol=1e-12)


def test_device_mismatch_errors_name_the_layer_and_devices():
    x_dev = to_device(np.ones((2, 3, 2, 2), np.float32), "cuda")
    with pytest.raises(TypeError, match=r"BatchNorm2d\(3.*input is on cuda but the layer's parameters are on cpu"):
        nn.BatchNorm2d(3)(x_dev)
    gpu = nn.LayerNorm(2).to("cuda")
    with pytest.raises(TypeError, match=r"LayerNorm\(\(2,\).*input is on cpu but the layer's parameters are on cuda"):
        gpu(np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="batch_norm: input is on cuda but"):
        F.batch_norm(x_dev, np.zeros(3, np.float32), np.ones(3, np.float32), training=True)
    with pytest.raises(TypeError, match="group_norm: expected weight of dtype float32, got float64"):
        F.group_norm(x_dev, 1, to_device(np.ones(3), "cuda"))
    layer = nn.GroupNorm(1, 3).to("cuda")
    layer(x_dev)
    with pytest.raises(TypeError, match=r"GroupNorm\(1, 3.*\.backward: dout is on cpu"):
        layer.backward(np.ones((2, 3, 2, 2), np.float32))


def test_local_response_norm_backward_checks_the_device_of_dout():
    layer = nn.LocalResponseNorm(3)
    layer(to_device(np.ones((1, 3, 2, 2), np.float32), "cuda"))
    with pytest.raises(TypeError, match=r"LocalResponseNorm\(3.*\.backward: dout is on cpu but the forward pass ran on cuda"):
        layer.backward(np.ones((1, 3, 2, 2), np.float32))


def test_functional_backward_checks_dy_on_the_gpu_like_on_the_cpu():
    x = to_device(np.ones((2, 3, 2, 2), np.float32), "cuda")
    with pytest.raises(ValueError, match=r"group_norm_backward: expected dy of shape \(2, 3, 2, 2\)"):
        F.group_norm_backward(to_device(np.ones((2, 3, 2), np.float32), "cuda"), x, 1)
    with pytest.raises(TypeError, match=r"group_norm_backward: expected dy of dtype float32, got float64"):
        F.group_norm_backward(to_device(np.ones((2, 3, 2, 2)), "cuda"), x, 1)
    with pytest.raises(TypeError, match=r"expected dy of dtype float32 or float64, got int64"):
        F.relu_backward(to_device(np.ones((2, 3, 2, 2), np.int64), "cuda"), x)
    with pytest.raises(ValueError, match=r"relu_backward: expected dy of shape \(2, 3, 2, 2\)"):
        F.relu_backward(to_device(np.ones((2, 3, 2), np.float32), "cuda"), x)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_fused_batchnorm_relu_and_residual_tail_on_the_gpu(train, rng):
    """BN -> ReLU (Sequential) and a residual block's BN + shortcut -> ReLU tail, fused on the device:
    the same as the device's separate layers bit for bit, and close to the CPU's fused result."""
    from numbanet.models.resnet import BasicBlock, projection
    from tests.test_fusion import boundary_input, unfused
    cases = [(nn.Sequential(randomize(nn.BatchNorm2d(3), rng), nn.ReLU()), (2, 3, 3, 4)),
             (BasicBlock(2, 4, 2, projection(2, 4, 2, rng=rng), rng=rng), (2, 2, 4, 4))]
    for cpu_module, shape in cases:
        x = boundary_input(rng, shape, np.float32)
        gpu_fused = gpu_copy(cpu_module).train(train)
        gpu_separate = gpu_copy(unfused(cpu_module)).train(train)
        cpu_module.train(train)
        y = cpu_module(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = cpu_module.backward(dy)
        outs = []
        for gpu in (gpu_fused, gpu_separate):
            y_dev = gpu(to_device(x, "cuda"))
            outs.append((to_numpy(y_dev), to_numpy(gpu.backward(to_device(dy, "cuda"))),
                         [to_numpy(p.grad) for p in gpu.parameters()]))
        (y1, dx1, g1), (y2, dx2, g2) = outs
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(dx1, dx2)
        for a, b in zip(g1, g2):
            np.testing.assert_array_equal(a, b)
        assert_close(y1, y, np.float32, "forward vs CPU")
        assert_close(dx1, dx, np.float32, "dx vs CPU")
        for a, p in zip(g1, cpu_module.parameters()):
            assert_close(a, p.grad, np.float32, "grad vs CPU")
