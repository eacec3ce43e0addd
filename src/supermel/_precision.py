"""Full float32 matrix products whatever the host program's TF32 setting.

``torch.set_float32_matmul_precision("high")`` (common in training scripts) lets
cuBLAS and oneDNN compute float32 products in TF32/bfloat16, three decimal digits
short of librosa's numbers. Every product of the package runs inside
:data:`full_fp32_matmuls`.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Tuple

import torch

__all__ = ["full_fp32_matmuls"]

_GET_FP32 = getattr(torch._C, "_get_fp32_precision_getter", None)  # torch >= 2.9: per-backend flags
_SET_FP32 = getattr(torch._C, "_set_fp32_precision_setter", None)
_MATMUL_FLAGS = (("cuda", "matmul"), ("mkldnn", "matmul"))
_FULL = ("none", "ieee")  # full float32 precision ("none": torch's default)


class _FullFp32Matmuls:
    """``with full_fp32_matmuls:`` float32 matrix products in full float32 precision.

    A host program's ``torch.set_float32_matmul_precision("high")`` (or
    ``torch.backends.cuda.matmul.allow_tf32 = True``, or the per-backend
    ``fp32_precision`` flags) lets cuBLAS (and oneDNN on CPUs that have it)
    compute float32 products in TF32/bfloat16: the DFT and filterbank products
    then lose about three decimal digits (relative error ~2e-4 instead of
    ~1e-7). Inside this context the precision is ``"highest"``; on leaving it
    the caller's settings are put back (the legacy setting and the CUDA and
    oneDNN matmul flags of torch >= 2.9; a flag that inherited its value from
    ``torch.backends.fp32_precision`` comes back set to that value).

    The flags are process-wide, so the context is too: re-entrant and
    thread-safe (a count under a lock; the first entry saves and sets, the last
    exit restores). While any thread is inside, every float32 matmul of the
    process runs in full precision (slower, never less exact). When the
    settings already are full precision (torch's default) entering and leaving
    only read them. Not entered while ``torch.compile`` traces (a compiled
    graph follows the settings in force when it runs) and not used by the
    numpy executor (numpy has no reduced-precision products).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Optional[Tuple[Optional[str], Optional[Tuple[str, ...]]]] = None

    def __enter__(self) -> "_FullFp32Matmuls":
        with self._lock:
            if self._depth == 0:
                self._saved = _force_full_fp32()
            self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                saved, self._saved = self._saved, None
                _restore_fp32(saved)


def _force_full_fp32() -> Optional[Tuple[Optional[str], Optional[Tuple[str, ...]]]]:
    """Set full-precision float32 matmuls; return what to restore (``None``: nothing was changed)."""
    try:
        legacy: Optional[str] = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and per-backend APIs mixed: torch refuses to summarise them
        legacy = None
    if _GET_FP32 is None:
        flags = None
        if legacy == "highest":
            return None
    else:
        flags = (_GET_FP32("cuda", "matmul"), _GET_FP32("mkldnn", "matmul"))  # as _MATMUL_FLAGS
        if legacy == "highest" and flags[0] in _FULL and flags[1] in _FULL:
            return None
    torch.set_float32_matmul_precision("highest")
    return legacy, flags


def _restore_fp32(saved: Tuple[Optional[str], Optional[Tuple[str, ...]]]) -> None:
    legacy, flags = saved
    if legacy is not None:
        torch.set_float32_matmul_precision(legacy)
    if flags is not None and _SET_FP32 is not None:
        for (b, op), f in zip(_MATMUL_FLAGS, flags):
            _SET_FP32(b, op, f)


#: The context manager (one per process; see :class:`_FullFp32Matmuls`).
full_fp32_matmuls = _FullFp32Matmuls()
