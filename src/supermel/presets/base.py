"""The front-end machinery: configurations, the :class:`Frontend` module, the registry.

A model front end is a **frozen configuration** (a dataclass with ``as_dict`` /
``from_dict``; a partial dict fills in the preset's defaults, an unknown key
raises :class:`~supermel.ParameterError` naming it) and a **module** holding one
core :class:`~supermel.MelSpectrogram` (``.core``) between ``pre`` (waveform
step) and ``post`` (log, clipping, normalisation). Each model family lives in
one module of this package (``wav2lip``, ``whisper``, ``logmel``, ``nemo``,
``kaldi``, ``kaldi_models``) with its configuration, module, streaming specifics
and registrations; see CONTRIBUTING.md for adding one.

Designed for streaming
----------------------
Every module exposes the pieces :class:`~supermel.StreamingFrontend` composes:

``pre(y, prev=None)``
    The waveform step on ``(B, L)``; ``prev`` holds the ``pre_context`` samples
    that preceded ``y`` (1 for pre-emphasis, else 0); ``None`` is the start of
    the signal (pre-emphasis then uses ``y[0] = x[0]``).
``core``
    The :class:`~supermel.MelSpectrogram` (its ``mel_from_padded`` is the
    streaming entry point). Kaldi front ends frame the signal themselves and
    use the core's window, power spectrum and filterbank.
``drop_last``
    Frames dropped at the end of the input (Whisper drops 1).
``post_local(mel)`` / ``post_global(x)`` / ``post(mel)``
    ``post = post_global o post_local``. ``post_local`` is frame by frame;
    ``post_global`` needs the whole input (identity for frame-local presets).
``frame_local``
    True when each output frame depends only on its own analysis window
    (plus ``pre_context``). False for Whisper (dynamic range floored at the
    *whole input's* maximum), NeMo (per-utterance mean/std), AST, SeamlessM4T
    and FunASR. Their streams emit ``post_local`` frames and apply
    ``post_global`` once the input is finished (``finalize``).
``time_axis``
    The output's time axis (-1, or -2 for time-major layouts).
``stream_engine`` / ``stream_trim_at`` / ``stream_tail_samples`` / ``finalize_frames``
    What a family's streaming form does differently (Kaldi framing, Whisper's
    pad/trim at the stream's ends, NeMo's valid-frame normalisation).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from torch import nn

from .. import _core
from .._errors import ParameterError, unknown_keywords
from ..filters import check_mel_params, get_window, mel_filters_above_nyquist
from ..modules import MelSpectrogram, _float_dtype

if TYPE_CHECKING:
    from .streaming import StreamingFrontend

__all__ = [
    "FrontendConfig",
    "MelConfig",
    "Frontend",
    "frontend",
    "frontends",
    "preset_config",
    "register",
    "register_module",
    "preemphasis",
]

Array = Union[np.ndarray, torch.Tensor]


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

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("whisper-80").config
    >>> cfg.as_dict()["n_mels"]
    80
    >>> type(cfg).from_dict({"name": "whisper-80", "n_mels": 128}).n_mels
    128
    >>> cfg.replace(n_mels=128) == supermel.frontend("whisper-128").config.replace(name="whisper-80")
    True
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
            raise unknown_keywords(unknown, known, where=self.name or type(self).__name__, noun="parameter")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MelConfig(FrontendConfig):
    """The core analysis: ``librosa.feature.melspectrogram`` keywords, plus two hooks.

    ``periodic`` selects the periodic (librosa, default) or symmetric window
    (NeMo's ``torch.hann_window(periodic=False)``). ``pad`` is the padding on
    each side (``None``: ``n_fft // 2`` if ``center`` else 0, subclasses may
    say otherwise) and ``mag_eps`` is added to ``re^2 + im^2`` before the
    power (HiFi-GAN's ``1e-9``).

    Examples
    --------
    >>> import supermel
    >>> from supermel.presets import MelConfig
    >>> cfg = MelConfig(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> cfg.replace(n_mels=40).n_mels, cfg.pad
    (40, None)
    >>> issubclass(supermel.Wav2LipConfig, MelConfig)
    True
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
    def fmax_above_nyquist_ok(self) -> bool:
        """Whether ``fmax > sr / 2`` is kept (a host's choice, Whisper's); refused otherwise."""
        return False

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
        fmax = self.fmax
        if fmax is not None and self.fmax_above_nyquist_ok and _is_real(fmax) and _is_real(self.sr) and fmax > self.sr / 2:
            fmax = None  # the host keeps its top above Nyquist (filters_above_nyquist); the rest is checked
            if self.fmin >= self.fmax:
                c.fail("fmin", f"must be below fmax={self.fmax!r}")
        check_mel_params(sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=fmax)
        get_window(self.window, self.win_length or self.n_fft, fftbins=bool(self.periodic))


# =========================================================================== shared steps
def preemphasis(y: Array, coef: float = 0.97, prev: Optional[Array] = None) -> Array:
    """Whole-signal pre-emphasis of ``(B, L)``: ``y[n] = x[n] - coef x[n-1]``.

    ``prev`` (shape ``(B, 1)``) is the sample before ``y[:, 0]`` (a streaming
    chunk's predecessor); ``None`` means the start of the signal, ``y[0] = x[0]``
    (``scipy.signal.lfilter([1, -coef], [1], x)``). Tensors or numpy arrays (the
    CPU streaming path): the same float operations either way.

    Parameters
    ----------
    y : np.ndarray or Tensor [shape=(B, L)]
        Audio.
    coef : float, default 0.97
        The filter coefficient.
    prev : np.ndarray or Tensor [shape=(B, 1)] or None
        The sample before ``y[:, 0]``.

    Returns
    -------
    np.ndarray or Tensor [shape=(B, L)]
        The type and dtype of ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.presets import preemphasis
    >>> preemphasis(np.array([[1.0, 1.0, 1.0]]), coef=0.5)
    array([[1. , 0.5, 0.5]])
    >>> preemphasis(np.array([[1.0, 1.0]]), coef=0.5, prev=np.array([[2.0]]))
    array([[0. , 0.5]])
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
    if cfg.fmax is not None and cfg.fmax_above_nyquist_ok and cfg.fmax > cfg.sr / 2 and "fb" not in kw:
        if cfg.htk or cfg.norm != "slaney":
            raise ParameterError(f"{cfg.name}: fmax={cfg.fmax} above Nyquist needs Slaney mels (htk=False, norm='slaney')")
        kw["fb"] = mel_filters_above_nyquist(sr=cfg.sr, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
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


# =========================================================================== the module
def _floored_log(x: torch.Tensor, floor: float, log: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``log(max(x, floor))`` into one new tensor (the log in place on the clamped copy
    when autograd and the compiler do not need the intermediate)."""
    y = torch.clamp(x, min=floor)
    if torch.compiler.is_compiling() or y.requires_grad:
        return log(y)
    return log(y, out=y)


#: The constructor parameters every front-end class takes: the Parameters section of their
#: docstrings, written once and put in place of ``{frontend_parameters}`` (Frontend.__init_subclass__).
_PARAMETERS_DOC = """Parameters
    ----------
    config : FrontendConfig or None
        The configuration (default: the preset's defaults); usually built by
        :func:`supermel.frontend` from a preset name and overrides.
    dtype : torch.dtype or None, default float32
        Computation and output dtype (``torch.float64`` for float64 features).
    device : str or torch.device or None, default "cpu"
        Where the constants live; tensors in are computed there.
    check_finite : bool, default True
        Refuse NaN/Inf audio (:class:`~supermel.ParameterError`)."""


def _with_parameters(doc: Optional[str]) -> Optional[str]:
    return doc.replace("{frontend_parameters}", _PARAMETERS_DOC) if doc else doc


class Frontend(nn.Module):
    """Base of the front-end modules: ``post(core(pre(y)))`` on ``(..., n_samples)``.

    numpy in gives numpy out; tensors stay on their device. The result has the
    module's dtype (float32 unless built with ``dtype=torch.float64``).

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> fe = supermel.frontend("wav2lip")
    >>> isinstance(fe, supermel.Frontend)
    True
    >>> fe(np.zeros(16000, np.float32)).shape
    (80, 81)
    """

    config_class: ClassVar[Type[FrontendConfig]] = MelConfig
    #: Frames dropped at the end of the input (Whisper: 1).
    drop_last: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__doc__ = _with_parameters(cls.__doc__)  # (the shared Parameters section)

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
        """This front end, streaming: :class:`supermel.StreamingFrontend`.

        ``push(chunk)`` returns the frames the chunk completes, ``flush()`` the
        rest; concatenated along :attr:`time_axis` they equal ``self(y)`` for
        frame-local presets. Whisper and NeMo stream their ``post_local`` frames;
        ``finalize(concatenation)`` applies the whole-input step. Arguments as
        :class:`~supermel.StreamingMelSpectrogram` (``device=None``: this
        module's device).
        """
        from .streaming import StreamingFrontend

        return StreamingFrontend(self, num_streams=num_streams, device=device, chunk_size=chunk_size, cuda_graph=cuda_graph, check_finite=check_finite)

    # -- streaming specifics: a family overrides what differs ---------------------------
    #: Whether :meth:`pre` takes numpy arrays (the CPU streaming path then keeps numpy chunks numpy).
    pre_accepts_numpy: ClassVar[bool] = True
    #: Whether the streaming form applies :meth:`pre` chunk by chunk (Whisper's pad/trim acts on the stream's ends).
    stream_pre_on_chunks: ClassVar[bool] = True

    def stream_engine(
        self, *, num_streams: int, device: torch.device, dtype: torch.dtype, chunk_size: Optional[int], cuda_graph: bool
    ) -> Tuple[Any, int, int]:
        """The streaming engine of :class:`~supermel.StreamingFrontend`: ``(engine, hop_length, latency_samples)``.

        The engine's ``push((S, n))`` / ``flush()`` / ``reset(index)`` return raw
        ``(S, mel_rows, k)`` frames (before :meth:`post_local`). Here: the core in a
        :class:`~supermel.StreamingMelSpectrogram`; Kaldi framing overrides it.
        """
        from ..streaming import StreamingMelSpectrogram

        engine = StreamingMelSpectrogram(
            module=self.core, num_streams=num_streams, device=device, dtype=dtype,
            chunk_size=chunk_size, cuda_graph=cuda_graph, check_finite=False,
        )  # fmt: skip
        spec = self.core.spectrogram
        return engine, spec.hop_length, spec.n_fft - spec.pad

    def stream_trim_at(self) -> Optional[int]:
        """Samples after which a stream's input is cut (Whisper ``pad_or_trim``); ``None``: never."""
        return None

    def stream_tail_samples(self, n_received: int) -> int:
        """Zeros the waveform step appends at the end of a stream of ``n_received`` samples (Whisper)."""
        return 0

    def finalize_frames(self, x: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """The whole-input step on streamed ``post_local`` frames ``(S, ...)`` of streams of ``counts`` samples."""
        return self.post_global(x)

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
        # Empty audio is refused unless the waveform step pads it (Whisper's padding / pad_or_trim):
        # the host pads first, so empty and silent audio give the host's frames.
        t, shape, was_numpy = _core.as_batch(y, check_finite=self.check_finite, allow_empty=self.pre_length(0) > 0)
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


Frontend.__doc__ = _with_parameters(Frontend.__doc__)


# =========================================================================== registry
_PRESETS: Dict[str, Tuple[str, FrontendConfig]] = {}
_ALIASES: Dict[str, str] = {}
_MODULES: Dict[Type[FrontendConfig], Type[Frontend]] = {}


def register_module(config_class: Type[FrontendConfig], module_class: Type[Frontend]) -> None:
    """Make :func:`frontend` build ``module_class`` for configurations of ``config_class`` (and subclasses).

    Parameters
    ----------
    config_class : type
        A :class:`~supermel.FrontendConfig` subclass.
    module_class : type
        The :class:`~supermel.Frontend` subclass that computes it.

    Examples
    --------
    >>> import supermel
    >>> from supermel.presets import LogMelConfig, LogMel, register_module
    >>> class MyConfig(LogMelConfig):
    ...     pass
    >>> register_module(MyConfig, LogMel)
    >>> type(supermel.frontend(MyConfig(name="my-logmel"))).__name__
    'LogMel'
    """
    _MODULES[config_class] = module_class


def register(config: FrontendConfig, description: str, aliases: Tuple[str, ...] = ()) -> None:
    """Add the preset ``config.name`` (with a one-line description and upstream aliases) to :func:`frontends`.

    Parameters
    ----------
    config : FrontendConfig
        The preset's configuration; ``config.name`` is its name.
    description : str
        One line for :func:`supermel.frontends`.
    aliases : tuple of str, default ()
        Other names (upstream checkpoint names) that select the same preset.

    Raises
    ------
    supermel.ParameterError
        A name or alias already registered.

    Examples
    --------
    >>> import supermel
    >>> from supermel.presets import WhisperConfig, register
    >>> register(WhisperConfig(name="whisper-64", n_mels=64), "Whisper log-mel, 64 mels")  # doctest: +SKIP
    >>> supermel.frontend("whisper-64").config.n_mels  # doctest: +SKIP
    64
    """
    if config.name in _PRESETS or config.name in _ALIASES:
        raise ParameterError(f"front end {config.name!r} is registered twice")
    _PRESETS[config.name] = (description, config)
    for a in aliases:
        _ALIASES[a] = config.name


def preset_config(name: str) -> FrontendConfig:
    """The default configuration of the preset ``name`` (or one of its aliases).

    Parameters
    ----------
    name : str
        A preset name of :func:`supermel.frontends` or an upstream alias.

    Returns
    -------
    FrontendConfig

    Raises
    ------
    supermel.ParameterError
        An unknown name (the message lists the known ones).

    Examples
    --------
    >>> from supermel.presets import preset_config
    >>> preset_config("wav2lip").hop_length
    200
    """
    if not isinstance(name, str):
        raise ParameterError(f"a front-end name must be a string, not {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key not in _PRESETS:
        raise ParameterError(f"unknown front end {name!r}; the names are {sorted(_PRESETS)} (see supermel.frontends())")
    return _PRESETS[key][1]


def frontends() -> Dict[str, str]:
    """The front-end names, each with a one-line description.

    Returns
    -------
    dict of str to str
        ``{name: description}``, in registration order.

    Examples
    --------
    >>> import supermel
    >>> names = supermel.frontends()
    >>> "whisper-80" in names and "kaldi-fbank" in names
    True
    """
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
