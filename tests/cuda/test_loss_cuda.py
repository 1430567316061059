"""Losses on the GPU: CUDA == CPU == PyTorch for the loss value and its gradient."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy
from numbanet.kernels.cpu.loss import MSE_CHUNK
from tests.oracle import assert_close, tensor
from tests.test_loss import _torch_cross_entropy

DTYPES = st.sampled_from([np.float64, np.float32])


@settings(max_examples=12)
@given(n=st.integers(1, 3), classes=st.integers(1, 5), smoothing=st.sampled_from([0.0, 0.1, 1.0]),
       reduction=st.sampled_from(["mean", "sum"]), scale=st.sampled_from([1.0, 1e4]),
       dloss=st.sampled_from([1.0, 0.3]), device_target=st.booleans(), dtype=DTYPES)
def test_cross_entropy_matches_cpu_and_torch(n, classes, smoothing, reduction, scale, dloss, device_target, dtype):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(n * 10 + classes)
    logits = (scale * rng.normal(size=(n, classes))).astype(dtype)
    target = rng.integers(0, classes, size=n)
    cpu, gpu = (nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction) for _ in range(2))
    loss, dlogits = cpu(logits, target), cpu.backward(dloss)
    loss_gpu = gpu(to_device(logits, "cuda"), to_device(target, "cuda") if device_target else target)
    dlogits_gpu = gpu.backward(dloss)
    assert isinstance(loss_gpu, float) and is_cuda(dlogits_gpu) and dlogits_gpu.dtype == dtype
    ref_loss, ref_grad = _torch_cross_entropy(logits, target, smoothing, reduction, dloss)
    for ours, cpu_value, ref, what in [(loss_gpu, loss, ref_loss, "loss"),
                                       (to_numpy(dlogits_gpu), dlogits, ref_grad, "dlogits")]:
        assert np.all(np.isfinite(ours))
        assert_close(ours, ref, dtype, f"{what} vs torch")
        assert_close(ours, cpu_value, dtype, f"{what} vs CPU")


def test_cross_entropy_functional_and_many_classes(rng):
    """More classes than threads per block: each thread sums several classes before the tree."""
    logits, target = rng.normal(size=(2, 300)) * 5, np.array([3, 299])
    logits_dev, target_dev = to_device(logits, "cuda"), to_device(target, "cuda")
    assert_close(F.cross_entropy(logits_dev, target_dev, 0.1), F.cross_entropy(logits, target, 0.1), np.float64)
    assert_close(to_numpy(F.cross_entropy_backward(logits_dev, target_dev, 0.1, "sum", 2.0)),
                 F.cross_entropy_backward(logits, target, 0.1, "sum", 2.0), np.float64)


def test_cross_entropy_bad_targets():
    logits = to_device(np.zeros((2, 3), np.float32), "cuda")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): target class indices must lie in 0..2 for 3 "
                                         r"classes, got \[3\]"):
        nn.CrossEntropyLoss()(logits, to_device(np.array([0, 3]), "cuda"))  # checked once the loss is NaN
    with pytest.raises(ValueError, match=r"cross_entropy: target class indices .* got \[-1\]"):
        F.cross_entropy(logits, np.array([-1, 0]))  # a host target is checked before the kernel
    with pytest.raises(TypeError, match="cross_entropy: target is on cuda but the input is on cpu"):
        F.cross_entropy(np.zeros((2, 3)), to_device(np.array([0, 1]), "cuda"))
    with pytest.raises(TypeError, match="expected target of integer class indices"):
        F.cross_entropy(logits, to_device(np.array([0.0, 1.0]), "cuda"))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(2, 3), (1, 2, 2, 3), (2, MSE_CHUNK // 2 + 3)], ids=["2d", "4d", "two-chunks"])
def test_mse_matches_cpu_and_torch(shape, reduction, dtype, rng):
    prediction, target = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    cpu, gpu = nn.MSELoss(reduction), nn.MSELoss(reduction)
    loss, grad = cpu(prediction, target), cpu.backward(0.3)
    loss_gpu = gpu(to_device(prediction, "cuda"), to_device(target, "cuda"))
    grad_gpu = to_numpy(gpu.backward(0.3))
    pt = tensor(prediction)
    ref = torch.nn.functional.mse_loss(pt, torch.from_numpy(target), reduction=reduction)
    (0.3 * ref).backward()
    assert isinstance(loss_gpu, float)
    for ours, cpu_value, theirs, what in [(loss_gpu, loss, ref.item(), "loss"), (grad_gpu, grad, pt.grad, "grad")]:
        assert_close(ours, theirs, dtype, f"{what} vs torch")
        assert_close(ours, cpu_value, dtype, f"{what} vs CPU")


def test_mse_device_mismatch():
    with pytest.raises(TypeError, match=r"MSELoss\(\): target is on cpu but the input is on cuda"):
        nn.MSELoss()(to_device(np.ones(3), "cuda"), np.ones(3))
