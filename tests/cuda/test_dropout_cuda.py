"""Dropout on the GPU: device masks reproducible from numbanet's seed, Bernoulli rate, mask reused backward."""
import numpy as np
import pytest

import numbanet as nb
from numbanet import functional as F, nn
from numbanet.device import is_cuda, to_device, to_numpy

# In the simulator numba.cuda.random runs as Python: its state set-up falls back to object mode
# (NumbaWarning) and its intended uint64 wrap-around shows as NumPy overflow warnings.
pytestmark = [pytest.mark.filterwarnings("ignore::numba.NumbaWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def device_input(shape, dtype=np.float32, seed=0):
    x = np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(dtype)  # no zeros: kept units show
    return x, to_device(x, "cuda")


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_zero_fraction_within_binomial_bound(p):
    n = 2000
    _, x = device_input((2, 1000))
    y = to_numpy(F.dropout(x, p, rng=np.random.default_rng(7)))
    zeros = int(np.sum(y == 0))
    assert abs(zeros - n * p) <= 5 * np.sqrt(n * p * (1 - p)), f"{zeros} of {n} dropped at p={p}"


def test_reproducible_from_numbanet_seed_and_fresh_draws_differ():
    _, x = device_input((2, 3, 4, 4))
    nb.manual_seed(11)
    first, second = to_numpy(F.dropout(x, 0.5)), to_numpy(F.dropout(x, 0.5))
    nb.manual_seed(11)
    np.testing.assert_array_equal(to_numpy(F.dropout(x, 0.5)), first)
    assert not np.array_equal(first, second)
    rng_masks = [to_numpy(F.dropout(x, 0.5, rng=np.random.default_rng(3))) for _ in range(2)]
    np.testing.assert_array_equal(*rng_masks)


def test_layer_states_persist_and_reseed_with_manual_seed():
    _, x = device_input((2, 3, 2, 2))

    def three_masks():
        layer = nn.Dropout(0.5)
        return [to_numpy(layer(x)) for _ in range(3)]

    nb.manual_seed(5)
    run = three_masks()
    assert not np.array_equal(run[0], run[1])  # the states advance between calls
    nb.manual_seed(5)
    for ours, again in zip(run, three_masks()):
        np.testing.assert_array_equal(ours, again)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer_cls", [nn.Dropout, nn.Dropout2d])
def test_kept_units_scaled_and_backward_reuses_the_mask(layer_cls, dtype):
    x_host, x = device_input((2, 3, 3, 2), dtype)
    layer = layer_cls(0.4)
    y = layer(x)
    mask = layer._caches.records[-1].values[-1]  # what forward saved for backward: the keep-mask last
    assert is_cuda(y) and is_cuda(mask)
    y_host = to_numpy(y)
    keep = y_host != 0
    scale = np.dtype(dtype).type(1 / 0.6)
    np.testing.assert_array_equal(y_host[keep], x_host[keep] * scale)  # exactly x times the rounded scale
    if layer_cls is nn.Dropout2d:
        assert mask.shape == (2, 3, 1, 1)
        assert all(plane.all() or not plane.any() for plane in keep.reshape(6, -1))  # whole planes
    dy_host = np.random.default_rng(1).uniform(0.5, 2.0, x_host.shape).astype(dtype)
    dx = to_numpy(layer.backward(to_device(dy_host, "cuda")))
    np.testing.assert_array_equal(dx, np.where(keep, dy_host * scale, 0))
    np.testing.assert_array_equal(to_numpy(F.dropout_backward(to_device(dy_host, "cuda"), mask, 0.4)), dx)


def test_extremes_eval_and_functional_mask():
    x_host, x = device_input((2, 4))
    np.testing.assert_array_equal(to_numpy(F.dropout(x, 0.0)), x_host)
    np.testing.assert_array_equal(to_numpy(F.dropout(x, 1.0)), np.zeros_like(x_host))
    assert F.dropout(x, 0.5, training=False) is x
    layer = nn.Dropout(0.5).eval()
    assert layer(x) is x
    dy = to_device(np.ones((2, 4), np.float32), "cuda")
    assert layer.backward(dy) is dy
    y, mask = F.dropout(x, 0.5, return_mask=True)
    assert is_cuda(mask) and mask.dtype == np.bool_ and mask.shape == (2, 4)
    np.testing.assert_array_equal(to_numpy(y) != 0, to_numpy(mask))


def test_errors_name_the_devices():
    _, x = device_input((2, 4))
    with pytest.raises(TypeError, match=r"dropout_backward: expected a boolean mask on dy's device \(cuda\), "
                                        r"got bool on cpu"):
        F.dropout_backward(x, np.ones((2, 4), bool), 0.5)
    layer = nn.Dropout(0.5)
    layer(x)
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\)\.backward: dout is on cpu but the forward pass ran on cuda"):
        layer.backward(np.ones((2, 4), np.float32))
