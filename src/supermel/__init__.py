"""supermel: librosa-exact mel spectrograms on PyTorch, offline, streaming and on the GPU.

>>> import numpy as np, supermel
>>> y = np.zeros(16000, dtype=np.float32)
>>> supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, n_mels=80).shape
(80, 81)
"""

from ._errors import ParameterError, SupermelError
from ._version import __version__
from .filters import fft_frequencies, get_window, hz_to_mel, mel_filters, mel_frequencies, mel_to_hz
from .functional import (
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    melspectrogram,
    mfcc,
    power_to_db,
    spectrogram,
    stft,
)
from .modules import MFCC, MelScale, MelSpectrogram, Spectrogram
from .streaming import StreamingMelSpectrogram

__all__ = [
    "__version__",
    "ParameterError",
    "SupermelError",
    "mel_filters",
    "get_window",
    "hz_to_mel",
    "mel_to_hz",
    "mel_frequencies",
    "fft_frequencies",
    "stft",
    "spectrogram",
    "melspectrogram",
    "mfcc",
    "power_to_db",
    "amplitude_to_db",
    "db_to_power",
    "db_to_amplitude",
    "Spectrogram",
    "MelScale",
    "MelSpectrogram",
    "MFCC",
    "StreamingMelSpectrogram",
]

# Model front ends (issue 4).
from . import kaldi as kaldi  # noqa: E402
from .presets import (  # noqa: E402
    Frontend,
    FrontendConfig,
    KaldiFbank,
    KaldiFbankConfig,
    LogMel,
    LogMelConfig,
    HifiGanConfig,
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
from .filters import kaldi_mel_filters  # noqa: E402

__all__ += [
    "frontend",
    "frontends",
    "wav2lip_mel_chunks",
    "kaldi_mel_filters",
    "Frontend",
    "FrontendConfig",
    "Wav2Lip",
    "Wav2LipConfig",
    "Whisper",
    "WhisperConfig",
    "LogMel",
    "LogMelConfig",
    "HifiGanConfig",
    "Nemo",
    "NemoConfig",
    "KaldiFbank",
    "KaldiFbankConfig",
]
