r"""Normalisation layers: BatchNorm1d/2d, InstanceNorm2d, GroupNorm, LayerNorm, LocalResponseNorm.

BatchNorm, InstanceNorm, GroupNorm and LayerNorm are one computation over
different *blocks* of elements.  View the input as x (N, C, P), P = positions
(H·W, L or 1).  For a block B of m elements and the channel c of element i::

    μ_B  = (1/m) Σ_{i∈B} x_i            σ²_B = (1/m) Σ_{i∈B} (x_i − μ_B)²   (biased)
    x̂_i  = (x_i − μ_B) / √(σ²_B + ε)    y_i  = γ_c · x̂_i + β_c

    layer          a block is                          m            γ, β
    BatchNorm      one channel, whole batch            N·P          per channel
    InstanceNorm   one channel of one sample           P            per channel
    GroupNorm      C/G channels of one sample          (C/G)·P      per channel
    LayerNorm      all of normalized_shape, one sample D = Π shape  per element (viewed as
                                                                    (N, D, 1): D channels, 1 group)

Backward, with dy = ∂L/∂y, σ = √(σ²_B + ε) and dx̂ = γ_c·dy = ∂L/∂x̂::

    ∂L/∂β_c = Σ_{i in channel c} dy_i              ∂L/∂γ_c = Σ_{i in channel c} dy_i · x̂_i
    ∂L/∂x_i = (1/σ) · (dx̂_i − (1/m) Σ_B dx̂ − x̂_i · (1/m) Σ_B dx̂·x̂)

For BatchNorm γ is constant on a block and this is the compact formula
∂L/∂x_i = γ/(m·σ) · (m·dy_i − Σ dy − x̂_i Σ dy·x̂); its two block sums are γ·∂L/∂β and
γ·∂L/∂γ, so they are not computed twice.

BatchNorm in evaluation mode normalises with the running statistics, constants,
so the layer is the per-channel affine map (``BatchNorm2d.affine_params``)::

    y = scale·x + shift,   scale = γ / √(running_var + ε),   shift = β − scale·running_mean
    ∂L/∂x = scale·dy       (the two centring terms above vanish)

Running statistics, updated in training mode with momentum α (PyTorch's
convention: α weighs the *new* value; ``momentum=None`` gives the cumulative
average α = 1/num_batches_tracked)::

    running_mean ← (1 − α)·running_mean + α·μ_B
    running_var  ← (1 − α)·running_var  + α·σ²_B·m/(m − 1)     (unbiased estimate)

(InstanceNorm with track_running_stats: the batch average of the per-sample updates, as in PyTorch.)

Folding an evaluation-mode BatchNorm into the convolution before it
(``fold_batchnorm``): w'[k] = scale_k·w[k], b'[k] = scale_k·b[k] + shift_k.

LocalResponseNorm (across channels, as in AlexNet), window size n, a = input::

    s_c = k + (α/n) Σ_{c'=c−⌊n/2⌋}^{c+⌊(n−1)/2⌋} a_{c'}²        (channels outside [0, C) count as 0)
    b_c = a_c · s_c^(−β)
    ∂L/∂a_j = dy_j · s_j^(−β) − (2αβ/n) · a_j · Σ_{c: j in window(c)} dy_c · a_c · s_c^(−β−1)

where the channels c whose window holds j form the mirrored window
[j − ⌊(n−1)/2⌋, j + ⌊n/2⌋].

Kernels: ``numbanet.kernels.cpu.norm``; on the GPU (device-array inputs)
``numbanet.kernels.cuda.norm``.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_device, check_dtype_match, check_dy, check_grad, check_nonempty
from .activation import ReLU
from .conv import Conv2d
from .device import is_cuda, to_numpy
from .kernels import backend
from .module import Module
from .tensor import Parameter


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _check_input(name: str, x, layout: str, ndims: tuple = (), min_ndim: int = 0,
                 channels: int | None = None, dtype=None, allow_empty: bool = False) -> np.ndarray:
    """x as a contiguous float array with ndim in ``ndims`` (or >= ``min_ndim``) and ``channels``
    at dim 1, non-empty unless ``allow_empty`` (LayerNorm's rows are independent)."""
    x = as_float_array(name, x)
    if not allow_empty:
        check_nonempty(name, x.shape, layout)
    if ndims and x.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name}: expected a {expected} input of shape {layout}, got shape {x.shape}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: expected an input of shape {layout} with at least {min_ndim} dims, "
                         f"got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected input with {channels} channels (dim 1 of {layout}), "
                         f"got shape {x.shape}")
    if dtype is not None:
        check_dtype_match(name, x, dtype)
    return x


def _per_channel(name: str, label: str, array, size: int, dtype) -> np.ndarray | None:
    """A weight or bias with ``size`` elements as a contiguous (size,) ``dtype`` array; None stays None."""
    if array is None:
        return None
    if not is_cuda(array):
        array = np.asarray(array)
    if array.size != size:
        raise ValueError(f"{name}: expected {label} with {size} elements, got shape {array.shape}")
    if is_cuda(array):  # not converted: that would be a copy on every call
        if array.dtype != np.dtype(dtype):
            raise TypeError(f"{name}: expected {label} of dtype {np.dtype(dtype)}, got {array.dtype}")
        return array.reshape(size)
    return np.ascontiguousarray(array, dtype=dtype).reshape(size)


def _check_running(name: str, running_mean, running_var, channels: int) -> None:
    """Running statistics are updated in place, so they must be (C,) arrays, NumPy or device (or both None)."""
    for label, array in (("running_mean", running_mean), ("running_var", running_var)):
        is_array = isinstance(array, np.ndarray) or is_cuda(array)
        if array is not None and (not is_array or array.shape != (channels,)):
            raise ValueError(f"{name}: expected {label} as a numpy array of shape ({channels},), "
                             f"got {getattr(array, 'shape', type(array).__name__)}")


def _single_value_error(name: str, what: str, shape) -> ValueError:
    return ValueError(f"{name}: expected more than 1 {what}, got input shape {shape}")


# --------------------------------------------------------------------------------------------
# the shared computation: normalise blocks of x (N, C, P)
# --------------------------------------------------------------------------------------------


def _block_statistics(x3: np.ndarray, rows: int, groups: int, eps: float):
    """(mean, var, invstd) of the blocks of x3 (N, C, P), each (rows, groups) float64.

    rows = 1: a block spans the batch; rows = N: one block per sample (see the kernels' docstring).
    """
    return backend(x3).norm.block_statistics(x3, rows, groups, eps)


def _fixed_statistics(running_mean, running_var, eps: float):
    """(mean, invstd), each (1, C) float64, from running statistics."""
    return backend(running_mean).norm.fixed_statistics(running_mean, running_var, eps)


def _normalize(x, x3, mean, invstd, gamma, beta, fixed_statistics: bool, residual=None, relu: bool = False):
    """(y, cache): y = γ·x̂ + β shaped like x (γ = 1, β = 0 when None); cache = ``_normalize_backward``'s args.

    Fused into the same pass (BatchNorm's statistics only): y = ReLU(γ·x̂ + β + residual) with a
    ``residual`` shaped like x, whose ReLU's backward is the caller's (the cache is the plain
    normalisation's); y = ReLU(γ·x̂ + β) with ``relu``, whose backward ``_normalize_backward``
    applies (the mask is recomputed from x).
    """
    if (relu or residual is not None) and mean.shape != (1, x3.shape[1]):
        # the backward kernels mask dy only where a block is one channel over the batch
        raise ValueError("the fused ReLU is for BatchNorm's statistics, one block per channel, got statistics "
                         f"of shape {mean.shape} for {x3.shape[1]} channels")
    residual3 = None if residual is None else residual.reshape(x3.shape)
    y3 = backend(x3).norm.normalize(x3, mean, invstd, gamma, beta, residual3, relu)
    relu_mask = relu and residual is None
    return y3.reshape(x.shape), (x.shape, x3, mean, invstd, gamma, fixed_statistics, beta, relu_mask)


def _normalize_backward(dy, x_shape, x3, mean, invstd, gamma, fixed_statistics: bool, beta=None,
                        relu: bool = False):
    """(dx shaped ``x_shape``, dγ (C,), dβ (C,)) for y = γ·x̂ + β, or y = ReLU(γ·x̂ + β) with ``relu``;
    formulas in the module docstring.

    ``fixed_statistics``: mean and invstd are constants (running statistics), not functions of x.
    """
    dx3, dgamma, dbeta = backend(x3).norm.normalize_backward(dy.reshape(x3.shape), x3, mean, invstd, gamma,
                                                            fixed_statistics, beta, relu)
    return dx3.reshape(x_shape), dgamma, dbeta


def _update_running(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """In place: running ← (1 − momentum)·running + momentum·new, where new is the average over the
    rows of the (R, C) block statistics, the variance made unbiased with m/(m − 1) (m = ``count``)."""
    backend(running_mean).norm.update_running(running_mean, running_var, mean, var, count, momentum)


# --------------------------------------------------------------------------------------------
# functional forms
# --------------------------------------------------------------------------------------------


def _count_batch(num_batches_tracked) -> None:
    """num_batches_tracked += 1, in place, on the device it lives on."""
    backend(num_batches_tracked).norm.count_batch(num_batches_tracked)


def _affine_args(name: str, x, weight, bias, size: int):
    """(γ, β) checked by ``_per_channel`` against x's dtype and device."""
    check_device(name, x, weight, bias)
    return _per_channel(name, "weight", weight, size, x.dtype), _per_channel(name, "bias", bias, size, x.dtype)


def _channel_statistics(name, x, running_mean, running_var, use_input_stats: bool, eps: float,
                        per_sample: bool):
    """(x3, mean, var, invstd) that BatchNorm (per_sample=False) or InstanceNorm (True) normalise x (N, C, *) with.

    Input statistics: blocks of one channel over the batch (BatchNorm) or of one channel of one
    sample (InstanceNorm); otherwise the running statistics, and var is None.
    """
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)
    if use_input_stats:
        if x3.shape[2] * (1 if per_sample else n) <= 1:
            what = "spatial element" if per_sample else "value per channel"
            raise _single_value_error(name, f"{what} when training", x.shape)
        return (x3, *_block_statistics(x3, n if per_sample else 1, c, eps))
    if running_mean is None or running_var is None:
        raise ValueError(f"{name}: running_mean and running_var are required when not normalising with the "
                         "input's statistics (training=False / use_input_stats=False)")
    mean, invstd = _fixed_statistics(running_mean, running_var, eps)
    return x3, mean, None, invstd


def _channel_norm(name, x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, per_sample,
                  residual=None, relu: bool = False):
    """BatchNorm / InstanceNorm forward on a checked x: (y, cache); ``residual``, ``relu``: the fused
    ReLU of ``_normalize``.

    With input statistics the running statistics, when given, are updated with the unbiased
    variance.  InstanceNorm's update is the batch average of the per-sample updates, as in
    PyTorch (which runs BatchNorm on x viewed as (1, N·C, *) and averages over N).
    """
    x3, mean, var, invstd = _channel_statistics(name, x, running_mean, running_var, use_input_stats, eps,
                                                per_sample)
    if use_input_stats and running_mean is not None:
        count = x3.shape[2] * (1 if per_sample else x3.shape[0])
        _update_running(running_mean, running_var, mean, var, count, momentum)
    return _normalize(x, x3, mean, invstd, weight, bias, not use_input_stats, residual, relu)


def _channel_norm_function(name, x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps,
                           per_sample, min_ndim):
    x = _check_input(name, x, "(N, C, *)", min_ndim=min_ndim)
    _check_running(name, running_mean, running_var, x.shape[1])
    check_device(name, x, running_mean, running_var)
    weight, bias = _affine_args(name, x, weight, bias, x.shape[1])
    return _channel_norm(name, x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps,
                         per_sample)[0]


def _channel_norm_backward(name, dy, x, running_mean, running_var, weight, use_input_stats, eps, per_sample,
                           min_ndim):
    x = _check_input(name, x, "(N, C, *)", min_ndim=min_ndim)
    dy = check_dy(f"{name}_backward", dy, x, why="the shape of x")
    _check_running(name, running_mean, running_var, x.shape[1])
    check_device(name, x, running_mean, running_var, weight)
    x3, mean, _, invstd = _channel_statistics(name, x, running_mean, running_var, use_input_stats, eps,
                                              per_sample)
    gamma = _per_channel(name, "weight", weight, x.shape[1], x.dtype)
    return _normalize_backward(dy, x.shape, x3, mean, invstd, gamma, not use_input_stats)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, name: str = "batch_norm") -> np.ndarray:
    """y = γ·(x − μ)/√(σ² + ε) + β per channel (PyTorch's ``F.batch_norm``).

    x: (N, C, *); running_mean, running_var: (C,) arrays or None; weight γ, bias β: (C,) or None
    -> y: same shape as x.
    training: μ, σ² are the batch's statistics over (N, *) (biased σ²), and the running
    statistics, when given, are updated in place with the unbiased σ²·m/(m − 1);
    otherwise μ, σ² are running_mean, running_var.
    """
    return _channel_norm_function(name, x, running_mean, running_var, weight, bias, training, momentum, eps,
                                  per_sample=False, min_ndim=2)


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, training: bool = False,
                        eps: float = 1e-5, *, name: str = "batch_norm"):
    """(dx, dγ, dβ) for y = batch_norm(x, running_mean, running_var, weight, bias, training, eps=eps).

    dy, x: (N, C, *) -> dx: like x; dγ, dβ: (C,) (the gradients for γ = 1 when weight is None).
    training: dx = γ/(m·σ)·(m·dy − Σdy − x̂·Σdy·x̂) (batch statistics recomputed from x);
    else dx = γ/√(running_var + ε)·dy.
    """
    return _channel_norm_backward(name, dy, x, running_mean, running_var, weight, training, eps,
                                  per_sample=False, min_ndim=2)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                  *, name: str = "instance_norm") -> np.ndarray:
    """y = γ_c·(x − μ_{n,c})/√(σ²_{n,c} + ε) + β_c: each channel of each sample normalised over its positions.

    x: (N, C, *); running_mean, running_var, weight γ, bias β: (C,) or None -> y: like x.
    use_input_stats=False normalises with running_mean, running_var instead (PyTorch's ``F.instance_norm``);
    with input statistics the running ones, when given, are updated (batch average of the BatchNorm update).
    """
    return _channel_norm_function(name, x, running_mean, running_var, weight, bias, use_input_stats, momentum,
                                  eps, per_sample=True, min_ndim=3)


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None,
                           use_input_stats: bool = True, eps: float = 1e-5, *, name: str = "instance_norm"):
    """(dx, dγ, dβ) for y = instance_norm(x, ...); shapes as in ``batch_norm_backward``, m = positions."""
    return _channel_norm_backward(name, dy, x, running_mean, running_var, weight, use_input_stats, eps,
                                  per_sample=True, min_ndim=3)


def _group_statistics(name, x, num_groups: int, eps: float):
    """(x3, mean, invstd) GroupNorm normalises x (N, C, *) with, statistics (N, num_groups)."""
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"{name}: expected a channel count divisible by num_groups={num_groups}, "
                         f"got shape {x.shape}")
    x3 = x.reshape(n, c, -1)
    if n * (c // num_groups) * x3.shape[2] == 1:  # PyTorch's rule (it allows 1 value per group if N > 1)
        raise _single_value_error(name, "value per group in the batch", x.shape)
    mean, _, invstd = _block_statistics(x3, n, num_groups, eps)
    return x3, mean, invstd


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5,
               *, name: str = "group_norm") -> np.ndarray:
    """y = γ_c·(x − μ_{n,g})/√(σ²_{n,g} + ε) + β_c, statistics over the C/G channels of group g and all positions.

    x: (N, C, *) with C divisible by num_groups G; weight γ, bias β: (C,) or None -> y: like x.
    """
    x = _check_input(name, x, "(N, C, *)", min_ndim=2)
    x3, mean, invstd = _group_statistics(name, x, num_groups, eps)
    weight, bias = _affine_args(name, x, weight, bias, x.shape[1])
    return _normalize(x, x3, mean, invstd, weight, bias, fixed_statistics=False)[0]


def group_norm_backward(dy, x, num_groups: int, weight=None, eps: float = 1e-5, *, name: str = "group_norm"):
    """(dx, dγ, dβ) for y = group_norm(x, num_groups, weight, bias, eps): dx like x; dγ, dβ (C,)."""
    x = _check_input(name, x, "(N, C, *)", min_ndim=2)
    dy = check_dy(f"{name}_backward", dy, x, why="the shape of x")
    check_device(name, x, weight)
    x3, mean, invstd = _group_statistics(name, x, num_groups, eps)
    gamma = _per_channel(name, "weight", weight, x.shape[1], x.dtype)
    return _normalize_backward(dy, x.shape, x3, mean, invstd, gamma, False)


def _as_shape(name: str, normalized_shape) -> tuple[int, ...]:
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else \
        tuple(int(d) for d in normalized_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"{name}: normalized_shape must be a non-empty tuple of sizes >= 1, got {shape}")
    return shape


def _layer_statistics(name, x, normalized_shape: tuple, eps: float):
    """(x3, mean, invstd) LayerNorm normalises x (*, *normalized_shape) with: x3 = (rows, D, 1), statistics (rows, 1)."""
    if x.ndim < len(normalized_shape) or x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        layout = "(*, " + ", ".join(map(str, normalized_shape)) + ")"
        raise ValueError(f"{name}: expected input of shape {layout} ending in normalized_shape "
                         f"{normalized_shape}, got shape {x.shape}")
    x3 = x.reshape(-1, int(np.prod(normalized_shape)), 1)
    mean, _, invstd = _block_statistics(x3, x3.shape[0], 1, eps)
    return x3, mean, invstd


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5,
               *, name: str = "layer_norm") -> np.ndarray:
    """y = γ·(x − μ)/√(σ² + ε) + β, statistics over the trailing dims ``normalized_shape`` of each sample.

    x: (*, *normalized_shape); weight γ, bias β: normalized_shape or None -> y: like x.
    """
    shape = _as_shape(name, normalized_shape)
    x = as_float_array(name, x)
    x3, mean, invstd = _layer_statistics(name, x, shape, eps)
    weight, bias = _affine_args(name, x, weight, bias, x3.shape[1])
    return _normalize(x, x3, mean, invstd, weight, bias, fixed_statistics=False)[0]


def layer_norm_backward(dy, x, normalized_shape, weight=None, eps: float = 1e-5, *, name: str = "layer_norm"):
    """(dx, dγ, dβ) for y = layer_norm(x, normalized_shape, weight, bias, eps); dγ, dβ flattened (Π normalized_shape,)."""
    shape = _as_shape(name, normalized_shape)
    x = as_float_array(name, x)
    dy = check_dy(f"{name}_backward", dy, x, why="the shape of x")
    check_device(name, x, weight)
    x3, mean, invstd = _layer_statistics(name, x, shape, eps)
    gamma = _per_channel(name, "weight", weight, x3.shape[1], x.dtype)
    return _normalize_backward(dy, x.shape, x3, mean, invstd, gamma, False)


def _lrn_scale(x3: np.ndarray, size: int, alpha: float, k: float, beta: float):
    """(y3, s) with s = k + (α/n)·Σ_window x² and y3 = x3·s^(−β), for x3 (N, C, P)."""
    return backend(x3).norm.lrn_scale(x3, size, alpha, k, beta)


def _lrn_backward(dy3, x3, scale, size: int, alpha: float, beta: float) -> np.ndarray:
    """dx3 for y3 = x3·s^(−β) (formula in the module docstring); ``scale`` = s from the forward pass."""
    return backend(x3).norm.lrn_backward(dy3, x3, scale, size, alpha, beta)


def _check_lrn(name: str, x, size) -> np.ndarray:
    if int(size) < 1:
        raise ValueError(f"{name}: size must be >= 1, got {size}")
    x = _check_input(name, x, "(N, C, *)", min_ndim=3)
    return x.reshape(x.shape[0], x.shape[1], -1)


def local_response_norm(x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                        *, name: str = "local_response_norm") -> np.ndarray:
    """b_c = a_c·(k + (α/n)·Σ_{c' in window} a_{c'}²)^(−β), window of n = ``size`` channels centred on c.

    x: (N, C, *) -> y: like x.  Window [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋], zero-padded (PyTorch's formula).
    """
    x3 = _check_lrn(name, x, size)
    return _lrn_scale(x3, int(size), alpha, k, beta)[0].reshape(np.shape(x))


def local_response_norm_backward(dy, x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                                 *, name: str = "local_response_norm") -> np.ndarray:
    """dx for y = local_response_norm(x, size, alpha, beta, k); dy, x: (N, C, *) -> dx: like x."""
    x3 = _check_lrn(name, x, size)
    dy = check_dy(f"{name}_backward", dy, x3, np.shape(x), why="the shape of x")
    scale = _lrn_scale(x3, int(size), alpha, k, beta)[1]
    return _lrn_backward(dy.reshape(x3.shape), x3, scale, int(size), alpha, beta).reshape(np.shape(x))


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------


class _Normalization(Module):
    """Base of the layers built on ``_normalize``: the input dtype rule and ``backward``.

    ``backward(dy)`` returns ∂L/∂x and adds ∂L/∂γ, ∂L/∂β into ``weight.grad``, ``bias.grad``.
    """

    weight: Parameter | None
    bias: Parameter | None

    def _input_dtype(self):
        """The dtype inputs must have: the parameters' or the running statistics' (None: any float)."""
        for param in self.parameters():
            return param.dtype
        for _, buffer in self.named_buffers():
            if buffer.dtype.kind == "f":
                return buffer.dtype
        return None

    def _check_device(self, x) -> None:
        """The input, the parameters and the running statistics must live on one device."""
        state = [p.data for p in self.parameters()] + [b for _, b in self.named_buffers()]
        check_device(self.describe(), x, *state)

    def _affine(self):
        """(γ, β) flattened, None where the layer has no such parameter."""
        return tuple(None if p is None else p.data.reshape(-1) for p in (self.weight, self.bias))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._saved()
        x_shape, x3 = cache[0], cache[1]
        dout = check_grad(self.describe(), dout, x_shape, x3.dtype, like=x3)
        dx, dgamma, dbeta = _normalize_backward(dout, *cache)
        if self.weight is not None:
            self.weight.add_grad(dgamma.reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.add_grad(dbeta.reshape(self.bias.shape))
        return dx


class _RunningStatsNorm(_Normalization):
    """BatchNorm and InstanceNorm: per-channel γ, β (ones, zeros) and optional running statistics.

    Buffers (PyTorch's names, in the state dict): running_mean (zeros), running_var (ones),
    num_batches_tracked (int64 scalar; ``Module.to`` leaves it int64).
    """

    def __init__(self, num_features: int, eps: float, momentum: float | None, affine: bool,
                 track_running_stats: bool, dtype):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be >= 1, got {num_features}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def _check(self, x) -> np.ndarray:
        x = _check_input(self.describe(), x, self._layout, self._ndims, channels=self.num_features,
                         dtype=self._input_dtype())
        self._check_device(x)
        return x

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class _BatchNorm(_RunningStatsNorm):
    _layout: str
    _ndims: tuple

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def forward(self, x: np.ndarray, *, relu: bool = False, residual: np.ndarray | None = None) -> np.ndarray:
        """y = BN(x); the keywords fuse what follows BatchNorm in a network into the same pass
        (``Sequential`` and the ResNet blocks use them; the result is bit for bit the separate layers'):

        * ``relu=True``: y = ReLU(BN(x)), and ``backward`` takes ∂L/∂y of that ReLU output;
        * ``residual=r`` (shaped like x): y = ReLU(BN(x) + r); ``backward`` then takes
          ∂L/∂(BN(x) + r), the gradient *after* the caller applied ReLU's derivative (it needs
          that gradient for r's branch anyway).
        """
        x = self._check(x)
        if residual is not None:
            name = self.describe()
            check_device(name, x, residual)
            if residual.shape != x.shape or residual.dtype != x.dtype:
                raise ValueError(f"{name}: residual must match the input, expected {x.shape} {x.dtype}, "
                                 f"got {residual.shape} {residual.dtype}")
        momentum = 0.0
        if self.training and self.track_running_stats:
            _count_batch(self.num_batches_tracked)
            # momentum=None (cumulative average) reads the count: one copy to the host on the GPU
            momentum = 1.0 / to_numpy(self.num_batches_tracked).item() if self.momentum is None else self.momentum
        use_batch_statistics = self.training or not self.track_running_stats
        y, cache = _channel_norm(self.describe(), x, self.running_mean, self.running_var, *self._affine(),
                                 use_batch_statistics, momentum, self.eps, False, residual, relu)
        self._save_for_backward(*cache)
        return y

    @staticmethod
    def fuses_relu(bn: Module, activation: Module) -> bool:
        """Whether ``bn`` followed by ``activation`` may run as ``bn(x, relu=True)``: numbanet's own
        BatchNorm and ReLU classes (a subclass or a replaced ``forward`` may compute something else)."""
        return (isinstance(bn, _BatchNorm) and type(bn).forward is _BatchNorm.forward
                and type(activation) is ReLU and "forward" not in vars(bn) and "forward" not in vars(activation))

    def _eval_affine(self):
        """(scale, shift) float64 of the evaluation-mode map y = scale·x + shift."""
        if not self.track_running_stats:
            raise ValueError(f"{self.describe()}: affine_params needs running statistics "
                             "(track_running_stats=True)")
        mean, invstd = _fixed_statistics(to_numpy(self.running_mean), to_numpy(self.running_var), self.eps)
        gamma = 1.0 if self.weight is None else to_numpy(self.weight.data).astype(np.float64)
        beta = 0.0 if self.bias is None else to_numpy(self.bias.data).astype(np.float64)
        scale = gamma * invstd[0]
        return scale, beta - scale * mean[0]

    def affine_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift), each (C,): in evaluation mode y[:, c] = scale[c]·x[:, c] + shift[c], with
        scale = γ/√(running_var + ε) and shift = β − γ·running_mean/√(running_var + ε)."""
        dtype = self._input_dtype()
        return tuple(a.astype(dtype) for a in self._eval_affine())


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, H, W) per channel of an (N, C, H, W) input (PyTorch's semantics).

    Training: batch statistics (biased variance), running statistics updated (unbiased variance).
    Evaluation: the running statistics.  Formulas in the module docstring.
    """

    _layout, _ndims = "(N, C, H, W)", (4,)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation per channel of an (N, C) or (N, C, L) input; see ``BatchNorm2d``."""

    _layout, _ndims = "(N, C) or (N, C, L)", (2, 3)


class InstanceNorm2d(_RunningStatsNorm):
    """Each channel of each sample of an (N, C, H, W) input normalised over its H·W positions.

    PyTorch's defaults: no affine parameters, no running statistics.  With track_running_stats
    the running statistics are updated in training and used in evaluation, as in BatchNorm
    (num_batches_tracked exists for the state dict but, as in PyTorch, stays 0).
    """

    _layout, _ndims = "(N, C, H, W)", (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        use_input_stats = self.training or not self.track_running_stats
        y, cache = _channel_norm(self.describe(), x, self.running_mean, self.running_var, *self._affine(),
                                 use_input_stats, momentum, self.eps, per_sample=True)
        self._save_for_backward(*cache)
        return y


class GroupNorm(_Normalization):
    """The channels of an (N, C, *) input split into num_groups groups; each group of each sample
    normalised over its channels and positions; per-channel γ (ones), β (zeros) when affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels must be divisible by num_groups, "
                             f"got num_channels={num_channels}, num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self.weight = Parameter(np.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype)) if affine else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        name = self.describe()
        x = _check_input(name, x, "(N, C, *)", min_ndim=2, channels=self.num_channels, dtype=self._input_dtype())
        self._check_device(x)
        x3, mean, invstd = _group_statistics(name, x, self.num_groups, self.eps)
        y, cache = _normalize(x, x3, mean, invstd, *self._affine(), fixed_statistics=False)
        self._save_for_backward(*cache)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LayerNorm(_Normalization):
    """Each sample normalised over its trailing dims ``normalized_shape``; γ (ones), β (zeros) of
    shape normalized_shape when elementwise_affine (``bias=False``: no β), as in PyTorch."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=np.float32):
        super().__init__()
        self.normalized_shape = _as_shape("LayerNorm", normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype)) if elementwise_affine and bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        name = self.describe()
        x = _check_input(name, x, "(*, *normalized_shape)", dtype=self._input_dtype(), allow_empty=True)
        self._check_device(x)
        x3, mean, invstd = _layer_statistics(name, x, self.normalized_shape, self.eps)
        y, cache = _normalize(x, x3, mean, invstd, *self._affine(), fixed_statistics=False)
        self._save_for_backward(*cache)
        return y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class LocalResponseNorm(Module):
    """Normalisation across channels (AlexNet): b_c = a_c·(k + α/n·Σ_{window} a²)^(−β), input (N, C, *)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        if size < 1:
            raise ValueError(f"LocalResponseNorm: size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), alpha, beta, k

    def forward(self, x: np.ndarray) -> np.ndarray:
        x3 = _check_lrn(self.describe(), x, self.size)
        y3, scale = _lrn_scale(x3, self.size, self.alpha, self.k, self.beta)
        self._save_for_backward(np.shape(x), x3, scale)
        return y3.reshape(np.shape(x))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_shape, x3, scale = self._saved()
        dout = check_grad(self.describe(), dout, x_shape, x3.dtype, like=x3)
        return _lrn_backward(dout.reshape(x3.shape), x3, scale, self.size, self.alpha, self.beta).reshape(x_shape)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def fold_batchnorm(conv: Conv2d, bn: _BatchNorm) -> Conv2d:
    """A new Conv2d equal to bn(conv(x)) with ``bn`` in evaluation mode (conv may have no bias).

    With bn's (scale, shift) = ``bn.affine_params()``:  w'[k] = scale_k·w[k],  b'[k] = scale_k·b[k] + shift_k.
    Computed in float64, stored in the convolution's dtype.
    """
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fold_batchnorm: {bn.describe()} normalises {bn.num_features} channels but "
                         f"{conv.describe()} has {conv.out_channels} output channels")
    scale, shift = bn._eval_affine()
    # a private generator: the initial values are overwritten, and the global one stays untouched
    folded = Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=True, dtype=conv.weight.dtype, rng=np.random.default_rng(0))
    folded.weight.data[...] = to_numpy(conv.weight.data).astype(np.float64) * scale[:, None, None, None]
    conv_bias = 0.0 if conv.bias is None else to_numpy(conv.bias.data).astype(np.float64)
    folded.bias.data[...] = scale * conv_bias + shift
    return folded
