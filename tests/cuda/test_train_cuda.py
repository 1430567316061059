"""A small conv net trained on the GPU follows the CPU's trajectory step by step."""
import copy

import numpy as np
import pytest

from numbanet import nn, optim
from numbanet.device import is_cuda, to_device, to_numpy
from tests.oracle import assert_close


def small_net(dtype, rng):
    """Conv2d-BN-ReLU-MaxPool-Flatten-Linear for (N, 1, 4, 4) inputs and 3 classes.

    The convolution has no bias: BatchNorm cancels it, so its gradient is rounding noise,
    which Adam would scale up to full-size steps of a random sign.
    """
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False, dtype=dtype, rng=rng), nn.BatchNorm2d(2, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, 3, dtype=dtype, rng=rng))


def train(model, x, target, make_optimizer, steps):
    """``steps`` SGD steps; return the losses, whatever device the model and data are on."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model.parameters())
    losses = []
    for _ in range(steps):
        model.zero_grad()
        losses.append(loss_fn(model(x), target))
        model.backward(loss_fn.backward())
        optimizer.step()
    return losses


# Three optimizer steps amplify rounding differences: 10x the one-op bound for SGD.  Adam
# divides each step by sqrt(v): a parameter with a tiny gradient moves by ~lr whatever its
# rounding, so float32 differences grow more (1.5e-4 was seen): 100x for Adam.
@pytest.mark.parametrize("make_optimizer,factor", [
    (lambda params: optim.SGD(params, lr=0.2, momentum=0.9, weight_decay=1e-3), 10),
    (lambda params: optim.Adam(params, lr=0.05), 100),
], ids=["sgd-momentum", "adam"])
def test_three_training_steps_follow_the_cpu(make_optimizer, factor, dtype):
    rng = np.random.default_rng(3)
    cpu_model = small_net(dtype, rng)
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    x = rng.standard_normal((2, 1, 4, 4)).astype(dtype)
    target = np.array([0, 2])
    cpu_losses = train(cpu_model, x, target, make_optimizer, 3)
    gpu_losses = train(gpu_model, to_device(x, "cuda"), to_device(target, "cuda"), make_optimizer, 3)
    assert all(isinstance(loss, float) for loss in gpu_losses)
    assert cpu_losses[2] < cpu_losses[0], "the CPU run does not learn: a useless test"
    assert_close(gpu_losses, cpu_losses, dtype, "losses", factor=factor)
    for (name, p_gpu), (_, p_cpu) in zip(gpu_model.named_parameters(), cpu_model.named_parameters()):
        assert is_cuda(p_gpu.data), f"{name} left the GPU"
        assert_close(to_numpy(p_gpu.data), p_cpu.data, dtype, name, factor=factor)
    for (name, b_gpu), (_, b_cpu) in zip(gpu_model.named_buffers(), cpu_model.named_buffers()):
        assert is_cuda(b_gpu), f"buffer {name} left the GPU"
        assert_close(to_numpy(b_gpu), b_cpu, dtype, name, factor=factor)


@pytest.mark.gpu
def test_training_a_wider_net_on_a_real_gpu_follows_the_cpu():
    rng = np.random.default_rng(0)
    dtype = np.dtype(np.float32)
    cpu_model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, rng=rng), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, rng=rng), nn.BatchNorm2d(64), nn.ReLU(), nn.GlobalAvgPool2d(flatten=True),
        nn.Linear(64, 10, rng=rng))
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    x = rng.standard_normal((32, 3, 16, 16)).astype(dtype)
    target = rng.integers(0, 10, 32)

    def sgd(params):
        return optim.SGD(params, lr=0.05, momentum=0.9)

    cpu_losses = train(cpu_model, x, target, sgd, 3)
    gpu_losses = train(gpu_model, to_device(x, "cuda"), target, sgd, 3)
    assert_close(gpu_losses, cpu_losses, dtype, "losses", factor=100)


def test_fit_on_cuda_matches_fit_on_cpu():
    """``numbanet.train.fit(..., device="cuda")`` moves the model and every batch to the device."""
    from numbanet.data import DataLoader
    from numbanet.train import evaluate, fit

    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 1, 4, 4)).astype(np.float32)
    y = np.arange(8) % 3
    cpu_model = small_net(np.float32, np.random.default_rng(0))
    gpu_model = copy.deepcopy(cpu_model)
    histories = {}
    for name, model in (("cpu", cpu_model), ("cuda", gpu_model)):
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        histories[name] = fit(model, nn.CrossEntropyLoss(), opt, DataLoader((x, y), 4), epochs=2,
                              device=name, quiet=True)
    assert gpu_model.device == "cuda" and is_cuda(gpu_model[0].weight.data)
    np.testing.assert_allclose(histories["cuda"].train_loss, histories["cpu"].train_loss, rtol=1e-4)
    assert histories["cuda"].train_accuracy == histories["cpu"].train_accuracy
    np.testing.assert_allclose(evaluate(gpu_model, DataLoader((x, y), 4)),
                               evaluate(cpu_model, DataLoader((x, y), 4)), rtol=1e-4)
