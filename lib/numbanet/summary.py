r"""``summary(model, input_shape)``: a layer-by-layer table of shapes, parameters, multiply-adds and memory.

The table is measured, not derived: ``summary`` runs ONE forward pass on a batch of
zeros (batch 1 by default, evaluation mode unless ``training=True``) with every module's
``forward`` temporarily wrapped to record what it returns.  Each *leaf* module (one
without children) that ran gives a row, in call order; leaves that did not run (e.g.
GoogLeNet's auxiliary heads in evaluation mode) follow with no output shape, so the
rows' parameters always add up to the model's.  Afterwards the model is exactly as
before: training flags, forward caches and (for ``training=True``) the buffers such as
BatchNorm's running statistics are restored.

Counts are per sample::

    params       parameters the leaf owns (weights and biases)
    mult-adds    Conv2d:  Ho·Wo·K · C·kh·kw   (one multiply-add per weight per output position)
                 Linear:  out · in            (per row of the input)
                 every other layer: 0.  Bias additions, BatchNorm, pooling, activations, LRN,
                 dropout and the Concat/Add joins are a few operations per element, memory-bound
                 and negligible next to the products; the papers' "ops"/"FLOPs" columns count
                 the same way (GoogLeNet's 128M for inception 3a is exactly its convolutions'
                 multiply-adds, ResNet's 1.8·10⁹ for ResNet-18 its convolutions' plus the fc's).
    activations  elements of the leaf's output, and their bytes in the model's dtype.  numbanet
                 has no in-place layers, so each output is a separate array that the forward
                 pass keeps for backward.  Arrays made outside any leaf get rows of their own:
                 a container's output that no leaf returned ("join": Inception's concatenation)
                 and an array computed inside a module's forward and fed to a leaf ("internal":
                 a residual block's sum before its last ReLU).  The total is the forward
                 activation memory, up to what layers keep besides their outputs (max-pool
                 indices, dropout masks) and views counted as outputs (Flatten); backward
                 needs about as much again for the gradients.

New layer types get a multiply-add rule with ``register_macs(LayerType, rule)``, where
``rule(layer, x, y) -> int`` counts per sample for the batch-1 input x and output y.

Groups: ``module_rows`` aggregates the rows under each top-level child (e.g. each
Inception module of GoogLeNet), ``group(depth)`` under each name prefix of ``depth``
components (``group(2)`` gives ResNet's blocks ``layer1.0`` …), ``module(name)`` one
named submodule.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .conv import Conv2d
from .linear import Linear
from .caching import no_grad
from .module import Module


@dataclass(frozen=True)
class Row:
    """One line of the table: a leaf call, or a group of them (``Summary.group``).

    name: dotted module name; call: 1, or k for the k-th call of a shared module;
    kind: "layer" (a leaf's call), "join" (a container's own output, e.g. Concat's concatenation),
    "internal" (an array computed inside a module's forward and fed to a leaf, e.g. the residual
    sum before a block's last ReLU), or "group" (``Summary.group``);
    input_shape / output_shape: per sample (batch dim dropped), None if it did not run;
    params, macs, activations (output elements), activation_bytes: per sample.
    """

    name: str
    type: str
    input_shape: tuple | None
    output_shape: tuple | None
    params: int
    macs: int
    activations: int
    activation_bytes: int
    call: int = 1
    kind: str = "layer"

    @property
    def ran(self) -> bool:
        return self.output_shape is not None

    @property
    def label(self) -> str:
        if self.kind in ("join", "internal"):
            return f"{self.name or '(model)'} ({self.kind})"
        return self.name if self.call == 1 else f"{self.name} (call {self.call})"


def conv2d_macs(layer: Conv2d, x: np.ndarray, y: np.ndarray) -> int:
    """Ho·Wo·K (outputs per sample) · C·kh·kw (weights per output)."""
    return (y.size // y.shape[0]) * int(np.prod(layer.weight.shape[1:]))


def linear_macs(layer: Linear, x: np.ndarray, y: np.ndarray) -> int:
    """out · in per input row (outputs per sample · in_features)."""
    return (y.size // y.shape[0]) * layer.in_features


MACS_RULES = {Conv2d: conv2d_macs, Linear: linear_macs}


def register_macs(layer_type: type, rule) -> None:
    """Count ``rule(layer, x, y)`` multiply-adds per sample for every ``layer_type`` (and subclass) leaf."""
    MACS_RULES[layer_type] = rule


def _macs(module: Module, x, y) -> int:
    for cls in type(module).__mro__:
        if cls in MACS_RULES:
            return int(MACS_RULES[cls](module, x, y))
    return 0


def _per_sample_shape(out):
    """out.shape without the batch dim; a tuple of those for a tuple of outputs; None otherwise."""
    if isinstance(out, np.ndarray):
        return tuple(out.shape[1:])
    if isinstance(out, (tuple, list)):
        return tuple(_per_sample_shape(o) for o in out)
    return None


def _own_params(module: Module) -> int:
    return sum(p.size for p in module._parameters.values())


def _arrays(out) -> list[np.ndarray]:
    if isinstance(out, np.ndarray):
        return [out]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _arrays(o)]
    return []


class Summary:
    """The result of ``summary``: ``rows`` (leaf calls, then leaves that did not run) and totals.

    Attributes: rows, input_shape, dtype, training, total_params (every parameter of the
    model), param_bytes, total_macs, total_activations, total_activation_bytes,
    input_elements, input_bytes.  ``str(s)`` is a terminal table, ``s._repr_html_()`` an
    HTML one; ``s.to_string(depth=1)`` prints the grouped rows instead of the leaves.
    """

    def __init__(self, model: Module, input_shape: tuple, dtype: np.dtype, training: bool, rows: list[Row],
                 module_io: dict):
        self.model_type = type(model).__name__
        self.input_shape, self.dtype, self.training = input_shape, dtype, training
        self.rows = rows
        self._module_io = module_io
        named = dict(model.named_modules())
        self._types = {name: type(m).__name__ for name, m in named.items()}
        self._params = {name: m.num_parameters() for name, m in named.items()}
        self.total_params = model.num_parameters()
        self.param_bytes = sum(p.data.nbytes for p in model.parameters())
        self.total_macs = sum(r.macs for r in rows)
        self.total_activations = sum(r.activations for r in rows)
        self.total_activation_bytes = sum(r.activation_bytes for r in rows)
        self.input_elements = int(np.prod(input_shape))
        self.input_bytes = self.input_elements * dtype.itemsize

    # -- grouping ---------------------------------------------------------------
    def module(self, name: str) -> Row:
        """The rows under submodule ``name`` (dotted) added up; its output shape as measured."""
        if name not in self._types or name == "":
            raise KeyError(f"summary: {self.model_type} has no submodule {name!r}")
        inside = [r for r in self.rows if r.name == name or r.name.startswith(name + ".")]
        input_shape, output_shape = self._module_io.get(name, (None, None))
        return Row(name, self._types[name], input_shape, output_shape, self._params[name],
                   sum(r.macs for r in inside), sum(r.activations for r in inside),
                   sum(r.activation_bytes for r in inside), kind="group")

    def group(self, depth: int = 1) -> list[Row]:
        """One row per name prefix of ``depth`` components (a shallower leaf is its own group), in call order."""
        if depth < 1:
            raise ValueError(f"summary.group: depth must be >= 1, got {depth}")
        prefixes = dict.fromkeys(".".join(r.name.split(".")[:depth]) for r in self.rows if r.name)
        return [self.module(prefix) for prefix in prefixes]

    @property
    def module_rows(self) -> list[Row]:
        """One row per top-level child of the model (``group(1)``)."""
        return self.group(1)

    # -- printing -----------------------------------------------------------------
    _HEADERS = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "Activations", "Memory")

    def _cells(self, row: Row) -> tuple[str, ...]:
        shape = "not run" if row.output_shape is None else _format_shape(row.output_shape)
        return (row.label, row.type, shape, f"{row.params:,}", f"{row.macs:,}", f"{row.activations:,}",
                _format_bytes(row.activation_bytes))

    def _title(self) -> str:
        mode = "training" if self.training else "eval"
        return (f"{self.model_type} summary: input {_format_shape(self.input_shape)} {self.dtype}, "
                f"per sample, {mode} mode")

    def _footer(self) -> list[tuple[str, str]]:
        lines = [
            ("Total params", f"{self.total_params:,} ({_format_bytes(self.param_bytes)})"),
            ("Total mult-adds", f"{self.total_macs:,} ({_format_si(self.total_macs)})"),
            ("Activations", f"{self.total_activations:,} elements ({_format_bytes(self.total_activation_bytes)}; "
                            "every layer output, join and internal array, kept for backward)"),
            ("Input", f"{self.input_elements:,} elements ({_format_bytes(self.input_bytes)})"),
        ]
        idle = [r for r in self.rows if not r.ran]
        if idle:
            lines.append(("Not run", f"{len(idle)} layers, {sum(r.params for r in idle):,} params "
                                     "(e.g. heads used only in training)"))
        return lines

    def to_string(self, depth: int | None = None) -> str:
        """The terminal table: leaf rows, or with ``depth`` the ``group(depth)`` rows."""
        rows = self.rows if depth is None else self.group(depth)
        table = [self._HEADERS] + [self._cells(r) for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(self._HEADERS))]
        left = 3  # name, type, shape are left-aligned; numbers right-aligned

        def fmt(cells):
            return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "-" * len(fmt(table[0]))
        out = [self._title(), rule, fmt(table[0]), rule, *(fmt(c) for c in table[1:]), rule]
        label_width = max(len(k) for k, _ in self._footer())
        out += [f"{k + ':':<{label_width + 1}} {v}" for k, v in self._footer()]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return self.to_string()

    def to_html(self, depth: int | None = None) -> str:
        """The same table as ``to_string`` in HTML (what Jupyter shows)."""
        rows = self.rows if depth is None else self.group(depth)
        right = ' style="text-align:right"'
        head = "".join(f"<th{right if i >= 3 else ''}>{h}</th>" for i, h in enumerate(self._HEADERS))
        body = "".join("<tr>" + "".join(f"<td{right if i >= 3 else ''}>{html.escape(c)}</td>"
                                        for i, c in enumerate(self._cells(r))) + "</tr>" for r in rows)
        foot = "".join(f'<tr><td colspan="2"><b>{html.escape(k)}</b></td><td colspan="5">{html.escape(v)}</td></tr>'
                       for k, v in self._footer())
        return (f"<table><caption>{html.escape(self._title())}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody><tfoot>{foot}</tfoot></table>")

    def _repr_html_(self) -> str:
        return self.to_html()


def _format_shape(shape) -> str:
    if shape and all(isinstance(s, tuple) for s in shape):
        return ", ".join(_format_shape(s) for s in shape)
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _format_si(n: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


class _Recorder:
    """Builds the rows while the wrapped forward pass runs.

    Every array that becomes part of a row is remembered (and held, so ids stay unique):
    a container's output that no leaf produced is a *join* (Concat's concatenation), and a
    leaf input that nobody recorded was computed inside its parent's forward (the residual
    sum before a block's last ReLU): both are activations too, so each gets a row.
    """

    def __init__(self, model: Module, batch_size: int):
        self.batch_size = batch_size
        self.named: dict[int, tuple[str, Module]] = {}
        for name, module in model.named_modules():
            self.named.setdefault(id(module), (name, module))
        self.types = {name: type(module).__name__ for name, module in self.named.values()}
        self.rows: list[Row] = []
        self.io: dict[str, tuple] = {}
        self.calls: dict[str, int] = {}
        self._known: dict[int, np.ndarray] = {}

    def account(self, arrays) -> None:
        self._known.update((id(a), a) for a in arrays)

    def _fresh(self, value) -> list[np.ndarray]:
        return [a for a in _arrays(value) if id(a) not in self._known]

    def _add(self, name: str, x, out, params: int, macs: int, call: int = 1, kind: str = "layer") -> None:
        arrays = _arrays(out)
        self.rows.append(Row(name, self.types[name], _per_sample_shape(x), _per_sample_shape(out), params, macs,
                             sum(a.size for a in arrays) // self.batch_size,
                             sum(a.nbytes for a in arrays) // self.batch_size, call, kind))
        self.account(arrays)

    def wrap(self, name: str, module: Module, original):
        leaf = not module._modules

        def forward(*args, **kwargs):
            x = args[0] if args else None
            if leaf and (fresh := self._fresh(x)):
                self._add(name.rpartition(".")[0], None, fresh[0] if len(fresh) == 1 else tuple(fresh),
                          0, 0, kind="internal")
            out = original(*args, **kwargs)
            self.io.setdefault(name, (_per_sample_shape(x), _per_sample_shape(out)))
            if leaf:
                call = self.calls[name] = self.calls.get(name, 0) + 1
                self._add(name, x, out, _own_params(module) if call == 1 else 0, _macs(module, x, out), call)
            elif name and (fresh := self._fresh(out)):
                self._add(name, x, fresh[0] if len(fresh) == 1 else tuple(fresh), 0, 0, kind="join")
            return out

        return forward


def summary(model: Module, input_shape, *, training: bool = False, batch_size: int = 1, dtype=None) -> Summary:
    """Run ``model`` once on zeros of shape (batch_size, *input_shape) and tabulate every leaf layer.

    model:       a numbanet Module.
    input_shape: one sample's shape, without the batch dim, e.g. (3, 224, 224).
    training:    run in training mode (e.g. to include GoogLeNet's auxiliary heads); buffers
                 such as BatchNorm's running statistics are restored afterwards (use
                 batch_size=2 if a BatchNorm would see a single value per channel).
    dtype:       input dtype, by default the model's.
    Returns a ``Summary``; counts are per sample (see the module docstring).
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: expected a numbanet Module, got {type(model).__name__}")
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise TypeError(f"summary: input_shape must be a tuple of ints such as (3, 224, 224), got {input_shape!r}")
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"summary: input_shape must be one sample's shape of positive sizes without the batch "
                         f"dim, e.g. (3, 224, 224), got {input_shape}")
    if batch_size < 1:
        raise ValueError(f"summary: batch_size must be >= 1, got {batch_size}")
    dtype = np.dtype(model.dtype if dtype is None else dtype)

    recorder = _Recorder(model, batch_size)
    modules = [module for _, module in recorder.named.values()]
    flags = [module.training for module in modules]
    own_forward = [module.__dict__.get("forward") for module in modules]
    # a training pass updates buffers (BatchNorm's running statistics): keep copies to put back
    buffers = [(module, key, np.array(getattr(module, key), copy=True))
               for module in modules for key in module._buffers] if training else []
    x = np.zeros((batch_size, *input_shape), dtype)
    recorder.account([x])
    try:
        for name, module in recorder.named.values():
            object.__setattr__(module, "forward", recorder.wrap(name, module, module.forward))
        model.train(training)
        with no_grad():  # the model's caches of an earlier forward stay as they were
            model(x)
    finally:
        for module, flag, forward in zip(modules, flags, own_forward):
            module.__dict__.pop("forward", None)
            if forward is not None:
                object.__setattr__(module, "forward", forward)
            object.__setattr__(module, "training", flag)
        for module, key, value in buffers:
            object.__setattr__(module, key, value)
    rows = recorder.rows
    for name, module in recorder.named.values():
        if not module._modules and name not in recorder.calls:
            rows.append(Row(name, type(module).__name__, None, None, _own_params(module), 0, 0, 0))
    return Summary(model, input_shape, dtype, training, rows, recorder.io)
