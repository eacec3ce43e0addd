"""faster-whisper's feature extractor, computed by supermel.

faster-whisper (SYSTRAN/faster-whisper) computes Whisper's log-mel input in
numpy (``faster_whisper/feature_extractor.py``) for the whole file at once,
or for each 30 s chunk of ``BatchedInferencePipeline``. :class:`FeatureExtractor`
subclasses that class and keeps its constructor, attributes and call
signature; supermel's ``whisper-80`` front end computes the features.

>>> from faster_whisper import WhisperModel  # doctest: +SKIP
>>> from supermel.integrations.faster_whisper import accelerate
>>> model = accelerate(WhisperModel("small"))  # doctest: +SKIP
>>> segments, info = model.transcribe("speech.wav")  # doctest: +SKIP

Differences from faster-whisper
-------------------------------
* The features agree to float32 rounding (``tests/test_integrations.py``).
* Audio containing NaN or Inf raises :class:`supermel.ParameterError`, where
  faster-whisper returns NaN features.
* As faster-whisper: the ``padding`` zeros are appended before anything is checked, so
  empty audio gives one frame (``WhisperModel.transcribe`` of empty or all-silent audio
  with ``vad_filter=True`` returns no segments), and every sampling rate keeps Whisper's
  8000 Hz top (at 8 kHz the filters above Nyquist are zero).

Install with ``pip install "supermel[faster-whisper]"``.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from .._errors import ParameterError
from ._cache import cached_frontend

try:
    from faster_whisper.feature_extractor import FeatureExtractor as _FWFeatureExtractor
except ImportError as exc:  # pragma: no cover - exercised only without faster-whisper
    raise ImportError("supermel.integrations.faster_whisper needs faster-whisper: pip install 'supermel[faster-whisper]'") from exc

__all__ = ["FeatureExtractor", "accelerate"]


class FeatureExtractor(_FWFeatureExtractor):
    """``faster_whisper.feature_extractor.FeatureExtractor`` with supermel's ``whisper-80`` front end.

    Same constructor (``feature_size``, ``sampling_rate``, ``hop_length``,
    ``chunk_length``, ``n_fft``) and call: ``extractor(waveform, padding=160,
    chunk_length=None)`` appends ``padding`` zeros and returns the
    ``(feature_size, 1 + (n + padding) // hop_length)`` float32 log-mel of a
    ``(n,)`` waveform, as faster-whisper (which passes 1-D audio only). A
    ``(batch, n)`` waveform gives ``(batch, feature_size, frames)``, each example
    floored at its own maximum (faster-whisper's numpy code would pad such an
    array along both axes).

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.integrations.faster_whisper import FeatureExtractor
    >>> FeatureExtractor()(np.zeros(16000, np.float32)).shape
    (80, 101)
    """

    def __call__(self, waveform: np.ndarray, padding: int = 160, chunk_length: Optional[int] = None) -> np.ndarray:
        if chunk_length is not None:  # faster-whisper's side effect, kept
            self.n_samples = chunk_length * self.sampling_rate
            self.nb_max_frames = self.n_samples // self.hop_length
        y = np.asarray(waveform, dtype=np.float32)
        overrides = (
            ("n_mels", int(self.mel_filters.shape[0])),
            ("sr", float(self.sampling_rate)),
            ("n_fft", int(self.n_fft)),
            ("win_length", int(self.n_fft)),
            ("hop_length", int(self.hop_length)),
            ("padding", int(padding or 0)),
            ("fmax_above_nyquist", True),  # faster-whisper keeps 8000 Hz at any rate (zero filters above Nyquist)
        )
        fe = cached_frontend("whisper-80", "cpu", overrides)
        if y.shape[-1] + int(padding or 0) >= self.n_fft:
            return fe(y)
        with warnings.catch_warnings():  # faster-whisper computes a few samples silently (reflect padding)
            warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal", category=UserWarning)
            return fe(y)


def accelerate(model: Any) -> Any:
    """Give a faster-whisper ``WhisperModel`` (or ``BatchedInferencePipeline``) supermel's extractor.

    Replaces ``model.feature_extractor`` in place by a :class:`FeatureExtractor`
    with the same configuration, and returns ``model``.

    Raises
    ------
    ParameterError
        When ``model`` has no faster-whisper feature extractor.

    Parameters
    ----------
    model : faster_whisper.WhisperModel or faster_whisper.BatchedInferencePipeline

    Returns
    -------
    The same ``model``.

    Examples
    --------
    >>> from faster_whisper import WhisperModel                 # doctest: +SKIP
    >>> from supermel.integrations.faster_whisper import accelerate
    >>> model = accelerate(WhisperModel("small"))               # doctest: +SKIP
    >>> type(model.feature_extractor).__module__                # doctest: +SKIP
    'supermel.integrations.faster_whisper'
    """
    target = model.model if hasattr(model, "model") and hasattr(model.model, "feature_extractor") else model
    old = getattr(target, "feature_extractor", None)
    if not isinstance(old, _FWFeatureExtractor):
        raise ParameterError(
            f"model is a {type(model).__name__} without a faster-whisper feature_extractor; pass a "
            "faster_whisper.WhisperModel or BatchedInferencePipeline"
        )
    if not isinstance(old, FeatureExtractor):
        new = FeatureExtractor(
            feature_size=int(old.mel_filters.shape[0]),
            sampling_rate=old.sampling_rate,
            hop_length=old.hop_length,
            chunk_length=old.chunk_length,
            n_fft=old.n_fft,
        )
        new.n_samples, new.nb_max_frames = old.n_samples, old.nb_max_frames
        target.feature_extractor = new
    return model
