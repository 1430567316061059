"""``Module``: the base class of every layer and network.

A module owns parameters (``Parameter``), buffers (plain arrays saved in the
state dict, e.g. BatchNorm's running statistics) and child modules, found by
attribute assignment as in PyTorch.  Unlike PyTorch there is no autograd: each
layer implements

* ``forward(x) -> y`` (called through ``__call__``), saving what backward needs with
  ``self._save_for_backward(...)``;
* ``backward(dout) -> dx``, taking it back with ``self._saved()``, returning dL/dx and
  *adding* dL/dθ into ``θ.grad``.

Composite modules (``Sequential``, ``Concat``, ``Add``) call their children's
backward in reverse order themselves, so the whole chain rule is visible code.

Caches follow PyTorch's rules as far as they can without a graph (``numbanet.caching``
has the details): a module may be called several times in one forward (each call pushes
a cache, each backward call pops the latest, so backward runs in reverse order); a
backward frees what it used, so a second backward without a new forward raises unless
the first was ``backward(dout, retain_graph=True)``; ``with numbanet.no_grad():``
forwards save nothing; a cache never shares memory with an array the caller holds.
Every subclass's ``forward`` and ``backward`` is wrapped (``__init_subclass__``) to
apply these rules, so every ``backward`` accepts ``retain_graph``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, NamedTuple

import numpy as np

from .device import CPU, Device, device, device_of, is_cuda, to_device, to_numpy
from .tensor import FLOAT_DTYPES, Parameter
from .caching import CacheStack, backward_wrapper, forward_wrapper


class IncompatibleKeys(NamedTuple):
    """What ``Module.load_state_dict`` did not match: keys the module has that the state dict
    lacks, and keys of the state dict the module does not have."""
    missing_keys: list
    unexpected_keys: list


class Module:
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_caches", CacheStack())

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name, wrapper in (("forward", forward_wrapper), ("backward", backward_wrapper)):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_caches_rules", False):
                wrapped = wrapper(method)
                wrapped._caches_rules = True
                setattr(cls, name, wrapped)

    # -- registration -------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in self._buffers and (isinstance(value, np.ndarray) or is_cuda(value)):
            object.__setattr__(self, name, value)  # replacing a buffer keeps it registered
            return
        table = self._parameters if isinstance(value, Parameter) else self._modules if isinstance(value, Module) else None
        for other in (self._parameters, self._modules, self._buffers):
            if other is not table:
                other.pop(name, None)
        if table is not None:
            table[name] = value  # a replaced entry keeps its place, as in PyTorch
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Store an array that is state (saved, loaded, moved) but not trained."""
        object.__setattr__(self, name, value)
        self._buffers[name] = None  # the value lives on the attribute; the table records the name

    def add_module(self, name: str, module: "Module | None") -> None:
        """Register ``module`` as the child ``name`` (a non-empty string without ".", not the name of
        another attribute), as ``self.name = module`` does."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{type(self).__name__}.add_module: a child's name must be a non-empty string "
                           f"without '.', got {name!r}")
        if name not in self._modules and (hasattr(type(self), name) or name in self.__dict__):
            raise KeyError(f"{type(self).__name__}.add_module: {name!r} is already an attribute of the module")
        setattr(self, name, module)

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every child (recursively), then on this module; return self.

        PyTorch's idiom for initialisation, e.g.
        ``model.apply(lambda m: nn.init.kaiming_normal_(m.weight) if isinstance(m, nn.Conv2d) else None)``.
        """
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- forward / backward ---------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def _save_for_backward(self, *values) -> None:
        """Push ``values`` (arrays, shapes, flags) for the matching ``backward`` call.

        Nothing is kept under ``numbanet.no_grad()``.  An array that shares memory with an
        input of the forward pass is stored as a copy, so the caller may overwrite its input.
        """
        self._caches.save(self.training, values)

    def _saved(self) -> tuple:
        """Pop the values the latest forward call saved (a tuple, as they were given).

        Raises a RuntimeError naming the module when there is nothing to differentiate:
        no forward yet, already used by a backward, a ``no_grad`` forward, or a cache that
        does not belong to the pass being differentiated (``numbanet.caching``).
        """
        return self._caches.take(self.describe())

    # -- traversal ------------------------------------------------------------
    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "", _seen: set | None = None) -> Iterator[tuple[str, "Module"]]:
        """This module and every descendant, depth first, each once (a module used in two places,
        e.g. one ReLU reused, is listed under its first name, as in PyTorch)."""
        _seen = set() if _seen is None else _seen
        if id(self) in _seen:
            return
        _seen.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, _seen)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter once (a shared one under its first name), so that an optimizer
        updates it once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- state ------------------------------------------------------------------
    def zero_grad(self) -> None:
        for param in self.parameters():
            param.zero_grad()

    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter value and buffer, keyed by dotted name (NumPy arrays,
        copied to the host when the module is on the GPU)."""
        state = OrderedDict((name, np.array(to_numpy(p.data), copy=True)) for name, p in self.named_parameters())
        state.update((name, np.array(to_numpy(b), copy=True)) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict: bool = True) -> "IncompatibleKeys":
        """Copy values into this module; return ``IncompatibleKeys(missing_keys, unexpected_keys)``
        as PyTorch does.  ``strict`` (default) makes missing or unexpected keys an error;
        a shape mismatch always is.  All problems are reported together."""
        targets = {}
        for module_name, module in self.named_modules():
            for name in list(module._parameters) + list(module._buffers):
                targets[f"{module_name}.{name}" if module_name else name] = (module, name)
        problems = []
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        for key, (module, name) in targets.items():
            if key in state_dict:
                current = getattr(module, name)
                current = current.data if isinstance(current, Parameter) else current
                new = np.asarray(state_dict[key])
                if new.shape != current.shape:
                    problems.append(f"{key}: expected shape {current.shape}, got {new.shape}")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for key, (module, name) in targets.items():
            if key not in state_dict:
                continue
            current = getattr(module, name)
            target = current.data if isinstance(current, Parameter) else current
            if is_cuda(target):
                target.copy_to_device(np.ascontiguousarray(to_numpy(state_dict[key]), dtype=target.dtype))
            else:
                target[...] = to_numpy(state_dict[key])
        return IncompatibleKeys(missing, unexpected)

    # -- dtype and device ---------------------------------------------------------
    def to(self, dtype) -> "Module":
        """Convert every parameter and buffer to ``dtype`` (np.float32 or np.float64), or move
        them to a device: ``to("cuda")``, ``to("cpu")`` or ``to(numbanet.device(...))``.

        Moving takes each parameter's value and gradient and every float or integer buffer
        (e.g. BatchNorm's running statistics) to the device; the module object stays the same.
        """
        if _is_device_name(dtype):
            return self._to_device(device(dtype))
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: expected float32 or float64, got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                param.astype(dtype)
            for name in module._buffers:
                value = getattr(module, name)
                if value.dtype in FLOAT_DTYPES:
                    object.__setattr__(module, name, to_device(to_numpy(value).astype(dtype), device_of(value)))
        return self

    def _to_device(self, dev: Device) -> "Module":
        for module in self.modules():
            for param in module._parameters.values():
                param.to_device(dev)
            for name in module._buffers:
                value = getattr(module, name)
                if value is not None and np.dtype(value.dtype).kind in "fiub":
                    object.__setattr__(module, name, to_device(value, dev))
        return self

    def cuda(self) -> "Module":
        return self.to("cuda")

    def cpu(self) -> "Module":
        return self.to("cpu")

    @property
    def device(self) -> Device:
        """The device of the first parameter (cpu for a parameter-free module)."""
        for param in self.parameters():
            return param.device
        return CPU

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the first parameter (float32 for a parameter-free module)."""
        for param in self.parameters():
            return param.dtype
        return np.dtype(np.float32)

    # -- printing ---------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def describe(self) -> str:
        """One-line name used in error messages, e.g. ``Conv2d(3, 16, kernel_size=(3, 3))``."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def __repr__(self) -> str:
        if not self._modules:
            return self.describe()
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


def _is_device_name(arg) -> bool:
    """True for "cpu", "cuda" (any case, "cuda:0") or a Device; dtypes ("float32", np.float64) are not."""
    return isinstance(arg, Device) or (isinstance(arg, str) and arg.lower() in ("cpu", "cuda", "cuda:0"))
