"""Exceptions raised by supermel (librosa's hierarchy, catchable as ``ValueError``).

Catching librosa's class
------------------------
``librosa.ParameterError`` is not a ``ValueError`` (it derives from ``librosa.util.exceptions.
LibrosaError``, an ``Exception``), so code ported from librosa that says
``except librosa.ParameterError`` would miss supermel's errors. An ``except`` clause matches by
real subclassing only (``PyErr_GivenExceptionMatches`` walks the MRO; ``__subclasscheck__`` and
``ABC.register`` are ignored there), so a registration cannot help. supermel's
:class:`ParameterError` therefore *subclasses* librosa's when librosa is installed: this module
imports ``librosa.util.exceptions`` (a few milliseconds: librosa loads its submodules lazily, so
neither numpy's nor scipy's heavy parts come with it). Without librosa it is a ``ValueError`` only.
Either way ``except ValueError`` and ``except supermel.ParameterError`` catch it, and with librosa
installed ``except librosa.ParameterError`` does too (tests/test_host_edges.py).
"""

from __future__ import annotations

import difflib
import importlib.util
from typing import Iterable, Optional, Tuple, Type

__all__ = ["SupermelError", "ParameterError"]


def _librosa_parameter_error() -> Optional[Type[Exception]]:
    """librosa's ``ParameterError`` when librosa is importable, else ``None``."""
    try:
        if importlib.util.find_spec("librosa") is None:
            return None
        from librosa.util.exceptions import ParameterError as librosa_error
    except Exception:  # a broken or partial librosa install: supermel works without it
        return None
    return librosa_error


_LIBROSA_BASES: Tuple[Type[Exception], ...] = tuple(b for b in (_librosa_parameter_error(),) if b is not None)


class SupermelError(Exception):
    """Base class for every error supermel raises on purpose.

    Examples
    --------
    >>> import supermel
    >>> issubclass(supermel.ParameterError, supermel.SupermelError)
    True
    """


class ParameterError(SupermelError, ValueError, *_LIBROSA_BASES):  # type: ignore[misc]
    """A parameter or an input is invalid; the message names the value and the fix.

    A ``ValueError``; also a ``librosa.ParameterError`` when librosa is installed (module docs).

    Examples
    --------
    >>> import numpy as np, supermel
    >>> try:
    ...     supermel.melspectrogram(y=np.array([0.0, np.nan], np.float32), sr=16000, n_fft=2)
    ... except supermel.ParameterError as e:
    ...     print(type(e).__name__, isinstance(e, ValueError))
    ParameterError True
    """


def unknown_keywords(
    unknown: Iterable[str], accepted: Iterable[str], *, where: str, device_hint: str = "", noun: str = "keyword"
) -> "ParameterError":
    """The error for keywords a function does not take, with the close matches among ``accepted``.

    ``nfft=512`` gives "did you mean n_fft?" (difflib's close matches over every accepted
    keyword, not only those of one group); ``device=`` gets ``device_hint`` of its own when given.
    """
    unknown = sorted(unknown)
    accepted = sorted(set(accepted))
    parts = []
    for name in unknown:
        if name == "device" and device_hint:
            parts.append(f"device: {device_hint}")
            continue
        close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.6)
        if not close:  # nfft -> n_fft, winlength -> win_length: compare without underscores too
            bare = {a.replace("_", ""): a for a in accepted}
            close = [bare[b] for b in difflib.get_close_matches(name.replace("_", ""), list(bare), n=3, cutoff=0.75)]
        parts.append(f"{name}: did you mean {' or '.join(close)}?" if close else f"{name}: no keyword of that name")
    return ParameterError(f"{where}: unknown {noun}(s) {unknown} ({'; '.join(parts)}); the {noun}s are {accepted}")
