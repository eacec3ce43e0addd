"""Log-mel front ends of vocoders and TTS models: HiFi-GAN, BigVGAN, VITS, Tacotron2, Vocos, F5-TTS, SpeechT5.

One configuration (:class:`LogMelConfig`, and :class:`HifiGanConfig` for the
HiFi-GAN framing: reflect padding of ``(n_fft - hop) / 2``, ``center=False``,
``sqrt(P + eps)``) and one module, :class:`LogMel`: ``log(max(M, log_floor))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import Frontend, MelConfig, _Checker, _floored_log, register, register_module

__all__ = ["LogMelConfig", "HifiGanConfig", "LogMel"]


@dataclass(frozen=True)
class LogMelConfig(MelConfig):
    """A mel spectrogram followed by a floored logarithm: ``log(max(M, log_floor))``.

    ``log`` is "ln" or "log10"; ``time_major`` returns ``(..., T, n_mels)``.
    Used by Tacotron2, Vocos, F5-TTS and SpeechT5 (and, through
    :class:`HifiGanConfig`, HiFi-GAN, BigVGAN and VITS).

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("tacotron2").config
    >>> cfg.sr, cfg.n_fft, cfg.hop_length, cfg.n_mels
    (22050, 1024, 256, 80)
    """

    name: str = "tacotron2"
    sr: float = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: Optional[int] = 1024
    pad_mode: str = "reflect"
    power: float = 1.0
    n_mels: int = 80
    fmax: Optional[float] = 8000.0
    log: str = "ln"
    log_floor: float = 1e-5
    time_major: bool = False

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.choice("log", ("ln", "log10"))
        c.real("log_floor", lo=0.0, lo_open=True)
        c.boolean("time_major")


@dataclass(frozen=True)
class HifiGanConfig(LogMelConfig):
    """HiFi-GAN / BigVGAN / VITS (jik876/hifi-gan and NVIDIA/BigVGAN ``meldataset.py`` ``mel_spectrogram``).

    Reflect padding of ``(n_fft - hop_length) // 2`` on each side (``pad=None``),
    an uncentred STFT, ``sqrt(re^2 + im^2 + mag_eps)`` (1e-9; VITS 1e-6),
    Slaney mels, ``ln(max(M, 1e-5))``. ``floor(L / hop_length)`` frames.

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("bigvgan-24k-100").config
    >>> type(cfg).__name__, cfg.sr, cfg.n_mels, cfg.fmax
    ('HifiGanConfig', 24000, 100, 12000.0)
    """

    name: str = "hifigan-22k"
    center: bool = False
    mag_eps: float = 1e-9

    @property
    def effective_pad(self) -> int:
        if self.pad is not None:
            return int(self.pad)
        return self.n_fft // 2 if self.center else (self.n_fft - self.hop_length) // 2


class LogMel(Frontend):
    """``log(max(M, log_floor))`` of a mel spectrogram (see :class:`LogMelConfig`, :class:`HifiGanConfig`).

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> fe = supermel.frontend("hifigan-22k")
    >>> fe(np.zeros(22050, np.float32)).shape
    (80, 86)
    """

    config_class = LogMelConfig
    config: LogMelConfig

    @property
    def time_axis(self) -> int:
        return -2 if self.config.time_major else -1

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.config
        out = _floored_log(mel, c.log_floor, torch.log if c.log == "ln" else torch.log10)
        return out.transpose(-1, -2) if c.time_major else out


register_module(LogMelConfig, LogMel)
register(HifiGanConfig(), "HiFi-GAN V1-V3 vocoder mel, 22.05 kHz, 1024/256, 80 mels 0-8000 Hz, ln")
register(
    HifiGanConfig(name="bigvgan-22k-80"),
    "BigVGAN 22 kHz 80-band (bigvgan_22khz_80band, base, v2 fmax8k), same as HiFi-GAN",
    aliases=("bigvgan_22khz_80band", "bigvgan_base_22khz_80band", "bigvgan_v2_22khz_80band_fmax8k_256x"),
)
register(
    HifiGanConfig(name="bigvgan-v2-22k-80", fmax=11025.0),
    "BigVGAN-v2 22 kHz 80-band 256x, full band (fmax 11025 Hz)",
    aliases=("bigvgan_v2_22khz_80band_256x",),
)
register(
    HifiGanConfig(name="bigvgan-24k-100", sr=24000, n_mels=100, fmax=12000.0),
    "BigVGAN 24 kHz 100-band (v1, base, v2 256x), 1024/256, 0-12000 Hz",
    aliases=("bigvgan_24khz_100band", "bigvgan_base_24khz_100band", "bigvgan_v2_24khz_100band_256x"),
)
register(
    HifiGanConfig(name="bigvgan-v2-44k-128-256x", sr=44100, n_mels=128, fmax=22050.0),
    "BigVGAN-v2 44.1 kHz 128-band 256x, 1024/256",
    aliases=("bigvgan_v2_44khz_128band_256x",),
)
register(
    HifiGanConfig(name="bigvgan-v2-44k-128-512x", sr=44100, n_fft=2048, hop_length=512, win_length=2048, n_mels=128, fmax=22050.0),
    "BigVGAN-v2 44.1 kHz 128-band 512x, 2048/512",
    aliases=("bigvgan_v2_44khz_128band_512x",),
)
register(HifiGanConfig(name="vits", fmax=11025.0, mag_eps=1e-6), "VITS (LJSpeech) mel, HiFi-GAN framing with sqrt(P + 1e-6), 0-11025 Hz")
register(LogMelConfig(), "NVIDIA Tacotron2 / WaveGlow mel, 22.05 kHz, centred reflect 1024/256, 80 mels 0-8000 Hz, ln")
register(
    LogMelConfig(name="vocos-24k", sr=24000, n_mels=100, fmax=12000.0, htk=True, norm=None, log_floor=1e-7),
    "Vocos 24 kHz mel (torchaudio defaults: HTK scale, no norm), 100 mels, ln(max(M, 1e-7))",
)
register(
    LogMelConfig(name="f5-tts", sr=24000, n_mels=100, fmax=12000.0, htk=True, norm=None, log_floor=1e-5),
    "F5-TTS (Vocos mel with ln(max(M, 1e-5)))",
)
register(
    LogMelConfig(name="speecht5", sr=16000, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=80.0, fmax=7600.0, log="log10", log_floor=1e-10, time_major=True),
    "Hugging Face SpeechT5 TTS targets / SpeechT5HifiGan input, 16 kHz, 80 mels 80-7600 Hz, log10, (T, 80)",
)
