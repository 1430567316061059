r"""Losses: ``CrossEntropyLoss`` (softmax + negative log-likelihood) and ``MSELoss``.

A loss is the end of the chain: ``loss = crit(prediction, target)`` returns a
Python float and ``crit.backward()`` returns ∂loss/∂prediction, the dout that
starts the network's backward pass.  ``backward(dloss)`` scales it by dL/dloss,
e.g. 0.3 for an auxiliary classifier's loss in ``real + 0.3·aux``.

Cross-entropy with logits x (N, C), integer targets t (N,) and label smoothing ε::

    log p_ij = x_ij − logsumexp_i,   logsumexp_i = m_i + log Σ_j exp(x_ij − m_i),  m_i = max_j x_ij
    ℓ_i      = −(1 − ε)·log p_{i,t_i} − (ε/C)·Σ_j log p_ij
    loss     = (1/N)·Σ_i ℓ_i                          (reduction="mean"; "sum" drops the 1/N)
    ∂loss/∂x_ij = (p_ij − (1 − ε)·[j = t_i] − ε/C) / N      (softmax minus the smoothed one-hot)

Subtracting the row maximum m_i leaves the result unchanged and keeps every
exponent ≤ 0, so huge logits cannot overflow.

Mean squared error with prediction ŷ and target y of the same shape (K elements)::

    loss = (1/K)·Σ (ŷ − y)²,        ∂loss/∂ŷ = 2·(ŷ − y) / K

Kernels: ``numbanet.kernels.cpu.loss``; on the GPU (device-array inputs)
``numbanet.kernels.cuda.loss``.
"""
from __future__ import annotations

import math

import numpy as np

from ._validate import as_float_array, check_device, check_ndim
from .device import device_of, is_cuda, to_device, to_numpy
from .kernels import backend
from .module import Module

_REDUCTIONS = ("mean", "sum")


def _check_reduction(name: str, reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be 'mean' or 'sum', got {reduction!r}")
    return reduction


def _check_smoothing(name: str, label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must lie in [0, 1], got {label_smoothing}")
    return float(label_smoothing)


def _scale(name: str, reduction: str, count: int, dloss) -> float:
    """dL/dloss times the reduction's 1/count (mean) or 1 (sum)."""
    if np.ndim(dloss) != 0:
        raise ValueError(f"{name}.backward: expected a scalar dL/dloss, got shape {np.shape(dloss)}")
    return float(dloss) / count if reduction == "mean" else float(dloss)


def _reduce(per_item_sums: np.ndarray, reduction: str, count: int) -> float:
    """The loss as a Python float; on the GPU the sum is taken there and only it is copied back."""
    total = backend(per_item_sums).loss.total(per_item_sums)
    return total / count if reduction == "mean" else total


def _check_target_range(name: str, target: np.ndarray, classes: int) -> None:
    outside = (target < 0) | (target >= classes)
    if outside.any():
        raise ValueError(f"{name}: target class indices must lie in 0..{classes - 1} for {classes} "
                         f"classes, got {target[outside][:5].tolist()}")


def _check_cross_entropy(name: str, logits, target) -> tuple[np.ndarray, np.ndarray]:
    """Validate logits (N, C) float and target (N,) integer in 0..C−1; return both contiguous, on
    the logits' device.  A target already on the GPU is range-checked by ``_cross_entropy_loss``."""
    logits = as_float_array(name, logits, "logits")
    check_ndim(name, logits, 2, "(N, C)")
    n, classes = logits.shape
    if n == 0 or classes == 0:
        raise ValueError(f"{name}: expected logits of shape (N, C) with N, C >= 1, got shape {logits.shape}")
    if not is_cuda(target):
        target = np.asarray(target)
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"{name}: expected target of integer class indices, shape ({n},), "
                        f"got dtype {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"{name}: expected target of shape ({n},) (one class index per logits row), "
                         f"got shape {target.shape}")
    if is_cuda(target):
        check_device(name, target, logits, name="target", reference="the input is")
        return logits, target
    _check_target_range(name, target, classes)
    target = np.ascontiguousarray(target, dtype=np.int64)
    return logits, to_device(target, device_of(logits))


def _cross_entropy_rows(name: str, logits, target, label_smoothing: float):
    """(logits, target, logsumexp (N,), per-row losses (N,)) after validation."""
    logits, target = _check_cross_entropy(name, logits, target)
    smoothing = _check_smoothing(name, label_smoothing)
    return (logits, target, *backend(logits).loss.cross_entropy_rows(logits, target, smoothing))


def _cross_entropy_loss(name: str, losses, target, classes: int, reduction: str) -> float:
    """The reduced loss.  A NaN from the GPU may come from a device target outside 0..C−1 (the
    kernel marks such rows NaN): only then are the targets copied to the host, to say which."""
    loss = _reduce(losses, reduction, losses.shape[0])
    if math.isnan(loss) and is_cuda(target):
        _check_target_range(name, to_numpy(target), classes)
    return loss


def cross_entropy(logits, target, label_smoothing: float = 0.0, reduction: str = "mean",
                  *, name: str = "cross_entropy") -> float:
    """Softmax cross-entropy of logits (N, C) against integer targets (N,) -> float."""
    _check_reduction(name, reduction)
    logits, target, _, losses = _cross_entropy_rows(name, logits, target, label_smoothing)
    return _cross_entropy_loss(name, losses, target, logits.shape[1], reduction)


def cross_entropy_backward(logits, target, label_smoothing: float = 0.0, reduction: str = "mean",
                           dloss: float = 1.0, *, logsumexp=None,
                           name: str = "cross_entropy") -> np.ndarray:
    """dlogits (N, C), in the logits' dtype: dloss·(softmax − smoothed one-hot)/N for reduction="mean".

    ``logsumexp`` (N,), float64, may be passed from the forward pass to skip recomputing it.
    On the GPU a row whose (device) target is outside 0..C−1 gets NaN gradients.
    """
    _check_reduction(name, reduction)
    if logsumexp is None:
        logits, target, logsumexp, _ = _cross_entropy_rows(name, logits, target, label_smoothing)
    else:
        logits, target = _check_cross_entropy(name, logits, target)
    smoothing = _check_smoothing(name, label_smoothing)
    scale = _scale(name, reduction, logits.shape[0], dloss)
    return backend(logits).loss.cross_entropy_backward(logits, target, logsumexp, smoothing, scale)


class CrossEntropyLoss(Module):
    """``loss = crit(logits, target)`` (float); ``crit.backward()`` -> dlogits (N, C).

    logits: (N, C) float32/float64 scores (not probabilities); target: (N,) integer
    class indices in 0..C−1.  PyTorch's ``label_smoothing`` and ``reduction`` ("mean", "sum").
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__()
        self.label_smoothing = _check_smoothing("CrossEntropyLoss", label_smoothing)
        self.reduction = _check_reduction("CrossEntropyLoss", reduction)

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        logits, target, logsumexp, losses = _cross_entropy_rows(
            self.describe(), logits, target, self.label_smoothing)
        self._save_for_backward(logits, target, logsumexp)
        return _cross_entropy_loss(self.describe(), losses, target, logits.shape[1], self.reduction)

    def backward(self, dout: float = 1.0) -> np.ndarray:
        logits, target, logsumexp = self._saved()
        return cross_entropy_backward(logits, target, self.label_smoothing, self.reduction, dout,
                                      logsumexp=logsumexp, name=self.describe())

    def extra_repr(self) -> str:
        parts = [f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else []
        if self.reduction != "mean":
            parts.append(f"reduction={self.reduction!r}")
        return ", ".join(parts)


def _check_mse(name: str, prediction, target) -> tuple[np.ndarray, np.ndarray]:
    prediction = as_float_array(name, prediction)
    target = as_float_array(name, target, "target")
    if target.shape != prediction.shape:
        raise ValueError(f"{name}: expected target of the input's shape {prediction.shape}, "
                         f"got shape {target.shape}")
    if target.dtype != prediction.dtype:
        raise TypeError(f"{name}: target dtype {target.dtype} does not match the input dtype "
                        f"{prediction.dtype}")
    check_device(name, target, prediction, name="target", reference="the input is")
    if prediction.size == 0:
        raise ValueError(f"{name}: expected a non-empty input, got shape {prediction.shape}")
    return prediction, target


def mse_loss(prediction, target, reduction: str = "mean", *, name: str = "mse_loss") -> float:
    """Mean (or sum) of (prediction − target)² over every element -> float.  Both arrays of one shape."""
    _check_reduction(name, reduction)
    prediction, target = _check_mse(name, prediction, target)
    return _reduce(backend(prediction).loss.squared_error_partials(prediction, target), reduction, prediction.size)


def mse_loss_backward(prediction, target, reduction: str = "mean", dloss: float = 1.0,
                      *, name: str = "mse_loss") -> np.ndarray:
    """∂loss/∂prediction = dloss·2·(prediction − target)/K (K elements; no /K for "sum"), prediction's shape."""
    _check_reduction(name, reduction)
    prediction, target = _check_mse(name, prediction, target)
    scale = _scale(name, reduction, prediction.size, dloss)
    return backend(prediction).loss.squared_error_backward(prediction, target, scale)


class MSELoss(Module):
    """``loss = crit(prediction, target)`` (float); ``crit.backward()`` -> dprediction (prediction's shape)."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction("MSELoss", reduction)

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        prediction, target = _check_mse(self.describe(), prediction, target)
        self._save_for_backward(prediction, target)
        return mse_loss(prediction, target, self.reduction, name=self.describe())

    def backward(self, dout: float = 1.0) -> np.ndarray:
        prediction, target = self._saved()
        return mse_loss_backward(prediction, target, self.reduction, dout, name=self.describe())

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"
