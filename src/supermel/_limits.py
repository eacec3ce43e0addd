"""The working-memory guard: refuse a computation whose size is a parameter mistake.

``melspectrogram(n_fft=2**24)`` on one second of audio would build a 128 x 8M
float64 filterbank and frames of 16M samples: tens of GB, minutes of swapping,
then a raw ``MemoryError`` (or the kernel's OOM killer). Before allocating,
supermel estimates the working memory of a filterbank or of one call from the
shapes alone, and raises :class:`~supermel.ParameterError` naming the parameter
and the estimate when it exceeds the limit.

The limit is 8 GiB by default; ``SUPERMEL_MAX_MEMORY`` (bytes, or with a suffix
``K``/``M``/``G``/``T``, e.g. ``32G``; ``0`` or ``none`` for no limit) sets it for
a process, :func:`set_memory_limit` at run time.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ._errors import ParameterError

__all__ = ["DEFAULT_MEMORY_LIMIT", "get_memory_limit", "set_memory_limit", "check_memory", "format_bytes"]

#: The default limit on one computation's estimated working memory (8 GiB).
DEFAULT_MEMORY_LIMIT = 8 << 30

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse(text: str) -> Optional[int]:
    s = text.strip().upper().replace("IB", "").replace("B", "")
    if s in ("0", "NONE", "OFF", ""):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMGT]?)", s)
    if m is None:
        raise ParameterError(f"SUPERMEL_MAX_MEMORY={text!r} is not a size; use bytes or a number with K, M, G or T (e.g. 32G), or 'none'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


_limit: Optional[int] = _parse(os.environ["SUPERMEL_MAX_MEMORY"]) if "SUPERMEL_MAX_MEMORY" in os.environ else DEFAULT_MEMORY_LIMIT


def get_memory_limit() -> Optional[int]:
    """The current limit in bytes (``None``: no limit).

    Returns
    -------
    int or None
        Bytes: 8 GiB unless :func:`set_memory_limit` or the environment variable
        ``SUPERMEL_MAX_MEMORY`` (``32G``, ``none``) changed it.

    Examples
    --------
    >>> import supermel
    >>> previous = supermel.set_memory_limit(2**30)
    >>> supermel.get_memory_limit()
    1073741824
    >>> _ = supermel.set_memory_limit(previous)
    """
    return _limit


def set_memory_limit(nbytes: Optional[int]) -> Optional[int]:
    """Set the limit on one computation's estimated working memory; return the previous one.

    Parameters
    ----------
    nbytes : int > 0 or None
        Bytes; ``None`` turns the guard off.

    Returns
    -------
    int or None
        The previous limit.

    Raises
    ------
    supermel.ParameterError
        ``nbytes`` neither a positive integer nor ``None``.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> previous = supermel.set_memory_limit(10**6)
    >>> try:
    ...     supermel.melspectrogram(y=np.zeros(16000, np.float32), sr=16000, n_fft=8192)
    ... except supermel.ParameterError as e:
    ...     print("refused")
    refused
    >>> _ = supermel.set_memory_limit(previous)
    """
    global _limit
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0):
        raise ParameterError(f"nbytes={nbytes!r} must be a positive number of bytes, or None for no limit")
    previous, _limit = _limit, nbytes
    return previous


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_memory(estimate: float, *, what: str, fix: str) -> None:
    """Raise :class:`ParameterError` when ``estimate`` bytes exceed the limit.

    ``what`` names the parameters and shapes (``"n_fft=16777216 with n_mels=128"``),
    ``fix`` says what to change.
    """
    if _limit is not None and estimate > _limit:
        raise ParameterError(
            f"{what} needs about {format_bytes(estimate)} of working memory, above the limit of "
            f"{format_bytes(_limit)}; {fix}, or raise the limit with supermel.set_memory_limit() "
            "or SUPERMEL_MAX_MEMORY"
        )
