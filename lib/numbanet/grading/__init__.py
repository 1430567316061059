"""Grading helper for the nbgrader exercises: the locked test cells call :func:`check`.

A test cell looks like this::

    import importlib, numbanet.grading
    grading = importlib.reload(numbanet.grading)    # fresh from disk: patches made above are gone

    x, w, b = grading.randn(2, 3, 7, 5), grading.randn(4, 3, 3, 2), grading.randn(4)
    grading.check("conv2d_naive: stride 2, padding 1", conv2d_naive, [(x, w, b, 2, 1)],
                  reference="lambda x, w, b, s, p: F.conv2d(x, w, b, stride=s, padding=p)",
                  hint="the window of output row i starts at input row i*stride")

How a verdict is reached, and why:

1. Test inputs are *recipes* (:func:`randn`, :func:`array`): a seed and a shape, or literal
   numbers, which any process can build.
2. In the notebook's kernel the student's function runs on copies of the inputs, under the call
   guard of :mod:`numbanet.grading.offlimits` (a graded function that calls ``F.conv2d`` gets a
   clear error instead of the reference answer) with its warnings and stderr collected (nbgrader
   gives 0 points to any test cell that writes to stderr).
3. Autograde (``NUMBANET_GRADING_OUTBOX`` set, the kernel in the sandbox of
   :mod:`numbanet.grading.sandbox`): the outputs go to the outbox as plain arrays and literals,
   and that is all the kernel contributes.  After the notebook, the grader's own process
   (:mod:`numbanet.grading.verdict`, ``notebook`` mode) runs the locked cells with
   :data:`numbanet.grading.verdict.recording` set, so each ``check()`` there records the test as
   the locked cell wrote it (reference, inputs, tolerances) without running anything, judges the
   outputs against it, and writes the verdicts into the test cells, which nbgrader scores.  Nothing
   a solution cell does in the kernel (patching numpy, ``importlib.reload``, this module) reaches
   that process.
4. A student's own run (no outbox): inputs, outputs and the test go to files of arrays and
   literals, and a fresh Python process (``python -I`` with a minimal environment) runs
   ``verdict.py check``: it rebuilds the inputs (refusing to grade if the kernel's arrays differ,
   i.e. ``np.random`` was patched), computes the reference from the locked cell's source text and
   compares.  It prints the feedback (expected vs got, where, a hint) and exits 0 (passed) or 1
   (failed); the kernel shows the feedback and raises ``AssertionError`` on failure.

The feedback is the same either way (:func:`numbanet.grading.verdict.judge`).  The test cells
reload this module from disk before use, which undoes patches of its functions in a student's own
run; the ``subprocess`` module it starts step 4 with is a private copy loaded from the standard
library's file.  What grading cannot prevent is listed in solutions/README.md ("Security").
"""
from __future__ import annotations

import sys
import zlib

import importlib as _importlib

from . import capstone, cudasim, offlimits, parallel
from . import verdict as _verdict
from .verdict import build as _build

# A test cell reloads this module from disk; the guard and the capstone checks are reloaded with
# it, so that what a solution cell did to them is gone too.
offlimits = _importlib.reload(offlimits)
capstone = _importlib.reload(capstone)
parallel = _importlib.reload(parallel)
cudasim = _importlib.reload(cudasim)
OffLimitsError = offlimits.OffLimitsError
parallel_loops, prange_conflicts, thread_count_differences = (
    parallel.parallel_loops, parallel.prange_conflicts, parallel.thread_count_differences)

__all__ = ["check", "randn", "array", "student_seed", "student_rng", "parallel_loops", "prange_conflicts",
           "thread_count_differences", "OffLimitsError", "capstone", "cudasim"]

# Set by autograde in the sandboxed kernel: check() writes the student's results there, and the grader
# computes the verdict outside (numbanet.grading.preprocessors.SandboxedExecute).
OUTBOX_VARIABLE = "NUMBANET_GRADING_OUTBOX"
_VERDICT_TIMEOUT_S = 120   # the reference process (about a second; nbgrader interrupts a cell after 60 s)
_recipes_made = 0          # automatic seeds: the n-th randn() since this module was (re)loaded


# -- test inputs ---------------------------------------------------------------------------------

class _Recipe:
    """A test input that both processes can build: ``("randn", seed, shape, dtype)`` or
    ``("array", nested list, dtype)``.  Passed to :func:`check` in place of an array."""

    def __init__(self, recipe: tuple):
        self.recipe = recipe
        self._built = None

    def build(self):
        if self._built is None:
            self._built = _build(self.recipe)
        return self._built

    def __repr__(self) -> str:
        kind, *rest = self.recipe
        return f"grading.{kind}({rest})"


def randn(*shape: int, dtype: str = "float64", seed: int | None = None) -> _Recipe:
    """Standard-normal test input of ``shape`` (seeded: the same in every run and process)."""
    global _recipes_made
    _recipes_made += 1
    if seed is None:
        seed = zlib.crc32(f"{shape} {dtype} {_recipes_made}".encode())
    return _Recipe(("randn", int(seed), tuple(int(n) for n in shape), str(dtype)))


STUDENT_VARIABLE = "NUMBANET_GRADING_STUDENT"   # set by autograde for the kernel and the verdict process


def student_seed(default: int = 0) -> int:
    """A seed of this student's own, for hidden tests with random configurations (shapes, strides):
    the CRC-32 of the student id when ``nbgrader autograde`` runs the notebook (it sets
    ``NUMBANET_GRADING_STUDENT`` for the sandboxed kernel and for the verdict process, which must
    draw the same cases), else ``default``.  Answers tuned to the fixed cases then meet shapes no
    one has seen; the seed is printed with the test, so a case can be rerun."""
    import os
    student = os.environ.get(STUDENT_VARIABLE, "")
    return zlib.crc32(student.encode()) if student else default


def student_rng(salt: str = ""):
    """``np.random.default_rng`` seeded by :func:`student_seed` and ``salt`` (one stream per test)."""
    import numpy as np
    return np.random.default_rng([student_seed(), zlib.crc32(salt.encode())])


def array(values, dtype: str = "float64") -> _Recipe:
    """A test input written out as (nested) lists of numbers."""
    return _Recipe(("array", _plain(values), str(dtype)))


def _plain(values):
    if isinstance(values, (list, tuple)):
        return [_plain(v) for v in values]
    return float(values)


# -- in the notebook's kernel --------------------------------------------------------------------

def check(name: str, student_fn, cases, *, reference: str | None = None, expected=None,
          reference_cases=None, outputs=("output",), compare: str = "close",
          rtol: float = 1e-7, atol: float = 1e-9, check_dtype: bool = False, hint: str = "",
          numbanet_layers: bool = False, off_limits: tuple = ()) -> None:
    """Run ``student_fn`` on every case and compare with the reference; raise AssertionError if wrong.

    name:            what is being tested, printed first ("conv2d_naive: stride 2 with padding").
    student_fn:      the student's function; called as ``student_fn(*case)``.
    cases:           a list of argument tuples: :func:`randn` / :func:`array` inputs, numbers,
                     tuples, None, callables (arrays work too, but are not checked for tampering).
    reference:       Python source of a callable, evaluated in the fresh process with ``np``
                     (numpy), ``nb`` (numbanet) and ``F`` (numbanet.functional) defined, and
                     called with each case's arguments (or ``reference_cases[i]``).
    expected:        instead of ``reference``: a list with the expected value of each case.
    reference_cases: arguments for the reference when they differ from the student's (e.g. the
                     student gets a callable, which cannot leave the kernel).
    outputs:         names of the values the function returns (a tuple when more than one).
    compare:         "close": |got - expected| <= atol + rtol·|expected| elementwise;
                     "le" / "ge": got <= expected / got >= expected (error bounds).
    check_dtype:     floating outputs must have the reference's dtype (float32 stays float32).
    hint:            printed when the check fails.
    numbanet_layers: let the student's function use numbanet's layers (capstones built from
                     ``nn.Conv2d``, ``nn.MaxPool2d``, ...); only the model zoo
                     (``numbanet.models``) is off limits.  The default puts all of numbanet off
                     limits: a call into it fails the case (:mod:`numbanet.grading.offlimits`).
    off_limits:      classes or functions off limits as well (``nn.Concat`` for an Inception module).

    Warnings and anything the function writes to stderr are shown in the feedback (on stdout:
    nbgrader gives 0 points to a test cell that writes to stderr), and do not cost points.
    """
    cases = [tuple(case) for case in cases]
    if (reference is None) == (expected is None):
        raise ValueError("check: give exactly one of reference= or expected=")
    for label, extra in (("expected values", expected), ("reference_cases", reference_cases)):
        if extra is not None and len(extra) != len(cases):
            raise ValueError(f"check: {len(cases)} cases but {len(extra)} {label}")
    if compare not in ("close", "le", "ge"):
        raise ValueError(f"check: compare must be 'close', 'le' or 'ge', got {compare!r}")
    outputs = tuple(outputs)

    inputs: dict = {}
    test = {"name": name, "reference": reference, "outputs": list(outputs), "compare": compare,
            "rtol": float(rtol), "atol": float(atol), "check_dtype": bool(check_dtype), "hint": hint,
            "arg_names": _parameter_names(student_fn), "cases": []}
    for i, args in enumerate(cases):
        ref_args = args if reference_cases is None else tuple(reference_cases[i])
        case = {"args": [_encode(a, f"c{i}a{j}", inputs) for j, a in enumerate(args)],
                "ref_args": [_encode(a, f"c{i}r{j}", inputs) for j, a in enumerate(ref_args)]}
        if expected is not None:
            case["expected"] = _encode(expected[i], f"c{i}e", inputs)
        test["cases"].append(case)
    if _verdict.recording is not None:   # the grader's process runs the locked cells: record the test only
        _verdict.recording.append((test, inputs))
        return

    values: dict = {}
    results = {"name": name, "arg_names": test["arg_names"], "outputs": test["outputs"], "cases": []}
    for i, args in enumerate(cases):
        student = _call_student(student_fn, tuple(_materialise(a) for a in args), len(outputs),
                                numbanet_layers, off_limits)
        if "values" in student:
            student["values"] = [_encode(v, f"c{i}s{k}", values) for k, v in enumerate(student["values"])]
        results["cases"].append(student)

    import os
    outbox = os.environ.get(OUTBOX_VARIABLE)
    if outbox:   # autograde: the verdict is reached outside the sandbox, from the test cell's own text
        _write(outbox, f"{len([n for n in os.listdir(outbox) if n.endswith('.txt')]):03d}", results, values)
        return
    import tempfile
    with tempfile.TemporaryDirectory(prefix="numbanet-grading-") as folder:
        _write(folder, "test", test, inputs)
        _write(folder, "results", results, values)
        passed, lines, summary = _run_verdict_process(folder)
    print("\n".join(lines))
    if not passed:
        raise AssertionError(f"{name}: {summary}")


def _write(folder: str, name: str, description: dict, arrays: dict) -> None:
    """``name.npz`` (plain arrays) and ``name.txt`` (Python literals, read with ast.literal_eval),
    each complete before it appears under its name."""
    import os
    import numpy as np
    path = os.path.join(folder, name)
    with open(path + ".npz.part", "wb") as f:
        np.savez(f, **arrays)
    os.replace(path + ".npz.part", path + ".npz")
    with open(path + ".txt.part", "w", encoding="utf-8") as f:
        f.write(repr(description))
    os.replace(path + ".txt.part", path + ".txt")


def _materialise(value):
    """The value the student's function receives: recipes built, everything deep-copied."""
    import copy
    if isinstance(value, _Recipe):
        return value.build().copy()
    if isinstance(value, tuple):
        return tuple(_materialise(v) for v in value)
    if isinstance(value, list):
        return [_materialise(v) for v in value]
    return copy.deepcopy(value)


def _parameter_names(fn) -> list:
    import inspect
    try:
        return [name for name, p in inspect.signature(fn).parameters.items()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def _encode(value, key: str, arrays: dict) -> dict:
    """A literal description of one argument or result; arrays go into ``arrays`` under ``key``."""
    import numpy as np
    if isinstance(value, _Recipe):
        arrays[key] = value.build()
        return {"array": key, "recipe": value.recipe}
    if isinstance(value, (np.ndarray, np.generic)):
        # a plain ndarray copy: a subclass cannot carry behaviour into the comparison
        arrays[key] = np.array(value, subok=False, copy=True)
        return {"array": key}
    if value is None or isinstance(value, (bool, int, str)) or (
            isinstance(value, float) and value - value == 0):  # finite: repr() is a literal
        return {"literal": value}
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(v, f"{key}_{i}", arrays) for i, v in enumerate(value)]}
    if callable(value):
        return {"callable": getattr(value, "__name__", type(value).__name__)}
    try:
        converted = np.array(value, subok=False)
    except Exception:  # noqa: BLE001 - an unconvertible result is reported, not raised
        converted = None
    if converted is None or converted.dtype == object:
        return {"opaque": type(value).__name__}
    arrays[key] = converted
    return {"array": key}


def _call_student(student_fn, args: tuple, n_outputs: int, numbanet_layers: bool = False,
                  off_limits: tuple = ()) -> dict:
    """{"values": [...]} or {"error": text}, plus {"warnings": [...]} if it warned or wrote to
    the standard error stream."""
    import os
    import traceback
    import warnings
    result: dict = {}
    guard = offlimits.OffLimits(offlimits.forbidden_code("models" if numbanet_layers else "numbanet", tuple(off_limits)))
    with warnings.catch_warnings(record=True) as caught, _CapturedStderr() as stderr:
        warnings.simplefilter("always")
        try:
            with guard:
                value = student_fn(*args)
        except Exception as error:  # noqa: BLE001 - the student's error becomes feedback
            # point at the student's line: the last frame outside numbanet's own files
            package = _numbanet_folder() + os.sep
            frames = [f for f in traceback.extract_tb(error.__traceback__)[1:]
                      if not os.path.abspath(f.filename).startswith(package)]
            where = f" (in {frames[-1].name}, line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
            result["error"] = f"{type(error).__name__}: {error}{where}"
        else:
            if n_outputs == 1:
                result["values"] = [value]
            elif isinstance(value, (tuple, list)) and len(value) == n_outputs:
                result["values"] = list(value)
            else:
                got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
                result["error"] = f"it returned {got}; expected a tuple of {n_outputs} values"
    if guard.violations:
        result.pop("values", None)
        result["error"] = f"OffLimitsError: {guard.violations[0]}, which is off limits while it is graded"
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    if stderr.text.strip():
        notes.append(f"(on stderr) {stderr.text.strip()[-2000:]}")
    if notes:
        result["warnings"] = notes
    return result


class _CapturedStderr:
    """Collects what is written to the standard error stream, Python's ``sys.stderr`` and file
    descriptor 2 (Numba, OpenMP, C libraries), into ``text``.

    nbgrader gives 0 points to a test cell with any output on stderr, so a correct function that
    prints a warning there would lose its points; :func:`check` shows the text as feedback on
    stdout instead.
    """

    def __enter__(self):
        import contextlib
        import io
        import os
        import tempfile
        self.text = ""
        self._python = io.StringIO()
        self._redirect = contextlib.redirect_stderr(self._python)
        self._redirect.__enter__()
        try:
            self._file = tempfile.TemporaryFile()
            self._saved_fd = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except OSError:  # no file descriptor 2 (an embedded interpreter): Python's stream only
            self._file = None
        return self

    def __exit__(self, *exc):
        import os
        self._redirect.__exit__(*exc)
        text = self._python.getvalue()
        if self._file is not None:
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self._file.seek(0)
            text += self._file.read().decode("utf-8", "replace")
            self._file.close()
        self.text = text
        return False


def _numbanet_folder() -> str:
    """Where the numbanet package lives, as the import system found it."""
    import importlib.util
    return importlib.util.find_spec("numbanet").submodule_search_locations[0]


def _private_stdlib(name: str):
    """A private copy of a single-file standard-library module, loaded from its file.

    A solution cell that patches ``subprocess.run`` patches the shared module in ``sys.modules``;
    this copy is a separate module object and is not affected.
    """
    import importlib.util
    import os
    import sysconfig
    path = os.path.join(sysconfig.get_paths()["stdlib"], name + ".py")
    spec = importlib.util.spec_from_file_location(f"_numbanet_grading_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_verdict_process(folder: str) -> tuple:
    """(passed, feedback lines, one-line summary) from the reference process."""
    import os
    subprocess = _private_stdlib("subprocess")
    package = _numbanet_folder()
    verdict_script = os.path.join(package, "grading", "verdict.py")
    library_root = os.path.dirname(package)
    # A minimal environment: nothing the kernel put into os.environ (LD_PRELOAD, NUMBA_*, ...) reaches
    # the reference.  Its numbanet runs uncompiled (NUMBA_DISABLE_JIT): the same functions, as plain
    # Python, which on the tests' tiny inputs is faster than loading the compiled kernels.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR", "SYSTEMROOT") if key in os.environ}
    env.update(NUMBA_DISABLE_JIT="1", OMP_NUM_THREADS="1", LC_ALL="C.UTF-8")
    try:
        done = subprocess.run([sys.executable, "-I", verdict_script, "check", folder, library_root], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=_VERDICT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, [f"✘ grading error: the reference took over {_VERDICT_TIMEOUT_S} s"], "grading timed out"
    lines = done.stdout.decode("utf-8", "replace").rstrip("\n").split("\n")
    if done.returncode in (0, 1) and len(lines) >= 2:
        return done.returncode == 0, lines[:-1], lines[-1]
    tail = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()[-8:]
    return False, ["✘ grading error (not your fault: tell your instructor):", *tail], "grading error"
