"""The kernels of the core's dense mel step, on tensors or on numpy arrays, and their workspaces.

:func:`supermel._core.mel_dense` calls its kernels through an executor: torch's
operators (:class:`_TorchKernels`, the offline and CUDA route) or numpy's
(:class:`_NumpyKernels`, the CPU streaming steady state), writing into a
preallocated :class:`Workspace` when one is given.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from ._precision import full_fp32_matmuls

__all__ = ["Workspace", "NUMPY_DOT_ROWS"]


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
