"""OpenAI Whisper's log-mel input (``whisper/audio.py``, ``log_mel_spectrogram``), offline and streaming."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import Frontend, MelConfig, _Checker, _floored_log, register, register_module

__all__ = ["WhisperConfig", "Whisper"]


@dataclass(frozen=True)
class WhisperConfig(MelConfig):
    """OpenAI Whisper (``whisper/audio.py`` ``log_mel_spectrogram``, ``pad_or_trim``).

    Centred reflect-padded STFT 400/160, power, ``n_mels`` Slaney mels 0-8000 Hz,
    last frame dropped; ``L = log10(max(M, log_floor))``,
    ``L = max(L, max(L) - dynamic_range)``, ``(L + 4) / 4``.

    ``pad_or_trim``: zero-pad or cut the waveform to ``n_samples`` (30 s) first,
    as the README path and Hugging Face's ``WhisperFeatureExtractor`` do
    (3000 frames). ``padding``: zeros appended afterwards
    (``log_mel_spectrogram(padding=...)``). ``max_scope``: the maximum is taken
    per example ("example", Hugging Face) or over everything passed in one call
    ("batch", openai's batched tensors). ``fmax_above_nyquist``: keep ``fmax``
    (8000 Hz) at sampling rates below 16 kHz, as transformers' and faster-whisper's
    extractors do (their filters above Nyquist are zero; the drop-ins set it);
    ``False`` (the preset's default) refuses ``fmax > sr / 2``.

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("whisper-80").config
    >>> cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.pad_mode
    (400, 160, 80, 'reflect')
    """

    name: str = "whisper-80"
    sr: float = 16000
    n_fft: int = 400
    hop_length: int = 160
    win_length: Optional[int] = 400
    pad_mode: str = "reflect"
    power: float = 2.0
    n_mels: int = 80
    fmax: Optional[float] = 8000.0
    log_floor: float = 1e-10
    dynamic_range: float = 8.0
    pad_or_trim: bool = False
    n_samples: int = 480000
    padding: int = 0
    max_scope: str = "example"
    fmax_above_nyquist: bool = False

    @property
    def fmax_above_nyquist_ok(self) -> bool:
        return bool(self.fmax_above_nyquist)

    def _validate(self, c: _Checker) -> None:
        c.boolean("fmax_above_nyquist")
        if not self.fmax_above_nyquist and isinstance(self.sr, (int, float)) and isinstance(self.fmax, (int, float)) and self.fmax > self.sr / 2:
            c.fail("fmax", f"is above the Nyquist frequency sr/2={self.sr / 2}; use fmax <= {self.sr / 2}, or "
                           "fmax_above_nyquist=True to keep it as transformers' and faster-whisper's extractors do")
        super()._validate(c)
        c.real("log_floor", lo=0.0, lo_open=True)
        c.real("dynamic_range", lo=0.0)
        c.boolean("pad_or_trim")
        c.integer("n_samples", lo=1)
        c.integer("padding", lo=0)
        c.choice("max_scope", ("example", "batch"))


class Whisper(Frontend):
    """OpenAI Whisper's log-mel input (see :class:`WhisperConfig`). Output ``(..., n_mels, frames)``.

    Not frame-local: the floor ``max - 8`` uses the whole input's maximum.

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.frontend("whisper-80")(np.zeros(16000, np.float32)).shape
    (80, 100)
    >>> supermel.frontend("whisper-128", pad_or_trim=True)(np.zeros(16000, np.float32)).shape
    (128, 3000)
    """

    config_class = WhisperConfig
    config: WhisperConfig
    drop_last = 1

    @property
    def frame_local(self) -> bool:
        return False

    def pre(self, y: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = self.config
        if c.pad_or_trim:
            n = y.shape[-1]
            y = y[..., : c.n_samples] if n >= c.n_samples else torch.nn.functional.pad(y, (0, c.n_samples - n))
        if c.padding:
            y = torch.nn.functional.pad(y, (0, c.padding))
        return y

    def pre_length(self, n_samples: int) -> int:
        c = self.config
        return (c.n_samples if c.pad_or_trim else n_samples) + c.padding

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        return _floored_log(mel, self.config.log_floor, torch.log10)

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.shape[-1] == 0:
            return x
        mx = x.amax() if c.max_scope == "batch" else x.amax(dim=(-2, -1), keepdim=True)
        x = torch.maximum(x, mx - c.dynamic_range)
        # (x + 4) / 4, in place on the fresh tensor (dividing by 4 is exact as multiplying by 0.25)
        return x.add_(4.0).mul_(0.25) if not (torch.compiler.is_compiling() or x.requires_grad) else (x + 4.0) / 4.0

    # -- streaming: pad/trim act on the stream's ends, not on each chunk
    stream_pre_on_chunks = False

    def stream_trim_at(self) -> Optional[int]:
        return int(self.config.n_samples) if self.config.pad_or_trim else None

    def stream_tail_samples(self, n_received: int) -> int:
        c = self.config
        fill = c.n_samples - min(n_received, c.n_samples) if c.pad_or_trim else 0
        return fill + c.padding

register_module(WhisperConfig, Whisper)
register(WhisperConfig(), "OpenAI Whisper log-mel, 16 kHz, 80 mels (tiny ... large-v2); pad_or_trim=True for 30 s / 3000 frames")
register(WhisperConfig(name="whisper-128", n_mels=128), "OpenAI Whisper log-mel, 128 mels (large-v3, large-v3-turbo)")
