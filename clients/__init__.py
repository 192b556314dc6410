"""Tandem clients: a Python client for SessionService and the `tandem` command line.

The generated stubs live in `gen/` (not installed); when `tandem.session.v1` is not
importable, the repository's `gen/` is put on sys.path so `tandem` works from a checkout.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GEN_DIR = REPO_ROOT / "gen"


def _ensure_stubs_importable() -> None:
    try:
        found = importlib.util.find_spec("tandem.session.v1.session_pb2") is not None
    except ModuleNotFoundError:
        found = False
    if not found and GEN_DIR.is_dir() and str(GEN_DIR) not in sys.path:
        sys.path.insert(0, str(GEN_DIR))
        importlib.invalidate_caches()


_ensure_stubs_importable()
