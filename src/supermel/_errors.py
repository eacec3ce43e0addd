"""Exceptions raised by supermel (librosa's hierarchy, catchable as ``ValueError``)."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["SupermelError", "ParameterError"]


class SupermelError(Exception):
    """Base class for every error supermel raises on purpose."""


class ParameterError(SupermelError, ValueError):
    """A parameter or an input is invalid; the message names the value and the fix."""


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
