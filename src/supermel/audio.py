"""Audio files in and out: the bundled example clip, loading and resampling.

WAV files load with scipy (a run-time dependency). Other formats need the
``audio`` extra (``soundfile``); resampling needs ``soxr`` (librosa's default
resampler, ``soxr_hq``). Audio comes back as float32 in ``[-1, 1]``,
``(n_samples,)`` for mono or ``(channels, n_samples)`` with ``mono=False``.

A WAV file whose header declares more audio than the file holds (a truncated
download or copy) is read as far as it goes, with a
:class:`TruncatedAudioWarning` naming the file and the shortfall.
"""

from __future__ import annotations

import os
import struct
import warnings
from importlib import resources
from typing import Optional, Tuple, Union

import numpy as np

from ._errors import ParameterError

__all__ = ["example_path", "example_audio", "load", "resample", "TruncatedAudioWarning"]

PathLike = Union[str, "os.PathLike[str]"]


def example_path() -> str:
    """Path of the bundled example: 12 s of synthetic English speech (espeak-ng), 16 kHz mono int16 WAV.

    Returns
    -------
    str

    Examples
    --------
    >>> import os, supermel
    >>> os.path.basename(supermel.audio.example_path())
    'speech_16k.wav'
    """
    return str(resources.files("supermel") / "data" / "speech_16k.wav")


def example_audio() -> Tuple[np.ndarray, int]:
    """The bundled example as ``(y, sr)``: float32 ``(192146,)`` and 16000.

    Returns
    -------
    y : np.ndarray [shape=(192146,)], float32
    sr : int

    Examples
    --------
    >>> import supermel
    >>> y, sr = supermel.audio.example_audio()
    >>> y.shape, y.dtype, sr
    ((192146,), dtype('float32'), 16000)
    """
    return load(example_path())


class TruncatedAudioWarning(UserWarning):
    """A WAV file holds fewer frames than its header declares; :func:`load` reads what is there.

    Examples
    --------
    >>> import warnings, supermel
    >>> issubclass(supermel.audio.TruncatedAudioWarning, UserWarning)
    True
    """


def _requires(module: str, extra: str) -> ParameterError:
    return ParameterError(f"this needs the optional module {module!r}: pip install 'supermel[{extra}]'")


def _int_to_float(data: np.ndarray) -> np.ndarray:
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float32)


def _wav_shortfall(path: str) -> Optional[Tuple[int, int]]:
    """``(declared, present)`` frames of a truncated RIFF/RIFX WAV file, else ``None``.

    libsndfile (and scipy) quietly clip ``frames`` to what the file holds, so
    the data chunk's declared size is read from the header and compared with
    the file's size. Unknown sizes (0 or 0xFFFFFFFF, written by streaming
    encoders) and other formats are not checked.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            endian = "<" if head[:4] == b"RIFF" else ">"
            block_align = 0
            pos = 12
            for _ in range(64):  # chunks before "data" (fmt, LIST, fact, ...); a bounded walk
                fh.seek(pos)
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(min(csize, 16))
                    if len(fmt) >= 14:
                        block_align = struct.unpack(endian + "H", fmt[12:14])[0]
                elif cid == b"data":
                    if block_align <= 0 or csize in (0, 0xFFFFFFFF):
                        return None
                    present = size - (pos + 8)
                    if csize <= present:
                        return None
                    return csize // block_align, max(present, 0) // block_align
                pos += 8 + csize + (csize & 1)  # chunks are padded to an even size
    except (OSError, struct.error):
        pass
    return None


def _check_path(path: str) -> None:
    """A clear error unless ``path`` is a regular file."""
    if os.path.isfile(path):
        return
    if os.path.isdir(path):
        raise ParameterError(f"audio file {path!r} is a directory, not an audio file")
    if os.path.exists(path):
        raise ParameterError(f"audio file {path!r} is not a regular file")
    raise ParameterError(f"audio file {path!r} does not exist")


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

    Raises
    ------
    supermel.ParameterError
        A file that cannot be read or holds no samples, or soundfile missing (with the install command).

    Examples
    --------
    >>> import supermel
    >>> y, sr = supermel.audio.load(supermel.audio.example_path(), sr=8000)
    >>> y.shape, sr
    ((96073,), 8000)
    """
    path = os.fspath(path)
    _check_path(path)
    short = _wav_shortfall(path)
    if short is not None:
        warnings.warn(
            f"{path}: header declares {short[0]} frames but the file holds {short[1]}; reading what is there",
            TruncatedAudioWarning,
            stacklevel=2,
        )
    data: np.ndarray
    try:
        import soundfile

        with soundfile.SoundFile(path) as fh:
            file_sr = fh.samplerate
            if fh.subtype == "PCM_16":
                # 16-bit PCM (most corpora): read as int16 and scale here, 2.5x faster for a WAV than
                # libsndfile's float conversion and the same numbers (x / 32768 is exact in float32)
                data = fh.read(dtype="int16", always_2d=True).T.astype(np.float32)
                data *= np.float32(1.0 / 32768.0)
            else:
                data = fh.read(dtype="float32", always_2d=True).T
    except ImportError:
        if not path.lower().endswith(".wav"):
            raise _requires("soundfile", "audio") from None
        from scipy.io import wavfile

        if short is None:
            file_sr, raw = wavfile.read(path)
        else:
            with warnings.catch_warnings():  # already reported above, in frames instead of bytes
                warnings.filterwarnings("ignore", message="Reached EOF prematurely")
                file_sr, raw = wavfile.read(path)
        data = _int_to_float(raw)
        data = data[None, :] if data.ndim == 1 else data.T
    except Exception as exc:  # soundfile's own errors (unknown format, corrupt file)
        raise ParameterError(f"cannot read audio file {path!r}: {exc}") from None
    if data.shape[-1] == 0:
        raise ParameterError(f"audio file {path!r} has no samples")
    if mono:  # one channel: as is (librosa.to_mono leaves 1-D audio alone); more: their mean
        y = np.ascontiguousarray(data[0], dtype=np.float32) if data.shape[0] == 1 else data.mean(axis=0, dtype=np.float32)
    else:
        y = np.ascontiguousarray(data, dtype=np.float32)
    if sr is not None and int(sr) != int(file_sr):
        y = resample(y, orig_sr=int(file_sr), target_sr=int(sr))
        file_sr = int(sr)
    return y, int(file_sr)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr's ``HQ`` quality (librosa's default ``soxr_hq``).

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        Audio.
    orig_sr, target_sr : int > 0
        Sample rates in Hz.

    Returns
    -------
    np.ndarray
        ``ceil(n * target_sr / orig_sr)`` samples, the dtype of ``y``.

    Raises
    ------
    supermel.ParameterError
        A non-positive rate, or soxr missing (with the install command).

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.audio.resample(np.zeros(16000, np.float32), orig_sr=16000, target_sr=22050).shape
    (22050,)
    """
    try:
        import soxr
    except ImportError:
        raise _requires("soxr", "audio") from None
    if orig_sr <= 0 or target_sr <= 0:
        raise ParameterError(f"sample rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}")
    out = soxr.resample(np.ascontiguousarray(y.T), orig_sr, target_sr, quality="HQ").T
    return np.ascontiguousarray(out, dtype=np.float32)
