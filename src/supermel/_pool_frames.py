"""The frames of a :class:`supermel.StreamPool`: where each lies in a stream's audio, what a step returns.

* :class:`_Layout`: the frame rule of the pool's front end (frame ``t`` reads samples
  ``[s0 + t hop, s0 + t hop + L)``; the head and tail frames that read padding, built
  with the offline call's padding code);
* :class:`PoolFrames` and :class:`PoolStep`: one stream's frames, and a step's frames of
  every stream (a mapping whose entries are views made on access);
* :func:`_finite_1d`: the check of a pushed chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch

from . import _core, _native
from ._inputs import all_finite_np
from .presets import Frontend, KaldiFbank
from .presets import kaldi as _kaldi

__all__ = ["PoolFrames", "PoolStep"]

Array = Union[np.ndarray, torch.Tensor]


class PoolFrames(NamedTuple):
    """One stream's output of a step (or of :meth:`StreamPool.close`).

    ``start`` is the stream's index of the first frame in ``frames`` (frames in the
    front end's layout: ``(n_mels, k)``, or ``(k, n_mels)`` time-major). With a
    Wav2Lip ``fps``, ``windows`` holds the video frames' 16-column windows that
    became complete ``(w, n_mels, 16)`` and ``window_start`` the first one's index.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> sid = pool.open()
    >>> pool.push(sid, np.zeros(1000, np.float32))
    >>> f = pool.step()[sid]
    >>> f.start, f.frames.shape
    (0, (80, 4))
    """

    start: int
    frames: Array
    window_start: int = 0
    windows: Optional[Array] = None


class PoolStep(Mapping):  # Mapping[int, PoolFrames]
    """What :meth:`StreamPool.step` returns: ``{stream id: PoolFrames}``, each entry made when read.

    A read-only mapping (``out[sid]``, ``sid in out``, ``out.items()``, ``len(out)``).
    A step computes every stream's frames in one array; an entry is a view of
    that array's columns, made on access (as a lockstep ``(S, n_mels, k)``
    result is sliced by its consumer), so a step costs no per-stream Python
    work for the streams nobody reads. Streams with per-stream state in their
    output (Wav2Lip windows, frames withheld as Whisper drops its last one) get
    their entries made during the step.

    Attributes
    ----------
    features : numpy.ndarray or torch.Tensor
        The step's frames of the streams in ``ids``, one after the other:
        ``(rows, K)`` (``(K, rows)`` for a time-major front end).
    ids, starts, offsets, counts : list of int
        For those streams: id, stream index of its first frame, column of
        ``features`` where its frames start, and how many (a vectorised
        consumer's view of the same entries). The step keeps them as int64 arrays
        (its table); the lists, and the id index of ``out[sid]``, are made on first
        read, so a step whose entries nobody reads builds no per-stream object.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> pool = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> a, b = pool.open(), pool.open()
    >>> pool.push(a, np.zeros(1000, np.float32)); pool.push(b, np.zeros(3000, np.float32))
    >>> step = pool.step()
    >>> sorted(step), [step[s].frames.shape[-1] for s in (a, b)]
    ([0, 1], [4, 14])
    >>> step.counts
    [4, 14]
    """

    __slots__ = ("features", "_table", "_lists", "_index", "_time_major", "_eager")

    def __init__(self, features: Any = None, ids: Any = None, starts: Any = None, offsets: Any = None, counts: Any = None, *,
                 time_major: bool = False, eager: Optional[Dict[int, PoolFrames]] = None) -> None:
        self.features = features
        # (ids, starts, offsets, counts): lists, or int64 arrays (the native step's table rows) made lists when read
        self._table = (ids if ids is not None else [], starts if starts is not None else [], offsets if offsets is not None else [],
                       counts if counts is not None else [])
        self._lists: Optional[Tuple[List[int], ...]] = None
        self._index: Optional[Dict[int, int]] = None
        self._time_major = time_major
        self._eager = eager or {}

    def _as_lists(self) -> Tuple[List[int], ...]:
        if self._lists is None:
            self._lists = tuple(v if isinstance(v, list) else np.asarray(v).tolist() for v in self._table)
        return self._lists

    @property
    def ids(self) -> List[int]:
        """Ids of the streams whose frames are in ``features`` (a list, made on first read)."""
        return self._as_lists()[0]

    @property
    def starts(self) -> List[int]:
        """Each stream's index of its first frame in ``features``."""
        return self._as_lists()[1]

    @property
    def offsets(self) -> List[int]:
        """The column of ``features`` where each stream's frames start."""
        return self._as_lists()[2]

    @property
    def counts(self) -> List[int]:
        """How many frames each stream has in ``features``."""
        return self._as_lists()[3]

    def _where(self, sid: object) -> Optional[int]:
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids))))
        return self._index.get(sid)  # type: ignore[call-overload]

    def __getitem__(self, sid: int) -> PoolFrames:
        i = self._where(sid)
        if i is None:
            return self._eager[sid]
        _, starts, offsets, counts = self._as_lists()
        a, k = offsets[i], counts[i]
        f = self.features
        return PoolFrames(starts[i], f[a : a + k] if self._time_major else f[:, a : a + k])

    def __contains__(self, sid: object) -> bool:
        return self._where(sid) is not None or sid in self._eager

    def __iter__(self) -> Iterator[int]:
        yield from self.ids
        yield from self._eager

    def __len__(self) -> int:
        return len(self._table[0]) + len(self._eager)

    def __repr__(self) -> str:
        return f"PoolStep({len(self)} streams, {sum(self.counts) + sum(int(np.shape(p.frames)[0 if self._time_major else -1]) for p in self._eager.values())} frames)"


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


def _finite_1d(x: np.ndarray) -> bool:
    """Whether a 1-D float chunk is finite everywhere. Short chunks (what a server pushes):
    ``np.isfinite(x).all()``, 1.3 us for 320 samples against 1.7 us for the sum of squares
    of :func:`supermel._inputs.all_finite_np` inside its ``np.errstate``; longer ones: that."""
    ext = _native._ext
    if ext is not None and x.ndim == 1 and x.dtype in _NATIVE_FLOATS and x.flags.c_contiguous and x.flags.aligned:
        return bool(ext.all_finite(x))  # one C++ pass (exact; any length)
    if x.size <= _SHORT_CHUNK:
        return bool(np.isfinite(x).all())
    return all_finite_np(np.ascontiguousarray(x))


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: Samples up to which :func:`_finite_1d` tests each sample rather than the sum of squares.
_SHORT_CHUNK = 2048
