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
   numbers.  The kernel builds the arrays from them; so does the reference process (step 3),
   which refuses to grade if the kernel's arrays differ, so a patched ``np.random`` cannot
   feed the tests degenerate inputs (all zeros) that a wrong answer would pass.
2. In the notebook's kernel the student's function runs on copies of the inputs, with
   numbanet's own convolution and pooling kernels switched off (a graded function that calls
   ``F.conv2d`` gets a clear error instead of the reference answer) and its warnings collected
   (nbgrader gives 0 points to any test cell that writes to stderr).
3. Inputs and outputs go to an ``.npz`` file, the test's description to a file of Python
   literals, and a fresh Python process (``python -I`` with a minimal environment: no user site,
   no PYTHON* variables, not the notebook's folder on ``sys.path``) runs this file as a script:
   it re-imports numpy (and numbanet when the reference needs it), rebuilds the inputs, computes
   the reference answer from the reference *source text* written in the locked test cell, and
   compares.  Monkeypatching ``np.allclose``, ``np.testing``, ``numbanet.functional`` or
   ``AssertionError`` in the kernel cannot change what that process computes.
4. It prints the feedback (expected vs got, where, a hint) and exits with status 0 (passed)
   or 1 (failed); the kernel shows the feedback and raises ``AssertionError`` on failure,
   which nbgrader scores as 0 for that test cell.

The test cells reload this module from disk before use, which undoes patches of its functions;
the ``subprocess`` module it starts step 3 with is a private copy loaded from the standard
library's file, so patching ``subprocess.run`` in a solution cell does not reach it either.
What a solution cell can still do is listed in solutions/README.md ("Security").
"""
from __future__ import annotations

import sys
import zlib

__all__ = ["check", "randn", "array", "OffLimitsError"]

# Kernels that compute the reference answers: inside a graded call they raise instead.
_OFF_LIMITS_MODULES = ("numbanet.kernels.cpu.conv", "numbanet.kernels.cpu.pooling",
                       "numbanet.kernels.cpu.norm", "numbanet.kernels.cpu.dropout")  # a5: BatchNorm, dropout
_MAX_PRINTED = 16          # arrays up to this many elements are printed whole in feedback
_VERDICT_TIMEOUT_S = 120   # the reference process (about a second; nbgrader interrupts a cell after 60 s)
_recipes_made = 0          # automatic seeds: the n-th randn() since this module was (re)loaded


class OffLimitsError(RuntimeError):
    """Raised when a graded function calls numbanet's own convolution or pooling kernels."""


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


def array(values, dtype: str = "float64") -> _Recipe:
    """A test input written out as (nested) lists of numbers."""
    return _Recipe(("array", _plain(values), str(dtype)))


def _plain(values):
    if isinstance(values, (list, tuple)):
        return [_plain(v) for v in values]
    return float(values)


def _build(recipe: tuple):
    import numpy as np
    kind = recipe[0]
    if kind == "randn":
        _, seed, shape, dtype = recipe
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    _, values, dtype = recipe
    return np.array(values, dtype=dtype)


# -- in the notebook's kernel --------------------------------------------------------------------

def check(name: str, student_fn, cases, *, reference: str | None = None, expected=None,
          reference_cases=None, outputs=("output",), compare: str = "close",
          rtol: float = 1e-7, atol: float = 1e-9, check_dtype: bool = False, hint: str = "",
          numbanet_layers: bool = False) -> None:
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
    numbanet_layers: leave numbanet's convolution and pooling kernels on while the student's
                     function runs (capstones whose modules are built from ``nn.Conv2d``,
                     ``nn.MaxPool2d``, ...); the default switches them off.
    """
    import os
    import tempfile
    import numpy as np

    cases = [tuple(case) for case in cases]
    if (reference is None) == (expected is None):
        raise ValueError("check: give exactly one of reference= or expected=")
    for label, extra in (("expected values", expected), ("reference_cases", reference_cases)):
        if extra is not None and len(extra) != len(cases):
            raise ValueError(f"check: {len(cases)} cases but {len(extra)} {label}")
    if compare not in ("close", "le", "ge"):
        raise ValueError(f"check: compare must be 'close', 'le' or 'ge', got {compare!r}")
    outputs = tuple(outputs)

    arrays: dict = {}
    spec_cases = []
    for i, args in enumerate(cases):
        ref_args = args if reference_cases is None else tuple(reference_cases[i])
        case = {"args": [_encode(a, f"c{i}a{j}", arrays) for j, a in enumerate(args)],
                "ref_args": [_encode(a, f"c{i}r{j}", arrays) for j, a in enumerate(ref_args)]}
        student = _call_student(student_fn, tuple(_materialise(a) for a in args), len(outputs),
                                numbanet_layers)
        if "values" in student:
            student["values"] = [_encode(v, f"c{i}s{k}", arrays) for k, v in enumerate(student["values"])]
        case["student"] = student
        if expected is not None:
            case["expected"] = _encode(expected[i], f"c{i}e", arrays)
        spec_cases.append(case)

    spec = {"name": name, "reference": reference, "outputs": list(outputs), "compare": compare,
            "rtol": float(rtol), "atol": float(atol), "check_dtype": bool(check_dtype), "hint": hint,
            "arg_names": _parameter_names(student_fn), "cases": spec_cases}
    with tempfile.TemporaryDirectory(prefix="numbanet-grading-") as folder:
        np.savez(os.path.join(folder, "arrays.npz"), **arrays)
        with open(os.path.join(folder, "spec.txt"), "w", encoding="utf-8") as f:
            f.write(repr(spec))  # literals only; the reference process reads it with ast.literal_eval
        passed, lines, summary = _run_verdict_process(folder)

    print("\n".join(lines))
    if not passed:
        raise AssertionError(f"{name}: {summary}")


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


def _call_student(student_fn, args: tuple, n_outputs: int, numbanet_layers: bool = False) -> dict:
    """{"values": [...]} or {"error": text}, plus {"warnings": [...]} if it warned."""
    import os
    import traceback
    import warnings
    result: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _NumbanetOffLimits(enabled=not numbanet_layers):
                value = student_fn(*args)
        except Exception as error:  # noqa: BLE001 - the student's error becomes feedback
            # point at the student's line: the last frame outside numbanet's own files
            package = os.path.dirname(os.path.abspath(__file__)) + os.sep
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
    if caught:
        result["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return result


class _NumbanetOffLimits:
    """While active, numbanet's conv and pooling kernels raise OffLimitsError (unless not ``enabled``)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        import importlib
        self._saved = []
        for module_name in _OFF_LIMITS_MODULES if self.enabled else ():
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for attr, obj in list(vars(module).items()):
                if hasattr(obj, "py_func"):  # a numba dispatcher
                    self._saved.append((module, attr, obj))
                    setattr(module, attr, _off_limits_stub(f"{module_name}.{attr}"))
        return self

    def __exit__(self, *exc):
        for module, attr, obj in self._saved:
            setattr(module, attr, obj)
        return False


def _off_limits_stub(kernel: str):
    def stub(*args, **kwargs):
        raise OffLimitsError(f"your function called numbanet's own convolution/pooling/normalization/dropout "
                             f"({kernel}); they are switched off while it is graded: write the computation yourself")
    return stub


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
    here = os.path.abspath(__file__)
    library_root = os.path.dirname(os.path.dirname(here))
    # A minimal environment: nothing the kernel put into os.environ (LD_PRELOAD, NUMBA_*, ...) reaches
    # the reference.  Its numbanet runs uncompiled (NUMBA_DISABLE_JIT): the same functions, as plain
    # Python, which on the tests' tiny inputs is faster than loading the compiled kernels.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR", "SYSTEMROOT") if key in os.environ}
    env.update(NUMBA_DISABLE_JIT="1", OMP_NUM_THREADS="1", LC_ALL="C.UTF-8")
    try:
        done = subprocess.run([sys.executable, "-I", here, folder, library_root], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=_VERDICT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, [f"✘ grading error: the reference took over {_VERDICT_TIMEOUT_S} s"], "grading timed out"
    lines = done.stdout.decode("utf-8", "replace").rstrip("\n").split("\n")
    if done.returncode in (0, 1) and len(lines) >= 2:
        return done.returncode == 0, lines[:-1], lines[-1]
    tail = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()[-8:]
    return False, ["✘ grading error (not your fault: tell your instructor):", *tail], "grading error"


# -- in the fresh reference process --------------------------------------------------------------

def _verdict_main(folder: str, library_root: str) -> None:
    """Print the feedback lines and a one-line summary; exit 0 if every case passed, else 1."""
    import ast
    import os
    import numpy as np
    with open(os.path.join(folder, "spec.txt"), encoding="utf-8") as f:
        spec = ast.literal_eval(f.read())
    with np.load(os.path.join(folder, "arrays.npz"), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    reference = None
    if spec["reference"] is not None:
        namespace = {"np": np}
        if "F." in spec["reference"] or "nb." in spec["reference"]:
            try:
                import numbanet
            except ImportError:  # numbanet used from a source tree, not installed
                sys.path.append(library_root)
                import numbanet
            import numbanet.functional
            namespace.update(nb=numbanet, F=numbanet.functional)
        reference = eval(spec["reference"], namespace)  # noqa: S307 - source text of a locked test cell

    n = len(spec["cases"])
    lines, failures = [], []
    for i, case in enumerate(spec["cases"]):
        label = _case_label(i, n, case["args"], spec["arg_names"], arrays)
        problems = _tampered_inputs(case, arrays) or _judge_case(case, spec, reference, arrays)
        notes = [f"    note: your code warned {w}" for w in case["student"].get("warnings", [])]
        if problems:
            failures.append(label)
        lines += [f"{'✘' if problems else '✔'} {label}", *[f"    {p}" for p in problems], *notes]
    passed = not failures
    plural = "s" if n > 1 else ""
    head = f"passed ({n} case{plural})" if passed else f"{len(failures)} of {n} case{plural} wrong"
    lines.insert(0, f"{'✔' if passed else '✘'} {spec['name']}: {head}")
    if not passed and spec["hint"]:
        lines.append(f"Hint: {spec['hint']}")
    summary = "passed" if passed else f"wrong for {failures[0]}" + (
        f" and {len(failures) - 1} more case{'s' if len(failures) > 2 else ''}" if len(failures) > 1 else "")
    sys.stdout.buffer.write("\n".join([*lines, summary, ""]).encode("utf-8"))
    sys.stdout.flush()
    sys.exit(0 if passed else 1)


def _decode(desc: dict, arrays: dict):
    if "array" in desc:
        return arrays[desc["array"]]
    if "literal" in desc:
        return desc["literal"]
    if "tuple" in desc:
        return tuple(_decode(d, arrays) for d in desc["tuple"])
    if "list" in desc:
        return [_decode(d, arrays) for d in desc["list"]]
    if "callable" in desc:
        raise TypeError(f"the function {desc['callable']!r} cannot be passed to the reference: "
                        "give check() reference_cases")
    return f"<{desc['opaque']}>"


def _describe(desc: dict, arrays: dict) -> str:
    if "array" in desc:
        a = arrays[desc["array"]]
        return f"{a.dtype} {a.shape}" if a.ndim else repr(a.item())
    if "literal" in desc:
        return repr(desc["literal"])
    if "tuple" in desc or "list" in desc:
        items = ", ".join(_describe(d, arrays) for d in desc.get("tuple", desc.get("list")))
        return f"({items})" if "tuple" in desc else f"[{items}]"
    if "callable" in desc:
        return f"a function ({desc['callable']})"
    return desc["opaque"]


def _case_label(i: int, n: int, args, names, arrays) -> str:
    parts = [f"{names[j]}={_describe(d, arrays)}" if j < len(names) else _describe(d, arrays)
             for j, d in enumerate(args)]
    return (f"case {i + 1}/{n} " if n > 1 else "") + "(" + ", ".join(parts) + ")"


def _walk(descs):
    for desc in descs:
        yield desc
        yield from _walk(desc.get("tuple", desc.get("list", [])))


def _tampered_inputs(case: dict, arrays: dict) -> list:
    """Rebuild every recipe input here; a mismatch means the kernel's arrays were altered."""
    expected = [case["expected"]] if "expected" in case else []
    for desc in _walk([*case["args"], *case["ref_args"], *expected]):
        if "recipe" in desc:
            rebuilt, used = _build(desc["recipe"]), arrays[desc["array"]]
            if rebuilt.dtype != used.dtype or rebuilt.shape != used.shape or rebuilt.tobytes() != used.tobytes():
                return ["the test's inputs were changed before your function saw them: not graded "
                        "(was numpy patched in a solution cell?)"]
    return []


def _as_outputs(value, n: int) -> list:
    import numpy as np
    return [np.asarray(v) for v in (list(value) if n > 1 else [value])]


def _as_array(value):
    """Numbers and tuples of numbers as arrays; anything else (None, text) as it is, to be reported."""
    import numpy as np
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged or odd values are reported by the caller
        return value


def _judge_case(case: dict, spec: dict, reference, arrays: dict) -> list:
    """The problems with this case (empty when it passes)."""
    import numpy as np
    student = case["student"]
    if "error" in student:
        if student["error"].startswith("NotImplementedError"):
            return ["not implemented yet (your function raised NotImplementedError)"]
        return [f"your function raised {student['error']}"]
    names = spec["outputs"]
    n = len(names)
    if reference is not None:
        ref_args = [_decode(d, arrays) for d in case["ref_args"]]
        want = _as_outputs(reference(*[a.copy() if isinstance(a, np.ndarray) else a for a in ref_args]), n)
    else:
        want = _as_outputs(_decode(case["expected"], arrays), n)
    got = [_as_array(_decode(d, arrays)) for d in student["values"]]
    problems = []
    for name, g, w in zip(names, got, want):
        label = f"'{name}'" if n > 1 else "result"
        if not isinstance(g, np.ndarray) or g.dtype.kind not in "biuf":
            problems.append(f"{label}: expected a number or a numeric array, got {_short(g)}")
        elif g.shape != w.shape:
            problems.append(f"{label}: wrong shape: expected {w.shape}, got {g.shape}")
        elif spec["check_dtype"] and w.dtype.kind == "f" and g.dtype != w.dtype:
            problems.append(f"{label}: wrong dtype: expected {w.dtype}, got {g.dtype} (keep the input's dtype)")
        else:
            problems += _compare_values(label, g.astype(np.float64), w.astype(np.float64), spec)
    return problems


def _short(value) -> str:
    text = repr(value.item() if hasattr(value, "ndim") and value.ndim == 0 else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _compare_values(label: str, got, want, spec: dict) -> list:
    import numpy as np
    compare, rtol, atol = spec["compare"], spec["rtol"], spec["atol"]
    if not np.all(np.isfinite(got)):
        return [f"{label}: contains NaN or inf ({int(got.size - np.isfinite(got).sum())} of {got.size} values)"]
    if compare == "close":
        bad, relation = ~(np.abs(got - want) <= atol + rtol * np.abs(want)), "expected"
    elif compare == "le":
        bad, relation = ~(got <= want), "expected at most"
    else:
        bad, relation = ~(got >= want), "expected at least"
    if not bad.any():
        return []
    if got.ndim == 0:
        return [f"{label}: {relation} {_fmt(want)}, got {_fmt(got)}"]
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    text = (f"{label}: {int(bad.sum())} of {bad.size} values wrong; first at index {first}: "
            f"{relation} {_fmt(want[first])}, got {_fmt(got[first])}")
    if compare == "close":
        text += f"; largest |difference| {_fmt(np.max(np.abs(got - want)))}"
    lines = [text]
    if got.size <= _MAX_PRINTED:
        with np.printoptions(precision=6, suppress=True, linewidth=90):
            lines += [f"  {relation}:", *[f"    {row}" for row in str(want).splitlines()],
                      "  got:", *[f"    {row}" for row in str(got).splitlines()]]
    return lines


def _fmt(x) -> str:
    x = float(x)
    return f"{int(x)}" if x.is_integer() and abs(x) < 1e15 else f"{x:.7g}"


if __name__ == "__main__":
    _verdict_main(sys.argv[1], sys.argv[2])
