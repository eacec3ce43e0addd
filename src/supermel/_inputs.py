"""Input handling shared by every entry point: devices, audio validation and batching, output checks."""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch

from ._errors import ParameterError

__all__ = ["resolve_device", "as_batch", "all_finite_np", "from_batch", "warn_overflow", "warn_short", "NUMPY_DOT_ELEMENTS"]

#: Length up to which :func:`all_finite_np` takes numpy's dot (OpenBLAS threads longer ones).
NUMPY_DOT_ELEMENTS = 8192


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


def as_batch(
    y: Union[np.ndarray, torch.Tensor],
    *,
    check_finite: bool = True,
    name: str = "y",
    device: Optional[torch.device] = None,
    allow_empty: bool = False,
) -> Tuple[torch.Tensor, Tuple[int, ...], bool]:
    """Validate audio and flatten it to ``(B, L)``.

    ``allow_empty``: accept ``L == 0`` (a caller that pads before computing, as Whisper's hosts do).

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
    if t.shape[-1] == 0 and not allow_empty:
        raise ParameterError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one sample")
    if any(d == 0 for d in t.shape[:-1]):
        raise ParameterError(f"{name} has an empty batch dimension (shape {tuple(t.shape)})")
    if check_finite and not _compiling_or_capturing(t) and not _all_finite(t):
        raise ParameterError(f"{name} is not finite everywhere (NaN or Inf samples); clean the audio, e.g. np.nan_to_num")
    batch_shape = tuple(t.shape[:-1])
    return t.reshape(math.prod(batch_shape), t.shape[-1]), batch_shape, was_numpy


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
