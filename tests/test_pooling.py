"""Pooling layers and functional forms against PyTorch, numeric gradients and bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, strategies as st

from numbanet import functional as F, nn
from numbanet.gradcheck import gradcheck
from tests.oracle import assert_close, tensor

DTYPES = st.sampled_from([np.float64, np.float32])


def make_input(rng, shape, dtype, contiguous=True):
    """A random array of ``shape``; when not ``contiguous`` a transposed copy seen through a view."""
    if contiguous:
        return rng.standard_normal(shape).astype(dtype)
    return rng.standard_normal(shape[:2] + shape[:1:-1]).astype(dtype).swapaxes(2, 3)


@st.composite
def window_configs(draw, padded=True):
    """kernel 1-4, stride 1-3, padding 0..kernel//2, input large enough for one window, all non-square."""
    kernel = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = tuple(draw(st.integers(0, k // 2)) if padded else 0 for k in kernel)
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 9))
    stride = draw(st.sampled_from([None, (draw(st.integers(1, 3)), draw(st.integers(1, 3)))]))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), kernel=kernel,
                stride=stride, padding=padding, contiguous=draw(st.booleans()), dtype=np.dtype(draw(DTYPES)),
                seed=draw(st.integers(0, 2**16)))


def check_against_torch(layer, torch_fn, x, dtype, rng):
    """Forward and backward of ``layer`` against ``torch_fn`` on the same x and dy."""
    y = layer(x)
    xt = tensor(x)
    yt = torch_fn(xt)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    assert_close(y, yt, dtype, "forward")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    yt.backward(torch.from_numpy(dy))
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, xt.grad, dtype, "dx")


@given(window_configs())
def test_max_pool_matches_torch(cfg):
    rng, dtype = np.random.default_rng(cfg["seed"]), cfg["dtype"]
    x = make_input(rng, cfg["shape"], dtype, cfg["contiguous"])
    layer = nn.MaxPool2d(cfg["kernel"], cfg["stride"], cfg["padding"])
    check_against_torch(layer, lambda t: tF.max_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
                        x, dtype, rng)
    _, indices = F.max_pool2d(x, cfg["kernel"], cfg["stride"], cfg["padding"], return_indices=True)
    _, torch_indices = tF.max_pool2d(torch.from_numpy(np.array(x)), cfg["kernel"], cfg["stride"],
                                     cfg["padding"], return_indices=True)
    np.testing.assert_array_equal(indices, torch_indices.numpy())


@given(window_configs(), st.booleans())
def test_avg_pool_matches_torch(cfg, count_include_pad):
    rng, dtype = np.random.default_rng(cfg["seed"]), cfg["dtype"]
    x = make_input(rng, cfg["shape"], dtype, cfg["contiguous"])
    layer = nn.AvgPool2d(cfg["kernel"], cfg["stride"], cfg["padding"], count_include_pad=count_include_pad)
    check_against_torch(layer, lambda t: tF.avg_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"],
                                                       count_include_pad=count_include_pad), x, dtype, rng)


@given(window_configs(padded=False), st.sampled_from([1.0, 2.0, 3.0, 1.5]), st.booleans())
def test_lp_pool_matches_torch(cfg, norm_type, mean):
    rng, dtype = np.random.default_rng(cfg["seed"]), cfg["dtype"]
    x = make_input(rng, cfg["shape"], dtype, cfg["contiguous"])
    if norm_type != 2.0:
        x = np.abs(x)  # x^p (p not even) needs x >= 0, in PyTorch too
    kh, kw = cfg["kernel"]
    # mean=True is not in PyTorch: ((1/n)·Σx^p)^(1/p) = (Σx^p)^(1/p) / n^(1/p)
    divisor = (kh * kw) ** (1 / norm_type) if mean else 1.0
    layer = nn.LPPool2d(norm_type, cfg["kernel"], cfg["stride"], mean=mean)
    check_against_torch(layer, lambda t: tF.lp_pool2d(t, norm_type, cfg["kernel"], cfg["stride"]) / divisor,
                        x, dtype, rng)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.data(), DTYPES,
       st.booleans(), st.integers(0, 2**16))
def test_adaptive_avg_pool_matches_torch(n, c, h, w, data, dtype, contiguous, seed):
    rng, dtype = np.random.default_rng(seed), np.dtype(dtype)
    # output sizes above the input size give overlapping, repeated bins
    output_size = (data.draw(st.integers(1, 10)), data.draw(st.one_of(st.none(), st.integers(1, 10))))
    x = make_input(rng, (n, c, h, w), dtype, contiguous)
    check_against_torch(nn.AdaptiveAvgPool2d(output_size),
                        lambda t: tF.adaptive_avg_pool2d(t, output_size), x, dtype, rng)


def test_max_pool_overlapping_windows_and_ties_route_like_torch(dtype, rng):
    """stride < kernel: one spike wins many windows and must collect all their gradients;
    ties (integer-valued input) go to the first maximum in row-major order."""
    spike = np.zeros((2, 3, 7, 6), dtype)
    spike[:, :, 3, 2] = 5.0
    ties = rng.integers(0, 3, size=(2, 3, 7, 6)).astype(dtype)
    for x in (spike, ties):
        for kernel, stride, padding in [(3, 1, 1), (3, 2, 1), ((4, 2), (1, 1), (2, 0))]:
            layer = nn.MaxPool2d(kernel, stride, padding)
            check_against_torch(layer, lambda t: tF.max_pool2d(t, kernel, stride, padding), x, dtype, rng)
            _, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
            _, expected = tF.max_pool2d(torch.from_numpy(x), kernel, stride, padding, return_indices=True)
            np.testing.assert_array_equal(indices, expected.numpy())
    dx = nn.MaxPool2d(3, 1, 1)
    dx(spike)
    # the spike is the maximum of all 9 windows around it
    assert dx.backward(np.ones((2, 3, 7, 6), dtype))[0, 0, 3, 2] == 9


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [(3, 1, 1, False), (3, 2, 1, False), (3, 2, 0, True),
                                                        ((2, 4), (1, 3), (1, 2), False)])
def test_max_pool_nans_and_infinities_route_like_torch(kernel, stride, padding, ceil_mode, dtype, rng):
    """The separable max (columns, then rows) must keep PyTorch's scan order: a NaN wins (the last
    one in row-major order), -inf windows keep their first element, ties the first maximum."""
    x = rng.integers(0, 3, size=(2, 3, 9, 10)).astype(dtype)
    x[rng.random(x.shape) < 0.08] = np.nan
    x[rng.random(x.shape) < 0.08] = -np.inf
    x[0, 0] = -np.inf
    y, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True, ceil_mode=ceil_mode)
    expected_y, expected = tF.max_pool2d(torch.from_numpy(x), kernel, stride, padding, ceil_mode=ceil_mode,
                                         return_indices=True)
    np.testing.assert_array_equal(y, expected_y.numpy())
    np.testing.assert_array_equal(indices, expected.numpy())


def test_inception_same_pooling_keeps_the_size(dtype, rng):
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    for layer in (nn.AvgPool2d(3, 1, 1), nn.MaxPool2d(3, 1, 1)):
        y = layer(x)
        assert y.shape == x.shape and y.dtype == dtype
    expected = tF.avg_pool2d(torch.from_numpy(x), 3, 1, 1)
    assert_close(nn.AvgPool2d(3, 1, 1)(x), expected, dtype, "same avg pool")


def test_lp_pool_all_zero_window_has_zero_gradient(dtype):
    x = np.zeros((1, 2, 4, 4), dtype)
    x[0, 1, 2:, 2:] = 1.5  # one non-zero window among zero windows
    for norm_type in (2.0, 3.0):
        layer = nn.LPPool2d(norm_type, 2)
        xt = tensor(x)
        yt = tF.lp_pool2d(xt, norm_type, 2)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        yt.backward(torch.ones_like(yt))
        assert np.isfinite(dx).all() and dx[0, 0].sum() == 0
        assert_close(y, yt, dtype, "forward")
        assert_close(dx, xt.grad, dtype, "dx")


def test_l2_pooling_is_the_lectures_root_mean_square():
    x = np.array([[2, 2, 4, 4], [2, 4, 8, 4], [4, 4, 4, 1], [6, 10, 3, 4]], np.float64)[None, None]
    y = F.lp_pool2d(x, 2, 2, mean=True)
    np.testing.assert_allclose(y[0, 0], [[np.sqrt(7), np.sqrt(28)], [np.sqrt(42), np.sqrt(10.5)]])
    np.testing.assert_allclose(F.avg_pool2d(x, 2)[0, 0], [[2.5, 5], [6, 3]])  # the lectures' example
    np.testing.assert_allclose(F.max_pool2d(x, 2)[0, 0], [[4, 8], [10, 4]])


def test_global_avg_pool(dtype, rng):
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    expected = x.mean(axis=(2, 3), dtype=np.float64)
    kept, flat = nn.GlobalAvgPool2d(), nn.GlobalAvgPool2d(flatten=True)
    assert_close(kept(x), expected[:, :, None, None], dtype, "kept")
    assert_close(flat(x), expected, dtype, "flat")
    dy = rng.standard_normal((2, 3)).astype(dtype)
    dx = flat.backward(dy)
    assert_close(dx, np.broadcast_to(dy[:, :, None, None] / 20, x.shape), dtype, "dx")
    assert_close(kept.backward(dy[:, :, None, None]), dx, dtype, "dx kept")


def distinct_values(rng, shape):
    """Ties-free input for gradcheck of max pooling: gaps of 0.1 >> the finite-difference step."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


@pytest.mark.parametrize("make_layer, positive", [
    (lambda: nn.MaxPool2d(3, 2, 1), False),
    (lambda: nn.MaxPool2d((2, 3), 1), False),
    (lambda: nn.AvgPool2d(3, 2, 1), False),
    (lambda: nn.AvgPool2d((3, 2), 1, (1, 0), count_include_pad=False), False),
    (lambda: nn.LPPool2d(2, 2, 1), False),
    (lambda: nn.LPPool2d(2, (3, 2), mean=True), False),
    (lambda: nn.LPPool2d(3, 2, 1), True),
    (lambda: nn.AdaptiveAvgPool2d((4, 3)), False),
    (lambda: nn.GlobalAvgPool2d(flatten=True), False),
], ids=["max", "max-overlap", "avg", "avg-no-pad-count", "lp2", "rms", "lp3", "adaptive", "global"])
def test_gradcheck(make_layer, positive):
    rng = np.random.default_rng(0)
    layer = make_layer()
    x = distinct_values(rng, (2, 2, 5, 6))
    if positive:
        x = x + 2.0
    dy = rng.standard_normal(layer(x).shape)
    dx = layer.backward(dy)
    gradcheck(lambda x: float(np.sum(layer(x) * dy)), [x], [dx], max_checks=None)


class TestBadInput:
    def test_wrong_ndim(self):
        with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(2, 2\).*expected a 4-D input "
                                             r"of shape \(N, C, H, W\), got shape \(3, 8, 8\)"):
            nn.MaxPool2d(2)(np.zeros((3, 8, 8), np.float32))

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match=r"AvgPool2d.*float32 or float64, got int64"):
            nn.AvgPool2d(2)(np.zeros((1, 1, 4, 4), np.int64))

    @pytest.mark.parametrize("layer, shape, padded", [
        (nn.MaxPool2d(3), (2, 2), r"\(2, 2\)"),
        (nn.AvgPool2d(4, padding=1), (2, 1), r"\(4, 3\)"),
        (nn.LPPool2d(2, (1, 5)), (2, 4), r"\(2, 4\)")])
    def test_window_larger_than_padded_input(self, layer, shape, padded):
        kernel = r"\(%d, %d\)" % layer.kernel_size
        with pytest.raises(ValueError, match=kernel + r" is larger than the padded input " + padded):
            layer(np.zeros((1, 1, *shape), np.float32))

    @pytest.mark.parametrize("make", [lambda: nn.MaxPool2d(3, padding=2), lambda: nn.AvgPool2d(2, padding=(0, 2)),
                                      lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 1, padding=1)])
    def test_padding_more_than_half_the_kernel(self, make):
        with pytest.raises(ValueError, match=r"padding should be at most half of the kernel size"):
            make()

    @pytest.mark.parametrize("stride", [0, -1, (1, 0)])
    def test_stride_not_positive(self, stride):
        with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2\): stride must be >= 1"):
            nn.MaxPool2d(2, stride)

    def test_bad_norm_type(self):
        with pytest.raises(ValueError, match=r"norm_type must be a finite number > 0, got 0"):
            nn.LPPool2d(0, 2)

    def test_bad_output_size(self):
        with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d\(output_size=\(0, 2\)\): output_size must be >= 1"):
            nn.AdaptiveAvgPool2d((0, 2))(np.zeros((1, 1, 4, 4)))

    def test_backward_before_forward(self):
        with pytest.raises(RuntimeError, match=r"MaxPool2d.*backward called before forward"):
            nn.MaxPool2d(2).backward(np.zeros((1, 1, 1, 1), np.float32))

    def test_dout_wrong_shape_and_dtype(self):
        layer = nn.AvgPool2d(2)
        layer(np.zeros((2, 3, 8, 8), np.float32))
        with pytest.raises(ValueError, match=r"AvgPool2d.*expected dout of shape \(2, 3, 4, 4\).*got \(2, 3, 8, 8\)"):
            layer.backward(np.zeros((2, 3, 8, 8), np.float32))
        with pytest.raises(TypeError, match=r"expected dout of dtype float32, got float64"):
            layer.backward(np.zeros((2, 3, 4, 4), np.float64))

    def test_indices_out_of_range(self):
        with pytest.raises(ValueError, match=r"indices must lie in \[0, H·W\) = \[0, 16\)"):
            F.max_pool2d_backward(np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 16), (1, 1, 4, 4))


def test_functional_backward_checks_dy_against_the_window(rng):
    """A dy that does not match the window used to be read out of bounds by the kernels."""
    x = rng.standard_normal((2, 3, 7, 7))
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    bad = np.ones((2, 3, 3, 4))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: expected dy of shape \(2, 3, 4, 4\) .*got \(2, 3, 3, 4\)"):
        F.max_pool2d_backward(bad, idx, x.shape, 3, 2, 1)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: expected dy of shape \(2, 3, 4, 4\)"):
        F.max_pool2d_backward(bad, idx, x.shape)  # without the window: the indices give the shape
    with pytest.raises(ValueError, match=r"expected integer indices of shape \(2, 3, 4, 4\)"):
        F.max_pool2d_backward(np.ones_like(y), idx.astype(np.float64), x.shape, 3, 2, 1)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: expected dy of shape \(2, 3, 3, 3\) .*got \(2, 3, 4, 4\)"):
        F.avg_pool2d_backward(np.ones((2, 3, 4, 4)), x.shape, 3, 2)
    xp = np.abs(x) + 0.1
    yp = F.lp_pool2d(xp, 2, 3, 2)
    with pytest.raises(ValueError, match=r"lp_pool2d_backward: expected dy of shape \(2, 3, 3, 3\)"):
        F.lp_pool2d_backward(np.ones((2, 3, 4, 4)), xp, yp, 2, 3, 2)
    with pytest.raises(ValueError, match=r"lp_pool2d_backward: expected y of shape \(2, 3, 3, 3\)"):
        F.lp_pool2d_backward(np.ones_like(yp), xp, yp[:, :, :2], 2, 3, 2)
    with pytest.raises(TypeError, match=r"lp_pool2d_backward: expected dy of dtype float64, got float32"):
        F.lp_pool2d_backward(np.ones_like(yp, np.float32), xp, yp, 2, 3, 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: expected dy of shape \(2, 3, Ho, Wo\)"):
        F.adaptive_avg_pool2d_backward(np.ones((2, 4, 1, 1)), x.shape)
    for bad_dtype in (np.int64, np.float16):
        with pytest.raises(TypeError, match=r"expected dy of dtype float32 or float64"):
            F.max_pool2d_backward(np.ones(y.shape, bad_dtype), idx, x.shape, 3, 2, 1)
        with pytest.raises(TypeError, match=r"expected dy of dtype float32 or float64"):
            F.avg_pool2d_backward(np.ones((2, 3, 3, 3), bad_dtype), x.shape, 3, 2)


def test_max_pooling_an_empty_batch_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"MaxPool2d.*expected a non-empty input of shape \(N, C, H, W\), got shape \(0, 1, 4, 4\)"):
        nn.MaxPool2d(2)(np.zeros((0, 1, 4, 4)))
    assert nn.AvgPool2d(2)(np.zeros((0, 1, 4, 4))).shape == (0, 1, 2, 2)  # averaging works on no samples


# -- ceil_mode ---------------------------------------------------------------------------------------

@given(window_configs(), st.booleans())
def test_ceil_mode_pooling_matches_torch(cfg, count_include_pad):
    """PyTorch's ceil-mode output size, partial last windows, and the divisor of a partial window
    with count_include_pad (the padding counts, the overhang past it does not)."""
    rng, dtype = np.random.default_rng(cfg["seed"]), cfg["dtype"]
    x = make_input(rng, cfg["shape"], dtype, cfg["contiguous"])
    args = cfg["kernel"], cfg["stride"], cfg["padding"]
    check_against_torch(nn.MaxPool2d(*args, ceil_mode=True), lambda t: tF.max_pool2d(t, *args, ceil_mode=True),
                        x, dtype, rng)
    _, indices = F.max_pool2d(x, *args, return_indices=True, ceil_mode=True)
    _, torch_indices = tF.max_pool2d(torch.from_numpy(np.array(x)), *args, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(indices, torch_indices.numpy())
    check_against_torch(nn.AvgPool2d(*args, ceil_mode=True, count_include_pad=count_include_pad),
                        lambda t: tF.avg_pool2d(t, *args, ceil_mode=True, count_include_pad=count_include_pad),
                        x, dtype, rng)


def test_ceil_mode_keeps_the_partial_window_and_drops_one_in_the_padding():
    x = np.arange(1 * 1 * 5 * 5, dtype=np.float64).reshape(1, 1, 5, 5)
    assert nn.MaxPool2d(2, 2)(x).shape == (1, 1, 2, 2)
    y = nn.MaxPool2d(2, 2, ceil_mode=True)(x)
    assert y.shape == (1, 1, 3, 3) and y[0, 0, 2, 2] == x[0, 0, 4, 4]  # the last window holds one element
    # 6 = 4 + 2·1: ceil((6 − 2)/2) + 1 = 3 windows would start at 4 = in the right padding: dropped
    assert nn.MaxPool2d(2, 2, padding=1, ceil_mode=True)(np.zeros((1, 1, 4, 4))).shape == (1, 1, 3, 3)
    partial = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True)(np.ones((1, 1, 4, 4)))
    torch_partial = tF.avg_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.float64), 3, 2, 1, ceil_mode=True)
    np.testing.assert_allclose(partial, torch_partial.numpy(), rtol=1e-15)
    assert partial[0, 0, -1, -1] != 1.0  # the divisor counts the padding (4 of 6 cells are input)
    assert "ceil_mode=True" in repr(nn.AvgPool2d(2, ceil_mode=True))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: expected dy of shape \(1, 1, 3, 3\)"):
        F.max_pool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), np.int64), (1, 1, 5, 5), 2, 2,
                              ceil_mode=True)
