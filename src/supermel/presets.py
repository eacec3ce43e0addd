"""Model front ends: the exact feature extraction of well-known speech models, offline.

``supermel.frontend(name, **overrides)`` returns a :class:`torch.nn.Module`;
``supermel.frontends()`` lists the names. Each front end is

* a **frozen configuration** (a dataclass with ``as_dict`` / ``from_dict``;
  a partial dict fills in the preset's defaults, an unknown key raises
  :class:`~supermel.ParameterError` naming it), and
* a **module** holding one core :class:`~supermel.MelSpectrogram` (``.core``)
  and applying ``pre`` (waveform step: pre-emphasis, int16 scaling, Whisper's
  pad/trim), the core, and ``post`` (log, clipping, normalisation).

The numbers follow ``docs/frontends.md`` (sources: each model's repository);
the tests compare each preset with the original package where it exists
(openai-whisper, kaldi-native-fbank) and with the librosa expression of the
original code elsewhere.

Designed for a streaming wrapper
--------------------------------
Every module exposes the pieces a chunked implementation composes:

``pre(y, prev=None)``
    The waveform step on ``(B, L)``; ``prev`` holds the ``pre_context`` samples
    that preceded ``y`` (1 for pre-emphasis, else 0); ``None`` is the start of
    the signal (pre-emphasis then uses ``y[0] = x[0]``).
``core``
    The :class:`~supermel.MelSpectrogram` (its ``mel_from_padded`` is the
    streaming entry point). Kaldi front ends frame the signal themselves
    (:mod:`supermel.kaldi`) and use the core's window, power spectrum and
    filterbank.
``drop_last``
    Frames dropped at the end of the input (Whisper drops 1).
``post_local(mel)`` / ``post_global(x)`` / ``post(mel)``
    ``post = post_global o post_local``. ``post_local`` is frame by frame;
    ``post_global`` needs the whole input (identity for frame-local presets).
``frame_local``
    True when each output frame depends only on its own analysis window
    (plus ``pre_context``). False for Whisper (dynamic range floored at the
    *whole input's* maximum) and NeMo with ``normalize="per_feature"``
    (per-utterance mean/std). For those a streaming wrapper can only emit
    ``post_local`` frames (Whisper: ``log10`` mel; NeMo: ``ln(mel + 2^-24)``)
    as they become ready, and apply ``post_global`` once the input is
    finished; applying it per chunk would normalise each chunk by its own
    statistics and would not equal the offline result.
``time_axis``
    The output's time axis (-1, or -2 for time-major layouts).
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, Union

import numpy as np
import torch
from torch import nn

from . import _core, kaldi
from ._errors import ParameterError
from .filters import check_mel_params, get_window, kaldi_mel_filters
from .modules import MelSpectrogram, _float_dtype

if TYPE_CHECKING:
    from .streaming_presets import StreamingFrontend

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
    "preemphasis",
    "wav2lip_mel_chunks",
    "wav2lip_window_ratio",
    "wav2lip_window_start",
]

Array = Union[np.ndarray, torch.Tensor]

#: float32 machine epsilon: Kaldi's log floor (``std::numeric_limits<float>::epsilon()``).
FLOAT32_EPS = kaldi.FLOAT32_EPS


# =========================================================================== checks
def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class _Checker:
    """Field checks whose messages name the preset, the field, the value and the fix."""

    def __init__(self, cfg: "FrontendConfig") -> None:
        self.cfg = cfg
        self.where = cfg.name or type(cfg).__name__

    def fail(self, field: str, msg: str) -> None:
        raise ParameterError(f"{self.where}: {field}={getattr(self.cfg, field)!r} {msg}")

    def boolean(self, *names: str) -> None:
        for n in names:
            if not isinstance(getattr(self.cfg, n), (bool, np.bool_)):
                self.fail(n, "must be True or False")

    def real(self, name: str, *, lo: Optional[float] = None, lo_open: bool = False, hi: Optional[float] = None, none: bool = False) -> None:
        v = getattr(self.cfg, name)
        if v is None and none:
            return
        if not _is_real(v):
            self.fail(name, "must be a finite number" + (" or None" if none else ""))
        if lo is not None and (v <= lo if lo_open else v < lo):
            self.fail(name, f"must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and v > hi:
            self.fail(name, f"must be <= {hi}")

    def integer(self, name: str, *, lo: int = 0) -> None:
        v = getattr(self.cfg, name)
        if not _is_int(v) or v < lo:
            self.fail(name, f"must be an integer >= {lo}")

    def choice(self, name: str, choices: Tuple[Any, ...]) -> None:
        v = getattr(self.cfg, name)
        if v not in choices:
            self.fail(name, f"is not one of {choices}")


# =========================================================================== configurations
@dataclass(frozen=True)
class FrontendConfig:
    """Base of the front-end configurations: frozen, comparable, JSON-friendly.

    ``name`` is the preset the configuration started from (informational; it
    selects the defaults in :meth:`from_dict`).
    """

    name: str = ""

    def __post_init__(self) -> None:
        self._validate(_Checker(self))

    def _validate(self, c: _Checker) -> None:
        if not isinstance(self.name, str):
            c.fail("name", "must be a string")

    def as_dict(self) -> Dict[str, Any]:
        """All fields as a plain dict (JSON-serialisable; tuples become lists in JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FrontendConfig":
        """Build a configuration from a (possibly partial) dict.

        Missing keys take the defaults of the preset ``d["name"]`` when given,
        else of this class; unknown keys raise :class:`~supermel.ParameterError`.
        """
        if not isinstance(d, Mapping):
            raise ParameterError(f"from_dict needs a dict, not {type(d).__name__}")
        d = dict(d)
        name = d.pop("name", None)
        if name is not None:
            base = preset_config(name)
            if not isinstance(base, cls):
                raise ParameterError(f"preset {name!r} has a {type(base).__name__}, not a {cls.__name__}; call {type(base).__name__}.from_dict")
        elif cls is FrontendConfig or cls is MelConfig:
            raise ParameterError(f"{cls.__name__}.from_dict needs a 'name' key (one of {sorted(_PRESETS)})")
        else:
            base = cls()
        return base.replace(**d)

    def replace(self, **changes: Any) -> "FrontendConfig":
        """A copy with some fields changed (validated; unknown names raise)."""
        known = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ParameterError(
                f"{self.name or type(self).__name__}: unknown parameter(s) {unknown}; the parameters are {known}"
            )
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MelConfig(FrontendConfig):
    """The core analysis: ``librosa.feature.melspectrogram`` keywords, plus two hooks.

    ``periodic`` selects the periodic (librosa, default) or symmetric window
    (NeMo's ``torch.hann_window(periodic=False)``). ``pad`` is the padding on
    each side (``None``: ``n_fft // 2`` if ``center`` else 0, subclasses may
    say otherwise) and ``mag_eps`` is added to ``re^2 + im^2`` before the
    power (HiFi-GAN's ``1e-9``).
    """

    sr: float = 22050
    n_fft: int = 2048
    hop_length: int = 512
    win_length: Optional[int] = None
    window: Any = "hann"
    periodic: bool = True
    center: bool = True
    pad_mode: str = "constant"
    pad: Optional[int] = None
    power: float = 2.0
    mag_eps: float = 0.0
    n_mels: int = 128
    fmin: float = 0.0
    fmax: Optional[float] = None
    htk: bool = False
    norm: Optional[str] = "slaney"

    def __post_init__(self) -> None:
        if isinstance(self.window, list):  # JSON round trip of ("kaiser", 8.0)
            object.__setattr__(self, "window", tuple(self.window))
        super().__post_init__()

    @property
    def effective_pad_mode(self) -> str:
        return self.pad_mode

    @property
    def effective_pad(self) -> int:
        """Samples of padding on each side of the signal."""
        if self.pad is not None:
            return int(self.pad)
        return self.n_fft // 2 if self.center else 0

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.boolean("periodic", "center", "htk")
        if self.pad is not None:
            c.integer("pad", lo=0)
        c.real("mag_eps", lo=0.0)
        if not isinstance(self.window, (str, tuple)):
            c.fail("window", "must be a window name or a (name, parameter) tuple, e.g. 'hann' or ('kaiser', 8.0)")
        if self.norm not in ("slaney", None):
            c.fail("norm", "must be 'slaney' or None")
        _core.check_stft_params(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            center=bool(self.center) or self.effective_pad > 0,
            pad_mode=self.effective_pad_mode,
            power=self.power,
        )
        check_mel_params(sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax)
        get_window(self.window, self.win_length or self.n_fft, fftbins=bool(self.periodic))


@dataclass(frozen=True)
class Wav2LipConfig(MelConfig):
    """Wav2Lip (Rudrabha/Wav2Lip ``audio.py`` ``melspectrogram``, ``hparams.py``).

    Pre-emphasis ``y[n] = x[n] - preemphasis x[n-1]`` (``y[0] = x[0]``), centred
    STFT 800/200 with Hann, magnitude, 80 Slaney mels 55-7600 Hz, then
    ``D = 20 log10(max(M, 10^(min_level_db/20))) - ref_level_db`` and
    ``clip(2 A (D - min_level_db) / -min_level_db - A, -A, A)`` with
    ``A = max_abs_value`` (``symmetric_mels``; else ``clip(A (D - min) / -min, 0, A)``).
    ``pad_mode`` is "constant" for librosa >= 0.9 forks, "reflect" for the
    released checkpoints (librosa 0.7). Output ``(..., 80, 1 + L // 200)``.
    """

    name: str = "wav2lip"
    sr: float = 16000
    n_fft: int = 800
    hop_length: int = 200
    win_length: Optional[int] = 800
    pad_mode: str = "constant"
    power: float = 1.0
    n_mels: int = 80
    fmin: float = 55.0
    fmax: Optional[float] = 7600.0
    preemphasis: float = 0.97
    min_level_db: float = -100.0
    ref_level_db: float = 20.0
    max_abs_value: float = 4.0
    symmetric_mels: bool = True
    allow_clipping: bool = True

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.real("preemphasis", lo=0.0, hi=1.0)
        c.real("min_level_db", hi=-1e-12)
        c.real("ref_level_db")
        c.real("max_abs_value", lo=0.0, lo_open=True)
        c.boolean("symmetric_mels", "allow_clipping")


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
    ("batch", openai's batched tensors).
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

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.real("log_floor", lo=0.0, lo_open=True)
        c.real("dynamic_range", lo=0.0)
        c.boolean("pad_or_trim")
        c.integer("n_samples", lo=1)
        c.integer("padding", lo=0)
        c.choice("max_scope", ("example", "batch"))


@dataclass(frozen=True)
class LogMelConfig(MelConfig):
    """A mel spectrogram followed by a floored logarithm: ``log(max(M, log_floor))``.

    ``log`` is "ln" or "log10"; ``time_major`` returns ``(..., T, n_mels)``.
    Used by Tacotron2, Vocos, F5-TTS and SpeechT5 (and, through
    :class:`HifiGanConfig`, HiFi-GAN, BigVGAN and VITS).
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
    """

    name: str = "hifigan-22k"
    center: bool = False
    mag_eps: float = 1e-9

    @property
    def effective_pad(self) -> int:
        if self.pad is not None:
            return int(self.pad)
        return self.n_fft // 2 if self.center else (self.n_fft - self.hop_length) // 2


@dataclass(frozen=True)
class NemoConfig(MelConfig):
    """NVIDIA NeMo ``FilterbankFeatures`` (FastConformer, Parakeet, Canary).

    Pre-emphasis 0.97 over the whole signal, centred STFT 512/160 with a
    symmetric Hann(400) centred in 512, power, Slaney mels 0-8000 Hz,
    ``ln(M + log_guard)`` (2^-24), then per-feature normalisation over the valid
    frames (unbiased std, ``+ std_eps``) and ``pad_value`` beyond them.

    ``variant``: "2.5" (NeMo >= 2.5: zero padding, ``L // hop`` valid frames,
    samples past a batch item's length zeroed after pre-emphasis) or "2.4"
    (NeMo <= 2.4: reflect padding, ``L // hop + 1`` valid frames).
    ``pad_mode=None`` follows the variant.
    """

    name: str = "nemo-80"
    sr: float = 16000
    n_fft: int = 512
    hop_length: int = 160
    win_length: Optional[int] = 400
    periodic: bool = False
    pad_mode: Optional[str] = None  # type: ignore[assignment]
    power: float = 2.0
    n_mels: int = 80
    fmax: Optional[float] = 8000.0
    variant: str = "2.5"
    preemphasis: float = 0.97
    log_guard: float = 2.0**-24
    normalize: Optional[str] = "per_feature"
    std_eps: float = 1e-5
    pad_to: int = 0
    pad_value: float = 0.0

    @property
    def effective_pad_mode(self) -> str:
        if self.pad_mode is not None:
            return self.pad_mode
        return "constant" if self.variant == "2.5" else "reflect"

    def _validate(self, c: _Checker) -> None:
        c.choice("variant", ("2.5", "2.4"))
        super()._validate(c)
        c.real("preemphasis", lo=0.0, hi=1.0)
        c.real("log_guard", lo=0.0, lo_open=True)
        c.choice("normalize", ("per_feature", None))
        c.real("std_eps", lo=0.0)
        c.integer("pad_to", lo=0)
        c.real("pad_value")


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
        c.choice("window_type", kaldi.WINDOW_TYPES)
        c.real("blackman_coeff")
        c.integer("num_mel_bins", lo=1)
        c.real("low_freq", lo=0.0)
        c.real("high_freq")
        kaldi.window_sizes(self.sample_frequency, self.frame_length, self.frame_shift, self.round_to_power_of_two)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kaldi_mel_filters(sr=self.sample_frequency, n_fft=self.sizes[2], n_mels=self.num_mel_bins, low_freq=self.low_freq, high_freq=self.high_freq)

    @property
    def sizes(self) -> Tuple[int, int, int]:
        """``(window_size, window_shift, padded_window_size)`` in samples."""
        return kaldi.window_sizes(self.sample_frequency, self.frame_length, self.frame_shift, self.round_to_power_of_two)


@dataclass(frozen=True)
class AstConfig(KaldiFbankConfig):
    """Audio Spectrogram Transformer input (Hugging Face ``ASTFeatureExtractor``).

    torchaudio's Kaldi fbank with ``window_type="hanning"`` and 128 bins on
    ``[-1, 1]`` audio (not int16-scaled), zero-padded or cut to ``max_length``
    frames (``0``: keep every frame), then ``(x - mean) / (2 std)`` when
    ``do_normalize`` (the padding frames too, as in Hugging Face). Output
    ``(..., max_length, num_mel_bins)``. Not frame-local (the fixed length).
    """

    name: str = "ast"
    window_type: str = "hanning"
    num_mel_bins: int = 128
    max_length: int = 1024
    mean: float = -4.2677393
    std: float = 4.5689974
    do_normalize: bool = True

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.integer("max_length", lo=0)
        c.real("mean")
        c.real("std", lo=0.0, lo_open=True)
        c.boolean("do_normalize")


@dataclass(frozen=True)
class SeamlessM4TConfig(KaldiFbankConfig):
    """SeamlessM4T / w2v-BERT 2.0 input (Hugging Face ``SeamlessM4TFeatureExtractor``).

    Kaldi fbank on int16-scaled audio (povey, 80 bins, 20 Hz-Nyquist), then per
    mel bin over the utterance ``(x - mean) / sqrt(var_ddof1 + 1e-7)`` when
    ``do_normalize_per_mel_bins``, zero frames appended up to a multiple of
    ``stride``, and every ``stride`` frames stacked into one row. Output
    ``(..., ceil(T / stride), stride * num_mel_bins)``. Not frame-local.
    """

    name: str = "seamless-m4t"
    int16_scale: bool = True
    stride: int = 2
    do_normalize_per_mel_bins: bool = True

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.integer("stride", lo=1)
        c.boolean("do_normalize_per_mel_bins")


@dataclass(frozen=True)
class FunAsrConfig(KaldiFbankConfig):
    """FunASR ``WavFrontend`` (Paraformer, SenseVoice, Fun-ASR: ``funasr/frontends/wav_frontend.py``).

    Kaldi fbank (torchaudio's, ``energy_floor=0``) of the int16-scaled audio with
    a Hamming window and 80 bins; then low frame rate stacking LFR(``lfr_m``,
    ``lfr_n``): ``(lfr_m - 1) // 2`` copies of the first frame in front, output
    frame ``i`` the concatenation of frames ``[i lfr_n, i lfr_n + lfr_m)``, past
    the end copies of the last frame, ``ceil(T / lfr_n)`` frames; then, with
    ``cmvn_file`` (the model's ``am.mvn``), ``(x + shift) * scale`` from its
    ``<AddShift>`` and ``<Rescale>`` rows (:func:`load_funasr_cmvn`). Output
    ``(..., ceil(T / lfr_n), lfr_m * num_mel_bins)``. Dither is 0 (FunASR's class
    default is 1.0; inference configs set it from the model's ``frontend_conf``).
    """

    name: str = "funasr"
    window_type: str = "hamming"
    int16_scale: bool = True
    energy_floor: float = 0.0  # FunASR passes energy_floor=0.0 (used only with use_energy)
    lfr_m: int = 7
    lfr_n: int = 6
    cmvn_file: Optional[str] = None

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.integer("lfr_m", lo=1)
        c.integer("lfr_n", lo=1)
        if self.cmvn_file is not None and not isinstance(self.cmvn_file, str):
            c.fail("cmvn_file", "must be the path of the model's am.mvn (a string) or None")


# =========================================================================== shared steps
def preemphasis(y: Array, coef: float = 0.97, prev: Optional[Array] = None) -> Array:
    """Whole-signal pre-emphasis of ``(B, L)``: ``y[n] = x[n] - coef x[n-1]``.

    ``prev`` (shape ``(B, 1)``) is the sample before ``y[:, 0]`` (a streaming
    chunk's predecessor); ``None`` means the start of the signal, ``y[0] = x[0]``
    (``scipy.signal.lfilter([1, -coef], [1], x)``). Tensors or numpy arrays (the
    CPU streaming path): the same float operations either way.
    """
    if coef == 0.0:
        return y
    if isinstance(y, np.ndarray):
        first = y[..., :1] if prev is None else y[..., :1] - coef * np.asarray(prev, dtype=y.dtype)
        return np.concatenate([first, y[..., 1:] - coef * y[..., :-1]], axis=-1)
    first = y[..., :1] if prev is None else y[..., :1] - coef * prev.to(y.dtype)
    return torch.cat([first, y[..., 1:] - coef * y[..., :-1]], dim=-1)


def _core_for(cfg: MelConfig, **kw: Any) -> MelSpectrogram:
    win_length = cfg.win_length or cfg.n_fft
    window: Any = cfg.window if cfg.periodic else get_window(cfg.window, win_length, fftbins=False)
    return MelSpectrogram(
        sr=cfg.sr,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=win_length,
        window=window,
        center=cfg.center,
        pad_mode=cfg.effective_pad_mode,
        pad=cfg.effective_pad,
        power=cfg.power,
        mag_eps=cfg.mag_eps,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=cfg.htk,
        norm=cfg.norm,
        **kw,
    )


# =========================================================================== modules
def _floored_log(x: torch.Tensor, floor: float, log: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``log(max(x, floor))`` into one new tensor (the log in place on the clamped copy
    when autograd and the compiler do not need the intermediate)."""
    y = torch.clamp(x, min=floor)
    if torch.compiler.is_compiling() or y.requires_grad:
        return log(y)
    return log(y, out=y)


class Frontend(nn.Module):
    """Base of the front-end modules: ``post(core(pre(y)))`` on ``(..., n_samples)``.

    numpy in gives numpy out; tensors stay on their device. The result has the
    module's dtype (float32 unless built with ``dtype=torch.float64``).
    """

    config_class: ClassVar[Type[FrontendConfig]] = MelConfig
    #: Frames dropped at the end of the input (Whisper: 1).
    drop_last: ClassVar[int] = 0

    def __init__(
        self,
        config: Optional[FrontendConfig] = None,
        *,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
        check_finite: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise ParameterError(f"{type(self).__name__} needs a {self.config_class.__name__}, not {type(config).__name__}")
        self.config = config
        self.dtype = _float_dtype(dtype)
        self.check_finite = bool(check_finite)
        self.core = self._build_core(dtype=self.dtype, device=device, check_finite=False, backend=backend)

    def _build_core(self, **kw: Any) -> MelSpectrogram:
        return _core_for(self.config, **kw)  # type: ignore[arg-type]

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> "Frontend":
        # .double() / .float() / .to(dtype) move the constants and the computing precision:
        # the output dtype follows (as dtype= at construction).
        before = self.dtype
        super()._apply(fn, *args, **kwargs)
        after = self.core.spectrogram.window.dtype
        if after not in (torch.float32, torch.float64):
            super()._apply(lambda t: t.to(before) if t.is_floating_point() else t)
            raise ParameterError(
                f"front ends compute in float32 or float64, not {after}; use .float() or .double() "
                "(float16/bfloat16 audio is accepted and computed in float32)"
            )
        if after != before and after == torch.float64:
            # rebuild the core's constants from float64 (a cast of the float32 window and
            # filterbank would keep their float32 rounding): as built with dtype=torch.float64
            spec = self.core.spectrogram
            self.core = self._build_core(dtype=after, device=spec.window.device, check_finite=False, backend=spec.backend)
        self.dtype = after
        return self

    # -- streaming hooks -------------------------------------------------------------
    @property
    def frame_local(self) -> bool:
        """Whether each output frame depends only on its own analysis window (see module docs)."""
        return True

    @property
    def pre_context(self) -> int:
        """Samples before a chunk that :meth:`pre` needs (its ``prev`` argument)."""
        return 0

    @property
    def time_axis(self) -> int:
        """Time axis of the output (-1 for ``(..., n_mels, T)``, -2 for time-major)."""
        return -1

    def pre(self, y: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Waveform step on ``(B, L)`` (identity here)."""
        return y

    @property
    def mel_rows(self) -> int:
        """Rows of :meth:`mel`'s output (the core's mels; Kaldi with ``use_energy``: one more)."""
        return self.core.n_mels

    def pre_length(self, n_samples: int) -> int:
        """Length of the signal after :meth:`pre`."""
        return n_samples

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        """Frame-by-frame part of the post-processing, on ``(B, n_mels, T)``."""
        return mel

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        """Part of the post-processing that needs the whole input (identity for frame-local presets)."""
        return x

    def post(self, mel: torch.Tensor) -> torch.Tensor:
        """``post_global(post_local(mel))``: ``(B, n_mels, T)`` -> the output layout."""
        return self.post_global(self.post_local(mel))

    def streaming(
        self,
        *,
        num_streams: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        chunk_size: Optional[int] = None,
        cuda_graph: bool = False,
        check_finite: bool = True,
    ) -> "StreamingFrontend":
        """This front end, streaming: :class:`supermel.streaming_presets.StreamingFrontend`.

        ``push(chunk)`` returns the frames the chunk completes, ``flush()`` the
        rest; concatenated along :attr:`time_axis` they equal ``self(y)`` for
        frame-local presets. Whisper and NeMo stream their ``post_local`` frames;
        ``finalize(concatenation)`` applies the whole-input step. Arguments as
        :class:`~supermel.StreamingMelSpectrogram` (``device=None``: this
        module's device).
        """
        from .streaming_presets import StreamingFrontend

        return StreamingFrontend(self, num_streams=num_streams, device=device, chunk_size=chunk_size, cuda_graph=cuda_graph, check_finite=check_finite)

    # -- offline ---------------------------------------------------------------------
    def num_frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` input samples."""
        return max(0, self.core.spectrogram.num_frames(self.pre_length(n_samples)) - self.drop_last)

    def mel(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> the core's ``(B, n_mels, T)`` after :meth:`pre` and ``drop_last``."""
        mel = self.core.mel_tf(self.pre(y))
        if self.drop_last:
            mel = mel[..., : max(0, mel.shape[-1] - self.drop_last)]
        return mel

    def features_tf(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tensor -> features ``(B, ...)`` (no validation, no reshaping)."""
        return self.post(self.mel(y))

    def _batch(self, y: Array) -> Tuple[torch.Tensor, Tuple[int, ...], bool]:
        t, shape, was_numpy = _core.as_batch(y, check_finite=self.check_finite)
        dev = self.core.spectrogram.window.device
        if t.dtype != self.dtype or (was_numpy and t.device != dev):
            t = t.to(device=dev if was_numpy else t.device, dtype=self.dtype)
        return t, shape, was_numpy

    def forward(self, y: Array) -> Array:
        """``(..., n_samples)`` audio -> features (layout: see the preset)."""
        t, shape, was_numpy = self._batch(y)
        out = self.features_tf(t)
        if self.check_finite:
            _core.warn_overflow(out, t)
        return _core.from_batch(out, shape, was_numpy)

    def extra_repr(self) -> str:
        try:
            base = preset_config(self.config.name)
        except ParameterError:
            base = None
        if base is None or type(base) is not type(self.config):
            return f"config={self.config!r}"
        changed = {k: v for k, v in self.config.as_dict().items() if getattr(base, k) != v}
        return f"{self.config.name!r}" + "".join(f", {k}={v!r}" for k, v in changed.items())


class Wav2Lip(Frontend):
    """Wav2Lip's mel spectrogram (see :class:`Wav2LipConfig`). Output ``(..., 80, 1 + L // 200)``."""

    config_class = Wav2LipConfig
    config: Wav2LipConfig

    @property
    def pre_context(self) -> int:
        return 1 if self.config.preemphasis else 0

    def pre(self, y: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        return preemphasis(y, self.config.preemphasis, prev)

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.config
        # One route per device: CPU tensors through numpy on the same memory, whatever the
        # number of frames (a streaming push of one frame or an hour offline give the same
        # values for the same mel columns: numpy's and torch's log10 differ in the last bit
        # on some CPUs, so the route must not depend on size). The nine element-wise steps
        # cost ~1 us each in numpy against several us as torch operators. Autograd and the
        # compiler (and other devices) take torch's operators: the same formula, equal to
        # float32 rounding (tested: 2e-6 absolute on the [-4, 4] scale).
        if mel.device.type == "cpu" and not (mel.requires_grad or torch.compiler.is_compiling()):
            return torch.from_numpy(self._post_numpy(mel.detach().numpy()))
        min_level = 10.0 ** (c.min_level_db / 20.0)
        db = 20.0 * torch.log10(torch.clamp(mel, min=min_level)) - c.ref_level_db
        a = c.max_abs_value
        if c.symmetric_mels:
            x = (2.0 * a) * ((db - c.min_level_db) / -c.min_level_db) - a
            lo = -a
        else:
            x = a * ((db - c.min_level_db) / -c.min_level_db)
            lo = 0.0
        return torch.clamp(x, lo, a) if c.allow_clipping else x

    def _post_numpy(self, mel: np.ndarray) -> np.ndarray:
        """:meth:`post_local` on a CPU array: the same operations in the same order, in place
        on one new array (``np.maximum`` makes it; every step is element-wise, so a column's
        value does not depend on how many columns are processed together)."""
        c = self.config
        min_level = 10.0 ** (c.min_level_db / 20.0)
        x = np.maximum(mel, mel.dtype.type(min_level))
        np.log10(x, out=x)
        x *= 20.0
        x -= c.ref_level_db
        a = c.max_abs_value
        x -= c.min_level_db
        x /= -c.min_level_db
        if c.symmetric_mels:
            x *= 2.0 * a
            x -= a
            lo = -a
        else:
            x *= a
            lo = 0.0
        if c.allow_clipping:
            np.clip(x, lo, a, out=x)
        return x


class Whisper(Frontend):
    """OpenAI Whisper's log-mel input (see :class:`WhisperConfig`). Output ``(..., n_mels, frames)``.

    Not frame-local: the floor ``max - 8`` uses the whole input's maximum.
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


class LogMel(Frontend):
    """``log(max(M, log_floor))`` of a mel spectrogram (see :class:`LogMelConfig`, :class:`HifiGanConfig`)."""

    config_class = LogMelConfig
    config: LogMelConfig

    @property
    def time_axis(self) -> int:
        return -2 if self.config.time_major else -1

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.config
        out = _floored_log(mel, c.log_floor, torch.log if c.log == "ln" else torch.log10)
        return out.transpose(-1, -2) if c.time_major else out


class Nemo(Frontend):
    """NVIDIA NeMo's log-mel features (see :class:`NemoConfig`). Output ``(..., n_mels, 1 + L // 160)``.

    ``forward(y, lengths=None)``: ``lengths`` gives each batch item's number of
    valid samples (the rest is padding), as NeMo's ``input_signal_length``.
    Not frame-local with ``normalize="per_feature"``.
    """

    config_class = NemoConfig
    config: NemoConfig

    @property
    def frame_local(self) -> bool:
        # NeMo >= 2.5 also sets the last frame (t >= L // hop) to pad_value.
        c = self.config
        return c.normalize is None and c.pad_to == 0 and c.variant == "2.4"

    @property
    def pre_context(self) -> int:
        return 1 if self.config.preemphasis else 0

    def pre(self, y: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        return preemphasis(y, self.config.preemphasis, prev)

    def valid_frames(self, n_samples: Union[int, torch.Tensor]) -> Union[int, torch.Tensor]:
        """Valid frames of an item with ``n_samples`` samples: ``n // hop`` (2.5) or ``n // hop + 1`` (2.4)."""
        n = n_samples // self.config.hop_length
        return n if self.config.variant == "2.5" else n + 1

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.log(mel + self.config.log_guard)

    def post_global(self, x: torch.Tensor, n_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-feature normalisation over the first ``n_valid`` frames of each item; ``pad_value`` after."""
        c = self.config
        n_frames = x.shape[-1]
        if n_valid is None:
            n_valid = torch.full(x.shape[:-2], n_frames, dtype=torch.long, device=x.device)
        n_valid = n_valid.clamp(max=n_frames)
        mask = torch.arange(n_frames, device=x.device) < n_valid[..., None, None]
        if c.normalize == "per_feature":
            n = n_valid[..., None, None].to(x.dtype)
            xm = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
            mean = xm.sum(dim=-1, keepdim=True) / n
            dev = torch.where(mask, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))
            std = torch.sqrt(dev.square().sum(dim=-1, keepdim=True) / (n - 1))
            x = (x - mean) / (std + c.std_eps)
        x = torch.where(mask, x, torch.full((), c.pad_value, dtype=x.dtype, device=x.device))
        if c.pad_to > 0 and n_frames % c.pad_to:
            x = torch.nn.functional.pad(x, (0, c.pad_to - n_frames % c.pad_to), value=c.pad_value)
        return x

    def _lengths(self, lengths: Optional[Array], n: int, n_items: int, shape: Tuple[int, ...], device: torch.device) -> torch.Tensor:
        if lengths is None:
            return torch.full((n_items,), n, dtype=torch.long, device=device)
        ln = torch.as_tensor(np.asarray(lengths) if not isinstance(lengths, torch.Tensor) else lengths)
        if ln.is_floating_point() or ln.is_complex() or ln.dtype == torch.bool:
            raise ParameterError(f"lengths must be integer sample counts, not {ln.dtype}")
        if tuple(ln.shape) != shape:
            raise ParameterError(f"lengths has shape {tuple(ln.shape)}; it needs one entry per batch item, shape {shape}")
        ln = ln.reshape(-1).to(device=device, dtype=torch.long)
        if bool(((ln < 0) | (ln > n)).any()):
            raise ParameterError(f"lengths must lie in [0, {n}] (the padded length); got {ln.tolist()}")
        return ln

    def features_tf(self, y: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = y.shape[-1]
        if lengths is None:
            lengths = torch.full(y.shape[:-1], n, dtype=torch.long, device=y.device)
        z = self.pre(y)
        if self.config.variant == "2.5":
            z = torch.where(torch.arange(n, device=z.device) < lengths[:, None], z, torch.zeros((), dtype=z.dtype, device=z.device))
        n_valid = self.valid_frames(lengths)
        if self.config.normalize == "per_feature" and bool((n_valid < 2).any()):
            raise ParameterError(
                f"{self.config.name}: per-feature normalisation needs at least 2 valid frames per item "
                f"(>= {2 * self.config.hop_length} samples); got {int(lengths.min())} samples"
            )
        return self.post_global(self.post_local(self.core.mel_tf(z)), n_valid)

    def forward(self, y: Array, lengths: Optional[Array] = None) -> Array:  # type: ignore[override]
        """``(..., n)`` audio (and optional per-item valid ``lengths``) -> ``(..., n_mels, T)``."""
        t, shape, was_numpy = self._batch(y)
        ln = self._lengths(lengths, t.shape[-1], t.shape[0], shape, t.device)
        out = self.features_tf(t, ln)
        if self.check_finite:
            _core.warn_overflow(out, t)
        return _core.from_batch(out, shape, was_numpy)


class KaldiFbank(Frontend):
    """Kaldi log mel filterbank (see :class:`KaldiFbankConfig`). Output ``(..., T, num_mel_bins)``.

    The frames come from :mod:`supermel.kaldi` (Kaldi's framing and per-frame
    dither, DC removal and pre-emphasis). Window, power spectrum and filterbank
    are the core's: the processed frames, zero-padded to the FFT size and laid
    end to end, are a signal whose hop equals the FFT size, so ``core`` is a
    :class:`~supermel.MelSpectrogram` with ``hop_length = n_fft``,
    ``center=False``, the Kaldi window (centred in the FFT size: ``|X|`` does
    not depend on the placement) and the Kaldi bank ``core.mel_scale.fb``; the
    frame shift is ``config.sizes[1]``. Frame-local.
    """

    config_class = KaldiFbankConfig
    config: KaldiFbankConfig
    #: Frames processed per block (bounds the memory of long inputs).
    block_frames: ClassVar[int] = 4096

    def _build_core(self, **kw: Any) -> MelSpectrogram:
        c = self.config
        w, _, n = c.sizes
        fb = kaldi_mel_filters(sr=c.sample_frequency, n_fft=n, n_mels=c.num_mel_bins, low_freq=c.low_freq, high_freq=c.high_freq, dtype=np.float64)
        win = kaldi.kaldi_window(c.window_type, w, blackman_coeff=c.blackman_coeff)
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
        return kaldi.num_frames(n_samples, window_size=w, window_shift=h, snip_edges=self.config.snip_edges)

    def frames_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, T, W)`` frames -> ``(B, bins, T)`` mel energies (Kaldi's per-frame steps, then the core).

        With ``use_energy`` the first row is the log energy: ``(B, 1 + bins, T)``.
        """
        c = self.config
        n_fft, w = self.core.spectrogram.n_fft, self.core.spectrogram.win_length
        raw: Optional[List[torch.Tensor]] = [] if c.use_energy and c.raw_energy else None
        x = kaldi.process_frames(
            frames, dither=c.dither, remove_dc_offset=c.remove_dc_offset, preemphasis_coefficient=c.preemphasis_coefficient, raw_energy=raw
        )
        lo = (n_fft - w) // 2  # where the core placed the window (pad_center)
        x = torch.nn.functional.pad(x, (lo, n_fft - w - lo))  # (B, T, n_fft)
        mel = self.core.mel_from_padded(x.reshape(x.shape[0], -1))
        if not c.use_energy:
            return mel
        windowed = raw[0] if raw else x * self.core.spectrogram.window.to(x.dtype)  # Kaldi's two energy points
        energy = kaldi.log_energy(windowed, c.energy_floor).to(mel.dtype)
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
        frames = kaldi.extract_frames(self.pre(y), window_size=w, window_shift=h, snip_edges=c.snip_edges)
        n_frames = frames.shape[1]
        if n_frames == 0:
            return frames.new_zeros((frames.shape[0], self.mel_rows, 0))
        if n_frames <= self.block_frames:
            return self.frames_mel(frames)
        parts = [self.frames_mel(frames[:, s : s + self.block_frames]) for s in range(0, n_frames, self.block_frames)]
        return torch.cat(parts, dim=-1)


class Ast(KaldiFbank):
    """Audio Spectrogram Transformer features (see :class:`AstConfig`). Output ``(..., max_length, bins)``."""

    config_class = AstConfig
    config: AstConfig

    @property
    def frame_local(self) -> bool:
        return self.config.max_length == 0

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        x = super().post_local(mel)
        c = self.config
        return (x - c.mean) / (2.0 * c.std) if c.do_normalize else x

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        n = x.shape[-2]
        if c.max_length == 0 or n == c.max_length:
            return x
        if n > c.max_length:
            return x[..., : c.max_length, :]
        fill = (0.0 - c.mean) / (2.0 * c.std) if c.do_normalize else 0.0  # zero frames, normalised like the rest
        return torch.nn.functional.pad(x, (0, 0, 0, c.max_length - n), value=fill)


class SeamlessM4T(KaldiFbank):
    """SeamlessM4T / w2v-BERT 2.0 features (see :class:`SeamlessM4TConfig`). Output ``(..., ceil(T / stride), stride * bins)``."""

    config_class = SeamlessM4TConfig
    config: SeamlessM4TConfig

    @property
    def frame_local(self) -> bool:
        return False

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        n = x.shape[-2]
        if c.do_normalize_per_mel_bins:
            if n < 2:
                raise ParameterError(
                    f"{c.name}: per-bin normalisation needs at least 2 frames (a variance with ddof=1); got {n}. "
                    f"Pass at least {c.sizes[0] + c.sizes[1]} samples or do_normalize_per_mel_bins=False"
                )
            var, mean = torch.var_mean(x, dim=-2, keepdim=True, correction=1)
            x = (x - mean) / torch.sqrt(var + 1e-7)
        rem = n % c.stride
        if rem:
            x = torch.nn.functional.pad(x, (0, 0, 0, c.stride - rem))
        return x.reshape(x.shape[:-2] + (x.shape[-2] // c.stride, c.stride * x.shape[-1]))


def load_funasr_cmvn(path: str) -> np.ndarray:
    """The ``(2, D)`` float32 ``[shift, scale]`` rows of a FunASR ``am.mvn`` file.

    Reads the values after ``<AddShift>`` and ``<Rescale>`` (each on the
    following ``<LearnRateCoef> 0 [ ... ]`` line), as FunASR's ``load_cmvn``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ParameterError(f"cmvn_file={path!r} cannot be read ({exc.strerror}); pass the model's am.mvn") from None
    rows: Dict[str, List[float]] = {}
    for i, line in enumerate(lines[:-1]):
        head = line.split()[:1]
        nxt = lines[i + 1].split()
        if head and head[0] in ("<AddShift>", "<Rescale>") and nxt[:1] == ["<LearnRateCoef>"]:
            try:
                rows[head[0]] = [float(v) for v in nxt[3:-1]]
            except ValueError:
                raise ParameterError(f"cmvn_file={path!r}: the {head[0]} row has a value that is not a number") from None
    if set(rows) != {"<AddShift>", "<Rescale>"} or len(rows["<AddShift>"]) != len(rows["<Rescale>"]):
        raise ParameterError(
            f"cmvn_file={path!r} is not a FunASR am.mvn: it needs an <AddShift> and a <Rescale> row of equal length, "
            f"each on a '<LearnRateCoef> 0 [ ... ]' line"
        )
    return np.array([rows["<AddShift>"], rows["<Rescale>"]], dtype=np.float32)


class FunAsr(KaldiFbank):
    """FunASR's features: Kaldi fbank, LFR stacking and the model's CMVN (see :class:`FunAsrConfig`).

    Output ``(..., ceil(T / lfr_n), lfr_m * num_mel_bins)``. Not frame-local
    (LFR stacks neighbouring frames and repeats the first and last): the
    streaming form returns the fbank frames and ``finalize`` stacks them.
    """

    config_class = FunAsrConfig
    config: FunAsrConfig
    cmvn: Optional[torch.Tensor]

    def __init__(self, config: Optional[FrontendConfig] = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        c = self.config
        dim = c.lfr_m * c.num_mel_bins
        cmvn = None
        if c.cmvn_file is not None:
            rows = load_funasr_cmvn(c.cmvn_file)
            if rows.shape[1] < dim:
                raise ParameterError(
                    f"cmvn_file={c.cmvn_file!r} has {rows.shape[1]} values per row; the features have "
                    f"lfr_m * num_mel_bins = {dim} (use the am.mvn of this model's configuration)"
                )
            # FunASR adds and multiplies in float32 (its cmvn tensor is float32)
            cmvn = torch.as_tensor(rows[:, :dim], device=self.core.spectrogram.window.device).to(self.dtype)
        self.register_buffer("cmvn", cmvn)

    @property
    def frame_local(self) -> bool:
        return False

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        m, n = c.lfr_m, c.lfr_n
        t = x.shape[-2]
        t_lfr = -(-t // n)
        # row r of [first] * ((m - 1) // 2) + frames + [last] * inf is frame clamp(r - (m - 1) // 2, 0, t - 1)
        rows = torch.arange(t_lfr, device=x.device)[:, None] * n + torch.arange(m, device=x.device) - (m - 1) // 2
        idx = rows.clamp_(0, max(t - 1, 0)).reshape(-1)
        out = x.index_select(-2, idx).reshape(x.shape[:-2] + (t_lfr, m * x.shape[-1]))
        if self.cmvn is not None:
            out = (out + self.cmvn[0]) * self.cmvn[1]
        return out


# =========================================================================== registry
_PRESETS: Dict[str, Tuple[str, FrontendConfig]] = {}
_ALIASES: Dict[str, str] = {}
_MODULES: Dict[Type[FrontendConfig], Type[Frontend]] = {
    Wav2LipConfig: Wav2Lip,
    WhisperConfig: Whisper,
    LogMelConfig: LogMel,
    NemoConfig: Nemo,
    KaldiFbankConfig: KaldiFbank,
    AstConfig: Ast,
    SeamlessM4TConfig: SeamlessM4T,
    FunAsrConfig: FunAsr,
}


def _register(config: FrontendConfig, description: str, aliases: Tuple[str, ...] = ()) -> None:
    _PRESETS[config.name] = (description, config)
    for a in aliases:
        _ALIASES[a] = config.name


_register(Wav2LipConfig(), "Wav2Lip lip-sync audio encoder input, 16 kHz, 80 mels in [-4, 4], zero padding (librosa >= 0.9 forks)")
_register(
    Wav2LipConfig(name="wav2lip-reflect", pad_mode="reflect"),
    "Wav2Lip with reflect padding, as the released checkpoints were trained (librosa 0.7)",
)
_register(WhisperConfig(), "OpenAI Whisper log-mel, 16 kHz, 80 mels (tiny ... large-v2); pad_or_trim=True for 30 s / 3000 frames")
_register(WhisperConfig(name="whisper-128", n_mels=128), "OpenAI Whisper log-mel, 128 mels (large-v3, large-v3-turbo)")
_register(HifiGanConfig(), "HiFi-GAN V1-V3 vocoder mel, 22.05 kHz, 1024/256, 80 mels 0-8000 Hz, ln")
_register(
    HifiGanConfig(name="bigvgan-22k-80"),
    "BigVGAN 22 kHz 80-band (bigvgan_22khz_80band, base, v2 fmax8k), same as HiFi-GAN",
    aliases=("bigvgan_22khz_80band", "bigvgan_base_22khz_80band", "bigvgan_v2_22khz_80band_fmax8k_256x"),
)
_register(
    HifiGanConfig(name="bigvgan-v2-22k-80", fmax=11025.0),
    "BigVGAN-v2 22 kHz 80-band 256x, full band (fmax 11025 Hz)",
    aliases=("bigvgan_v2_22khz_80band_256x",),
)
_register(
    HifiGanConfig(name="bigvgan-24k-100", sr=24000, n_mels=100, fmax=12000.0),
    "BigVGAN 24 kHz 100-band (v1, base, v2 256x), 1024/256, 0-12000 Hz",
    aliases=("bigvgan_24khz_100band", "bigvgan_base_24khz_100band", "bigvgan_v2_24khz_100band_256x"),
)
_register(
    HifiGanConfig(name="bigvgan-v2-44k-128-256x", sr=44100, n_mels=128, fmax=22050.0),
    "BigVGAN-v2 44.1 kHz 128-band 256x, 1024/256",
    aliases=("bigvgan_v2_44khz_128band_256x",),
)
_register(
    HifiGanConfig(name="bigvgan-v2-44k-128-512x", sr=44100, n_fft=2048, hop_length=512, win_length=2048, n_mels=128, fmax=22050.0),
    "BigVGAN-v2 44.1 kHz 128-band 512x, 2048/512",
    aliases=("bigvgan_v2_44khz_128band_512x",),
)
_register(HifiGanConfig(name="vits", fmax=11025.0, mag_eps=1e-6), "VITS (LJSpeech) mel, HiFi-GAN framing with sqrt(P + 1e-6), 0-11025 Hz")
_register(LogMelConfig(), "NVIDIA Tacotron2 / WaveGlow mel, 22.05 kHz, centred reflect 1024/256, 80 mels 0-8000 Hz, ln")
_register(
    LogMelConfig(name="vocos-24k", sr=24000, n_mels=100, fmax=12000.0, htk=True, norm=None, log_floor=1e-7),
    "Vocos 24 kHz mel (torchaudio defaults: HTK scale, no norm), 100 mels, ln(max(M, 1e-7))",
)
_register(
    LogMelConfig(name="f5-tts", sr=24000, n_mels=100, fmax=12000.0, htk=True, norm=None, log_floor=1e-5),
    "F5-TTS (Vocos mel with ln(max(M, 1e-5)))",
)
_register(
    LogMelConfig(name="speecht5", sr=16000, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=80.0, fmax=7600.0, log="log10", log_floor=1e-10, time_major=True),
    "Hugging Face SpeechT5 TTS targets / SpeechT5HifiGan input, 16 kHz, 80 mels 80-7600 Hz, log10, (T, 80)",
)
_register(NemoConfig(), "NVIDIA NeMo FastConformer / Parakeet CTC-RNNT, 80 features, per-feature normalised (NeMo >= 2.5; variant='2.4')")
_register(NemoConfig(name="nemo-128", n_mels=128), "NVIDIA NeMo with 128 features (parakeet-tdt-0.6b-v2/v3, Canary)")
_register(KaldiFbankConfig(), "Kaldi fbank, torchaudio.compliance.kaldi.fbank defaults (povey, snip_edges, 20 Hz-Nyquist), dither 0, 80 bins, (T, bins)")
_register(
    KaldiFbankConfig(name="lhotse-fbank", snip_edges=False, high_freq=-400.0),
    "lhotse / icefall / sherpa-onnx fbank: Kaldi, snip_edges=False, 20-7600 Hz, [-1, 1] input, 80 bins",
)
_register(
    KaldiFbankConfig(name="wenet-fbank", int16_scale=True),
    "WeNet fbank: Kaldi defaults on int16-scaled input (x 32768), 80 bins, before the model's global CMVN",
)
_register(AstConfig(), "Audio Spectrogram Transformer (HF ASTFeatureExtractor): Kaldi fbank, hanning, 128 bins, 1024 frames, normalised")
_register(
    SeamlessM4TConfig(),
    "SeamlessM4T / w2v-BERT 2.0 (HF SeamlessM4TFeatureExtractor): Kaldi fbank x 32768, per-bin normalised, frame pairs stacked (T/2, 160)",
)

_register(
    FunAsrConfig(),
    "FunASR WavFrontend (Paraformer, SenseVoice): Kaldi fbank x 32768, hamming, 80 bins, LFR 7/6 -> (T/6, 560); cmvn_file=am.mvn",
)


def preset_config(name: str) -> FrontendConfig:
    """The default configuration of the preset ``name`` (or one of its aliases)."""
    if not isinstance(name, str):
        raise ParameterError(f"a front-end name must be a string, not {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key not in _PRESETS:
        raise ParameterError(f"unknown front end {name!r}; the names are {sorted(_PRESETS)} (see supermel.frontends())")
    return _PRESETS[key][1]


def frontends() -> Dict[str, str]:
    """The front-end names, each with a one-line description."""
    return {name: desc for name, (desc, _) in _PRESETS.items()}


def frontend(
    name: Union[str, FrontendConfig],
    *,
    dtype: Optional[torch.dtype] = None,
    device: Optional[Union[str, torch.device]] = None,
    check_finite: bool = True,
    backend: str = "auto",
    **overrides: Any,
) -> Frontend:
    """The module computing a model's input features, offline.

    Parameters
    ----------
    name : str or FrontendConfig
        A name from :func:`frontends` (or an upstream checkpoint alias such as
        ``"bigvgan_v2_24khz_100band_256x"``), or a configuration.
    dtype, device
        Computation dtype (float32 default, or float64) and device.
    check_finite : bool
        Refuse NaN/Inf audio.
    backend : {"auto", "fft", "matmul"}
        DFT route of the core.
    **overrides
        Configuration fields to change (see the preset's config class);
        unknown names raise :class:`~supermel.ParameterError`.

    Returns
    -------
    Frontend
        ``module(y)`` maps ``(..., n_samples)`` audio (numpy or tensor) to the features.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> fe = supermel.frontend("wav2lip")
    >>> fe(np.zeros(16000, dtype=np.float32)).shape
    (80, 81)
    >>> supermel.frontend("whisper-80", pad_or_trim=True)(np.zeros(16000, dtype=np.float32)).shape
    (80, 3000)
    """
    config = name if isinstance(name, FrontendConfig) else preset_config(name)
    if overrides:
        config = config.replace(**overrides)
    for klass in type(config).__mro__:
        if klass in _MODULES:
            return _MODULES[klass](config, dtype=dtype, device=device, check_finite=check_finite, backend=backend)
    raise ParameterError(f"no front-end module for a {type(config).__name__}")


# =========================================================================== Wav2Lip windows
def wav2lip_window_ratio(fps: Union[float, int, fractions.Fraction], *, mel_fps: float = 80.0, mel_step_size: int = 16) -> fractions.Fraction:
    """Mel columns per video frame, ``mel_fps / fps`` as an exact fraction of the given numbers (validated).

    Shared by :func:`wav2lip_mel_chunks` and :class:`supermel.Wav2LipChunker`;
    ``mel_step_size`` is only checked here.
    """
    for nm, v in (("fps", fps), ("mel_fps", mel_fps)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating, fractions.Fraction)) or not math.isfinite(v) or v <= 0:
            raise ParameterError(f"{nm}={v!r} must be a positive, finite number of frames per second")
    if not _is_int(mel_step_size) or mel_step_size <= 0:
        raise ParameterError(f"mel_step_size={mel_step_size!r} must be a positive integer")
    return fractions.Fraction(mel_fps) / fractions.Fraction(fps)


def wav2lip_window_start(i: int, ratio: fractions.Fraction) -> int:
    """First mel column of video frame ``i``'s window: ``floor(i * ratio)``, exactly (see :func:`wav2lip_window_ratio`)."""
    return math.floor(i * ratio)


def wav2lip_mel_chunks(mel: Array, fps: Union[float, int, fractions.Fraction], *, mel_step_size: int = 16, mel_fps: float = 80.0) -> Array:
    """Wav2Lip's per-video-frame mel windows (``inference.py``).

    Window ``i`` starts at column ``floor(mel_fps * i / fps)`` (exactly, with
    rational arithmetic on the given numbers) and spans ``mel_step_size``
    columns; the first window that would run past the end is replaced by the
    last ``mel_step_size`` columns and ends the sequence. There are
    ``ceil((T - mel_step_size + 1) fps / mel_fps) + 1`` windows.

    Parameters
    ----------
    mel : array or Tensor [shape=(..., n_mels, T)], T >= mel_step_size
    fps : float > 0
        Video frame rate (e.g. 25, 29.97, ``Fraction(30000, 1001)``).
    mel_step_size : int > 0
        Columns per window (16 = 200 ms).
    mel_fps : float > 0
        Mel frames per second (16000 / 200 = 80 for Wav2Lip).

    Returns
    -------
    Same type as ``mel`` [shape=(..., n_windows, n_mels, mel_step_size)].
    """
    ratio = wav2lip_window_ratio(fps, mel_fps=mel_fps, mel_step_size=mel_step_size)
    was_numpy = not isinstance(mel, torch.Tensor)
    t = torch.from_numpy(np.asarray(mel)) if was_numpy else mel
    if t.ndim < 2:
        raise ParameterError(f"mel must have shape (..., n_mels, T); got shape {tuple(t.shape)}")
    n_cols = int(t.shape[-1])
    if n_cols < mel_step_size:
        raise ParameterError(
            f"mel has {n_cols} columns, fewer than mel_step_size={mel_step_size}; "
            f"Wav2Lip needs at least {mel_step_size} columns ({mel_step_size - 1} hops of audio plus one sample)"
        )
    n_regular = math.ceil(fractions.Fraction(n_cols - mel_step_size + 1) / ratio)
    starts = [wav2lip_window_start(i, ratio) for i in range(n_regular)] + [n_cols - mel_step_size]
    idx = torch.as_tensor(starts, device=t.device)[:, None] + torch.arange(mel_step_size, device=t.device)
    out = t[..., idx]  # (..., n_mels, n_windows, step)
    out = out.movedim(-2, -3)
    return out.numpy() if was_numpy else out
