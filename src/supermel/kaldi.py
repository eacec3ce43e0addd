"""Kaldi frame extraction (``compute-fbank-feats``, ``torchaudio.compliance.kaldi``, kaldi-native-fbank).

Kaldi's fbank cannot be written as ``librosa.feature.melspectrogram`` plus a
post-step (frontends.md section 5): frames start at sample 0 (``snip_edges``)
or are centred on ``t * shift + shift / 2`` with edge-repeating reflection,
and each frame is processed on its own (dither, DC removal, pre-emphasis with
the frame's first sample as its own predecessor) before the window. This module
holds only that framing and the per-frame steps; the power spectrum is the
core's (:func:`supermel._core._power_block`, rfft + real arithmetic) and the
filterbank is :func:`supermel.filters.kaldi_mel_filters`, applied by the
core's :class:`~supermel.modules.MelScale`.
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional

import numpy as np
import torch

from ._errors import ParameterError

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
