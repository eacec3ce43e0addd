"""Model front ends: the exact feature extraction of well-known speech models, offline and streaming.

``supermel.frontend(name, **overrides)`` returns a :class:`torch.nn.Module`;
``supermel.frontends()`` lists the names. One module per model family, each
holding its configuration, its module, its streaming specifics and its
registrations:

=================  ==========================================================
``base``           configurations, the :class:`Frontend` module, the registry
``streaming``      :class:`StreamingFrontend`, the generic streaming machinery
``wav2lip``        Wav2Lip, its per-video-frame windows, :class:`Wav2LipChunker`
``whisper``        OpenAI Whisper
``logmel``         HiFi-GAN, BigVGAN, VITS, Tacotron2, Vocos, F5-TTS, SpeechT5
``nemo``           NVIDIA NeMo (FastConformer, Parakeet, Canary)
``kaldi``          Kaldi framing and fbank, lhotse / sherpa-onnx, WeNet
``kaldi_models``   AST, SeamlessM4T / w2v-BERT 2.0, FunASR
=================  ==========================================================

The numbers follow ``docs/frontends.md`` (sources: each model's repository);
the tests (``tests/frontends/``) compare each preset with the original package
where it exists and with the librosa expression of the original code elsewhere.
"""

from __future__ import annotations

from .base import Frontend, FrontendConfig, MelConfig, frontend, frontends, preemphasis, preset_config, register, register_module
from .streaming import StreamingFrontend

# the families, in the order frontends() lists them (each registers its presets on import)
from .wav2lip import Wav2Lip, Wav2LipChunker, Wav2LipConfig, wav2lip_mel_chunks, wav2lip_window_ratio, wav2lip_window_start  # noqa: I001
from .whisper import Whisper, WhisperConfig
from .logmel import HifiGanConfig, LogMel, LogMelConfig
from .nemo import Nemo, NemoConfig
from .kaldi import FLOAT32_EPS, KaldiFbank, KaldiFbankConfig
from .kaldi_models import Ast, AstConfig, FunAsr, FunAsrConfig, SeamlessM4T, SeamlessM4TConfig, load_funasr_cmvn

__all__ = [
    "FrontendConfig",
    "MelConfig",
    "Wav2LipConfig",
    "WhisperConfig",
    "LogMelConfig",
    "HifiGanConfig",
    "NemoConfig",
    "KaldiFbankConfig",
    "AstConfig",
    "SeamlessM4TConfig",
    "FunAsrConfig",
    "Frontend",
    "Wav2Lip",
    "Whisper",
    "LogMel",
    "Nemo",
    "KaldiFbank",
    "Ast",
    "SeamlessM4T",
    "FunAsr",
    "load_funasr_cmvn",
    "frontend",
    "frontends",
    "preset_config",
    "register",
    "register_module",
    "preemphasis",
    "wav2lip_mel_chunks",
    "wav2lip_window_ratio",
    "wav2lip_window_start",
    "StreamingFrontend",
    "Wav2LipChunker",
    "FLOAT32_EPS",
]
