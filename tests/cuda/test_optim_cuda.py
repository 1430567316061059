"""Optimizers on the GPU: five steps follow the CPU trajectory; the state lives on the device."""
import numpy as np
import pytest

from numbanet import nn, optim
from numbanet.device import is_cuda, to_device, to_numpy
from numbanet.tensor import Parameter
from tests.oracle import assert_close

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd-decay": lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.01),
    "momentum-dampening": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99)),
}
SHAPES = [(2, 3), (3,), (1, 2, 2, 2)]


def trajectories(make_optimizer, dtype, steps=5, seed=0):
    """Parameter values after each step, on the CPU and on the GPU, fed the same gradients."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    cpu_params = [Parameter(v.copy()) for v in values]
    gpu_params = [Parameter(to_device(v, "cuda")) for v in values]
    cpu_opt, gpu_opt = make_optimizer(cpu_params), make_optimizer(gpu_params)
    cpu_path, gpu_path = [], []
    for _ in range(steps):
        for cpu_p, gpu_p in zip(cpu_params, gpu_params):
            grad = rng.standard_normal(cpu_p.shape).astype(dtype)
            cpu_p.grad[...] = grad
            gpu_p.grad = to_device(grad, "cuda")
        cpu_opt.step()
        gpu_opt.step()
        cpu_path.append([p.data.copy() for p in cpu_params])
        gpu_path.append([to_numpy(p.data) for p in gpu_params])
    return cpu_path, gpu_path, gpu_opt


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_five_steps_follow_the_cpu_trajectory(name, dtype):
    cpu_path, gpu_path, gpu_opt = trajectories(OPTIMIZERS[name], dtype)
    for step, (cpu_values, gpu_values) in enumerate(zip(cpu_path, gpu_path)):
        for i, (ours, theirs) in enumerate(zip(gpu_values, cpu_values)):
            assert ours.dtype == dtype
            assert_close(ours, theirs, dtype, f"step {step + 1}, parameter {i}")
    for state, param in zip(gpu_opt.state, gpu_opt.params):
        assert is_cuda(param.data)
        assert all(is_cuda(v) for v in state.values() if not isinstance(v, int))


def test_state_dict_round_trip_and_moving_the_model():
    """Checkpoints hold NumPy arrays; loaded state and state of a model moved later follow the parameters."""
    _, _, gpu_opt = trajectories(OPTIMIZERS["adam"], np.float32, steps=2)
    saved = gpu_opt.state_dict()
    assert all(isinstance(v, (np.ndarray, int)) for entry in saved["state"].values() for v in entry.values())
    fresh = optim.Adam(gpu_opt.params, lr=0.01, weight_decay=0.01)
    fresh.load_state_dict(saved)
    assert is_cuda(fresh.state[0]["exp_avg"]) and fresh.state[0]["step"] == 2
    np.testing.assert_array_equal(to_numpy(fresh.state[1]["exp_avg_sq"]), saved["state"][1]["exp_avg_sq"])

    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    model.to("cuda")
    for p in model.parameters():
        p.grad = to_device(np.ones(p.shape, np.float32), "cuda")
    opt.step()  # the CPU momentum buffers follow the parameters to the GPU
    assert all(is_cuda(s["momentum_buffer"]) for s in opt.state)
    np.testing.assert_allclose(to_numpy(opt.state[0]["momentum_buffer"]), np.full((2, 3), 1.9), rtol=1e-6)
