"""Wav2Lip: its mel spectrogram, its per-video-frame windows, live and offline.

Everything about Wav2Lip's features: :class:`Wav2LipConfig` (``audio.py`` and
``hparams.py`` of Rudrabha/Wav2Lip), the :class:`Wav2Lip` module, the windows of
``inference.py`` (:func:`wav2lip_mel_chunks`) and :class:`Wav2LipChunker`, which
returns each video frame's window as soon as its audio has arrived.
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from .._errors import ParameterError
from .base import Array, Frontend, MelConfig, _Checker, frontend, preemphasis, register, register_module
from .base import _is_int
from .streaming import StreamingFrontend, _check_streams

__all__ = ["Wav2LipConfig", "Wav2Lip", "wav2lip_mel_chunks", "wav2lip_window_ratio", "wav2lip_window_start", "Wav2LipChunker"]


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

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("wav2lip-reflect").config
    >>> cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.pad_mode
    (800, 200, 80, 'reflect')
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


class Wav2Lip(Frontend):
    """Wav2Lip's mel spectrogram (see :class:`Wav2LipConfig`). Output ``(..., 80, 1 + L // 200)``.

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> fe = supermel.frontend("wav2lip")            # a Wav2Lip module
    >>> mel = fe(np.zeros(16000, np.float32))
    >>> mel.shape, float(mel.min()) >= -4.0
    ((80, 81), True)
    """

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


# =========================================================================== windows of inference.py
def wav2lip_window_ratio(fps: Union[float, int, fractions.Fraction], *, mel_fps: float = 80.0, mel_step_size: int = 16) -> fractions.Fraction:
    """Mel columns per video frame, ``mel_fps / fps`` as an exact fraction of the given numbers (validated).

    Shared by :func:`wav2lip_mel_chunks` and :class:`supermel.Wav2LipChunker`;
    ``mel_step_size`` is only checked here.

    Parameters
    ----------
    fps : float, int or fractions.Fraction > 0
        Video frame rate (``30000/1001`` as a Fraction for 29.97 exactly).
    mel_fps : float, default 80.0
        Mel columns per second.
    mel_step_size : int > 0, default 16
        Columns per window.

    Returns
    -------
    fractions.Fraction

    Raises
    ------
    supermel.ParameterError
        A non-positive or non-finite ``fps``, or ``mel_step_size <= 0``.

    Examples
    --------
    >>> from fractions import Fraction
    >>> from supermel.presets import wav2lip_window_ratio
    >>> wav2lip_window_ratio(25)
    Fraction(16, 5)
    >>> wav2lip_window_ratio(Fraction(30000, 1001))
    Fraction(1001, 375)
    """
    for nm, v in (("fps", fps), ("mel_fps", mel_fps)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating, fractions.Fraction)) or not math.isfinite(v) or v <= 0:
            raise ParameterError(f"{nm}={v!r} must be a positive, finite number of frames per second")
    if not _is_int(mel_step_size) or mel_step_size <= 0:
        raise ParameterError(f"mel_step_size={mel_step_size!r} must be a positive integer")
    return fractions.Fraction(mel_fps) / fractions.Fraction(fps)


def wav2lip_window_start(i: int, ratio: fractions.Fraction) -> int:
    """First mel column of video frame ``i``'s window: ``floor(i * ratio)``, exactly (see :func:`wav2lip_window_ratio`).

    Parameters
    ----------
    i : int >= 0
        Video frame index.
    ratio : fractions.Fraction
        From :func:`wav2lip_window_ratio`.

    Returns
    -------
    int

    Examples
    --------
    >>> from supermel.presets import wav2lip_window_ratio, wav2lip_window_start
    >>> [wav2lip_window_start(i, wav2lip_window_ratio(25)) for i in range(4)]
    [0, 3, 6, 9]
    """
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

    Examples
    --------
    >>> import numpy as np, supermel
    >>> mel = supermel.frontend("wav2lip")(np.zeros(32000, np.float32))   # 2 s: (80, 161)
    >>> supermel.wav2lip_mel_chunks(mel, fps=25).shape
    (47, 80, 16)
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


# =========================================================================== windows, live
class Wav2LipChunker:
    """Wav2Lip's per-video-frame mel windows, each as soon as its 16 columns exist.

    Video frame ``i`` gets the window ``mel[:, s_i : s_i + 16]`` with
    ``s_i = floor(mel_fps * i / fps)`` (the rule of
    :func:`supermel.wav2lip_mel_chunks`, shared with it: exact arithmetic on
    the given numbers, so integer fps is integer arithmetic). :meth:`push`
    returns every window whose columns have all arrived; :meth:`flush` returns
    the one window Wav2Lip's ``inference.py`` ends with: the first window that
    would run past the end is replaced by the last 16 columns. The
    concatenation of all outputs (axis ``-3``) equals
    ``supermel.wav2lip_mel_chunks(mel, fps)``.

    Parameters
    ----------
    fps : float or Fraction > 0
        Video frame rate (25, 30, 29.97, ``Fraction(30000, 1001)``...).
    frontend : None, str or Wav2Lip
        ``None``: :meth:`push` takes mel columns ``(n_mels, k)`` (or
        ``(num_streams, n_mels, k)``), e.g. from a Wav2Lip
        :class:`StreamingFrontend`. A Wav2Lip preset name (``"wav2lip"``,
        ``"wav2lip-reflect"``) or module: :meth:`push` takes audio chunks and
        runs them through that front end's streaming form.
    mel_step_size : int
        Columns per window (16 = 200 ms).
    mel_fps : float, optional
        Mel columns per second (default: the front end's ``sr / hop_length``, 80).
    num_streams, device, check_finite
        As :class:`StreamingFrontend` (audio mode); ``num_streams`` also sets the
        shape of the mel columns.

    Attributes
    ----------
    window_count : int
        Windows returned so far: the next window is video frame ``window_count``'s.
    latency_samples, latency_ms
        Audio look-ahead: video frame ``i``'s window needs audio up to
        ``hop * (s_i + 15) + n_fft - pad`` samples, i.e. up to
        ``(mel_step_size - 1) * hop + n_fft / 2`` = 3400 samples (**212.5 ms**)
        after sample ``hop * s_i``, which is at or before the frame's timestamp
        ``i / fps``: 15 further columns of 12.5 ms plus the half window (25 ms)
        of the last one. Add the wait for the audio chunk that completes it.
        Computed from the front end (default Wav2Lip parameters in mel mode).
    latency_columns : int
        Mel columns a window needs from its start (``mel_step_size``).

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    >>> chunker = supermel.Wav2LipChunker(25, frontend="wav2lip")
    >>> parts = [chunker.push(y[i:i + 640]) for i in range(0, len(y), 640)] + [chunker.flush()]
    >>> windows = np.concatenate(parts, axis=0)
    >>> windows.shape, chunker.latency_ms
    ((47, 80, 16), 212.5)
    >>> np.allclose(windows, supermel.wav2lip_mel_chunks(supermel.frontend("wav2lip")(y), 25), atol=1e-5)
    True
    """

    def __init__(
        self,
        fps: Union[float, int, fractions.Fraction],
        *,
        frontend: Union[None, str, Wav2Lip] = None,
        mel_step_size: int = 16,
        mel_fps: Optional[float] = None,
        num_streams: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        check_finite: bool = True,
    ) -> None:
        _check_streams(num_streams)
        self.stream: Optional[StreamingFrontend] = None
        if frontend is not None:
            fe = _wav2lip_frontend(frontend)
            self.stream = fe.streaming(num_streams=num_streams, device=device, check_finite=check_finite)
            cfg: Wav2LipConfig = fe.config
            pad = fe.core.spectrogram.pad
        else:
            cfg = Wav2LipConfig()
            pad = cfg.effective_pad
        if mel_fps is None:
            mel_fps = fractions.Fraction(cfg.sr) / cfg.hop_length
        self.ratio = wav2lip_window_ratio(fps, mel_fps=mel_fps, mel_step_size=mel_step_size)
        self.fps, self.mel_fps, self.mel_step_size = fps, mel_fps, int(mel_step_size)
        self.num_streams = None if num_streams is None else int(num_streams)
        self.latency_columns = self.mel_step_size
        self.latency_samples = (self.mel_step_size - 1) * cfg.hop_length + cfg.n_fft - pad
        self.latency_ms = 1000.0 * self.latency_samples / float(cfg.sr)
        self.reset()

    def reset(self) -> None:
        """Forget all input (every stream): the next window is video frame 0's."""
        if self.stream is not None:
            self.stream.reset()
        self._cols: Optional[torch.Tensor] = None  # (S, C, m) kept columns
        self._col0 = 0  # column index of _cols[..., 0]
        self._n_cols = 0  # columns received
        self.window_count = 0
        self._flushed = False
        self._was_numpy = True

    @property
    def columns_received(self) -> int:
        """Mel columns received since the last reset."""
        return self._n_cols

    def _take(self, mel: Array) -> Union[Array, None]:
        """Add columns ``(S, C, k)``; return the windows they complete, ``(S, n, C, step)``."""
        was_numpy = not isinstance(mel, torch.Tensor)
        t = torch.from_numpy(np.ascontiguousarray(mel)) if was_numpy else mel
        want = 2 if self.num_streams is None else 3
        if t.ndim != want or (self.num_streams is not None and t.shape[0] != self.num_streams):
            expected = "(n_mels, k)" if self.num_streams is None else f"({self.num_streams}, n_mels, k)"
            raise ParameterError(f"mel has shape {tuple(t.shape)}; this chunker takes mel columns of shape {expected}")
        if self.num_streams is None:
            t = t.unsqueeze(0)
        if self._cols is not None and (t.shape[1] != self._cols.shape[1] or t.dtype != self._cols.dtype):
            raise ParameterError(
                f"mel has {t.shape[1]} rows of {t.dtype}; the earlier columns had {self._cols.shape[1]} of {self._cols.dtype}"
            )
        self._was_numpy = was_numpy
        self._cols = t if self._cols is None else torch.cat([self._cols, t], dim=-1)
        self._n_cols += t.shape[-1]
        step, wins = self.mel_step_size, []
        while True:
            s = wav2lip_window_start(self.window_count, self.ratio)
            if s + step > self._n_cols:
                break
            wins.append(self._cols[..., s - self._col0 : s - self._col0 + step])
            self.window_count += 1
        # the next window starts after n_cols - step: the last `step` columns are all it (or the final clamp) reads
        keep_from = max(self._col0, self._n_cols - step)
        if keep_from > self._col0:
            self._cols = self._cols[..., keep_from - self._col0 :]
            self._col0 = keep_from
        if wins:
            return torch.stack(wins, dim=1)
        return self._cols.new_zeros((self._cols.shape[0], 0, self._cols.shape[1], step))

    def _out(self, w: torch.Tensor, was_numpy: bool) -> Array:
        if self.num_streams is None:
            w = w[0]
        return w.detach().cpu().numpy() if was_numpy else w

    def push(self, data: Array) -> Array:
        """Add mel columns (or audio, with ``frontend``); return the windows they complete.

        Returns ``(n, n_mels, mel_step_size)`` (``(num_streams, n, ...)``), ``n >= 0``;
        numpy for numpy input.

        Parameters
        ----------
        data : array [shape=(n_mels, k)] of mel columns, or [shape=(n,)] audio with ``frontend``
            (``(num_streams, ...)`` for several streams).

        Examples
        --------
        >>> import numpy as np, supermel
        >>> chunker = supermel.Wav2LipChunker(25, frontend="wav2lip")
        >>> chunker.push(np.zeros(8000, np.float32)).shape   # 0.5 s of audio
        (8, 80, 16)
        >>> chunker.latency_ms
        212.5
        """
        if self._flushed:
            raise ParameterError("push() after flush(): the stream has ended; call reset() to start a new one")
        if self.stream is not None:
            mel = self.stream.push(data)
            was_numpy = not isinstance(data, torch.Tensor)
        else:
            mel, was_numpy = data, not isinstance(data, torch.Tensor)
        return self._out(self._take(mel), was_numpy)

    def flush(self) -> Array:
        """End the input; return the remaining windows: with ``frontend``, those of the last columns, then the clamped last window.

        Returns
        -------
        array [shape=(n, n_mels, mel_step_size)]

        Examples
        --------
        >>> import numpy as np, supermel
        >>> y = np.zeros(16000, np.float32)
        >>> chunker = supermel.Wav2LipChunker(25, frontend="wav2lip")
        >>> n = chunker.push(y).shape[0] + chunker.flush().shape[0]
        >>> n == supermel.wav2lip_mel_chunks(supermel.frontend("wav2lip")(y), fps=25).shape[0]
        True
        """
        if self._flushed:
            raise ParameterError("flush() called twice: the stream has ended; call reset() to start a new one")
        parts = []
        was_numpy = self._was_numpy
        if self.stream is not None:
            was_numpy = self.stream._last_numpy
            parts.append(self._take(self.stream.flush()))
        step = self.mel_step_size
        if self._n_cols < step:
            raise ParameterError(
                f"mel has {self._n_cols} columns, fewer than mel_step_size={step}; "
                f"Wav2Lip needs at least {step} columns ({step - 1} hops of audio plus one sample)"
            )
        assert self._cols is not None
        lo = self._n_cols - step - self._col0
        parts.append(self._cols[..., lo : lo + step].unsqueeze(1))
        self.window_count += 1
        self._flushed = True
        return self._out(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0], was_numpy)


def _wav2lip_frontend(spec: Union[str, Wav2Lip]) -> Wav2Lip:
    fe = frontend(spec) if isinstance(spec, str) else spec
    if not isinstance(fe, Wav2Lip):
        raise ParameterError(f"frontend must be a Wav2Lip preset name or module (e.g. 'wav2lip'), not {type(fe).__name__}")
    return fe


register_module(Wav2LipConfig, Wav2Lip)
register(Wav2LipConfig(), "Wav2Lip lip-sync audio encoder input, 16 kHz, 80 mels in [-4, 4], zero padding (librosa >= 0.9 forks)")
register(
    Wav2LipConfig(name="wav2lip-reflect", pad_mode="reflect"),
    "Wav2Lip with reflect padding, as the released checkpoints were trained (librosa 0.7)",
)
