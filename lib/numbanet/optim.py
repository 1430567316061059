r"""Optimizers (SGD, Adam, AdamW) and learning-rate schedulers, with PyTorch's update rules.

An optimizer holds a list of ``Parameter`` objects; ``step()`` updates every
``p.data`` in place from ``p.grad`` (which ``backward`` filled), ``zero_grad()``
resets the gradients.  There are no parameter groups: one learning rate
``opt.lr`` applies to every parameter, and a scheduler changes it by assigning
``opt.lr``.  Unlike PyTorch (where a parameter whose grad is None is skipped),
every parameter is updated on every step.

SGD (g = p.grad, μ momentum, τ dampening, λ weight decay)::

    g ← g + λ·p
    b ← g  (first step),   b ← μ·b + (1 − τ)·g  (later steps)
    g ← g + μ·b  (nesterov)   or   g ← b  (momentum > 0)
    p ← p − lr·g

Adam at step t (m, v start at 0)::

    g ← g + λ·p                                 (Adam's weight decay = L2 term in the gradient)
    m ← β1·m + (1 − β1)·g,    v ← β2·v + (1 − β2)·g²
    p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)

AdamW replaces the L2 term with decoupled decay applied first: p ← (1 − lr·λ)·p.

Schedulers set ``opt.lr`` from the epoch counter e (``scheduler.step()`` once per
epoch, after the epoch's optimizer steps), by PyTorch's closed forms::

    StepLR:            lr = lr₀·γ^⌊e / step_size⌋
    MultiStepLR:       lr = lr₀·γ^(number of milestones ≤ e)
    CosineAnnealingLR: lr = η_min + (lr₀ − η_min)·(1 + cos(π·e / T_max)) / 2

Kernels (elementwise, in place): ``backend(param.data).optim``, i.e. ``numbanet.kernels.cpu.optim``
or, for parameters on the GPU, ``numbanet.kernels.cuda.optim`` (update formulas in
``numbanet.kernels.formulas``), with the optimizer state created on the parameters' device.
"""
from __future__ import annotations

import bisect
import math

import numpy as np

from ._validate import contiguous
from .device import device_of, is_cuda, to_device, to_numpy
from .kernels import backend
from .tensor import Parameter


def _parameter_list(owner: str, params) -> list[Parameter]:
    if isinstance(params, Parameter) or not hasattr(params, "__iter__"):
        raise TypeError(f"{owner}: params must be an iterable of Parameters, e.g. model.parameters(), "
                        f"got {type(params).__name__}")
    params = list(params)
    if not params:
        raise ValueError(f"{owner}: got an empty parameter list")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{owner}: params[{i}] is a {type(p).__name__}, expected a Parameter "
                            f"(pass model.parameters())")
    if len({id(p) for p in params}) != len(params):
        raise ValueError(f"{owner}: a parameter appears more than once in params")
    return params


def _check_range(owner: str, name: str, value: float, low: float, high: float = math.inf,
                 high_open: bool = False) -> float:
    value = float(value)
    inside = low <= value < high if high_open else low <= value <= high
    if not inside:
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{owner}: {name} must lie in {bound}, got {value}")
    return value


def _flat(array: np.ndarray) -> np.ndarray:
    """1-D view of a C-contiguous array (NumPy or device), for kernels that update it in place."""
    if not (array.is_c_contiguous() if is_cuda(array) else array.flags.c_contiguous):
        raise ValueError("optimizer: parameter data must be C-contiguous to be updated in place")
    return array.reshape(-1)


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_cuda(value)


class Optimizer:
    """Base class: the parameters, ``lr`` and the per-parameter state (a dict per parameter).

    Subclasses list their hyperparameter attribute names in ``_hyperparameters`` and
    implement ``_update(param, state)``.
    """

    _hyperparameters: tuple[str, ...] = ("lr",)

    def __init__(self, params, lr: float):
        self.params = _parameter_list(type(self).__name__, params)
        self.lr = _check_range(type(self).__name__, "lr", lr, 0.0)
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (before the next backward pass accumulates)."""
        for param in self.params:
            param.zero_grad()

    def step(self) -> None:
        """Update every parameter in place from its ``grad``."""
        for param, state in zip(self.params, self.state):
            self._update(param, state)

    def _update(self, param: Parameter, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _update")

    @staticmethod
    def _buffer(state: dict, key: str, param: Parameter) -> tuple[np.ndarray, bool]:
        """(state[key] as a flat array in the parameter's dtype, whether it was just created as zeros)."""
        buf = state.get(key)
        if buf is None:
            buf = state[key] = backend(param.data).tensor.zeros_like(param.data)  # beside its parameter
            return _flat(buf), True
        if buf.dtype != param.dtype or device_of(buf) != param.device:
            # the model was converted with .to(dtype) or .to(device) since the last step
            buf = state[key] = to_device(to_numpy(buf).astype(param.dtype), param.device)
        return _flat(buf), False

    # -- checkpointing -------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {index: {name: array copy or int}}, "hyperparameters": {name: value}}.

        Parameter indices follow the order of ``params``; state appears after the first step.
        Arrays are NumPy copies (copied to the host when the state is on the GPU).
        """
        state = {i: {k: (np.array(to_numpy(v), copy=True) if _is_array(v) else v) for k, v in s.items()}
                 for i, s in enumerate(self.state) if s}
        return {"state": state, "hyperparameters": {k: getattr(self, k) for k in self._hyperparameters}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state saved by ``state_dict``; all problems reported together."""
        owner = f"{type(self).__name__}.load_state_dict"
        if set(state_dict) != {"state", "hyperparameters"}:
            raise ValueError(f"{owner}: expected keys ['hyperparameters', 'state'], got {sorted(state_dict)}")
        problems = []
        unknown = sorted(set(state_dict["hyperparameters"]) - set(self._hyperparameters))
        if unknown:
            problems.append(f"unknown hyperparameters {unknown} (expected {list(self._hyperparameters)})")
        for index, entry in state_dict["state"].items():
            if not (isinstance(index, (int, np.integer)) and 0 <= index < len(self.params)):
                problems.append(f"state index {index!r} is not a parameter index 0..{len(self.params) - 1}")
                continue
            for key, value in entry.items():
                if _is_array(value) and value.shape != self.params[index].shape:
                    problems.append(f"state[{index}][{key!r}]: expected shape {self.params[index].shape}, "
                                    f"got {value.shape}")
        if problems:
            raise ValueError(f"{owner}: " + "; ".join(problems))
        for key, value in state_dict["hyperparameters"].items():
            setattr(self, key, value)
        self.state = [{} for _ in self.params]
        for index, entry in state_dict["state"].items():
            param = self.params[index]
            self.state[index] = {k: (to_device(np.array(to_numpy(v), dtype=param.dtype), param.device)
                                     if _is_array(v) else v)
                                 for k, v in entry.items()}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={getattr(self, k)}" for k in self._hyperparameters)
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay, as torch.optim.SGD."""

    _hyperparameters = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        self.momentum = _check_range("SGD", "momentum", momentum, 0.0)
        self.dampening = float(dampening)
        self.weight_decay = _check_range("SGD", "weight_decay", weight_decay, 0.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={self.momentum}, dampening={self.dampening}")

    def _update(self, param: Parameter, state: dict) -> None:
        data, grad = _flat(param.data), contiguous(param.grad).reshape(-1)
        kernels = backend(param.data).optim
        if self.momentum == 0:
            kernels.sgd(data, grad, self.lr, self.weight_decay)
            return
        buf, first_step = self._buffer(state, "momentum_buffer", param)
        kernels.sgd_momentum(data, grad, buf, self.lr, self.weight_decay, self.momentum, self.dampening,
                             self.nesterov, first_step)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and L2 weight decay, as torch.optim.Adam.

    Per-parameter state: ``step`` (int), ``exp_avg`` (m) and ``exp_avg_sq`` (v).
    """

    _hyperparameters = ("lr", "betas", "eps", "weight_decay")
    _decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        name = type(self).__name__
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas}")
        self.betas = (_check_range(name, "betas[0]", betas[0], 0.0, 1.0, high_open=True),
                      _check_range(name, "betas[1]", betas[1], 0.0, 1.0, high_open=True))
        self.eps = _check_range(name, "eps", eps, 0.0)
        self.weight_decay = _check_range(name, "weight_decay", weight_decay, 0.0)

    def _update(self, param: Parameter, state: dict) -> None:
        beta1, beta2 = self.betas
        state["step"] = step = state.get("step", 0) + 1
        exp_avg, _ = self._buffer(state, "exp_avg", param)
        exp_avg_sq, _ = self._buffer(state, "exp_avg_sq", param)
        if self._decoupled_weight_decay:
            l2, decay_factor = 0.0, 1.0 - self.lr * self.weight_decay
        else:
            l2, decay_factor = self.weight_decay, 1.0
        backend(param.data).optim.adam(_flat(param.data), contiguous(param.grad).reshape(-1), exp_avg,
                                       exp_avg_sq, self.lr / (1.0 - beta1**step), beta1, beta2, self.eps,
                                       math.sqrt(1.0 - beta2**step), l2, decay_factor)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW."""

    _decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


# -- learning-rate schedulers -------------------------------------------------
class LRScheduler:
    """Base class: sets ``optimizer.lr = lr_at(epoch)`` on every ``step()``.

    Construction counts as the first step (epoch 0, lr = the optimizer's lr then), as in PyTorch.
    """

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a numbanet Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = -1
        self.step()

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not define lr_at")

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """[the learning rate set by the last step()], a one-element list like PyTorch's one-per-group list."""
        return [self.lr_at(self.last_epoch)]

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_lr, self.last_epoch = state_dict["base_lr"], state_dict["last_epoch"]
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(LRScheduler):
    """lr = lr₀·γ^⌊epoch / step_size⌋: decay by γ every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR: step_size must be an integer >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(LRScheduler):
    """lr = lr₀·γ^(number of milestones ≤ epoch); a repeated milestone decays twice, as in PyTorch."""

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1):
        milestones = sorted(int(m) for m in milestones)
        if milestones and milestones[0] < 0:
            raise ValueError(f"MultiStepLR: milestones must be >= 0, got {milestones}")
        self.milestones, self.gamma = milestones, float(gamma)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineAnnealingLR(LRScheduler):
    """lr = η_min + (lr₀ − η_min)·(1 + cos(π·epoch / T_max)) / 2 (SGDR without restarts)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
