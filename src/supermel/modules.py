"""``torch.nn.Module`` wrappers: constants built once, kept as buffers, moved with ``.to()``.

``MelSpectrogram = Spectrogram + MelScale`` (torchaudio's composition and
state-dict names ``spectrogram.window`` and ``mel_scale.fb``), with librosa's
defaults and numbers. Forward passes accept ``(..., n_samples)`` numpy arrays or
tensors; numpy in gives numpy out.

Devices: CPU, CUDA · ``torch.compile(fullgraph=True)``, CUDA graphs (no complex
tensors, no host synchronisation when ``check_finite=False`` or while compiling
or capturing). Compiled without autograd, the FFT route's padding and spectral
core are custom ops that run the kernels the eager call runs (they run eagerly:
the native CPU core where built and enabled): a mel spectrogram is one op,
``supermel::mel_signal`` (the eager native call's single crossing, padding
included), a spectrogram two (``supermel::pad_signal``, ``supermel::power_frames``).
The graph holds real tensors only and takes eager's time plus torch.compile's
fixed per-call cost (docs/compile.md); with autograd (or ``backend="matmul"``)
the graph traces torch's operators.

Precision: the float32 matrix products (the DFT of ``backend="matmul"``, the
filterbank, the MFCC's DCT) run in full float32 precision whatever torch's
global TF32 settings (``torch.set_float32_matmul_precision("high")``,
``torch.backends.cuda.matmul.allow_tf32``): the settings are switched to
``"highest"`` while the module computes and restored after
(:data:`supermel._core.full_fp32_matmuls`). A graph compiled with
``torch.compile`` that traces torch's operators follows the settings in force
when it runs.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import _core, _native
from ._db import _power_to_db_tensor
from . import _limits
from ._limits import check_memory
from ._errors import ParameterError
from .filters import WindowSpec, check_lifter, dct_matrix, get_window, liftered, mel_filters, pad_center

__all__ = ["Spectrogram", "MelScale", "MelSpectrogram", "MFCC", "BACKENDS"]

#: Ways to compute the DFT: "fft" (rfft + real arithmetic), "matmul" (real DFT
#: matrix product), "auto" (chosen per device by measurement, see BENCHMARKS.md).
BACKENDS = ("auto", "fft", "matmul")

Array = Union[np.ndarray, torch.Tensor]
_NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}
_FUNCTION_MODE = getattr(torch._C, "_is_torch_function_mode_enabled", None)
_DISPATCH_DEPTH = getattr(torch._C, "_len_torch_dispatch_stack", None)


def _torch_mode_active() -> bool:
    """A ``TorchFunctionMode`` or ``TorchDispatchMode`` is active (profilers, capture checkers,
    fake tensors): such a caller watches torch's operators, so the torch route runs."""
    return bool((_FUNCTION_MODE is not None and _FUNCTION_MODE()) or (_DISPATCH_DEPTH is not None and _DISPATCH_DEPTH()))


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ParameterError(f"backend={backend!r} must be one of {BACKENDS}")
    if backend != "auto":
        return backend
    # Measured (benchmarks/core.py): on CPU pocketfft beats the O(n_fft^2)
    # matrix product at every size we ship. On CUDA cuFFT is used as well; the
    # matmul route stays available for ONNX export and tensor-core experiments.
    return "fft"


def _float_dtype(dtype: Optional[torch.dtype]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ParameterError(f"dtype={dtype} must be torch.float32 or torch.float64")
    return dtype


def _dft_basis(win: np.ndarray, span: Tuple[int, int], n_fft: int, *, what: str, fix: str) -> np.ndarray:
    """The windowed real DFT basis ``[cos | -sin] * window`` on the window's support ``span``:
    ``(hi - lo, 2 (n_fft // 2 + 1))`` float64 (the matrix-product route's constant)."""
    lo, hi = span
    check_memory(4.0 * 8 * (hi - lo) * (n_fft + 2), what=what, fix=fix)
    n = np.arange(lo, hi)[:, None]
    k = np.arange(n_fft // 2 + 1)[None, :]
    ang = 2.0 * np.pi * ((n * k) % n_fft) / n_fft
    return np.concatenate([np.cos(ang), -np.sin(ang)], axis=1) * win[lo:hi, None]


class Spectrogram(nn.Module):
    """``|STFT(y)|**power`` with librosa's defaults (``abs(librosa.stft(y)) ** power``).

    Parameters
    ----------
    n_fft : int > 0
        FFT size.
    hop_length : int > 0 or None
        Hop; ``None`` means ``win_length // 4``.
    win_length : int <= n_fft or None
        Window length; ``None`` means ``n_fft``. Shorter windows are zero-padded and centred.
    window : str, tuple, array or callable
        Window specification (``scipy.signal.get_window``, periodic).
    center : bool
        Pad ``n_fft // 2`` on each side so frame ``t`` is centred on sample ``t * hop_length``.
    pad_mode : str
        numpy padding mode for ``center=True``: constant, edge, linear_ramp, reflect, symmetric.
    power : float > 0
        Exponent of the magnitude (1 magnitude, 2 power).
    backend : {"auto", "fft", "matmul"}
        How the DFT is computed; "fft": torch.fft.rfft, its output read as real pairs; "matmul": a real DFT matrix product.
    check_finite : bool
        Refuse NaN/Inf audio. Costs a host synchronisation on CUDA; skipped while
        compiling or capturing a CUDA graph.
    dtype, device : torch dtype and device of the buffers.

    Shape
    -----
    ``(..., n_samples)`` -> ``(..., 1 + n_fft // 2, n_frames)``.

    Examples
    --------
    >>> import torch, supermel
    >>> spec = supermel.Spectrogram(n_fft=512, hop_length=160)
    >>> spec(torch.zeros(2, 16000)).shape
    torch.Size([2, 257, 101])
    """

    window: torch.Tensor

    def __init__(
        self,
        *,
        n_fft: int = 2048,
        hop_length: Optional[int] = None,
        win_length: Optional[int] = None,
        window: WindowSpec = "hann",
        center: bool = True,
        pad_mode: str = "constant",
        power: float = 2.0,
        backend: str = "auto",
        check_finite: bool = True,
        mag_eps: float = 0.0,
        pad: Optional[int] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        super().__init__()
        hop_length, win_length = _core.check_stft_params(
            n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode, power=power
        )
        dtype = _float_dtype(dtype)
        device = _core.resolve_device(device)
        self.n_fft = int(n_fft)
        self.hop_length = hop_length
        self.win_length = win_length
        self.center = bool(center)
        self.pad_mode = pad_mode
        self.power = float(power)
        self.check_finite = bool(check_finite)
        self.mag_eps = float(mag_eps)
        # Samples of padding on each side: librosa's n_fft // 2 with center=True.
        # Presets (HiFi-GAN) pad (n_fft - hop) // 2 by reflection with center=False.
        self.pad = (self.n_fft // 2 if self.center else 0) if pad is None else int(pad)
        if self.pad and pad is not None and pad_mode not in _core.PAD_MODES:
            raise ParameterError(f"pad_mode={pad_mode!r} is unknown; use one of {_core.PAD_MODES}")
        self.backend = _resolve_backend(backend, device)
        self._window_spec = window

        win = pad_center(get_window(window, win_length, fftbins=True), size=self.n_fft)
        self.register_buffer("window", torch.as_tensor(win, dtype=dtype, device=device))
        # The window's support [lo, hi): the matmul route skips the zero padding.
        nz = np.flatnonzero(win)
        self.window_span: Tuple[int, int] = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, self.n_fft)
        if self.backend == "matmul":
            basis = _dft_basis(
                win, self.window_span, self.n_fft, what=f"backend='matmul' with n_fft={self.n_fft}", fix="use backend='fft' (the default) or a smaller n_fft"
            )
            self.register_buffer("dft", torch.as_tensor(basis, dtype=dtype, device=device))
        else:
            self.dft = None

    def matmul_dft(self) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(dft, window_span)`` of the matrix-product route, in the window's dtype and device.

        ``self.dft`` with ``backend="matmul"``; otherwise the same basis built now,
        exactly as a ``backend="matmul"`` module builds it, from the window (the
        buffer's values when they no longer follow the window spec, e.g. loaded
        from a state dict). The CUDA-graph streaming step uses it: a captured
        ``rfft`` depends on a cuFFT plan that torch's plan cache may evict (see
        :class:`supermel.StreamingMelSpectrogram`).
        """
        if self.dft is not None:
            return self.dft, self.window_span
        win = pad_center(get_window(self._window_spec, self.win_length, fftbins=True), size=self.n_fft)
        span = self.window_span
        if self.window.device.type != "meta":  # meta tensors have no values: the spec's window
            buf = self.window.detach().cpu()
            if not torch.equal(torch.as_tensor(win, dtype=buf.dtype), buf):
                win = buf.double().numpy()
                nz = np.flatnonzero(win)
                span = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, self.n_fft)
        basis = _dft_basis(
            win, span, self.n_fft, what=f"the matrix-product DFT with n_fft={self.n_fft}", fix="use a smaller n_fft (or cuda_graph=False: cuFFT)"
        )
        return torch.as_tensor(basis, dtype=self.window.dtype, device=self.window.device), span

    @property
    def n_freqs(self) -> int:
        """Number of frequency bins, ``1 + n_fft // 2``."""
        return self.n_fft // 2 + 1

    def num_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` input samples."""
        return _core.num_frames(n_samples, n_fft=self.n_fft, hop_length=self.hop_length, pad=self.pad)

    # -- the shared steps (offline, streaming and presets all call these) --
    def pad_input(self, y: torch.Tensor, out_rows: Optional[int] = None) -> torch.Tensor:
        """``(B, L)`` -> padded ``(B, L + 2 pad)``, librosa's padding; checks the length.

        Also checks the call's estimated working memory against the limit
        (:func:`supermel.set_memory_limit`); ``out_rows`` is the output's rows
        per frame (``n_mels`` for a mel spectrogram; default the frequency bins).
        """
        n = self.check_length(y)
        if not torch.compiler.is_compiling():
            _core.check_call_memory(
                y.shape[0], n, n_fft=self.n_fft, hop_length=self.hop_length, pad=self.pad,
                itemsize=y.element_size(), out_rows=self.n_freqs if out_rows is None else out_rows, blocked=y.device.type == "cpu",
            )
        if self.center and self.pad == self.n_fft // 2 and not torch.compiler.is_compiling():
            _core.warn_short(n, self.n_fft)
        if self.pad and _core._opaque_under_compile(self.dft, y, self.window):  # the spectral op follows: eager padding too
            return _core._pad_signal_op(y, self.pad, self.pad_mode, self.n_fft, self.hop_length)
        return _core.pad_signal(y, pad=self.pad, mode=self.pad_mode, n_fft=self.n_fft, hop_length=self.hop_length)

    def check_length(self, y: torch.Tensor) -> int:
        """The signal's length, checked: uncentred analysis needs at least ``n_fft`` samples."""
        n = y.shape[-1]
        if self.pad == 0 and n < self.n_fft:
            raise ParameterError(
                f"n_fft={self.n_fft} is too large for uncentered analysis of input signal of length={n}; "
                "pass at least n_fft samples or use center=True"
            )
        return n

    def native_route(self, z: torch.Tensor, *consts: Optional[torch.Tensor], framed: bool = False) -> bool:
        """Whether frames of ``z`` go through the native CPU core (:mod:`supermel._native`): built
        and enabled, a CPU float tensor, the FFT backend, nothing for autograd to record, not
        compiling or tracing, no torch function or dispatch mode active (tools that watch torch's
        operators see them). docs/exactness.md: which route each call takes."""
        return (
            not torch.compiler.is_compiling()  # first: nothing below is traced by dynamo
            and _native.enabled()
            and not _torch_mode_active()
            and self.dft is None
            and type(z) is torch.Tensor
            and z.device.type == "cpu"
            and z.dtype in _NP_DTYPE
            and (framed or (z.ndim == 2 and z.shape[-1] >= self.n_fft))  # framed: frames the caller checks
            and not torch.jit.is_tracing()
            and not (torch.is_grad_enabled() and _core._needs_grad(z, self._buffers["window"], *consts))
        )

    def native_plan(self, dtype: torch.dtype, fb: Optional[torch.Tensor] = None, weights: Optional[torch.dtype] = None, **post: Any) -> Any:
        """The cached native plan of this spectrogram for ``dtype`` frames (with the filterbank
        ``fb`` applied in ``weights`` precision, and a post-step, when given)."""
        return _native.cached_plan(
            self, n_fft=self.n_fft, window=self.window, fb=fb, dtype=_NP_DTYPE[dtype], weights=_NP_DTYPE[weights or dtype],
            power=self.power, mag_eps=self.mag_eps, **post,
        )

    def power_from_padded(self, z: torch.Tensor) -> torch.Tensor:
        """Time-major power frames ``(B, T, F)`` of an already padded ``(B, L_padded)`` signal."""
        if self.native_route(z):
            n_frames = (z.shape[-1] - self.n_fft) // self.hop_length + 1
            out = torch.empty((z.shape[0], n_frames, self.n_freqs), dtype=z.dtype)
            dt = _NP_DTYPE[z.dtype]
            _native.run_strided(
                self.native_plan(z.dtype), z.detach().numpy(), offset=0, hop=self.hop_length, n_frames=n_frames,
                out=out.numpy().transpose(0, 2, 1), dtype=dt, out_dtype=dt, threads=torch.get_num_threads(),
            )
            return out
        window = self.window if self.window.dtype == z.dtype else self.window.to(z.dtype)
        dft = self.dft
        if dft is not None and dft.dtype != z.dtype:
            dft = dft.to(z.dtype)
        return _core.power_frames(
            z,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=window,
            power=self.power,
            dft=dft,
            window_span=self.window_span,
            mag_eps=self.mag_eps,
        )

    def power_tf(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> time-major ``(B, T, F)``."""
        return self.power_from_padded(self.pad_input(y))

    def forward(self, y: Array) -> Array:
        """``(..., n_samples)`` -> ``(..., 1 + n_fft // 2, n_frames)``."""
        t, shape, was_numpy = _core.as_batch(y, check_finite=self.check_finite, device=self.window.device)
        out = self.power_tf(t)
        if self.check_finite:
            _core.warn_overflow(out, t)
        return _core.from_batch(out.transpose(-1, -2), shape, was_numpy)

    def extra_repr(self) -> str:
        return (
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
            f"window={self._window_spec!r}, center={self.center}, pad_mode={self.pad_mode!r}, "
            f"power={self.power}, backend={self.backend!r}"
        )


class MelScale(nn.Module):
    """Apply a mel filterbank to time-major power frames.

    Holds ``fb`` ``(n_mels, n_freqs)`` as built by :func:`supermel.mel_filters`
    (float64 arithmetic, rounded to ``mel_dtype`` as librosa does, then stored in
    the module dtype, or in float64 when ``mel_dtype`` is float64: then, as with
    librosa, the mel spectrogram of float32 audio is float64).

    Shape
    -----
    ``(B, T, n_freqs)`` -> ``(B, n_mels, T)``.

    Parameters
    ----------
    sr : float > 0, default 22050
    n_fft : int > 0, default 2048
    n_mels : int > 0, default 128
    fmin : float, default 0.0
    fmax : float or None, default ``sr / 2``
    htk : bool, default False
    norm : {"slaney", None} or number, default "slaney"
        As :func:`supermel.mel_filters`; the filterbank is the buffer ``fb``.

    Raises
    ------
    supermel.ParameterError
        Invalid filterbank parameters (see :func:`supermel.mel_filters`).

    Examples
    --------
    >>> import torch, supermel
    >>> mel = supermel.MelScale(sr=16000, n_fft=800, n_mels=80)
    >>> mel(torch.rand(1, 81, 401)).shape
    torch.Size([1, 80, 81])
    """

    fb: torch.Tensor

    def __init__(
        self,
        *,
        sr: float = 22050,
        n_fft: int = 2048,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        htk: bool = False,
        norm: Any = "slaney",
        mel_dtype: Any = np.float32,
        fb: Optional[np.ndarray] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        super().__init__()
        device = _core.resolve_device(device)
        promote = fb is None and np.dtype(mel_dtype) == np.float64
        if fb is None:
            fb = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, dtype=mel_dtype)
        self.sr = sr
        fb = np.asarray(fb)
        self.n_mels = int(fb.shape[0])
        dtype = _float_dtype(dtype)
        self.promote = promote
        if promote:
            # librosa: a float64 filterbank (mel `dtype=np.float64`) makes the result float64
            # even for float32 audio, so it is kept (and applied) in float64.
            dtype = torch.float64
        self.register_buffer("fb", torch.as_tensor(fb, dtype=dtype, device=device))
        self._spans: List[Tuple[int, int]] = []
        self._build_blocks()

    def _build_blocks(self) -> None:
        """Block-sparse copy of ``fb`` used by the hot path (not saved in the state dict)."""
        for i in range(len(self._spans)):
            delattr(self, f"_block{i}")
        self._spans = []
        fb = self.fb.detach().cpu().numpy()
        for i, (lo, hi, w) in enumerate(_core.split_filterbank(fb)):
            self.register_buffer(f"_block{i}", torch.as_tensor(w, dtype=self.fb.dtype, device=self.fb.device), persistent=False)
            self._spans.append((lo, hi))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # A loaded `fb` (e.g. a checkpoint's filterbank) must also replace the block copy.
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._build_blocks()

    def blocks(self) -> List[Tuple[int, int, torch.Tensor]]:
        """The filterbank as ``[(lo, hi, W)]`` row blocks, ``W`` of shape ``(hi - lo, m)``."""
        return [(lo, hi, getattr(self, f"_block{i}")) for i, (lo, hi) in enumerate(self._spans)]

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` power frames -> ``(B, n_mels, T)``."""
        fb = self.fb if self.fb.dtype == p.dtype else self.fb.to(p.dtype)
        return _core.mel_project(p, fb)


class MelSpectrogram(nn.Module):
    """Mel spectrogram equal to ``librosa.feature.melspectrogram`` (same keywords and defaults).

    Parameters
    ----------
    sr : float > 0
        Sample rate.
    n_fft, hop_length, win_length, window, center, pad_mode, power, backend, check_finite
        As :class:`Spectrogram` (librosa defaults: 2048, ``win_length // 4``, ``n_fft``, "hann", True, "constant", 2.0).
    n_mels, fmin, fmax, htk, norm
        As :func:`supermel.mel_filters` (128, 0.0, ``sr / 2``, False, "slaney").
    mel_dtype : numpy dtype
        Precision the filterbank is rounded to (librosa's ``dtype``, float32).
    dtype, device
        Buffer dtype (float32 or float64) and device.

    Shape
    -----
    ``(..., n_samples)`` -> ``(..., n_mels, n_frames)``, ``n_frames = 1 + n_samples // hop_length``
    with ``center=True``.

    Examples
    --------
    >>> import torch, supermel
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)
    >>> mel(torch.zeros(2, 16000)).shape
    torch.Size([2, 80, 81])
    """

    def __init__(
        self,
        *,
        sr: float = 22050,
        n_fft: int = 2048,
        hop_length: Optional[int] = 512,
        win_length: Optional[int] = None,
        window: WindowSpec = "hann",
        center: bool = True,
        pad_mode: str = "constant",
        power: float = 2.0,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        htk: bool = False,
        norm: Any = "slaney",
        mel_dtype: Any = np.float32,
        backend: str = "auto",
        check_finite: bool = True,
        mag_eps: float = 0.0,
        pad: Optional[int] = None,
        fb: Optional[np.ndarray] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            window=window,
            center=center,
            pad_mode=pad_mode,
            power=power,
            backend=backend,
            check_finite=check_finite,
            mag_eps=mag_eps,
            pad=pad,
            dtype=dtype,
            device=device,
        )
        self.mel_scale = MelScale(
            sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, mel_dtype=mel_dtype, fb=fb, dtype=dtype, device=device
        )
        self.sr = sr

    @property
    def n_mels(self) -> int:
        return self.mel_scale.n_mels

    def mel_tf(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tensor -> ``(B, n_mels, T)`` tensor (no validation, no reshaping).

        While ``torch.compile`` traces the FFT route without autograd, padding and spectral core
        are one custom op, ``supermel::mel_signal``: on the native CPU core it is the single
        native call of the eager path (:meth:`MelSpectrogram.native_call`), else eager's padding and kernels.
        """
        spec: Spectrogram = self._modules["spectrogram"]  # type: ignore[assignment]
        if torch.compiler.is_compiling() and _core._opaque_under_compile(spec.dft, y, spec.window, self.mel_scale.fb):
            spec.check_length(y)
            kw = self.mel_function(y.dtype).keywords
            return _core._mel_signal_compiled(
                y, pad=spec.pad, mode=spec.pad_mode if spec.pad else "constant", n_fft=spec.n_fft, hop_length=spec.hop_length, window=kw["window"], power=spec.power,
                fb=kw["fb"], fb_blocks=kw["fb_blocks"], mag_eps=spec.mag_eps,
            )
        return self.mel_from_padded(spec.pad_input(y, self.n_mels))

    def mel_from_padded(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, L_padded)`` already padded signal -> ``(B, n_mels, T)`` (the streaming entry point)."""
        out = self.native_from_padded(z)
        return self.mel_function(z.dtype)(z) if out is None else out

    def native_from_padded(self, z: torch.Tensor) -> Optional[torch.Tensor]:
        """:meth:`mel_from_padded` through the native CPU core, or ``None`` where that route does not
        apply (:meth:`Spectrogram.native_route`)."""
        spec: Spectrogram = self._modules["spectrogram"]  # type: ignore[assignment]
        ms: MelScale = self._modules["mel_scale"]  # type: ignore[assignment]
        fb = ms._buffers["fb"]
        if not spec.native_route(z, fb):
            return None
        hop = spec.hop_length
        n_frames = (z.shape[-1] - spec.n_fft) // hop + 1
        out_dtype = torch.float64 if ms.promote else z.dtype
        plan = _native.cached_plan(
            spec, n_fft=spec.n_fft, window=spec._buffers["window"], fb=fb, dtype=_NP_DTYPE[z.dtype], weights=_NP_DTYPE[out_dtype],
            power=spec.power, mag_eps=spec.mag_eps,
        )
        out = np.empty((z.shape[0], plan.n_out, n_frames), dtype=_NP_DTYPE[out_dtype])
        _native.run_strided(
            plan, z.detach().numpy(), offset=0, hop=hop, n_frames=n_frames, out=out, dtype=_NP_DTYPE[z.dtype], out_dtype=out.dtype,
            out_checked=True, threads=torch.get_num_threads(),
        )
        return torch.from_numpy(out)

    def native_out_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The result's dtype for ``dtype`` audio (float64 with a float64 filterbank, as librosa)."""
        return torch.float64 if self.mel_scale.promote else dtype

    def native_plan(self, dtype: torch.dtype, **post: Any) -> Any:
        """The cached native plan (:mod:`supermel._native`) of this module for ``dtype`` frames,
        with an optional post-step (``post="ln_floor", post_a=1e-5``, ...)."""
        return self.spectrogram.native_plan(dtype, fb=self.mel_scale.fb, weights=self.native_out_dtype(dtype), **post)

    def mel_function(self, dtype: torch.dtype) -> "functools.partial[torch.Tensor]":
        """:func:`supermel._core.mel_frames` bound to this module's constants in ``dtype``.

        Hot loops (streaming) hold the result instead of looking the buffers up per
        call; take a new one after moving the module (``.to()``).
        """
        spec, mel = self.spectrogram, self.mel_scale
        window, fb, dft, blocks = spec.window, mel.fb, spec.dft, mel.blocks()
        if window.dtype != dtype:  # e.g. float64 input to a float32 module
            window, dft = window.to(dtype), None if dft is None else dft.to(dtype)
        fb_dtype = torch.float64 if mel.promote else dtype
        if fb.dtype != fb_dtype:
            fb = fb.to(fb_dtype)
            blocks = [(lo, hi, w.to(fb_dtype)) for lo, hi, w in blocks]
        return functools.partial(
            _core.mel_frames,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            window=window,
            power=spec.power,
            fb=fb,
            fb_blocks=blocks,
            dft=dft,
            window_span=spec.window_span,
            mag_eps=spec.mag_eps,
            fb_t=fb.t(),
            native=_NativeMel(self) if _native.available() else None,
        )

    def native_call(self, y: Any, check_finite: bool) -> Optional[Array]:
        """The whole call on the native CPU core in one crossing, or ``None`` where this fast path
        does not apply (the general path then runs, raises or warns).

        Taken for a C-contiguous, aligned float32/float64 numpy array or CPU tensor of 1 or 2
        dimensions, at least ``n_fft`` samples long, on the route :meth:`Spectrogram.native_route`
        describes, with ``constant``, ``reflect`` or ``edge`` padding (done in C++). The plan, the
        padding mode and the constants are looked up once per module and dtype
        (``_FastMel``); per call: the layout checks here, the memory estimate, then one
        native call that checks finiteness (``check_finite``), pads, computes and checks the
        result. NaN/Inf audio or an overflowing result returns ``None``: the general path then
        raises or warns, as without this path. Bit-identical to :meth:`mel_from_padded`'s
        native route.
        """
        # first: dynamo traces nothing of this path; jit tracing and torch modes see torch operators
        if torch.compiler.is_compiling() or not _native.enabled() or _torch_mode_active() or torch.jit.is_tracing():
            return None
        if type(y) is np.ndarray:
            arr = y
        elif type(y) is torch.Tensor:
            if not y.is_cpu or (y.requires_grad and torch.is_grad_enabled()) or not y.is_contiguous():
                return None
            try:
                arr = (y.detach() if y.requires_grad else y).numpy()
            except (RuntimeError, TypeError):  # a view numpy cannot share (negative bit, ...)
                return None
        else:
            return None
        states = _FAST.get(self)
        if states is None:
            states = _FAST[self] = {}
        st = states.get(arr.dtype)
        spec: Spectrogram = self._modules["spectrogram"]  # type: ignore[assignment]
        w = spec._buffers["window"]
        fb = self._modules["mel_scale"]._buffers["fb"]  # type: ignore[union-attr]
        if st is None or not st.valid(w, fb):
            st = states[arr.dtype] = _FastMel(self, arr.dtype, w, fb)
        if st.plan is None or w.requires_grad or fb.requires_grad:  # type: ignore[union-attr]
            return None
        # one native call: the layout (1-D/2-D, C-contiguous, aligned, >= min_len samples), the
        # memory estimate against the guard's limit, the output, then Plan.signal; None: the
        # general path runs (the memory guard's error, NaN/Inf, short signals, other layouts)
        if st.mode == 1 and arr.ndim and not _core.reflect_whole_ok(arr.shape[-1], n_fft=st.n_fft, hop_length=st.hop, pad=st.pad):
            return None  # librosa reflects a short tail segment on its own: the general path
        limit = _limits._limit
        out = st.call(arr, check_finite, -1 if limit is None else limit, torch.get_num_threads())
        if out is None:
            return None
        return out if arr is y else torch.from_numpy(out)

    def forward(self, y: Array) -> Array:
        """``(..., n_samples)`` -> ``(..., n_mels, n_frames)``."""
        fast = self.native_call(y, self._modules["spectrogram"].check_finite)  # (not self.spectrogram: nn.Module's __getattr__ costs ~0.4 us)
        if fast is not None:
            return fast
        t, shape, was_numpy = _core.as_batch(y, check_finite=self.spectrogram.check_finite, device=self.spectrogram.window.device)
        out = self.mel_tf(t)
        if self.spectrogram.check_finite:
            _core.warn_overflow(out, t)
        return _core.from_batch(out, shape, was_numpy)


#: module -> {numpy dtype: _FastMel}: the fast path's per-module state (weak keys: it never
#: travels with the module through deepcopy or pickle, as the plans of supermel._native).
_FAST: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_PAD_CODES = {"constant": 0, "reflect": 1, "edge": 2}


class _FastMel:
    """What :meth:`MelSpectrogram.native_call` needs per call, built once per module and dtype;
    ``plan`` is None where the fast path does not apply (matmul backend, another device, another
    padding mode). Valid while the window and filterbank are the same tensors, unchanged
    (identity, address and version counter: ``load_state_dict``, ``.to()``, ``copy_`` rebuild it)."""

    __slots__ = ("w", "fb", "key", "plan", "pad", "mode", "hop", "n_fft", "n_out", "out_dtype", "itemsize", "min_len", "block", "frame_cost", "call")

    def __init__(self, module: "MelSpectrogram", dtype: np.dtype, w: torch.Tensor, fb: torch.Tensor) -> None:
        spec = module.spectrogram
        self.w, self.fb, self.key = w, fb, self._key(w, fb)
        self.plan: Any = None
        self.n_fft, self.hop, self.pad = spec.n_fft, spec.hop_length, spec.pad
        self.mode = _PAD_CODES.get(spec.pad_mode, -1) if self.pad else 0
        tdt = torch.float32 if dtype == np.float32 else torch.float64 if dtype == np.float64 else None
        if tdt is None or spec.dft is not None or w.device.type != "cpu" or fb.device.type != "cpu" or self.mode < 0:
            return
        out_t = module.native_out_dtype(tdt)
        self.out_dtype = _NP_DTYPE[out_t]
        self.plan = _native.cached_plan(
            spec, n_fft=spec.n_fft, window=w, fb=fb, dtype=_NP_DTYPE[tdt], weights=self.out_dtype, power=spec.power, mag_eps=spec.mag_eps,
        )
        self.n_out = self.plan.n_out
        self.itemsize = np.dtype(dtype).itemsize
        # shorter signals take the general path (its errors and librosa's short-signal warning)
        self.min_len = max(self.n_fft, self.pad + 1 if self.mode == 1 else 1)
        self.block = _core.block_frames(self.n_fft)
        self.frame_cost = self.n_fft + 3 * (self.n_fft // 2 + 1)
        self.call = _native.offline_call(
            self.plan, pad=self.pad, mode=self.mode, hop=self.hop, min_len=self.min_len, block=self.block, frame_cost=self.frame_cost
        )

    @staticmethod
    def _key(w: torch.Tensor, fb: torch.Tensor) -> tuple:
        # inference tensors have no version counter (reading it raises: ~10 us of exception)
        return (w.data_ptr(), -1 if w.is_inference() else w._version, fb.data_ptr(), -1 if fb.is_inference() else fb._version)

    def valid(self, w: torch.Tensor, fb: torch.Tensor) -> bool:
        if self.w is not w or self.fb is not fb:
            return False
        # the same tensors: is_inference() cannot change, so only the addresses and versions
        wp, wv, fp, fv = self.key
        return w.data_ptr() == wp and fb.data_ptr() == fp and (wv == -1 or w._version == wv) and (fv == -1 or fb._version == fv)


class _NativeMel:
    """The native route of a :class:`MelSpectrogram` (the ``native`` keyword of
    :meth:`MelSpectrogram.mel_function`): called on a padded signal it returns the frames, or
    ``None`` where the route does not apply; the streaming steps take its plans."""

    __slots__ = ("module",)

    def __init__(self, module: MelSpectrogram) -> None:
        self.module = module

    def __call__(self, z: torch.Tensor) -> Optional[torch.Tensor]:
        return self.module.native_from_padded(z)

    def plan(self, dtype: torch.dtype) -> Any:
        return self.module.native_plan(dtype)

    def out_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return self.module.native_out_dtype(dtype)


class MFCC(nn.Module):
    """MFCCs equal to ``librosa.feature.mfcc(y=...)``.

    ``power_to_db(melspectrogram(y, **kwargs))`` (ref 1, amin 1e-10, top_db 80
    over the whole input, as librosa 0.11), then a DCT (``dct_type``, ``norm``)
    truncated to ``n_mfcc`` and optional sinusoidal liftering.

    Shape
    -----
    ``(..., n_samples)`` -> ``(..., n_mfcc, n_frames)``.

    Parameters
    ----------
    sr : float > 0, default 22050
    n_mfcc : int > 0, default 20
    dct_type : {1, 2, 3}, default 2
    norm : None or "ortho", default "ortho"
    lifter : float >= 0, default 0
    mel_norm : {"slaney", None} or number, default "slaney"
        As :func:`supermel.mfcc`.
    **kwargs
        The mel spectrogram's keywords (``n_fft``, ``hop_length``, ``n_mels``, ``fmin``, ...).

    Raises
    ------
    supermel.ParameterError
        Invalid parameters.

    Examples
    --------
    >>> import torch, supermel
    >>> mfcc = supermel.MFCC(sr=16000, n_mfcc=13, n_fft=400, hop_length=160, n_mels=40)
    >>> mfcc(torch.zeros(16000)).shape
    torch.Size([13, 101])
    """

    dct: torch.Tensor

    def __init__(
        self,
        *,
        sr: float = 22050,
        n_mfcc: int = 20,
        dct_type: int = 2,
        norm: Optional[str] = "ortho",
        lifter: float = 0,
        mel_norm: Any = "slaney",
        top_db: Optional[float] = 80.0,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
        **mel_kwargs: Any,
    ) -> None:
        super().__init__()
        if not (isinstance(n_mfcc, (int, np.integer)) and n_mfcc > 0):
            raise ParameterError(f"n_mfcc={n_mfcc!r} must be a positive integer")
        check_lifter(lifter)
        # `norm` is the DCT's; the filterbank's is `mel_norm` (librosa 0.11's mfcc keyword).
        self.melspectrogram = MelSpectrogram(sr=sr, norm=mel_norm, dtype=dtype, device=device, **mel_kwargs)
        n_mels = self.melspectrogram.n_mels
        d = liftered(dct_matrix(n_mels, n_mfcc, dct_type=dct_type, norm=norm), lifter)
        self.register_buffer("dct", torch.as_tensor(d, dtype=_float_dtype(dtype), device=device))
        self.top_db = top_db

    def mfcc_tf(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tensor -> ``(B, n_mfcc, T)``."""
        s = self.melspectrogram.mel_tf(y)
        db = _power_to_db_tensor(s, ref=1.0, amin=1e-10, top_db=self.top_db)
        d = self.dct if self.dct.dtype == db.dtype else self.dct.to(db.dtype)
        if torch.compiler.is_compiling():
            return torch.matmul(d, db)
        with _core.full_fp32_matmuls:  # the DCT in full float32 precision whatever the global TF32 setting
            return torch.matmul(d, db)

    def forward(self, y: Array) -> Array:
        """``(..., n_samples)`` -> ``(..., n_mfcc, n_frames)``."""
        check = self.melspectrogram.spectrogram.check_finite
        t, shape, was_numpy = _core.as_batch(y, check_finite=check, device=self.dct.device)
        out = self.mfcc_tf(t)
        if check:
            _core.warn_overflow(out, t)
        return _core.from_batch(out, shape, was_numpy)
