"""CrossEntropyLoss and MSELoss against PyTorch, gradcheck, stability and bad input."""
import numba
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from numbanet import functional as F
from numbanet import nn
from numbanet.gradcheck import gradcheck
from tests.oracle import assert_close, tensor

DTYPES = pytest.mark.parametrize("dtype", [np.dtype(np.float64), np.dtype(np.float32)], ids=["f64", "f32"])


def _logits(rng, n, classes, dtype, scale=1.0, contiguous=True):
    """(N, C) logits; a transposed view of a (C, N) array when not ``contiguous``."""
    if contiguous:
        return (scale * rng.normal(size=(n, classes))).astype(dtype)
    return (scale * rng.normal(size=(classes, n))).astype(dtype).T


def _torch_cross_entropy(logits, target, label_smoothing=0.0, reduction="mean", dloss=1.0):
    xt = tensor(logits)
    loss = torch.nn.functional.cross_entropy(xt, torch.tensor(target), label_smoothing=label_smoothing,
                                             reduction=reduction)
    (dloss * loss).backward()
    return loss.item(), xt.grad


@DTYPES
@given(n=st.integers(1, 5), classes=st.integers(1, 7), smoothing=st.sampled_from([0.0, 0.1, 0.25, 1.0]),
       reduction=st.sampled_from(["mean", "sum"]), scale=st.sampled_from([1.0, 30.0, 1e4]),
       dloss=st.sampled_from([1.0, 0.3]), contiguous=st.booleans())
def test_cross_entropy_matches_torch(dtype, n, classes, smoothing, reduction, scale, dloss, contiguous):
    rng = np.random.default_rng(n * 10 + classes)
    logits = _logits(rng, n, classes, dtype, scale, contiguous)
    target = rng.integers(0, classes, size=n)
    crit = nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction)
    loss = crit(logits, target)
    dlogits = crit.backward(dloss)
    ref_loss, ref_grad = _torch_cross_entropy(logits, target, smoothing, reduction, dloss)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert dlogits.dtype == dtype and dlogits.shape == (n, classes)
    assert_close(loss, ref_loss, dtype, "loss")
    assert_close(dlogits, ref_grad, dtype, "dlogits")


@DTYPES
def test_cross_entropy_huge_logits_do_not_overflow(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4 - 1.0], [3e4, 3e4, 3e4]], dtype)
    target = np.array([1, 2, 0])
    crit = nn.CrossEntropyLoss()
    with np.errstate(all="raise"):
        loss = crit(logits, target)
        dlogits = crit.backward()
    ref_loss, ref_grad = _torch_cross_entropy(logits, target)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert_close(loss, ref_loss, dtype, "loss")
    assert_close(dlogits, ref_grad, dtype, "dlogits")
    # a row's softmax sums to 1, so each row of dlogits sums to 0
    np.testing.assert_allclose(dlogits.sum(axis=1), 0.0, atol=1e-7)


def test_cross_entropy_batch_one_is_softmax_minus_onehot():
    logits = np.array([[2.0, 1.0, 0.1]])
    crit = nn.CrossEntropyLoss()
    loss = crit(logits, np.array([0], dtype=np.int32))
    softmax = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(loss, -np.log(softmax[0, 0]), rtol=1e-14)
    np.testing.assert_allclose(crit.backward(), softmax - [[1, 0, 0]], rtol=1e-14)


def test_cross_entropy_gradcheck(rng):
    logits = rng.normal(size=(4, 5))
    target = np.array([0, 4, 2, 2])
    crit = nn.CrossEntropyLoss(label_smoothing=0.2)
    crit(logits, target)
    gradcheck(lambda x: crit(x, target), [logits], [crit.backward()])


def test_cross_entropy_functional_agrees_and_threads_do_not_change_results(rng):
    logits = rng.normal(size=(300, 10)).astype(np.float32)
    target = rng.integers(0, 10, size=300)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss, dlogits = crit(logits, target), crit.backward(0.5)
    assert loss == F.cross_entropy(logits, target, label_smoothing=0.1)
    np.testing.assert_array_equal(dlogits, F.cross_entropy_backward(logits, target, 0.1, dloss=0.5))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert crit(logits, target) == loss
        np.testing.assert_array_equal(crit.backward(0.5), dlogits)
    finally:
        numba.set_num_threads(threads)


def test_cross_entropy_bad_input():
    crit = nn.CrossEntropyLoss()
    logits = np.zeros((2, 3))
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss\(\).backward called before forward"):
        crit.backward()
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\): expected target of integer class indices, "
                                        r"shape \(2,\), got dtype float64"):
        crit(logits, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"got dtype bool"):
        crit(logits, np.array([True, False]))
    with pytest.raises(ValueError, match=r"target class indices must lie in 0..2 for 3 classes, got \[3, -1\]"):
        crit(logits, np.array([3, -1]))
    with pytest.raises(ValueError, match=r"expected target of shape \(2,\) \(one class index per logits row\), "
                                         r"got shape \(3,\)"):
        crit(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"expected a 2-D input of shape \(N, C\), got shape \(3,\)"):
        crit(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match=r"with N, C >= 1, got shape \(0, 3\)"):
        crit(np.zeros((0, 3)), np.array([], dtype=np.int64))
    with pytest.raises(TypeError, match=r"expected logits of dtype float32 or float64, got int64"):
        crit(np.zeros((2, 3), np.int64), np.array([0, 1]))
    crit(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).backward: expected a scalar dL/dloss, "
                                         r"got shape \(2,\)"):
        crit.backward(np.ones(2))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must lie in \[0, 1\], got 1.5"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be 'mean' or 'sum', got 'none'"):
        nn.CrossEntropyLoss(reduction="none")


@DTYPES
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), reduction=st.sampled_from(["mean", "sum"]),
       dloss=st.sampled_from([1.0, 0.3]), contiguous=st.booleans())
def test_mse_matches_torch(dtype, shape, reduction, dloss, contiguous):
    rng = np.random.default_rng(sum(shape))
    prediction = rng.normal(size=shape).astype(dtype)
    if not contiguous:
        prediction = rng.normal(size=shape[::-1]).astype(dtype).T
    target = rng.normal(size=shape).astype(dtype)
    crit = nn.MSELoss(reduction)
    loss = crit(prediction, target)
    dprediction = crit.backward(dloss)
    pt = tensor(prediction)
    ref = torch.nn.functional.mse_loss(pt, torch.tensor(target), reduction=reduction)
    (dloss * ref).backward()
    assert isinstance(loss, float) and dprediction.dtype == dtype
    assert_close(loss, ref.item(), dtype, "loss")
    assert_close(dprediction, pt.grad, dtype, "dprediction")


def test_mse_many_chunks_match_torch_and_ignore_thread_count(rng):
    prediction, target = rng.normal(size=(3, 5000)).astype(np.float32), rng.normal(size=(3, 5000)).astype(np.float32)
    loss = F.mse_loss(prediction, target)
    ref = torch.nn.functional.mse_loss(torch.tensor(prediction, dtype=torch.float64),
                                       torch.tensor(target, dtype=torch.float64))
    assert_close(loss, ref.item(), np.float64, "loss in float64 accumulation", factor=10)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert F.mse_loss(prediction, target) == loss
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(F.mse_loss_backward(prediction, target),
                                  (2 * (prediction.astype(np.float64) - target) / prediction.size).astype(np.float32))


def test_mse_gradcheck(rng):
    prediction, target = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 3, 2))
    crit = nn.MSELoss()
    crit(prediction, target)
    gradcheck(lambda p: crit(p, target), [prediction], [crit.backward()])


def test_mse_bad_input():
    crit = nn.MSELoss()
    with pytest.raises(RuntimeError, match=r"MSELoss\(\).backward called before forward"):
        crit.backward()
    with pytest.raises(ValueError, match=r"MSELoss\(\): expected target of the input's shape \(2, 3\), "
                                         r"got shape \(3,\)"):
        crit(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(TypeError, match=r"MSELoss\(\): target dtype float32 does not match the input dtype float64"):
        crit(np.zeros((2, 3)), np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"expected target of dtype float32 or float64, got int64"):
        crit(np.zeros(2), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"MSELoss: reduction must be 'mean' or 'sum', got 'none'"):
        nn.MSELoss("none")
