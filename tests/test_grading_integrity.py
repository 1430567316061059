"""The integrity scan of graded notebooks (numbanet.grading.integrity): what it flags, what it leaves alone."""
import json
import subprocess
import sys

import nbformat
import pytest

from numbanet.grading.integrity import (feedback_markdown, main, neutralise, report_entries, scan_notebook,
                                        scan_source)

FLAGGED = {
    # patching modules
    "numpy attribute": ("np.allclose = lambda *a, **k: True", "np.allclose"),
    "nested attribute": ("import numpy\nnumpy.testing.assert_allclose = None", "numpy.testing.assert_allclose"),
    "augmented": ("np.testing.tolerance += 1", "np.testing.tolerance"),
    "deleted": ("del np.allclose", "deletes np.allclose"),
    "grading helper": ("numbanet.grading.check = lambda *a, **k: None", "numbanet.grading.check"),
    "alias of a module": ("t = np.testing\nt.assert_allclose = print", "t.assert_allclose"),
    "a reloaded module": ("g = importlib.reload(numbanet.grading)\ng.check = print", "g.check"),
    "from-import": ("from numpy import testing\ntesting.assert_allclose = None", "testing.assert_allclose"),
    "inside a function": ("def conv(x):\n    np.allclose = max\n    return x", "np.allclose"),
    "setattr": ("setattr(np, 'allclose', max)", "setattr on np"),
    "delattr": ("import numbanet.grading\ndelattr(numbanet.grading, 'check')", "delattr"),
    "getattr with a computed name": ("getattr(os, '_e' + 'xit')(0)", "computed name"),
    "module __dict__": ("np.testing.__dict__.update(assert_allclose=print)", "__dict__"),
    "vars of a module": ("vars(np)['allclose'] = max", "vars(np)"),
    "package __path__": ("numbanet.__path__.insert(0, '/tmp')", "__path__"),
    "a numpy function's __code__": ("np.allclose.__code__ = (lambda *a, **k: True).__code__", "np.allclose.__code__"),
    "builtins through __self__": ("print.__self__.AssertionError = Warning", "__self__"),
    "a module's __dict__": ("d = numbanet.grading.__dict__", "__dict__"),
    # the import system and builtins
    "sys.modules": ("import sys\nsys.modules['numbanet.grading'] = fake", "sys.modules"),
    "sys.modules read": ("real = sys.modules['numpy']", "sys.modules"),
    "importlib.reload hook": ("importlib.reload = lambda module: module", "importlib.reload"),
    "builtins": ("import builtins\nbuiltins.AssertionError = Exception", "builtins.AssertionError"),
    "__builtins__": ("__builtins__.__dict__['print'] = len", "__builtins__"),
    "__import__": ("m = __import__('numpy')", "__import__"),
    "globals()": ("globals()['importlib'].reload = f", "globals()"),
    "frames": ("import sys\nsys._getframe(1).f_globals['np'] = None", "sys._getframe"),
    "trace hook": ("sys.settrace(tracer)", "sys.settrace"),
    "profile hook through os": ("os.sys.setprofile(None)", "call guard"),
    "profile hook read": ("hook = sys.getprofile()", "sys.getprofile"),
    "gc referrers": ("import gc\ngc.get_referrers(check)", "gc.get_referrers"),
    "pip with a redirect": ("!pip install x > numbanet/grading.py", "shell"),
    "pip then a command": ("!pip install x; kill -9 $PPID", "shell"),
    "an unknown extension": ("%load_ext cheat", "%load_ext"),
    "%config of the kernel": ("%config IPKernelApp.exec_lines = ['x']", "%config"),
    # exceptions and builtin names
    "class AssertionError": ("class AssertionError(Exception):\n    pass", "AssertionError"),
    "AssertionError =": ("AssertionError = Warning", "AssertionError"),
    "def isinstance": ("def isinstance(a, b):\n    return True", "isinstance"),
    # ending or signalling the process
    "os._exit": ("import os\nos._exit(0)", "os._exit"),
    "from os import _exit": ("from os import _exit\n_exit(0)", "from os"),
    "os.kill": ("os.kill(os.getpid(), 9)", "os.kill"),
    "os.system": ("os.system('kill -9 $PPID')", "os.system"),
    "sys.exit": ("import sys\nsys.exit()", "sys.exit"),
    "exit()": ("exit()", "exit()"),
    "SystemExit": ("raise SystemExit(0)", "SystemExit"),
    "signal": ("import signal\nsignal.alarm(1)", "signal"),
    "ctypes": ("import ctypes\nctypes.string_at(0)", "ctypes"),
    "threading": ("import threading", "threading"),
    # code the scan cannot read
    "exec of a variable": ("exec(code)", "exec()"),
    "exec of a flagged literal": ("exec('np.allclose = max')", "np.allclose"),
    "eval of a variable": ("eval(text)", "eval()"),
    "unreadably deep": ("x = 1\ny = " + "-" * 100_000 + "x", "could not read"),
    # IPython
    "kernel hook": ("get_ipython().set_custom_exc((Exception,), handler)", "Jupyter kernel"),
    "kernel alias": ("ip = get_ipython()\nip.events.register('post_run_cell', f)", "Jupyter kernel"),
    "shell escape": ("!kill -9 $PPID", "shell"),
    "bash cell": ("%%bash\nkill -9 $PPID", "%%bash"),
    "%run": ("%run cheat.py", "%run"),
    "%time of a patch": ("%time np.allclose = max", "np.allclose"),
    "%%time body": ("%%time\nx = 1\nnp.allclose = max", "np.allclose"),
}

NOT_FLAGGED = {
    "own helper named check": "def check(a, b):\n    return np.allclose(a, b)\nassert check(1, 1)",
    "own assert helper": "def assert_close(a, b):\n    assert np.allclose(a, b), 'differs'",
    "locals and item assignment": "y = np.zeros((2, 3))\ny[0, 1] = 4.0\ny += 1\nz = y.sum()",
    "attributes of own objects": ("class Layer:\n    def __init__(self):\n        self.w = np.ones(3)\n"
                                  "layer = Layer()\nlayer.w = np.zeros(3)\nlayer.cache = None"),
    "a parameter named like a module": "def f(np, F):\n    np.x = 1\n    F.y = 2\ng = lambda nn: nn.z",
    "a module name rebound": "nn = Layer()\nnn.weight = 3",
    "numpy calls": "np.random.seed(0)\nrng = np.random.default_rng(1)\nnp.set_printoptions(precision=3)",
    "sys.path and os.environ": "import sys, os\nsys.path.append('..')\nos.environ['NUMBA_NUM_THREADS'] = '2'",
    "the setup cell's Colab test": 'import sys\nif "google.colab" in sys.modules:\n    %pip install -q numbanet',
    "recursion limit": "import sys\nsys.setrecursionlimit(5000)\nsys.stdout.flush()",
    "a copied test cell": ("import importlib, numbanet.grading\ngrading = importlib.reload(numbanet.grading)\n"
                           "grading.check('mine', f, [(1,)], expected=[2])"),
    "timing magics": "%timeit conv2d_naive(x, w, b)\n%time y = conv1x1(x, w, b)",
    "%%time cell": "%%time\ny = conv2d_naive(x, w, b)",
    "html cell": "%%html\n<b>hi</b>",
    "display": "from IPython.display import display\ndisplay(x)",
    "eval of a clean literal": "eval('1 + 1')",
    "time and warnings": "import time, warnings\nt0 = time.perf_counter()\nwarnings.simplefilter('ignore')",
    "a loop variable": "for i in range(3):\n    y[i] = i",
    "syntax error": "def f(:\n    pass",
    "raising errors": "raise ValueError('bad shape')",
    "numpy's append and insert": "y = np.append(y, 3)\nz = np.insert(y, 0, 1.0)\nos.remove('tmp.npy')",
    "own objects' dunders": "class A:\n    def keys(self):\n        return list(self.__dict__)\nf.__doc__ = 'mine'",
    "methods and locals named like builtins": ("class Net:\n    def eval(self):\n        return self\n"
                                              "    def print(self):\n        pass\ndef f():\n    open = 1\n    return open"),
    "getattr on a module by name": "act = getattr(nn, kind)()",
    "numba's threading layer": "import numba\nnumba.config.THREADING_LAYER = 'workqueue'",
    "numba": "from numba import njit, prange\n@njit(parallel=True)\ndef k(x):\n    for i in prange(3):\n        x[i] = i",
    # ordinary notebook habits (issue 18)
    "autoreload": "%load_ext autoreload\n%autoreload 2",
    "inline backend": "%config InlineBackend.figure_format = 'retina'",
    "%env": "%env NUMBA_NUM_THREADS=2",
    "gc": "import gc\ngc.collect()",
    "!pip": "!pip install -q tqdm",
    "print(globals())": "print(globals())\nprint(sorted(globals()))",
}


@pytest.mark.parametrize("case", sorted(FLAGGED))
def test_tampering_is_flagged(case):
    source, words = FLAGGED[case]
    findings = scan_source(source)
    assert findings, f"{case}: not flagged"
    assert any(words in f.reason or words in f.code for f in findings), findings


@pytest.mark.parametrize("case", sorted(NOT_FLAGGED))
def test_ordinary_code_is_not_flagged(case):
    assert scan_source(NOT_FLAGGED[case]) == []


def test_finding_names_the_line_and_the_code():
    source = "def conv_output_size(n, f):\n    return n - f + 1\n\nnp.allclose = lambda *a: True\n"
    (finding,) = scan_source(source)
    assert (finding.line, finding.end_line) == (4, 4)
    assert finding.code == "np.allclose = lambda *a: True"
    assert "np.allclose" in finding.reason


def test_neutralise_replaces_statements_by_pass_and_keeps_the_rest():
    source = ("def conv(x):\n    np.allclose = max\n    return x + 1\n"
              "import os\nos._exit(\n    0)\nprint(conv(1))")
    cleaned = neutralise(source, scan_source(source))
    assert cleaned.split("\n") == ["def conv(x):", "    pass  # removed by the integrity check", "    return x + 1",
                                   "import os", "pass  # removed by the integrity check", "", "print(conv(1))"]
    namespace = {}
    exec(cleaned, namespace)  # noqa: S102 - the cleaned code still runs
    assert namespace["conv"](1) == 2
    assert scan_source(cleaned) == []


def test_neutralise_keeps_magics_and_cell_magic_lines():
    source = "x = 1\n%time np.allclose = max\n!ls\ny = 2"
    assert neutralise(source, scan_source(source)).split("\n") == [
        "x = 1", "pass  # removed by the integrity check", "pass  # removed by the integrity check", "y = 2"]
    source = "%%time\nx = 1\nnp.allclose = max"
    assert neutralise(source, scan_source(source)) == "%%time\nx = 1\npass  # removed by the integrity check"
    source = "%%bash\nkill -9 $PPID"
    assert all(line.startswith("# removed") for line in neutralise(source, scan_source(source)).split("\n"))


def test_names_imported_in_earlier_cells_count_as_modules():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import numpy.testing as nt", metadata={"nbgrader": {"locked": True}}),
        nbformat.v4.new_code_cell("nt.assert_allclose = print"),
        nbformat.v4.new_markdown_cell("np.allclose = max"),
        nbformat.v4.new_code_cell("x = 1"),
    ])
    flagged = scan_notebook(nb, skip=lambda cell: cell.metadata.get("nbgrader", {}).get("locked", False))
    assert [(item["index"], item["cell"]) for item in flagged] == [(1, "cell 2")]
    (entry,) = report_entries(flagged)
    assert entry["line"] == 1 and "nt.assert_allclose" in entry["reason"]
    assert "nt.assert_allclose" in feedback_markdown([entry])


def test_report_command_lists_flagged_submissions(tmp_path, capsys):
    for student, entries in (("alice", []), ("bob", [{"cell": "conv2d_naive", "line": 3, "end_line": 3,
                                                       "code": "np.allclose = max", "reason": "assigns np.allclose"},
                                                      {"cell": "file numpy.py", "line": 0, "end_line": 0,
                                                       "code": "", "reason": "a Python file handed in"}])):
        folder = tmp_path / "autograded" / student / "a1_conv_forward"
        folder.mkdir(parents=True)
        (folder / "integrity.json").write_text(json.dumps(
            {"student": student, "assignment": "a1_conv_forward", "flagged": bool(entries),
             "notebooks": {"a1_conv_forward": entries}}))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bob / a1_conv_forward: 2 flagged statement(s)" in out and "alice" not in out
    assert "conv2d_naive, line 3: np.allclose = max" in out and "1 of 2 submissions flagged" in out
    assert "    file numpy.py\n        a Python file handed in" in out


def test_scan_command_on_a_notebook(tmp_path):
    path = tmp_path / "hand_in.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\nos._exit(0)")]), path)
    done = subprocess.run([sys.executable, "-m", "numbanet.grading.integrity", "scan", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "cell 1, line 2: os._exit(0)" in done.stdout, done.stdout
