"""Linear and Flatten against PyTorch, gradcheck, and bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from numbanet import functional as F
from numbanet import nn
from numbanet.gradcheck import gradcheck
from tests.oracle import TORCH_DTYPE, assert_close, load_torch_weights, tensor

DTYPES = pytest.mark.parametrize("dtype", [np.dtype(np.float64), np.dtype(np.float32)], ids=["f64", "f32"])


def _input(rng, shape, dtype, contiguous: bool):
    """Array of ``shape``; a strided view (every other column) when not ``contiguous``."""
    if contiguous:
        return rng.normal(size=shape).astype(dtype)
    wide = rng.normal(size=(*shape[:-1], 2 * shape[-1])).astype(dtype)
    view = wide[..., ::2]
    return view


@DTYPES
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), in_features=st.integers(1, 6),
       out_features=st.integers(1, 6), bias=st.booleans(), contiguous=st.booleans())
def test_linear_matches_torch(dtype, lead, in_features, out_features, bias, contiguous):
    rng = np.random.default_rng(len(lead) * 100 + in_features * 10 + out_features)
    layer = nn.Linear(in_features, out_features, bias=bias, dtype=dtype, rng=rng)
    ref = torch.nn.Linear(in_features, out_features, bias=bias, dtype=TORCH_DTYPE[dtype])
    load_torch_weights(ref, layer)
    x = _input(rng, (*lead, in_features), dtype, contiguous)
    y = layer(x)
    assert y.dtype == dtype and y.shape == (*lead, out_features)
    xt = tensor(x)
    yt = ref(xt)
    assert_close(y, yt, dtype, "forward")
    dout = rng.normal(size=y.shape).astype(dtype)
    dx = layer.backward(dout)
    yt.backward(torch.tensor(dout))
    assert dx.dtype == dtype
    assert_close(dx, xt.grad, dtype, "dx")
    assert_close(layer.weight.grad, ref.weight.grad, dtype, "dweight")
    if bias:
        assert_close(layer.bias.grad, ref.bias.grad, dtype, "dbias")


def test_linear_gradcheck(rng):
    layer = nn.Linear(5, 3, dtype=np.float64, rng=rng)
    x = rng.normal(size=(4, 5))
    weights = rng.normal(size=(4, 3))

    def loss(x, w, b):
        return float(np.sum(layer(x) * weights))

    loss(x, layer.weight.data, layer.bias.data)
    dx = layer.backward(weights)
    gradcheck(loss, [x, layer.weight.data, layer.bias.data], [dx, layer.weight.grad, layer.bias.grad])


def test_linear_accumulates_grads_and_functional_agrees(rng):
    layer = nn.Linear(4, 2, dtype=np.float64, rng=rng)
    x = rng.normal(size=(3, 4))
    dout = rng.normal(size=(3, 2))
    y = layer(x)
    np.testing.assert_array_equal(y, F.linear(x, layer.weight.data, layer.bias.data))
    dx = layer.backward(dout, retain_graph=True)
    layer.backward(dout)
    ref_dx, ref_dw, ref_db = F.linear_backward(dout, x, layer.weight.data)
    np.testing.assert_array_equal(dx, ref_dx)
    np.testing.assert_allclose(layer.weight.grad, 2 * ref_dw, rtol=1e-15)
    np.testing.assert_allclose(layer.bias.grad, 2 * ref_db, rtol=1e-15)


def test_linear_single_vector_and_no_bias(rng):
    layer = nn.Linear(3, 2, bias=False, dtype=np.float64, rng=rng)
    x = rng.normal(size=3)
    y = layer(x)
    np.testing.assert_allclose(y, layer.weight.data @ x, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(np.ones(2)), layer.weight.data.sum(0), rtol=1e-14)
    assert list(layer.state_dict()) == ["weight"]


def test_linear_init_and_dtype():
    layer = nn.Linear(400, 30, rng=np.random.default_rng(0))
    assert layer.weight.dtype == np.float32 and layer.weight.shape == (30, 400)
    bound = 1 / np.sqrt(400)
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    again = nn.Linear(400, 30, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(layer.weight.data, again.weight.data)
    layer.to(np.float64)
    assert layer(np.zeros((1, 400))).dtype == np.float64


def test_linear_bad_input(rng):
    layer = nn.Linear(4, 3)
    name = r"Linear\(in_features=4, out_features=3, bias=True\)"
    with pytest.raises(RuntimeError, match=name + r".backward called before forward"):
        layer.backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=name + r": expected input of shape \(\*, 4\).*got shape \(2, 5\)"):
        layer(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match=name + r": expected input of dtype float32 or float64, got int64"):
        layer(np.zeros((2, 4), np.int64))
    with pytest.raises(TypeError, match=r"input dtype float64 does not match the parameters' dtype float32"):
        layer(np.zeros((2, 4)))
    layer(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 3\).*got \(3, 2\)"):
        layer.backward(np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match=r"expected dout of dtype float32, got float64"):
        layer.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Linear\(0, 3\): in_features must be >= 1, got 0"):
        nn.Linear(0, 3)


@DTYPES
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), data=st.data())
def test_flatten_matches_torch(dtype, shape, data):
    ndim = len(shape)
    start = data.draw(st.integers(-ndim, ndim - 1), label="start_dim")
    end = data.draw(st.integers(start % ndim, ndim - 1), label="end_dim")
    end -= data.draw(st.sampled_from([0, ndim]), label="negative end")  # same dim, counted from the end
    rng = np.random.default_rng(ndim)
    x = _input(rng, tuple(shape), dtype, contiguous=data.draw(st.booleans(), label="contiguous"))
    layer = nn.Flatten(start, end)
    y = layer(x)
    xt = tensor(x)
    yt = torch.flatten(xt, start, end)
    assert_close(y, yt, dtype, "forward")
    dout = rng.normal(size=y.shape).astype(dtype)
    yt.backward(torch.tensor(dout))
    assert_close(layer.backward(dout), xt.grad, dtype, "dx")


def test_flatten_gradcheck(rng):
    layer = nn.Flatten()
    x = rng.normal(size=(2, 3, 2, 2))
    weights = rng.normal(size=(2, 12))

    def loss(x):
        return float(np.sum(layer(x) * weights))

    loss(x)
    gradcheck(loss, [x], [layer.backward(weights)])


def test_flatten_bad_input():
    layer = nn.Flatten()
    with pytest.raises(RuntimeError, match=r"Flatten\(start_dim=1, end_dim=-1\).backward called before forward"):
        layer.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=1, end_dim=-1\): cannot flatten dims 1..-1 "
                                         r"of an input of shape \(5,\) \(1-D\)"):
        layer(np.zeros(5))
    with pytest.raises(ValueError, match=r"cannot flatten dims 2..1"):
        nn.Flatten(2, 1)(np.zeros((2, 3, 4)))
    layer(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 12\)"):
        layer.backward(np.zeros((2, 3, 4)))


def test_functional_backward_checks_dy(rng):
    x, w = rng.normal(size=(5, 3)), rng.normal(size=(2, 3))
    with pytest.raises(ValueError, match=r"linear_backward: expected dy of shape \(5, 2\) .*got \(5, 3\)"):
        F.linear_backward(np.ones((5, 3)), x, w)
    with pytest.raises(TypeError, match=r"linear_backward: expected dy of dtype float32 or float64, got int64"):
        F.linear_backward(np.ones((5, 2), np.int64), x, w)
    with pytest.raises(TypeError, match=r"linear_backward: expected dy of dtype float64, got float32"):
        F.linear_backward(np.ones((5, 2), np.float32), x, w)
