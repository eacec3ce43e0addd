"""Deprecated alias: :class:`StreamingFrontend` is in :mod:`supermel.presets.streaming`,
:class:`Wav2LipChunker` in :mod:`supermel.presets.wav2lip`.

Kept for one release: importing it warns; it will be removed in supermel 0.3.
"""

import warnings

from .presets.streaming import StreamingFrontend
from .presets.wav2lip import Wav2LipChunker

__all__ = ["StreamingFrontend", "Wav2LipChunker"]

warnings.warn(
    "supermel.streaming_presets is deprecated and will be removed in 0.3: use supermel.StreamingFrontend / "
    "supermel.Wav2LipChunker (supermel.presets)",
    DeprecationWarning,
    stacklevel=2,
)
