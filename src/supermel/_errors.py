"""Exceptions raised by supermel (librosa's hierarchy, catchable as ``ValueError``)."""

from __future__ import annotations

__all__ = ["SupermelError", "ParameterError"]


class SupermelError(Exception):
    """Base class for every error supermel raises on purpose.

    Examples
    --------
    >>> import supermel
    >>> issubclass(supermel.ParameterError, supermel.SupermelError)
    True
    """


class ParameterError(SupermelError, ValueError):
    """A parameter or an input is invalid; the message names the value and the fix.

    A subclass of :class:`ValueError`, so ``except ValueError`` catches it too.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> try:
    ...     supermel.melspectrogram(y=np.array([0.0, np.nan], np.float32), sr=16000, n_fft=2)
    ... except supermel.ParameterError as e:
    ...     print(type(e).__name__, isinstance(e, ValueError))
    ParameterError True
    """
