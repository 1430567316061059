"""Integrity scan of a graded notebook: find the code in students' cells that tampers with grading.

The locked test cells compare answers in a fresh process (:mod:`numbanet.grading`), so patching
``np.allclose`` gains nothing; but a solution cell can still go after the machinery *around* the
comparison (replace ``importlib.reload`` or ``sys.modules["numbanet.grading"]`` so the test cells
run a fake grader, kill the kernel, install exception hooks).  At autograde time
(:class:`numbanet.grading.preprocessors.IntegrityScan`) every code cell that is not a locked cell of the
assignment is parsed (IPython syntax included) and the statements that do any of the following are
*flagged*:

* assign, augment or delete an attribute or item of an imported module or anything reached from
  one (``np.allclose = ...``, ``numbanet.grading.check = ...``, ``np.testing.__dict__[...] = ...``),
  or call ``setattr`` / ``delattr`` / ``vars`` on a module;
* use ``sys.modules``, ``sys.meta_path``, ``sys.settrace`` / ``setprofile`` / ``_getframe`` /
  ``excepthook`` / ``exit``, a module's ``__dict__`` / ``__path__`` / ``__spec__``, ``__code__`` of
  a module's function, attributes that lead anywhere (``__globals__``, ``__self__``,
  ``__subclasses__``, frames' ``f_globals``), ``__builtins__``, ``__import__``, ``globals()``, or
  ``getattr`` with a computed name on ``os``, ``sys``, ``builtins``, ``importlib``;
* bind a builtin exception name (``class AssertionError(Exception)``) or a builtin the grading
  helper relies on (``print``, ``isinstance``, ``getattr``, ...);
* end or signal the process (``os._exit``, ``os.kill``, ``os.abort``, ``exit()``, ``sys.exit``,
  ``raise SystemExit``), run shell commands (``os.system``, ``!cmd``, ``%%bash``), or load code
  the scan cannot see (``exec`` / ``eval`` / ``compile`` of anything but a string literal that
  itself scans clean, ``%run``, ``%load_ext``);
* reach the grader's call guard (a profile hook, :mod:`numbanet.grading.offlimits`):
  ``settrace`` / ``setprofile`` / ``gettrace`` / ``getprofile`` / ``monitoring`` reached from any
  module (``os.sys.setprofile``), or objects through ``gc.get_referrers`` / ``get_objects``;
* import a module that only tampering needs here: ``ctypes``, ``signal``, ``threading``,
  ``multiprocessing``, ``subprocess``, ``atexit``, ``faulthandler``, the Jupyter kernel's own
  packages (``importlib`` and ``builtins`` may be imported: a student trying out a copy of a test
  cell does; writing into them is flagged);
* touch the kernel through ``get_ipython()`` other than by running a magic.

A student's own functions, classes, variables and attributes of their own objects
(``self.cache = x``, ``layer.weight = w``, ``self.__dict__``), module functions that happen to be
called ``append`` or ``insert`` (``np.append``), ``getattr(nn, name)``, and ``sys.path``,
``os.environ`` and ``numba.config`` settings (they do not reach the grader) are not flagged; nor
are ordinary notebook habits: ``%load_ext autoreload`` (and a few other extensions),
``%autoreload``, ``%config InlineBackend...``, ``%env``, ``import gc`` / ``gc.collect()``,
``!pip install ...``, ``print(globals())``.

:func:`neutralise` replaces every flagged statement by ``pass``, keeping the line numbers, so the
tests then grade exactly the student's code without the tampering.

Command line (from the course root)::

    python -m numbanet.grading.integrity report [COURSE_ROOT] [--assignment A]   # flagged submissions
    python -m numbanet.grading.integrity scan NOTEBOOK.ipynb ...                 # scan before grading
"""
from __future__ import annotations

import ast
import builtins
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

REPORT_NAME = "integrity.json"   # autograded/<student>/<assignment>/integrity.json

# Names a notebook uses for modules without importing them in the scanned cells (the setup cell
# imports np, nb, F, nn; every test cell imports importlib and numbanet.grading).
_KNOWN_MODULES = {"np", "numpy", "nb", "numbanet", "F", "nn", "functional", "grading", "sys", "os",
                  "builtins", "__builtins__", "importlib", "numba", "math", "time", "warnings",
                  "random", "tempfile", "subprocess", "inspect", "types", "IPython", "scipy", "torch"}
_FORBIDDEN_IMPORTS = {"ctypes", "_ctypes", "cffi", "signal", "threading",
                      "_thread", "multiprocessing", "subprocess", "_posixsubprocess", "atexit",
                      "faulthandler", "pty", "ipykernel", "jupyter_client", "zmq", "tornado", "nbclient"}
# attributes that lead from any object to module namespaces, builtins or frames
_ESCAPE_ATTRS = {"__globals__", "__builtins__", "__self__", "__subclasses__", "__bases__", "__mro__",
                 "__import__", "__path__", "__spec__", "__loader__", "f_globals", "f_locals", "f_back",
                 "f_builtins"}
# attributes that change behaviour when reached from a module (`self.__dict__` is the student's own)
_MODULE_DUNDERS = {"__dict__", "__code__", "__closure__", "__defaults__", "__kwdefaults__", "__setattr__",
                   "__delattr__"}
_SENSITIVE_MODULES = {"builtins", "__builtins__", "os", "posix", "sys", "importlib", "grading"}
_SYS_ATTRS = {"modules", "meta_path", "path_hooks", "path_importer_cache", "settrace", "setprofile",
              "gettrace", "getprofile", "_getframe", "excepthook", "displayhook", "addaudithook", "exit",
              "breakpointhook", "unraisablehook"}
# the grader's call guard (numbanet.grading.offlimits) is a profile hook: these reach or remove it,
# however the module is reached (``os.sys.setprofile``, ``importlib.import_module("sys").settrace``)
_HOOK_ATTRS = {"settrace", "setprofile", "gettrace", "getprofile", "monitoring", "_getframe"}
# gc may collect; what finds arbitrary objects (the grader's, through their references) is flagged
_GC_REACHING = {"get_referrers", "get_referents", "get_objects", "callbacks", "garbage"}
_OS_CALLS = re.compile(r"^(_exit|kill|killpg|abort|system|popen|fork|forkpty|exec\w*|spawn\w*|"
                       r"posix_spawn\w*|setuid|setgid)$")
_PROTECTED_BUILTINS = ({name for name in dir(builtins)
                        if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), BaseException)}
                       | {"__import__", "__builtins__", "__build_class__", "print", "isinstance", "issubclass",
                          "getattr", "setattr", "hasattr", "repr", "open", "exec", "eval", "compile"})
_CODE_RUNNERS = {"exec", "eval", "compile"}
_PROCESS_ENDERS = {"exit", "quit"}
_PY_MAGICS = {"time", "timeit", "prun", "capture"}   # magics whose argument / cell body is Python
_INERT_CELL_MAGICS = {"html", "markdown", "latex", "svg", "javascript", "js"}
_SAFE_LINE_MAGICS = {"time", "timeit", "prun", "matplotlib", "pip", "conda", "who", "whos", "pinfo",
                     "pinfo2", "psearch", "precision", "pwd", "lsmagic", "magic", "page", "debug", "tb",
                     "xmode", "pdb", "history", "doctest_mode", "pprint", "capture", "autoreload", "aimport",
                     "env"}   # %env sets os.environ, which does not reach the grader
# ordinary notebook habits: %load_ext of these extensions, %config of the inline plots' backend
_SAFE_EXTENSIONS = {"autoreload", "line_profiler", "memory_profiler", "snakeviz", "watermark"}
_SAFE_CONFIG_PREFIXES = ("InlineBackend.", "IPCompleter.", "Completer.", "HistoryManager.")
# readers of the notebook namespace: print(globals()) shows it, it cannot change anything
_NAMESPACE_READERS = {"print", "len", "sorted", "list", "dir", "repr", "str", "set", "pprint", "display"}
# `!pip install x` (a shell command with nothing but pip's arguments: no ; & | ` $ < > or newline)
_PIP_COMMAND = re.compile(r"^\s*(pip3?|python3? -m pip) [\w .,=~\[\]@/:+\-'\"]*$")
_SAFE_IPYTHON_ATTRS = {"run_line_magic", "run_cell_magic"}
# module state that students may set: it does not reach the grader
_UNFLAGGED_MODULE_STATE = {("sys", "path"), ("os", "environ"), ("numba", "config")}
_IPYTHON = "get_ipython()"


class Finding(NamedTuple):
    """One flagged statement: lines ``line``..``end_line`` (1-based) of a cell."""
    line: int
    end_line: int
    code: str
    reason: str


# -- scanning ------------------------------------------------------------------------------------

def scan_source(source: str, modules: dict | None = None) -> list[Finding]:
    """The flagged statements of one cell's source (IPython syntax allowed).

    modules: names bound to modules in the notebook so far (name -> "module", or "kernel" for
             ``ip = get_ipython()``); updated with the cell's imports and aliases (``m = np``), so
             pass the same dictionary for the cells of one notebook, in order.
    A cell that does not parse is not flagged: it fails when it runs, like any syntax error.
    """
    modules = dict.fromkeys(_KNOWN_MODULES, "module") if modules is None else modules
    lines = source.split("\n")
    first = lines[0].strip()
    if first.startswith("%%"):
        name = first[2:].split(maxsplit=1)[0] if len(first) > 2 else ""
        if name in _PY_MAGICS:
            return [f._replace(line=f.line + 1, end_line=f.end_line + 1)
                    for f in scan_source("\n".join(lines[1:]), modules)]
        if name in _INERT_CELL_MAGICS:
            return []
        return [Finding(1, len(lines), first, f"a %%{name} cell runs code the scan cannot check")]
    python = _python_text(source)
    scanner = _Scanner(modules)
    try:
        scanner.visit(ast.parse(python))
    except SyntaxError:
        return []
    except Exception as error:  # noqa: BLE001
        # fail closed: code the scan cannot read (nested too deep, null bytes) does not run unread
        return [Finding(1, len(lines), first, f"the scan could not read this cell ({type(error).__name__})")]
    text_lines = python.split("\n")
    findings = []
    for (start, end), reason in scanner.flagged.items():
        findings.append(Finding(start, end, text_lines[start - 1].strip(), reason))
    return sorted(findings)


def _python_text(source: str) -> str:
    """The cell as plain Python: IPython's magics and ``!`` commands become ``get_ipython()`` calls
    (one line each, so line numbers stay those of the cell)."""
    if "%" not in source and "!" not in source and "?" not in source:
        return source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    try:
        text = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - unparsable input is left to fail when it runs
        return source
    return text[:-1] if text.endswith("\n") and not source.endswith("\n") else text


class _Scanner(ast.NodeVisitor):
    """Walks one cell; ``flagged`` maps the (start, end) lines of each flagged statement to a reason."""

    def __init__(self, modules: dict):
        self.modules = modules          # notebook-wide: name -> "module" | "kernel" (updated by this cell)
        self.scopes: list[dict] = []    # function scopes: name -> "module" | "kernel" | None
        self.statements: list[ast.stmt] = []
        self.class_bodies = 0           # how many class bodies we are in
        self.flagged: dict = {}
        self.read_only_calls: set = set()   # ids of globals() calls whose value is only read
        self.checked_commands: set = set()  # ids of get_ipython().system attributes of checked calls

    # bookkeeping

    def flag(self, reason: str) -> None:
        stmt = self.statements[-1]
        start = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        self.flagged.setdefault((start, stmt.end_lineno), reason)

    def generic_visit(self, node):
        if isinstance(node, ast.stmt):
            self.statements.append(node)
            super().generic_visit(node)
            self.statements.pop()
        else:
            super().generic_visit(node)

    def kind(self, name: str) -> str | None:
        """"module" or "kernel" if ``name`` is bound to one here, else None."""
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return self.modules.get(name)

    def is_module(self, name: str) -> bool:
        return self.kind(name) is not None

    def shadows(self, name: str) -> bool:
        """Binding ``name`` here hides a builtin from the notebook's namespace (methods and local
        variables named ``eval`` or ``print`` hide nothing outside)."""
        return name in _PROTECTED_BUILTINS and not self.scopes and not self.class_bodies

    def bind(self, name: str, kind: str | None) -> None:
        if self.scopes:
            self.scopes[-1][name] = kind
        elif kind is not None:
            self.modules[name] = kind
        else:
            self.modules.pop(name, None)

    def root(self, node) -> str | None:
        """The module (or ``get_ipython()``) an expression is reached from, if any."""
        while True:
            if isinstance(node, (ast.Attribute, ast.Subscript)):
                node = node.value
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "get_ipython":
                    return _IPYTHON
                if isinstance(func, ast.Attribute) and func.attr == "get_ipython":
                    return _IPYTHON
                if isinstance(func, ast.Name) and func.id in ("getattr", "vars") and node.args:
                    node = node.args[0]
                elif self.path(func) in (("importlib", "reload"), ("importlib", "import_module")):
                    return "importlib"   # returns a module
                else:
                    return None
            elif isinstance(node, ast.Name):
                kind = self.kind(node.id)
                return _IPYTHON if kind == "kernel" else node.id if kind else None
            else:
                return None

    @staticmethod
    def path(node) -> tuple:
        """('np', 'testing', 'assert_allclose') for np.testing.assert_allclose (names only;
        subscripts skipped: ('os', 'environ') for os.environ["X"])."""
        parts = []
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            if isinstance(node, ast.Attribute):
                parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
            return tuple(reversed(parts))
        return ()

    def check_target(self, target, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.check_target(element, verb)
        elif isinstance(target, ast.Starred):
            self.check_target(target.value, verb)
        elif isinstance(target, ast.Name):
            if self.shadows(target.id):
                self.flag(f"{verb} the builtin name {target.id!r}")
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = self.root(target)
            if root is not None and self.path(target)[:2] not in _UNFLAGGED_MODULE_STATE:
                what = "the Jupyter kernel" if root == _IPYTHON else f"the module {root!r}"
                self.flag(f"{verb} {ast.unparse(target)}, part of {what}")

    # statements

    def visit_FunctionDef(self, node):
        self.statements.append(node)
        if self.shadows(node.name):
            self.flag(f"defines a function named like the builtin {node.name!r}")
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self.scopes.append(_parameters(node.args))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()
        self.statements.pop()
        self.bind(node.name, None)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.scopes.append(_parameters(node.args))
        self.visit(node.body)
        self.scopes.pop()

    def visit_ClassDef(self, node):
        self.statements.append(node)
        if self.shadows(node.name):
            self.flag(f"defines a class named like the builtin {node.name!r}")
        self.statements.pop()
        self.class_bodies += 1
        self.generic_visit(node)
        self.class_bodies -= 1
        self.bind(node.name, None)

    def visit_Import(self, node):
        self.statements.append(node)
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in _FORBIDDEN_IMPORTS:
                self.flag(f"imports {alias.name}, which only tampering with grading needs here")
            if alias.asname and self.shadows(alias.asname):
                self.flag(f"binds the builtin name {alias.asname!r}")
            self.bind(alias.asname or top, "module")
        self.statements.pop()

    def visit_ImportFrom(self, node):
        self.statements.append(node)
        top = (node.module or "").split(".")[0]
        if top in _FORBIDDEN_IMPORTS or node.level == 0 and (
                top == "sys" and any(a.name in _SYS_ATTRS for a in node.names)
                or top in ("os", "posix") and any(_OS_CALLS.match(a.name) for a in node.names)):
            self.flag(f"imports from {node.module}, which only tampering with grading needs here")
        for alias in node.names:
            name = alias.asname or alias.name
            if self.shadows(name):
                self.flag(f"binds the builtin name {name!r}")
            # `from numpy import testing`: names from a module may be modules or their functions;
            # either way, writing into them changes the module's state
            self.bind(name, "module")
        self.statements.pop()

    def visit_Assign(self, node):
        self.statements.append(node)
        self.visit(node.value)
        root = self.root(node.value) if isinstance(node.value, (ast.Name, ast.Attribute, ast.Call)) else None
        kind = None if root is None else "kernel" if root == _IPYTHON else "module"
        for target in node.targets:
            self.check_target(target, "assigns")
            self.visit_target(target)
            if isinstance(target, ast.Name):
                self.bind(target.id, kind)
        self.statements.pop()

    def visit_AnnAssign(self, node):
        self.statements.append(node)
        if node.value is not None:
            self.visit(node.value)
        self.check_target(node.target, "assigns")
        self.visit_target(node.target)
        if isinstance(node.target, ast.Name):
            self.bind(node.target.id, None)
        self.statements.pop()

    def visit_AugAssign(self, node):
        self.statements.append(node)
        self.visit(node.value)
        self.check_target(node.target, "changes")
        self.visit_target(node.target)
        self.statements.pop()

    def visit_Delete(self, node):
        self.statements.append(node)
        for target in node.targets:
            self.check_target(target, "deletes")
            self.visit_target(target)
        self.statements.pop()

    def visit_For(self, node):
        self.statements.append(node)
        self.check_target(node.target, "assigns")
        self.statements.pop()
        self.generic_visit(node)
        for name in ast.walk(node.target):
            if isinstance(name, ast.Name):
                self.bind(name.id, None)

    visit_AsyncFor = visit_For

    def visit_Raise(self, node):
        self.statements.append(node)
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id == "SystemExit":
            self.flag("raises SystemExit, which ends the kernel's run")
        self.statements.pop()
        self.generic_visit(node)

    def visit_target(self, target):
        """Visit the expressions inside an assignment target (subscripts, attribute owners)."""
        if isinstance(target, (ast.Attribute, ast.Subscript, ast.Starred, ast.Tuple, ast.List)):
            for child in ast.iter_child_nodes(target):
                if not isinstance(child, ast.expr_context):
                    self.visit(child)

    # expressions

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in ("__builtins__", "__import__"):
            self.flag(f"uses {node.id}")
        elif isinstance(node.ctx, ast.Store) and self.shadows(node.id):
            self.flag(f"binds the builtin name {node.id!r}")

    def visit_Attribute(self, node):
        root = self.root(node.value)
        path = self.path(node)
        if node.attr in _ESCAPE_ATTRS or node.attr in _MODULE_DUNDERS and root is not None:
            self.flag(f"uses {ast.unparse(node)}")
        elif root == _IPYTHON and node.attr not in _SAFE_IPYTHON_ATTRS and id(node) not in self.checked_commands:
            self.flag(f"uses the Jupyter kernel ({ast.unparse(node)})")
        elif root is not None and len(path) == 2 and path[0] == "sys" and path[1] in _SYS_ATTRS:
            self.flag(f"uses sys.{path[1]}")
        elif root is not None and node.attr in _HOOK_ATTRS:
            self.flag(f"uses {ast.unparse(node)}, which reaches the grader's call guard")
        elif root is not None and node.attr in _GC_REACHING and path[:1] == ("gc",):
            self.flag(f"uses {ast.unparse(node)}, which reaches the grader's objects")
        self.generic_visit(node)

    def visit_Compare(self, node):
        # `"google.colab" in sys.modules` (the setup cell's test) only reads: no module object leaves
        if all(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and all(
                self.path(c) == ("sys", "modules") and self.is_module("sys") for c in node.comparators):
            self.visit(node.left)
        else:
            self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and node.value in _ESCAPE_ATTRS | _MODULE_DUNDERS:
            self.flag(f"names {node.value}")

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        path = self.path(func)
        first_root = self.root(node.args[0]) if node.args else None
        if name in _CODE_RUNNERS and not self.scope_has(name):
            source = _literal_text(node.args[0]) if node.args else None
            if source is None:
                self.flag(f"{name}() of code the scan cannot read")
            else:
                inner = scan_source(source, dict(self.modules))
                if inner:
                    self.flag(f"{name}() of code that {inner[0].reason}")
        elif name in _PROCESS_ENDERS and not self.scope_has(name):
            self.flag(f"calls {name}(), which ends the kernel")
        elif name == "globals" and not self.scope_has(name) and id(node) not in self.read_only_calls:
            self.flag("uses globals()")
        elif name in ("setattr", "delattr") and first_root is not None:
            self.flag(f"calls {name} on {ast.unparse(node.args[0])}, part of a module")
        elif (name == "getattr" and node.args and self.path(node.args[0])[-1:] in {(m,) for m in _SENSITIVE_MODULES}
              and first_root is not None and len(node.args) > 1 and _literal_text(node.args[1]) is None):
            self.flag(f"getattr on {ast.unparse(node.args[0])} with a computed name")
        elif len(path) == 2 and path[0] in ("os", "posix") and self.is_module(path[0]) and _OS_CALLS.match(path[1]):
            self.flag(f"calls {path[0]}.{path[1]}")
        if name in _NAMESPACE_READERS or path[-1:] == ("pprint",):
            # print(globals()), sorted(globals()): the namespace is only read
            self.read_only_calls.update(id(a) for a in node.args if isinstance(a, ast.Call)
                                        and isinstance(a.func, ast.Name) and a.func.id == "globals")
        if isinstance(func, ast.Attribute) and func.attr in ("run_line_magic", "run_cell_magic", "system",
                                                               "getoutput") and self.root(func.value) == _IPYTHON:
            self.checked_commands.add(id(func))   # judged by check_magic, not as an attribute
            self.check_magic(func.attr, node.args)
        self.generic_visit(node)

    def check_magic(self, method: str, args) -> None:
        if method in ("system", "getoutput"):
            command = _literal_text(args[0]) if args else None
            if command is None or not _PIP_COMMAND.match(command):
                self.flag("runs a shell command")
            return
        magic = _literal_text(args[0]) if args else None
        argument = (_literal_text(args[1]) or "").strip() if len(args) > 1 else ""
        if method == "run_line_magic" and magic == "load_ext" and argument in _SAFE_EXTENSIONS:
            return
        if method == "run_line_magic" and magic == "config" and argument.startswith(_SAFE_CONFIG_PREFIXES):
            return
        if magic in ("system", "sx", "sh", "bash", "script"):
            self.flag(f"runs a shell command (%{magic})")
        elif magic in _PY_MAGICS:
            code = _literal_text(args[-1]) if len(args) > 1 else None
            inner = scan_source(code, dict(self.modules)) if code else []
            if inner:
                self.flag(f"%{magic} of code that {inner[0].reason}")
        elif method == "run_cell_magic" and magic not in _INERT_CELL_MAGICS:
            self.flag(f"a %%{magic} cell runs code the scan cannot check")
        elif method == "run_line_magic" and magic not in _SAFE_LINE_MAGICS:
            self.flag(f"runs the magic %{magic}")

    def scope_has(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)


def _parameters(arguments: ast.arguments) -> dict:
    """A function's parameters as a scope: local names, not modules."""
    return {a.arg: None for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                  arguments.vararg, arguments.kwarg] if a}


def _literal_text(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# -- neutralising --------------------------------------------------------------------------------

def neutralise(source: str, findings: list[Finding]) -> str:
    """``source`` with every flagged statement replaced by ``pass`` (same number of lines).

    A cell-magic cell (``%%time``) keeps its first line; the replaced statements keep their
    indentation, so the code around them still runs.
    """
    if not findings:
        return source
    lines = source.split("\n")
    magic_line = lines[0] if lines[0].lstrip().startswith("%%") else None
    body = lines[1:] if magic_line is not None else lines
    offset = 1 if magic_line is not None else 0
    if magic_line is not None and any(f.line == 1 for f in findings):
        return "\n".join(["# removed by the integrity check: " + line for line in lines])
    python = _python_text("\n".join(body)).split("\n")
    regions = sorted({(f.line - offset, f.end_line - offset) for f in findings})
    outermost = [r for r in regions if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in regions)]
    for start, end in outermost:
        indent = re.match(r"[ \t]*", python[start - 1]).group(0)
        python[start - 1] = f"{indent}pass  # removed by the integrity check"
        for i in range(start, end):
            python[i] = ""
    return "\n".join(([magic_line] if magic_line is not None else []) + python)


# -- notebooks -----------------------------------------------------------------------------------

def cell_label(cell, index: int) -> str:
    """How reports name a cell: its nbgrader grade_id, else its position."""
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return grade_id or f"cell {index + 1}"


def scan_notebook(nb, skip=lambda cell: False) -> list[dict]:
    """Scan the code cells of ``nb`` in order (``skip(cell)``: cells not to scan, e.g. locked ones;
    their imports still count).  Returns ``[{"index", "cell", "findings": [Finding, ...]}, ...]``
    for the cells with findings."""
    modules = dict.fromkeys(_KNOWN_MODULES, "module")
    flagged = []
    for index, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if skip(cell):
            scan_source(source, modules)   # only to learn the names it imports
            continue
        findings = scan_source(source, modules)
        if findings:
            flagged.append({"index": index, "cell": cell_label(cell, index), "findings": findings})
    return flagged


def report_entries(flagged: list[dict]) -> list[dict]:
    """The findings as JSON-ready dictionaries (one per flagged statement)."""
    return [{"cell": item["cell"], "line": f.line, "end_line": f.end_line, "code": f.code, "reason": f.reason}
            for item in flagged for f in item["findings"]]


def feedback_markdown(entries: list[dict]) -> str:
    """The note put at the top of a flagged student's graded notebook (and so their feedback)."""
    rows = "\n".join(f"| {e['cell']} | {e['line'] or ''} | `{e['code'].replace('|', '&#124;')[:80]}` | {e['reason']} |"
                     for e in entries)
    return ("## ⚠ Integrity check\n\n"
            "Before your notebook was graded, these statements were **removed** (replaced by `pass`; "
            "Python files handed in with it deleted) because they change the grading machinery, the "
            "kernel or the Python process rather than compute an answer. Your score is what the tests "
            "give your code without them. Your instructor sees this list.\n\n"
            "| cell | line | code | why |\n|---|---|---|---|\n" + rows + "\n")


# -- command line --------------------------------------------------------------------------------

def _report(root: Path, assignment: str | None) -> int:
    pattern = f"autograded/*/{assignment or '*'}/{REPORT_NAME}"
    reports = sorted(root.glob(pattern))
    if not reports:
        print(f"no {REPORT_NAME} under {root}/autograded: run `nbgrader autograde` first")
        return 1
    flagged = 0
    for path in reports:
        report = json.loads(path.read_text())
        entries = [(notebook, e) for notebook, found in report["notebooks"].items() for e in found]
        if not entries:
            continue
        flagged += 1
        print(f"{report['student']} / {report['assignment']}: {len(entries)} flagged statement(s)")
        for notebook, e in entries:
            where = e["cell"] if e["line"] == 0 else f"{notebook}.ipynb, {e['cell']}, line {e['line']}: {e['code']}"
            print(f"    {where}\n        {e['reason']}")
    print(f"{flagged} of {len(reports)} submissions flagged")
    return 0


def _scan_files(paths: list[str]) -> int:
    import nbformat
    any_flagged = False
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        entries = report_entries(scan_notebook(nb, skip=lambda c: c.metadata.get("nbgrader", {}).get("locked", False)))
        for e in entries:
            any_flagged = True
            print(f"{path}, {e['cell']}, line {e['line']}: {e['code']}\n    {e['reason']}")
    return 1 if any_flagged else 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m numbanet.grading.integrity",
                                     description="List submissions the autograder's integrity check flagged.")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="list flagged submissions from autograded/*/*/integrity.json")
    report.add_argument("root", nargs="?", default=".", help="the course root (default: .)")
    report.add_argument("--assignment", help="only this assignment")
    scan = commands.add_parser("scan", help="scan notebooks (cells marked locked are skipped); exit 1 if flagged")
    scan.add_argument("notebooks", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "report":
        return _report(Path(args.root), args.assignment)
    return _scan_files(args.notebooks)


if __name__ == "__main__":
    sys.exit(main())
