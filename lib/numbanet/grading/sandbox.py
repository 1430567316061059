"""The sandbox that autograde runs each student's kernel in: bubblewrap (Debian's ``bubblewrap``).

What the student's code sees inside (``Sandbox.command``):

* a root file system built from read-only binds of exactly what the kernel's Python needs: the
  system directories (``/usr``, ``/bin``, ``/lib*``), a few files of ``/etc`` (the loader's cache,
  ``passwd``, ...), the interpreter's prefixes and every entry of its ``sys.path`` (so the
  installed numbanet, numpy, ipykernel).  Nothing else: not the course folder (hidden tests,
  ``solutions/``, the gradebook, other students' submissions), not the instructor's home;
* one private read-write folder (the kernel's working directory, a copy of the submission's
  folder, and the ``outbox`` that :func:`numbanet.grading.check` writes the student's results to),
  and private ``/tmp`` and home directories on size-limited tmpfs, gone when the kernel exits;
* no network (its own empty network namespace; the kernel talks to nbgrader over Unix sockets in
  the private folder), its own process, IPC and hostname namespaces, no capabilities;
* resource limits (``prlimit``): address space, CPU seconds, processes, file size, no core dumps.
  A fork bomb stops at ``Sandbox.processes``; a memory bomb gets ``MemoryError``.

Run as root (a container, CI), bubblewrap sets up the mounts and ``setpriv`` then drops to
``Sandbox.uid`` (nobody) inside, so that root's files are not the student's and the process limit
applies (the kernel exempts root from it).  Run as an ordinary user, bubblewrap uses an
unprivileged user namespace and the student's code runs with the instructor's uid but sees only
the binds above; the process limit counts the sandbox's own processes.

Where bubblewrap is missing or cannot create namespaces, :meth:`Sandbox.check` refuses to run
student code unless the instructor passes ``--Sandbox.unsafe=True``.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Dict, Instance, Integer, Unicode
from traitlets.config import LoggingConfigurable

__all__ = ["Sandbox", "SandboxUnavailable", "SandboxedKernelManager", "seed_numba_cache"]

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group", "localtime",
              "alternatives", "fonts", "mime.types")
# Variables of the grader's environment that reach the kernel; everything else is dropped.
_PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "SOURCE_DATE_EPOCH", "PYTHONHASHSEED", "MPLBACKEND")
_PASSED_ENV_PREFIXES = ("LC_", "NBGRADER_", "NUMBA_", "NUMBANET_", "OMP_", "OPENBLAS_", "MKL_", "JPY_SESSION")
_GiB = 1 << 30


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here, and unsafe grading was not asked for."""


class Sandbox(LoggingConfigurable):
    """Where and how students' kernels run during autograde (configured as ``c.Sandbox.*``)."""

    unsafe = Bool(False, help="Run students' kernels WITHOUT the sandbox, with your permissions, where bubblewrap "
                              "is unavailable (the verdicts are still computed outside the kernel). Not "
                              "recommended: student code can then read the hidden tests and change your "
                              "files.").tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    memory_limit = Integer(4 * _GiB, help="Address space per process (RLIMIT_AS), bytes.").tag(config=True)
    cpu_time_limit = Integer(1200, help="CPU seconds per process (RLIMIT_CPU); a kernel past it is killed "
                                        "and restarted like a crashed one.").tag(config=True)
    processes = Integer(256, help="Processes and threads (RLIMIT_NPROC).").tag(config=True)
    file_size_limit = Integer(_GiB, help="Largest file the kernel may write (RLIMIT_FSIZE), bytes.").tag(config=True)
    tmp_size = Integer(512 << 20, help="Size of the kernel's private /tmp (a tmpfs holding its home), "
                                       "bytes.").tag(config=True)
    uid = Integer(65534, help="When grading as root: the uid (and gid) student code runs as.").tag(config=True)

    def check(self) -> bool:
        """True if kernels will be sandboxed; False (with a warning) if unsafe grading was asked for;
        raises :class:`SandboxUnavailable` otherwise."""
        problem = _bwrap_problem(self.bwrap)
        if problem is None:
            return True
        if self.unsafe:
            self.log.warning("UNSAFE GRADING: %s; students' kernels run unsandboxed, with your permissions "
                             "(--Sandbox.unsafe=True)", problem)
            return False
        raise SandboxUnavailable(
            f"{problem}: refusing to run students' code unsandboxed. Install bubblewrap "
            "(Debian/Ubuntu: apt-get install bubblewrap), or grade inside a container (solutions/README.md, "
            "'Security'); --Sandbox.unsafe=True grades without it (student code then runs with your permissions)")

    def command(self, argv: list, writable: tuple, cwd: str, env: dict, hidden: tuple = ()) -> list:
        """``argv`` wrapped in bubblewrap and prlimit: ``writable`` are the private read-write
        folders (each its own mount, so that the kernel cannot replace one by a symbolic link),
        ``cwd`` the working directory, ``env`` the kernel's environment (filtered), ``hidden``
        folders that no bind may contain (the course folder)."""
        as_root = os.geteuid() == 0
        args = [self.bwrap, "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-net",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--clearenv"]
        if as_root:   # mounts as root, then setpriv drops to an unprivileged uid inside
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--disable-userns"]
        binds = _python_paths(argv[0])
        for path in binds:
            for protected in hidden:
                if _contains(path, protected):
                    raise SandboxUnavailable(
                        f"the kernel's Python needs {path}, which contains {protected}: the student's code "
                        "would see it. Install numbanet and the kernel's environment outside the course folder")
        made = set()
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for name in _ETC_FILES:
            if os.path.exists(os.path.join("/etc", name)):
                args += _parents(os.path.join("/etc", name), made)
                args += ["--ro-bind", os.path.join("/etc", name), os.path.join("/etc", name)]
        home = "/tmp/home"
        args += ["--dev", "/dev", "--proc", "/proc", "--size", str(self.tmp_size), "--perms", "1777",
                 "--tmpfs", "/tmp", "--perms", "1777", "--dir", home, "--size", str(self.tmp_size),
                 "--perms", "1777", "--tmpfs", "/dev/shm"]
        made.update(("/tmp", "/dev", "/dev/shm"))
        # after the private /tmp: an environment that lives under /tmp (a CI clone) stays visible
        for path in binds:
            args += _parents(path, made) + ["--ro-bind", path, path]
        for folder in writable:
            args += _parents(folder, made) + ["--bind", folder, folder]
        args += ["--chdir", cwd]
        inner = {key: value for key, value in env.items()
                 if key in _PASSED_ENV or key.startswith(_PASSED_ENV_PREFIXES)}
        inner.update(HOME=home, TMPDIR="/tmp", MALLOC_ARENA_MAX="2", PYTHONNOUSERSITE="1")
        for key, value in sorted(inner.items()):
            args += ["--setenv", key, value]
        args.append("--")
        if as_root:
            args += ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--no-new-privs",
                     "--inh-caps=-all", "--bounding-set=-all", "--"]
        args += ["prlimit", f"--as={self.memory_limit}", f"--cpu={self.cpu_time_limit}",
                 f"--nproc={self.processes}", f"--fsize={self.file_size_limit}", "--core=0", "--"]
        return args + list(argv)

    def own(self, *paths: str) -> None:
        """Hand ``paths`` (recursively) to the sandbox's uid, when grading as root."""
        if os.geteuid() != 0:
            return
        for top in paths:
            for root, dirs, files in os.walk(top):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, self.uid, self.uid)


def seed_numba_cache(cache: str) -> None:
    """Copy numbanet's compiled kernels (Numba's ``__pycache__`` next to each source file) into
    ``cache``, laid out as Numba reads ``NUMBA_CACHE_DIR``.  The sandboxed kernel cannot write next
    to the read-only sources, so without a writable cache it compiles everything again (15 s and
    more), and a cache shared between students would let one student's kernel plant code in the
    next one's: each kernel gets its own copy."""
    import importlib.util
    from numba.core.caching import _CacheLocator   # its get_suitable_cache_subpath: the NUMBA_CACHE_DIR layout
    os.makedirs(cache, exist_ok=True)
    package = importlib.util.find_spec("numbanet").submodule_search_locations[0]
    for root, _, files in os.walk(package):
        compiled = [name for name in files if name.endswith((".nbi", ".nbc"))]
        if os.path.basename(root) != "__pycache__" or not compiled:
            continue
        source_folder = os.path.dirname(root)
        target = os.path.join(cache, _CacheLocator.get_suitable_cache_subpath(
            os.path.join(source_folder, "_.py")))
        os.makedirs(target, exist_ok=True)
        for name in compiled:
            shutil.copy2(os.path.join(root, name), os.path.join(target, name))


def _contains(path: str, protected: str) -> bool:
    """Whether binding ``path`` would show ``protected`` (it is ``protected`` or a folder above it)."""
    path, protected = os.path.realpath(path), os.path.realpath(protected)
    return protected == path or protected.startswith(path.rstrip(os.sep) + os.sep)


def _parents(path: str, made: set) -> list:
    """bubblewrap creates missing mount points with mode 0700; make each parent 0755 first."""
    args = []
    parent = os.path.dirname(path)
    chain = []
    while parent not in ("/", "") and parent not in made:
        chain.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(chain):
        made.add(folder)
        args += ["--perms", "0755", "--dir", folder]
    return args


@functools.lru_cache(maxsize=None)
def _python_paths(python: str) -> tuple:
    """What the kernel's interpreter reads: its prefixes, its executable's folder, its sys.path and numbanet."""
    probe = ("import importlib.util, json, os, sys\n"
             "spec = importlib.util.find_spec('numbanet')\n"
             "package = [os.path.dirname(p) for p in (spec.submodule_search_locations or [])] if spec else []\n"
             "print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,\n"
             "                  os.path.dirname(os.path.realpath(sys.executable)), *sys.path, *package]))")
    # the kernel's environment has no PYTHONPATH and no user site (Sandbox.command): probe with the same
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONNOUSERSITE": "1"}
    found = json.loads(subprocess.run([python, "-c", probe], capture_output=True, check=True, text=True,
                                      cwd="/", env=env).stdout)
    found.append(os.path.dirname(os.path.abspath(shutil.which(python) or python)))
    paths = sorted({os.path.realpath(p) for p in found if p and os.path.exists(p)})
    # a path inside another bound path is already visible
    return tuple(p for p in paths if not any(q != p and _contains(q, p) for q in paths))


@functools.lru_cache(maxsize=None)
def _bwrap_problem(bwrap: str):
    """None if bubblewrap works here, else what is wrong."""
    if shutil.which(bwrap) is None:
        return f"bubblewrap ({bwrap}) is not installed"
    trial = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-ipc", "--unshare-pid",
             "--unshare-net", "--die-with-parent"] + ([] if os.geteuid() == 0 else ["--unshare-user"]) + ["true"]
    done = subprocess.run(trial, capture_output=True, text=True)
    if done.returncode != 0:
        return f"bubblewrap cannot create its namespaces here ({done.stderr.strip() or done.returncode})"
    for tool in ("prlimit",) + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    return None


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs inside :class:`Sandbox` (or unsandboxed if ``sandbox`` is None).

    ``folder`` holds the sandbox's private folders, each bound read-write into it on its own:
    ``run`` (the connection file and the ZeroMQ sockets: transport ``ipc``, Unix sockets, since the
    sandbox has no network), ``outbox`` (the student's results) and ``work`` (``work/cwd`` is the
    kernel's working directory).  ``kernel_env`` is added to the kernel's environment.  Interrupts
    go as messages on the control channel: the process nbgrader started is bubblewrap, not the
    kernel.
    """

    sandbox = Instance(Sandbox, allow_none=True)
    folder = Unicode()
    hidden = Instance(tuple, ())
    kernel_env = Dict()

    def __init__(self, **kwargs):
        import uuid
        run = os.path.join(kwargs["folder"], "run")
        os.makedirs(run, exist_ok=True)
        name = uuid.uuid4().hex[:12]   # a fresh name per kernel: nothing a previous kernel left can be in its way
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("ip", os.path.join(run, name))
        kwargs.setdefault("connection_file", os.path.join(run, f"kernel-{name}.json"))
        super().__init__(**kwargs)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        writable = tuple(os.path.join(self.folder, name) for name in ("run", "outbox", "work"))
        cwd = os.path.join(self.folder, "work", "cwd")
        env = {**(kw.get("env") or os.environ), **self.kernel_env}
        if self.sandbox is not None:
            self.sandbox.own(*writable)
            kernel_cmd = self.sandbox.command(kernel_cmd, writable, cwd, env, self.hidden)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        kw.update(env=env, cwd=cwd, stdout=subprocess.DEVNULL)   # ipykernel's banner; errors go to stderr
        await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_interrupt_kernel(self):
        msg = self.session.msg("interrupt_request", content={})
        self._connect_control_socket()
        self.session.send(self._control_socket, msg)

    interrupt_kernel = _async_interrupt_kernel
