"""Deprecated alias of the Kaldi framing in :mod:`supermel.presets.kaldi`.

Deprecated since 0.1.0 (the family modules moved to :mod:`supermel.presets` during 0.1's
development): importing it warns; it will be removed in supermel 0.2.0.
"""

import warnings

from .presets.kaldi import (  # noqa: F401
    FLOAT32_EPS,
    WINDOW_TYPES,
    extract_frame_range,
    extract_frames,
    first_sample_of_frame,
    frames_ready,
    kaldi_window,
    log_energy,
    num_frames,
    process_frames,
    window_sizes,
)

__all__ = [
    "WINDOW_TYPES",
    "kaldi_window",
    "window_sizes",
    "num_frames",
    "first_sample_of_frame",
    "frames_ready",
    "extract_frames",
    "extract_frame_range",
    "process_frames",
    "log_energy",
    "FLOAT32_EPS",
]

warnings.warn(
    "supermel.kaldi is deprecated since 0.1.0 and will be removed in 0.2.0: import from supermel.presets.kaldi",
    DeprecationWarning,
    stacklevel=2,
)
