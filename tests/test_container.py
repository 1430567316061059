"""Sequential, Concat (Inception) and Add (residual) against the equivalent torch graphs."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from numbanet import nn
from numbanet.gradcheck import gradcheck
from tests.oracle import TORCH_DTYPE, assert_close, load_torch_weights, tensor

DTYPES = pytest.mark.parametrize("dtype", [np.dtype(np.float64), np.dtype(np.float32)], ids=["f64", "f32"])


class TorchConcat(torch.nn.Module):
    """torch.cat of the branch outputs; branches named "0", "1", … like ours."""

    def __init__(self, *branches, dim=1):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(str(i), branch)
        self.dim = dim

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], dim=self.dim)


class TorchAdd(torch.nn.Module):
    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


def _compare(ours, ref, x, dtype, seed=0):
    """Forward, dx and every parameter gradient of ``ours`` against the torch module ``ref``."""
    load_torch_weights(ref, ours)
    ours.zero_grad()
    y = ours(x)
    xt = tensor(x)
    yt = ref(xt)
    assert y.dtype == dtype
    assert_close(y, yt, dtype, "forward")
    dout = np.random.default_rng(seed).normal(size=y.shape).astype(dtype)
    dx = ours.backward(dout)
    yt.backward(torch.tensor(dout))
    assert_close(dx, xt.grad, dtype, "dx")
    ref_grads = [p.grad for p in ref.parameters()]
    grads = [p.grad for p in ours.parameters()]
    assert len(grads) == len(ref_grads)
    for i, (g, rg) in enumerate(zip(grads, ref_grads)):
        assert_close(g, rg, dtype, f"grad of parameter {i}")


def _conv_pair(cin, cout, k, pad, dtype, rng):
    return (nn.Conv2d(cin, cout, k, padding=pad, dtype=dtype, rng=rng),
            torch.nn.Conv2d(cin, cout, k, padding=pad, dtype=TORCH_DTYPE[np.dtype(dtype)]))


def _image(rng, shape, dtype, contiguous):
    """NCHW input; a transposed (N, C, W, H) → (N, C, H, W) view when not ``contiguous``."""
    if contiguous:
        return rng.normal(size=shape).astype(dtype)
    n, c, h, w = shape
    return rng.normal(size=(n, c, w, h)).astype(dtype).transpose(0, 1, 3, 2)


image_shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(3, 7), st.integers(3, 7))


# -- Sequential -----------------------------------------------------------------------
def test_sequential_container_api():
    a, b, c = nn.Linear(4, 3), nn.Flatten(), nn.Linear(3, 2)
    seq = nn.Sequential(a, c)
    assert len(seq) == 2 and list(seq) == [a, c] and seq[0] is a and seq[-1] is c
    assert seq.append(b) is seq and seq[2] is b and [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, c]
    named = nn.Sequential(OrderedDict([("fc", a), ("out", c)]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    assert named[1] is c
    with pytest.raises(IndexError, match=r"Sequential: index 3 out of range for 3 children"):
        seq[3]
    with pytest.raises(TypeError, match=r"Sequential: module '1' must be a numbanet Module, "
                                        r"got builtin_function_or_method"):
        nn.Sequential(a, max)
    with pytest.raises(TypeError, match=r"Sequential.append: the argument must be a numbanet Module, got int"):
        seq.append(3)
    empty = nn.Sequential()
    x = np.ones((2, 3))
    assert empty(x) is x and np.array_equal(empty.backward(x), x)


@DTYPES
@given(shape=image_shapes, cout=st.integers(1, 3), classes=st.integers(1, 4), contiguous=st.booleans())
def test_sequential_matches_torch(dtype, shape, cout, classes, contiguous):
    rng = np.random.default_rng(sum(shape) + cout)
    n, cin, h, w = shape
    conv, tconv = _conv_pair(cin, cout, 3, 1, dtype, rng)
    ours = nn.Sequential(conv, nn.Flatten(), nn.Linear(cout * h * w, classes, dtype=dtype, rng=rng))
    ref = torch.nn.Sequential(tconv, torch.nn.Flatten(),
                              torch.nn.Linear(cout * h * w, classes, dtype=TORCH_DTYPE[np.dtype(dtype)]))
    assert list(ours.state_dict()) == list(ref.state_dict())
    _compare(ours, ref, _image(rng, shape, dtype, contiguous), dtype)


# -- Concat (Inception) ---------------------------------------------------------------------
def _inception(cin, widths, dtype, rng):
    """Branches 1x1, 3x3 (pad 1) and 1x1 → 3x3, as ours and as torch modules."""
    (c1, t1), (c3, t3) = _conv_pair(cin, widths[0], 1, 0, dtype, rng), _conv_pair(cin, widths[1], 3, 1, dtype, rng)
    (r, tr), (r3, tr3) = (_conv_pair(cin, widths[2], 1, 0, dtype, rng),
                          _conv_pair(widths[2], widths[3], 3, 1, dtype, rng))
    ours = nn.Concat(c1, c3, nn.Sequential(r, r3))
    ref = TorchConcat(t1, t3, torch.nn.Sequential(tr, tr3))
    return ours, ref


@DTYPES
@given(shape=image_shapes, widths=st.lists(st.integers(1, 3), min_size=4, max_size=4), contiguous=st.booleans())
def test_concat_matches_torch(dtype, shape, widths, contiguous):
    rng = np.random.default_rng(sum(shape) + sum(widths))
    ours, ref = _inception(shape[1], widths, dtype, rng)
    assert list(ours.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                       "2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias"]
    _compare(ours, ref, _image(rng, shape, dtype, contiguous), dtype)


@DTYPES
def test_concat_other_dim_matches_torch(dtype, rng):
    (a, ta), (b, tb) = _conv_pair(2, 3, 3, 1, dtype, rng), _conv_pair(2, 3, 3, 0, dtype, rng)
    ours, ref = nn.Concat(a, b, dim=-1), TorchConcat(ta, tb, dim=-1)
    x = rng.normal(size=(2, 2, 5, 4)).astype(dtype)
    with pytest.raises(ValueError, match=r"equal shapes except at dim -1, "
                                         r"got shapes \[\(2, 3, 5, 4\), \(2, 3, 3, 2\)\]"):
        ours(x)
    (b, tb) = _conv_pair(2, 3, 1, 0, dtype, rng)
    _compare(nn.Concat(a, b, dim=-1), TorchConcat(ta, tb, dim=-1), x, dtype)


def test_concat_gradcheck(rng):
    ours, _ = _inception(2, [2, 1, 2, 1], np.float64, rng)
    x = rng.normal(size=(2, 2, 4, 3))
    weights = rng.normal(size=(2, 4, 4, 3))
    params = [p.data for p in ours.parameters()]

    def loss(x, *params):
        return float(np.sum(ours(x) * weights))

    loss(x)
    dx = ours.backward(weights)
    gradcheck(loss, [x, *params], [dx, *[p.grad for p in ours.parameters()]], max_checks=40)


# -- Add (residual) --------------------------------------------------------------------------
@DTYPES
@given(shape=image_shapes, cout=st.integers(1, 3), projection=st.booleans(), contiguous=st.booleans())
def test_add_matches_torch(dtype, shape, cout, projection, contiguous):
    rng = np.random.default_rng(sum(shape) + cout + projection)
    cin = shape[1]
    cout = cout if projection else cin  # the identity shortcut needs equal channels
    (c1, t1), (c2, t2) = _conv_pair(cin, cout, 3, 1, dtype, rng), _conv_pair(cout, cout, 3, 1, dtype, rng)
    if projection:
        shortcut, tshortcut = _conv_pair(cin, cout, 1, 0, dtype, rng)
        ours = nn.Add(nn.Sequential(c1, c2), nn.Sequential(shortcut))
        ref = TorchAdd(torch.nn.Sequential(t1, t2), torch.nn.Sequential(tshortcut))
    else:
        ours, ref = nn.Add(nn.Sequential(c1, c2)), TorchAdd(torch.nn.Sequential(t1, t2))
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert list(ours.state_dict())[0] == "body.0.weight"
    _compare(ours, ref, _image(rng, shape, dtype, contiguous), dtype)


def test_add_with_flatten_body_does_not_modify_dout(rng):
    # Flatten∘Flatten(0) hands back a view of dout; the sum must not write into it
    ours = nn.Add(nn.Sequential(nn.Flatten(0), nn.Flatten(0)))
    x = rng.normal(size=(5,))
    ours(x)
    dout = rng.normal(size=5)
    kept = dout.copy()
    np.testing.assert_array_equal(ours.backward(dout), 2 * kept)
    np.testing.assert_array_equal(dout, kept)


@pytest.mark.parametrize("projection", [False, True], ids=["identity", "projection"])
def test_add_gradcheck(rng, projection):
    (c1, _), (c2, _) = _conv_pair(2, 2, 3, 1, np.float64, rng), _conv_pair(2, 2, 3, 1, np.float64, rng)
    shortcut = _conv_pair(2, 2, 1, 0, np.float64, rng)[0] if projection else None
    ours = nn.Add(nn.Sequential(c1, c2), shortcut)
    x = rng.normal(size=(2, 2, 3, 4))
    weights = rng.normal(size=(2, 2, 3, 4))
    params = [p.data for p in ours.parameters()]

    def loss(x, *params):
        return float(np.sum(ours(x) * weights))

    loss(x)
    dx = ours.backward(weights)
    gradcheck(loss, [x, *params], [dx, *[p.grad for p in ours.parameters()]], max_checks=40)


def test_resnet_inception_stack_matches_torch(rng):
    """Add and Concat nested in a Sequential, the way a small ResNet/GoogLeNet is built."""
    dtype = np.dtype(np.float64)
    (b1, tb1), (b2, tb2) = _conv_pair(3, 3, 3, 1, dtype, rng), _conv_pair(3, 3, 3, 1, dtype, rng)
    inception, tinception = _inception(3, [1, 2, 1, 2], dtype, rng)
    lin = nn.Linear(5 * 4 * 5, 2, dtype=dtype, rng=rng)
    ours = nn.Sequential(nn.Add(nn.Sequential(b1, b2)), inception, nn.Flatten(), lin)
    tlin = torch.nn.Linear(5 * 4 * 5, 2, dtype=torch.float64)
    ref = torch.nn.Sequential(TorchAdd(torch.nn.Sequential(tb1, tb2)), tinception, torch.nn.Flatten(), tlin)
    load_torch_weights(ref, ours)
    x = rng.normal(size=(2, 3, 4, 5))
    y, xt = ours(x), tensor(x)
    yt = ref(xt)
    assert_close(y, yt, dtype, "forward")
    dout = rng.normal(size=y.shape)
    yt.backward(torch.tensor(dout))
    assert_close(ours.backward(dout), xt.grad, dtype, "dx")
    for (name, p), tp in zip(ours.named_parameters(), ref.parameters()):
        assert_close(p.grad, tp.grad, dtype, name)


# -- bad input ----------------------------------------------------------------------------------
def test_container_bad_input(rng):
    x = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    mismatched = nn.Concat(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 4, 3))
    with pytest.raises(ValueError, match=r"Concat\(branches=2, dim=1\): branch outputs must have equal shapes "
                                         r"except at dim 1, got shapes \[\(1, 3, 5, 5\), \(1, 4, 3, 3\)\]"):
        mismatched(x)
    with pytest.raises(ValueError, match=r"Concat: needs at least one branch"):
        nn.Concat()
    with pytest.raises(TypeError, match=r"Concat: branch 1 must be a numbanet Module, got ndarray"):
        nn.Concat(nn.Flatten(), x)
    with pytest.raises(ValueError, match=r"dim 4 is out of range for branch outputs of shapes \[\(1, 2, 5, 5\)\]"):
        nn.Concat(nn.Sequential(), dim=4)(x)
    with pytest.raises(ValueError, match=r"Add\(identity shortcut\): body output shape \(1, 3, 5, 5\) does not "
                                         r"match the input \(identity shortcut\) shape \(1, 2, 5, 5\)"):
        nn.Add(nn.Conv2d(2, 3, 3, padding=1))(x)
    with pytest.raises(ValueError, match=r"Add\(\): body output shape \(1, 3, 5, 5\) does not match shortcut "
                                         r"output shape \(1, 3, 3, 3\)"):
        nn.Add(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 3))(x)
    with pytest.raises(TypeError, match=r"Add: shortcut must be a numbanet Module, got str"):
        nn.Add(nn.Flatten(), "identity")
    for module, name in [(nn.Concat(nn.Flatten()), r"Concat\(branches=1, dim=1\)"),
                         (nn.Add(nn.Flatten(0, 0)), r"Add\(identity shortcut\)"),
                         (nn.Sequential(nn.Flatten()), r"Sequential\(Flatten\)")]:
        with pytest.raises(RuntimeError, match=name + r".backward called before forward"):
            module.backward(x)
        module(x)
        with pytest.raises(ValueError, match=name + r".backward: expected dout of shape"):
            module.backward(x[:, :1])
        with pytest.raises(TypeError, match=name + r".backward: expected dout of dtype float32, got float64"):
            module.backward(np.zeros(module(x).shape))


def test_concat_indexes_its_branches():
    branches = [nn.ReLU(), nn.Tanh(), nn.Sigmoid()]
    cat = nn.Concat(*branches)
    assert len(cat) == 3 and list(cat) == branches
    assert cat[0] is branches[0] and cat[-1] is branches[2]
    with pytest.raises(IndexError, match="Concat: index 3 out of range for 3 children"):
        cat[3]


# -- PyTorch's other containers: ModuleList, ModuleDict, Identity ---------------------------------------

def test_module_list_registers_its_entries_like_torch():
    layers = nn.ModuleList([nn.Linear(3, 4), nn.ReLU()])
    layers.append(nn.Linear(4, 2)).extend([nn.Tanh()])
    layers.insert(1, nn.Identity())
    assert [type(m).__name__ for m in layers] == ["Linear", "Identity", "ReLU", "Linear", "Tanh"]
    assert len(layers) == 5 and layers[-1] is layers[4]
    layers[1] = nn.Sigmoid()
    assert isinstance(layers[1], nn.Sigmoid) and isinstance(layers[1:3], nn.ModuleList)
    torch_layers = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.ReLU(),
                                        torch.nn.Linear(4, 2), torch.nn.Tanh()])
    assert list(layers.state_dict()) == list(torch_layers.state_dict())
    with pytest.raises(TypeError, match="ModuleList.append: the argument must be a numbanet Module, got int"):
        layers.append(3)
    with pytest.raises(IndexError, match="index 9 out of range for 5 children"):
        layers[9]
    with pytest.raises(NotImplementedError, match="ModuleList does not define forward"):
        layers(np.ones((1, 3), np.float32))


def test_a_module_holding_a_module_list_trains_like_torch(rng):
    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(4, 4, dtype=np.float64, rng=rng) for _ in range(3))
            self.heads = nn.ModuleDict({"relu": nn.ReLU(), "tanh": nn.Tanh()})

        def forward(self, x):
            for block, act in zip(self.blocks, ("relu", "tanh", "relu")):
                x = self.heads[act](block(x))
            return x

        def backward(self, dout):
            for block, act in zip(reversed(self.blocks), ("relu", "tanh", "relu")):
                dout = block.backward(self.heads[act].backward(dout))
            return dout

    class TorchTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4, dtype=torch.float64) for _ in range(3))
            self.heads = torch.nn.ModuleDict({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh()})

        def forward(self, x):
            for block, act in zip(self.blocks, ("relu", "tanh", "relu")):
                x = self.heads[act](block(x))
            return x

    _compare(Tower(), TorchTower(), rng.normal(size=(3, 4)), np.dtype(np.float64))


def test_module_dict_behaves_like_a_dict():
    d = nn.ModuleDict({"conv": nn.Conv2d(1, 2, 3)})
    d["act"] = nn.ReLU()
    d.update([("pool", nn.MaxPool2d(2))])
    assert list(d) == list(d.keys()) == ["conv", "act", "pool"] and "act" in d and len(d) == 3
    assert [name for name, _ in d.named_parameters()] == ["conv.weight", "conv.bias"]
    del d["act"]
    assert list(d) == ["conv", "pool"] and not hasattr(d, "act")
    with pytest.raises(KeyError, match=r"no module named 'act'; the keys are \['conv', 'pool'\]"):
        d["act"]
    with pytest.raises(KeyError, match="'keys' is already an attribute"):
        d["keys"] = nn.ReLU()
    with pytest.raises(KeyError, match="without '.'"):
        d["a.b"] = nn.ReLU()


def test_identity_passes_values_and_gradients_through(rng):
    x = rng.normal(size=(2, 3)).astype(np.float32)
    layer = nn.Identity()
    assert layer(x) is x
    dy = rng.normal(size=(2, 3)).astype(np.float32)
    assert layer.backward(dy) is dy
    with pytest.raises(ValueError, match=r"Identity\(\)\.backward: expected dout of shape \(2, 3\)"):
        layer(x), layer.backward(dy[:1])
