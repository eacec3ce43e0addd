"""The spectral core: padding, framing, power spectrum and mel projection on tensors.

These functions take every constant (window, DFT matrix, filterbank) as an
argument and hold no state. The modules (:mod:`supermel.modules`) own the
constants; the offline path, the streaming path and the front-end presets all
call the functions below, so each computation has exactly one implementation.

Shapes: signals are ``(B, L)``; power spectra are time-major ``(B, T, F)``
(``F = n_fft // 2 + 1``) because that is the layout ``rfft`` produces; the
public functions transpose to librosa's ``(..., F, T)`` at the end (a view).
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._errors import ParameterError
from ._limits import check_memory

__all__ = [
    "PAD_MODES",
    "num_frames",
    "frames_ready",
    "left_context",
    "check_stft_params",
    "pad_left",
    "pad_right",
    "pad_signal",
    "power_frames",
    "mel_frames",
    "mel_dense",
    "Workspace",
    "split_filterbank",
    "mel_project",
    "as_batch",
    "all_finite_np",
    "from_batch",
    "warn_overflow",
    "resolve_device",
    "check_call_memory",
    "full_fp32_matmuls",
]

#: Padding modes librosa's ``stft(center=True)`` accepts (numpy names).
PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric")
_REFUSED_BY_LIBROSA = ("wrap", "maximum", "mean", "median", "minimum", "empty")


# --------------------------------------------------------------------------- parameters
def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_stft_params(
    *, n_fft: int, hop_length: Optional[int], win_length: Optional[int], center: bool, pad_mode: str, power: Optional[float] = 2.0
) -> Tuple[int, int]:
    """Validate STFT parameters; return ``(hop_length, win_length)`` with librosa's defaults filled in."""
    if not _is_int(n_fft) or n_fft <= 0:
        raise ParameterError(f"n_fft={n_fft!r} must be a positive integer")
    if win_length is None:
        win_length = n_fft
    elif not _is_int(win_length) or win_length <= 0:
        raise ParameterError(f"win_length={win_length!r} must be a positive integer (or None for n_fft)")
    if win_length > n_fft:
        raise ParameterError(f"win_length={win_length} must be <= n_fft={n_fft}; raise n_fft or shorten the window")
    if hop_length is None:
        hop_length = int(win_length // 4)
        if hop_length <= 0:
            raise ParameterError(f"win_length={win_length} is too short for the default hop (win_length // 4 = 0); pass hop_length")
    elif not _is_int(hop_length) or hop_length <= 0:
        raise ParameterError(f"hop_length={hop_length!r} must be a positive integer")
    if not isinstance(center, (bool, np.bool_)):
        raise ParameterError(f"center={center!r} must be True or False")
    if center:
        if pad_mode in _REFUSED_BY_LIBROSA:
            raise ParameterError(f"pad_mode={pad_mode!r} is not supported by librosa.stft; use one of {PAD_MODES}")
        if pad_mode not in PAD_MODES:
            raise ParameterError(f"pad_mode={pad_mode!r} is unknown; use one of {PAD_MODES}")
    if power is not None:
        if isinstance(power, bool) or not isinstance(power, (int, float, np.integer, np.floating)) or not math.isfinite(power) or power <= 0:
            raise ParameterError(f"power={power!r} must be a positive number (1 for magnitude, 2 for power)")
    return int(hop_length), int(win_length)


def resolve_device(device: Any, *, default: str = "cpu") -> torch.device:
    """``device`` (a string, ``torch.device`` or ``None`` for ``default``) as a usable device.

    Raises :class:`ParameterError` for a malformed name or a device this torch
    cannot use (``"cuda"`` on a CPU-only build or a machine without a GPU, an
    index past the last GPU), instead of torch's ``AssertionError``/``RuntimeError``.
    """
    if device is None:
        device = default
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ParameterError(f"device={device!r} is not a device name; use 'cpu', 'cuda', 'cuda:1', ...") from exc
    if dev.type in ("cpu", "meta"):
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(
                f"device={str(device)!r} needs CUDA, which this torch cannot use (torch.cuda.is_available() is False: "
                "a CPU-only build or no GPU); use device='cpu', or install a CUDA build of torch on a GPU machine"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
        return dev
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise ParameterError(f"device={str(device)!r} is not available to this torch ({exc}); use device='cpu'") from exc
    return dev


# --------------------------------------------------------------------------- matmul precision
_GET_FP32 = getattr(torch._C, "_get_fp32_precision_getter", None)  # torch >= 2.9: per-backend flags
_SET_FP32 = getattr(torch._C, "_set_fp32_precision_setter", None)
_MATMUL_FLAGS = (("cuda", "matmul"), ("mkldnn", "matmul"))
_FULL = ("none", "ieee")  # full float32 precision ("none": torch's default)


class _FullFp32Matmuls:
    """``with full_fp32_matmuls:`` float32 matrix products in full float32 precision.

    A host program's ``torch.set_float32_matmul_precision("high")`` (or
    ``torch.backends.cuda.matmul.allow_tf32 = True``, or the per-backend
    ``fp32_precision`` flags) lets cuBLAS (and oneDNN on CPUs that have it)
    compute float32 products in TF32/bfloat16: the DFT and filterbank products
    then lose about three decimal digits (relative error ~2e-4 instead of
    ~1e-7). Inside this context the precision is ``"highest"``; on leaving it
    the caller's settings are put back (the legacy setting and the CUDA and
    oneDNN matmul flags of torch >= 2.9; a flag that inherited its value from
    ``torch.backends.fp32_precision`` comes back set to that value).

    The flags are process-wide, so the context is too: re-entrant and
    thread-safe (a count under a lock; the first entry saves and sets, the last
    exit restores). While any thread is inside, every float32 matmul of the
    process runs in full precision (slower, never less exact). When the
    settings already are full precision (torch's default) entering and leaving
    only read them. Not entered while ``torch.compile`` traces (a compiled
    graph follows the settings in force when it runs) and not used by the
    numpy executor (numpy has no reduced-precision products).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Optional[Tuple[Optional[str], Optional[Tuple[str, ...]]]] = None

    def __enter__(self) -> "_FullFp32Matmuls":
        with self._lock:
            if self._depth == 0:
                self._saved = _force_full_fp32()
            self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                saved, self._saved = self._saved, None
                _restore_fp32(saved)


def _force_full_fp32() -> Optional[Tuple[Optional[str], Optional[Tuple[str, ...]]]]:
    """Set full-precision float32 matmuls; return what to restore (``None``: nothing was changed)."""
    try:
        legacy: Optional[str] = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and per-backend APIs mixed: torch refuses to summarise them
        legacy = None
    if _GET_FP32 is None:
        flags = None
        if legacy == "highest":
            return None
    else:
        flags = (_GET_FP32("cuda", "matmul"), _GET_FP32("mkldnn", "matmul"))  # as _MATMUL_FLAGS
        if legacy == "highest" and flags[0] in _FULL and flags[1] in _FULL:
            return None
    torch.set_float32_matmul_precision("highest")
    return legacy, flags


def _restore_fp32(saved: Tuple[Optional[str], Optional[Tuple[str, ...]]]) -> None:
    legacy, flags = saved
    if legacy is not None:
        torch.set_float32_matmul_precision(legacy)
    if flags is not None and _SET_FP32 is not None:
        for (b, op), f in zip(_MATMUL_FLAGS, flags):
            _SET_FP32(b, op, f)


#: The context manager (one per process; see :class:`_FullFp32Matmuls`).
full_fp32_matmuls = _FullFp32Matmuls()


# --------------------------------------------------------------------------- frame counting
def num_frames(n_samples: int, *, n_fft: int, hop_length: int, pad: int) -> int:
    """Number of frames of a signal of ``n_samples`` padded by ``pad`` on each side.

    This is the one frame-counting rule of the package (offline, streaming and
    presets): ``1 + (n_samples + 2 pad - n_fft) // hop_length``, or 0 when the
    padded signal is shorter than one frame. ``pad`` is ``n_fft // 2`` for
    librosa's ``center=True`` and 0 for ``center=False``.
    """
    n_padded = n_samples + 2 * pad
    if n_padded < n_fft:
        return 0
    return 1 + (n_padded - n_fft) // hop_length


def left_context(pad: int, pad_mode: str) -> int:
    """Samples needed before the left padding of frame 0 can be built."""
    if pad == 0 or pad_mode == "constant":
        return 0
    if pad_mode == "reflect":
        return pad + 1
    if pad_mode == "symmetric":
        return pad
    return 1  # edge, linear_ramp: the first sample


def frames_ready(n_received: int, *, n_fft: int, hop_length: int, pad: int, pad_mode: str) -> int:
    """Frames fully determined by the first ``n_received`` samples, end of input unknown.

    These frames need no right padding, so they can be emitted before the stream
    ends; :func:`num_frames` gives the total once the end is known.
    """
    if n_received < left_context(pad, pad_mode):
        return 0
    # frame t spans padded samples [t hop, t hop + n_fft), i.e. input samples
    # [t hop - pad, t hop - pad + n_fft): it is ready once that end is received.
    avail = n_received + pad
    if avail < n_fft:
        return 0
    return 1 + (avail - n_fft) // hop_length


# --------------------------------------------------------------------------- padding
def _fold_index(start: int, stop: int, n: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source indices of positions ``start..stop-1`` (relative to sample 0) of ``np.pad(x, ..., mode)``.

    For ``reflect``/``symmetric`` numpy's repeated padding of a short signal is the
    periodic fold of period ``2 (n - 1)`` / ``2 n``. Built on ``device`` from ``arange``
    (no host-to-device copy, so no synchronisation inside a CUDA-graph capture).
    """
    pos = torch.arange(start, stop, device=device)
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(pos)
        period = 2 * (n - 1)
        m = torch.remainder(pos, period)
        return torch.where(m < n, m, period - m)
    period = 2 * n  # symmetric
    m = torch.remainder(pos, period)
    return torch.where(m < n, m, period - 1 - m)


def _ramp(p: int, like: torch.Tensor, *, rising: bool) -> torch.Tensor:
    k = torch.arange(p, dtype=like.dtype, device=like.device)
    return k / p if rising else (p - 1 - k) / p


def pad_left(head: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Left padding of ``np.pad(head, (pad, 0), mode)``: shape ``(B, pad)``.

    ``head`` is the start of the signal (numpy pads it as given, so a short
    ``head`` wraps exactly as numpy wraps).
    """
    n = head.shape[-1]
    if mode == "constant":
        return head.new_zeros(head.shape[:-1] + (pad,))
    if mode == "linear_ramp":
        return head[..., :1] * _ramp(pad, head, rising=True)
    if mode == "reflect" and n >= pad + 1:
        return head[..., 1 : pad + 1].flip(-1)
    if mode == "symmetric" and n >= pad:
        return head[..., :pad].flip(-1)
    if mode == "edge":
        return head[..., :1].expand(head.shape[:-1] + (pad,))
    return head.index_select(-1, _fold_index(-pad, 0, n, mode, head.device))


def pad_right(tail: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Right padding of ``np.pad(tail, (0, pad), mode)``: shape ``(B, pad)``."""
    n = tail.shape[-1]
    if mode == "constant" or n == 0:
        return tail.new_zeros(tail.shape[:-1] + (pad,))
    if mode == "linear_ramp":
        return tail[..., -1:] * _ramp(pad, tail, rising=False)
    if mode == "reflect" and n >= pad + 1:
        return tail[..., n - pad - 1 : n - 1].flip(-1)
    if mode == "symmetric" and n >= pad:
        return tail[..., n - pad :].flip(-1)
    if mode == "edge":
        return tail[..., -1:].expand(tail.shape[:-1] + (pad,))
    return tail.index_select(-1, _fold_index(n, n + pad, n, mode, tail.device))


def tail_start(n_samples: int, *, n_fft: int, hop_length: int, pad: int) -> Optional[int]:
    """First input sample of the segment librosa right-pads, or None when no frame needs it.

    librosa (>= 0.10) pads the head and the tail of a long signal separately:
    the right padding is ``np.pad(y[tail_k hop - pad:], (0, pad))`` where
    ``tail_k`` is the first frame that reaches into it. For short segments that
    differs from padding the whole signal, so we reproduce it.
    """
    start_k = -(-pad // hop_length)
    tail_k = (n_samples + pad - n_fft) // hop_length + 1
    if tail_k <= start_k:
        return 0  # librosa pads the whole signal at once
    if tail_k * hop_length - pad + n_fft > n_samples + pad:
        return None
    return tail_k * hop_length - pad


def head_length(n_samples: int, *, n_fft: int, hop_length: int, pad: int) -> int:
    """Length of the head segment librosa left-pads (the whole signal when head and tail overlap)."""
    start_k = -(-pad // hop_length)
    tail_k = (n_samples + pad - n_fft) // hop_length + 1
    if tail_k <= start_k:
        return n_samples
    return min(n_samples, (start_k - 1) * hop_length - pad + n_fft + 1)


def pad_signal(y: torch.Tensor, *, pad: int, mode: str, n_fft: int, hop_length: int) -> torch.Tensor:
    """Pad ``(B, L)`` by ``pad`` samples on each side exactly as librosa's ``stft`` does."""
    if pad == 0:
        return y
    n = y.shape[-1]
    if mode == "constant":
        return torch.nn.functional.pad(y, (pad, pad))
    start = tail_start(n, n_fft=n_fft, hop_length=hop_length, pad=pad)
    if start == 0 and n < pad + 1 and mode in ("reflect", "symmetric"):
        # numpy pads both sides in alternating rounds when the signal is short: the periodic fold
        return y.index_select(-1, _fold_index(-pad, n + pad, n, mode, y.device))
    left = pad_left(y[..., : head_length(n, n_fft=n_fft, hop_length=hop_length, pad=pad)], pad, mode)
    if start is None:
        right = y.new_zeros(y.shape[:-1] + (pad,))  # no frame reaches it
    else:
        right = pad_right(y[..., start:], pad, mode)
    return torch.cat([left, y, right], dim=-1)


# --------------------------------------------------------------------------- spectra
#: Samples of frames processed per block on the CPU (256 frames of 800): window,
#: FFT, power and mel of one block stay in the L2 cache (measured in
#: benchmarks/core.py; unblocked processing of 60 s is 2-3x slower on a
#: memory-bound core). Shorter frames get proportionally more frames per block.
CPU_BLOCK_SAMPLES = 256 * 800


def block_frames(n_fft: int) -> int:
    """Frames per CPU block for frames of ``n_fft`` samples."""
    return max(16, CPU_BLOCK_SAMPLES // n_fft)


def check_call_memory(
    n_batch: int, n_samples: int, *, n_fft: int, hop_length: int, pad: int, itemsize: int, out_rows: int, blocked: bool
) -> None:
    """Refuse a call whose estimated working memory exceeds the limit (:mod:`supermel._limits`).

    Counted: the padded signal, the frames computed at once (windowed copy,
    complex spectrum, power: ``n_fft + 3 F`` values a frame; one CPU block of
    :func:`block_frames` when ``blocked``) and the output.
    """
    n_frames = num_frames(n_samples, n_fft=n_fft, hop_length=hop_length, pad=pad)
    at_once = n_batch * n_frames
    if blocked:
        at_once = min(at_once, block_frames(n_fft))
    n_bins = n_fft // 2 + 1
    estimate = itemsize * (n_batch * (n_samples + 2 * pad) + at_once * (n_fft + 3 * n_bins) + n_batch * n_frames * out_rows)
    check_memory(
        estimate,
        what=f"n_fft={n_fft}, hop_length={hop_length} on {n_batch} x {n_samples} samples ({n_batch * n_frames} frames)",
        fix="check n_fft and hop_length, or split the input into shorter pieces or smaller batches",
    )


def _needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _TorchKernels:
    """The kernels of :func:`mel_dense` on tensors; ``out=None`` allocates."""

    @staticmethod
    def mul(a: Any, b: Any, out: Any = None) -> Any:
        return torch.mul(a, b) if out is None else torch.mul(a, b, out=out)

    @staticmethod
    def rfft(x: Any, out: Any = None) -> Any:
        return torch.fft.rfft(x, dim=-1) if out is None else torch.fft.rfft(x, dim=-1, out=out)

    @staticmethod
    def as_real(spec: Any) -> Any:
        return torch.view_as_real(spec)  # (..., F, 2)

    @staticmethod
    def matmul(a: Any, b: Any, out: Any = None) -> Any:
        return torch.matmul(a, b) if out is None else torch.matmul(a, b, out=out)

    @staticmethod
    def add(a: Any, b: Any, out: Any = None) -> Any:
        return torch.add(a, b) if out is None else torch.add(a, b, out=out)

    @staticmethod
    def sqrt(x: Any, out: Any = None) -> Any:
        return torch.sqrt(x) if out is None else torch.sqrt(x, out=out)

    @staticmethod
    def pow(x: Any, e: float, out: Any = None) -> Any:
        return torch.pow(x, e) if out is None else torch.pow(x, e, out=out)

    @staticmethod
    def cast(x: Any, like: Any, out: Any = None) -> Any:
        return x.to(like.dtype) if out is None else out.copy_(x)

    @staticmethod
    def to_freq_major(mel: Any, out: Any = None) -> Any:
        """``(B, T, M)`` -> contiguous ``(B, M, T)``."""
        mel = mel.transpose(1, 2)
        return mel.contiguous() if out is None else out.copy_(mel)


#: Rows up to which the numpy executor's matrix product always stays in numpy
#: (OpenBLAS does not start its threads for products this small).
NUMPY_DOT_ROWS = 4
#: Length up to which :func:`all_finite_np` takes numpy's dot (OpenBLAS threads longer ones).
NUMPY_DOT_ELEMENTS = 8192


class _NumpyKernels:
    """The same kernels on a CPU workspace's numpy arrays.

    A numpy call costs a fraction of a PyTorch operator call, which dominates
    one-frame steps; numpy's FFT (pocketfft, as librosa uses) also keeps its
    plans, where torch's CPU FFT plans every call. Measured on one AMD EPYC
    core, one 800-point hop: about 0.5x the naive torch step with numpy's FFT,
    0.6x with torch's FFT on the same buffers, 1x with torch operators
    (``supermel bench --only "one hop"``). The FFTs round differently: the
    results agree to float32 rounding (float64: ~1e-15), i.e. exactly in the
    loud bands, in the last bits of bands 80 dB below their frame's peak.
    """

    mul = staticmethod(np.multiply)
    add = staticmethod(np.add)
    sqrt = staticmethod(np.sqrt)
    pow = staticmethod(np.power)

    @staticmethod
    def matmul(a: Any, b: Any, out: Any = None) -> Any:
        if a.shape[-2] <= NUMPY_DOT_ROWS or torch.get_num_threads() == 1:
            if a.ndim == 2:  # np.dot: ~1 us less than np.matmul on one frame
                return np.dot(a, b) if out is None else np.dot(a, b, out=out)
            return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
        # With torch's thread pool active, larger products (many streams, several frames)
        # run on it, through torch's BLAS on the same memory: numpy's OpenBLAS would start
        # its own threads, and the two pools compete for the cores (16 streams, one push,
        # 2 cores: p99 21 ms with both pools at their defaults, 2.2 ms this way). With one
        # torch thread, OpenBLAS is the faster of the two here (64 streams: ~290 against ~400 us).
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        with full_fp32_matmuls:  # oneDNN may run float32 products in TF32/bf16 under a global setting
            if out is None:
                return torch.matmul(ta, tb).numpy()
            torch.matmul(ta, tb, out=torch.from_numpy(out))
        return out

    @staticmethod
    def rfft(x: Any, out: Any = None) -> Any:
        if out is None:
            return np.fft.rfft(x, axis=-1)
        if _POCKETFFT is not None:
            # the ufunc np.fft.rfft calls, without its ~3 us of argument handling
            ufunc = _POCKETFFT.rfft_n_even if x.shape[-1] % 2 == 0 else _POCKETFFT.rfft_n_odd
            return ufunc(x, 1, out=out)
        out[...] = np.fft.rfft(x, axis=-1)  # numpy < 2.0: no out=, and float64 inside
        return out

    @staticmethod
    def as_real(spec: Any) -> Any:
        return spec.view(spec.real.dtype).reshape(spec.shape + (2,))

    @staticmethod
    def cast(x: Any, like: Any, out: Any = None) -> Any:
        if out is None:
            return x.astype(like.dtype)
        out[...] = x
        return out

    @staticmethod
    def to_freq_major(mel: Any, out: Any = None) -> Any:
        mel = mel.transpose(0, 2, 1)
        if out is None:
            return np.ascontiguousarray(mel)
        out[...] = mel
        return out


try:  # numpy >= 2.0: pocketfft's gufuncs (float32 and float64 natively)
    from numpy.fft import _pocketfft_umath as _POCKETFFT  # type: ignore[attr-defined]

    if not all(hasattr(_POCKETFFT, f) for f in ("rfft_n_even", "rfft_n_odd")):
        _POCKETFFT = None
except ImportError:  # pragma: no cover - numpy < 2.0
    _POCKETFFT = None


class Workspace:
    """Preallocated intermediates of :func:`mel_dense` for frames of one fixed shape.

    With a workspace every kernel of :func:`mel_dense` writes into these
    buffers (``out=``) and reads precomputed views: no allocation and fewer
    calls per step. On CUDA that is what a graph captures. ``executor="numpy"``
    holds numpy arrays and runs the same kernels through numpy (CPU only; the
    caller passes numpy frames and constants): a one-frame CPU streaming step
    then costs about a third of the PyTorch-operator sequence.

    Parameters
    ----------
    shape : (B, T)
        Batch and frames per call.
    n_fft, n_mels : int
    dtype : torch.dtype
        Precision of the frames (float32 or float64).
    fb_dtype : torch.dtype
        Precision of the filterbank (float64 when librosa promotes the output).
    device : torch.device
    dft_bins : int or None
        ``F`` for the matrix-product route (``dft`` of shape ``(win, 2 F)``);
        ``None`` for the rfft route.
    static_output : bool
        Write the mel frames into one buffer too (for graph capture; the result
        is then overwritten by the next call). Otherwise each call returns a
        new array.
    executor : {"torch", "numpy"}
    """

    def __init__(
        self,
        shape: Tuple[int, int],
        *,
        n_fft: int,
        n_mels: int,
        dtype: torch.dtype,
        fb_dtype: torch.dtype,
        device: torch.device,
        dft_bins: Optional[int] = None,
        static_output: bool = False,
        executor: str = "torch",
    ) -> None:
        if executor not in ("torch", "numpy") or (executor == "numpy" and torch.device(device).type != "cpu"):
            raise ValueError(f"executor={executor!r} must be 'torch', or 'numpy' on the CPU")
        n_batch, n_frames = shape
        n_bins = n_fft // 2 + 1
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.k: Any = _NumpyKernels if executor == "numpy" else _TorchKernels

        def zeros(shape: Tuple[int, ...], dt: torch.dtype) -> Any:
            t = torch.zeros(shape, dtype=dt, device=device)
            return t.numpy() if executor == "numpy" else t

        if dft_bins is None:
            self.x: Any = zeros((n_batch, n_frames, n_fft), dtype)
            self.spec: Any = zeros((n_batch, n_frames, n_bins), cdtype)
            self.sq: Any = self.k.as_real(self.spec)
            self.re, self.im = self.sq[..., 0], self.sq[..., 1]
        else:
            self.x = self.spec = None
            self.sq = zeros((n_batch, n_frames, 2 * dft_bins), dtype)
            self.re, self.im = self.sq[..., :dft_bins], self.sq[..., dft_bins:]
        self.p: Any = zeros((n_batch, n_frames, n_bins), dtype)
        self.p_fb: Any = zeros((n_batch * n_frames, n_bins), fb_dtype) if fb_dtype != dtype else None
        self.mel: Any = zeros((n_batch * n_frames, n_mels), fb_dtype) if static_output else None
        self.out: Any = zeros((n_batch, n_mels, n_frames), fb_dtype) if static_output else None


class _NoBuffers:
    """Stands in for a workspace on the allocating path: every buffer is ``None``."""

    k = _TorchKernels
    x = spec = sq = re = im = p = p_fb = mel = out = None


_NO_BUFFERS = _NoBuffers()


def _power_block(
    frames: torch.Tensor,
    *,
    window: torch.Tensor,
    power: float,
    dft: Optional[torch.Tensor],
    window_span: Tuple[int, int],
    mag_eps: float,
    inplace: bool,
    ws: Optional[Workspace] = None,
) -> torch.Tensor:
    """``(..., T, n_fft)`` frames -> ``(..., T, F)`` power, real arithmetic only.

    ``inplace`` reuses intermediate buffers (eager mode; off while compiling);
    ``ws`` (implies ``inplace``) writes every intermediate into preallocated
    buffers, through the workspace's kernels (torch or numpy).
    """
    b: Any = _NO_BUFFERS if ws is None else ws
    k = b.k
    inplace = inplace or ws is not None
    if dft is None:
        spec = k.rfft(k.mul(frames, window, b.x), b.spec)
        sq = k.as_real(spec) if ws is None else ws.sq  # (..., T, F, 2)
        sq = k.mul(sq, sq, sq if inplace else None)
        re, im = (sq[..., 0], sq[..., 1]) if ws is None else (ws.re, ws.im)
    else:
        lo, hi = window_span
        y = k.matmul(frames[..., lo:hi], dft, b.sq)  # (..., T, 2F): [re | im]
        n_bins = dft.shape[-1] // 2
        sq = k.mul(y, y, y if inplace else None)
        re, im = (sq[..., :n_bins], sq[..., n_bins:]) if ws is None else (ws.re, ws.im)
    p = k.add(re, im, b.p)
    if mag_eps:
        if inplace:
            p += mag_eps
        else:
            p = p + mag_eps
    if power == 2.0:
        return p
    if power == 1.0:
        return k.sqrt(p, p if inplace else None)
    return k.pow(p, power / 2.0, p if inplace else None)


def power_frames(z: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``|STFT|**power`` of an already padded signal (:func:`_power_frames`), the
    DFT product in full float32 precision whatever the global TF32 settings
    (:data:`full_fp32_matmuls`)."""
    if torch.compiler.is_compiling():
        return _power_frames(z, **kwargs)
    with full_fp32_matmuls:
        return _power_frames(z, **kwargs)


def _power_frames(
    z: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    window: torch.Tensor,
    power: float,
    dft: Optional[torch.Tensor] = None,
    window_span: Tuple[int, int] = (0, 0),
    mag_eps: float = 0.0,
) -> torch.Tensor:
    """``|STFT|**power`` of an already padded signal, real arithmetic only.

    Parameters
    ----------
    z : Tensor [shape=(B, L_padded)]
    window : Tensor [shape=(n_fft,)]
        The (zero-padded, centred) analysis window.
    dft : Tensor [shape=(win_length, 2 F)] or None
        When given, the DFT is computed as a matrix product with this windowed
        real DFT basis (``[cos | -sin]`` restricted to the window's support
        ``window_span``); otherwise with ``torch.fft.rfft`` followed by real
        arithmetic on ``view_as_real``.
    mag_eps : float
        Added to ``re**2 + im**2`` before the power (HiFi-GAN's ``1e-9``).

    Returns
    -------
    Tensor [shape=(B, T, F)], time-major.
    """
    # In-place buffers and cache blocking only in plain eager mode (not while
    # compiling, not when autograd must see the operations).
    eager = not torch.compiler.is_compiling() and not _needs_grad(z, window, dft)
    frames = z.unfold(-1, n_fft, hop_length)  # (B, T, n_fft), a view
    kw = dict(window=window, power=power, dft=dft, window_span=window_span, mag_eps=mag_eps, inplace=eager)
    n_batch, n_frames = frames.shape[0], frames.shape[-2]
    block = block_frames(n_fft)
    if not (eager and z.device.type == "cpu") or n_batch * n_frames <= block:
        return _power_block(frames, **kw)
    out = z.new_empty(frames.shape[:-1] + (n_fft // 2 + 1,))
    for sel in _cpu_blocks(n_batch, n_frames, block):
        out[sel] = _power_block(frames[sel], **kw)
    return out


def _cpu_blocks(n_batch: int, n_frames: int, block: int) -> List[Tuple[slice, slice]]:
    """Index blocks of about ``block`` frames over ``(batch, time)``."""
    if n_frames >= block:
        return [(slice(b, b + 1), slice(s, s + block)) for b in range(n_batch) for s in range(0, n_frames, block)]
    step = max(1, block // n_frames)
    return [(slice(b, b + step), slice(None)) for b in range(0, n_batch, step)]


def mel_frames(z: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Mel spectrogram of an already padded signal (:func:`_mel_frames`), the
    matrix products in full float32 precision whatever the global TF32 settings
    (:data:`full_fp32_matmuls`)."""
    if torch.compiler.is_compiling():
        return _mel_frames(z, **kwargs)
    with full_fp32_matmuls:
        return _mel_frames(z, **kwargs)


def _mel_frames(
    z: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    window: torch.Tensor,
    power: float,
    fb: torch.Tensor,
    fb_blocks: Sequence[Tuple[int, int, torch.Tensor]],
    dft: Optional[torch.Tensor] = None,
    window_span: Tuple[int, int] = (0, 0),
    mag_eps: float = 0.0,
    fb_t: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Mel spectrogram of an already padded signal: ``(B, L_padded)`` -> ``(B, n_mels, T)``.

    ``fb`` is the dense ``(n_mels, F)`` filterbank; ``fb_blocks`` the same split
    into row blocks ``(lo, hi, W)`` with ``W`` of shape ``(hi - lo, m)``, block
    ``i`` reading only bins ``[lo, hi)`` (the filterbank is ~97% zeros; see
    :func:`split_filterbank`). On the CPU, inputs longer than one block
    (:func:`block_frames`) are processed in cache-sized blocks of frames through
    the block-sparse filterbank, each product writing its rows of the
    ``(B, n_mels, T)`` result in place; shorter inputs, CUDA and compiled graphs
    use one dense product (``fb_t``, the transposed view of ``fb``, may be
    passed to save a call).
    """
    eager = not torch.compiler.is_compiling() and not _needs_grad(z, window, dft, fb)
    frames = z.unfold(-1, n_fft, hop_length)
    n_batch, n_frames = frames.shape[0], frames.shape[-2]
    block = block_frames(n_fft)
    if not (eager and z.device.type == "cpu") or n_batch * n_frames <= block:
        return _mel_dense(
            frames, window=window, fb_t=fb.t() if fb_t is None else fb_t, power=power, dft=dft, window_span=window_span, mag_eps=mag_eps, inplace=eager
        )
    kw = dict(window=window, power=power, dft=dft, window_span=window_span, mag_eps=mag_eps, inplace=eager)
    out = z.new_empty((n_batch, fb.shape[0], n_frames), dtype=fb.dtype)
    rows = np.cumsum([0] + [w.shape[1] for _, _, w in fb_blocks]).tolist()
    for b_sel, t_sel in _cpu_blocks(n_batch, n_frames, block):
        p = _power_block(frames[b_sel, t_sel], **kw)  # (b, t, F)
        if p.dtype != fb.dtype:
            p = p.to(fb.dtype)
        p_t = p.transpose(-1, -2)  # (b, F, t), a view
        for (lo, hi, w), r0, r1 in zip(fb_blocks, rows[:-1], rows[1:]):
            dst = out[b_sel, r0:r1, t_sel]  # librosa's layout, written in place: no concatenation, no transpose copy
            if p.shape[0] == 1:
                torch.mm(w.t(), p_t[0, lo:hi], out=dst[0])
            else:
                torch.bmm(w.t().expand(p.shape[0], -1, -1), p_t[:, lo:hi], out=dst)
    return out


def mel_dense(frames: Any, **kwargs: Any) -> Any:
    """Frames -> mel with one dense product (:func:`_mel_dense`); with torch
    kernels, the products in full float32 precision whatever the global TF32
    settings (:data:`full_fp32_matmuls`). Hot loops call :func:`_mel_dense`
    inside their own guard (the numpy executor needs none)."""
    ws = kwargs.get("ws")
    if (ws is not None and ws.k is _NumpyKernels) or torch.compiler.is_compiling():
        return _mel_dense(frames, **kwargs)
    with full_fp32_matmuls:
        return _mel_dense(frames, **kwargs)


def _mel_dense(
    frames: torch.Tensor,
    *,
    window: torch.Tensor,
    fb_t: torch.Tensor,
    power: float,
    dft: Optional[torch.Tensor] = None,
    window_span: Tuple[int, int] = (0, 0),
    mag_eps: float = 0.0,
    inplace: bool = True,
    ws: Optional[Workspace] = None,
) -> torch.Tensor:
    """Frames ``(B, T, n_fft)`` (a view) -> mel ``(B, n_mels, T)`` with one dense product.

    The path of short inputs, CUDA, compiled graphs and the streaming step;
    :func:`mel_frames` calls it after its checks, hot loops call it directly.
    ``fb_t`` is the ``(F, n_mels)`` transposed filterbank; ``ws`` a
    :class:`Workspace` for frames of this shape (no allocation per call; with
    a numpy workspace, frames and constants are numpy arrays and so is the result).
    """
    b: Any = _NO_BUFFERS if ws is None else ws
    k = b.k
    p = _power_block(frames, window=window, power=power, dft=dft, window_span=window_span, mag_eps=mag_eps, inplace=inplace, ws=ws)
    n_batch, n_frames, n_bins = p.shape
    p = p.reshape(n_batch * n_frames, n_bins)  # a view: p is contiguous
    if p.dtype != fb_t.dtype:  # a float64 filterbank on float32 audio: librosa returns float64
        p = k.cast(p, fb_t, b.p_fb)
    mel = k.matmul(p, fb_t, b.mel)
    n_mels = fb_t.shape[1]
    if n_frames == 1:  # (B, 1, M) and (B, M, 1) share one memory layout
        return mel.reshape(n_batch, n_mels, 1)
    # librosa's layout, contiguous: element-wise post-processing (logs, floors) then runs at full speed
    return k.to_freq_major(mel.reshape(n_batch, n_frames, n_mels), b.out)


def split_filterbank(fb: np.ndarray, max_blocks: int = 4, n_blocks: Optional[int] = None) -> List[Tuple[int, int, np.ndarray]]:
    """Split ``(n_mels, F)`` into row blocks over their non-zero bin ranges.

    Returns ``[(lo, hi, W)]`` with ``W = fb[rows, lo:hi].T``; blocks are chosen
    to minimise multiply-adds plus a per-block overhead, at most ``max_blocks``.
    """
    n_mels, n_bins = fb.shape
    nz = fb != 0

    def span(r0: int, r1: int) -> Tuple[int, int]:
        cols = np.flatnonzero(nz[r0:r1].any(axis=0))
        return (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)

    best: Optional[Tuple[int, list]] = None
    for nb in range(1, max_blocks + 1) if n_blocks is None else (n_blocks,):
        edges = np.linspace(0, n_mels, nb + 1).astype(int)
        if np.any(np.diff(edges) == 0):
            continue
        blocks = [(r0, r1) + span(r0, r1) for r0, r1 in zip(edges[:-1], edges[1:])]
        # per-block overhead in multiply-adds per frame, measured on one AMD EPYC core:
        # 3-4 blocks beat 2 by ~20% on Whisper's 80 x 201 bank (30 s), 6 or more small
        # products run slower again; for 80 x 401 (60 s) 2-4 blocks tie
        cost = sum((r1 - r0) * (hi - lo) for r0, r1, lo, hi in blocks) + nb * 2048
        if best is None or cost < best[0]:
            best = (cost, blocks)
    blocks = best[1] if best is not None else [(0, n_mels, 0, n_bins)]
    return [(lo, hi, np.ascontiguousarray(fb[r0:r1, lo:hi].T)) for r0, r1, lo, hi in blocks]


def mel_project(p: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Apply a dense filterbank: ``(B, T, F)`` power, ``(n_mels, F)`` basis -> ``(B, n_mels, T)``
    (in full float32 precision, see :data:`full_fp32_matmuls`)."""
    if torch.compiler.is_compiling():
        return torch.matmul(fb, p.transpose(-1, -2))
    with full_fp32_matmuls:
        return torch.matmul(fb, p.transpose(-1, -2))


# --------------------------------------------------------------------------- input handling
def as_batch(
    y: Union[np.ndarray, torch.Tensor], *, check_finite: bool = True, name: str = "y", device: Optional[torch.device] = None
) -> Tuple[torch.Tensor, Tuple[int, ...], bool]:
    """Validate audio and flatten it to ``(B, L)``.

    Returns ``(tensor, batch_shape, was_numpy)``. float16/bfloat16 are computed
    in float32 (as numpy/scipy do); integer, bool and complex audio are refused.
    numpy input is moved to ``device`` (a module's device); tensors stay where they are.
    """
    was_numpy = not isinstance(y, torch.Tensor)
    if was_numpy:
        if not isinstance(y, np.ndarray):
            # as librosa (valid_audio): lists are refused, not silently made float64
            raise ParameterError(
                f"{name} must be a numpy array or a torch tensor, not {type(y).__name__}; "
                f"convert it with np.asarray({name}, dtype=np.float32)"
            )
        if not np.issubdtype(y.dtype, np.floating):
            raise ParameterError(
                f"{name} has dtype {y.dtype}; audio must be floating point "
                "(convert integer PCM with y.astype(np.float32) / 32768, take np.abs or .real of complex data)"
            )
        if y.ndim == 0:
            raise ParameterError(f"{name} must have at least one dimension (..., n_samples); got a scalar")
        if y.dtype in (np.float32, np.float64):
            y = np.ascontiguousarray(y)
            if not y.flags.writeable:  # torch warns on read-only memory; we never write into it
                y = y.copy()
        else:
            y = y.astype(np.float32)
        t = torch.from_numpy(y)
        if device is not None and t.device != device:
            t = t.to(device)
    else:
        t = y
        if not t.is_floating_point():
            raise ParameterError(
                f"{name} has dtype {t.dtype}; audio must be floating point "
                "(convert integer PCM with y.float() / 32768, take .abs() or .real of complex data)"
            )
        if t.dtype not in (torch.float32, torch.float64):
            t = t.float()
    if t.ndim == 0:
        raise ParameterError(f"{name} must have at least one dimension (..., n_samples); got a scalar")
    if t.shape[-1] == 0:
        raise ParameterError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one sample")
    if t.numel() == 0:
        raise ParameterError(f"{name} has an empty batch dimension (shape {tuple(t.shape)})")
    if check_finite and not _compiling_or_capturing(t) and not _all_finite(t):
        raise ParameterError(f"{name} is not finite everywhere (NaN or Inf samples); clean the audio, e.g. np.nan_to_num")
    batch_shape = tuple(t.shape[:-1])
    return t.reshape(-1, t.shape[-1]), batch_shape, was_numpy


def all_finite_np(a: np.ndarray) -> bool:
    """Whether every sample of a float array is finite (the package's one CPU check).

    One BLAS pass (~2x faster than ``np.isfinite(a).all()``): NaN/Inf make the
    sum of squares non-finite; the exact test runs only then (or when huge
    values overflow it), or for non-contiguous arrays.
    """
    if a.flags.c_contiguous and a.size:
        flat = a.reshape(-1)
        if flat.size <= NUMPY_DOT_ELEMENTS or torch.get_num_threads() == 1:
            with np.errstate(over="ignore", invalid="ignore"):  # huge finite values overflow the sum: tested exactly below
                total = float(np.dot(flat, flat))
        else:  # on torch's thread pool (see _NumpyKernels.matmul): OpenBLAS threads a dot this long
            t = torch.from_numpy(flat)
            total = float(torch.dot(t, t))
        if math.isfinite(total):
            return True
    return bool(np.isfinite(a).all())


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every sample is finite; fast (torch.isfinite(t).all() costs ~4x more on the CPU)."""
    if t.device.type == "cpu":
        return all_finite_np(t.detach().numpy())
    # one reduction and one host synchronisation; the exact test only if the sum overflowed
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _compiling_or_capturing(t: torch.Tensor) -> bool:
    if torch.compiler.is_compiling():
        return True
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


def warn_overflow(out: torch.Tensor, y: torch.Tensor) -> None:
    """Warn when finite audio gave a non-finite result (CPU only; no check on other devices).

    Samples of huge amplitude (``1e17`` in float32) overflow the power spectrum to
    ``inf`` and the filterbank product turns that into NaN; librosa warns (numpy's
    overflow warning), so do we, naming the amplitude and the fix. One pass over
    the output, which is several times smaller than the audio.
    """
    if out.device.type != "cpu" or torch.compiler.is_compiling():
        return
    arr = out.detach().numpy()
    if all_finite_np(arr):
        return
    amp = float(y.detach().abs().max())
    warnings.warn(
        f"the result has NaN or Inf values although the audio is finite: samples up to |y| = {amp:.3g} "
        f"overflow the {str(out.dtype).replace('torch.', '')} power spectrum; scale the audio to about [-1, 1] "
        "(or compute in float64)",
        RuntimeWarning,
        stacklevel=3,
    )


def from_batch(out: torch.Tensor, batch_shape: Tuple[int, ...], was_numpy: bool) -> Union[np.ndarray, torch.Tensor]:
    """Restore the leading batch shape; return numpy when the input was numpy."""
    out = out.reshape(batch_shape + tuple(out.shape[1:]))
    if was_numpy:
        return out.detach().cpu().numpy()
    return out


def warn_short(n_samples: int, n_fft: int) -> None:
    """librosa's warning for centred analysis of a signal shorter than ``n_fft``."""
    if n_fft > n_samples:
        warnings.warn(f"n_fft={n_fft} is too large for input signal of length={n_samples}", stacklevel=3)
