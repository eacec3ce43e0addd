"""Many independent live streams, one batched computation per step: :class:`StreamPool`.

Real clients join and leave at any moment, and their chunks arrive out of step
and in different sizes. A :class:`~supermel.StreamingMelSpectrogram` with
``num_streams=S`` batches streams only while they advance in lockstep; a pool
takes each stream's chunks whenever they come (:meth:`StreamPool.push`, or a
tick's chunks of many streams at once: :meth:`StreamPool.push_many`) and, at
each :meth:`StreamPool.step`, computes the complete frames of **every** stream
as one ``(K, frame_length)`` matrix with the core's kernels
(:func:`supermel._core.mel_dense` in cache-sized blocks, or the Kaldi front
ends' ``frames_mel``), then hands each stream its frames (a :class:`PoolStep`).

How the frames are gathered
---------------------------
Each stream's samples (after the front end's waveform step, e.g. pre-emphasis)
live in one row of a ring buffer (``ring[s, i % C]``) whose first frame length
is mirrored past its end (``ring[s, C + j] == ring[s, j]`` for ``j < L``), so that
any frame is a contiguous row of a strided view and the frames of all streams are
fancy-indexed copies (block by block, into each block's workspace, on the numpy
executor). The frames that reach into the left padding (the first few of a
stream with ``center=True``) and the last ones, which reach into the right padding at :meth:`StreamPool.close`, are
built per stream with the same padding code as the offline call
(:mod:`supermel._core`, Kaldi's framing for the Kaldi presets).

On the native route (:mod:`supermel._native`, src/native/pool.hpp) a tick's per-stream work is
C++: :meth:`StreamPool.push_many` checks and writes every chunk in one call, and
:meth:`StreamPool.step` finds each stream's due frames and computes them, gathered from the
rings by (row, start), in one call; the result holds one block and a table, its per-stream
entries made when read. The frames are bit-identical to the Python bookkeeping's (the same
kernel on the same frames; ``tests/test_pool_native.py``).

What the frames equal
---------------------
Every stream's frames equal the offline call on that stream's audio
(``supermel.melspectrogram`` or ``supermel.frontend(name)``) to float32
rounding, with the bounds of ``docs/exactness.md`` (the stacked product rounds
like the streaming steady state): the same frames, center padding at both edges
included, whatever the chunking and the mix of streams in a step. Non-frame-local
presets (Whisper, NeMo, AST, SeamlessM4T, FunASR) give their ``post_local``
frames; :meth:`StreamPool.finalize` applies the whole-input step.

Threads
-------
A pool is safe to share between threads: :meth:`StreamPool.open`, ``push``,
``push_many``, ``step``, ``close`` and the per-stream queries each hold the pool's
lock (a ``threading.RLock``; uncontended, ~0.1 us a call, nothing next to a step), so
calls from several threads run one after the other, each seeing the pool as the
previous one left it. What a step returns belongs to the caller (no buffer of the
pool is reused under it). The order of the calls is the callers' business: a stream's
chunks must be pushed in order (push a stream's chunks from one thread, or order them
yourself), and the frames of a step go to whichever thread called it.

On a GPU (``device="cuda"``) the frames are gathered in pinned host memory,
copied to the device once per step, and the features stay on the device for
the model; the same code path runs on the CPU with ``executor="torch"``.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import itertools
import operator
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

import numpy as np
import torch

from . import _core, _native
from ._errors import ParameterError, unknown_keywords
from ._pool_frames import PoolFrames, PoolStep, _finite_1d, _Layout
from ._stream_steps import _dense_kw, _workspace
from .presets import Frontend, MelConfig, Wav2LipChunker, frontend
from .streaming import check_chunk

__all__ = ["StreamPool", "PoolFrames", "PoolStep"]

Array = Union[np.ndarray, torch.Tensor]
_F = TypeVar("_F", bound=Callable[..., Any])


_NDARRAY = {np.ndarray}
_ONE = {1}
_DTYPE_OF = operator.attrgetter("dtype")
_NDIM_OF = operator.attrgetter("ndim")
_SIZE_OF = operator.attrgetter("size")
_SLOT_OF = operator.attrgetter("slot")


_DUPLICATE_IDS = "push_many() takes each stream id at most once (its errors are keyed by id); concatenate a stream's chunks"


def _locked(method: _F) -> _F:
    """Run ``method`` holding the pool's lock (see the module notes, "Threads")."""

    @functools.wraps(method)
    def wrapper(self: "StreamPool", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]

#: The numpy executor computes a step in blocks of a multiple of this many frames (see StreamPool._mel_blocks).
_BUCKET = 32
#: Samples per block: about 0.5 MiB of float32 frames, which stays in a core's L2 cache with its spectrum.
_BLOCK_SAMPLES = 1 << 17

_CORE_KEYS = ("sr", "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power", "n_mels", "fmin", "fmax", "htk", "norm")


@dataclass(eq=False)
class _Stream:
    """A stream's state besides its counters, which live in the pool's per-slot arrays
    (``_n`` samples received after the waveform step and any trim, ``_t`` frames computed,
    ``_em`` frames handed out: ``_t`` less the frames withheld for drop_last), so that a
    step reads and advances every stream's counters with a few vectorised operations."""

    slot: int
    n_input: int = 0  # samples received before the end padding (close)
    prev: Optional[np.ndarray] = None  # the waveform step's context (pre-emphasis: the last sample)
    chunker: Optional[Wav2LipChunker] = None
    held: List[Array] = field(default_factory=list)  # computed frames withheld (drop_last)


class StreamPool:
    """Independent live streams computed together: open, push any time, one batched step, close.

    Parameters
    ----------
    preset : str, Frontend or None
        A front end (``supermel.frontend`` name or module); ``None`` for the plain
        mel spectrogram of ``**core`` (``supermel.melspectrogram``'s keywords:
        ``sr``, ``n_fft``, ``hop_length``, ``n_mels``, ``fmin``, ``fmax``, ...).
    device : str or torch.device, optional
        ``"cpu"`` (default) or a GPU: the step's frames are gathered in pinned
        host memory, copied once, and the features stay on the device.
    dtype : torch.dtype, optional
        float32 (default) or float64.
    max_frames_per_step : int
        Cap on the frames one :meth:`step` computes (the rest wait for the next
        step, streams served in rotation), so that one step's latency is bounded.
    max_backlog_seconds : float
        Audio a stream may hold that no step has consumed yet; a push beyond it
        is refused (:class:`~supermel.ParameterError`; the stream is unchanged).
        Bounds each stream's memory.
    check_finite : bool
        Refuse chunks with NaN/Inf samples (that stream alone; the others go on).
    executor : {"auto", "numpy", "torch"}
        CPU kernels: numpy (``auto`` on the CPU) or torch's (the GPU path's code).
    **core
        The core's keywords when ``preset`` is None, or overrides of the preset's
        configuration.

    Notes
    -----
    Thread-safe: every method that reads or changes the streams holds the pool's lock,
    so several threads may push, step, open and close concurrently (each call runs
    whole, one after the other). A stream's chunks must still arrive in order, and a
    step's frames go to the thread that called it (module notes, "Threads").

    Examples
    --------
    >>> import numpy as np, supermel
    >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> a, b = pool.open(), pool.open()
    >>> pool.push(a, np.zeros(1000, np.float32)); pool.push(b, np.zeros(300, np.float32))
    >>> out = pool.step()                    # {stream id: PoolFrames(start, frames, ...)}
    >>> out[a].frames.shape, b in out
    ((80, 4), False)
    """

    def __init__(
        self,
        preset: Union[None, str, Frontend] = None,
        *,
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[torch.dtype] = None,
        max_frames_per_step: int = 4096,
        max_backlog_seconds: float = 2.0,
        check_finite: bool = True,
        executor: str = "auto",
        **core: Any,
    ) -> None:
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ParameterError(f"dtype={dtype} must be torch.float32, torch.float64 or None")
        if isinstance(max_frames_per_step, bool) or not isinstance(max_frames_per_step, (int, np.integer)) or max_frames_per_step <= 0:
            raise ParameterError(f"max_frames_per_step={max_frames_per_step!r} must be a positive integer")
        if not (isinstance(max_backlog_seconds, (int, float)) and max_backlog_seconds > 0):
            raise ParameterError(f"max_backlog_seconds={max_backlog_seconds!r} must be a positive number of seconds")
        if executor not in ("auto", "numpy", "torch"):
            raise ParameterError(f"executor={executor!r} must be 'auto', 'numpy' or 'torch'")
        self.device = _core.resolve_device(device)
        if preset is None:
            unknown = sorted(set(core) - set(_CORE_KEYS))
            if unknown:
                accepted = [n for n in inspect.signature(StreamPool.__init__).parameters if n not in ("self", "core")]
                raise unknown_keywords(unknown, accepted + list(_CORE_KEYS), where="StreamPool")
            kw = dict(core)
            kw.setdefault("sr", 22050)
            kw.setdefault("norm", "slaney")
            fe: Frontend = Frontend(MelConfig(**kw), dtype=dtype, device=self.device, check_finite=False)
        elif isinstance(preset, Frontend):
            if core:
                raise ParameterError("pass overrides to supermel.frontend(...), not to StreamPool, when giving a module")
            fe = preset if dtype is None or preset.dtype == dtype else supermel_frontend_copy(preset, dtype)
            fe = fe.to(self.device)
        else:
            fe = frontend(preset, dtype=dtype, device=self.device, check_finite=False, **core)
        self.frontend = fe.requires_grad_(False)
        self.dtype = fe.dtype
        self.np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        self.layout = _Layout(fe)
        self.frame_local = bool(fe.frame_local)
        self.time_axis = fe.time_axis
        self.sr = float(fe.core.sr)
        self.hop_length = self.layout.hop
        self.check_finite = bool(check_finite)
        self.max_frames_per_step = int(max_frames_per_step)
        backlog = int(round(max_backlog_seconds * self.sr))
        # ring row: the backlog, plus a frame and a hop (and a frame's mirror, see the module notes)
        self.capacity = -(-(backlog + 2 * self.layout.L + 2 * self.layout.hop) // 1024) * 1024
        self.numpy = self.device.type == "cpu" and not self.layout.kaldi and executor in ("auto", "numpy")
        mel_kw = fe.core.mel_function(self.dtype).keywords
        self._mel_kw = mel_kw
        # the native CPU core (supermel._native): frames gathered straight from the rings by (slot, start)
        hook = mel_kw.get("native")
        self._native_plan = hook.plan(self.dtype) if self.numpy and hook is not None and mel_kw["dft"] is None else None
        self._native_out = np.float64 if hook is not None and hook.out_dtype(self.dtype) == torch.float64 else self.np_dtype
        self._native_odt = np.dtype(self._native_out)
        self._dense = _dense_kw(mel_kw, numpy=self.numpy)
        self._ws: Dict[int, Any] = {}
        self._block = max(_BUCKET, min(512, _BLOCK_SAMPLES // self.layout.L) // _BUCKET * _BUCKET)
        self._frames = np.zeros((0, self.layout.L), dtype=self.np_dtype)
        self._trim_at = fe.stream_trim_at()
        # the waveform step is the identity for the core and most presets: skip its call per push
        self._identity_pre = (not fe.stream_pre_on_chunks) or (type(fe).pre is Frontend.pre and fe.pre_context == 0)
        self._drop_last = int(fe.drop_last)
        self._tail_keep = max(0 if self.layout.kaldi else self.layout.pad + 1, self.layout.L)  # samples close() may re-read
        self._ring = np.zeros((0, self.capacity + self.layout.L), dtype=self.np_dtype)
        self._view: Optional[np.ndarray] = None  # every frame of the ring, (slots, 2 C - L + 1, L): a strided view
        self._n = np.zeros(0, dtype=np.int64)  # per slot: samples received
        self._t = np.zeros(0, dtype=np.int64)  # per slot: frames computed
        self._em = np.zeros(0, dtype=np.int64)  # per slot: frames handed out
        self._order: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (ids, slots) of the open streams
        self._stateful = 0  # open streams with per-stream output state (Wav2Lip windows)
        self._free: List[int] = []  # free slots, a heap: a new stream takes the lowest, so that the ring can shrink
        self._streams: Dict[int, _Stream] = {}
        self._slot_of: Dict[int, int] = {}  # id -> slot of the open streams (push_many's native call reads it)
        # the tick's bookkeeping in C++ (push_many's checks and writes, the step's due frames and gather);
        # False: the Python bookkeeping of before (tests compare the two)
        self._native_tick = True
        self._pool_ring: Optional[_native.PoolRing] = None  # the ring and counters checked for the native calls (see _checked_ring)
        # the front end's frame-local post-step is the identity (the core mel): the step's block is returned as computed
        self._post_identity = type(fe).post_local is Frontend.post_local
        self._ids = itertools.count()
        self._rotation = 0
        self._pinned: Optional[torch.Tensor] = None
        self._copied: Any = None  # CUDA event: the last step's host-to-device copy out of _pinned
        self._lock = threading.RLock()  # every public method that reads or changes the streams holds it

    # ------------------------------------------------------------------ streams
    @_locked
    def open(self, *, fps: Optional[float] = None) -> int:
        """Start a stream; return its id. ``fps``: also return Wav2Lip's per-video-frame windows at this rate.

        Parameters
        ----------
        fps : float or None, default None
            Video frame rate for Wav2Lip windows (Wav2Lip presets only).

        Returns
        -------
        int
            The stream id (ids of closed streams are reused).

        Examples
        --------
        >>> import numpy as np, supermel
        >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> pool.open(), pool.open(), pool.streams
        (0, 1, [0, 1])
        """
        if fps is not None and not (self.frontend.config.name.startswith("wav2lip")):
            raise ParameterError(f"fps={fps!r}: video-frame windows are Wav2Lip's; this pool computes {self.frontend.config.name or 'the core mel'}")
        chunker = Wav2LipChunker(fps, mel_fps=self.sr / self.hop_length) if fps is not None else None
        if self._free:
            slot = heapq.heappop(self._free)
            self._ring[slot] = 0.0
        else:
            slot = self._ring.shape[0]
            rows = max(4, 2 * slot)
            grown = np.zeros((rows, self._ring.shape[1]), dtype=self.np_dtype)
            grown[:slot] = self._ring
            self._free.extend(range(slot + 1, rows))  # (ascending: a heap)
            self._ring = grown
            self._view = None
            self._pool_ring = None  # (it holds the old arrays)
            self._n, self._t, self._em = (np.concatenate([a, np.zeros(rows - slot, dtype=np.int64)]) for a in (self._n, self._t, self._em))
        self._n[slot] = self._t[slot] = self._em[slot] = 0
        sid = next(self._ids)
        k = max(1, self.frontend.pre_context)
        self._streams[sid] = _Stream(slot=slot, prev=np.zeros((1, k), dtype=self.np_dtype), chunker=chunker)
        self._slot_of[sid] = slot
        self._stateful += chunker is not None
        self._order = None
        return sid

    def _get(self, sid: int) -> _Stream:
        st = self._streams.get(sid) if isinstance(sid, (int, np.integer)) else None
        if st is None:
            raise ParameterError(f"stream {sid!r} is not open in this pool (open() returns the ids; a closed stream's id is gone)")
        return st

    @property
    def streams(self) -> List[int]:
        """The ids of the open streams."""
        with self._lock:
            return list(self._streams)

    def __len__(self) -> int:
        return len(self._streams)  # (one atomic read)

    @_locked
    def samples_received(self, sid: int) -> int:
        """Samples stream ``sid`` received (after the front end's waveform step and any trim)."""
        return int(self._n[self._get(sid).slot])

    @_locked
    def frame_count(self, sid: int) -> int:
        """Frames handed out to stream ``sid`` so far."""
        return int(self._em[self._get(sid).slot])

    @_locked
    def pending_frames(self, sid: int) -> int:
        """Frames of stream ``sid`` that the next steps will compute (complete, not yet computed)."""
        slot = self._get(sid).slot
        return int(self.layout.ready(self._n[slot : slot + 1])[0] - self._t[slot])

    def _keep_from(self, n: int, t: int) -> int:
        """The first sample a stream with ``n`` samples and ``t`` frames computed still needs."""
        lay = self.layout
        if t < lay.head:
            return 0
        return max(0, min(lay.start(t), n - self._tail_keep))

    # ------------------------------------------------------------------ input
    @_locked
    def push(self, sid: int, chunk: Array) -> None:
        """Add samples to stream ``sid`` (any size, 0 included). Nothing is computed until :meth:`step`.

        A refused chunk (NaN/Inf, not floating point, not 1-D, over the backlog)
        raises :class:`~supermel.ParameterError` and leaves that stream, and every
        other, unchanged. :meth:`push_many` pushes one chunk to each of many streams.

        Parameters
        ----------
        sid : int
            A stream id from :meth:`open`.
        chunk : np.ndarray or Tensor [shape=(n,)], floating point
            Samples at the pool's rate.

        Raises
        ------
        supermel.ParameterError
            An unknown id or a refused chunk (see above).

        Examples
        --------
        >>> import numpy as np, supermel
        >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> sid = pool.open()
        >>> pool.push(sid, np.zeros(1000, np.float32))
        >>> pool.pending_frames(sid)
        4
        """
        try:
            st = self._streams[sid]
        except (KeyError, TypeError):
            st = self._get(sid)  # raises the error that names the id
        if type(chunk) is np.ndarray and chunk.ndim == 1 and chunk.dtype == self.np_dtype:
            x = chunk  # the common case (a server's decoded chunk): check_chunk's checks without its conversions
            if self.check_finite and x.size and not _finite_1d(x):
                raise ParameterError("chunk is not finite everywhere (NaN or Inf samples); the stream was left unchanged")
        else:
            x = self._as_samples(chunk)
        slot = st.slot
        n = int(self._n[slot])
        if self._trim_at is not None:
            x = x[: max(0, self._trim_at - n)]
        m = x.shape[0]
        if m == 0:
            return
        waiting = n + m - self._keep_from(n, int(self._t[slot]))
        if waiting > self.capacity - self.layout.L:
            raise self._over_backlog(sid, waiting)
        self._write(slot, n, x if self._identity_pre else self._pre(st, n, x))
        self._n[slot] = n + m

    @_locked
    def push_many(self, ids: List[int], chunks: List[Array]) -> Dict[int, ParameterError]:
        """Push ``chunks[i]`` to stream ``ids[i]`` for every ``i``, at once (what a server does between steps).

        The same as ``push(ids[i], chunks[i])`` in turn, with a refused chunk reported
        rather than raised: returns ``{stream id: ParameterError}`` for the chunks
        refused (unknown id, NaN/Inf, wrong dtype or shape, over the backlog; those
        streams unchanged), empty when all were taken. 1-D numpy chunks of the pool's
        dtype are checked together (one finiteness test over all of them, the backlog
        of every stream at once) and written with one slice assignment each; other
        chunks are pushed one by one. Each id at most once per call.

        Parameters
        ----------
        ids : list of int
            Stream ids, each at most once.
        chunks : list of arrays [shape=(n_i,)]
            One chunk per id.

        Returns
        -------
        dict of int to supermel.ParameterError
            The refused chunks; empty when all were taken.

        Examples
        --------
        >>> import numpy as np, supermel
        >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> a, b = pool.open(), pool.open()
        >>> errors = pool.push_many([a, b], [np.zeros(400, np.float32), np.array([np.nan], np.float32)])
        >>> list(errors), pool.samples_received(a)
        ([1], 400)
        """
        if len(ids) != len(chunks):
            raise ParameterError(f"push_many() got {len(ids)} ids and {len(chunks)} chunks; pass one chunk per id")
        fast = self._identity_pre and self._trim_at is None
        native = fast and self._native_tick and _native.enabled()
        if native and type(ids) is list and type(chunks) is list:
            # the usual tick: the ids' checks and slots, the chunks' checks and writes in one native call
            lay = self.layout
            res = self._checked_ring().push_ids(chunks, ids, self._slot_of, head=lay.head, s0=lay.s0, hop=lay.hop, tail_keep=self._tail_keep,
                                                check_finite=self.check_finite)
            if type(res) is list:
                return self._refused(ids, chunks, res, {}) if res else {}
            if res == _native.IDS_DUPLICATE:
                raise ParameterError(_DUPLICATE_IDS)
            # (IDS_IN_PYTHON: an id that is not an int or not open, nothing written: the checks below)
        try:
            distinct = len(set(ids)) == len(ids)
        except TypeError:
            raise ParameterError(f"push_many() takes stream ids (the ints open() returns), got {[type(i).__name__ for i in ids]}") from None
        if not distinct:
            raise ParameterError(_DUPLICATE_IDS)
        errors: Dict[int, ParameterError] = {}
        if native:
            return self._push_many_native(ids, chunks, errors)
        dt = np.dtype(self.np_dtype)
        sizes: List[int] = []
        if fast and chunks:
            # 1-D numpy chunks of the pool's dtype (attribute reads mapped in C: a few us for 256 chunks)
            fast = set(map(type, chunks)) == _NDARRAY and set(map(_DTYPE_OF, chunks)) == {dt} and set(map(_NDIM_OF, chunks)) == _ONE
            if fast:
                sizes = list(map(_SIZE_OF, chunks))
        if not fast:
            for sid, c in zip(ids, chunks):
                try:
                    self.push(sid, c)
                except ParameterError as e:
                    errors[sid] = e
            return errors
        sts = list(map(self._streams.get, ids))
        if None in sts:  # (_Stream compares by identity)
            keep = []
            for i, st in enumerate(sts):
                if st is None:
                    errors[ids[i]] = ParameterError(f"stream {ids[i]!r} is not open in this pool (open() returns the ids; a closed stream's id is gone)")
                else:
                    keep.append(i)
            ids, chunks, sts, sizes = [ids[i] for i in keep], [chunks[i] for i in keep], [sts[i] for i in keep], [sizes[i] for i in keep]
        if not sts:
            return errors
        m = np.array(sizes, dtype=np.int64)
        slots = np.array(list(map(_SLOT_OF, sts)), dtype=np.int64)
        ok = m > 0
        native_write = _native.available()  # the writes in one native call (any route: it is a copy)
        x = (np.concatenate(chunks) if len(chunks) > 1 else chunks[0]) if (self.check_finite or native_write) else None
        if self.check_finite and x is not None and x.size and not _finite_1d(x):
            nonfinite = np.concatenate([[0], np.cumsum(~np.isfinite(x))])
            ends = np.cumsum(m)
            bad = nonfinite[ends] - nonfinite[ends - m]
            for i in np.flatnonzero((bad > 0) & ok):  # (not ``bad & ok``: bitwise, an even count of NaNs & True is 0)
                errors[ids[i]] = ParameterError("chunk is not finite everywhere (NaN or Inf samples); the stream was left unchanged")
            ok &= bad == 0
        lay, C = self.layout, self.capacity
        n, t = self._n[slots], self._t[slots]
        keep_from = np.where(t < lay.head, 0, np.maximum(0, np.minimum(lay.s0 + t * lay.hop, n - self._tail_keep)))
        waiting = n + m - keep_from
        over = ok & (waiting > C - lay.L)
        if over.any():
            for i in np.flatnonzero(over):
                errors[ids[i]] = self._over_backlog(ids[i], int(waiting[i]))
            ok &= ~over
        if native_write:
            starts = np.cumsum(m) - m
            if ok.all():  # (the usual tick: no empty, refused or over-backlog chunk)
                _native.ring_write(self._ring, slots, n, x, starts, m, C=C, L=lay.L)
                self._n[slots] = n + m
            else:
                _native.ring_write(self._ring, slots[ok], n[ok], x, starts[ok], m[ok], C=C, L=lay.L)
                self._n[slots[ok]] = (n + m)[ok]
            return errors
        # a chunk that neither wraps around its ring row nor touches the row's mirrored head
        # (all but about one in C / chunk): one slice assignment; the others through _write
        p = n % C
        simple = (p >= lay.L) & (p + m <= C)
        ring = self._ring
        for i, s, q, k, easy in zip(np.flatnonzero(ok).tolist(), slots[ok].tolist(), p[ok].tolist(), m[ok].tolist(), simple[ok].tolist()):
            if easy:
                ring[s, q : q + k] = chunks[i]
            else:
                self._write(s, int(n[i]), chunks[i])
        self._n[slots[ok]] = (n + m)[ok]
        return errors

    def _push_many_native(self, ids: List[int], chunks: List[Array], errors: Dict[int, ParameterError]) -> Dict[int, ParameterError]:
        """push_many in one native call with the slots looked up here (:func:`supermel._native.pool_push`;
        the usual tick takes :func:`supermel._native.pool_push_ids`, the ids looked up in C++): each 1-D
        contiguous numpy chunk of the pool's dtype checked (finite, backlog) and written into its ring
        row straight from its buffer; the refused ones reported as :meth:`push` raises, the other chunks
        (tensors, other dtypes or layouts) pushed one by one."""
        lay = self.layout
        chunks = chunks if type(chunks) is list else list(chunks)
        slots = list(map(self._slot_of.get, ids))
        refused = self._checked_ring().push(chunks, slots, head=lay.head, s0=lay.s0, hop=lay.hop, tail_keep=self._tail_keep, check_finite=self.check_finite)
        return self._refused(ids, chunks, refused, errors)

    def _refused(self, ids: List[int], chunks: List[Array], refused: list, errors: Dict[int, ParameterError]) -> Dict[int, ParameterError]:
        """The chunks the native push did not take (``[(index, code, waiting)]``) into ``errors``: the
        refused ones reported as :meth:`push` raises, the others (tensors, other dtypes or layouts)
        pushed one by one."""
        for i, code, waiting in refused:
            sid = ids[i]
            if code == _native.PUSH_UNKNOWN:
                errors[sid] = ParameterError(f"stream {sid!r} is not open in this pool (open() returns the ids; a closed stream's id is gone)")
            elif code == _native.PUSH_NOT_FINITE:
                errors[sid] = ParameterError("chunk is not finite everywhere (NaN or Inf samples); the stream was left unchanged")
            elif code == _native.PUSH_OVER_BACKLOG:
                errors[sid] = self._over_backlog(sid, waiting)
            else:
                try:
                    self.push(sid, chunks[i])
                except ParameterError as e:
                    errors[sid] = e
        return errors

    def _checked_ring(self) -> "_native.PoolRing":
        """The ring and per-slot counters for the native calls, checked once per set of arrays
        (:meth:`open` and :meth:`_shrink` replace them)."""
        pr = self._pool_ring
        if pr is None or not pr.holds(self._ring, self._n, self._t, self._em):
            pr = self._pool_ring = _native.PoolRing(self._ring, self._n, self._t, self._em, C=self.capacity, L=self.layout.L)
        return pr

    def _as_samples(self, chunk: Array) -> np.ndarray:
        chunk, _ = check_chunk(chunk, num_streams=None, check_finite=self.check_finite)
        x = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else chunk
        return np.ascontiguousarray(x, dtype=self.np_dtype)

    def _over_backlog(self, sid: int, waiting: int) -> ParameterError:
        return ParameterError(
            f"stream {sid}: {waiting} samples would wait to be computed, over the backlog "
            f"limit ({self.capacity - self.layout.L} samples); call step() more often, or raise max_backlog_seconds"
        )

    def _pre(self, st: _Stream, n: int, x: np.ndarray) -> np.ndarray:
        fe = self.frontend
        if not fe.stream_pre_on_chunks:
            return x
        k = fe.pre_context
        if fe.pre_accepts_numpy:
            out = fe.pre(x[None], st.prev if (k and n) else None)
            out = np.asarray(out)[0]
        else:
            out = fe.pre(torch.from_numpy(x)[None], torch.from_numpy(st.prev) if (k and n) else None)[0].numpy()
        if k:
            st.prev = np.concatenate([st.prev, x[None]], axis=-1)[:, -k:].copy()
        return np.ascontiguousarray(out, dtype=self.np_dtype)

    def _write(self, slot: int, at: int, y: np.ndarray) -> None:
        """Samples ``at ..`` of a stream into its ring row (``m <= C``), keeping the mirror."""
        C, m, L = self.capacity, y.shape[0], self.layout.L
        row = self._ring[slot]
        p = at % C
        e = p + m
        if e <= C:
            row[p:e] = y
        else:
            row[p:C] = y[: C - p]
            row[: e - C] = y[C - p :]
        if p < L or e > C:  # the head of the row changed: its mirror too
            row[C:] = row[:L]

    def _read(self, slot: int, a: int, b: int) -> np.ndarray:
        """Samples ``a .. b-1`` of a stream (``b - a <= C``): a view, or a copy where they wrap around."""
        C, L = self.capacity, self.layout.L
        p, k = a % C, b - a
        row = self._ring[slot]
        if p + k <= C + L:
            return row[p : p + k]
        return np.concatenate([row[p:C], row[: k - (C - p)]])

    # ------------------------------------------------------------------ compute
    @_locked
    def step(self) -> PoolStep:
        """Compute the complete frames of every stream in one batched computation.

        Returns a :class:`PoolStep`, the mapping ``{stream id: PoolFrames}`` of the
        streams that got frames (or Wav2Lip windows); at most
        ``max_frames_per_step`` frames in all, the streams served in rotation.

        Returns
        -------
        PoolStep
            ``{stream id: PoolFrames(start, frames, ...)}``, frames ``(n_mels, k)`` (the preset's layout).

        Examples
        --------
        >>> import numpy as np, supermel
        >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> a, b = pool.open(), pool.open()
        >>> pool.push(a, np.zeros(1000, np.float32)); pool.push(b, np.zeros(1400, np.float32))
        >>> {sid: f.frames.shape[-1] for sid, f in pool.step().items()}
        {0: 4, 1: 6}
        """
        lay = self.layout
        time_major = self.time_axis == -2
        if not self._streams:
            return PoolStep(time_major=time_major)
        if self._order is None:
            self._order = (np.fromiter(self._streams, dtype=np.int64, count=len(self._streams)),
                           np.fromiter([st.slot for st in self._streams.values()], dtype=np.int64, count=len(self._streams)))
        if self._native_plan is not None and self._native_tick and _native.enabled():
            return self._step_native(time_major)
        ids, slots = self._order
        r = self._rotation % len(ids)
        self._rotation += 1
        if r:
            ids, slots = np.concatenate([ids[r:], ids[:r]]), np.concatenate([slots[r:], slots[:r]])
        n, t = self._n[slots], self._t[slots]
        want = np.maximum(lay.ready(n) - t, 0)
        cum = np.cumsum(want)
        take = np.minimum(want, np.maximum(0, self.max_frames_per_step - (cum - want)))
        K = int(cum[-1]) if cum[-1] <= self.max_frames_per_step else int(take.sum())
        if not K:
            return PoolStep(time_major=time_major)
        # each stream's frames are contiguous rows of the step's matrix, in rotation order:
        # its head frames (reading the left padding, built per stream), then its steady ones
        off = np.cumsum(take) - take
        heads = np.flatnonzero((t < lay.head) & (take > 0)) if lay.head else ()
        k_head = np.zeros_like(take)
        head_parts: List[Tuple[int, torch.Tensor]] = []
        for i in heads:
            k_head[i] = min(take[i], lay.head - t[i])
            y = torch.from_numpy(self._read(int(slots[i]), 0, int(n[i])).copy())[None]
            head_parts.append((i, lay.edge_frames(y, 0, int(n[i]), int(t[i]), int(t[i] + k_head[i]), final=False)[0]))
        ks = take - k_head if len(head_parts) else take
        K_steady = K - int(k_head.sum()) if len(head_parts) else K
        src_slot = src_start = dest = None
        if K_steady:
            rep = np.repeat(np.arange(len(ks)), ks)
            within = np.arange(K_steady) - np.repeat(np.cumsum(ks) - ks, ks)
            src_start = (((t + k_head) * lay.hop + lay.s0)[rep] + within * lay.hop) % self.capacity
            src_slot = slots[rep]
            if len(head_parts):
                dest = (off + k_head)[rep] + within  # ascending
            if self._view is None:
                self._view = np.lib.stride_tricks.sliding_window_view(self._ring, lay.L, axis=1)
        view = self._view

        def fill(a: int, k: int, out: np.ndarray) -> None:
            """Rows ``a .. a+k-1`` of the step's frame matrix into ``out[:k]``."""
            if src_slot is not None:
                if dest is None:
                    out[:k] = view[src_slot[a : a + k], src_start[a : a + k]]
                else:
                    lo, hi = np.searchsorted(dest, [a, a + k])
                    out[dest[lo:hi] - a] = view[src_slot[lo:hi], src_start[lo:hi]]
            for i, f in head_parts:
                r0, r1 = max(int(off[i]), a), min(int(off[i]) + f.shape[0], a + k)
                if r0 < r1:
                    out[r0 - a : r1 - a] = f[r0 - int(off[i]) : r1 - int(off[i])].numpy()

        if self._native_plan is not None and _native.enabled():
            feats = self._native_features(K, src_slot, src_start, dest, head_parts, off)
        else:
            feats = self._compute(fill, K)
        if self.device.type == "cpu":
            feats = feats.numpy()  # per-stream entries are numpy views (a fraction of a torch call each)
        feats = feats[0]
        active = np.flatnonzero(take) if K < take.size or not take.all() else slice(None)
        a_ids, a_slots, a_take, a_off = ids[active], slots[active], take[active], off[active]
        self._t[a_slots] += a_take
        if self._drop_last or self._stateful:
            # per-stream output state: entries made now, stream by stream
            eager: Dict[int, PoolFrames] = {}
            for sid, a, k in zip(a_ids.tolist(), a_off.tolist(), a_take.tolist()):
                res = self._emit(sid, self._streams[sid], self._narrow(feats, a, k), final=False)
                if res is not None:
                    eager[sid] = res
            return PoolStep(time_major=time_major, eager=eager)
        starts_l = self._em[a_slots]
        self._em[a_slots] = starts_l + a_take
        return PoolStep(feats, a_ids.tolist(), starts_l.tolist(), a_off.tolist(), a_take.tolist(), time_major=time_major)

    def _step_native(self, time_major: bool) -> PoolStep:
        """The step on the native route: which frames of which stream and, when no new stream needs
        head frames, the steady frames gathered from the rings and computed, in one call
        (:func:`supermel._native.pool_step`: :func:`supermel._native.pool_due` then
        :func:`supermel._native.pool_gather`, the kernel of the Python bookkeeping's route, the same
        values); else the head frames of new streams (their left padding, built per stream as in
        :meth:`close`), then the gather. The result holds the block and the per-stream table, its
        entries made when read."""
        lay, plan, dt, odt = self.layout, self._native_plan, self.np_dtype, self._native_out
        ids, slots = self._order  # type: ignore[misc]
        m = ids.shape[0]
        r = self._rotation % m
        self._rotation += 1
        table = np.empty((_native.POOL_ROWS, m), dtype=np.int64)
        pr = self._checked_ring()
        eager = bool(self._drop_last or self._stateful)
        # the due frames and, when no stream gets head frames, their gather and compute: one native call
        active, K, heads, out = pr.step(plan, ids, slots, r, table, max_frames=self.max_frames_per_step, s0=lay.s0, hop=lay.hop, ctx=lay.ctx,
                                        head=lay.head, advance_em=not eager, out_dtype=self._native_odt, threads=torch.get_num_threads())
        if not K:
            return PoolStep(time_major=time_major)
        if heads:  # new streams' first frames (reading the left padding): built per stream
            cols = out[0].T  # (K, n_out): frame k's values go to column k
            for a in np.flatnonzero(table[_native.POOL_HEAD, :active]).tolist():
                s, t0, kh, o = (int(v) for v in table[[_native.POOL_SLOT, _native.POOL_T0, _native.POOL_HEAD, _native.POOL_OFF], a])
                n = int(self._n[s])
                y = torch.from_numpy(self._read(s, 0, n).copy())[None]
                f = lay.edge_frames(y, 0, n, t0, t0 + kh, final=False)[0].numpy()
                _native.run_gather(plan, f, np.arange(kh), np.zeros(kh, np.int64), out=cols[o : o + kh], dtype=dt, out_dtype=odt)
            pr.gather(plan, table, active, cols, advance_em=not eager, hop=lay.hop, s0=lay.s0, threads=torch.get_num_threads())
        feats = out[0] if self._post_identity else self.frontend.post_local(torch.from_numpy(out)).numpy()[0]
        tab = table[:, :active]
        if eager:  # per-stream output state: entries made now, stream by stream (as the Python bookkeeping does)
            done: Dict[int, PoolFrames] = {}
            for sid, a, k in zip(tab[_native.POOL_ID].tolist(), tab[_native.POOL_OFF].tolist(), tab[_native.POOL_TAKE].tolist()):
                res = self._emit(sid, self._streams[sid], self._narrow(feats, a, k), final=False)
                if res is not None:
                    done[sid] = res
            return PoolStep(time_major=time_major, eager=done)
        return PoolStep(feats, tab[_native.POOL_ID], tab[_native.POOL_EM], tab[_native.POOL_OFF], tab[_native.POOL_TAKE], time_major=time_major)

    def _native_features(self, K: int, src_slot: Any, src_start: Any, dest: Any, head_parts: List[Tuple[int, torch.Tensor]], off: np.ndarray) -> torch.Tensor:
        """The step's ``K`` frames through the native core, ``(1, rows, K)`` after the front end's
        frame-local post-step: the steady frames gathered from the rings by (slot, start) in one
        call, written into their columns; the head frames (left padding, built per stream) after."""
        plan, dt, odt = self._native_plan, self.np_dtype, self._native_out
        out = np.empty((1, plan.n_out, K), dtype=odt)
        cols = out[0].T  # (K, n_mels): frame k's values go to column k
        if src_slot is not None:
            if dest is None:
                _native.run_gather(plan, self._ring, src_slot, src_start, out=cols, dtype=dt, out_dtype=odt, threads=torch.get_num_threads())
            else:
                cols[dest] = _native.run_gather(plan, self._ring, src_slot, src_start, dtype=dt, out_dtype=odt, threads=torch.get_num_threads())
        for i, f in head_parts:
            k = f.shape[0]
            a = int(off[i])
            _native.run_gather(plan, f.numpy(), np.arange(k), np.zeros(k, np.int64), out=cols[a : a + k], dtype=dt, out_dtype=odt)
        return self.frontend.post_local(torch.from_numpy(out))

    def _staging(self, K: int) -> np.ndarray:
        """``(>= K, L)`` frames buffer (pinned host memory for a GPU)."""
        L = self.layout.L
        if self.device.type == "cuda":
            if self._copied is not None:  # the previous step's copy may still be reading the staging buffer
                self._copied.synchronize()
                self._copied = None
            if self._pinned is None or self._pinned.shape[0] < K:
                self._pinned = torch.empty((max(K, 256), L), dtype=self.dtype, pin_memory=True)
            return self._pinned[:K].numpy()
        if self._frames.shape[0] < K:
            self._frames = np.empty((max(K, 2 * self._frames.shape[0]), L), dtype=self.np_dtype)
        return self._frames

    def _compute(self, fill: Any, K: int) -> Array:
        """The step's ``K`` raw frames -> post-processed features ``(1, rows, K)`` (or time-major).

        ``fill(a, k, out)`` writes frames ``a .. a+k-1`` (``(k, L)``) into ``out[:k]``: on the
        numpy executor block by block, straight into each block's workspace; otherwise
        into one staging buffer (pinned memory for a GPU)."""
        fe = self.frontend
        if self.numpy:
            return fe.post_local(torch.from_numpy(self._mel_blocks(fill, K)))
        frames = self._staging(K)
        fill(0, K, frames)
        x = torch.from_numpy(frames[:K])
        if self.device.type != "cpu":
            x = self._to_device(x)  # the step's one host-to-device copy
        with _precision():
            mel = fe.frames_mel(x[None]) if self.layout.kaldi else _core.mel_dense(x[None], inplace=True, **self._dense)
        return fe.post_local(mel)

    def _mel_blocks(self, fill: Any, K: int) -> np.ndarray:
        """The numpy executor's mel of the step's ``K`` frames, ``(1, n_mels, K)``, in blocks that stay in the CPU's cache.

        Each block of at most ``self._block`` frames (about 0.5 MiB of samples) is gathered
        into its workspace and runs every kernel while its data is in the L2 cache; the
        last block is rounded up to a multiple of ``_BUCKET`` frames (rows past ``K`` hold
        stale finite frames, computed and dropped). Each block size has its
        :class:`supermel._core.Workspace` (at most ``self._block / _BUCKET`` of them). One
        AMD EPYC core, 256 streams x 20 ms of 800-point frames (409 frames) a tick, the
        other peers of ``supermel bench --only serving`` in between: 2.05 ms a tick in
        blocks of about 160 frames against 2.8 ms gathered into one (K, L) matrix first.
        """
        parts = []
        L = self.layout.L
        for a in range(0, K, self._block):
            k = min(self._block, K - a)
            b = -(-k // _BUCKET) * _BUCKET
            ws = self._ws.get(b)
            if ws is None:
                ws = self._ws[b] = _workspace(self._mel_kw, (1, b), n_mels=self.frontend.core.n_mels, dtype=self.dtype, device=torch.device("cpu"), numpy=True)
                if ws.x is None:  # the matrix-product DFT route: frames in a buffer of their own
                    ws.frames = np.zeros((1, b, L), dtype=self.np_dtype)
            x = ws.x if ws.x is not None else ws.frames  # windowed in place (mul's out is ws.x)
            fill(a, k, x[0])
            mel = _core.mel_dense(x, ws=ws, **self._dense)
            parts.append(mel[..., :k] if k < b else mel)
        return parts[0] if len(parts) == 1 and parts[0].flags.c_contiguous else np.concatenate(parts, axis=-1)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Copy staged frames to the device without waiting; the next step waits for the copy
        before it refills the pinned staging buffer."""
        out = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            self._copied = torch.cuda.Event()
            self._copied.record()
        return out

    def _cols(self, feats: Array, a: int, k: int) -> Array:
        ta = self.time_axis
        return feats[0, a : a + k] if ta == -2 else feats[0, :, a : a + k]

    def _cat(self, cols: List[Array]) -> Array:
        if isinstance(cols[0], np.ndarray):
            return np.concatenate(cols, axis=self.time_axis)
        return torch.cat(cols, dim=self.time_axis)

    def _narrow(self, block: Array, a: int, k: int) -> Array:
        if self.time_axis == -2:
            return block[a : a + k]
        return block[:, a : a + k]

    def _emit(self, sid: int, st: _Stream, block: Array, *, final: bool) -> Optional[PoolFrames]:
        """Withhold what the offline front end drops (Whisper's last frame), convert, cut video windows."""
        ta = self.time_axis
        if self._drop_last or st.held:
            if st.held:
                block = self._cat(st.held + [block])
                st.held = []
            emitted = int(self._em[st.slot])
            if final:
                limit = self.frontend.num_frames(st.n_input) - emitted
            else:  # frames certainly kept however the stream ends
                limit = max(0, self.frontend.core.spectrogram.num_frames(int(self._n[st.slot])) - self._drop_last) - emitted
            k = int(block.shape[ta])
            cut = max(0, min(limit, k))
            if cut < k and not final:
                rest = self._narrow(block, cut, k - cut)
                st.held = [rest.copy() if isinstance(rest, np.ndarray) else rest.clone()]
            block = self._narrow(block, 0, cut)
        k = int(block.shape[ta])
        start = int(self._em[st.slot])
        self._em[st.slot] = start + k
        data: Array = block
        windows: Optional[np.ndarray] = None
        wstart = 0
        if st.chunker is not None:
            parts = []
            if k:
                parts.append(st.chunker.push(block if isinstance(block, np.ndarray) else block.detach().cpu().numpy()))
            if final and st.chunker.columns_received >= st.chunker.mel_step_size:
                parts.append(st.chunker.flush())
            parts = [p for p in parts if len(p)]
            if parts:
                windows = np.concatenate(parts, axis=0)
                wstart = st.chunker.window_count - len(windows)
        if not final and k == 0 and windows is None:
            return None
        return PoolFrames(start, data, wstart, windows)

    # ------------------------------------------------------------------ end
    @_locked
    def close(self, sid: int) -> PoolFrames:
        """End stream ``sid``: its remaining frames, with librosa's right-edge padding; the id is freed.

        Raises :class:`~supermel.ParameterError` when the stream received no samples
        (the offline call refuses empty audio too; the stream is closed anyway).

        When at most a quarter of the ring's rows stay in use, the ring shrinks (its memory is given back).

        Parameters
        ----------
        sid : int
            The stream to end.

        Returns
        -------
        PoolFrames
            Its last frames (those reaching into the right padding, and any not yet stepped).

        Examples
        --------
        >>> import numpy as np, supermel
        >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
        >>> sid = pool.open()
        >>> pool.push(sid, np.zeros(1000, np.float32))
        >>> pool.step()[sid].frames.shape[-1], pool.close(sid).frames.shape[-1]
        (4, 2)
        """
        try:
            return self._close(sid)
        finally:
            self._shrink()

    def _shrink(self) -> None:
        """Halve the ring (or more) when at most a quarter of its rows are in use and none above the half.

        The ring grows by doubling to the most streams open at once and would otherwise keep
        that size (a row is ~140 KB at 16 kHz with a 2 s backlog: 35 MB for 256 streams)
        after a burst of clients; new streams take the lowest free slot, so the rows in use
        gather at the bottom. Hysteresis: shrinking needs use <= 1/4, growing use > 1/1.
        """
        rows = self._ring.shape[0]
        if rows <= 4 or len(self._streams) > rows // 4:
            return
        top = max((st.slot for st in self._streams.values()), default=-1) + 1
        new = 4
        while new < 2 * top:
            new *= 2
        if new > rows // 2:
            return
        self._ring = self._ring[:new].copy()  # (the old buffer is freed: a large block, back to the system)
        self._n, self._t, self._em = (a[:new].copy() for a in (self._n, self._t, self._em))
        self._free = [s for s in self._free if s < new]
        heapq.heapify(self._free)
        self._view = None
        self._pool_ring = None  # (it holds the old ring: its memory goes back now)
        self._order = None

    def _close(self, sid: int) -> PoolFrames:
        st = self._get(sid)
        del self._streams[sid]
        del self._slot_of[sid]
        heapq.heappush(self._free, st.slot)
        self._stateful -= st.chunker is not None
        self._order = None
        fe, lay = self.frontend, self.layout
        n, t = int(self._n[st.slot]), int(self._t[st.slot])
        st.n_input = n
        tail = fe.stream_tail_samples(n)
        if tail:  # the waveform step at the end (Whisper: zero fill to 30 s, padding)
            if n + tail - self._keep_from(n, t) > self.capacity - lay.L:
                raise ParameterError(f"stream {sid}: the end padding does not fit the backlog; raise max_backlog_seconds")
            self._write(st.slot, n, np.zeros(tail, dtype=self.np_dtype))
            n += tail
            self._n[st.slot] = n
        if n == 0:
            raise ParameterError("close() of a stream with no input: the offline call refuses empty audio too")
        if not lay.kaldi and lay.pad == 0 and n < lay.L:
            raise ParameterError(
                f"n_fft={lay.L} is too large for uncentered analysis of input signal of length={n}; "
                "pass at least n_fft samples or use center=True"
            )
        total = lay.total(n)
        a = self._keep_from(n, t)
        if total > t:
            y = torch.from_numpy(self._read(st.slot, a, n).copy())[None]
            raw = lay.edge_frames(y, a, n, t, total, final=True)[0]
            raw_np = raw.numpy()

            def fill(a: int, k: int, out: np.ndarray) -> None:
                out[:k] = raw_np[a : a + k]

            if self._native_plan is not None and _native.enabled():
                feats = self._native_features(raw.shape[0], None, None, None, [(0, raw)], np.zeros(1, np.int64))
            else:
                feats = self._compute(fill, raw.shape[0])
            if self.device.type == "cpu":
                feats = feats.numpy()
            block = self._cols(feats, 0, raw.shape[0])
        else:
            block = self._empty()
        self._t[st.slot] = total
        return self._emit(sid, st, block, final=True)  # type: ignore[return-value]

    def _empty(self) -> Array:
        rows = self.frontend.mel_rows
        shape = (0, rows) if self.time_axis == -2 else (rows, 0)
        if self.device.type == "cpu":
            return np.zeros(shape, dtype=self.np_dtype)
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def finalize(self, frames: Array, n_samples: int) -> Array:
        """The whole-input step of a non-frame-local preset on one stream's concatenated frames.

        ``finalize(concatenate(all its frames), n_samples)`` equals the offline front
        end on that stream's audio (Whisper's floor at the maximum, NeMo's
        normalisation, ...). Frame-local presets: unchanged.

        Parameters
        ----------
        frames : array [shape=(n_mels, T)]
            All the stream's frames, concatenated along the time axis.
        n_samples : int
            The samples the stream received.

        Returns
        -------
        array
            The offline front end's output for that audio.

        Examples
        --------
        >>> import numpy as np, supermel
        >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
        >>> pool = supermel.StreamPool("whisper-80")
        >>> sid = pool.open(); pool.push(sid, y)
        >>> frames = np.concatenate([pool.step()[sid].frames, pool.close(sid).frames], axis=-1)
        >>> out = pool.finalize(frames, len(y))
        >>> bool(np.abs(out - supermel.frontend("whisper-80")(y)).max() < 2e-4)
        True
        """
        fe = self.frontend
        was_numpy = not isinstance(frames, torch.Tensor)
        x = torch.from_numpy(np.asarray(frames)) if was_numpy else frames
        x = x.to(device=self.device, dtype=self.dtype)
        if x.ndim != 2:
            raise ParameterError(f"finalize() takes one stream's frames (2-D), got shape {tuple(x.shape)}")
        want = fe.num_frames(int(n_samples))
        if x.shape[self.time_axis] != want:
            raise ParameterError(f"finalize() got {x.shape[self.time_axis]} frames, but {n_samples} samples give {want}: pass every frame of the stream")
        out = fe.finalize_frames(x[None], [int(n_samples)])[0]
        return out.detach().cpu().numpy() if was_numpy else out


def _precision() -> Any:
    """Full float32 matrix products whatever torch's TF32 setting."""
    return _core.full_fp32_matmuls


def supermel_frontend_copy(fe: Frontend, dtype: torch.dtype) -> Frontend:
    """The same front end built for another dtype (its constants rebuilt)."""
    return frontend(fe.config, dtype=dtype, device=fe.core.spectrogram.window.device, check_finite=False)
