"""What a graded function may not call: numbanet's own version of the piece being graded.

While a student's function runs under :class:`OffLimits`, a profile hook (``sys.setprofile``,
and ``threading.setprofile`` for threads started meanwhile) sees every Python function that
starts, and every call of a Numba kernel: a compiled dispatcher reports a ``call`` event with
its Python function's code object.  A call whose code lives in an off-limits file of numbanet
raises :class:`OffLimitsError` there and is *recorded*, so the graded call fails even if the
student catches the error.

Why a profile hook and not replacing the kernels in their modules: the verdict depends on the
code object that runs, not on a module attribute, so it cannot be undone from a solution cell.
``importlib.reload(numbanet.kernels.cpu.conv)`` makes new kernels from the same file,
``vars(mod).update(saved)`` restores objects that are still numbanet's, a dispatcher imported
before the test still reports numbanet's code, and pure-Python helpers
(``F.conv2d_output_size``, ``Module.num_parameters``, ``nn.fold_batchnorm``) are caught the
same way.  Switching the hook off from inside the graded call (``sys.setprofile(None)``, or a
thread started without it) is itself recorded: the hook sees the call of ``setprofile`` /
``settrace``, and afterwards checks that it is still installed.  The integrity scan
(:mod:`numbanet.grading.integrity`) removes ``sys.setprofile`` / ``settrace`` and
``threading`` from solution cells before the notebook runs.

Two scopes (:func:`forbidden_code`):

* ``"numbanet"`` (a1-a5): every file of the numbanet package except ``grading/``: the
  graded functions are written with NumPy (and Numba) alone;
* ``"models"`` (the a6/a7 capstones, built from ``nn`` layers): the model zoo,
  ``numbanet/models/``, plus the ``off_limits`` classes a test names (``nn.Concat`` for the
  Inception module, ``nn.Add`` for the residual block).
"""
from __future__ import annotations

import inspect
import os
import sys
import threading

__all__ = ["OffLimits", "OffLimitsError", "forbidden_code"]


class OffLimitsError(RuntimeError):
    """Raised when a graded function calls numbanet's own version of what it should compute."""


def _package_folder() -> str:
    import importlib.util
    return os.path.realpath(importlib.util.find_spec("numbanet").submodule_search_locations[0])


def forbidden_code(scope: str, off_limits: tuple = ()):
    """A function code -> "" (allowed) or a description of what was called (off limits).

    scope: "numbanet" (all of numbanet but numbanet.grading) or "models" (numbanet.models);
    off_limits: classes or functions (or their dotted names, "numbanet.container.Concat") whose
                code is off limits as well.
    """
    if scope not in ("numbanet", "models"):
        raise ValueError(f"scope must be 'numbanet' or 'models', got {scope!r}")
    package = _package_folder()
    allowed = os.path.join(package, "grading") + os.sep
    folder = package + os.sep if scope == "numbanet" else os.path.join(package, "models") + os.sep
    extra = {}
    for obj in off_limits:
        for code, name in _codes_of(resolve(obj)):
            extra[code] = name
    real_paths: dict = {}

    def describe(code) -> str:
        if code in extra:
            return extra[code]
        filename = code.co_filename
        path = real_paths.get(filename)
        if path is None:
            path = real_paths[filename] = os.path.realpath(filename) if os.path.isabs(filename) else filename
        if path.startswith(folder) and not path.startswith(allowed):
            module = os.path.relpath(path, os.path.dirname(package))[:-3].replace(os.sep, ".")
            return f"numbanet's {module}.{getattr(code, 'co_qualname', code.co_name)}"
        return ""

    return describe


def resolve(obj):
    """A class or function, given as itself or by its dotted name ("numbanet.container.Concat")."""
    if not isinstance(obj, str):
        return obj
    import importlib
    module, _, name = obj.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _codes_of(obj):
    """(code, name) of a function, or of every function defined in a class's own namespace."""
    if isinstance(obj, type):
        for attr, value in vars(obj).items():
            value = function_of(value)
            if hasattr(value, "__code__"):
                yield value.__code__, f"{_owner(obj)}{obj.__qualname__}.{attr}"
    elif hasattr(function_of(obj), "__code__"):
        yield function_of(obj).__code__, f"{_owner(obj)}{obj.__qualname__}"


def _owner(obj) -> str:
    """"numbanet's numbanet.container." for numbanet's objects, "" for the notebook's own."""
    module = getattr(obj, "__module__", "") or ""
    return f"numbanet's {module}." if module.startswith("numbanet") else ""


def function_of(value):
    """The function behind a staticmethod/classmethod and behind numbanet's wrappers: every
    Module subclass's forward/backward is wrapped (``numbanet.caching``), and all wrappers
    share one code object, so the code to compare is the wrapped function's."""
    return inspect.unwrap(getattr(value, "__func__", value))


# calls that reach or remove the hook (threading's are Python functions: their code is checked too)
_SWITCHES = {sys.setprofile, sys.settrace, sys.getprofile, sys.gettrace}
_SWITCH_CODES = {f.__code__ for f in (threading.setprofile, threading.settrace, threading.getprofile,
                                      threading.gettrace) if hasattr(f, "__code__")}


class OffLimits:
    """Context manager: calls of off-limits code raise :class:`OffLimitsError` and are recorded
    in ``violations`` (a list of descriptions); ``describe`` comes from :func:`forbidden_code`."""

    def __init__(self, describe):
        self.describe = describe
        self.violations: list = []

    def __enter__(self):
        verdicts: dict = {}
        describe, violations = self.describe, self.violations

        def hook(frame, event, arg):
            if event == "call":
                code = frame.f_code
                what = verdicts.get(code)
                if what is None:
                    what = verdicts[code] = describe(code) or (
                        "threading's profile hook functions" if code in _SWITCH_CODES else "")
                if what:
                    violations.append(f"your code called {what}")
                    raise OffLimitsError(_message(what))
            elif event == "c_call" and arg in _SWITCHES and frame.f_code is not _EXIT_CODE:
                violations.append(f"your code called {arg.__module__}.{arg.__name__} while it was graded")
                raise OffLimitsError("your code switched off the grader's watch on numbanet calls")

        self._hook = hook
        self._outer = sys.getprofile(), threading.getprofile()
        threading.setprofile(hook)
        sys.setprofile(hook)
        return self

    def __exit__(self, *exc):
        still_installed = sys.getprofile() is self._hook
        sys.setprofile(self._outer[0])
        threading.setprofile(self._outer[1])
        if not still_installed and not self.violations:
            self.violations.append("your code switched off the grader's watch on numbanet calls (sys.setprofile)")
        return False


_EXIT_CODE = OffLimits.__exit__.__code__   # where the hook itself is switched off


def _message(what: str) -> str:
    return (f"your function called {what}, which is off limits while it is graded: "
            "write the computation yourself")
