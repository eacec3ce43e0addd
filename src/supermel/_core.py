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

import functools
import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ._errors import ParameterError
from ._inputs import (  # noqa: F401  (the core's public surface: one import for every user)
    NUMPY_DOT_ELEMENTS,
    _all_finite,
    _compiling_or_capturing,
    all_finite_np,
    as_batch,
    from_batch,
    resolve_device,
    warn_overflow,
    warn_short,
)
from ._kernels import NUMPY_DOT_ROWS, Workspace, _NO_BUFFERS, _NoBuffers, _NumpyKernels, _TorchKernels  # noqa: F401
from ._limits import check_memory
from ._precision import full_fp32_matmuls  # noqa: F401

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


def reflect_whole_ok(n_samples: int, *, n_fft: int, hop_length: int, pad: int) -> bool:
    """Whether reflect-padding the whole signal at once (the native core's padding) equals librosa's.

    librosa reflects the tail segment ``y[tail_start:]`` on its own; the two agree only when that
    segment holds more than ``pad`` samples (else numpy's reflection folds back inside it).
    """
    start = tail_start(n_samples, n_fft=n_fft, hop_length=hop_length, pad=pad)
    return not (start and n_samples - start <= pad)


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
#: Frames from which the CPU's mel product goes through the block-sparse filterbank
#: (:func:`_mel_frames`); fewer take one dense product (a call per block costs more there).
SPARSE_MIN_FRAMES = 16


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
    if _opaque_under_compile(dft, z, window):
        # torch.compile: the eager kernel below as one real-valued custom op (see _power_frames_op)
        return _power_frames_op(z, window, n_fft, hop_length, float(power), float(mag_eps))
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
    native: Any = None,
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
    passed to save a call). ``native``: the module's native route
    (:class:`supermel.modules._NativeMel`), tried first by :func:`mel_frames`; ignored here. While ``torch.compile`` traces (the FFT route,
    without autograd) the whole function is one custom op running this eager
    code (:func:`_opaque_under_compile`).
    """
    if _opaque_under_compile(dft, z, window, fb):
        spans = [i for lo, hi, _ in fb_blocks for i in (lo, hi)]
        return _mel_frames_op(z, window, fb, [w for _, _, w in fb_blocks], spans, n_fft, hop_length, float(power), float(mag_eps))
    eager = not torch.compiler.is_compiling() and not _needs_grad(z, window, dft, fb)
    frames = z.unfold(-1, n_fft, hop_length)
    n_batch, n_frames = frames.shape[0], frames.shape[-2]
    block = block_frames(n_fft)
    if not (eager and z.device.type == "cpu") or n_batch * n_frames <= SPARSE_MIN_FRAMES:
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


def _in_full_fp32(fn: Any, doc: str) -> Any:
    """``fn`` with its float32 products in full precision whatever the global TF32 settings
    (:data:`full_fp32_matmuls`); not while compiling, nor for the numpy executor (no
    reduced-precision products there). Hot loops call ``fn`` inside their own guard."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        native = kwargs.get("native")
        if native is not None and args:  # the native CPU core where its route applies (supermel._native)
            out = native(args[0])
            if out is not None:
                return out
        ws = kwargs.get("ws")
        if (ws is not None and ws.k is _NumpyKernels) or torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        with full_fp32_matmuls:
            return fn(*args, **kwargs)

    run.__doc__ = doc
    return run


#: ``|STFT|**power`` of an already padded signal (:func:`_power_frames`), full float32 products.
power_frames = _in_full_fp32(_power_frames, "``|STFT|**power`` of an already padded signal (:func:`_power_frames`), full float32 products.")
power_frames.__name__ = "power_frames"
#: Mel spectrogram of an already padded signal (:func:`_mel_frames`), full float32 products.
mel_frames = _in_full_fp32(_mel_frames, "Mel spectrogram of an already padded signal (:func:`_mel_frames`), full float32 products.")
mel_frames.__name__ = "mel_frames"
#: Frames -> mel with one dense product (:func:`_mel_dense`), full float32 products with torch kernels.
mel_dense = _in_full_fp32(_mel_dense, "Frames -> mel with one dense product (:func:`_mel_dense`), full float32 products with torch kernels.")
mel_dense.__name__ = "mel_dense"


# --------------------------------------------------------------------------- torch.compile
#: ``torch.library.register_fake`` (torch >= 2.4): without it, compiled graphs trace torch's operators.
_HAS_CUSTOM_OP = hasattr(torch.library, "register_fake")


def _exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting()) if is_exporting is not None else False


def _opaque_under_compile(dft: Optional[torch.Tensor], *tensors: Optional[torch.Tensor]) -> bool:
    """Whether the spectral core runs as custom ops in the graph being compiled.

    ``torch.compile`` of the FFT route (``dft is None``) without autograd: the
    graph then holds ``supermel::mel_signal`` (a mel spectrogram: padding and
    spectral core in one op, :func:`_op_mel_signal`) or ``supermel::pad_signal`` and
    ``supermel::power_frames`` (a spectrogram), real tensors in and out, which run eagerly the
    kernels an eager call runs (the native CPU core where it applies,
    :func:`_native_frames`; else librosa's padding, cache-sized blocks,
    block-sparse filterbank, in-place buffers) bit for bit. Traced as torch operators instead, the graph
    held a complex ``aten._fft_r2c`` (an inductor fallback, with a warning) over
    the whole signal at once and the dense filterbank product: 2-4x slower than
    eager on 60 s. Not taken by ``torch.export`` (the ONNX exporter needs the
    operators: it uses the ``matmul`` route), with autograd (the operators carry
    the gradient), on ``backend="matmul"`` (already real-valued) or on torch < 2.4.
    """
    return _HAS_CUSTOM_OP and dft is None and torch.compiler.is_compiling() and not _exporting() and not _needs_grad(*tensors)


_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


class _OpPlans:
    """Owner of the native plans of compiled graphs (plans are keyed by their tensors' addresses and versions)."""


_OP_PLANS = _OpPlans()


def _native_frames(z: torch.Tensor, window: torch.Tensor, fb: Optional[torch.Tensor], n_fft: int, hop_length: int, power: float, mag_eps: float) -> Optional[torch.Tensor]:
    """The compiled graph's spectral op on the native CPU core (:mod:`supermel._native`), or
    ``None`` where that route does not apply (not built, switched off, not CPU float frames):
    the op runs eagerly, so a compiled module takes the route its eager calls take. With a
    filterbank ``fb``: ``(B, n_mels, T)`` in ``fb``'s dtype; without: power ``(B, T, F)``."""
    try:
        from . import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    dt = z.dtype
    wt = dt if fb is None else fb.dtype
    if not (_native.enabled() and z.device.type == "cpu" and dt in _NP_DTYPES and wt in _NP_DTYPES and z.ndim == 2 and z.shape[-1] >= n_fft):
        return None
    n_frames = (z.shape[-1] - n_fft) // hop_length + 1
    plan = _native.cached_plan(_OP_PLANS, n_fft=n_fft, window=window, fb=fb, dtype=_NP_DTYPES[dt], weights=_NP_DTYPES[wt], power=power, mag_eps=mag_eps)
    if fb is None:
        out = torch.empty((z.shape[0], n_frames, n_fft // 2 + 1), dtype=dt)
        dst = out.numpy().transpose(0, 2, 1)  # the kernels write (B, F, T)
    else:
        out = torch.empty((z.shape[0], fb.shape[0], n_frames), dtype=wt)
        dst = out.numpy()
    _native.run_strided(plan, z.detach().numpy(), offset=0, hop=hop_length, n_frames=n_frames, out=dst, dtype=_NP_DTYPES[dt], out_dtype=_NP_DTYPES[wt])
    return out


def _op_mel_frames(z, window, fb, blocks, spans, n_fft, hop_length, power, mag_eps):  # type: ignore[no-untyped-def]
    """:func:`mel_frames` of the FFT route as one operator: ``(B, L_padded)`` -> ``(B, n_mels, T)``
    (on the native CPU core where it applies, as the module's eager call: :func:`_native_frames`)."""
    out = _native_frames(z, window, fb, n_fft, hop_length, power, mag_eps)
    if out is not None:
        return out
    fb_blocks = [(spans[2 * i], spans[2 * i + 1], w) for i, w in enumerate(blocks)]
    return mel_frames(z, n_fft=n_fft, hop_length=hop_length, window=window, power=power, fb=fb, fb_blocks=fb_blocks, mag_eps=mag_eps)


#: Padding modes the native core pads itself (:meth:`supermel._native.Plan.signal`'s codes).
_NATIVE_PAD_CODES = {"constant": 0, "reflect": 1, "edge": 2}


def _native_signal(
    y: torch.Tensor, window: torch.Tensor, fb: torch.Tensor, n_fft: int, hop_length: int, pad: int, mode: str, power: float, mag_eps: float
) -> Optional[torch.Tensor]:
    """``(B, L)`` unpadded -> ``(B, n_mels, T)`` in one native call that pads too (what
    :meth:`supermel.MelSpectrogram.native_call` does eagerly), or ``None`` where that route does
    not apply (not built, switched off, not a contiguous CPU float signal of at least ``n_fft``
    samples, a padding mode the core does not do): the caller then pads and runs :func:`_op_mel_frames`."""
    try:
        from . import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    code = _NATIVE_PAD_CODES.get(mode, -1) if pad else 0
    dt, wt = y.dtype, fb.dtype
    if code < 0 or not (_native.enabled() and y.device.type == "cpu" and dt in _NP_DTYPES and wt in _NP_DTYPES and y.ndim == 2 and y.is_contiguous()):
        return None
    rows, n = y.shape
    if rows < 1 or n < max(n_fft, pad + 1 if code == 1 else 1):  # shorter: the general path (numpy's periodic fold)
        return None
    if code == 1 and not reflect_whole_ok(n, n_fft=n_fft, hop_length=hop_length, pad=pad):
        return None
    x = y.detach().numpy()
    if not x.flags.aligned:
        return None
    plan = _native.cached_plan(_OP_PLANS, n_fft=n_fft, window=window, fb=fb, dtype=_NP_DTYPES[dt], weights=_NP_DTYPES[wt], power=power, mag_eps=mag_eps)
    n_frames = (n + 2 * pad - n_fft) // hop_length + 1
    out = np.empty((rows, plan.n_out, n_frames), dtype=_NP_DTYPES[wt])  # allocated as the eager call allocates
    plan.signal(x, pad, code, hop_length, out, torch.get_num_threads() if rows * n_frames >= 512 else 1, False)
    return torch.from_numpy(out)


def _op_mel_signal(y, window, fb, blocks, spans, n_fft, hop_length, pad, mode, power, mag_eps):  # type: ignore[no-untyped-def]
    """The whole mel spectrogram of an unpadded ``(B, L)`` signal as one operator: librosa's padding
    and :func:`_op_mel_frames` -> ``(B, n_mels, T)``. On the native CPU core where it applies it is
    the single crossing the module's eager call makes (:func:`_native_signal`); else the torch route."""
    out = _native_signal(y, window, fb, n_fft, hop_length, pad, mode, power, mag_eps)
    if out is not None:
        return out
    z = pad_signal(y, pad=pad, mode=mode, n_fft=n_fft, hop_length=hop_length)
    return _op_mel_frames(z, window, fb, blocks, spans, n_fft, hop_length, power, mag_eps)


def _mel_signal_compiled(
    y: torch.Tensor,
    *,
    pad: int,
    mode: str,
    n_fft: int,
    hop_length: int,
    window: torch.Tensor,
    power: float,
    fb: torch.Tensor,
    fb_blocks: Sequence[Tuple[int, int, torch.Tensor]],
    mag_eps: float = 0.0,
) -> torch.Tensor:
    """``supermel::mel_signal`` (padding and spectral core as one custom op) for a graph being
    compiled (:func:`_opaque_under_compile` true): ``(B, L)`` -> ``(B, n_mels, T)``."""
    spans = [i for lo, hi, _ in fb_blocks for i in (lo, hi)]
    return _mel_signal_op(y, window, fb, [w for _, _, w in fb_blocks], spans, n_fft, hop_length, int(pad), mode, float(power), float(mag_eps))


def _op_pad_signal(y, pad, mode, n_fft, hop_length):  # type: ignore[no-untyped-def]
    """:func:`pad_signal` as one operator (inductor's generated padding kernel, measured on 60 s,
    left the spectral op that reads it ~0.5 ms slower than eager's ``torch.nn.functional.pad``)."""
    z = pad_signal(y, pad=pad, mode=mode, n_fft=n_fft, hop_length=hop_length)
    return z.clone() if z is y else z.contiguous()


def _op_power_frames(z, window, n_fft, hop_length, power, mag_eps):  # type: ignore[no-untyped-def]
    """:func:`power_frames` of the FFT route as one operator: ``(B, L_padded)`` -> ``(B, T, F)``
    (on the native CPU core where it applies: :func:`_native_frames`)."""
    out = _native_frames(z, window, None, n_fft, hop_length, power, mag_eps)
    if out is not None:
        return out
    return power_frames(z, n_fft=n_fft, hop_length=hop_length, window=window, power=power, mag_eps=mag_eps)


def _n_frames_fake(z: torch.Tensor, n_fft: int, hop_length: int) -> Any:
    return (z.shape[-1] - n_fft) // hop_length + 1


_OPS = (
    ("mel_frames(Tensor z, Tensor window, Tensor fb, Tensor[] blocks, int[] spans, int n_fft, int hop_length, float power, float mag_eps) -> Tensor",
     _op_mel_frames,
     lambda z, window, fb, blocks, spans, n_fft, hop_length, power, mag_eps: z.new_empty((z.shape[0], fb.shape[0], _n_frames_fake(z, n_fft, hop_length)), dtype=fb.dtype)),
    ("mel_signal(Tensor y, Tensor window, Tensor fb, Tensor[] blocks, int[] spans, int n_fft, int hop_length, int pad, str mode, "
     "float power, float mag_eps) -> Tensor",
     _op_mel_signal,
     lambda y, window, fb, blocks, spans, n_fft, hop_length, pad, mode, power, mag_eps: y.new_empty(
         (y.shape[0], fb.shape[0], (y.shape[-1] + 2 * pad - n_fft) // hop_length + 1), dtype=fb.dtype)),
    ("pad_signal(Tensor y, int pad, str mode, int n_fft, int hop_length) -> Tensor",
     _op_pad_signal,
     lambda y, pad, mode, n_fft, hop_length: y.new_empty(tuple(y.shape[:-1]) + (y.shape[-1] + 2 * pad,))),
    ("power_frames(Tensor z, Tensor window, int n_fft, int hop_length, float power, float mag_eps) -> Tensor",
     _op_power_frames,
     lambda z, window, n_fft, hop_length, power, mag_eps: z.new_empty(
         (z.shape[0], _n_frames_fake(z, n_fft, hop_length), n_fft // 2 + 1), dtype=torch.promote_types(z.dtype, window.dtype))),
)

if _HAS_CUSTOM_OP:
    # Registered with torch.library.Library rather than torch.library.custom_op: the latter's
    # Python wrappers cost ~10 us more per call, which is a tenth of a compiled 1 s call.
    # CompositeExplicitAutograd: these ops are only placed in graphs without autograd.
    # FRAGMENT: other parts of the package may register ops in the same namespace.
    _LIB = torch.library.Library("supermel", "FRAGMENT")
    for _schema, _impl, _fake in _OPS:
        _name = _schema.split("(", 1)[0]
        _LIB.define(_schema)
        _LIB.impl(_name, _impl, "CompositeExplicitAutograd")
        torch.library.register_fake(f"supermel::{_name}", _fake, lib=_LIB)
    del _schema, _impl, _fake, _name
    _mel_frames_op = torch.ops.supermel.mel_frames.default
    _mel_signal_op = torch.ops.supermel.mel_signal.default
    _pad_signal_op = torch.ops.supermel.pad_signal.default
    _power_frames_op = torch.ops.supermel.power_frames.default


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
