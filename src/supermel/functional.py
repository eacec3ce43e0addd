"""librosa-compatible functions: ``stft``, ``spectrogram``, ``melspectrogram``, dB conversions, ``mfcc``.

Each function takes librosa's keywords and defaults and returns librosa's
numbers. numpy in gives numpy out; a tensor in gives a tensor on the same
device. The spectral functions run a :mod:`supermel.modules` module that is
built once per parameter set, dtype and device and cached (an LRU of
:data:`CACHE_SIZE` entries), so repeated calls pay no set-up cost. For a hot
loop, holding a module yourself is still slightly cheaper (no cache lookup).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from . import _core, _native
from ._errors import ParameterError, unknown_keywords
from .filters import WindowSpec, _window_key
from ._db import RefSpec, _check_empty, _Const, _power_to_db_tensor, _ref_value
from .modules import MFCC, MelSpectrogram, Spectrogram

__all__ = [
    "stft",
    "spectrogram",
    "melspectrogram",
    "mfcc",
    "power_to_db",
    "amplitude_to_db",
    "db_to_power",
    "db_to_amplitude",
    "CACHE_SIZE",
]

Array = Union[np.ndarray, torch.Tensor]
CACHE_SIZE = 32


# --------------------------------------------------------------------------- module cache
class _Key:
    """Hashable wrapper for a window spec (arrays compared by value)."""

    __slots__ = ("spec", "key")

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.key = _window_key(spec)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.key == other.key


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached_module(kind: str, window: _Key, dtype: torch.dtype, device: torch.device, items: tuple, types: tuple) -> torch.nn.Module:
    # `types` is only part of the key: 256 == 256.0 == hash(256.0) and True == 1, so
    # without it an invalid n_fft=256.0 or hop_length=True would hit a valid entry.
    kwargs = dict(items)
    cls = {"spec": Spectrogram, "mel": MelSpectrogram, "mfcc": MFCC}[kind]
    # Validation happens once, in the module; checking audio happens per call.
    # Filterbank warnings are repeated per call by _module_for, as librosa warns per call.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = cls(window=window.spec, dtype=dtype, device=device, check_finite=False, **kwargs).requires_grad_(False)
    mod._supermel_warnings = tuple((str(w.message), w.category) for w in caught)  # type: ignore[assignment]
    return mod


def _module_for(kind: str, y: Any, window: WindowSpec, **kwargs: Any) -> torch.nn.Module:
    """The cached module of ``kind`` for audio ``y`` (a tensor, or ``(dtype, device)``)."""
    dtype, device = (y.dtype, y.device) if isinstance(y, torch.Tensor) else y
    for k, v in kwargs.items():
        if isinstance(v, (np.ndarray, torch.Tensor, list)):
            raise ParameterError(f"{k} must be a scalar, not {type(v).__name__}")
    try:
        items = tuple(sorted(kwargs.items()))
        hash(items)
    except TypeError:
        raise ParameterError(f"unhashable parameter in {kwargs!r}") from None
    mod = _cached_module(kind, _Key(window), dtype, device, items, tuple(type(v) for _, v in items))
    for message, category in mod._supermel_warnings:
        warnings.warn(message, category, stacklevel=3)
    return mod


_CPU = torch.device("cpu")
_NP_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}  # native byte order only


def _native_where(y: Any) -> Optional[Tuple[torch.dtype, torch.device]]:
    """``(dtype, device)`` of the module a native fast-path call takes for ``y`` (a float32/float64
    numpy array or CPU tensor, the native route on), else ``None``."""
    if torch.compiler.is_compiling() or not _native.enabled():
        return None
    if type(y) is np.ndarray:
        dt = _NP_TORCH.get(y.dtype)
        return None if dt is None else (dt, _CPU)
    if type(y) is torch.Tensor and y.device.type == "cpu" and y.dtype in (torch.float32, torch.float64):
        return y.dtype, y.device
    return None


_MEL_KEYS = ("n_mels", "fmin", "fmax", "htk", "norm", "dtype")
_STFT_KEYS = ("n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power")
_DEVICE_HINT = (
    "these functions compute where the audio is: pass a tensor on that device (y.to('cuda')), "
    "or build a module on it (supermel.MelSpectrogram(...).to('cuda'))"
)


def _mel_kwargs(kwargs: dict, func: Callable[..., Any], extra: Sequence[str] = ()) -> dict:
    """The mel filter keywords of ``**kwargs``; an unknown one raises with the close matches
    among every keyword ``func`` accepts (its own, ``extra`` and the mel filter keywords)."""
    unknown = set(kwargs) - set(_MEL_KEYS)
    if unknown:
        accepted = [n for n in inspect.signature(func).parameters if n != "kwargs"] + list(extra) + list(_MEL_KEYS)
        raise unknown_keywords(unknown, accepted, where=f"supermel.{func.__name__}", device_hint=_DEVICE_HINT)
    out = dict(kwargs)
    if "dtype" in out:
        out["mel_dtype"] = np.dtype(out.pop("dtype")).str
    return out


# --------------------------------------------------------------------------- spectra
def stft(
    y: Array,
    *,
    n_fft: int = 2048,
    hop_length: Optional[int] = None,
    win_length: Optional[int] = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    check_finite: bool = True,
) -> Array:
    """Complex STFT equal to ``librosa.stft`` (this one returns complex values).

    Parameters
    ----------
    y : np.ndarray or Tensor [shape=(..., n)], real floating point
        Audio.
    n_fft : int > 0, default 2048
        FFT size.
    hop_length : int > 0 or None, default ``win_length // 4``
        Samples between frames.
    win_length : int <= n_fft or None, default ``n_fft``
        Window length, zero-padded to ``n_fft`` (centred).
    window : str, tuple, callable or array, default "hann"
        Any window :func:`supermel.get_window` takes.
    center : bool, default True
        Pad by ``n_fft // 2`` on both sides (frame ``t`` centred on sample ``t * hop_length``).
    pad_mode : str, default "constant"
        ``constant``, ``edge``, ``linear_ramp``, ``reflect`` or ``symmetric``.
    check_finite : bool, default True
        Refuse NaN/Inf audio (:class:`~supermel.ParameterError`). On CUDA the check
        costs a host synchronisation: pass ``False`` in a sync-free pipeline.

    Returns
    -------
    Complex array [shape=(..., 1 + n_fft // 2, n_frames)]: complex64 for
    float32 input, complex128 for float64.

    Raises
    ------
    supermel.ParameterError
        Invalid audio (NaN/Inf, integer, empty, a list) or parameters (see :func:`melspectrogram`).

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    >>> D = supermel.stft(y, n_fft=800, hop_length=200)
    >>> D.shape, D.dtype
    ((401, 81), dtype('complex64'))
    """
    t, shape, was_numpy = _core.as_batch(y, check_finite=check_finite)
    mod = _module_for("spec", t, window, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode, power=2.0, backend="fft")
    z = mod.pad_input(t)
    frames = z.unfold(-1, mod.n_fft, mod.hop_length)
    w = mod.window
    x = torch.fft.rfft(frames * w, dim=-1).transpose(-1, -2)
    return _core.from_batch(x, shape, was_numpy)


def spectrogram(
    *,
    y: Array,
    n_fft: int = 2048,
    hop_length: Optional[int] = None,
    win_length: Optional[int] = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    check_finite: bool = True,
) -> Array:
    """``abs(librosa.stft(y, ...)) ** power``, computed without complex tensors.

    ``check_finite`` as :func:`stft` (also: a warning when finite audio of huge
    amplitude overflows the result, as librosa's numpy warns; CPU only).

    Returns
    -------
    [shape=(..., 1 + n_fft // 2, n_frames)], the input's real dtype.

    Parameters
    ----------
    y : np.ndarray or Tensor [shape=(..., n)], real floating point
        Audio.
    n_fft : int > 0, default 2048
    hop_length : int > 0 or None, default ``win_length // 4``
    win_length : int or None, default ``n_fft``
    window : str, tuple, callable or array, default "hann"
    center : bool, default True
    pad_mode : str, default "constant"
        As ``librosa.stft``.
    power : float > 0, default 2.0
        Exponent of the magnitude (1: magnitude, 2: power).
    check_finite : bool, default True
        As :func:`stft`.

    Raises
    ------
    supermel.ParameterError
        Invalid audio or parameters.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
    >>> supermel.spectrogram(y=y, n_fft=512, hop_length=160).shape
    (2, 257, 101)
    """
    t, shape, was_numpy = _core.as_batch(y, check_finite=check_finite)
    mod = _module_for("spec", t, window, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode, power=power, backend="auto")
    out = mod.power_tf(t)
    if check_finite:
        _core.warn_overflow(out, t)
    return _core.from_batch(out.transpose(-1, -2), shape, was_numpy)


def melspectrogram(
    *,
    y: Optional[Array] = None,
    sr: float = 22050,
    S: Optional[Array] = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: Optional[int] = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    check_finite: bool = True,
    **kwargs: Any,
) -> Array:
    """Mel spectrogram equal to ``librosa.feature.melspectrogram``.

    Parameters
    ----------
    y : np.ndarray or Tensor [shape=(..., n)], real floating point
        Audio. float32 in gives float32 out; float64 gives float64.
    sr : float > 0
        Sample rate.
    S : [shape=(..., 1 + n_fft // 2, t)] or None
        A precomputed spectrogram, used instead of ``y``.
    n_fft : int > 0, default 2048
        FFT size (samples per frame).
    hop_length : int > 0, default 512
        Samples between frames.
    win_length : int <= n_fft or None, default ``n_fft``
        Window length; a shorter window is zero-padded to ``n_fft``, centred.
    window : str, tuple, callable or array, default "hann"
        Any window :func:`supermel.get_window` takes.
    center : bool, default True
        Pad by ``n_fft // 2`` on both sides, so that frame ``t`` is centred on sample ``t * hop_length``.
    pad_mode : str, default "constant"
        Padding when ``center``: ``constant`` (zeros), ``edge``, ``linear_ramp``, ``reflect``, ``symmetric``.
    power : float > 0, default 2.0
        Exponent of the magnitude (1: energy, 2: power).
    check_finite : bool, default True
        Refuse NaN/Inf audio and warn when finite audio of huge amplitude
        overflows the result (as :func:`spectrogram`). On CUDA the input check
        costs a host synchronisation: pass ``False`` in a sync-free pipeline.
    **kwargs
        ``n_mels`` (128), ``fmin`` (0), ``fmax`` (sr / 2), ``htk`` (False),
        ``norm`` ("slaney"), ``dtype`` (np.float32): see :func:`supermel.mel_filters`.

    Returns
    -------
    [shape=(..., n_mels, n_frames)]

    Raises
    ------
    supermel.ParameterError
        Invalid audio (NaN/Inf, integer, empty, a list), both or neither of ``y`` and ``S``,
        ``fmax > sr / 2``, ``fmin >= fmax``, an unknown window or pad mode, or a computation
        above the working-memory limit.

    Examples
    --------
    >>> import numpy as np, torch, supermel
    >>> y, sr = supermel.audio.example_audio()          # 12 s of speech, 16 kHz
    >>> params = dict(n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)
    >>> M = supermel.melspectrogram(y=y, sr=sr, **params)
    >>> M.shape, M.dtype
    ((80, 961), dtype('float32'))
    >>> batch = torch.from_numpy(y[:16000]).repeat(4, 1)  # (4, 16000) tensor
    >>> supermel.melspectrogram(y=batch, sr=sr, **params).shape
    torch.Size([4, 80, 81])
    """
    mk = _mel_kwargs(kwargs, melspectrogram)
    if S is not None:
        if y is not None:
            raise ParameterError("pass either y (audio) or S (a spectrogram), not both")
        s_t, shape, was_numpy = _core.as_batch(S, name="S")
        n_freqs = s_t.shape[-1]  # as_batch flattens all but the last axis; restore (.., F, T)
        s_full = s_t.reshape(shape + (n_freqs,))
        if s_full.ndim < 2:
            raise ParameterError(f"S must have shape (..., 1 + n_fft // 2, t); got {tuple(s_full.shape)}")
        if s_full.shape[-2] != n_fft // 2 + 1:
            # librosa's rule (_spectrogram): an n_fft that does not match S is inferred from it.
            n_fft = 2 * (s_full.shape[-2] - 1)
        from .modules import MelScale

        mel = MelScale(sr=sr, n_fft=n_fft, **{k: v for k, v in mk.items()}, dtype=s_full.dtype, device=s_full.device)
        out = mel(s_full.reshape((-1,) + tuple(s_full.shape[-2:])).transpose(-1, -2))
        out = out.reshape(tuple(s_full.shape[:-2]) + tuple(out.shape[-2:]))
        return out.cpu().numpy() if was_numpy else out
    if y is None:
        raise ParameterError("melspectrogram needs y (audio) or S (a spectrogram)")
    where = _native_where(y)
    fast_mod = None
    if where is not None:  # the native CPU core's one-crossing fast path (MelSpectrogram.native_call)
        fast_mod = _module_for(
            "mel", where, window, sr=sr, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode, power=power, **mk
        )
        out = fast_mod.native_call(y, check_finite)  # type: ignore[operator]
        if out is not None:
            return out
    t, shape, was_numpy = _core.as_batch(y, check_finite=check_finite)
    if fast_mod is not None and where == (t.dtype, t.device):
        mod = fast_mod  # (its filterbank warnings already replayed for this call)
    else:
        mod = _module_for(
            "mel", t, window, sr=sr, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode, power=power, **mk
        )
    out = mod.mel_tf(t)
    if check_finite:
        _core.warn_overflow(out, t)
    return _core.from_batch(out, shape, was_numpy)


def mfcc(
    *,
    y: Optional[Array] = None,
    sr: float = 22050,
    S: Optional[Array] = None,
    n_mfcc: int = 20,
    dct_type: int = 2,
    norm: Optional[str] = "ortho",
    lifter: float = 0,
    mel_norm: Any = "slaney",
    check_finite: bool = True,
    **kwargs: Any,
) -> Array:
    """MFCCs equal to ``librosa.feature.mfcc``.

    Parameters
    ----------
    y : audio [shape=(..., n)] or None
    S : log-power mel spectrogram [shape=(..., n_mels, t)] or None
    n_mfcc : int > 0
    dct_type : {1, 2, 3}
    norm : None or "ortho"
    lifter : float >= 0
    mel_norm : {"slaney", None} or number
        ``norm`` of the mel filterbank (``norm`` is the DCT's), as librosa 0.11.
    check_finite : bool
        As :func:`melspectrogram` (audio input only).
    **kwargs
        Passed to :func:`melspectrogram` when ``y`` is given.

    Returns
    -------
    [shape=(..., n_mfcc, t)]

    Raises
    ------
    supermel.ParameterError
        Neither ``y`` nor ``S``, a negative ``lifter``, or invalid audio or parameters.

    Examples
    --------
    >>> import supermel
    >>> y, sr = supermel.audio.example_audio()
    >>> supermel.mfcc(y=y, sr=sr, n_mfcc=13).shape
    (13, 376)
    """
    if S is None:
        if y is None:
            raise ParameterError("mfcc needs y (audio) or S (a log-power mel spectrogram)")
        t, shape, was_numpy = _core.as_batch(y, check_finite=check_finite)
        spec = {k: kwargs.pop(k) for k in list(kwargs) if k in _STFT_KEYS}
        window = spec.pop("window", "hann")
        spec.setdefault("hop_length", 512)
        mod = _module_for("mfcc", t, window, sr=sr, n_mfcc=n_mfcc, dct_type=dct_type, norm=norm, lifter=lifter, mel_norm=mel_norm, **spec, **_mel_kwargs(kwargs, mfcc, _STFT_KEYS))
        out = mod.mfcc_tf(t)
        if check_finite:
            _core.warn_overflow(out, t)
        return _core.from_batch(out, shape, was_numpy)
    from .filters import dct_matrix, liftered

    s_t, shape, was_numpy = _core.as_batch(S, name="S", check_finite=False)
    s_full = s_t.reshape(shape + (s_t.shape[-1],))
    if s_full.ndim < 2:
        raise ParameterError(f"S must have shape (..., n_mels, t); got {tuple(s_full.shape)}")
    d = liftered(dct_matrix(s_full.shape[-2], n_mfcc, dct_type=dct_type, norm=norm), lifter)
    with _core.full_fp32_matmuls:  # full float32 whatever the host's TF32 setting
        out = torch.matmul(torch.as_tensor(d, dtype=s_full.dtype, device=s_full.device), s_full)
    return out.cpu().numpy() if was_numpy else out


# --------------------------------------------------------------------------- decibels
def _as_tensor(S: Array, name: str = "S") -> tuple:
    was_numpy = not isinstance(S, torch.Tensor)
    if was_numpy:
        arr = np.asarray(S)
        if arr.dtype.kind not in "fc":
            arr = arr.astype(np.float32 if arr.dtype.itemsize <= 4 else np.float64)
        return torch.from_numpy(np.ascontiguousarray(arr)), True
    return S, False


def power_to_db(S: Array, *, ref: RefSpec = 1.0, amin: float = 1e-10, top_db: Optional[float] = 80.0) -> Array:
    """``10 log10(S / ref)``, floored at ``max - top_db``: ``librosa.power_to_db``.

    Follows librosa 0.11 (the newest for Python 3.11): a callable ``ref`` (e.g.
    ``np.max``) and ``top_db`` apply to the whole array, batch included.
    (librosa 1.0 applies them per channel.) No host synchronisation on tensors.

    Parameters
    ----------
    S : array or Tensor, any shape
    ref : float or callable
    amin : float > 0
    top_db : float >= 0 or None

    Returns
    -------
    Same shape as ``S``.

    Raises
    ------
    supermel.ParameterError
        ``amin <= 0``, a negative ``top_db``, or a callable ``ref`` on an empty array.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.power_to_db(np.array([1.0, 10.0, 100.0]))
    array([ 0., 10., 20.])
    >>> supermel.power_to_db(np.array([1e-12, 1.0]), ref=np.max, top_db=80.0)
    array([-80.,   0.])
    """
    t, was_numpy = _as_tensor(S)
    out = _power_to_db_tensor(t, ref=ref, amin=amin, top_db=top_db)
    return out.numpy() if was_numpy else out


def amplitude_to_db(S: Array, *, ref: RefSpec = 1.0, amin: float = 1e-5, top_db: Optional[float] = 80.0) -> Array:
    """``20 log10(S / ref)``, floored at ``max - top_db``: ``librosa.amplitude_to_db``.

    Parameters
    ----------
    S : array or Tensor, any shape
        Amplitudes (complex values: their magnitude).
    ref : float or callable, default 1.0
        The amplitude that maps to 0 dB; a callable (``np.max``) is applied to ``abs(S)``.
    amin : float > 0, default 1e-5
        Floor of ``abs(S)`` before the log.
    top_db : float >= 0 or None, default 80.0
        Floor at ``max - top_db`` over the whole array.

    Returns
    -------
    Same type and shape as ``S``, real.

    Raises
    ------
    supermel.ParameterError
        ``amin <= 0`` or a negative ``top_db``.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.amplitude_to_db(np.array([1.0, 10.0, 100.0]))
    array([ 0., 20., 40.])
    """
    if not amin > 0:
        raise ParameterError(f"amin={amin} must be strictly positive")
    t, was_numpy = _as_tensor(S)
    _check_empty(t, ref, top_db)
    magnitude = t.abs()
    ref_value = _ref_value(ref, magnitude)
    out = _power_to_db_tensor(magnitude.square(), ref=_Const(ref_value * ref_value), amin=amin**2, top_db=top_db)
    return out.numpy() if was_numpy else out


def db_to_power(S_db: Array, *, ref: float = 1.0) -> Array:
    """``ref * 10 ** (S_db / 10)``: ``librosa.db_to_power``.

    Parameters
    ----------
    S_db : array or Tensor, any shape
        Decibels.
    ref : float, default 1.0
        The power of 0 dB.

    Returns
    -------
    Same type and shape as ``S_db``.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.db_to_power(np.array([0.0, 10.0, 20.0]))
    array([  1.,  10., 100.])
    """
    t, was_numpy = _as_tensor(S_db)
    out = ref * torch.pow(10.0, 0.1 * t)
    return out.numpy() if was_numpy else out


def db_to_amplitude(S_db: Array, *, ref: float = 1.0) -> Array:
    """``ref * 10 ** (S_db / 20)``: ``librosa.db_to_amplitude``.

    Parameters
    ----------
    S_db : array or Tensor, any shape
        Decibels.
    ref : float, default 1.0
        The amplitude of 0 dB.

    Returns
    -------
    Same type and shape as ``S_db``.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.db_to_amplitude(np.array([0.0, 20.0, 40.0]))
    array([  1.,  10., 100.])
    """
    t, was_numpy = _as_tensor(S_db)
    out = torch.sqrt(ref**2 * torch.pow(10.0, 0.1 * t))
    return out.numpy() if was_numpy else out
