"""The verdict process of :func:`numbanet.grading.check`: run as a script by ``python -I``.

It imports nothing from the notebook's kernel: it rebuilds the test inputs from their recipes,
computes the reference answer from the source text of the locked test cell, compares, prints the
feedback and exits 0 (passed) or 1 (failed).  Kept free of package-relative imports so that it
runs as a plain file (numbanet itself is imported only when a reference needs it).
"""
import sys

_MAX_PRINTED = 16          # arrays up to this many elements are printed whole in feedback


def build(recipe: tuple):
    import numpy as np
    kind = recipe[0]
    if kind == "randn":
        _, seed, shape, dtype = recipe
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    _, values, dtype = recipe
    return np.array(values, dtype=dtype)


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
