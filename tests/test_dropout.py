"""Dropout and Dropout2d: mask statistics, exact scaling, eval identity, mask reuse, seeding, bad input."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import numbanet as nb
from numbanet import functional as F, nn
from numbanet.gradcheck import gradcheck


def scale(p, dtype):
    """The factor of the kept units, 1/(1 − p) rounded to dtype (p = 1 keeps none: any value)."""
    return np.dtype(dtype).type(1.0 / (1.0 - p) if p < 1 else 0.0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropped_fraction_within_binomial_bound(p, dtype):
    n = 200_000
    y = nn.Dropout(p, rng=np.random.default_rng(1))(np.ones(n, dtype))
    dropped = np.mean(y == 0)
    assert abs(dropped - p) <= 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout2d_drops_whole_planes(p, dtype):
    x = np.random.default_rng(0).uniform(1, 2, (400, 50, 3, 2)).astype(dtype)
    y = nn.Dropout2d(p, rng=np.random.default_rng(2))(x)
    dropped_planes = np.all(y == 0, axis=(2, 3))
    kept_planes = np.all(y != 0, axis=(2, 3))
    assert np.all(dropped_planes | kept_planes)
    assert abs(dropped_planes.mean() - p) <= 5 * np.sqrt(p * (1 - p) / dropped_planes.size)
    np.testing.assert_array_equal(y[kept_planes], x[kept_planes] * scale(p, dtype))


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
       p=st.sampled_from([0.0, 0.2, 0.5, 0.75, 1.0]), dtype=st.sampled_from([np.float64, np.float32]),
       contiguous=st.booleans(), seed=st.integers(0, 2**16))
def test_kept_units_scaled_exactly_and_backward_reuses_the_mask(shape, p, dtype, contiguous, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, shape[::-1] if not contiguous else shape).astype(dtype)
    x = x.T if not contiguous else x
    layer = nn.Dropout(p, rng=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # p = 1 must not divide by zero
        y = layer(x)
        dy = rng.standard_normal(shape).astype(dtype)
        dx = layer.backward(dy)
    kept = y != 0
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y[kept], x[kept] * scale(p, dtype))
    np.testing.assert_array_equal(dx, np.where(kept, dy * scale(p, dtype), 0))
    if p == 0:
        np.testing.assert_array_equal(y, x)
    if p == 1:
        assert not y.any() and not dx.any()


@pytest.mark.parametrize("layer", [nn.Dropout(0.5), nn.Dropout2d(0.5)])
def test_eval_is_identity(layer, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    layer.eval()
    assert layer(x) is x
    dy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    assert F.dropout(x, 0.5, training=False) is x


def test_reproducible_with_a_seeded_rng(rng):
    x = rng.standard_normal((4, 30))
    a = nn.Dropout(0.5, rng=np.random.default_rng(7))(x)
    b = nn.Dropout(0.5, rng=np.random.default_rng(7))(x)
    np.testing.assert_array_equal(a, b)
    nb.manual_seed(3)
    c = nn.Dropout(0.5)(x)
    nb.manual_seed(3)
    np.testing.assert_array_equal(nn.Dropout(0.5)(x), c)
    assert not np.array_equal(nn.Dropout(0.5)(x), c)  # the global generator moved on
    # the mask depends on the seed only, not on the dtype
    np.testing.assert_array_equal(F.dropout(x.astype(np.float32), rng=np.random.default_rng(7)) == 0, a == 0)


def test_functional_mask_round_trip(rng):
    x = rng.standard_normal((3, 4, 2, 2))
    dy = rng.standard_normal(x.shape)
    for forward in (F.dropout, F.dropout2d):
        y, mask = forward(x, 0.3, rng=np.random.default_rng(5), return_mask=True)
        np.testing.assert_array_equal(F.dropout_backward(dy, mask, 0.3), np.where(y != 0, dy * scale(0.3, dy.dtype), 0))
    assert mask.shape == (3, 4, 1, 1)
    assert F.dropout_backward(dy, None, 0.3) is dy


@pytest.mark.parametrize("forward", [F.dropout, F.dropout2d], ids=["dropout", "dropout2d"])
def test_gradcheck(forward):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 2, 2))
    dy = rng.standard_normal(x.shape)
    # the same generator state on every call, so every evaluation uses the same mask
    y, mask = forward(x, 0.4, rng=np.random.default_rng(9), return_mask=True)
    dx = F.dropout_backward(dy, mask, 0.4)
    gradcheck(lambda x: float(np.sum(forward(x, 0.4, rng=np.random.default_rng(9)) * dy)), [x], [dx],
              max_checks=None)


class TestBadInput:
    @pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
    def test_p_out_of_range(self, p):
        with pytest.raises(ValueError, match=r"Dropout\(p=.*\): dropout probability has to be between 0 and 1"):
            nn.Dropout(p)
        with pytest.raises(ValueError, match=r"dropout: dropout probability has to be between 0 and 1"):
            F.dropout(np.zeros(3), p)

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match=r"Dropout\(p=0.5\): expected input of dtype float32 or float64, got int64"):
            nn.Dropout()(np.zeros(3, np.int64))

    def test_dropout2d_wrong_ndim(self):
        with pytest.raises(ValueError, match=r"Dropout2d\(p=0.5\): expected a 4-D input of shape \(N, C, H, W\), "
                                             r"got shape \(3, 4\)"):
            nn.Dropout2d()(np.zeros((3, 4)))

    def test_backward_before_forward(self):
        with pytest.raises(RuntimeError, match=r"Dropout\(p=0.5\)\.backward called before forward"):
            nn.Dropout().backward(np.zeros(3))

    def test_dout_wrong_shape(self):
        layer = nn.Dropout()
        layer(np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match=r"expected dout of shape \(2, 3\).*got \(3, 2\)"):
            layer.backward(np.zeros((3, 2), np.float32))

    def test_mask_wrong_shape(self):
        with pytest.raises(ValueError, match=r"dropout_backward: expected a mask of shape \(2, 3, 4, 4\).*got \(1, 3, 1, 1\)"):
            F.dropout_backward(np.zeros((2, 3, 4, 4)), np.ones((1, 3, 1, 1), bool), 0.5)
