"""Audio in any form a dataset holds it -> features: what the Ray and ``datasets`` integrations share.

:class:`FeatureFn` is built from a front-end name (``"whisper-80"``) or the core mel spectrogram's
keywords (``n_mels=80, hop_length=160, ...``), resamples to the front end's rate (soxr HQ, as
``librosa.load``) and computes on CPU or CUDA. :func:`decode` turns a dataset value (a path, a
``{"bytes", "path"}`` or ``{"array", "sampling_rate"}`` dict, an array) into ``(y, sr)`` with
soundfile, so no torchcodec or FFmpeg is needed.
"""

from __future__ import annotations

import io
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .._errors import ParameterError

__all__ = ["FeatureFn", "decode"]


def _mono(y: np.ndarray, mono: bool) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and mono:
        return y.mean(axis=0, dtype=np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


def _read(source: Any, name: str) -> Tuple[np.ndarray, int]:
    """Decode a path or a file-like object with soundfile: ``(channels, n)`` float32 and the rate."""
    try:
        import soundfile
    except ImportError:
        raise ParameterError("decoding audio needs soundfile: pip install 'supermel[audio]'") from None
    try:
        data, sr = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as exc:
        raise ParameterError(f"cannot read audio {name}: {exc}") from None
    if data.shape[0] == 0:
        raise ParameterError(f"audio {name} has no samples")
    return np.ascontiguousarray(data.T), int(sr)


def decode(value: Any, sr: Optional[int] = None, *, mono: bool = True) -> Tuple[np.ndarray, int]:
    """Audio of one dataset value as float32 and its sampling rate.

    Parameters
    ----------
    value : str, path-like, dict or array
        A path; ``{"bytes": ..., "path": ...}`` (``datasets.Audio(decode=False)``); ``{"array": ...,
        "sampling_rate": ...}`` (decoded audio); a torchcodec ``AudioDecoder`` (``datasets`` >= 4 with
        decoding on); or an array, whose rate is ``sr``.
    sr : int, optional
        The rate of a bare array.
    mono : bool
        Average ``(channels, n)`` audio to ``(n,)`` (as ``librosa.load``).

    Returns
    -------
    y : np.ndarray [shape=(n,) or (channels, n)], float32
    sr : int

    Raises
    ------
    ParameterError
        When the value cannot be decoded; the message names the file.
    """
    if isinstance(value, (str, os.PathLike)):
        y, rate = _read(os.fspath(value), repr(os.fspath(value)))
        return _mono(y, mono), rate
    if isinstance(value, dict):
        if value.get("array") is not None:
            rate = value.get("sampling_rate", value.get("sr", sr))
            if rate is None:
                raise ParameterError("an {'array': ...} audio value needs its 'sampling_rate'")
            return _mono(np.asarray(value["array"], dtype=np.float32), mono), int(rate)
        name = repr(value.get("path")) if value.get("path") else "(bytes)"
        if value.get("bytes") is not None:
            y, rate = _read(io.BytesIO(value["bytes"]), name)
            return _mono(y, mono), rate
        if value.get("path"):
            y, rate = _read(value["path"], name)
            return _mono(y, mono), rate
        raise ParameterError(f"an audio value needs 'bytes', 'path' or 'array' (keys: {sorted(value)})")
    if hasattr(value, "get_all_samples"):  # torchcodec's AudioDecoder
        samples = value.get_all_samples()
        return _mono(samples.data.numpy(), mono), int(samples.sample_rate)
    if value is None:
        raise ParameterError("the audio value is missing (None)")
    if sr is None:
        raise ParameterError("an audio array needs its sampling rate: give a rate column or sr")
    return _mono(np.asarray(value, dtype=np.float32), mono), int(sr)


class FeatureFn:
    """``(y, sr) -> features`` for a front end or the core mel spectrogram.

    Parameters
    ----------
    preset : str, optional
        A front end (``supermel.frontends()``); it fixes its sampling rate.
    sr : int, optional
        Without a preset: resample every input to ``sr`` (``None`` keeps each input's own rate).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    overrides : dict, optional
        With a preset: fields of its configuration to change.
    **core
        Without a preset: ``supermel.melspectrogram``'s keywords (librosa's defaults otherwise).
    """

    def __init__(self, preset: Optional[str] = None, *, sr: Optional[int] = None, device: str = "cpu", overrides: Optional[Dict[str, Any]] = None, **core: Any) -> None:
        self.device = device
        self.module: Any = None
        self.core = dict(core)
        if preset is not None:
            import supermel

            if core:
                raise ParameterError(f"preset {preset!r} takes its parameters from its configuration: pass {sorted(core)} as overrides={{...}}")
            over = dict(overrides or {})
            if sr is not None:
                over["sr"] = sr
            try:
                self.module = supermel.frontend(preset, device=device, **over)
            except TypeError as exc:
                raise ParameterError(f"preset {preset!r} does not accept {sorted(over)}: {exc}") from None
            self.module.eval()
            config = self.module.config
            rate = getattr(config, "sr", None) or getattr(config, "sample_frequency", None)
            self.sr: Optional[int] = None if rate is None else int(round(float(rate)))
            self.time_axis = int(getattr(self.module, "time_axis", -1))
        else:
            if overrides:
                raise ParameterError("overrides= changes a preset's configuration: give preset= too, or pass the core keywords directly")
            self.sr = sr
            self.time_axis = -1

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        """Features of ``y`` (float32 numpy audio at rate ``sr``), resampled first when needed."""
        import torch

        if self.sr is not None and int(sr) != self.sr:
            from ..audio import resample

            y = resample(y, orig_sr=int(sr), target_sr=self.sr)
            sr = self.sr
        if self.module is not None:
            with torch.inference_mode():
                out = self.module(y if self.device == "cpu" else torch.from_numpy(np.ascontiguousarray(y)).to(self.device))
        else:
            import supermel

            x: Any = y if self.device == "cpu" else torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
            out = supermel.melspectrogram(y=x, sr=sr, **self.core)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        return np.asarray(out)

    def time_major(self, feats: np.ndarray) -> np.ndarray:
        """``feats`` with time on the first axis (2-D outputs; others are returned as they are)."""
        if feats.ndim == 2 and self.time_axis % 2 == 1:  # (bins, frames) -> (frames, bins)
            return np.ascontiguousarray(feats.T)
        return feats
