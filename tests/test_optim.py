"""Optimizers and schedulers against torch.optim on a fixed least-squares problem."""
import numpy as np
import pytest
import torch

from numbanet import nn, optim
from numbanet.tensor import Parameter
from tests.oracle import TORCH_DTYPE, assert_close

DTYPES = pytest.mark.parametrize("dtype", [np.dtype(np.float64), np.dtype(np.float32)], ids=["f64", "f32"])

_data = np.random.default_rng(7)
FEATURES = _data.normal(size=(8, 4))
TARGETS = _data.normal(size=(8, 3))
W0, B0 = _data.normal(size=(3, 4)), _data.normal(size=3)


def regression_grads(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of L = ‖A Wᵀ + b − Y‖² / (2·8) in the parameters' dtype."""
    a, y = FEATURES.astype(w.dtype), TARGETS.astype(w.dtype)
    residual = a @ w.T + b - y
    return residual.T @ a / len(a), residual.sum(axis=0) / len(a)


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.05, betas=(0.85, 0.995), weight_decay=0.3)),
]


def _ours(dtype):
    return [Parameter(W0.astype(dtype)), Parameter(B0.astype(dtype))]


def _theirs(dtype):
    return [torch.tensor(W0, dtype=TORCH_DTYPE[np.dtype(dtype)], requires_grad=True),
            torch.tensor(B0, dtype=TORCH_DTYPE[np.dtype(dtype)], requires_grad=True)]


def _step_ours(opt, params):
    opt.zero_grad()
    for p, g in zip(params, regression_grads(params[0].data, params[1].data)):
        p.grad += g
    opt.step()


def _step_theirs(opt, params):
    opt.zero_grad()
    for p, g in zip(params, regression_grads(params[0].detach().numpy(), params[1].detach().numpy())):
        p.grad = torch.tensor(g)
    opt.step()


@DTYPES
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{sorted(k.items())}" for n, k in CONFIGS])
def test_trajectory_matches_torch(dtype, name, kwargs):
    ours, theirs = _ours(dtype), _theirs(dtype)
    opt = getattr(optim, name)(ours, **kwargs)
    ref = getattr(torch.optim, name)(theirs, **kwargs, foreach=False)
    losses = []
    for step in range(20):
        _step_ours(opt, ours)
        _step_theirs(ref, theirs)
        for i, (p, t) in enumerate(zip(ours, theirs)):
            assert p.dtype == dtype
            assert_close(p.data, t, dtype, f"param {i} after step {step + 1}")
        losses.append(np.sum((FEATURES @ ours[0].data.T + ours[1].data - TARGETS) ** 2))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name, kwargs", [CONFIGS[3], CONFIGS[7], CONFIGS[9]], ids=["sgd", "adam", "adamw"])
def test_state_dict_resumes_exactly(name, kwargs):
    uninterrupted, resumed = _ours(np.float64), _ours(np.float64)
    opt = getattr(optim, name)(uninterrupted, **kwargs)
    first = getattr(optim, name)(resumed, **kwargs)
    for _ in range(10):
        _step_ours(opt, uninterrupted)
        _step_ours(first, resumed)
    saved = first.state_dict()
    for entry in first.state_dict()["state"].values():  # the saved arrays are copies
        for value in entry.values():
            if isinstance(value, np.ndarray):
                value[...] = 123.0
    second = getattr(optim, name)(resumed, lr=1.0)
    second.load_state_dict(saved)
    assert second.lr == kwargs["lr"]
    for _ in range(10):
        _step_ours(opt, uninterrupted)
        _step_ours(second, resumed)
    for p, q in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_follows_a_dtype_change_and_loads_in_param_dtype():
    params = _ours(np.float32)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    _step_ours(opt, params)
    saved = opt.state_dict()
    assert saved["state"][0]["momentum_buffer"].dtype == np.float32
    for p in params:
        p.astype(np.float64)
    _step_ours(opt, params)
    assert opt.state[0]["momentum_buffer"].dtype == np.float64
    opt.load_state_dict(saved)
    assert opt.state[1]["momentum_buffer"].dtype == np.float64


def test_optimizer_works_on_a_model():
    model = nn.Linear(4, 3, dtype=np.float64, rng=np.random.default_rng(0))
    opt = optim.Adam(model.parameters(), lr=0.05)
    crit = nn.MSELoss()
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = crit(model(FEATURES), TARGETS)
        model.backward(crit.backward())
        opt.step()
        first = loss if first is None else first
    assert loss < 0.5 * first


def test_optimizer_bad_input():
    params = _ours(np.float64)
    with pytest.raises(TypeError, match=r"SGD: params must be an iterable of Parameters, e.g. model.parameters\(\), "
                                        r"got Linear"):
        optim.SGD(nn.Linear(2, 2), lr=0.1)
    with pytest.raises(TypeError, match=r"Adam: params\[0\] is a Linear, expected a Parameter"):
        optim.Adam(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD: a parameter appears more than once"):
        optim.SGD([params[0], params[0]], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD: lr must lie in \[0.0, inf\], got -0.1"):
        optim.SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match=r"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                                         r"got momentum=0.0, dampening=0.0"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"AdamW: betas\[1\] must lie in \[0.0, 1.0\), got 1.0"):
        optim.AdamW(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"Adam: weight_decay must lie in \[0.0, inf\], got -1.0"):
        optim.Adam(params, weight_decay=-1)
    opt = optim.Adam(params)
    opt.step()
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(4)
    bad["state"][5] = {}
    bad["hyperparameters"]["momentum"] = 0.9
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: unknown hyperparameters \['momentum'\].*; "
                                         r"state\[1\]\['exp_avg'\]: expected shape \(3,\), got \(4,\); "
                                         r"state index 5 is not a parameter index 0..1"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"expected keys \['hyperparameters', 'state'\], got \['state'\]"):
        opt.load_state_dict({"state": {}})


# -- schedulers -------------------------------------------------------------------------------------
SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("StepLR", dict(step_size=7)),
    ("MultiStepLR", dict(milestones=[12, 5, 20, 12], gamma=0.3)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=30)),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULERS, ids=[f"{n}-{sorted(k.items())}" for n, k in SCHEDULERS])
def test_scheduler_matches_torch(name, kwargs):
    opt = optim.SGD(_ours(np.float64), lr=0.2)
    ref_opt = torch.optim.SGD(_theirs(np.float64), lr=0.2)
    sched = getattr(optim, name)(opt, **kwargs)
    ref = getattr(torch.optim.lr_scheduler, name)(ref_opt, **kwargs)
    ours, theirs = [], []
    for _ in range(30):
        ours.append(sched.get_last_lr()[0])
        theirs.append(ref.get_last_lr()[0])
        assert opt.lr == ours[-1]
        ref_opt.step()
        sched.step()
        ref.step()
    assert_close(ours, theirs, np.float64, f"{name} learning rates")


def test_scheduled_momentum_training_matches_torch():
    ours, theirs = _ours(np.float64), _theirs(np.float64)
    opt, ref_opt = optim.SGD(ours, lr=0.1, momentum=0.9), torch.optim.SGD(theirs, lr=0.1, momentum=0.9)
    sched, ref = optim.StepLR(opt, 2, 0.5), torch.optim.lr_scheduler.StepLR(ref_opt, 2, 0.5)
    for _ in range(6):
        for _ in range(3):
            _step_ours(opt, ours)
            _step_theirs(ref_opt, theirs)
        sched.step()
        ref.step()
    for p, t in zip(ours, theirs):
        assert_close(p.data, t, np.float64, "parameters after 6 scheduled epochs")


def test_scheduler_state_dict_and_bad_input():
    opt = optim.SGD(_ours(np.float64), lr=1.0)
    sched = optim.MultiStepLR(opt, [2, 4])
    for _ in range(5):
        sched.step()
    saved = sched.state_dict()
    other = optim.MultiStepLR(optim.SGD(_ours(np.float64), lr=1.0), [2, 4])
    other.load_state_dict(saved)
    assert other.optimizer.lr == opt.lr == pytest.approx(0.01) and other.last_epoch == 5
    with pytest.raises(TypeError, match=r"StepLR: expected a numbanet Optimizer, got SGD"):
        optim.StepLR(torch.optim.SGD(_theirs(np.float64), lr=0.1), 2)
    with pytest.raises(ValueError, match=r"StepLR: step_size must be an integer >= 1, got 0"):
        optim.StepLR(opt, 0)
    with pytest.raises(ValueError, match=r"CosineAnnealingLR: T_max must be >= 1, got 0"):
        optim.CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match=r"MultiStepLR: milestones must be >= 0, got \[-1, 3\]"):
        optim.MultiStepLR(opt, [3, -1])


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam"])
def test_parallel_and_serial_updates_agree_bit_for_bit(name):
    """Each CPU update is compiled parallel (large parameters) and serial (small ones) from one body."""
    from numbanet.kernels.cpu import optim as cpu_optim

    update = getattr(cpu_optim, name)
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(1000).astype(np.float32) for _ in range(4)]
    args = {"sgd": (0.1, 0.01), "sgd_momentum": (0.1, 0.01, 0.9, 0.0, False, False),
            "adam": (0.01, 0.9, 0.999, 1e-8, 0.99, 0.01, 1.0)}[name]
    count = {"sgd": 2, "sgd_momentum": 3, "adam": 4}[name]
    results = []
    for kernel in (update.parallel, update.serial):
        state = [a.copy() for a in arrays[:count]]
        kernel(*state, *args)
        results.append(state)
    for parallel, serial in zip(*results):
        np.testing.assert_array_equal(parallel, serial)
    assert arrays[0].shape[0] < cpu_optim.PARALLEL_FROM  # the dispatcher itself picks the serial one here
