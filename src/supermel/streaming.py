"""Streaming mel spectrograms: push audio chunks, get exactly librosa's offline frames.

:class:`StreamingMelSpectrogram` keeps, per stream, only the samples that
future frames still need (less than ``n_fft + chunk`` samples), emits each frame
as soon as its window is complete, and on :meth:`~StreamingMelSpectrogram.flush`
reproduces the right-edge padding of ``center=True``. Concatenating everything
it returns gives ``supermel.melspectrogram(y=<all audio>, ...)`` — and so
librosa — for every chunking.

The frame arithmetic is the package's single rule (:func:`supermel._core.num_frames`,
:func:`supermel._core.frames_ready`); the spectra come from the same module the
offline call uses (:meth:`supermel.MelSpectrogram.mel_from_padded`).

For fixed-size chunks that are a multiple of the hop, the steady state is a
static-shape step (:func:`static_step`): ``state (S, K) + chunk (S, m hop) ->
state (S, K), frames (S, n_mels, m)`` on preallocated buffers. On CUDA,
``cuda_graph=True`` captures that step in CUDA graphs and replays it per push,
with the ring buffer and outputs in preallocated device tensors. The same step
runs (uncaptured) on the CPU, where it is tested for exactness. Without a
declared chunk size, CPU streams past the left padding run through a numpy
ring buffer for chunks of any size. On the CPU both steps run the core's
kernels (:func:`supermel._core.mel_dense`) through numpy.

The CUDA-graph step is captured once per shape, at construction (or
:meth:`StreamingMelSpectrogram.warmup`), under a process-wide lock, on a
private stream of the stream object's device and under that device's guard;
it is kept across :meth:`~StreamingMelSpectrogram.reset` and cached by shape.
Its DFT is the matrix product (no cuFFT plan to be evicted from torch's plan
cache behind the graph's back). The step's products, like the core's offline
ones, run in full float32 precision whatever torch's TF32 settings
(:data:`supermel._core.full_fp32_matmuls`; for the graph: at capture).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import _core
from ._errors import ParameterError
from ._stream_steps import _CAPTURE_LOCK, NUMPY_MAX_FRAMES, _GraphStep, _RingStep, _Step, _dense_kw, _workspace  # noqa: F401  (re-exported)
from .modules import MelSpectrogram

__all__ = ["StreamingMelSpectrogram", "static_step", "check_chunk"]

Array = Union[np.ndarray, torch.Tensor]

#: Held while a CUDA-graph step captures (one capture at a time in the process:
#: torch's capture machinery and the allocator's capture state are process-wide).


def static_step(mel: Callable[[torch.Tensor], torch.Tensor], state: torch.Tensor, chunk: torch.Tensor, offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """One steady-state streaming step with static shapes (what a CUDA graph captures).

    Parameters
    ----------
    mel : callable
        Padded signal ``(S, L)`` -> frames ``(S, n_mels, T)``:
        :meth:`MelSpectrogram.mel_from_padded` or :meth:`MelSpectrogram.mel_function`.
    state : Tensor [shape=(S, K)]
        The kept samples: ``offset`` samples before the next frame's start,
        then the rest up to the newest sample.
    chunk : Tensor [shape=(S, m * hop_length)]
    offset : int
        Samples of ``state`` before the next frame's start (kept for the
        right-edge padding at flush).

    Returns
    -------
    new_state : Tensor [shape=(S, K)]
    frames : Tensor [shape=(S, n_mels, m)]
    """
    seg = torch.cat([state, chunk], dim=-1)
    frames = mel(seg[:, offset:] if offset else seg)
    return seg[:, chunk.shape[-1] :], frames


def check_chunk(chunk: Array, *, num_streams: Optional[int], check_finite: bool) -> Tuple[Array, bool]:
    """Validate one pushed chunk (dtype, shape, finiteness) without converting it.

    Shared by every streaming object. Returns ``(chunk, was_numpy)`` with
    array-likes turned into numpy arrays. Raises :class:`ParameterError`.

    ``check_finite`` looks for NaN/Inf where the data is on the host: numpy
    arrays and CPU tensors (pinned or not), before anything is copied. A chunk
    already on a GPU (or any other device) is not checked: the check would
    stall every push on a host synchronisation. A tensor that requires grad is
    returned detached: streaming computes without autograd.
    """
    was_numpy = not isinstance(chunk, torch.Tensor)
    if was_numpy:
        chunk = np.asarray(chunk)
        if chunk.dtype.kind != "f":
            raise ParameterError(f"chunk has dtype {chunk.dtype}; audio must be floating point (e.g. int16 PCM / 32768)")
    elif not chunk.is_floating_point():
        raise ParameterError(f"chunk has dtype {chunk.dtype}; audio must be floating point (e.g. int16 PCM / 32768)")
    elif chunk.requires_grad:
        # streams compute without autograd (their rings hold earlier chunks; the module's
        # parameters are copied without grad): the chunk is read detached, as its values
        chunk = chunk.detach()
    if chunk.ndim != (1 if num_streams is None else 2) or (num_streams is not None and chunk.shape[0] != num_streams):
        expected = "(n,)" if num_streams is None else f"({num_streams}, n)"
        raise ParameterError(f"chunk has shape {tuple(chunk.shape)}; this stream object takes chunks of shape {expected}")
    if check_finite and chunk.shape[-1] and (was_numpy or chunk.is_cpu):
        # one reduction in the common case; the exact test only when the sum is not finite
        if was_numpy:
            bad = not _core.all_finite_np(chunk)
        else:
            bad = not bool(torch.isfinite(chunk.sum())) and not bool(torch.isfinite(chunk).all())
        if bad:
            raise ParameterError("chunk is not finite everywhere (NaN or Inf samples); the stream was left unchanged")
    return chunk, was_numpy


def _tensors(module: torch.nn.Module) -> List[torch.Tensor]:
    return list(module.parameters()) + list(module.buffers())


def _module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors are (CPU for a module without any)."""
    return next((t.device for t in _tensors(module)), torch.device("cpu"))


def _canonical_device(device: torch.device) -> torch.device:
    """``cuda`` as ``cuda:<current device>`` (so that later guards name one device)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass
class _Group:
    """Streams that have received the same number of samples since their reset."""

    index: List[int]
    buf: torch.Tensor  # (g, n_kept) input samples from `start`
    n: int = 0  # samples received
    t: int = 0  # frames emitted
    start: int = 0  # input index of buf[:, 0]
    step: Any = field(default=None, repr=False)  # the steady-state step, once reached


def restart_stream(groups: List[_Group], index: int, empty: Callable[[int], torch.Tensor]) -> List[_Group]:
    """Move stream ``index`` out of its group into a fresh one (streams restarted together share it).

    Shared by every streaming object that supports a per-stream ``reset(i)``.
    """
    for g in groups:
        if index in g.index:
            keep = [r for r, i in enumerate(g.index) if i != index]
            g.index = [g.index[r] for r in keep]
            if g.step is not None:  # take the ring buffer back from the steady-state step
                g.step.leave(g)
                g.step = None
            g.buf = g.buf[keep]
    groups = [g for g in groups if g.index]
    fresh = next((g for g in groups if g.n == 0), None)
    if fresh is None:
        groups.append(_Group(index=[index], buf=empty(1)))
    else:
        fresh.index.append(index)
        fresh.buf = empty(len(fresh.index))
    return sorted(groups, key=lambda g: min(g.index))


class StreamingMelSpectrogram:
    """Incremental mel spectrogram that equals the offline result frame for frame.

    Parameters
    ----------
    sr, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels, fmin, fmax, htk, norm
        As :func:`supermel.melspectrogram` (librosa's keywords and defaults).
        Every ``pad_mode`` librosa accepts is supported.
    num_streams : int or None
        ``None``: one stream, chunks of shape ``(n,)``. An integer ``S``: chunks of
        shape ``(S, n)``, all streams advancing together.
    device, dtype
        Where and in which precision to compute (default: the ``module``'s device
        if one is given, else CPU; float32, or float64 when the first chunk is
        float64). ``"cuda"`` means the device current at construction
        (``stream.device`` names it, e.g. ``cuda:0``); every later capture,
        replay and copy runs under that device's guard, whichever device is
        current then.
    chunk_size : int or None
        Declare a fixed chunk size (a multiple of ``hop_length``) to use the
        static-shape steady-state step on preallocated buffers (what
        ``cuda_graph`` captures); other sizes are still accepted. Without it,
        CPU streams reach a steady state for chunks of any size (a numpy ring
        buffer). On the CPU both run the core's kernels through numpy (numpy's
        FFT, as librosa): frames equal the offline call's to float32 rounding.
    cuda_graph : bool
        With ``device="cuda"`` and ``chunk_size``: capture the steady-state step in
        CUDA graphs and replay them per push. The graphs are captured at
        construction (for ``dtype``, float32 if not given; see :meth:`warmup`),
        once per shape: they survive :meth:`reset`, and a stream that leaves the
        step (a chunk of another size) re-enters the same graphs later. The
        captured step computes the DFT as a matrix product with the windowed DFT
        basis (as ``backend="matmul"``) whatever the module's backend: a captured
        ``rfft`` would keep using a cuFFT plan that torch's plan cache can evict
        and free while the graph still replays it. The returned tensor is a
        preallocated device buffer, the same one every steady push, valid until
        the next push (``.clone()`` it to keep it).
    async_copy : bool
        How :meth:`push` treats a chunk in pinned host memory on a CUDA stream.
        Default ``False``: the chunk is copied straight into the step's device
        buffer and ``push`` returns only once that copy has completed, so the
        caller may refill the chunk's memory at once (pageable memory, numpy
        arrays included, is staged by CUDA before ``push`` returns anyway).
        ``True``: ``push`` returns as soon as the copy is queued; the chunk's
        memory must not be written until :attr:`copy_done` has completed
        (``stream.copy_done.synchronize()``, or ``.query()``), which lets the
        host prepare the next chunk while the device works.
    check_finite : bool
        Refuse chunks with NaN/Inf (the stream is left unchanged). Checked on
        the host, where the data is: numpy arrays and CPU tensors (pinned ones
        included) before they are copied. Chunks already on the GPU are not
        checked (a check would cost a host synchronisation every push, and the
        steady state is synchronisation-free): NaN/Inf there reach the frames
        whose windows contain them.
    module : MelSpectrogram, optional
        Use this (already configured) core module instead of building one from the
        keywords above; front-end presets pass theirs. The caller's module is
        never modified: it is used as it is when it is on ``device`` (or
        ``device`` is ``None``) and has nothing that requires grad; otherwise
        the stream works on a deep copy (moved to ``device``).

    Attributes
    ----------
    copy_done : torch.cuda.Event or None
        Recorded on the current CUDA stream right after the last host-to-device
        copy of a pushed chunk (``None`` on the CPU and before such a copy).
    latency_samples : int
        Look-ahead a frame needs beyond its centre: frame ``t`` (centred on sample
        ``t * hop_length`` with ``center=True``) is returned by the push that
        delivers sample ``t * hop_length + latency_samples - 1``. For the
        reference configuration (16 kHz, n_fft 800, hop 200) that is 400 samples,
        25 ms, plus up to one hop of waiting for the chunk that completes it.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)
    >>> stream = supermel.StreamingMelSpectrogram(**kw)
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> parts = [stream.push(y[i:i + 533]) for i in range(0, len(y), 533)] + [stream.flush()]
    >>> np.allclose(np.concatenate(parts, axis=-1), supermel.melspectrogram(y=y, **kw), rtol=1e-5, atol=1e-7)
    True

    Notes
    -----
    Precision: the products run in full float32 precision even when the host
    program set ``torch.set_float32_matmul_precision("high")`` or
    ``torch.backends.cuda.matmul.allow_tf32 = True`` (switched to
    ``"highest"`` while the stream computes and captures, then restored; a
    captured graph keeps the precision it was captured with).
    ``torch.inference_mode()``: the step's buffers are always built outside it,
    so a stream used inside and outside inference mode works in both.
    """

    def __init__(
        self,
        *,
        sr: float = 22050,
        n_fft: int = 2048,
        hop_length: Optional[int] = 512,
        win_length: Optional[int] = None,
        window: Any = "hann",
        center: bool = True,
        pad_mode: str = "constant",
        power: float = 2.0,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        htk: bool = False,
        norm: Any = "slaney",
        num_streams: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[torch.dtype] = None,
        chunk_size: Optional[int] = None,
        cuda_graph: bool = False,
        async_copy: bool = False,
        check_finite: bool = True,
        module: Optional[MelSpectrogram] = None,
    ) -> None:
        if num_streams is not None and (not isinstance(num_streams, (int, np.integer)) or num_streams <= 0):
            raise ParameterError(f"num_streams={num_streams!r} must be a positive integer or None")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ParameterError(f"dtype={dtype} must be torch.float32, torch.float64 or None")
        if module is not None:
            module_device = _module_device(module)
            self.device = _canonical_device(module_device if device is None else _core.resolve_device(device))
            if self.device != _canonical_device(module_device) or any(t.requires_grad for t in _tensors(module)):
                # never modify the caller's module: a copy on our device, without grad
                module = copy.deepcopy(module).to(self.device)
                for t in _tensors(module):
                    t.requires_grad_(False)
        else:
            self.device = _canonical_device(_core.resolve_device(device))
        if module is None:
            module = MelSpectrogram(
                sr=sr,
                n_fft=n_fft,
                hop_length=hop_length,
                win_length=win_length,
                window=window,
                center=center,
                pad_mode=pad_mode,
                power=power,
                n_mels=n_mels,
                fmin=fmin,
                fmax=fmax,
                htk=htk,
                norm=norm,
                check_finite=False,
                # float64 constants when the precision is not known yet: casting
                # them down later gives exactly the float32 constants.
                dtype=dtype or torch.float64,
                device=self.device,
            )
        self.module = module
        spec = module.spectrogram
        self.n_fft, self.hop_length, self.pad, self.pad_mode = spec.n_fft, spec.hop_length, spec.pad, spec.pad_mode
        self.center = spec.center
        self.n_mels = module.n_mels
        self.num_streams = None if num_streams is None else int(num_streams)
        self.check_finite = bool(check_finite)
        self._dtype = dtype
        if chunk_size is not None:
            if not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0 or chunk_size % self.hop_length:
                raise ParameterError(
                    f"chunk_size={chunk_size!r} must be a positive multiple of hop_length={self.hop_length} "
                    "(other chunk sizes work without declaring chunk_size)"
                )
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        if cuda_graph:
            if self.device.type != "cuda":
                raise ParameterError(f"cuda_graph=True needs device='cuda' (got device={str(self.device)!r})")
            if self.chunk_size is None:
                raise ParameterError("cuda_graph=True needs a fixed chunk_size (a multiple of hop_length)")
            if not torch.cuda.is_available():
                raise ParameterError("cuda_graph=True but CUDA is not available")
        self.cuda_graph = bool(cuda_graph)
        self._on_cpu = self.device.type == "cpu"
        self.async_copy = bool(async_copy)
        self.copy_done: Any = None
        self.latency_samples = self.n_fft - self.n_fft // 2
        self._tail_keep = self.pad + 1 if self.pad else 0
        self._groups: List[_Group] = []
        self._flushed = False
        self._mel: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        # steady-state steps by (rows, kept samples, offset, dtype), kept across reset()
        self._steps: Dict[Tuple[int, int, int, torch.dtype], List[Any]] = {}
        self._steps_token = self._module_token()
        self.reset()
        if self.cuda_graph:
            self.warmup()

    # ------------------------------------------------------------------ state
    @property
    def _n_streams(self) -> int:
        return 1 if self.num_streams is None else self.num_streams

    def _empty(self, g: int) -> torch.Tensor:
        return torch.zeros((g, 0), dtype=self._dtype or torch.float32, device=self.device)

    # ------------------------------------------------------------------ steady-state steps
    def warmup(self) -> None:
        """Build the steady-state step for ``chunk_size`` chunks now; with ``cuda_graph=True``,
        capture its CUDA graphs now (done at construction).

        The step is built for the precision of the stream (``dtype``; float32
        while no chunk has decided it) and for the phase a stream reaches when
        every chunk has ``chunk_size`` samples. Capturing synchronises the
        device once (torch empties its allocator cache for the capture); doing
        it here keeps that out of the pushes. Steps are kept across
        :meth:`reset`; other phases (after chunks of other sizes) or a float64
        first chunk build (and capture) their own step once, when they reach
        the steady state.
        """
        if self.chunk_size is None:
            raise ParameterError("warmup() needs a declared chunk_size (a multiple of hop_length)")
        dtype = self._dtype or torch.float32
        keep, offset = self._steady(0)
        if self._steps.get((self._n_streams, keep, offset, dtype)):
            return
        with torch.inference_mode(False), torch.no_grad():
            state = torch.zeros((self._n_streams, keep), dtype=dtype, device=self.device)
        self._take_step(state, offset).in_use = False

    def _module_token(self) -> Tuple[Any, ...]:
        """What the cached steps depend on: the identity, place and version of the module's tensors."""

        def version(t: torch.Tensor) -> Optional[int]:
            try:
                return t._version
            except RuntimeError:  # an inference tensor: no version counter (and no in-place change outside inference mode)
                return None

        return tuple((id(t), t.data_ptr(), t.dtype, t.device, version(t)) for t in _tensors(self.module))

    def _take_step(self, state: torch.Tensor, offset: int) -> Any:
        """The steady-state step for ``state`` (``(S, K)`` kept samples): a cached one not in use,
        loaded with ``state``, or a new one (cached)."""
        key = (state.shape[0], state.shape[1], offset, state.dtype)
        steps = self._steps.setdefault(key, [])
        for step in steps:
            if not step.in_use:
                step.enter(state)
                step.in_use = True
                return step
        mel = self._mel if self._mel is not None and self._mel.keywords["window"].dtype == state.dtype else None
        with torch.inference_mode(False), torch.no_grad():  # buffers usable inside and outside inference mode
            kw = dict((mel or self.module.mel_function(state.dtype)).keywords)
            if self.cuda_graph:  # the matrix-product DFT: no cuFFT plan behind the graph's back
                dft, span = self.module.spectrogram.matmul_dft()
                kw.update(dft=dft.to(state.dtype), window_span=span)
            cls = _GraphStep if self.cuda_graph else _Step
            step = cls(kw, state, self.chunk_size, offset, n_mels=self.n_mels, numpy_executor=CPU_EXECUTOR == "numpy")
        step.in_use = True
        steps.append(step)
        return step

    # ------------------------------------------------------------------ host-to-device copies
    @property
    def _uses_cuda(self) -> bool:
        return self.device.type == "cuda" or self.cuda_graph

    def _copy_event(self, t: torch.Tensor) -> Any:
        """The event to record after copying host tensor ``t`` to the device (``None``: no such copy)."""
        if self._on_cpu or not t.is_cpu or not self._uses_cuda:
            return None
        if self.copy_done is None:
            self.copy_done = torch.cuda.Event()
        return self.copy_done

    def _copied(self, t: torch.Tensor, event: Any) -> None:
        """After the copy of ``t`` (recorded in ``event``): wait for it unless the caller opted out."""
        if event is not None and not self.async_copy and t.is_pinned():
            event.synchronize()  # the caller may refill the pinned chunk once push returns

    def _on_device(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the stream's device (host chunks: copied without blocking, then see :meth:`_copied`)."""
        if (self._on_cpu and t.is_cpu) or t.device == self.device:
            return t
        event = self._copy_event(t)
        d = t.to(self.device, non_blocking=True)
        if event is not None:
            event.record(torch.cuda.current_stream(self.device))
            self._copied(t, event)
        return d

    def reset(self, index: Optional[int] = None) -> None:
        """Forget all input: every stream (``index=None``) or stream ``index`` alone.

        A stream reset on its own restarts at sample 0 while the others go on; a
        push then returns a list of per-stream arrays whenever the streams
        complete different numbers of frames (see :meth:`push`).

        The steady-state steps (and their CUDA graphs) are kept: only the
        samples are forgotten. If the module's constants changed since they
        were built (``load_state_dict``, ``.to()``), they are rebuilt (with
        ``cuda_graph=True``, captured again here).

        Parameters
        ----------
        index : int or None, default None
            The stream to restart (``0 <= index < num_streams``), or all.

        Raises
        ------
        supermel.ParameterError
            An index out of range.

        Examples
        --------
        >>> import numpy as np, supermel
        >>> stream = supermel.StreamingMelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> _ = stream.push(np.zeros(1000, np.float32)); stream.reset()
        >>> stream.frame_count, stream.samples_received
        (0, 0)
        """
        self._mel = None  # re-read the module's constants (they may have changed)
        if index is None:
            for g in self._groups:
                if g.step is not None:
                    g.step.in_use = False
                    g.step = None
            self._groups = [_Group(index=list(range(self._n_streams)), buf=self._empty(self._n_streams))]
            self._flushed = False
            token = self._module_token()
            if token != self._steps_token:
                self._steps, self._steps_token = {}, token
                if self.cuda_graph:
                    self.warmup()
            return
        if self.num_streams is None:
            if index != 0:
                raise ParameterError(f"index={index!r}: this stream object has a single stream; call reset()")
            self.reset()
            return
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.num_streams:
            raise ParameterError(f"index={index!r} must be a stream index in [0, {self.num_streams})")
        if self.cuda_graph:
            raise ParameterError("per-stream reset is not available with cuda_graph=True; call reset() for all streams")
        if self._flushed:
            raise ParameterError(f"reset({index}) after flush(): the streams have ended; call reset() to restart all of them")
        self._groups = restart_stream(self._groups, index, self._empty)

    @property
    def frame_count(self) -> Union[int, np.ndarray]:
        """Frames returned so far: an int, or one per stream when streams were reset separately."""
        counts = self._per_stream(lambda g: g.t)
        return counts[0] if len(set(counts)) == 1 else np.asarray(counts)

    @property
    def samples_received(self) -> Union[int, np.ndarray]:
        """Samples pushed since the last reset (per stream when they differ)."""
        counts = self._per_stream(lambda g: g.n)
        return counts[0] if len(set(counts)) == 1 else np.asarray(counts)

    @property
    def buffered_samples(self) -> int:
        """Samples held per stream (bounded: less than ``n_fft`` plus one chunk)."""
        return max(g.step.held if g.step is not None else g.buf.shape[-1] for g in self._groups)

    @property
    def state_nbytes(self) -> int:
        """Bytes of sample storage held for all streams (constant in the steady state)."""
        total = 0
        for g in self._groups:
            step = g.step
            if step is None:
                total += g.buf.untyped_storage().nbytes()
            else:
                total += sum(int(a.nbytes) for a in step.storage)
        return total

    @staticmethod
    def _leave_step(g: _Group) -> None:
        """Take the ring buffer back from the steady-state step (before flush or a reset)."""
        if g.step is not None:
            g.step.leave(g)
            g.step = None

    def _per_stream(self, f: Any) -> List[int]:
        out = [0] * self._n_streams
        for g in self._groups:
            for i in g.index:
                out[i] = f(g)
        return out

    # ------------------------------------------------------------------ input
    def _validate(self, chunk: Array) -> Tuple[torch.Tensor, bool]:
        """Check a chunk without touching the state; return it as ``(S, n)`` on the stream's device."""
        chunk, was_numpy = check_chunk(chunk, num_streams=self.num_streams, check_finite=self.check_finite)
        if self._dtype is None and chunk.shape[-1] > 0:
            # (the module is not cast: mel_function casts its constants, as .to() would)
            self._dtype = torch.float64 if chunk.dtype in (np.float64, torch.float64) else torch.float32
            for g in self._groups:
                g.buf = g.buf.to(self._dtype)
            self._mel = None
        dtype = self._dtype or torch.float32
        if was_numpy:
            if self.num_streams is None:
                chunk = chunk[None]
            t = torch.from_numpy(chunk if chunk.flags.c_contiguous else np.ascontiguousarray(chunk))
            if t.dtype != dtype:
                t = t.to(dtype)
        else:
            # host chunks stay on the host (copied later straight into the step's buffer);
            # a chunk on another device comes over now
            if chunk.is_cpu:
                t = chunk if chunk.dtype == dtype else chunk.to(dtype)
            else:
                t = chunk.to(device=self.device, dtype=dtype, non_blocking=True)
            if self.num_streams is None:
                t = t.unsqueeze(0)
        return t, was_numpy

    # ------------------------------------------------------------------ push / flush
    def push(self, chunk: Array) -> Union[Array, List[Array]]:
        """Add samples; return the frames they complete.

        Parameters
        ----------
        chunk : np.ndarray or Tensor [shape=(n,) or (num_streams, n)], n >= 0

        Returns
        -------
        frames : [shape=(n_mels, k) or (num_streams, n_mels, k)]
            numpy for numpy input. When streams reset separately complete
            different numbers of frames, a list with one ``(n_mels, k_i)`` array
            per stream. With ``cuda_graph=True``, a steady-state result is the
            step's one preallocated device buffer: valid until the next push.

        Notes
        -----
        Streaming computes without autograd: a chunk that requires grad is read
        detached and the frames never require grad (for gradients, run
        :class:`supermel.MelSpectrogram` on the signal).

        Input memory: once ``push`` returns, the caller may reuse the chunk's
        memory, except for a chunk in pinned host memory with
        ``async_copy=True`` (then wait for :attr:`copy_done` first). Chunks on
        the GPU are read by kernels queued on the current CUDA stream: write
        them only in stream order after the push (as with any CUDA tensor).

        Raises
        ------
        supermel.ParameterError
            After :meth:`flush`, a chunk with the wrong number of streams or dimensions, NaN/Inf
            samples (with ``check_finite``); the stream is left unchanged.

        Examples
        --------
        >>> import numpy as np, supermel
        >>> stream = supermel.StreamingMelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> stream.push(np.zeros(1000, np.float32)).shape   # frames 0..3 are complete
        (80, 4)
        >>> stream.push(np.zeros(0, np.float32)).shape      # an empty chunk completes none
        (80, 0)
        """
        if self._flushed:
            raise ParameterError("push() after flush(): the stream has ended; call reset() to start a new one")
        groups = self._groups
        if len(groups) == 1:  # the native steady state: one C++ call (None: it does not apply)
            g = groups[0]
            step = g.step
            if step is not None and step.fast is not None:
                tensor = type(chunk) is torch.Tensor
                arr = chunk
                if tensor:  # a CPU tensor without autograd: its numpy view (tensor in -> tensor out)
                    arr = None
                    if chunk.is_cpu and not chunk.requires_grad:
                        try:
                            arr = chunk.numpy()
                        except (RuntimeError, TypeError):  # conj/neg bits, dtypes numpy lacks
                            arr = None
                out = None if arr is None else step.fast.push(arr, self.check_finite, self.num_streams is None)
                if out is not None:
                    n = step.fast_n
                    g.n += n
                    g.t += step.fast_k
                    g.start += n
                    self._last_numpy = not tensor
                    return torch.from_numpy(out) if tensor else out
        fast = self._numpy_step(chunk)
        if fast is not None:
            return fast
        t, was_numpy = self._validate(chunk)
        if self._mel is None:
            self._mel = self.module.mel_function(t.dtype)
        if len(self._groups) == 1:  # all streams in step: one batched computation
            out = self._advance(self._groups[0], t)
            self._last_numpy = was_numpy
            if was_numpy:  # convert first: indexing a numpy array costs less than a torch call
                out = out.numpy() if out.device.type == "cpu" else out.cpu().numpy()
            return out[0] if self.num_streams is None else out
        t = self._on_device(t)
        outs = []
        for g in self._groups:
            rows = t if len(self._groups) == 1 else t[g.index]
            outs.append((g, self._advance(g, rows)))
        return self._assemble(outs, was_numpy)

    def _numpy_step(self, chunk: Any) -> Optional[Array]:
        """The steady state's hot path for numpy chunks (and CPU tensors without autograd, through
        their numpy view: the result comes back as a tensor) on the CPU: the checks of
        :func:`check_chunk` and one numpy step, without converting to tensors.
        ``None`` when it does not apply (or the chunk is refused: the general path
        then raises the error)."""
        if len(self._groups) != 1:
            return None
        tensor = type(chunk) is torch.Tensor
        if tensor:
            if not chunk.is_cpu or chunk.requires_grad:
                return None
            try:
                chunk = chunk.numpy()
            except (RuntimeError, TypeError):  # conj/neg bits, dtypes numpy lacks
                return None
        elif type(chunk) is not np.ndarray:
            return None
        g = self._groups[0]
        step = g.step
        if step is None or not step.numpy or chunk.dtype != step.dtype:
            return None
        if chunk.ndim != (1 if self.num_streams is None else 2):
            return None
        rows = chunk if self.num_streams is not None else chunk.reshape(1, -1)
        if not step.accepts(rows.shape):
            return None
        out = step.run_numpy(rows, self.check_finite)  # None: NaN/Inf, the stream unchanged
        if out is None:
            return None
        g.n += rows.shape[1]
        g.t += out.shape[-1]
        g.start += rows.shape[1]
        self._last_numpy = not tensor
        if self.num_streams is None:
            out = out[0]
        return torch.from_numpy(out) if tensor else out

    def _advance(self, g: _Group, rows: torch.Tensor) -> torch.Tensor:
        n_new = rows.shape[-1]
        if g.step is not None:
            if g.step.accepts(rows.shape):  # steady state: one step
                event = self._copy_event(rows)  # a host chunk goes straight into the step's buffer
                out = g.step.run(rows, event)
                if event is not None:
                    self._copied(rows, event)
                g.n += n_new
                g.t += out.shape[-1]
                g.start += n_new
                return out
            self._leave_step(g)  # another size: back to the general path
        rows = self._on_device(rows)
        g.buf = torch.cat([g.buf, rows], dim=-1) if n_new else g.buf
        g.n += n_new
        ready = _core.frames_ready(g.n, n_fft=self.n_fft, hop_length=self.hop_length, pad=self.pad, pad_mode=self.pad_mode)
        out = self._frames(g, ready, right=None)
        self._trim(g)
        if (
            self.chunk_size is not None
            and g.t * self.hop_length >= self.pad
            and g.n + self.pad >= self.n_fft
            and g.buf.shape[-1] == self._steady(g.n)[0]
        ):
            # From the next push of chunk_size samples on, the static-shape step
            # (captured in CUDA graphs with cuda_graph=True; built once per shape).
            g.step = self._take_step(g.buf, self._steady(g.n)[1])
        elif self.chunk_size is None and self.device.type == "cpu" and CPU_EXECUTOR == "numpy" and g.t * self.hop_length >= self.pad and g.n:
            # No declared chunk size: past the left padding, chunks of any size run
            # through the numpy ring buffer (the same kernels, no per-push allocation
            # of the signal, a workspace per frame count).
            g.step = _RingStep(self._mel, g.buf, g.start, g.t * self.hop_length - self.pad, n_mels=self.n_mels, tail_keep=self._tail_keep)
        return out

    def _steady(self, n: int) -> Tuple[int, int]:
        """Samples kept in steady state, and how many of them precede the next frame's start."""
        base = (n + self.pad - self.n_fft) % self.hop_length + self.n_fft - self.hop_length
        keep = max(base, self._tail_keep)
        return keep, keep - base

    def _frames(self, g: _Group, stop: int, right: Optional[torch.Tensor]) -> torch.Tensor:
        """Frames ``g.t .. stop-1`` from the buffer (plus left/right padding where needed)."""
        k = stop - g.t
        if k <= 0:
            return g.buf.new_zeros((g.buf.shape[0], self.n_mels, 0))
        lo = g.t * self.hop_length - self.pad  # input index of the first frame's first sample
        parts = []
        if lo < 0:  # frames reaching into the left padding (start of stream, nothing dropped yet)
            parts.append(_core.pad_left(g.buf, self.pad, self.pad_mode)[:, self.pad + lo :])
            lo = 0
        hi = (stop - 1) * self.hop_length - self.pad + self.n_fft
        parts.append(g.buf[:, lo - g.start : min(hi, g.n) - g.start])
        if right is not None:
            parts.append(right)
        seg = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        out = self._mel(seg)[..., :k]
        g.t = stop
        return out

    def _trim(self, g: _Group) -> None:
        # Keep the samples from the next frame's start, and the last pad + 1
        # samples, which the right padding (reflect) reads at flush.
        keep_from = max(0, min(g.t * self.hop_length - self.pad, g.n - self._tail_keep))
        if keep_from > g.start:
            g.buf = g.buf[:, keep_from - g.start :]
            g.start = keep_from

    def flush(self) -> Union[Array, List[Array]]:
        """End the input; return the remaining frames (those that reach into the right padding).

        With ``center=True`` this reproduces librosa's right-edge padding for every
        ``pad_mode``. When the total input is too short for the offline call (no
        samples at all; fewer than ``n_fft`` with ``center=False``), this raises
        the same :class:`~supermel.ParameterError`; when the offline call warns
        (``center=True``, fewer than ``n_fft`` samples), so does this.

        Returns
        -------
        frames : [shape=(n_mels, k) or (num_streams, n_mels, k)]
            As :meth:`push`.

        Raises
        ------
        supermel.ParameterError
            A second flush, or a total input the offline call refuses.

        Examples
        --------
        >>> import numpy as np, supermel
        >>> stream = supermel.StreamingMelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> parts = [stream.push(np.ones(1000, np.float32)), stream.flush()]
        >>> [p.shape[-1] for p in parts], supermel.melspectrogram(y=np.ones(1000, np.float32), sr=16000, n_fft=800, hop_length=200, n_mels=80).shape[-1]
        ([4, 2], 6)
        """
        if self._flushed:
            raise ParameterError("flush() called twice: the stream has ended; call reset() to start a new one")
        if self._mel is None:
            self._mel = self.module.mel_function(self._dtype or torch.float32)
        was_numpy = self._last_numpy
        for g in self._groups:
            self._leave_step(g)
        outs = [(g, self._finish(g)) for g in self._groups]
        self._flushed = True
        return self._assemble(outs, was_numpy)

    _last_numpy = True

    def _finish(self, g: _Group) -> torch.Tensor:
        n = g.n
        if n == 0:
            raise ParameterError("flush() with no input: the stream is empty (the offline call refuses empty audio too)")
        if self.pad == 0 and n < self.n_fft:
            raise ParameterError(
                f"n_fft={self.n_fft} is too large for uncentered analysis of input signal of length={n}; "
                "pass at least n_fft samples or use center=True"
            )
        if self.center and self.pad == self.n_fft // 2 and n < self.n_fft:
            warnings.warn(f"n_fft={self.n_fft} is too large for input signal of length={n}", stacklevel=3)
        total = _core.num_frames(n, n_fft=self.n_fft, hop_length=self.hop_length, pad=self.pad)
        if g.start == 0 and g.t * self.hop_length < self.pad:
            # Nothing dropped yet: pad the whole input exactly as offline and keep the new frames.
            z = _core.pad_signal(g.buf, pad=self.pad, mode=self.pad_mode, n_fft=self.n_fft, hop_length=self.hop_length)
            out = self._mel(z)[..., g.t : total]
            g.t = total
            return out
        if total <= g.t:
            return g.buf.new_zeros((g.buf.shape[0], self.n_mels, 0))
        start = _core.tail_start(n, n_fft=self.n_fft, hop_length=self.hop_length, pad=self.pad)
        if start is None or self.pad == 0:
            right = g.buf.new_zeros((g.buf.shape[0], self.pad))
        else:
            # librosa pads the tail segment y[start:] (start 0: the whole signal,
            # of which the buffer holds at least the last pad + 1 samples).
            right = _core.pad_right(g.buf[:, max(start - g.start, 0) :], self.pad, self.pad_mode)
        return self._frames(g, total, right=right)

    def _assemble(self, outs: Sequence[Tuple[_Group, torch.Tensor]], was_numpy: bool) -> Union[Array, List[Array]]:
        self._last_numpy = was_numpy

        def conv(x: torch.Tensor) -> Array:
            return x.detach().cpu().numpy() if was_numpy else x

        if len(outs) == 1:
            out = outs[0][1]
            return conv(out[0] if self.num_streams is None else out)
        per_stream: List[torch.Tensor] = [torch.empty(0)] * self._n_streams
        for g, o in outs:
            for row, i in enumerate(g.index):
                per_stream[i] = o[row]
        if len({o.shape[-1] for o in per_stream}) == 1:
            return conv(torch.stack(per_stream))
        return [conv(o) for o in per_stream]


#: The executor of the CPU steady-state step (see :class:`supermel._core.Workspace`);
#: the CUDA step always runs torch kernels. Tests set "torch" to run the CUDA
#: step's exact code on the CPU.
CPU_EXECUTOR = "numpy"
