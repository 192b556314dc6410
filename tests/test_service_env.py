"""The thread-pool defaults `services/__init__.py` sets before any model or NumPy loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clients import REPO_ROOT

# A fresh interpreter, as `python -m services NAME` is: the package first, then NumPy.
_PROBE = """
import ctypes, os, services, numpy
maps = open('/proc/self/maps').read().splitlines() if os.path.exists('/proc/self/maps') else []  # Linux
libs = [line.split()[-1] for line in maps if 'openblas' in line.rsplit('/', 1)[-1]]
names = ('scipy_openblas_get_num_threads64_', 'scipy_openblas_get_num_threads', 'openblas_get_num_threads64_',
         'openblas_get_num_threads')
getter = next((g for name in names for lib in libs if (g := getattr(ctypes.CDLL(lib), name, None))), None)
print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENBLAS_NUM_THREADS'], getter() if getter else 'none')
"""


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO_ROOT, env={**clean, **env}, text=True,
                         capture_output=True, check=True, timeout=60)
    return out.stdout.split()


def test_services_default_to_passive_openmp_and_one_openblas_thread():
    policy, variable, threads = _probe()
    assert (policy, variable) == ("PASSIVE", "1")
    if threads == "none":
        pytest.skip("NumPy here does not link OpenBLAS (or no /proc to find it)")
    assert threads == "1"  # OpenBLAS read it: its threads would otherwise spin beside Whisper's


def test_explicit_settings_win():
    policy, variable, threads = _probe(OMP_WAIT_POLICY="ACTIVE", OPENBLAS_NUM_THREADS="2")
    assert (policy, variable) == ("ACTIVE", "2")
    if threads != "none" and (os.cpu_count() or 1) >= 2:
        assert threads == "2"
