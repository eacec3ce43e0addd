"""supermel: librosa-exact mel spectrograms on PyTorch, offline, streaming and on the GPU.

>>> import numpy as np, supermel
>>> y = np.zeros(16000, dtype=np.float32)
>>> supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, n_mels=80).shape
(80, 81)

The public names below are imported on first use (PEP 562), so ``import supermel``
and the command line's ``--version``/``--help`` do not pay for importing torch
and scipy; ``supermel.melspectrogram`` etc. behave as ordinary attributes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

from ._errors import ParameterError, SupermelError
from ._version import __version__

#: public name -> submodule that defines it
_EXPORTS: Dict[str, str] = {
    # filters and windows
    "mel_filters": "filters",
    "kaldi_mel_filters": "filters",
    "get_window": "filters",
    "hz_to_mel": "filters",
    "mel_to_hz": "filters",
    "mel_frequencies": "filters",
    "fft_frequencies": "filters",
    # librosa-compatible functions
    "stft": "functional",
    "spectrogram": "functional",
    "melspectrogram": "functional",
    "mfcc": "functional",
    "power_to_db": "functional",
    "amplitude_to_db": "functional",
    "db_to_power": "functional",
    "db_to_amplitude": "functional",
    # modules
    "Spectrogram": "modules",
    "MelScale": "modules",
    "MelSpectrogram": "modules",
    "MFCC": "modules",
    # the working-memory guard
    "set_memory_limit": "_limits",
    "get_memory_limit": "_limits",
    # streaming
    "StreamingMelSpectrogram": "streaming",
    "StreamPool": "pool",
    "PoolFrames": "pool",
    "PoolStep": "pool",
    # model front ends
    "frontend": "presets",
    "frontends": "presets",
    "wav2lip_mel_chunks": "presets",
    "Frontend": "presets",
    "FrontendConfig": "presets",
    "Wav2Lip": "presets",
    "Wav2LipConfig": "presets",
    "Whisper": "presets",
    "WhisperConfig": "presets",
    "LogMel": "presets",
    "LogMelConfig": "presets",
    "HifiGanConfig": "presets",
    "Nemo": "presets",
    "NemoConfig": "presets",
    "KaldiFbank": "presets",
    "KaldiFbankConfig": "presets",
    "StreamingFrontend": "presets",
    "Wav2LipChunker": "presets",
    # ONNX export (needs the `onnx` extra when called)
    "export_onnx": "onnx",
    "export_streaming_step_onnx": "onnx",
}

_SUBMODULES = ("audio", "filters", "functional", "modules", "streaming", "pool", "presets", "onnx", "bench", "cli", "integrations")
#: old module paths, kept for one release (importing them warns)
_DEPRECATED_SUBMODULES = ("kaldi", "streaming_presets")

__all__: List[str] = ["__version__", "ParameterError", "SupermelError", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name in _SUBMODULES or name in _DEPRECATED_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'supermel' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import audio, filters, functional, modules, presets, streaming  # noqa: F401
    from ._limits import get_memory_limit, set_memory_limit  # noqa: F401
    from .filters import fft_frequencies, get_window, hz_to_mel, kaldi_mel_filters, mel_filters, mel_frequencies, mel_to_hz  # noqa: F401
    from .functional import amplitude_to_db, db_to_amplitude, db_to_power, melspectrogram, mfcc, power_to_db, spectrogram, stft  # noqa: F401
    from .modules import MFCC, MelScale, MelSpectrogram, Spectrogram  # noqa: F401
    from .onnx import export_onnx, export_streaming_step_onnx  # noqa: F401
    from .presets import (  # noqa: F401
        Frontend,
        FrontendConfig,
        HifiGanConfig,
        KaldiFbank,
        KaldiFbankConfig,
        LogMel,
        LogMelConfig,
        Nemo,
        NemoConfig,
        Wav2Lip,
        Wav2LipConfig,
        Whisper,
        WhisperConfig,
        frontend,
        frontends,
        wav2lip_mel_chunks,
    )
    from .pool import PoolFrames, PoolStep, StreamPool  # noqa: F401
    from .streaming import StreamingMelSpectrogram  # noqa: F401
    from .presets import StreamingFrontend, Wav2LipChunker  # noqa: F401
