"""Exceptions raised by supermel (librosa's hierarchy, catchable as ``ValueError``)."""

from __future__ import annotations

__all__ = ["SupermelError", "ParameterError"]


class SupermelError(Exception):
    """Base class for every error supermel raises on purpose."""


class ParameterError(SupermelError, ValueError):
    """A parameter or an input is invalid; the message names the value and the fix."""
