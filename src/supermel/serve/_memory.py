"""Giving freed heap memory back to the system (``malloc_trim``), for a server under connection churn.

Each connection allocates a few hundred kilobytes in small blocks (websockets' buffers
and frames, the resampler, numpy temporaries) that are freed when it closes; glibc's
allocator keeps the freed blocks in its heap, fragmented between live ones, and only
returns the top of the heap by itself. Measured on ``supermel serve`` (benchmarks/serve.py
``--churn``): +60-90 MB of resident memory held after the first thousand connections,
all of it returned by one ``malloc_trim(0)``, which also releases free pages in the
middle of the heap. :func:`malloc_trim` is a no-op (``False``) where the C library has
no ``malloc_trim`` (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any, Optional

__all__ = ["malloc_trim"]

_TRIM: Any = None
_LOOKED = False


def _find() -> Optional[Any]:
    global _TRIM, _LOOKED
    if not _LOOKED:
        _LOOKED = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                fn = libc.malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _TRIM = fn
            except (OSError, AttributeError):
                _TRIM = None
    return _TRIM


def malloc_trim() -> bool:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim(0)``); whether it could run."""
    fn = _find()
    if fn is None:
        return False
    fn(0)
    return True
