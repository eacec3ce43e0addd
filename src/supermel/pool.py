"""Many independent live streams, one batched computation per step: :class:`StreamPool`.

Real clients join and leave at any moment, and their chunks arrive out of step
and in different sizes. A :class:`~supermel.StreamingMelSpectrogram` with
``num_streams=S`` batches streams only while they advance in lockstep; a pool
takes each stream's chunks whenever they come (:meth:`StreamPool.push`) and,
at each :meth:`StreamPool.step`, gathers the complete frames of **every**
stream into one ``(K, frame_length)`` matrix and computes them in one call of
the core's kernels (:func:`supermel._core.mel_dense`, or the Kaldi front ends'
``frames_mel``), then hands each stream its frames.

How the frames are gathered
---------------------------
Each stream's samples (after the front end's waveform step, e.g. pre-emphasis)
live in one row of a ring buffer kept twice over (``ring[s, i % C]`` and
``ring[s, i % C + C]``), so that any frame is a contiguous row of a strided view
and the frames of all streams are one fancy-indexed copy. The frames that reach
into the left padding (the first few of a stream with ``center=True``) and the
last ones, which reach into the right padding at :meth:`StreamPool.close`, are
built per stream with the same padding code as the offline call
(:mod:`supermel._core`, Kaldi's framing for the Kaldi presets).

What the frames equal
---------------------
Every stream's frames equal the offline call on that stream's audio
(``supermel.melspectrogram`` or ``supermel.frontend(name)``) to float32
rounding, with the bounds of ``docs/exactness.md`` (the stacked product rounds
like the streaming steady state): the same frames, center padding at both edges
included, whatever the chunking and the mix of streams in a step. Non-frame-local
presets (Whisper, NeMo, AST, SeamlessM4T, FunASR) give their ``post_local``
frames; :meth:`StreamPool.finalize` applies the whole-input step.

On a GPU (``device="cuda"``) the frames are gathered in pinned host memory,
copied to the device once per step, and the features stay on the device for
the model; the same code path runs on the CPU with ``executor="torch"``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch

from . import _core
from ._errors import ParameterError
from .presets import Frontend, KaldiFbank, MelConfig, Wav2LipChunker, frontend
from .presets import kaldi as _kaldi
from .streaming import _dense_kw, _workspace, check_chunk

__all__ = ["StreamPool", "PoolFrames"]

Array = Union[np.ndarray, torch.Tensor]

_CORE_KEYS = ("sr", "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power", "n_mels", "fmin", "fmax", "htk", "norm")


class PoolFrames(NamedTuple):
    """One stream's output of a step (or of :meth:`StreamPool.close`).

    ``start`` is the stream's index of the first frame in ``frames`` (frames in the
    front end's layout: ``(n_mels, k)``, or ``(k, n_mels)`` time-major). With a
    Wav2Lip ``fps``, ``windows`` holds the video frames' 16-column windows that
    became complete ``(w, n_mels, 16)`` and ``window_start`` the first one's index.
    """

    start: int
    frames: Array
    window_start: int = 0
    windows: Optional[Array] = None


@dataclass
class _Stream:
    slot: int
    n: int = 0  # samples received (after the waveform step and any trim)
    t: int = 0  # frames computed
    emitted: int = 0  # frames handed out (t, less the frames withheld for drop_last)
    n_input: int = 0  # samples received before the end padding (close)
    prev: Optional[np.ndarray] = None  # the waveform step's context (pre-emphasis: the last sample)
    chunker: Optional[Wav2LipChunker] = None
    held: List[Array] = field(default_factory=list)  # computed frames withheld (drop_last)


class _Layout:
    """The frame rule of the pool's front end: frame ``t`` reads samples ``[s0 + t hop, s0 + t hop + L)``."""

    def __init__(self, fe: Frontend) -> None:
        self.kaldi = isinstance(fe, KaldiFbank)
        if self.kaldi:
            w, h, _ = fe.config.sizes
            self.kw = dict(window_size=w, window_shift=h, snip_edges=bool(fe.config.snip_edges))
            self.L, self.hop = w, h
            self.s0 = _kaldi.first_sample_of_frame(0, **self.kw)  # type: ignore[arg-type]
            self.ctx = 0
        else:
            spec = fe.core.spectrogram
            self.L, self.hop, self.pad, self.mode = spec.n_fft, spec.hop_length, spec.pad, spec.pad_mode
            self.s0 = -self.pad
            self.ctx = _core.left_context(self.pad, self.mode)
        # frames before this one read samples before 0 (padding / Kaldi's reflection)
        self.head = 0 if self.s0 >= 0 else -(-(-self.s0) // self.hop)

    def start(self, t: int) -> int:
        return self.s0 + t * self.hop

    def ready(self, n: np.ndarray) -> np.ndarray:
        """Frames determined by ``n`` received samples (the end unknown), vectorised."""
        r = (n - self.L - self.s0) // self.hop + 1
        r = np.maximum(r, 0)
        return np.where(n < self.ctx, 0, r)

    def total(self, n: int) -> int:
        if self.kaldi:
            return _kaldi.num_frames(n, **self.kw)  # type: ignore[arg-type]
        return _core.num_frames(n, n_fft=self.L, hop_length=self.hop, pad=self.pad)

    def edge_frames(self, y: torch.Tensor, a: int, n: int, t0: int, t1: int, *, final: bool) -> torch.Tensor:
        """Raw frames ``t0 .. t1-1`` ``(1, k, L)`` from samples ``y`` ``(1, m)`` starting at index ``a``.

        For frames that read padding: the head (``final=False``: the first frames) or
        the end of a stream of ``n`` samples (``final=True``), as the offline call pads.
        """
        if self.kaldi:
            return _kaldi.extract_frame_range(y, seg_start=a, n_samples=n, t0=t0, t1=t1, **self.kw)  # type: ignore[arg-type]
        L, hop, pad, mode = self.L, self.hop, self.pad, self.mode
        if final and a == 0 and self.start(t0) < 0:
            # nothing dropped yet: pad the whole input exactly as offline
            z = _core.pad_signal(y, pad=pad, mode=mode, n_fft=L, hop_length=hop)
            return z.unfold(-1, L, hop)[:, t0:t1]
        lo = self.start(t0)
        parts = []
        if lo < 0:
            parts.append(_core.pad_left(y, pad, mode)[:, pad + lo :])
            lo = 0
        hi = self.start(t1 - 1) + L
        parts.append(y[:, lo - a : min(hi, n) - a])
        if final and hi > n:
            start = _core.tail_start(n, n_fft=L, hop_length=hop, pad=pad)
            if start is None or pad == 0:
                parts.append(y.new_zeros((1, hi - n)))
            else:
                parts.append(_core.pad_right(y[:, max(start - a, 0) :], pad, mode)[:, : hi - n])
        seg = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return seg.unfold(-1, L, hop)[:, : t1 - t0]


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

    Examples
    --------
    >>> import numpy as np, supermel
    >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> a, b = pool.open(), pool.open()
    >>> pool.push(a, np.zeros(1000, np.float32)); pool.push(b, np.zeros(300, np.float32))
    >>> out = pool.step()                    # {stream id: PoolFrames(start, frames, ...)}
    >>> out[a].frames.shape, b in out
    ((80, 5), False)
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
                raise ParameterError(f"unknown keyword(s) {unknown}; the core's are {list(_CORE_KEYS)}")
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
        # ring row: the backlog, plus a frame and a hop (kept twice over, see the module notes)
        self.capacity = -(-(backlog + 2 * self.layout.L + 2 * self.layout.hop) // 1024) * 1024
        self.numpy = self.device.type == "cpu" and not self.layout.kaldi and executor in ("auto", "numpy")
        mel_kw = fe.core.mel_function(self.dtype).keywords
        self._mel_kw = mel_kw
        self._dense = _dense_kw(mel_kw, numpy=self.numpy)
        self._ws: Dict[int, Any] = {}
        self._trim_at = fe.stream_trim_at()
        # the waveform step is the identity for the core and most presets: skip its call per push
        self._identity_pre = (not fe.stream_pre_on_chunks) or (type(fe).pre is Frontend.pre and fe.pre_context == 0)
        self._drop_last = int(fe.drop_last)
        self._ring = np.zeros((0, 2 * self.capacity), dtype=self.np_dtype)
        self._free: List[int] = []
        self._streams: Dict[int, _Stream] = {}
        self._ids = itertools.count()
        self._rotation = 0
        self._pinned: Optional[torch.Tensor] = None
        self._copied: Any = None  # CUDA event: the last step's host-to-device copy out of _pinned

    # ------------------------------------------------------------------ streams
    def open(self, *, fps: Optional[float] = None) -> int:
        """Start a stream; return its id. ``fps``: also return Wav2Lip's per-video-frame windows at this rate."""
        if fps is not None and not (self.frontend.config.name.startswith("wav2lip")):
            raise ParameterError(f"fps={fps!r}: video-frame windows are Wav2Lip's; this pool computes {self.frontend.config.name or 'the core mel'}")
        chunker = Wav2LipChunker(fps, mel_fps=self.sr / self.hop_length) if fps is not None else None
        if self._free:
            slot = self._free.pop()
            self._ring[slot] = 0.0
        else:
            slot = self._ring.shape[0]
            grown = np.zeros((max(4, 2 * slot), self._ring.shape[1]), dtype=self.np_dtype)
            grown[:slot] = self._ring
            self._free.extend(range(grown.shape[0] - 1, slot, -1))
            self._ring = grown
        sid = next(self._ids)
        k = max(1, self.frontend.pre_context)
        self._streams[sid] = _Stream(slot=slot, prev=np.zeros((1, k), dtype=self.np_dtype), chunker=chunker)
        return sid

    def _get(self, sid: int) -> _Stream:
        st = self._streams.get(sid) if isinstance(sid, (int, np.integer)) else None
        if st is None:
            raise ParameterError(f"stream {sid!r} is not open in this pool (open() returns the ids; a closed stream's id is gone)")
        return st

    @property
    def streams(self) -> List[int]:
        """The ids of the open streams."""
        return list(self._streams)

    def __len__(self) -> int:
        return len(self._streams)

    def samples_received(self, sid: int) -> int:
        return self._get(sid).n

    def frame_count(self, sid: int) -> int:
        """Frames handed out to stream ``sid`` so far."""
        return self._get(sid).emitted

    def pending_frames(self, sid: int) -> int:
        """Frames of stream ``sid`` that the next steps will compute (complete, not yet computed)."""
        st = self._get(sid)
        return int(self.layout.ready(np.asarray([st.n]))[0]) - st.t

    def _keep_from(self, st: _Stream) -> int:
        lay = self.layout
        if st.t < lay.head:
            return 0
        tail_keep = 0 if lay.kaldi else (lay.pad + 1)
        return max(0, min(lay.start(st.t), st.n - max(tail_keep, lay.L)))

    # ------------------------------------------------------------------ input
    def push(self, sid: int, chunk: Array) -> None:
        """Add samples to stream ``sid`` (any size, 0 included). Nothing is computed until :meth:`step`.

        A refused chunk (NaN/Inf, not floating point, not 1-D, over the backlog)
        raises :class:`~supermel.ParameterError` and leaves that stream, and every
        other, unchanged.
        """
        st = self._get(sid)
        if type(chunk) is np.ndarray and chunk.dtype == self.np_dtype and chunk.ndim == 1:
            x = chunk  # the common case: the checks of check_chunk, without its conversions
            if self.check_finite and x.size and not _core.all_finite_np(np.ascontiguousarray(x)):
                raise ParameterError("chunk is not finite everywhere (NaN or Inf samples); the stream was left unchanged")
        else:
            chunk, _ = check_chunk(chunk, num_streams=None, check_finite=self.check_finite)
            x = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else chunk
            x = np.ascontiguousarray(x, dtype=self.np_dtype)
        if self._trim_at is not None:
            x = x[: max(0, self._trim_at - st.n)]
        m = x.shape[0]
        if m == 0:
            return
        if st.n + m - self._keep_from(st) > self.capacity - self.layout.L:
            raise ParameterError(
                f"stream {sid}: {st.n + m - self._keep_from(st)} samples would wait to be computed, over the backlog "
                f"limit ({self.capacity - self.layout.L} samples); call step() more often, or raise max_backlog_seconds"
            )
        y = x if self._identity_pre else self._pre(st, x)
        self._write(st.slot, st.n, y)
        st.n += m

    def _pre(self, st: _Stream, x: np.ndarray) -> np.ndarray:
        fe = self.frontend
        if not fe.stream_pre_on_chunks:
            return x
        k = fe.pre_context
        if fe.pre_accepts_numpy:
            out = fe.pre(x[None], st.prev if (k and st.n) else None)
            out = np.asarray(out)[0]
        else:
            out = fe.pre(torch.from_numpy(x)[None], torch.from_numpy(st.prev) if (k and st.n) else None)[0].numpy()
        if k:
            st.prev = np.concatenate([st.prev, x[None]], axis=-1)[:, -k:].copy()
        return np.ascontiguousarray(out, dtype=self.np_dtype)

    def _write(self, slot: int, at: int, y: np.ndarray) -> None:
        C, m = self.capacity, y.shape[0]
        row = self._ring[slot]
        p = at % C
        first = min(m, C - p)
        for base in (0, C):
            row[base + p : base + p + first] = y[:first]
            if first < m:
                row[base : base + m - first] = y[first:]

    def _read(self, slot: int, a: int, b: int) -> np.ndarray:
        """Samples ``a .. b-1`` of a stream (``b - a <= C``)."""
        p = a % self.capacity
        return self._ring[slot, p : p + (b - a)]

    # ------------------------------------------------------------------ compute
    def step(self) -> Dict[int, PoolFrames]:
        """Compute the complete frames of every stream in one batched computation.

        Returns ``{stream id: PoolFrames}`` for the streams that got frames (or
        Wav2Lip windows); at most ``max_frames_per_step`` frames in all.
        """
        lay = self.layout
        sids = list(self._streams)
        if not sids:
            return {}
        r = self._rotation % len(sids)
        sids = sids[r:] + sids[:r]
        self._rotation += 1
        sts = [self._streams[s] for s in sids]
        n = np.fromiter((s.n for s in sts), dtype=np.int64, count=len(sts))
        t = np.fromiter((s.t for s in sts), dtype=np.int64, count=len(sts))
        want = np.maximum(lay.ready(n) - t, 0)
        budget = self.max_frames_per_step
        cum = np.cumsum(want)
        take = np.where(cum <= budget, want, np.maximum(0, budget - (cum - want)))
        take = np.minimum(take, want)
        if not take.any():
            return {}
        # head frames (reading the left padding), per stream; then the rest, gathered at once
        head_parts: List[Tuple[int, torch.Tensor]] = []
        steady_t0 = t.copy()
        for i in np.flatnonzero((t < lay.head) & (take > 0)):
            st, k_head = sts[i], int(min(take[i], lay.head - t[i]))
            y = torch.from_numpy(self._read(st.slot, 0, int(n[i])).copy())[None]
            head_parts.append((i, lay.edge_frames(y, 0, int(n[i]), int(t[i]), int(t[i]) + k_head, final=False)[0]))
            steady_t0[i] += k_head
        ks = np.maximum(t + take - steady_t0, 0)
        K_steady = int(ks.sum())
        K_head = sum(int(f.shape[0]) for _, f in head_parts)
        K = K_head + K_steady
        frames = self._staging(K)
        off = 0
        for _, f in head_parts:
            frames[off : off + f.shape[0]] = f.numpy()
            off += f.shape[0]
        if K_steady:
            slots = np.fromiter((s.slot for s in sts), dtype=np.int64, count=len(sts))
            rep = np.repeat(np.arange(len(sts)), ks)
            within = np.arange(K_steady) - np.repeat(np.cumsum(ks) - ks, ks)
            starts = (lay.s0 + (steady_t0[rep] + within) * lay.hop) % self.capacity
            view = np.lib.stride_tricks.sliding_window_view(self._ring, lay.L, axis=1)
            frames[off:K] = view[slots[rep], starts]
        feats = self._compute(frames, K)
        if self.device.type == "cpu":
            feats = feats.numpy()  # per-stream slices are numpy views (a fraction of a torch call each)
        # hand each stream its columns: its head frames, then its steady ones
        out: Dict[int, PoolFrames] = {}
        head_of = {i: f.shape[0] for i, f in head_parts}
        hoff, soff = 0, K_head
        for i, st in enumerate(sts):
            k_i = int(take[i])
            if not k_i:
                continue
            cols = []
            kh = head_of.get(i, 0)
            if kh:
                cols.append(self._cols(feats, hoff, kh))
                hoff += kh
            if ks[i]:
                cols.append(self._cols(feats, soff, int(ks[i])))
                soff += int(ks[i])
            block = cols[0] if len(cols) == 1 else self._cat(cols)
            st.t += k_i
            res = self._emit(sids[i], st, block, final=False)
            if res is not None:
                out[sids[i]] = res
        return out

    def _staging(self, K: int) -> np.ndarray:
        """``(K, L)`` frames buffer (pinned host memory for a GPU)."""
        L = self.layout.L
        if self.device.type == "cuda":
            if self._copied is not None:  # the previous step's copy may still be reading the staging buffer
                self._copied.synchronize()
                self._copied = None
            if self._pinned is None or self._pinned.shape[0] < K:
                self._pinned = torch.empty((max(K, 256), L), dtype=self.dtype, pin_memory=True)
            return self._pinned[:K].numpy()
        return np.empty((K, L), dtype=self.np_dtype)

    def _compute(self, frames: np.ndarray, K: int) -> Array:
        """Raw frames ``(K, L)`` -> post-processed features ``(1, rows, K)`` (or time-major)."""
        fe = self.frontend
        if self.layout.kaldi:
            x = torch.from_numpy(frames)
            x = self._to_device(x) if self.device.type != "cpu" else x
            with _precision():
                mel = fe.frames_mel(x[None])
            return fe.post_local(mel)
        if self.numpy:
            bucket = 1 << max(0, int(np.ceil(np.log2(max(K, 1)))))
            ws = self._ws.get(bucket)
            if ws is None:
                ws = self._ws[bucket] = _workspace(self._mel_kw, (1, bucket), n_mels=fe.core.n_mels, dtype=self.dtype, device=torch.device("cpu"), numpy=True)
            buf = np.zeros((1, bucket, self.layout.L), dtype=self.np_dtype) if bucket != K else frames[None]
            if bucket != K:
                buf[0, :K] = frames
            mel = _core.mel_dense(buf, ws=ws, **self._dense)[..., :K]
            return fe.post_local(torch.from_numpy(np.ascontiguousarray(mel)))
        x = torch.from_numpy(frames)
        if self.device.type != "cpu":
            x = self._to_device(x)  # the step's one host-to-device copy
        with _precision():
            mel = _core.mel_dense(x[None], inplace=True, **self._dense)
        return fe.post_local(mel)

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
            if final:
                limit = self.frontend.num_frames(st.n_input) - st.emitted
            else:  # frames certainly kept however the stream ends
                limit = max(0, self.frontend.core.spectrogram.num_frames(st.n) - self._drop_last) - st.emitted
            k = int(block.shape[ta])
            cut = max(0, min(limit, k))
            if cut < k and not final:
                rest = self._narrow(block, cut, k - cut)
                st.held = [rest.copy() if isinstance(rest, np.ndarray) else rest.clone()]
            block = self._narrow(block, 0, cut)
        k = int(block.shape[ta])
        start = st.emitted
        st.emitted += k
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
    def close(self, sid: int) -> PoolFrames:
        """End stream ``sid``: its remaining frames, with librosa's right-edge padding; the id is freed.

        Raises :class:`~supermel.ParameterError` when the stream received no samples
        (the offline call refuses empty audio too; the stream is closed anyway).
        """
        st = self._get(sid)
        del self._streams[sid]
        self._free.append(st.slot)
        fe, lay = self.frontend, self.layout
        st.n_input = st.n
        tail = fe.stream_tail_samples(st.n)
        if tail:  # the waveform step at the end (Whisper: zero fill to 30 s, padding)
            if st.n + tail - self._keep_from(st) > self.capacity - lay.L:
                raise ParameterError(f"stream {sid}: the end padding does not fit the backlog; raise max_backlog_seconds")
            self._write(st.slot, st.n, np.zeros(tail, dtype=self.np_dtype))
            st.n += tail
        n = st.n
        if n == 0:
            raise ParameterError("close() of a stream with no input: the offline call refuses empty audio too")
        if not lay.kaldi and lay.pad == 0 and n < lay.L:
            raise ParameterError(
                f"n_fft={lay.L} is too large for uncentered analysis of input signal of length={n}; "
                "pass at least n_fft samples or use center=True"
            )
        total = lay.total(n)
        a = self._keep_from(st)
        if total > st.t:
            y = torch.from_numpy(self._read(st.slot, a, n).copy())[None]
            raw = lay.edge_frames(y, a, n, st.t, total, final=True)[0]
            feats = self._compute(np.ascontiguousarray(raw.numpy()), raw.shape[0])
            if self.device.type == "cpu":
                feats = feats.numpy()
            block = self._cols(feats, 0, raw.shape[0])
        else:
            block = self._empty()
        st.t = total
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
