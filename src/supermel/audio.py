"""Audio files in and out: the bundled example clip, loading and resampling.

WAV files load with scipy (a run-time dependency). Other formats need the
``audio`` extra (``soundfile``); resampling needs ``soxr`` (librosa's default
resampler, ``soxr_hq``). Audio comes back as float32 in ``[-1, 1]``,
``(n_samples,)`` for mono or ``(channels, n_samples)`` with ``mono=False``.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Optional, Tuple, Union

import numpy as np

from ._errors import ParameterError

__all__ = ["example_path", "example_audio", "load", "resample"]

PathLike = Union[str, "os.PathLike[str]"]


def example_path() -> str:
    """Path of the bundled example: 12 s of synthetic English speech (espeak-ng), 16 kHz mono int16 WAV."""
    return str(resources.files("supermel") / "data" / "speech_16k.wav")


def example_audio() -> Tuple[np.ndarray, int]:
    """The bundled example as ``(y, sr)``: float32 ``(192146,)`` and 16000."""
    return load(example_path())


def _requires(module: str, extra: str) -> ParameterError:
    return ParameterError(f"this needs the optional module {module!r}: pip install 'supermel[{extra}]'")


def _int_to_float(data: np.ndarray) -> np.ndarray:
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float32)


def load(path: PathLike, *, sr: Optional[int] = None, mono: bool = True) -> Tuple[np.ndarray, int]:
    """Load an audio file as float32, optionally resampled to ``sr`` and downmixed to mono.

    Parameters
    ----------
    path : str or path-like
    sr : int or None
        Target sample rate (``None`` keeps the file's).
    mono : bool
        Average the channels (as ``librosa.load``).

    Returns
    -------
    y : np.ndarray [shape=(n,) or (channels, n)], float32
    sr : int
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParameterError(f"audio file {path!r} does not exist")
    data: np.ndarray
    try:
        import soundfile

        data, file_sr = soundfile.read(path, dtype="float32", always_2d=True)
        data = data.T
    except ImportError:
        if not path.lower().endswith(".wav"):
            raise _requires("soundfile", "audio") from None
        from scipy.io import wavfile

        file_sr, raw = wavfile.read(path)
        data = _int_to_float(raw)
        data = data[None, :] if data.ndim == 1 else data.T
    except Exception as exc:  # soundfile's own errors (unknown format, corrupt file)
        raise ParameterError(f"cannot read audio file {path!r}: {exc}") from None
    if data.shape[-1] == 0:
        raise ParameterError(f"audio file {path!r} has no samples")
    y = data.mean(axis=0, dtype=np.float32) if mono else np.ascontiguousarray(data, dtype=np.float32)
    if sr is not None and int(sr) != int(file_sr):
        y = resample(y, orig_sr=int(file_sr), target_sr=int(sr))
        file_sr = int(sr)
    return y, int(file_sr)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr's ``HQ`` quality (librosa's default ``soxr_hq``)."""
    try:
        import soxr
    except ImportError:
        raise _requires("soxr", "audio") from None
    if orig_sr <= 0 or target_sr <= 0:
        raise ParameterError(f"sample rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}")
    out = soxr.resample(np.ascontiguousarray(y.T), orig_sr, target_sr, quality="HQ").T
    return np.ascontiguousarray(out, dtype=np.float32)
