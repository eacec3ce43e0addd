"""Hugging Face ``transformers`` feature extractors, computed by supermel.

Each class subclasses the ``transformers`` class of the same name and
replaces only the method that computes the features with the matching
supermel front end. Everything else stays ``transformers``' own code: the
constructor, padding and truncation, attention masks, normalisation, return
types, ``from_pretrained`` and ``save_pretrained``. A saved configuration still
names the ``transformers`` class, so checkpoints stay portable.

===================================  =====================  ==========================================
class                                supermel front end     ``transformers`` method replaced
===================================  =====================  ==========================================
:class:`WhisperFeatureExtractor`     ``whisper-80``         ``_torch_extract_fbank_features``,
                                                            ``_np_extract_fbank_features``
:class:`ASTFeatureExtractor`         ``ast``                ``_extract_fbank_features``
:class:`SeamlessM4TFeatureExtractor` ``kaldi-fbank``        ``_extract_fbank_features``
:class:`ParakeetFeatureExtractor`    ``nemo-80`` core       ``_torch_extract_fbank_features``
                                                            (``transformers >= 4.57``)
===================================  =====================  ==========================================

Examples
--------
>>> from supermel.integrations.transformers import WhisperFeatureExtractor
>>> fe = WhisperFeatureExtractor.from_pretrained("openai/whisper-small")  # doctest: +SKIP
>>> batch = fe(audio, sampling_rate=16000, return_tensors="pt")  # doctest: +SKIP

An extractor that is already built, for example inside a processor, can be
swapped for its supermel twin with the same configuration:

>>> processor.feature_extractor = accelerate(processor.feature_extractor)  # doctest: +SKIP

Differences from ``transformers``
---------------------------------
* The features agree to float32 rounding (``tests/test_integrations.py``).
  Whisper's filterbank is librosa's Slaney bank, which differs from
  ``transformers.audio_utils.mel_filter_bank`` by at most 4e-9.
  ``transformers`` computes AST and SeamlessM4T features in float64 numpy, one
  frame at a time; supermel computes them in float32.
* Audio containing NaN or Inf raises :class:`supermel.ParameterError`, where
  ``transformers`` returns NaN features.
* The Whisper ``device`` argument runs supermel on that device, as
  ``transformers`` does.
* At the edges, as ``transformers``: Whisper keeps its 8000 Hz top at 4 and 8 kHz (zero
  filters above Nyquist), AST (numpy route) and SeamlessM4T frame 400 / 160 samples at any
  rate, Parakeet gives one frame for empty audio. Where ``transformers``' numpy route fails
  (AST, SeamlessM4T: fewer than 240 samples, numpy's "negative dimensions are not allowed"),
  the twins raise :class:`supermel.ParameterError`, also a ``ValueError``.

Install with ``pip install "supermel[transformers]"``.
"""

from __future__ import annotations

from typing import Any, Dict, Type

import numpy as np
import torch

from .._errors import ParameterError
from ..presets import Frontend
from ._cache import cached_frontend as _frontend

try:
    from transformers import ASTFeatureExtractor as _HFAST
    from transformers import SeamlessM4TFeatureExtractor as _HFSeamlessM4T
    from transformers import WhisperFeatureExtractor as _HFWhisper
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise ImportError(
        "supermel.integrations.transformers needs Hugging Face transformers: pip install 'supermel[transformers]'"
    ) from exc
try:  # whether transformers' AST extractor takes its torchaudio route (25 / 10 ms frames at any rate)
    from transformers.utils import is_speech_available as _is_speech_available
except ImportError:  # pragma: no cover - older transformers

    def _is_speech_available() -> bool:
        return False


try:  # transformers >= 4.57
    from transformers import ParakeetFeatureExtractor as _HFParakeet
except ImportError:  # pragma: no cover - older transformers
    _HFParakeet = None

__all__ = ["WhisperFeatureExtractor", "ASTFeatureExtractor", "SeamlessM4TFeatureExtractor", "accelerate"]


class WhisperFeatureExtractor(_HFWhisper):
    """``transformers.WhisperFeatureExtractor`` with supermel's ``whisper-80`` front end.

    Same constructor and call as the ``transformers`` class. The log-mel
    features of each padded or truncated example are computed as
    ``supermel.frontend("whisper-80", n_mels=feature_size, sr=sampling_rate,
    n_fft=n_fft, hop_length=hop_length)``. The dynamic-range floor is taken per
    example, as ``transformers`` does. ``dither`` adds
    ``dither * torch.randn`` to the waveform, the same draw as ``transformers``.
    Output: ``input_features`` of shape ``(batch, feature_size, frames)``.

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.integrations.transformers import WhisperFeatureExtractor
    >>> fe = WhisperFeatureExtractor()         # or .from_pretrained("openai/whisper-small")
    >>> fe(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="np")["input_features"].shape
    (1, 80, 3000)
    """

    def _supermel(self, device: str) -> Frontend:
        overrides = (
            ("n_mels", int(self.feature_size)),
            ("sr", float(self.sampling_rate)),
            ("n_fft", int(self.n_fft)),
            ("win_length", int(self.n_fft)),
            ("hop_length", int(self.hop_length)),
            ("fmax_above_nyquist", True),  # transformers keeps 8000 Hz at 4 and 8 kHz (zero filters above Nyquist)
        )
        return _frontend("whisper-80", str(device), overrides)

    def _torch_extract_fbank_features(self, waveform: np.ndarray, device: str = "cpu") -> np.ndarray:
        """``(batch, samples)`` or ``(samples,)`` float32 -> ``(batch, feature_size, frames)`` numpy."""
        x = torch.from_numpy(np.asarray(waveform, dtype=np.float32)).to(device)
        if getattr(self, "dither", 0.0):
            x = x + self.dither * torch.randn(x.shape, dtype=x.dtype, device=x.device)
        return self._supermel(device)(x).cpu().numpy()

    def _np_extract_fbank_features(self, waveform_batch: np.ndarray, device: str = "cpu") -> np.ndarray:
        """As :meth:`_torch_extract_fbank_features` (supermel always has torch)."""
        return self._torch_extract_fbank_features(waveform_batch, device)


def _frames_of_samples(sampling_rate: float, window: int = 400, shift: int = 160) -> tuple:
    """Kaldi ``frame_length`` / ``frame_shift`` (ms) that give ``window`` / ``shift`` samples at any rate.

    transformers' numpy fbank route frames 400 / 160 *samples* whatever ``sampling_rate`` is
    (25 / 10 ms only at 16 kHz). Kaldi's sizes are ``int(rate * ms / 1000)``: half a sample more
    makes the truncation land on the intended count despite float rounding.
    """
    sr = float(sampling_rate)
    return (("frame_length", (window + 0.5) * 1000.0 / sr), ("frame_shift", (shift + 0.5) * 1000.0 / sr))


def _refuse_as_numpy_route(y: np.ndarray, what: str, window: int = 400, shift: int = 160) -> None:
    """transformers' numpy fbank fails on fewer than ``window - shift`` samples: so does its twin.

    Its frame count ``1 + floor((n - 400) / 160)`` is negative there and numpy raises
    ``ValueError: negative dimensions are not allowed``; empty and 1-sample audio fail too. The
    twin raises :class:`~supermel.ParameterError` (a ``ValueError``) on the same inputs.
    """
    n = int(y.shape[-1]) if y.ndim else 0
    if y.ndim != 1 or n < window - shift:
        raise ParameterError(
            f"the waveform has shape {tuple(y.shape)}: transformers' {what} (numpy route) needs at least "
            f"{window - shift} samples of mono audio (it raises 'negative dimensions are not allowed'); so does its supermel twin"
        )


class ASTFeatureExtractor(_HFAST):
    """``transformers.ASTFeatureExtractor`` with supermel's ``ast`` front end.

    The Kaldi fbank features (Hann window, ``num_mel_bins`` bins, zero-padded or
    cut to ``max_length`` frames) are computed by supermel. ``transformers`` then
    normalises them (``do_normalize``) as usual.
    Output: ``input_values`` of shape ``(batch, max_length, num_mel_bins)``.

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.integrations.transformers import ASTFeatureExtractor
    >>> fe = ASTFeatureExtractor()
    >>> fe(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="np")["input_values"].shape
    (1, 1024, 128)
    """

    def _extract_fbank_features(self, waveform: np.ndarray, max_length: int) -> np.ndarray:
        """``(samples,)`` -> ``(max_length, num_mel_bins)`` float32 numpy, before normalisation."""
        overrides = (
            ("num_mel_bins", int(self.num_mel_bins)),
            ("sample_frequency", float(self.sampling_rate)),
            ("max_length", int(max_length)),
            ("do_normalize", False),
        )
        y = np.asarray(np.squeeze(waveform), dtype=np.float32)
        if not _is_speech_available():  # transformers' numpy route: 400 / 160 samples at any rate
            overrides += _frames_of_samples(self.sampling_rate)
            _refuse_as_numpy_route(y, "ASTFeatureExtractor")
        return _frontend("ast", "cpu", overrides)(y)


class SeamlessM4TFeatureExtractor(_HFSeamlessM4T):
    """``transformers.SeamlessM4TFeatureExtractor`` (w2v-BERT 2.0) with supermel's Kaldi fbank.

    The log-mel fbank of the int16-scaled waveform (Povey window, 25/10 ms,
    ``num_mel_bins`` bins from 20 Hz to Nyquist) is computed by supermel.
    ``transformers`` then normalises each mel bin, pads and stacks the frames
    (``stride``) as usual. The first channel of stereo input is used, as in
    ``transformers``.
    Output: ``input_features`` of shape ``(batch, frames / stride, stride * num_mel_bins)``.

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.integrations.transformers import SeamlessM4TFeatureExtractor
    >>> fe = SeamlessM4TFeatureExtractor()
    >>> fe(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="np")["input_features"].shape
    (1, 49, 160)
    """

    def _extract_fbank_features(self, waveform: np.ndarray) -> np.ndarray:
        """``(samples,)`` -> ``(frames, num_mel_bins)`` float32 numpy."""
        if len(waveform.shape) == 2:
            waveform = waveform[0]
        overrides = (
            ("num_mel_bins", int(self.num_mel_bins)),
            ("sample_frequency", float(self.sampling_rate)),
            ("int16_scale", True),
        ) + _frames_of_samples(self.sampling_rate)  # transformers: 400 / 160 samples at any rate
        y = np.asarray(np.squeeze(waveform), dtype=np.float32)
        _refuse_as_numpy_route(y, "SeamlessM4TFeatureExtractor")
        return _frontend("kaldi-fbank", "cpu", overrides)(y)


_TWINS: Dict[Type[Any], Type[Any]] = {
    _HFWhisper: WhisperFeatureExtractor,
    _HFAST: ASTFeatureExtractor,
    _HFSeamlessM4T: SeamlessM4TFeatureExtractor,
}

if _HFParakeet is not None:

    class ParakeetFeatureExtractor(_HFParakeet):  # type: ignore[valid-type,misc]
        """``transformers.ParakeetFeatureExtractor`` (NeMo >= 2.5 features) with supermel's NeMo core.

        ``transformers`` pre-emphasises and masks the padded batch, then calls
        ``_torch_extract_fbank_features``; supermel computes that step: the
        zero-padded centred STFT (``n_fft``, ``win_length`` symmetric Hann,
        ``hop_length``), power, Slaney mels from 0 to ``sampling_rate / 2`` and
        ``ln(M + 2^-24)``, i.e. ``supermel.frontend("nemo-80", variant="2.4",
        pad_mode="constant", preemphasis=0.0, normalize=None)``. ``transformers``
        then normalises per feature and builds the attention mask as usual.
        Needs ``transformers >= 4.57``.

        Examples
        --------
        >>> import numpy as np
        >>> from supermel.integrations.transformers import ParakeetFeatureExtractor
        >>> fe = ParakeetFeatureExtractor()
        >>> fe(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="np")["input_features"].shape
        (1, 101, 80)
        """

        def _torch_extract_fbank_features(self, waveform: torch.Tensor, device: str = "cpu") -> torch.Tensor:
            """``(batch, samples)`` pre-emphasised tensor -> ``(batch, frames, feature_size)`` log-mel tensor."""
            overrides = (
                ("n_mels", int(self.feature_size)),
                ("sr", float(self.sampling_rate)),
                ("n_fft", int(self.n_fft)),
                ("win_length", int(self.win_length)),
                ("hop_length", int(self.hop_length)),
                ("fmax", float(self.sampling_rate) / 2),
                ("variant", "2.4"),
                ("pad_mode", "constant"),
                ("preemphasis", 0.0),
                ("normalize", None),
            )
            x = torch.as_tensor(waveform).to(device=device, dtype=torch.float32)
            if x.shape[-1] == 0:
                # transformers' STFT zero-pads before anything is checked: empty audio is one frame
                # of the padding, the same frame as one zero sample gives
                x = x.new_zeros(x.shape[:-1] + (1,))
            return _frontend("nemo-80", str(device), overrides)(x).transpose(-1, -2)

    _TWINS[_HFParakeet] = ParakeetFeatureExtractor
    __all__.append("ParakeetFeatureExtractor")


def accelerate(extractor: Any) -> Any:
    """The supermel twin of a ``transformers`` feature extractor, with the same configuration.

    Parameters
    ----------
    extractor : transformers.WhisperFeatureExtractor, ASTFeatureExtractor or SeamlessM4TFeatureExtractor
        For example ``processor.feature_extractor``. A supermel extractor is
        returned unchanged.

    Returns
    -------
    The extractor of this module built from ``extractor.to_dict()``.

    Raises
    ------
    ParameterError
        For any other extractor class.

    Examples
    --------
    >>> import transformers
    >>> from supermel.integrations.transformers import accelerate
    >>> fe = accelerate(transformers.WhisperFeatureExtractor(feature_size=128))
    >>> type(fe).__module__, fe.feature_size
    ('supermel.integrations.transformers', 128)
    """
    if isinstance(extractor, tuple(_TWINS.values())):
        return extractor
    twin = _TWINS.get(type(extractor))
    if twin is None:
        names = ", ".join(sorted(c.__name__ for c in _TWINS))
        raise ParameterError(
            f"extractor is a {type(extractor).__module__}.{type(extractor).__name__}; supermel can replace only "
            f"transformers' {names}"
        )
    return twin.from_dict(extractor.to_dict())
