import os

# torch (the oracle, imported by most test files) uses OpenMP; with its default
# spin-waiting, its idle threads keep a core busy after every oracle call and slow
# the numbanet kernels that run next.  Set before torch starts its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# tests/cuda runs as its own pytest process with NUMBA_ENABLE_CUDASIM=1, set before numba is
# imported (the Makefile's test-sim).  The unit run skips that folder unless a real GPU is
# there (then its tests run on it) or the simulator was switched on for this process.
if not os.environ.get("NUMBA_ENABLE_CUDASIM") and not (
        os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")):
    collect_ignore = ["cuda"]

# Numba JIT compiles on first call; Hypothesis must not count that against a deadline.
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("full", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return np.dtype(request.param)
