"""The kernels' on-disk cache notices an edit to a file a kernel compiles in (``kernels/_cache.py``)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numbanet

RUN = r"""
import numpy as np, numbanet as nb
from numbanet.kernels.cpu import activation
y = nb.nn.ReLU()(np.array([-1.0, 3.0]))
kernel = activation._KERNELS["relu"][0]
print(y[1], kernel.stats.cache_hits.get(kernel.signatures[0], 0) if kernel.signatures else "?")
"""


def run(package_root: Path, cache: Path) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(package_root), "NUMBA_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    value, hits = out.stdout.split()
    return value, hits


def test_editing_formulas_recompiles_the_kernels_that_use_them(tmp_path):
    """A copy of the package: ReLU is compiled and cached, loaded from the cache unchanged, then
    ``formulas.relu`` (a file other than the kernel's) is edited and the next run must use the edit."""
    root = tmp_path / "site"
    shutil.copytree(Path(numbanet.__file__).parent, root / "numbanet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    assert run(root, cache) == ("3.0", "0")   # compiled
    assert run(root, cache) == ("3.0", "1")   # loaded from the cache
    formulas = root / "numbanet" / "kernels" / "formulas.py"
    text = formulas.read_text()
    edited = text.replace('    return 0.0 if v <= 0.0 else v\n', '    return 0.0 if v <= 0.0 else 2.0 * v\n', 1)
    assert edited != text
    formulas.write_text(edited)
    assert run(root, cache) == ("6.0", "0")   # the edit is compiled in, not the stale kernel loaded
