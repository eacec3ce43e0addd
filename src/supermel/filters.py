"""Windows and filterbanks, computed exactly as librosa computes them.

Everything here is built in float64 with numpy/scipy, following librosa 0.11's
order of operations (including its float32 rounding points), and then cached on
the device that asks for it (:func:`cached_tensor`). The spectral core, the
modules, the streaming code and the front-end presets all take their constants
from this module, so there is one definition of each.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Hashable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._errors import ParameterError
from ._limits import check_memory

__all__ = [
    "WindowSpec",
    "get_window",
    "pad_center",
    "hz_to_mel",
    "mel_to_hz",
    "mel_frequencies",
    "fft_frequencies",
    "mel_filters",
    "dct_matrix",
    "check_mel_params",
]

WindowSpec = Union[str, Tuple[Any, ...], float, Callable[[int], np.ndarray], np.ndarray, Sequence[float]]


# --------------------------------------------------------------------------- windows
def get_window(window: WindowSpec, win_length: int, *, fftbins: bool = True) -> np.ndarray:
    """Return a window of ``win_length`` samples, as ``librosa.filters.get_window``.

    Parameters
    ----------
    window : str, tuple, float, callable or array_like
        A window specification understood by :func:`scipy.signal.get_window`
        (``"hann"``, ``("kaiser", 8.0)``, ...), a function of the length, or an
        array of exactly ``win_length`` values.
    win_length : int > 0
        Number of samples.
    fftbins : bool
        Periodic (``True``, the default, as librosa) or symmetric window.

    Returns
    -------
    np.ndarray [shape=(win_length,)], float64

    Raises
    ------
    supermel.ParameterError
        An unknown window name, ``win_length <= 0``, or an array of another length.

    Examples
    --------
    >>> import supermel
    >>> w = supermel.get_window("hann", 800)
    >>> w.shape, float(w[0]), float(w[400])
    ((800,), 0.0, 1.0)
    >>> supermel.get_window(("kaiser", 8.0), 512).shape
    (512,)
    """
    if callable(window):
        out = np.asarray(window(win_length), dtype=np.float64)
    elif isinstance(window, str) and window == "hann":
        out = _hann(win_length, sym=not fftbins)  # the default: without importing scipy.signal
    elif isinstance(window, (str, tuple)) or np.isscalar(window):
        import scipy.signal  # imported on first use: about 1 s at import time, in every new process

        try:
            out = scipy.signal.get_window(window, win_length, fftbins=fftbins)
        except (ValueError, TypeError) as exc:
            raise ParameterError(
                f"window={window!r} is not a window scipy.signal.get_window knows ({exc}); "
                "use a name such as 'hann', a tuple such as ('kaiser', 8.0), or an array"
            ) from None
    elif isinstance(window, (np.ndarray, list, torch.Tensor)):
        arr = window.detach().cpu().numpy() if isinstance(window, torch.Tensor) else np.asarray(window)
        if arr.ndim != 1 or len(arr) != win_length:
            raise ParameterError(
                f"window array has shape {arr.shape}, but win_length={win_length}; "
                f"pass an array of exactly {win_length} samples"
            )
        out = arr
    else:
        raise ParameterError(f"Invalid window specification: {window!r}")
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (win_length,):
        raise ParameterError(f"window function returned shape {out.shape}, expected ({win_length},)")
    if not np.all(np.isfinite(out)):
        raise ParameterError(f"window={window!r} has non-finite values")
    return out



def _hann(M: int, *, sym: bool) -> np.ndarray:
    """``scipy.signal.windows.hann(M, sym)``: the same numpy operations in the same order, so the
    same bits (tests/test_core_parity.py compares them), without importing ``scipy.signal``."""
    if M <= 1:
        return np.ones(M, dtype=np.float64)
    n = M if sym else M + 1
    fac = np.linspace(-np.pi, np.pi, n, dtype=np.float64)
    a = np.asarray([0.5, 0.5], dtype=np.float64)
    w = np.zeros(n, dtype=np.float64)
    for k in range(a.shape[0]):
        w += a[k] * np.cos(k * fac)
    return w if sym else w[:-1]

def pad_center(data: np.ndarray, *, size: int) -> np.ndarray:
    """Zero-pad a 1-d array to ``size`` samples, centred (``librosa.util.pad_center``)."""
    n = data.shape[-1]
    lpad = (size - n) // 2
    if lpad < 0:
        raise ParameterError(f"Target size ({size}) must be at least input size ({n})")
    return np.pad(data, (lpad, size - n - lpad))


def _window_key(window: WindowSpec) -> Hashable:
    """A hashable key for a window specification (arrays by value)."""
    if isinstance(window, torch.Tensor):
        window = window.detach().cpu().numpy()
    if isinstance(window, (np.ndarray, list)):
        arr = np.asarray(window, dtype=np.float64)
        return ("array", arr.shape, arr.tobytes())
    if isinstance(window, tuple):
        return ("tuple",) + tuple(window)
    return window  # str, number, or a (hashable) callable


# --------------------------------------------------------------------------- mel scale
def hz_to_mel(frequencies: Any, *, htk: bool = False) -> np.ndarray:
    """Hz to mels (Slaney scale by default, HTK with ``htk=True``), as librosa.

    Parameters
    ----------
    frequencies : float or array_like, any shape
        Frequencies in Hz.
    htk : bool, default False
        HTK's formula ``2595 log10(1 + f / 700)`` instead of Slaney's (linear below 1 kHz, log above).

    Returns
    -------
    np.ndarray, the shape of ``frequencies``, float64
        Mels.

    Examples
    --------
    >>> import supermel
    >>> round(float(supermel.hz_to_mel(1000.0)), 6)
    15.0
    >>> round(float(supermel.hz_to_mel(1000.0, htk=True)), 2)
    999.99
    """
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    if frequencies.ndim:
        log_t = frequencies >= min_log_hz
        mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    elif frequencies >= min_log_hz:
        mels = min_log_mel + np.log(frequencies / min_log_hz) / logstep
    return mels


def mel_to_hz(mels: Any, *, htk: bool = False) -> np.ndarray:
    """Mels to Hz (inverse of :func:`hz_to_mel`), as librosa.

    Parameters
    ----------
    mels : float or array_like, any shape
        Mels.
    htk : bool, default False
        HTK's formula instead of Slaney's.

    Returns
    -------
    np.ndarray, the shape of ``mels``, float64
        Frequencies in Hz.

    Examples
    --------
    >>> import supermel
    >>> round(float(supermel.mel_to_hz(15.0)), 6)
    1000.0
    >>> round(float(supermel.mel_to_hz(supermel.hz_to_mel(440.0))), 6)
    440.0
    """
    mels = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    if mels.ndim:
        log_t = mels >= min_log_mel
        freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    elif mels >= min_log_mel:
        freqs = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return freqs


def mel_frequencies(n_mels: int = 128, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies equally spaced on the mel scale (``librosa.mel_frequencies``).

    Parameters
    ----------
    n_mels : int > 0, default 128
        Number of frequencies.
    fmin, fmax : float, default 0 and 11025
        The first and last frequency in Hz.
    htk : bool, default False
        HTK mel scale instead of Slaney's.

    Returns
    -------
    np.ndarray [shape=(n_mels,)], float64
        Frequencies in Hz, ``fmin`` first and ``fmax`` last.

    Examples
    --------
    >>> import supermel
    >>> supermel.mel_frequencies(5, fmin=0.0, fmax=8000.0).round(1)
    array([   0. ,  754.1, 1688.9, 3675.8, 8000. ])
    """
    mels = np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels)
    return mel_to_hz(mels, htk=htk)


def fft_frequencies(*, sr: float = 22050, n_fft: int = 2048) -> np.ndarray:
    """Centre frequency of each rfft bin: ``rfftfreq(n_fft, 1 / sr)``.

    Parameters
    ----------
    sr : float > 0, default 22050
        Sample rate in Hz.
    n_fft : int > 0, default 2048
        FFT size.

    Returns
    -------
    np.ndarray [shape=(1 + n_fft // 2,)], float64
        ``0, sr / n_fft, ..., sr / 2``.

    Examples
    --------
    >>> import supermel
    >>> supermel.fft_frequencies(sr=16000, n_fft=8)
    array([   0., 2000., 4000., 6000., 8000.])
    """
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def _normalize_rows(weights: np.ndarray, norm: float) -> np.ndarray:
    """``librosa.util.normalize(weights, norm=norm, axis=-1)`` (fill=None)."""
    mag = np.abs(weights).astype(float)
    if norm == np.inf:
        length = np.max(mag, axis=-1, keepdims=True)
    elif norm == -np.inf:
        length = np.min(mag, axis=-1, keepdims=True)
    elif norm == 0:
        length = np.sum(mag > 0, axis=-1, keepdims=True, dtype=mag.dtype)
    else:
        length = np.sum(mag**norm, axis=-1, keepdims=True) ** (1.0 / norm)
    length[length < np.finfo(weights.dtype).tiny] = 1.0
    out = np.empty_like(weights)
    out[:] = weights / length
    return out


def _check_norm(norm: Any) -> None:
    if norm is None or norm == "slaney":
        return
    if isinstance(norm, str) or not np.issubdtype(type(norm), np.number) or isinstance(norm, bool):
        raise ParameterError(f"norm={norm!r} is not supported; use 'slaney', None, or a number p > 0 (or np.inf)")
    if not (norm > 0 or norm == -np.inf) and norm != 0:
        raise ParameterError(f"norm={norm!r} must be positive (a p-norm), 0, or +/-np.inf")


def check_mel_params(*, sr: float, n_fft: int, n_mels: int, fmin: float, fmax: Optional[float]) -> float:
    """Validate the filterbank parameters; return the effective ``fmax``."""
    if not (isinstance(sr, (int, float, np.integer, np.floating)) and sr > 0 and math.isfinite(sr)):
        raise ParameterError(f"sr={sr!r} must be a positive sample rate in Hz")
    if not (isinstance(n_fft, (int, np.integer)) and n_fft > 0):
        raise ParameterError(f"n_fft={n_fft!r} must be a positive integer")
    if not (isinstance(n_mels, (int, np.integer)) and n_mels > 0):
        raise ParameterError(f"n_mels={n_mels!r} must be a positive integer")
    fmax_eff = float(sr) / 2 if fmax is None else float(fmax)
    if not math.isfinite(float(fmin)) or fmin < 0:
        raise ParameterError(f"fmin={fmin!r} must be a finite frequency >= 0 Hz")
    if fmax_eff > float(sr) / 2 * (1 + 1e-12):
        raise ParameterError(f"fmax={fmax!r} is above the Nyquist frequency sr/2={sr / 2}; use fmax <= {sr / 2} or None")
    if fmin >= fmax_eff:
        raise ParameterError(f"fmin={fmin!r} must be below fmax={fmax_eff!r}; lower fmin or raise fmax")
    return fmax_eff


def mel_filters(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
    htk: bool = False,
    norm: Any = "slaney",
    dtype: Any = np.float32,
) -> np.ndarray:
    """Mel filterbank matrix, identical to ``librosa.filters.mel``.

    Parameters
    ----------
    sr : float > 0
        Sample rate in Hz.
    n_fft : int > 0
        FFT size.
    n_mels : int > 0
        Number of mel bands.
    fmin, fmax : float
        Band edges in Hz; ``fmax=None`` means ``sr / 2``.
    htk : bool
        HTK mel scale instead of Slaney's.
    norm : {"slaney", None} or number
        Area normalisation ("slaney"), none, or unit p-norm rows.
    dtype : numpy dtype
        Output dtype (librosa rounds to float32 by default).

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)]

    Warns
    -----
    UserWarning
        "Empty filters detected in mel frequency basis" when a band has no bins.

    Raises
    ------
    supermel.ParameterError
        ``sr``, ``n_fft`` or ``n_mels`` not positive, ``fmin >= fmax``, ``fmax > sr / 2``, an
        unknown ``norm``, or a filterbank above the working-memory limit
        (:func:`supermel.set_memory_limit`).

    Examples
    --------
    >>> import supermel
    >>> fb = supermel.mel_filters(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    >>> fb.shape, fb.dtype
    ((80, 401), dtype('float32'))
    """
    fmax = check_mel_params(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    _check_norm(norm)
    # librosa's construction holds about four (n_mels + 2, 1 + n_fft // 2) float64 arrays
    check_memory(
        4.0 * 8 * (int(n_mels) + 2) * (int(n_fft) // 2 + 1), what=f"a mel filterbank with n_fft={n_fft} and n_mels={n_mels}",
        fix="check n_fft (a typical value is 512-4096) and n_mels",
    )
    weights = _mel_filters_cached(float(sr), int(n_fft), int(n_mels), float(fmin), fmax, bool(htk), norm, np.dtype(dtype).str)
    if weights[1]:
        warnings.warn(
            "Empty filters detected in mel frequency basis. "
            "Some channels will produce empty responses. "
            "Try increasing your sampling rate (and fmax) or reducing n_mels.",
            stacklevel=2,
        )
    return weights[0].copy()


def mel_filters_above_nyquist(*, sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float, dtype: Any = np.float32) -> np.ndarray:
    """Slaney mel filters whose top ``fmax`` may lie above ``sr / 2``, as Whisper's hosts build them.

    transformers' ``WhisperFeatureExtractor`` and faster-whisper's ``FeatureExtractor`` keep
    Whisper's 8000 Hz top at any sampling rate (4 and 8 kHz audio): the triangles are laid out
    up to ``fmax`` and sampled at the FFT bins (0 to ``sr / 2``), so the filters above Nyquist
    are all zero. The same construction as :func:`mel_filters` (librosa's, which also accepts
    such an ``fmax``), without its Nyquist check and without the empty-filter warning (the
    hosts' choice, made on purpose here). Returns ``(n_mels, 1 + n_fft // 2)``.
    """
    check_mel_params(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=min(float(fmax), float(sr) / 2))
    if not float(fmin) < float(fmax):
        raise ParameterError(f"fmin={fmin!r} must be below fmax={fmax!r}")
    weights, _ = _mel_filters_cached(float(sr), int(n_fft), int(n_mels), float(fmin), float(fmax), False, "slaney", np.dtype(dtype).str)
    return weights.copy()


@functools.lru_cache(maxsize=64)
def _mel_filters_cached(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_str) -> Tuple[np.ndarray, bool]:
    # librosa's exact order of operations: float64 ramps, stored into a `dtype`
    # array row by row, then normalised in place (so the result is rounded twice).
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.dtype(dtype_str))
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
        weights *= enorm[:, np.newaxis]
    elif norm is not None:
        weights = _normalize_rows(weights, norm)
    empty = not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0))
    weights.setflags(write=False)
    return weights, empty


def dct_matrix(n_in: int, n_out: int, *, dct_type: int = 2, norm: Optional[str] = "ortho") -> np.ndarray:
    """The matrix ``D`` with ``D @ x == scipy.fft.dct(x, type=dct_type, norm=norm)[:n_out]``.

    Returns
    -------
    np.ndarray [shape=(n_out, n_in)], float64
    """
    if dct_type not in (1, 2, 3, 4):
        raise ParameterError(f"dct_type={dct_type!r} must be 1, 2, 3 or 4")
    if norm not in (None, "ortho", "backward", "forward"):
        raise ParameterError(f"norm={norm!r} for the DCT must be None or 'ortho'")
    if dct_type == 1 and n_in < 2:
        raise ParameterError("dct_type=1 needs at least 2 mel bands")
    import scipy.fft  # imported on first use (about 0.2 s at import time, paid by every worker process)

    return scipy.fft.dct(np.eye(n_in), type=dct_type, norm=norm, axis=0)[:n_out]


def check_lifter(lifter: Any) -> None:
    """Refuse an MFCC ``lifter`` that is not a finite number >= 0 (NaN, inf, negative, not a number)."""
    if isinstance(lifter, (bool, np.bool_)) or not isinstance(lifter, (int, float, np.integer, np.floating)):
        raise ParameterError(f"MFCC lifter={lifter!r} must be a non-negative number (0 for no liftering)")
    if not math.isfinite(float(lifter)) or lifter < 0:
        raise ParameterError(f"MFCC lifter={lifter} must be a non-negative number: a finite value >= 0 (0 for no liftering)")


def liftered(d: np.ndarray, lifter: Any) -> np.ndarray:
    """The DCT matrix ``d`` ``(n_mfcc, n_mels)`` with librosa's sinusoidal liftering applied to its rows.

    ``lifter`` must be a finite number >= 0 (0: no liftering, ``d`` itself). librosa refuses NaN
    and negative values; ``inf`` (which makes librosa's result NaN) is refused too.
    """
    check_lifter(lifter)
    if lifter == 0:
        return d
    li = np.sin(np.pi * np.arange(1, 1 + d.shape[0], dtype=np.float64) / lifter)
    return d * (1 + (lifter / 2) * li)[:, None]


# --------------------------------------------------------------------------- Kaldi
def kaldi_mel_filters(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 23,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Kaldi's mel filterbank (``compute-fbank-feats``, torchaudio ``kaldi.fbank``, kaldi-native-fbank).

    Unlike :func:`mel_filters`, the triangles are linear in *mel* (scale
    ``1127 ln(1 + f / 700)``), not in Hz, and are not normalised; the Nyquist
    bin always gets weight 0. Bin ``b`` has edges ``left = mel(low) + b d``,
    ``centre = left + d``, ``right = left + 2 d`` with
    ``d = (mel(high) - mel(low)) / (n_mels + 1)``; FFT bin ``k < n_fft / 2``
    at mel ``m = mel(k sr / n_fft)`` gets ``(m - left) / (centre - left)`` for
    ``left < m <= centre`` and ``(right - m) / (right - centre)`` for
    ``centre < m < right`` (Kaldi ``MelBanks``; frontends.md section 0.6).

    Parameters
    ----------
    sr : float > 0
        Sample rate in Hz.
    n_fft : int > 0
        The padded FFT size (Kaldi's ``PaddedWindowSize``).
    n_mels : int > 0
        Number of bins (Kaldi ``num_mel_bins``, default 23).
    low_freq : float >= 0
        Lower edge in Hz.
    high_freq : float
        Upper edge in Hz; ``<= 0`` means Nyquist + ``high_freq`` (so ``-400``
        at 16 kHz is 7600 Hz).
    dtype : numpy dtype
        Output dtype; the weights are computed in float64.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)]

    Raises
    ------
    supermel.ParameterError
        A non-positive ``sr``, ``n_fft < 2``, ``n_mels <= 0``, or band edges out of order.

    Examples
    --------
    >>> import supermel
    >>> fb = supermel.kaldi_mel_filters(sr=16000, n_fft=512, n_mels=80)
    >>> fb.shape, float(fb[:, -1].max())
    ((80, 257), 0.0)
    """
    if not (isinstance(sr, (int, float, np.integer, np.floating)) and sr > 0 and math.isfinite(sr)):
        raise ParameterError(f"sr={sr!r} must be a positive sample rate in Hz")
    if not (isinstance(n_fft, (int, np.integer)) and not isinstance(n_fft, bool) and n_fft >= 2):
        raise ParameterError(f"n_fft={n_fft!r} must be an integer >= 2")
    if not (isinstance(n_mels, (int, np.integer)) and not isinstance(n_mels, bool) and n_mels > 0):
        raise ParameterError(f"num_mel_bins={n_mels!r} must be a positive integer")
    nyquist = 0.5 * float(sr)
    low = float(low_freq)
    high = float(high_freq) + nyquist if high_freq <= 0 else float(high_freq)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ParameterError(f"low_freq={low_freq!r} and high_freq={high_freq!r} must be finite")
    if not (0.0 <= low < high <= nyquist):
        raise ParameterError(
            f"Kaldi mel bins need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz); got low_freq={low_freq}, "
            f"high_freq={high_freq} (-> {high} Hz). A high_freq <= 0 is an offset from Nyquist"
        )

    def mel(f: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    mel_low, mel_high = mel(low), mel(high)
    delta = (mel_high - mel_low) / (n_mels + 1)
    left = mel_low + np.arange(n_mels, dtype=np.float64)[:, None] * delta
    centre = mel_low + (np.arange(n_mels, dtype=np.float64)[:, None] + 1.0) * delta
    right = mel_low + (np.arange(n_mels, dtype=np.float64)[:, None] + 2.0) * delta
    m = mel(np.arange(n_fft // 2, dtype=np.float64) * (float(sr) / n_fft))[None, :]
    up = (m - left) / (centre - left)
    down = (right - m) / (right - centre)
    w = np.where((m > left) & (m <= centre), up, np.where((m > centre) & (m < right), down, 0.0))
    out = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float64)
    out[:, : n_fft // 2] = w
    if np.any(out.max(axis=1) <= 0):
        warnings.warn(
            "Empty filters detected in the Kaldi mel basis; some bins will be constant. "
            "Use fewer num_mel_bins or a larger FFT (frame_length).",
            stacklevel=2,
        )
    return out.astype(dtype)
