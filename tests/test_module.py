"""Module plumbing: registration, traversal, modes, state dicts, dtype conversion, gradcheck."""
import numpy as np
import pytest

import numbanet as nb
from numbanet import nn


def small_net():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_named_parameters_follow_torch_naming():
    names = [name for name, _ in small_net().named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]


def test_state_dict_holds_parameters_and_buffers_as_copies():
    net = small_net()
    sd = net.state_dict()
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(sd)
    sd["0.weight"][...] = 7
    assert not np.any(net[0].weight.data == 7), "state_dict must return copies"


def test_load_state_dict_reports_every_problem_at_once():
    net = small_net()
    sd = net.state_dict()
    del sd["0.bias"]
    sd["4.weight"] = np.zeros((3, 5), np.float32)
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        net.load_state_dict(sd)
    message = str(info.value)
    assert "missing keys: ['0.bias']" in message
    assert "unexpected keys: ['extra.weight']" in message
    assert "4.weight: expected shape (3, 32), got (3, 5)" in message


def test_round_trip_is_exact():
    a, b = small_net(), small_net()
    a.train()
    a(np.random.default_rng(0).standard_normal((4, 1, 4, 4)).astype(np.float32))  # moves running stats
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(va, vb)


def test_train_and_eval_reach_every_submodule():
    net = small_net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_to_converts_parameters_gradients_and_float_buffers():
    net = small_net().to(np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net[1].running_var.dtype == np.float64
    assert net[1].num_batches_tracked.dtype == np.int64
    with pytest.raises(TypeError, match="expected float32 or float64, got int32"):
        net.to(np.int32)


def test_replacing_a_buffer_keeps_it_in_the_state_dict():
    bn = nn.BatchNorm2d(3)
    bn.running_mean = np.ones(3, np.float32)
    assert np.array_equal(bn.state_dict()["running_mean"], np.ones(3))


def test_zero_grad_clears_every_gradient():
    net = small_net()
    for p in net.parameters():
        p.grad[...] = 1
    net.zero_grad()
    assert not any(p.grad.any() for p in net.parameters())


def test_parameter_rejects_integer_data():
    with pytest.raises(TypeError, match="float32 or float64 data, got int64"):
        nb.Parameter(np.zeros(3, np.int64))


def test_gradcheck_passes_for_a_correct_gradient():
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert nb.gradcheck(lambda x: float(np.sum(x**3)), [x], [3 * x**2]) < 1e-6


def test_gradcheck_names_the_worst_index_on_failure():
    x = np.random.default_rng(0).standard_normal((3, 4))
    wrong = 3 * x**2
    wrong[1, 2] += 0.5
    with pytest.raises(AssertionError, match=r"input 0 at index \(1, 2\) \(the worst of 1 elements outside the tolerance\): analytic .* vs numeric"):
        nb.gradcheck(lambda x: float(np.sum(x**3)), [x], [wrong])


def test_gradcheck_samples_large_inputs_reproducibly():
    x = np.random.default_rng(0).standard_normal((40, 40))
    calls = []

    def f(x):
        calls.append(1)
        return float(np.sum(x**2))

    nb.gradcheck(f, [x], [2 * x], max_checks=10)
    assert len(calls) == 20  # two evaluations per sampled element


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        nb.gradcheck(lambda x: float(x.sum()), [np.zeros(3, np.float32)], [np.ones(3)])
