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


# -- caches between forward and backward (numbanet.caching) ------------------------------------------

def _torch_linear(ours):
    import torch
    lin = torch.nn.Linear(ours.in_features, ours.out_features, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(ours.weight.data))
        lin.bias.copy_(torch.tensor(ours.bias.data))
    return lin


def _reused_pair():
    """Ours and torch's Sequential(relu, lin, relu, block, block) with the ReLU and the block shared."""
    import torch
    rng = np.random.default_rng(0)
    relu, lin = nn.ReLU(), nn.Linear(5, 5, dtype=np.float64, rng=rng)
    block = nn.Sequential(nn.Linear(5, 5, dtype=np.float64, rng=rng), nn.Tanh())
    ours = nn.Sequential(relu, lin, relu, block, block)
    t_relu, t_block = torch.nn.ReLU(), torch.nn.Sequential(_torch_linear(block[0]), torch.nn.Tanh())
    theirs = torch.nn.Sequential(t_relu, _torch_linear(lin), t_relu, t_block, t_block)
    return ours, theirs


def test_a_module_used_twice_in_one_forward_matches_torch():
    import torch
    ours, theirs = _reused_pair()
    x = np.random.default_rng(1).normal(size=(4, 5))
    dy = np.random.default_rng(2).normal(size=(4, 5))
    xt = torch.tensor(x, requires_grad=True)
    theirs(xt).backward(torch.tensor(dy))
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert len(list(ours.parameters())) == len(list(theirs.parameters())) == 4, "shared parameters once"
    for ours_p, (name, torch_p) in zip(ours.parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(ours_p.grad, torch_p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    assert not any(m._caches.records for m in ours.modules()), "backward frees every cache"


def test_a_module_reused_in_concat_add_and_a_residual_block_matches_gradcheck(rng):
    from numbanet.models.resnet import BasicBlock
    conv = nn.Conv2d(2, 2, 3, padding=1, dtype=np.float64, rng=rng)
    block = BasicBlock(2, 2, dtype=np.float64, rng=rng)
    net = nn.Sequential(nn.Concat(conv, conv), nn.Conv2d(4, 2, 1, dtype=np.float64, rng=rng),
                        nn.Add(conv, conv), block, block).to(np.float64).eval()
    x = rng.normal(size=(2, 2, 4, 4))
    dy = rng.normal(size=net(x).shape)
    net.zero_grad()
    dx = net.backward(dy)
    nb.gradcheck(lambda x: float(np.sum(net(x) * dy)), [x], [dx], max_checks=20)
    weight = conv.weight
    nb.gradcheck(lambda w: float(np.sum(net(x) * dy)), [weight.data], [weight.grad.copy()], max_checks=20)


def test_backward_twice_raises_unless_the_first_retains_the_graph(rng):
    net = small_net()
    x = rng.normal(size=(2, 1, 4, 4)).astype(np.float32)
    dy = rng.normal(size=(2, 3)).astype(np.float32)
    net(x)
    first = net.backward(dy, retain_graph=True)
    grads = [p.grad.copy() for p in net.parameters()]
    np.testing.assert_array_equal(net.backward(dy), first)
    for p, g in zip(net.parameters(), grads):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-6)
    with pytest.raises(RuntimeError, match=r"Sequential\(.*\)\.backward: nothing left to differentiate.*retain_graph"):
        net.backward(dy)


def test_a_failed_backward_keeps_the_caches_for_a_corrected_one(rng):
    net = small_net()
    x = rng.normal(size=(2, 1, 4, 4)).astype(np.float32)
    net(x)
    with pytest.raises(ValueError, match="expected dout of shape"):
        net.backward(np.ones((2, 4), np.float32))
    assert net.backward(np.ones((2, 3), np.float32)).shape == x.shape


def test_forward_in_train_then_eval_mode_then_backward_raises(rng):
    net = small_net()
    x = rng.normal(size=(2, 1, 4, 4)).astype(np.float32)
    net(x)
    net.eval()
    net(x)
    with pytest.raises(RuntimeError, match="eval mode replaced the caches of a training-mode forward.*no_grad"):
        net.backward(np.ones((2, 3), np.float32))
    net(x)  # the eval forward again: now it is the one to differentiate
    assert net.backward(np.ones((2, 3), np.float32)).shape == x.shape


def test_a_training_forward_after_an_unused_evaluation_is_the_ordinary_loop(rng):
    net, x, dy = small_net(), rng.normal(size=(2, 1, 4, 4)).astype(np.float32), np.ones((2, 3), np.float32)
    net.eval()
    net(x)  # an evaluation outside no_grad
    net.train()
    net(x)
    assert net.backward(dy).shape == x.shape


def test_an_eval_pass_under_no_grad_leaves_the_training_caches_usable(rng):
    x = rng.normal(size=(2, 1, 4, 4)).astype(np.float32)
    dy = rng.normal(size=(2, 3)).astype(np.float32)
    a, b = small_net(), small_net()
    b.load_state_dict(a.state_dict())
    a(x)
    expected = a.backward(dy)
    b(x)
    with nb.no_grad():
        b.eval()
        b(x)
        b.train()
    np.testing.assert_array_equal(b.backward(dy), expected)
    b(x)
    b.eval()  # switching mode between a forward and its backward is fine: the cache is the forward's
    np.testing.assert_array_equal(b.backward(dy), expected)


def test_backward_after_a_no_grad_forward_raises_clearly(rng):
    layer = nn.Linear(3, 2)
    with nb.no_grad():
        assert not nb.is_grad_enabled()
        y = layer(np.ones((1, 3), np.float32))
    assert nb.is_grad_enabled()
    with pytest.raises(RuntimeError, match=r"Linear\(.*\)\.backward: the last forward ran under numbanet.no_grad"):
        layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="called before forward"):
        nn.ReLU().backward(np.ones(2, np.float32))


def test_a_cache_that_the_last_pass_did_not_write_is_refused(rng):
    class Skip(nb.Module):
        """Runs ``extra`` only when asked to; its backward (wrongly) always differentiates it."""

        def __init__(self):
            super().__init__()
            self.lin, self.extra = nn.Linear(2, 2), nn.ReLU()

        def forward(self, x, use_extra):
            y = self.lin(x)
            return self.extra(y) if use_extra else y

        def backward(self, dout):
            return self.lin.backward(self.extra.backward(dout))

    net, x = Skip(), np.ones((1, 2), np.float32)
    net(x, True)
    net(x, False)
    with pytest.raises(RuntimeError, match=r"ReLU\(\)\.backward: its cache comes from an earlier forward pass"):
        net.backward(np.ones((1, 2), np.float32))


def test_caches_do_not_see_the_caller_overwrite_inputs_or_outputs(rng):
    """Every layer that keeps an array keeps its own copy of what the caller can still write to."""
    cases = [
        (nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=rng), (2, 2, 5, 5)),
        (nn.Linear(4, 3, dtype=np.float64, rng=rng), (2, 4)),
        (nn.ReLU(), (3, 4)), (nn.Sigmoid(), (3, 4)), (nn.Tanh(), (3, 4)), (nn.GELU(), (3, 4)),
        (nn.BatchNorm2d(2).to(np.float64), (3, 2, 2, 2)), (nn.LayerNorm(4).to(np.float64), (3, 4)),
        (nn.LocalResponseNorm(3), (2, 4, 2, 2)), (nn.LPPool2d(2, 2), (1, 2, 4, 4)),
        (nn.Dice(3).to(np.float64), (4, 3)),
        (nn.Sequential(nn.Sigmoid(), nn.Flatten()), (2, 2, 3)),
    ]
    for layer, shape in cases:
        x = rng.uniform(0.5, 1.5, size=shape)
        y = layer(x)
        dy = rng.normal(size=y.shape)
        expected = layer.backward(dy, retain_graph=True)
        x[...] = -7.0
        y[...] = 3.0
        np.testing.assert_array_equal(layer.backward(dy), expected, err_msg=layer.describe())
    loss = nn.CrossEntropyLoss()
    logits, target = rng.normal(size=(3, 4)), np.array([0, 3, 1])
    loss(logits, target)
    expected = loss.backward(retain_graph=True)
    logits[...], target[...] = 0.0, 2
    np.testing.assert_array_equal(loss.backward(), expected)


def test_an_eval_dropout_still_returns_the_callers_array():
    x = np.ones((2, 3), np.float32)
    assert nn.Dropout(0.5).eval()(x) is x


def test_reusing_a_layer_across_separate_top_level_calls_raises_instead_of_mixing_caches():
    """Outside a module each call is its own pass, and a new pass replaces the layer's caches."""
    relu, lin = nn.ReLU(), nn.Linear(2, 2)
    relu(lin(relu(np.ones((1, 2), np.float32))))
    dh = lin.backward(relu.backward(np.ones((1, 2), np.float32)))
    with pytest.raises(RuntimeError, match=r"ReLU\(\)\.backward: nothing left to differentiate"):
        relu.backward(dh)


def test_add_grad_rejects_a_broadcastable_gradient_of_another_shape():
    param = nb.Parameter(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"Parameter.add_grad: expected a gradient of shape \(1, 3\).*got \(3,\)"):
        param.add_grad(np.ones(3, np.float32))
    param.add_grad(np.ones((1, 3), np.float32))
    assert param.grad.sum() == 3


def test_apply_visits_children_first_then_the_module_like_torch():
    import torch
    net, reference = small_net(), torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                                      torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(2, 3))
    seen, torch_seen = [], []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    reference.apply(lambda m: torch_seen.append(type(m).__name__))
    assert seen == torch_seen
    rng = np.random.default_rng(3)
    net.apply(lambda m: nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", rng=rng)
              if isinstance(m, nn.Conv2d) else None)
    expected = np.random.default_rng(3).standard_normal((2, 1, 3, 3), np.float32) * np.float32(np.sqrt(2 / 18))
    np.testing.assert_allclose(net[0].weight.data, expected, rtol=1e-6)


def test_load_state_dict_returns_the_keys_it_could_not_match():
    net = small_net()
    sd = net.state_dict()
    del sd["0.bias"]
    sd["extra.weight"] = np.zeros(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["extra.weight"]
    assert result == (["0.bias"], ["extra.weight"])
    assert net.load_state_dict(net.state_dict()) == ([], [])
    sd["4.weight"] = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"4.weight: expected shape \(3, 32\), got \(3, 5\)"):
        net.load_state_dict(sd, strict=False)  # shapes must match even when not strict, as in PyTorch
