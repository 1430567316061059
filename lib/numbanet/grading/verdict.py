"""The verdicts of :func:`numbanet.grading.check`, computed in a process the student's code never ran in.

Run as a script by ``python -I``, in one of two ways:

``verdict.py check FOLDER LIBRARY_ROOT``
    A student's own run of one ``check()`` (the notebook's kernel starts it): ``FOLDER`` holds the
    test (``test.txt``, ``test.npz``: what the locked cell asked for, and the inputs the kernel
    built) and the student's results (``results.txt``, ``results.npz``).  Prints the feedback and a
    one-line summary; exits 0 (passed) or 1 (failed).
``verdict.py notebook FOLDER LIBRARY_ROOT``
    Autograde (:class:`numbanet.grading.preprocessors.SandboxedExecute`): ``FOLDER/cells.json`` lists
    the notebook's locked code cells as restored from the gradebook, and ``FOLDER/<grade_id>/``
    the results that the sandboxed kernel wrote for that test cell (``000.txt``, ``000.npz``, ...,
    one pair per ``check()`` call).  This process runs the locked cells itself, with ``check()``
    only *recording* each test (:data:`recording`): the reference, the tolerances and the inputs
    come from the cell's text, never from the kernel.  The student's outputs are plain arrays
    (``allow_pickle=False``) and literals (``ast.literal_eval``).  Writes ``FOLDER/verdicts.json``:
    ``{grade_id: {"checks": n, "passed": bool, "lines": [...], "summary": str}}``.

It imports nothing from the notebook's kernel.  Kept free of package-relative imports so that it
runs as a plain file (numbanet is imported when a reference or a recorded cell needs it).
"""
import sys

_MAX_PRINTED = 16          # arrays up to this many elements are printed whole in feedback
_MAX_RESULT_TEXT = 1 << 20         # bytes of one check's results description from the kernel
_MAX_RESULT_ARRAYS = 512 << 20     # bytes of one check's result arrays from the kernel

# While a notebook's locked cells run in this process, check() appends (test, inputs) here instead
# of calling the student's function (read through the imported numbanet.grading.verdict module).
recording = None


def build(recipe: tuple):
    import numpy as np
    kind = recipe[0]
    if kind == "randn":
        _, seed, shape, dtype = recipe
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    _, values, dtype = recipe
    return np.array(values, dtype=dtype)


def judge(test: dict, inputs: dict, results: dict, outputs: dict, kernel_inputs: bool = False) -> tuple:
    """(passed, feedback lines, one-line summary) of one check: ``test`` and ``inputs`` describe it,
    ``results`` / ``outputs`` are what the student's function returned (descriptions / arrays).
    ``kernel_inputs``: the inputs were built by the kernel, so rebuild the recipes and compare."""
    reference = _reference(test["reference"]) if test["reference"] is not None else None
    cases = test["cases"]
    student_cases = results.get("cases") if isinstance(results, dict) else None
    if not isinstance(student_cases, list) or len(student_cases) != len(cases):
        student_cases = [{"error": "GradingError: the results of your function did not arrive complete "
                                   "(was the grader changed in a solution cell?)"}] * len(cases)
    names = test["arg_names"] or _strings(results.get("arg_names"))
    labels = _strings(results.get("outputs"))
    if len(labels) != len(test["outputs"]):
        labels = test["outputs"]
    n = len(cases)
    lines, failures = [], []
    for i, (case, student) in enumerate(zip(cases, student_cases)):
        label = _case_label(i, n, case["args"], names, inputs)
        problems = kernel_inputs and _tampered_inputs(case, inputs) or []
        if not problems:
            try:
                problems = _judge_case(case, student, test, labels, reference, inputs, outputs)
            except Exception as error:  # noqa: BLE001 - a malformed result is the student's, and fails
                problems = [f"your function's result could not be read ({type(error).__name__}: {error})"]
        notes = [f"    note: your code warned {w}" for w in _strings(student.get("warnings") if isinstance(student, dict) else None)]
        if problems:
            failures.append(label)
        lines += [f"{'✘' if problems else '✔'} {label}", *[f"    {p}" for p in problems], *notes]
    passed = not failures
    plural = "s" if n > 1 else ""
    head = f"passed ({n} case{plural})" if passed else f"{len(failures)} of {n} case{plural} wrong"
    lines.insert(0, f"{'✔' if passed else '✘'} {test['name']}: {head}")
    if not passed and test["hint"]:
        lines.append(f"Hint: {test['hint']}")
    summary = "passed" if passed else f"wrong for {failures[0]}" + (
        f" and {len(failures) - 1} more case{'s' if len(failures) > 2 else ''}" if len(failures) > 1 else "")
    return passed, lines, summary


def _reference(source: str):
    import numpy as np
    namespace = {"np": np}
    if "F." in source or "nb." in source:
        import numbanet
        import numbanet.functional
        namespace.update(nb=numbanet, F=numbanet.functional)
    return eval(source, namespace)  # noqa: S307 - source text of a locked test cell


def _strings(values) -> list:
    """Display-only text from the kernel: a list of short strings, or nothing."""
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        return []
    return [v[:2000] for v in values]


# -- a student's own run: one check() ------------------------------------------------------------

def _read(folder: str, name: str) -> tuple:
    """(description, arrays) from ``name.txt`` (Python literals) and ``name.npz`` (plain arrays)."""
    import ast
    import os
    import numpy as np
    with open(os.path.join(folder, name + ".txt"), encoding="utf-8") as f:
        description = ast.literal_eval(f.read(_MAX_RESULT_TEXT + 1))
    with np.load(os.path.join(folder, name + ".npz"), allow_pickle=False) as npz:
        if sum(info.file_size for info in npz.zip.infolist()) > _MAX_RESULT_ARRAYS:
            raise ValueError(f"the arrays are larger than {_MAX_RESULT_ARRAYS >> 20} MiB")
        arrays = {key: npz[key] for key in npz.files}
    return description, arrays


def _check_main(folder: str) -> None:
    test, inputs = _read(folder, "test")
    results, outputs = _read(folder, "results")
    passed, lines, summary = judge(test, inputs, results, outputs, kernel_inputs=True)
    sys.stdout.buffer.write("\n".join([*lines, summary, ""]).encode("utf-8"))
    sys.stdout.flush()
    sys.exit(0 if passed else 1)


# -- autograde: every test cell of a notebook ----------------------------------------------------

class _Names(dict):
    """The namespace the locked cells run in: a name they use but do not define (the student's
    functions) is an :class:`_Unknown`, which the recording ``check()`` never calls."""

    def __missing__(self, name):
        import builtins
        return getattr(builtins, name) if hasattr(builtins, name) else _Unknown(name)


class _Unknown:
    """Something the student's code defines, seen from outside the kernel: calls and attributes give more of it."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        return _Unknown(f"{self.__name__}(...)")

    def __getattr__(self, name):
        return _Unknown(f"{self.__name__}.{name}")

    def __repr__(self):
        return f"<{self.__name__}: defined by the student>"


def _notebook_main(folder: str) -> None:
    import json
    import os
    import numbanet.grading.verdict as recorder   # the module check() looks at, not this script
    with open(os.path.join(folder, "cells.json"), encoding="utf-8") as f:
        cells = json.load(f)
    namespace, verdicts = _Names(__name__="__grading__"), {}
    for cell in cells:
        recorder.recording = [] if cell["test"] else None
        problem = None
        try:
            exec(compile(cell["source"], f"<locked cell {cell['grade_id']}>", "exec"), namespace)  # noqa: S102
        except Exception as error:  # noqa: BLE001 - a given cell may use the student's definitions
            problem = f"{type(error).__name__}: {error}"
        if cell["test"]:
            verdicts[cell["grade_id"]] = _judge_cell(recorder.recording, problem,
                                                     os.path.join(folder, cell["grade_id"]))
    recorder.recording = None
    with open(os.path.join(folder, "verdicts.json"), "w", encoding="utf-8") as f:
        json.dump(verdicts, f, ensure_ascii=False)


def _judge_cell(recorded: list, problem, folder: str) -> dict:
    """The verdict of one test cell: each recorded check against the kernel's results, in order."""
    import os
    arrived = sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".txt")) if os.path.isdir(folder) else []
    lines, summaries = [], []
    for k, (test, inputs) in enumerate(recorded):
        if k >= len(arrived):
            passed, text, summary = False, [f"✘ {test['name']}: no result arrived from the notebook: the test did "
                                            "not get to this check (an error, or a grader replaced in a solution "
                                            "cell)"], "the test did not run"
        else:
            try:
                results, outputs = _read(folder, arrived[k])
                if not isinstance(results, dict) or results.get("name") != test["name"]:
                    raise ValueError("they belong to another test")
            except Exception as error:  # noqa: BLE001 - unreadable results fail the check
                results, outputs = {"error": f"{type(error).__name__}: {error}"}, {}
            if "error" in results:
                passed, text, summary = False, [f"✘ {test['name']}: your results could not be read "
                                                f"({results['error']})"], "results unreadable"
            else:
                passed, text, summary = judge(test, inputs, results, outputs)
        lines += text
        if not passed:
            summaries.append(f"{test['name']}: {summary}")
    if len(arrived) > len(recorded):
        lines.append(f"✘ {len(arrived)} results arrived for the {len(recorded)} checks of this test")
        summaries.append("more results than checks")
    if problem is not None:
        lines.append(f"✘ grading error (not your fault: tell your instructor): this test cell failed outside "
                     f"the notebook: {problem}")
        summaries.append("grading error")
    elif not recorded:   # nothing to judge outside the kernel, and the kernel's word is the student's
        lines.append("✘ grading error (not your fault: tell your instructor): this test cell calls no "
                     "grading.check, so it cannot be graded outside the notebook")
        summaries.append("grading error")
    return {"checks": len(recorded), "passed": not summaries, "lines": lines, "summary": "; ".join(summaries)}


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
    """Rebuild every recipe input here; a mismatch means the kernel's arrays were altered (a
    student's own run: the kernel built the inputs)."""
    expected = [case["expected"]] if "expected" in case else []
    for desc in _walk([*case["args"], *case["ref_args"], *expected]):
        if "recipe" in desc:
            rebuilt, used = build(desc["recipe"]), arrays[desc["array"]]
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


def _judge_case(case: dict, student: dict, test: dict, labels, reference, inputs: dict, outputs: dict) -> list:
    """The problems with this case (empty when it passes); ``student`` is what the kernel reported."""
    import numpy as np
    if "error" in student:
        error = str(student["error"])[:4000]
        if error.startswith("NotImplementedError"):
            return ["not implemented yet (your function raised NotImplementedError)"]
        return [f"your function raised {error}"]
    n = len(test["outputs"])
    if reference is not None:
        ref_args = [_decode(d, inputs) for d in case["ref_args"]]
        want = _as_outputs(reference(*[a.copy() if isinstance(a, np.ndarray) else a for a in ref_args]), n)
    else:
        want = _as_outputs(_decode(case["expected"], inputs), n)
    values = student["values"]
    if not isinstance(values, list) or len(values) != n:
        return [f"it returned {len(values) if isinstance(values, list) else 'no'} values; expected {n}"]
    got = [_as_array(_decode(d, outputs)) for d in values]
    problems = []
    for name, g, w in zip(labels, got, want):
        label = f"'{name}'" if n > 1 else "result"
        if not isinstance(g, np.ndarray) or g.dtype.kind not in "biuf":
            problems.append(f"{label}: expected a number or a numeric array, got {_short(g)}")
        elif g.shape != w.shape:
            problems.append(f"{label}: wrong shape: expected {w.shape}, got {g.shape}")
        elif test["check_dtype"] and w.dtype.kind == "f" and g.dtype != w.dtype:
            problems.append(f"{label}: wrong dtype: expected {w.dtype}, got {g.dtype} (keep the input's dtype)")
        else:
            problems += _compare_values(label, g.astype(np.float64), w.astype(np.float64), test)
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
    _mode, _folder, _library_root = sys.argv[1:4]
    try:
        import numbanet  # noqa: F401 - installed: use that one
    except ImportError:  # numbanet used from a source tree, not installed
        sys.path.append(_library_root)
    {"check": _check_main, "notebook": _notebook_main}[_mode](_folder)
