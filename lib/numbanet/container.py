r"""Composite modules: ``Sequential`` (a chain), ``Concat`` (Inception) and ``Add`` (residual).

Sequential, y = f_L(… f_2(f_1(x))): backward runs the children in reverse,
each turning ∂L/∂(its output) into ∂L/∂(its input)::

    dx = f_1.backward(f_2.backward(… f_L.backward(dy)))

Concat (the Inception module): every branch sees the same x and the outputs are
joined along ``dim`` (channels), y = [g_1(x), g_2(x), …, g_B(x)].  Since x feeds
every branch, the chain rule sums the branches' input gradients::

    dy = [dy_1, dy_2, …, dy_B]    (split along dim by the branch output sizes)
    dx = Σ_b g_b.backward(dy_b)

Add (the residual block), y = body(x) + shortcut(x), shortcut = identity when
None.  The sum copies dy to both terms, and x feeds both::

    dx = body.backward(dy) + shortcut.backward(dy)     (or + dy for the identity)

Sequential runs a BatchNorm directly followed by a ReLU as one pass (``run_chain``: the
ReLU's work happens inside the BatchNorm's kernels, forward and backward), bit for bit the
two layers.

The joins are NumPy glue (``np.concatenate``, slicing) and a parallel add on the CPU and small
copy/add kernels (``numbanet.kernels.cuda.container``) for device arrays; the
arithmetic lives in the children's kernels.
"""
from __future__ import annotations

import operator
from collections import OrderedDict

import numpy as np

from ._validate import as_float_array, check_grad
from .device import device_of
from .kernels import backend
from .module import Module
from .norm import _BatchNorm


def _require_module(owner: str, what: str, value) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{owner}: {what} must be a numbanet Module, got {type(value).__name__}")
    return value


class _Children(Module):
    """``len(m)``, ``iter(m)``, ``m[i]`` and ``m.append(module)`` over a container's children, in order."""

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _name_at(self, index) -> str:
        names = list(self._modules)
        index = operator.index(index)
        if not -len(names) <= index < len(names):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(names)} children")
        return names[index]

    def __getitem__(self, index):
        """``m[i]`` is the i-th child (negative i counts from the end); ``m[a:b]`` a new container
        of the same kind (the children themselves, not copies)."""
        if isinstance(index, slice):
            return self._from_items(list(self._modules.items())[index])
        return self._modules[self._name_at(index)]

    def _from_items(self, items):
        return type(self)(OrderedDict(items))

    def append(self, module: Module):
        """Add ``module`` as the last child, named by its position."""
        self.add_module(str(len(self)), _require_module(f"{type(self).__name__}.append", "the argument", module))
        return self


def run_chain(modules: list, x):
    """(y, fused): x through ``modules`` in order, each BatchNorm followed by a ReLU as one pass
    (``bn(x, relu=True)``, bit for bit the two layers; ``_BatchNorm.fuses_relu`` says when);
    ``fused`` holds the indices of the ReLUs that ran inside their BatchNorm (not called)."""
    fused, i = [], 0
    while i < len(modules):
        if i + 1 < len(modules) and _BatchNorm.fuses_relu(modules[i], modules[i + 1]):
            x = modules[i](x, relu=True)
            fused.append(i + 1)
            i += 2
        else:
            x = modules[i](x)
            i += 1
    return x, tuple(fused)


def run_chain_backward(modules: list, fused: tuple, dout):
    """dx for ``run_chain(modules, x)``: the modules' backward in reverse, skipping the fused ReLUs
    (their BatchNorm's backward applies ReLU's derivative)."""
    for i in reversed(range(len(modules))):
        if i not in fused:
            dout = modules[i].backward(dout)
    return dout


class Sequential(_Children):
    """Apply modules in order; children are named "0", "1", … (or by the OrderedDict's keys)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in items:
            self.add_module(name, _require_module("Sequential", f"module {name!r}", module))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, fused = run_chain(list(self), x)
        self._save_for_backward(np.shape(x), x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype, device_of(x),
                                fused)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y_shape, dtype, device, fused = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, dtype, like=device)
        return run_chain_backward(list(self), fused, dout)

    def extra_repr(self) -> str:
        return ", ".join(type(m).__name__ for m in self)


class ModuleList(_Children):
    """A list of modules registered as children "0", "1", … (PyTorch's ``nn.ModuleList``).

    It has no forward or backward of its own: the module holding it calls its entries
    (and their backward, in reverse order).  ``append``, ``extend``, ``insert``, ``l[i]``,
    ``l[i] = module``, ``l[a:b]`` (a ModuleList), ``len``, iteration.
    """

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def _from_items(self, items):
        return ModuleList(module for _, module in items)

    def extend(self, modules) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        modules = list(self)
        modules.insert(index, _require_module("ModuleList.insert", "the argument", module))
        for name in self._modules:  # renumber: every entry after index moves up by one
            object.__delattr__(self, name)
        self._modules.clear()
        self.extend(modules)

    def __setitem__(self, index, module: Module) -> None:
        self.add_module(self._name_at(index), _require_module("ModuleList", "an entry", module))

    def extra_repr(self) -> str:
        return f"{len(self)} modules"


class ModuleDict(Module):
    """Modules by name, registered as children under their keys (PyTorch's ``nn.ModuleDict``).

    Insertion order is kept; ``d[key]``, ``d[key] = module``, ``del d[key]``, ``key in d``,
    ``len``, iteration over the keys, ``keys``/``values``/``items``, ``update``.  No forward:
    the module holding it calls its entries.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict: no module named {key!r}; the keys are {list(self._modules)}")
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, _require_module("ModuleDict", f"entry {key!r}", module))

    def __delitem__(self, key: str) -> None:
        self[key]  # the KeyError naming the keys
        del self._modules[key]
        object.__delattr__(self, key)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        """Add (key, module) pairs from a mapping or an iterable of pairs."""
        for key, module in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = module

    def extra_repr(self) -> str:
        return ", ".join(self._modules)


class Identity(Module):
    """y = x, dx = dy (PyTorch's ``nn.Identity``): a placeholder, e.g. for a removed classifier head.

    forward returns its input itself; backward checks dout and returns it.
    """

    def forward(self, x):
        x = as_float_array(self.describe(), x)
        self._save_for_backward(x.shape, x.dtype, device_of(x))
        return x

    def backward(self, dout):
        shape, dtype, device = self._saved()
        return check_grad(self.describe(), dout, shape, dtype, like=device)


class Concat(_Children):
    """Run every branch on the same input and concatenate the outputs along ``dim`` (Inception).

    Branches are named "0", "1", … (``concat[i]`` is branch i).  Their outputs must agree in
    every dim but ``dim``.
    """

    def __init__(self, *branches: Module, dim: int = 1):
        super().__init__()
        if not branches:
            raise ValueError("Concat: needs at least one branch")
        for i, branch in enumerate(branches):
            self.add_module(str(i), _require_module("Concat", f"branch {i}", branch))
        self.dim = dim

    def _from_items(self, items):
        return Concat(*(module for _, module in items), dim=self.dim)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(self.describe(), x)
        outputs = [branch(x) for branch in self._modules.values()]
        shapes = [out.shape for out in outputs]
        ndim = len(shapes[0])
        if not -ndim <= self.dim < ndim:
            raise ValueError(f"{self.describe()}: dim {self.dim} is out of range for branch outputs "
                             f"of shapes {shapes}")
        axis = self.dim % ndim
        rest = {s[:axis] + s[axis + 1:] if len(s) == ndim else s for s in shapes}
        if len(rest) != 1:
            raise ValueError(f"{self.describe()}: branch outputs must have equal shapes except at "
                             f"dim {self.dim}, got shapes {shapes}")
        if len({out.dtype for out in outputs}) != 1:
            raise TypeError(f"{self.describe()}: branch outputs have different dtypes "
                            f"{[str(out.dtype) for out in outputs]}")
        y = backend(outputs[0]).container.concatenate(outputs, axis)
        self._save_for_backward(axis, [s[axis] for s in shapes], y.shape, y.dtype, device_of(y))
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        axis, sizes, y_shape, dtype, device = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, dtype, like=device)
        pieces = backend(dout).container.split(dout, sizes, axis)
        # last branch first: the reverse of forward, so that a module reused across branches pops
        # its caches in the right order
        pairs = list(zip(self._modules.values(), pieces))[::-1]
        grads = [branch.backward(piece) for branch, piece in pairs][::-1]
        return _sum_input_grads(self.describe(), grads)

    def extra_repr(self) -> str:
        return f"branches={len(self._modules)}, dim={self.dim}"


def _sum_input_grads(owner: str, grads: list[np.ndarray]) -> np.ndarray:
    """Σ grads in order, into a fresh array: a child may hand back a view of its dout."""
    shapes = [g.shape for g in grads]
    if len(set(shapes)) != 1:
        raise ValueError(f"{owner}.backward: the paths returned input gradients of different "
                         f"shapes {shapes}")
    return backend(grads[0]).container.sum_arrays(grads)


class Add(Module):
    """Residual block y = body(x) + shortcut(x); ``shortcut=None`` is the identity.

    Children are registered as ``body`` and ``shortcut``, so state-dict keys read
    ``body.0.weight``, ``shortcut.0.weight`` as in a PyTorch module with those attributes.
    """

    def __init__(self, body: Module, shortcut: Module | None = None):
        super().__init__()
        self.body = _require_module("Add", "body", body)
        self.shortcut = None if shortcut is None else _require_module("Add", "shortcut", shortcut)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(self.describe(), x)
        main = self.body(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if main.shape != skip.shape:
            which = "the input (identity shortcut)" if self.shortcut is None else "shortcut output"
            raise ValueError(f"{self.describe()}: body output shape {main.shape} does not match "
                             f"{which} shape {skip.shape}")
        y = backend(main).container.add(main, skip)
        self._save_for_backward(y.shape, y.dtype, device_of(y))
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y_shape, dtype, device = self._saved()
        dout = check_grad(self.describe(), dout, y_shape, dtype, like=device)
        dx_skip = dout if self.shortcut is None else self.shortcut.backward(dout)  # ran last in forward
        dx_body = self.body.backward(dout)
        return _sum_input_grads(self.describe(), [dx_body, dx_skip])

    def extra_repr(self) -> str:
        return "identity shortcut" if self.shortcut is None else ""
