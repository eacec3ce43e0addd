"""The steady-state steps of :class:`supermel.StreamingMelSpectrogram` (and the workspaces :class:`supermel.StreamPool` shares).

* :class:`_Step`: a declared ``chunk_size``, static shapes, preallocated buffers (numpy
  kernels on the CPU, torch's on a GPU);
* :class:`_GraphStep`: the same captured in CUDA graphs, replayed per push;
* :class:`_RingStep`: CPU chunks of any size through a numpy ring buffer.

Which one a stream uses, and when, is decided in :mod:`supermel.streaming`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import _core, _native

if TYPE_CHECKING:
    from .streaming import _Group

#: Held while a CUDA graph is captured (one capture at a time in the process).
_CAPTURE_LOCK = threading.Lock()

#: Pushes completing at most this many frames per stream run through the numpy
#: kernels in the CPU ring step; larger ones through the module's cache-blocked path.
NUMPY_MAX_FRAMES = 64


def _dense_kw(mel_kw: Dict[str, Any], *, numpy: bool) -> Dict[str, Any]:
    """The constants :func:`supermel._core.mel_dense` takes, from :meth:`MelSpectrogram.mel_function`'s
    keywords (as numpy arrays for the numpy executor)."""
    kw = {k: mel_kw[k] for k in ("window", "fb_t", "power", "dft", "window_span", "mag_eps")}
    if numpy:
        for k in ("window", "fb_t", "dft"):
            if kw[k] is not None:
                kw[k] = kw[k].detach().numpy()
    return kw


def _workspace(
    mel_kw: Dict[str, Any], shape: Tuple[int, int], *, n_mels: int, dtype: torch.dtype, device: torch.device, numpy: bool, static_output: bool = False
) -> _core.Workspace:
    """A :class:`supermel._core.Workspace` for ``shape`` frames of the module behind ``mel_kw``."""
    dft = mel_kw["dft"]
    return _core.Workspace(
        shape,
        n_fft=mel_kw["n_fft"],
        n_mels=n_mels,
        dtype=dtype,
        fb_dtype=mel_kw["fb_t"].dtype,
        device=device,
        dft_bins=None if dft is None else dft.shape[-1] // 2,
        static_output=static_output,
        executor="numpy" if numpy else "torch",
    )


class _Step:
    """The steady-state step with static shapes: :func:`supermel.streaming.static_step` on preallocated buffers.

    The ring buffer is two ``(S, K + chunk)`` tensors used in turn: the chunk
    is copied behind the kept samples, the frames are computed by
    :func:`supermel._core.mel_dense` into a :class:`supermel._core.Workspace`,
    and the samples the next step keeps are copied to the head of the other
    tensor. Every buffer and view is made once, here; a step is a fixed
    sequence of kernels, which the CUDA subclass captures in graphs and the
    CPU runs directly (through numpy unless ``numpy_executor=False``: :data:`supermel.streaming.CPU_EXECUTOR`).
    """

    static_output = False
    #: Whether a group of the stream runs on this step now (a cached step serves one group at a time).
    in_use = False
    #: The native one-call push (``supermel._native.step_ring``: ``fast.push(chunk, check, squeeze)``),
    #: where built; ``fast_n``, ``fast_k``: the samples and frames of one such push.
    fast: Any = None
    fast_n = fast_k = 0
    _i = 0

    @property
    def i(self) -> int:
        """Which of the two tensors holds the current state (kept by :attr:`fast` where it exists)."""
        fast = self.fast
        return self._i if fast is None else fast.i

    @i.setter
    def i(self, value: int) -> None:
        fast = self.fast
        if fast is None:
            self._i = value
        else:
            fast.i = value

    def __init__(self, mel_kw: Dict[str, Any], state: torch.Tensor, chunk_size: int, offset: int, *, n_mels: int, numpy_executor: bool = True) -> None:
        n_streams, keep = state.shape
        self.device = state.device
        n_fft, hop = mel_kw["n_fft"], mel_kw["hop_length"]
        self.numpy = state.device.type == "cpu" and numpy_executor and not self.static_output
        self.chunk_shape = (n_streams, chunk_size)
        self.held = keep
        self.dtype = np.float64 if state.dtype == torch.float64 else np.float32
        segs = [state.new_zeros((n_streams, keep + chunk_size)) for _ in range(2)]
        segs[0][:, :keep] = state
        self.segs: List[Any] = [s.numpy() for s in segs] if self.numpy else segs
        self.tails = [s[:, keep:] for s in self.segs]
        self.heads = [s[:, :keep] for s in self.segs]
        self.kept = [s[:, chunk_size:] for s in self.segs]
        if self.numpy:
            self.frames = [np.lib.stride_tricks.sliding_window_view(s[:, offset:], n_fft, axis=-1)[:, ::hop] for s in self.segs]
        else:
            self.frames = [s[:, offset:].unfold(-1, n_fft, hop) for s in segs]
        self.kw = _dense_kw(mel_kw, numpy=self.numpy)
        self.kw["ws"] = _workspace(
            mel_kw, (n_streams, self.frames[0].shape[1]), n_mels=n_mels, dtype=state.dtype, device=state.device, numpy=self.numpy, static_output=self.static_output
        )
        self.i = 0  # which of the two tensors holds the current state
        # the native CPU core on the same ring buffers (supermel._native), where built
        self.native: Optional[List[_native.RingCall]] = None
        hook = mel_kw.get("native")
        if self.numpy and hook is not None and mel_kw["dft"] is None:
            plan = hook.plan(state.dtype)
            out_dtype = np.float64 if hook.out_dtype(state.dtype) == torch.float64 else np.float32
            self.native = [_native.RingCall(plan, s, hop=hop, dtype=self.dtype, out_dtype=out_dtype) for s in self.segs]
            self.native_args = (offset, self.frames[0].shape[1])
            if self.frames[0].shape[1] > 0:
                self.fast = _native.step_ring(plan, self.segs, held=keep, chunk=chunk_size, offset=offset, hop=hop, k=self.frames[0].shape[1])
                self.fast_n, self.fast_k = chunk_size, self.frames[0].shape[1]

    def compute(self, i: int) -> Any:
        """Frames of ``segs[i]`` (state + chunk); then the kept samples to the other tensor."""
        if self.native is not None and _native.enabled():
            out = self.native[i](*self.native_args)
        else:
            out = _core._mel_dense(self.frames[i], **self.kw)  # (the torch executor's callers hold the fp32 guard)
        if self.numpy:
            self.heads[1 - i][...] = self.kept[i]
        else:
            self.heads[1 - i].copy_(self.kept[i])
        return out

    @property
    def state(self) -> torch.Tensor:
        """The kept samples ``(S, K)`` (a copy)."""
        head = self.heads[self.i]
        return torch.from_numpy(head.copy()) if self.numpy else head.clone()

    def accepts(self, shape: Tuple[int, ...]) -> bool:
        return tuple(shape) == self.chunk_shape

    @property
    def storage(self) -> List[Any]:
        return list(self.segs)

    def leave(self, g: _Group) -> None:
        """Hand the kept samples back to the group's general path (``g.start`` is kept up to date)."""
        g.buf = self.state
        self.in_use = False

    def enter(self, state: torch.Tensor) -> None:
        """Take over ``state`` (``(S, K)`` kept samples) as the current state (a cached step re-entered)."""
        if self.numpy:
            self.heads[self.i][...] = state.numpy()
        else:
            self.heads[self.i].copy_(state)

    def run(self, rows: torch.Tensor, event: Any = None) -> torch.Tensor:
        """One step on ``rows`` ``(S, chunk_size)`` (on the device, or on the host: then copied
        straight into the ring buffer, and ``event`` recorded right after that copy)."""
        if self.numpy:
            return torch.from_numpy(self.run_numpy(rows.numpy()))
        if self.device.type == "cpu":
            # the CPU torch executor (a test setting: supermel.streaming.CPU_EXECUTOR) skips the precision
            # guard, which costs ~4 us of a ~45 us one-hop push there
            return self._run(rows, event)
        with _core.full_fp32_matmuls:
            return self._run(rows, event)

    def _run(self, rows: torch.Tensor, event: Any) -> torch.Tensor:
        i = self.i
        self.tails[i].copy_(rows, non_blocking=True)
        if event is not None:
            event.record(torch.cuda.current_stream(self.device))
        out = self.compute(i)
        self.i = 1 - i
        return out

    def run_numpy(self, rows: np.ndarray, check: bool = False) -> Optional[np.ndarray]:
        """:meth:`run` of the numpy executor on a numpy chunk ``(S, chunk_size)``; ``check``:
        ``None`` (the state unchanged) when the chunk has a NaN/Inf."""
        i = self.i
        if self.native is not None and _native.enabled():  # copy, check and compute in one native call
            out = self.native[i].push(self.held, rows, self.native_args[0], self.native_args[1], check)
            if out is None:
                return None
            self.heads[1 - i][...] = self.kept[i]
            self.i = 1 - i
            return out
        if check and not _core.all_finite_np(rows):
            return None
        self.tails[i][...] = rows
        out = self.compute(i)
        self.i = 1 - i
        return out


class _RingStep:
    """CPU steady state for chunks of any size (no declared ``chunk_size``).

    The samples live in one numpy buffer ``(S, capacity)``, compacted when full;
    each push copies the chunk in, views the frames it completes (no copy) and
    runs :func:`supermel._core.mel_dense` through numpy with a
    :class:`~supermel._core.Workspace` per frame count (pushes completing more
    than :data:`NUMPY_MAX_FRAMES` frames per stream go through the module's
    cache-blocked path). It keeps, as the general path, the samples from the
    next frame's start and the last ``tail_keep`` samples (the right padding
    reads them at flush).
    """

    numpy = True
    fast = None  # (the one-call native push is _Step's)

    def __init__(self, mel: Any, buf: torch.Tensor, start: int, next_frame: int, *, n_mels: int, tail_keep: int) -> None:
        kw = mel.keywords
        self.mel, self.mel_kw = mel, kw
        self.n_fft, self.hop, self.n_mels, self.tail_keep = kw["n_fft"], kw["hop_length"], n_mels, tail_keep
        n_streams, n_kept = buf.shape
        self.torch_dtype = buf.dtype
        self.dtype = np.float64 if buf.dtype == torch.float64 else np.float32
        self.out_dtype = np.float64 if kw["fb_t"].dtype == torch.float64 else np.float32
        self.buf = np.zeros((n_streams, n_kept + 4 * (self.n_fft + self.hop)), dtype=self.dtype)
        self.buf[:, :n_kept] = buf.numpy()
        self.base, self.fill, self.fs = start, n_kept, next_frame - start  # fs: next frame's start in buf
        self.kw = _dense_kw(kw, numpy=True)
        self.ws: Dict[int, _core.Workspace] = {}
        # the native CPU core on the ring buffer (supermel._native), where built
        hook = kw.get("native")
        self.plan = hook.plan(buf.dtype) if hook is not None and kw["dft"] is None else None
        self.native: Optional[_native.RingCall] = None
        self._ring_call()

    def _ring_call(self) -> None:
        """(Re)bind the native call to ``self.buf`` (checked once per buffer)."""
        if self.plan is not None:
            self.native = _native.RingCall(self.plan, self.buf, hop=self.hop, dtype=self.dtype, out_dtype=self.out_dtype)

    def accepts(self, shape: Tuple[int, ...]) -> bool:
        return shape[0] == self.buf.shape[0]

    @property
    def storage(self) -> List[np.ndarray]:
        return [self.buf]

    def _keep_from(self) -> int:
        return max(0, min(self.fs, self.fill - self.tail_keep))

    @property
    def held(self) -> int:
        return self.fill - self._keep_from()

    def leave(self, g: _Group) -> None:
        lo = self._keep_from()
        g.buf, g.start = torch.from_numpy(self.buf[:, lo : self.fill].copy()), self.base + lo

    def run(self, rows: torch.Tensor, event: Any = None) -> torch.Tensor:
        return torch.from_numpy(self.run_numpy(rows.numpy()))

    def run_numpy(self, rows: np.ndarray, check: bool = False) -> Optional[np.ndarray]:
        """The step on a chunk ``rows`` ``(streams, n)``; ``check``: ``None`` (the ring unchanged)
        when the chunk has a NaN/Inf (tested here: the caller need not)."""
        n_streams, n = rows.shape
        if self.fill + n > self.buf.shape[1]:
            self._compact(n)
        if self.native is not None and _native.enabled():  # copy, check and compute in one native call
            avail = self.fill + n - self.fs
            k = (avail - self.n_fft) // self.hop + 1 if avail >= self.n_fft else 0
            out = self.native.push(self.fill, rows, self.fs, k, check)
            if out is None:
                return None
            self.fill += n
            self.fs += k * self.hop
            return out
        if check and not _core.all_finite_np(rows):
            return None
        self.buf[:, self.fill : self.fill + n] = rows
        self.fill += n
        avail = self.fill - self.fs
        if avail < self.n_fft:
            return np.zeros((n_streams, self.n_mels, 0), dtype=self.out_dtype)
        k = (avail - self.n_fft) // self.hop + 1
        if self.native is not None and _native.enabled():
            out = self.native(self.fs, k)
        elif k > NUMPY_MAX_FRAMES:
            seg = self.buf[:, self.fs : self.fs + (k - 1) * self.hop + self.n_fft]
            out = self.mel(torch.from_numpy(seg)).numpy()
        else:
            item = self.buf.itemsize
            frames = np.ndarray(
                (n_streams, k, self.n_fft),
                dtype=self.dtype,
                buffer=self.buf,
                offset=self.fs * item,
                strides=(self.buf.strides[0], self.hop * item, item),
            )
            out = _core._mel_dense(frames, ws=self._workspace(n_streams, k), **self.kw)
        self.fs += k * self.hop
        return out

    def _workspace(self, n_streams: int, k: int) -> _core.Workspace:
        ws = self.ws.get(k)
        if ws is None:
            ws = self.ws[k] = _workspace(self.mel_kw, (n_streams, k), n_mels=self.n_mels, dtype=self.torch_dtype, device=torch.device("cpu"), numpy=True)
        return ws

    def _compact(self, n: int) -> None:
        """Move the kept samples to the front (growing the buffer for a large chunk)."""
        lo = self._keep_from()
        keep = self.fill - lo
        if keep + n > self.buf.shape[1]:
            grown = np.zeros((self.buf.shape[0], keep + n + 4 * (self.n_fft + self.hop)), dtype=self.dtype)
            grown[:, :keep] = self.buf[:, lo : self.fill]
            self.buf = grown
            self._ring_call()
        else:
            self.buf[:, :keep] = self.buf[:, lo : self.fill]  # numpy handles the overlap
        self.base += lo
        self.fs -= lo
        self.fill = keep


class _GraphStep(_Step):
    """The steady-state step captured in CUDA graphs (one per ring-buffer tensor), replayed per push.

    Built (by :meth:`StreamingMelSpectrogram._take_step`) with the matrix-product
    DFT, outside inference mode. Warm-up and capture run under
    :data:`_CAPTURE_LOCK`, the guard of the step's device, full float32
    matmul precision, on a private stream of that device, with
    ``capture_error_mode="thread_local"`` (other threads may keep using the
    GPU meanwhile). Replays run under the device's guard on its current stream;
    a host chunk is copied into the ring buffer right before the replay,
    outside the graph. The output is a preallocated device buffer, overwritten
    by the next push.
    """

    static_output = True

    def __init__(self, mel_kw: Dict[str, Any], state: torch.Tensor, chunk_size: int, offset: int, *, n_mels: int, numpy_executor: bool = True) -> None:
        dev = state.device
        with _CAPTURE_LOCK, torch.cuda.device(dev), _core.full_fp32_matmuls:
            super().__init__(mel_kw, state, chunk_size, offset, n_mels=n_mels)
            saved = [s.clone() for s in self.segs]
            # Warm up (cuBLAS handles, workspaces) on a private stream of the step's device,
            # then capture both parities on it.
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.compute(0)
                    self.compute(1)
            torch.cuda.current_stream(dev).wait_stream(side)
            self.graphs = []
            for i in range(2):
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                    self.out = self.compute(i)  # the workspace's output buffer, the same for both
                self.graphs.append(graph)
            for s, v in zip(self.segs, saved):  # undo what warm-up and capture wrote
                s.copy_(v)

    def run(self, rows: torch.Tensor, event: Any = None) -> torch.Tensor:
        i = self.i
        with torch.cuda.device(self.device):
            self.tails[i].copy_(rows, non_blocking=True)
            if event is not None:
                event.record(torch.cuda.current_stream(self.device))
            self.graphs[i].replay()
        self.i = 1 - i
        return self.out
