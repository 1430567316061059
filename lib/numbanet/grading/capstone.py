"""Checks of the capstone assignments (a6 GoogLeNet, a7 ResNet): the model must be the student's.

Every capstone test cell passes the student's model through :func:`own_model` (directly, or
through :func:`run`, the forward/backward harness) inside the graded call, and runs that call
with ``check(..., numbanet_layers=True, off_limits=...)``, which forbids numbanet's model zoo
(:mod:`numbanet.grading.offlimits`).  The two close different doors:

* the call guard sees zoo *code* that runs while the test runs: ``Inception =
  nb.models.Inception``, a wrapper around ``nb.models.resnet18``, ``projection =
  nb.models.projection``, a student class whose ``forward`` calls the zoo's;
* :func:`own_model` sees zoo *objects* that were built before the test (in a solution cell)
  and only counted or shaped during it: it walks every module reachable from the model, through
  the instances' own ``__dict__`` (the ``_modules`` children and any other attribute holding a
  module), not through the model's ``modules()`` or ``named_modules()``, which the student's
  class may override, and rejects a class from ``numbanet.models`` anywhere in a module's MRO, a
  method whose code comes from the zoo's files, and the ``off_limits`` classes (``nn.Concat``,
  ``nn.Add``: the join the student is asked to write).

Feedback names the student's parameters (:func:`output_names`), and a model whose parameters do
not match the reference's is reported as "expected N parameters in branch3, got M" before
anything runs (:func:`run`), instead of a reshape error deep inside the harness.
"""
from __future__ import annotations

from .offlimits import forbidden_code, function_of, resolve

__all__ = ["BorrowedModelError", "own_model", "run", "parameter_layout", "output_names", "buffer_names"]


class BorrowedModelError(AssertionError):
    """The model, or a module inside it, is numbanet's rather than the student's."""


def _module_class():
    from numbanet.module import Module
    return Module


def _submodules(model):
    """(path, module) for the model and every module reachable from it through instance
    dictionaries (registered children first), each once."""
    Module = _module_class()
    seen, order, stack = set(), [], [("", model)]
    while stack:
        path, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        order.append((path or "(the model)", module))
        try:
            state = object.__getattribute__(module, "__dict__")
        except AttributeError:
            continue
        found = []
        children = state.get("_modules")
        if isinstance(children, dict):
            found += [(str(name), child) for name, child in children.items()]
        for attr, value in state.items():
            values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            found += [(attr, v) for v in values if isinstance(v, Module)]
        prefix = f"{path}." if path else ""
        stack += [(prefix + name, child) for name, child in reversed(found) if isinstance(child, Module)]
    return order


def own_model(model, off_limits: tuple = ()):
    """``model``, after checking that no module in it comes from numbanet's model zoo (or is one
    of the ``off_limits`` classes); raises :class:`BorrowedModelError` naming the first that does."""
    Module = _module_class()
    if not isinstance(model, Module):
        raise BorrowedModelError(f"expected an nn.Module, got {type(model).__name__}")
    describe = forbidden_code("models", off_limits)
    banned = tuple(c for c in map(resolve, off_limits) if isinstance(c, type))
    for path, module in _submodules(model):
        cls = type(module)
        for klass in cls.__mro__:
            if str(getattr(klass, "__module__", "")).startswith("numbanet.models") or klass in banned:
                raise BorrowedModelError(_borrowed(path, cls, f"numbanet's {klass.__module__}.{klass.__qualname__}"))
            for attr, value in vars(klass).items():
                code = getattr(function_of(value), "__code__", None)
                if code is not None and describe(code):
                    raise BorrowedModelError(_borrowed(path, cls, describe(code)))
        for attr, value in object.__getattribute__(module, "__dict__").items():
            code = getattr(function_of(value), "__code__", None)
            if code is not None and describe(code):
                raise BorrowedModelError(_borrowed(path, cls, describe(code)))
    return model


def _borrowed(path: str, cls: type, what: str) -> str:
    return (f"{path} ({cls.__name__}) uses {what}: the capstone asks for your own modules, "
            "built from nn layers (nn.Conv2d, nn.Sequential, ...)")


def _named_parameters(model) -> list:
    Module = _module_class()
    return list(Module.named_parameters(model))


def _check_layout(model, expected: list) -> None:
    """Raise AssertionError("expected N parameters in branch3, got M") if the student's parameters
    do not have the reference's sizes, in order; ``expected``: the reference's (name, shape) list."""
    import numpy as np
    got = [(name, tuple(p.shape)) for name, p in _named_parameters(model)]
    if [s for _, s in got] == [tuple(s) for _, s in expected]:
        return
    top = lambda name: name.split(".")[0] if "." in name else "(the model itself)"

    def groups(params):
        sizes: dict = {}
        for name, shape in params:
            sizes[top(name)] = sizes.get(top(name), 0) + int(np.prod(shape, dtype=np.int64))
        return list(sizes.items())

    mine, theirs = groups(got), groups(expected)
    if len(mine) == len(theirs):
        for (name, n_got), (_, n_want) in zip(mine, theirs):
            if n_got != n_want:
                raise AssertionError(f"expected {n_want:,} parameters in {name}, got {n_got:,} "
                                     "(the parameters of the model's children, in order)")
    total_got, total_want = sum(n for _, n in mine), sum(n for _, n in theirs)
    if total_got != total_want:
        raise AssertionError(f"expected {total_want:,} parameters in {len(theirs)} children with parameters, "
                             f"got {total_got:,} in {len(mine)}")
    for (name, shape), (_, want) in zip(got, expected):
        if shape != tuple(want):
            raise AssertionError(f"parameter {name}: expected shape {tuple(want)}, got {shape} "
                                 "(the parameters in the order model.parameters() gives them)")
    raise AssertionError(f"expected {len(expected)} parameter tensors, got {len(got)}")


def run(model, harness: str, *args, expected_parameters: list, off_limits: tuple = ()):
    """The test harness on the student's model: :func:`own_model`, the parameter layout against
    ``expected_parameters`` (the reference model's ``(name, shape)`` pairs), then ``harness`` (the
    source of ``lambda module, *args: ...``, the same text the reference process runs on numbanet's
    model; evaluated with ``np`` and ``nb`` defined, as there)."""
    import numpy as np
    import numbanet as nb
    own_model(model, off_limits)
    _check_layout(model, expected_parameters)
    return eval(harness, {"np": np, "nb": nb})(model, *args)  # noqa: S307 - the locked test cell's text


def parameter_layout(model) -> list:
    """The (name, shape) pairs of a (reference) model's parameters, for :func:`run`."""
    return [(name, tuple(p.shape)) for name, p in _named_parameters(model)]


def output_names(build_student, reference, first=("y",)) -> tuple:
    """Names of the harness outputs: ``first`` then ``"dx"`` and ``"d<parameter name>"`` of the
    student's model (``build_student()``), or of ``reference`` if the student's cannot be built
    or has another number of parameters (the test then reports why)."""
    return (*first, "dx", *(f"d{name}" for name in _student_names(build_student, reference, "named_parameters")))


def buffer_names(build_student, reference) -> tuple:
    """The student's buffer names (``bn1.running_mean``, ...), or the reference's (as :func:`output_names`)."""
    return tuple(_student_names(build_student, reference, "named_buffers"))


def _student_names(build_student, reference, method: str) -> list:
    import contextlib
    import io
    import warnings
    names = [name for name, _ in getattr(_module_class(), method)(reference)]
    try:
        # outside the graded call: whatever the student's constructor prints must not reach stderr
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            mine = [name for name, _ in getattr(_module_class(), method)(build_student())]
    except Exception:  # noqa: BLE001 - the graded call reports the student's error
        mine = names
    return mine if len(mine) == len(names) else names
