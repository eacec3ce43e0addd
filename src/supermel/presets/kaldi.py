"""Kaldi fbank: Kaldi's framing, the fbank front end (torchaudio keyword names), lhotse/sherpa-onnx and WeNet.

Frame extraction as ``compute-fbank-feats``, ``torchaudio.compliance.kaldi`` and
kaldi-native-fbank do it. Kaldi's fbank cannot be written as ``librosa.feature.melspectrogram`` plus a
post-step (frontends.md section 5): frames start at sample 0 (``snip_edges``)
or are centred on ``t * shift + shift / 2`` with edge-repeating reflection,
and each frame is processed on its own (dither, DC removal, pre-emphasis with
the frame's first sample as its own predecessor) before the window. This module
holds that framing and the per-frame steps, the :class:`KaldiFbank` front end and
its streaming engine (the same frame rule offline and online); the power spectrum is the
core's (:func:`supermel._core._power_block`, rfft + real arithmetic) and the
filterbank is :func:`supermel.filters.kaldi_mel_filters`, applied by the
core's :class:`~supermel.modules.MelScale`.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional, Tuple

import numpy as np
import torch

from .. import _native
from .._errors import ParameterError
from ..filters import kaldi_mel_filters
from ..modules import MelSpectrogram
from ..streaming import _Group, restart_stream
from .base import Frontend, FrontendConfig, _Checker, register, register_module
from .streaming import Frames, _stack

__all__ = [
    "KaldiFbankConfig",
    "KaldiFbank",
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

# =========================================================================== Kaldi framing
#: Kaldi's floor of energies and mel energies before the log (float32 machine epsilon).
FLOAT32_EPS = float(np.finfo(np.float32).eps)

#: Window types of torchaudio's ``kaldi.fbank`` / Kaldi's ``FrameExtractionOptions``.
WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman")


def kaldi_window(window_type: str, length: int, *, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi's analysis window of ``length`` samples (all symmetric), float64.

    ``a = 2 pi / (length - 1)``; hanning ``0.5 - 0.5 cos(a n)``; povey its
    0.85-th power; hamming ``0.54 - 0.46 cos(a n)``; rectangular 1;
    blackman ``c - 0.5 cos(a n) + (0.5 - c) cos(2 a n)``.
    """
    if window_type not in WINDOW_TYPES:
        raise ParameterError(f"window_type={window_type!r} is unknown; use one of {WINDOW_TYPES}")
    n = np.arange(length, dtype=np.float64)
    a = 2.0 * math.pi / (length - 1) if length > 1 else 0.0
    if window_type == "rectangular":
        return np.ones(length)
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    if window_type == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * n) + (0.5 - blackman_coeff) * np.cos(2.0 * a * n)
    hann = 0.5 - 0.5 * np.cos(a * n)
    return hann**0.85 if window_type == "povey" else hann


def window_sizes(sample_frequency: float, frame_length: float, frame_shift: float, round_to_power_of_two: bool) -> tuple:
    """``(window_size, window_shift, padded_size)`` in samples, as torchaudio computes them.

    ``int(sr * ms * 0.001)`` for length and shift; the FFT size is the next
    power of two when ``round_to_power_of_two``, else the window length.
    """
    if not (sample_frequency > 0 and math.isfinite(sample_frequency)):
        raise ParameterError(f"sample_frequency={sample_frequency!r} must be a positive number of Hz")
    w = int(sample_frequency * frame_length * 0.001)
    h = int(sample_frequency * frame_shift * 0.001)
    if w < 2:
        raise ParameterError(f"frame_length={frame_length} ms gives {w} samples at {sample_frequency} Hz; use at least 2 samples")
    if h < 1:
        raise ParameterError(f"frame_shift={frame_shift} ms gives {h} samples at {sample_frequency} Hz; use at least 1 sample")
    n = 1 << (w - 1).bit_length() if round_to_power_of_two else w
    return w, h, n


def num_frames(n_samples: int, *, window_size: int, window_shift: int, snip_edges: bool) -> int:
    """Kaldi's frame count (``NumFrames`` with ``flush=True``).

    ``snip_edges=True``: ``1 + (n - W) // H`` (0 when ``n < W``);
    ``snip_edges=False``: ``(n + H // 2) // H``.
    """
    if snip_edges:
        return 0 if n_samples < window_size else 1 + (n_samples - window_size) // window_shift
    return (n_samples + window_shift // 2) // window_shift


def first_sample_of_frame(t: int, *, window_size: int, window_shift: int, snip_edges: bool) -> int:
    """Index of the first sample of frame ``t`` (negative before the signal with ``snip_edges=False``)."""
    if snip_edges:
        return t * window_shift
    return t * window_shift + window_shift // 2 - window_size // 2


@functools.lru_cache(maxsize=64)
def _reflect_index(n_samples: int, start: int, stop: int) -> np.ndarray:
    """Kaldi's edge-repeating reflection (x[-1] = x[0], x[n] = x[n-1]) of indices ``start..stop-1``.

    Kaldi reflects repeatedly (``s -> -s - 1`` below 0, ``s -> 2 n - 1 - s``
    above); the closed form is the period-``2 n`` mirror below.
    """
    s = np.arange(start, stop) % (2 * n_samples)
    return np.where(s >= n_samples, 2 * n_samples - 1 - s, s)


def frames_ready(n_received: int, *, window_size: int, window_shift: int, snip_edges: bool) -> int:
    """Frames fully determined by the first ``n_received`` samples, the end of the input unknown.

    These frames lie inside the samples received (``snip_edges=False``: their
    left reflection reads only received samples, the same whatever the final
    length), so a stream can emit them; :func:`num_frames` gives the total once
    the end is known. ``snip_edges=True``: all of them (no frame ever depends on
    the end).
    """
    if snip_edges:
        return num_frames(n_received, window_size=window_size, window_shift=window_shift, snip_edges=True)
    # frame t is inside the received samples when first_sample_of_frame(t) + W <= n; there are never
    # more such frames than num_frames(n) ((n + H - H // 2 - ceil(W / 2)) // H <= (n + H // 2) // H).
    room = n_received - window_size - first_sample_of_frame(0, window_size=window_size, window_shift=window_shift, snip_edges=False)
    return 0 if room < 0 else 1 + room // window_shift


def extract_frame_range(
    seg: torch.Tensor, *, seg_start: int, n_samples: int, t0: int, t1: int, window_size: int, window_shift: int, snip_edges: bool
) -> torch.Tensor:
    """Raw frames ``t0 .. t1-1`` of a signal of ``n_samples`` samples, from the part of it that ``seg`` holds.

    ``seg`` ``(B, m)`` holds input samples ``seg_start .. seg_start + m - 1``;
    it must contain every sample the frames read (after Kaldi's edge
    reflection). ``n_samples`` is the signal's length; while streaming, the
    samples received so far, which is exact for the frames of
    :func:`frames_ready`. Returns ``(B, t1 - t0, window_size)`` (a view when
    no reflection is needed).
    """
    if t1 <= t0:
        return seg.new_zeros(seg.shape[:-1] + (0, window_size))
    lo = first_sample_of_frame(t0, window_size=window_size, window_shift=window_shift, snip_edges=snip_edges)
    hi = first_sample_of_frame(t1 - 1, window_size=window_size, window_shift=window_shift, snip_edges=snip_edges) + window_size
    if lo >= 0 and hi <= n_samples:
        z = seg[..., lo - seg_start : hi - seg_start]
    else:
        idx = _reflect_index(n_samples, lo, hi) - seg_start
        z = seg.index_select(-1, torch.as_tensor(idx, device=seg.device))
    return z.unfold(-1, window_size, window_shift)


def extract_frames(y: torch.Tensor, *, window_size: int, window_shift: int, snip_edges: bool) -> torch.Tensor:
    """``(B, L)`` -> ``(B, T, window_size)`` raw frames (a view for ``snip_edges=True``)."""
    n = y.shape[-1]
    t = num_frames(n, window_size=window_size, window_shift=window_shift, snip_edges=snip_edges)
    return extract_frame_range(y, seg_start=0, n_samples=n, t0=0, t1=t, window_size=window_size, window_shift=window_shift, snip_edges=snip_edges)


def log_energy(frames: torch.Tensor, energy_floor: float = 0.0) -> torch.Tensor:
    """Kaldi's log energy of ``(..., T, W)`` frames: ``ln(max(sum x^2, eps))``, floored at
    ``ln(energy_floor)`` when ``energy_floor > 0``. Returns ``(..., T)``."""
    e = torch.log(torch.clamp((frames * frames).sum(dim=-1), min=FLOAT32_EPS))
    if energy_floor > 0.0:
        e = torch.clamp(e, min=math.log(energy_floor))
    return e


def process_frames(
    frames: torch.Tensor,
    *,
    dither: float = 0.0,
    remove_dc_offset: bool = True,
    preemphasis_coefficient: float = 0.97,
    generator: Optional[torch.Generator] = None,
    raw_energy: Optional[List[torch.Tensor]] = None,
) -> torch.Tensor:
    """Kaldi's per-frame steps, in Kaldi's order: dither, DC removal, pre-emphasis.

    Pre-emphasis is within the frame: ``y[j] = s[j] - c s[j-1]`` and
    ``y[0] = s[0] - c s[0]``. Returns a new tensor ``(..., T, W)``. With
    ``raw_energy`` (a list), the frames before pre-emphasis (Kaldi's
    ``raw_energy=True`` point) are appended to it.
    """
    out = frames
    if dither != 0.0:
        noise = torch.randn(frames.shape, dtype=frames.dtype, device=frames.device, generator=generator)
        out = out + dither * noise
    if remove_dc_offset:
        out = out - out.mean(dim=-1, keepdim=True)
    if raw_energy is not None:
        raw_energy.append(out)
    if preemphasis_coefficient != 0.0:
        c = preemphasis_coefficient
        out = torch.cat([out[..., :1] * (1.0 - c), out[..., 1:] - c * out[..., :-1]], dim=-1)
    if out is frames:
        out = frames.clone()
    return out


# =========================================================================== the fbank front end
@dataclass(frozen=True)
class KaldiFbankConfig(FrontendConfig):
    """Kaldi log mel filterbank, with ``torchaudio.compliance.kaldi.fbank``'s keyword names and defaults.

    Differences from torchaudio's defaults: ``num_mel_bins`` is 80 (torchaudio
    23), ``int16_scale`` multiplies ``[-1, 1]`` audio by 32768 first (WeNet,
    FunASR, Kaldi binaries). ``use_energy`` adds Kaldi's log energy
    (``raw_energy``: before pre-emphasis and window, else after the window;
    floored at ``ln(energy_floor)`` when positive) as the first column, or the
    last with ``htk_compat``. VTLN is not supported.
    Output ``(..., T, num_mel_bins [+ 1])``, ``ln(max(E, float32 eps))``.

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("lhotse-fbank").config
    >>> cfg.frame_length, cfg.frame_shift, cfg.snip_edges
    (25.0, 10.0, False)
    """

    name: str = "kaldi-fbank"
    sample_frequency: float = 16000
    frame_length: float = 25.0
    frame_shift: float = 10.0
    round_to_power_of_two: bool = True
    dither: float = 0.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    blackman_coeff: float = 0.42
    snip_edges: bool = True
    num_mel_bins: int = 80
    low_freq: float = 20.0
    high_freq: float = 0.0
    use_power: bool = True
    use_log_fbank: bool = True
    use_energy: bool = False
    energy_floor: float = 1.0
    raw_energy: bool = True
    htk_compat: bool = False
    int16_scale: bool = False

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.boolean("use_energy", "raw_energy", "htk_compat")
        c.real("energy_floor", lo=0.0)
        c.real("sample_frequency", lo=0.0, lo_open=True)
        c.real("frame_length", lo=0.0, lo_open=True)
        c.real("frame_shift", lo=0.0, lo_open=True)
        c.boolean("round_to_power_of_two", "remove_dc_offset", "snip_edges", "use_power", "use_log_fbank", "int16_scale")
        c.real("dither", lo=0.0)
        c.real("preemphasis_coefficient", lo=0.0, hi=1.0)
        c.choice("window_type", WINDOW_TYPES)
        c.real("blackman_coeff")
        c.integer("num_mel_bins", lo=1)
        c.real("low_freq", lo=0.0)
        c.real("high_freq")
        window_sizes(self.sample_frequency, self.frame_length, self.frame_shift, self.round_to_power_of_two)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kaldi_mel_filters(sr=self.sample_frequency, n_fft=self.sizes[2], n_mels=self.num_mel_bins, low_freq=self.low_freq, high_freq=self.high_freq)

    @property
    def sizes(self) -> Tuple[int, int, int]:
        """``(window_size, window_shift, padded_window_size)`` in samples."""
        return window_sizes(self.sample_frequency, self.frame_length, self.frame_shift, self.round_to_power_of_two)


class KaldiFbank(Frontend):
    """Kaldi log mel filterbank (see :class:`KaldiFbankConfig`). Output ``(..., T, num_mel_bins)``.

    The frames come from ``supermel.presets.kaldi`` (Kaldi's framing and per-frame
    dither, DC removal and pre-emphasis). Window, power spectrum and filterbank
    are the core's: the processed frames, zero-padded to the FFT size and laid
    end to end, are a signal whose hop equals the FFT size, so ``core`` is a
    :class:`~supermel.MelSpectrogram` with ``hop_length = n_fft``,
    ``center=False``, the Kaldi window (centred in the FFT size: ``|X|`` does
    not depend on the placement) and the Kaldi bank ``core.mel_scale.fb``; the
    frame shift is ``config.sizes[1]``. Frame-local.

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> supermel.frontend("kaldi-fbank")(y).shape            # time-major (T, bins)
    (98, 80)
    >>> supermel.frontend("kaldi-fbank", num_mel_bins=40, snip_edges=False)(y).shape
    (100, 40)
    """

    config_class = KaldiFbankConfig
    config: KaldiFbankConfig
    #: Frames processed per block (bounds the memory of long inputs).
    block_frames: ClassVar[int] = 4096

    def _build_core(self, **kw: Any) -> MelSpectrogram:
        c = self.config
        w, _, n = c.sizes
        fb = kaldi_mel_filters(sr=c.sample_frequency, n_fft=n, n_mels=c.num_mel_bins, low_freq=c.low_freq, high_freq=c.high_freq, dtype=np.float64)
        win = kaldi_window(c.window_type, w, blackman_coeff=c.blackman_coeff)
        return MelSpectrogram(
            sr=c.sample_frequency, n_fft=n, hop_length=n, win_length=w, window=win, center=False,
            power=2.0 if c.use_power else 1.0, fb=fb, **kw,
        )  # fmt: skip

    @property
    def time_axis(self) -> int:
        return -2

    def pre(self, y: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        return y * 32768.0 if self.config.int16_scale else y

    @property
    def mel_rows(self) -> int:
        return self.core.n_mels + int(self.config.use_energy)

    def num_frames(self, n_samples: int) -> int:
        w, h, _ = self.config.sizes
        return num_frames(n_samples, window_size=w, window_shift=h, snip_edges=self.config.snip_edges)

    def frames_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, T, W)`` frames -> ``(B, bins, T)`` mel energies (Kaldi's per-frame steps, then the core).

        With ``use_energy`` the first row is the log energy: ``(B, 1 + bins, T)``.
        """
        c = self.config
        n_fft, w = self.core.spectrogram.n_fft, self.core.spectrogram.win_length
        lo = (n_fft - w) // 2  # where the core placed the window (pad_center)
        if (
            c.dither == 0.0 and not c.use_energy and type(frames) is torch.Tensor and frames.dim() == 3 and frames.shape[0] * frames.shape[1] > 0
            and frames.shape[-1] == w and self.core.spectrogram.native_route(frames, self.core.mel_scale.fb, framed=True)
        ):
            # the native route: DC removal, pre-emphasis and the frame's place in its n_fft slot in
            # C++ (supermel._native.kaldi_prep), then the core's kernel at hop n_fft
            z = _native.kaldi_prep(frames.detach().numpy(), n_fft=n_fft, lo=lo, remove_dc=c.remove_dc_offset, preemph=c.preemphasis_coefficient)
            return self.core.mel_from_padded(torch.from_numpy(z))
        raw: Optional[List[torch.Tensor]] = [] if c.use_energy and c.raw_energy else None
        x = process_frames(
            frames, dither=c.dither, remove_dc_offset=c.remove_dc_offset, preemphasis_coefficient=c.preemphasis_coefficient, raw_energy=raw
        )
        x = torch.nn.functional.pad(x, (lo, n_fft - w - lo))  # (B, T, n_fft)
        mel = self.core.mel_from_padded(x.reshape(x.shape[0], -1))
        if not c.use_energy:
            return mel
        windowed = raw[0] if raw else x * self.core.spectrogram.window.to(x.dtype)  # Kaldi's two energy points
        energy = log_energy(windowed, c.energy_floor).to(mel.dtype)
        return torch.cat([energy.unsqueeze(-2), mel], dim=-2)

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.config
        out = mel.transpose(-1, -2)
        energy = None
        if c.use_energy:
            energy, out = out[..., :1], out[..., 1:]
        if c.use_log_fbank:
            out = torch.log(torch.clamp(out, min=FLOAT32_EPS))
        if energy is None:
            return out
        return torch.cat([out, energy] if c.htk_compat else [energy, out], dim=-1)

    def mel(self, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        w, h, _ = c.sizes
        frames = extract_frames(self.pre(y), window_size=w, window_shift=h, snip_edges=c.snip_edges)
        n_frames = frames.shape[1]
        if n_frames == 0:
            return frames.new_zeros((frames.shape[0], self.mel_rows, 0))
        if n_frames <= self.block_frames:
            return self.frames_mel(frames)
        parts = [self.frames_mel(frames[:, s : s + self.block_frames]) for s in range(0, n_frames, self.block_frames)]
        return torch.cat(parts, dim=-1)

    # -- streaming: Kaldi's own framing (frames are not centred windows)
    pre_accepts_numpy = False

    def stream_engine(
        self, *, num_streams: int, device: torch.device, dtype: torch.dtype, chunk_size: Optional[int], cuda_graph: bool
    ) -> Tuple[Any, int, int]:
        c = self.config
        if cuda_graph:
            raise ParameterError(f"{c.name}: cuda_graph=True is not available for the Kaldi fbank presets (their framing is not a centred STFT)")
        w, h, _ = c.sizes
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0 or chunk_size % h):
            raise ParameterError(f"chunk_size={chunk_size!r} must be a positive multiple of the frame shift ({h} samples)")
        engine = _KaldiEngine(self, num_streams=num_streams, device=device, dtype=dtype)
        return engine, h, engine.latency_samples



# =========================================================================== streaming engine
class _KaldiEngine:
    """Kaldi framing, incrementally (the engine of a streaming Kaldi fbank preset).

    Same interface as the part of :class:`~supermel.StreamingMelSpectrogram`
    that :class:`StreamingFrontend` uses: ``push((S, n) tensor)`` and
    ``flush()`` return raw mel energies ``(S, bins, k)`` (or one ``(bins, k_i)``
    per stream when streams were reset separately), ``reset(index)``.
    """

    def __init__(self, fe: KaldiFbank, *, num_streams: int, device: torch.device, dtype: torch.dtype) -> None:
        self.fe = fe
        w, h, _ = fe.config.sizes
        self.kw = dict(window_size=w, window_shift=h, snip_edges=bool(fe.config.snip_edges))
        self.window_size, self.hop_length = w, h
        self.num_streams = num_streams
        self.device, self.dtype = device, dtype
        self.n_mels = fe.mel_rows
        # frame t is complete when sample t * shift + latency_samples - 1 has arrived
        self.latency_samples = first_sample_of_frame(0, **self.kw) + w  # type: ignore[arg-type]
        self.groups: List[_Group] = []
        self.reset()

    def _empty(self, g: int) -> torch.Tensor:
        return torch.zeros((g, 0), dtype=self.dtype, device=self.device)

    def reset(self, index: Optional[int] = None) -> None:
        if index is None:
            self.groups = [_Group(index=list(range(self.num_streams)), buf=self._empty(self.num_streams))]
            return
        self.groups = restart_stream(self.groups, index, self._empty)

    def _frames(self, g: _Group, stop: int) -> torch.Tensor:
        """Mel energies ``(g, bins, k)`` of frames ``g.t .. stop-1`` (Kaldi's per-frame steps, then the core)."""
        if stop <= g.t:
            return g.buf.new_zeros((g.buf.shape[0], self.n_mels, 0))
        step = self.fe.block_frames  # bound the memory of a long chunk, as offline
        parts = []
        for t0 in range(g.t, stop, step):
            raw = extract_frame_range(g.buf, seg_start=g.start, n_samples=g.n, t0=t0, t1=min(stop, t0 + step), **self.kw)  # type: ignore[arg-type]
            parts.append(self.fe.frames_mel(raw))
        g.t = stop
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def _trim(self, g: _Group) -> None:
        # Keep the next frame's samples, and (a conservative bound) the last
        # frame_length samples, which the right-edge reflection (snip_edges=False)
        # reads at flush.
        keep_from = max(0, min(first_sample_of_frame(g.t, **self.kw), g.n - self.window_size))  # type: ignore[arg-type]
        if keep_from > g.start:
            g.buf = g.buf[:, keep_from - g.start :]
            g.start = keep_from

    def _assemble(self, outs: List[torch.Tensor]) -> Frames:
        if len(self.groups) == 1:
            return outs[0]
        per_stream: List[torch.Tensor] = [torch.empty(0)] * self.num_streams
        for g, o in zip(self.groups, outs):
            for row, i in enumerate(g.index):
                per_stream[i] = o[row]
        return _stack(per_stream)

    def push(self, t: torch.Tensor) -> Frames:
        outs = []
        for g in self.groups:
            rows = t if len(self.groups) == 1 else t[g.index]
            if rows.shape[-1]:
                g.buf = torch.cat([g.buf, rows], dim=-1)
                g.n += rows.shape[-1]
            outs.append(self._frames(g, frames_ready(g.n, **self.kw)))  # type: ignore[arg-type]
            self._trim(g)
        return self._assemble(outs)

    def flush(self) -> Frames:
        return self._assemble([self._frames(g, num_frames(g.n, **self.kw)) for g in self.groups])  # type: ignore[arg-type]


register_module(KaldiFbankConfig, KaldiFbank)
register(KaldiFbankConfig(), "Kaldi fbank, torchaudio.compliance.kaldi.fbank defaults (povey, snip_edges, 20 Hz-Nyquist), dither 0, 80 bins, (T, bins)")
register(
    KaldiFbankConfig(name="lhotse-fbank", snip_edges=False, high_freq=-400.0),
    "lhotse / icefall / sherpa-onnx fbank: Kaldi, snip_edges=False, 20-7600 Hz, [-1, 1] input, 80 bins",
)
register(
    KaldiFbankConfig(name="wenet-fbank", int16_scale=True),
    "WeNet fbank: Kaldi defaults on int16-scaled input (x 32768), 80 bins, before the model's global CMVN",
)
