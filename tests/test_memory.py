"""numbanet._memory: glibc malloc thresholds set at import, unless the user says otherwise."""
import os
import subprocess
import sys

import pytest

import numbanet as nb

PROBE = "import numbanet as nb; print(nb.malloc_state())"


def state_with(**env) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("NUMBANET_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                         timeout=120, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are glibc's (Linux)")
def test_import_tunes_malloc_on_linux():
    assert state_with() == "tuned"


def test_the_user_can_keep_the_default_allocator():
    assert state_with(NUMBANET_MALLOC="default") == "default (NUMBANET_MALLOC)"
    assert state_with(MALLOC_TRIM_THRESHOLD_="1000000") == "default (the user's glibc settings)"


def test_state_is_reported():
    assert nb.malloc_state() == "tuned" or nb.malloc_state().startswith("default (")
