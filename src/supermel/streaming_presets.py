"""Deprecated alias: :class:`StreamingFrontend` is in :mod:`supermel.presets.streaming`,
:class:`Wav2LipChunker` in :mod:`supermel.presets.wav2lip`.

Deprecated since 0.1.0 (the family modules moved to :mod:`supermel.presets` during 0.1's
development): importing it warns; it will be removed in supermel 0.2.0.
"""

import warnings

from .presets.streaming import StreamingFrontend
from .presets.wav2lip import Wav2LipChunker

__all__ = ["StreamingFrontend", "Wav2LipChunker"]

warnings.warn(
    "supermel.streaming_presets is deprecated since 0.1.0 and will be removed in 0.2.0: use supermel.StreamingFrontend / "
    "supermel.Wav2LipChunker (supermel.presets)",
    DeprecationWarning,
    stacklevel=2,
)
