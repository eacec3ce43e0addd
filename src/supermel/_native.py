"""The native CPU core (``supermel._native_ext``): availability, the route switch, checked calls.

The compiled module computes frames -> window -> real FFT -> ``|X|**power`` ->
block-sparse mel product (-> a post-step) in one C++ pass, GIL released, into
arrays allocated here or checked here (docs/native.md). This module is its only
caller: every shape, stride, dtype and bounds check runs here before a native
call; arrays that fail a layout check are copied (``np.ascontiguousarray``), so
no bad buffer ever reaches C++.

Routes: :func:`enabled` is True when the extension is built, not switched off by
the environment (``SUPERMEL_NATIVE=0``, read at import) and not by
:func:`use_native`. The CPU paths (offline numpy calls and CPU tensors without
autograd, the streaming steady state, :class:`supermel.StreamPool`) then take
it; autograd, CUDA and other devices always take the torch route (``torch.compile`` without autograd runs the eager call's route inside a custom op).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any, Dict, Iterator, Optional

import numpy as np

from ._errors import ParameterError


def _load() -> Any:
    """The compiled module: ``supermel._native_ext``, or the file named by ``SUPERMEL_NATIVE_LIB``
    (a sanitizer build, tools/asan.sh); ``None`` when not built (a source tree on PYTHONPATH, or
    a failed build): the torch routes then run."""
    path = os.environ.get("SUPERMEL_NATIVE_LIB")
    if path:
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location(__package__ + "._native_ext", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"SUPERMEL_NATIVE_LIB={path!r} is not a loadable extension module")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[spec.name] = mod
        return mod
    try:  # pragma: no cover - depends on the build
        from . import _native_ext

        return _native_ext
    except ImportError:
        return None


_ext = _load()

__all__ = ["available", "enabled", "use_native", "isa", "Plan", "make_plan", "run_strided", "run_gather", "ring_write", "kaldi_prep", "rfft", "cached_plan", "RingCall", "POST", "step_ring", "offline_call"]

#: Post-steps the kernels apply to each output value (``a``, ``b`` the plan's constants).
POST = {"none": 0, "ln_floor": 1, "log10_floor": 2, "ln_add": 3, "db": 4}

_ENV_ON = os.environ.get("SUPERMEL_NATIVE", "1").strip() not in ("0", "false", "False", "off", "no")
_override: Optional[bool] = None
_lock = threading.Lock()


def available() -> bool:
    """Whether the compiled extension is importable (built and loadable on this CPU)."""
    return _ext is not None


def enabled() -> bool:
    """Whether the CPU paths take the native route now.

    False when the extension is not built, when ``SUPERMEL_NATIVE=0`` was set at
    import (unless :func:`use_native` switched it back on), or inside ``use_native(False)``.
    """
    if _ext is None:
        return False
    return _ENV_ON if _override is None else _override


@contextlib.contextmanager
def use_native(flag: bool) -> Iterator[None]:
    """``with use_native(False):`` run today's torch/numpy routes (``True``: the native route,
    where built). Process-wide (benchmarks and tests switch routes in one process); nests;
    restores the previous setting on exit. ``use_native(True)`` without the extension keeps
    the torch routes (:func:`enabled` stays False)."""
    global _override
    with _lock:
        saved = _override
        _override = bool(flag)
        _sync()
    try:
        yield
    finally:
        with _lock:
            _override = saved
            _sync()


def isa() -> Optional[str]:
    """The instruction set of the kernels in use (``"avx2"``, ``"baseline"``), None when not built."""
    return None if _ext is None else _ext.isa()


Plan = Any  # supermel._native_ext.Plan


def make_plan(
    *,
    n_fft: int,
    window: np.ndarray,
    fb: Optional[np.ndarray],
    dtype: Any,
    weights: Any,
    power: float,
    mag_eps: float = 0.0,
    post: str = "none",
    post_a: float = 0.0,
    post_b: float = 0.0,
) -> Plan:
    """A native plan: ``window`` ``(n_fft,)``, ``fb`` ``(n_mels, n_fft // 2 + 1)`` or None (power
    bins out); ``dtype`` of the frames, ``weights`` of the filterbank and output (float32/float64).
    Callers cache it (building costs the twiddles and the band split; a call costs none of it)."""
    if _ext is None:
        raise RuntimeError("supermel._native_ext is not built")
    dt, wt = np.dtype(dtype), np.dtype(weights)
    n_fft = int(n_fft)
    win = np.ascontiguousarray(window, dtype=np.float64).reshape(-1)
    if win.shape != (n_fft,):
        raise ParameterError(f"window has {win.size} values; the plan needs n_fft={n_fft}")
    if fb is None:
        bank = np.zeros((0, 0), dtype=np.float64)
    else:
        bank = np.ascontiguousarray(fb, dtype=np.float64)
        if bank.ndim != 2 or bank.shape[1] != n_fft // 2 + 1:
            raise ParameterError(f"filterbank of shape {bank.shape} does not match n_fft={n_fft} ({n_fft // 2 + 1} bins)")
    if post not in POST:
        raise ParameterError(f"post={post!r} must be one of {sorted(POST)}")
    return _ext.Plan(n_fft, win, bank, dt.name, wt.name, float(power), float(mag_eps), POST[post], float(post_a), float(post_b))


def _frames_array(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` as a 2-D array of ``dtype`` with unit stride along its last axis and a non-negative,
    whole-element row stride (a copy only when it is not one already; read-only is fine)."""
    if x.dtype != dtype or x.ndim != 2 or x.strides[1] != x.itemsize or x.strides[0] < 0 or x.strides[0] % x.itemsize:
        x = np.ascontiguousarray(x, dtype=dtype)
        if x.ndim != 2:
            raise ParameterError(f"frames must be 2-D (rows, samples); got shape {x.shape}")
    return x


def _check_out(out: np.ndarray, shape: tuple, dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        raise ParameterError(f"out must be a {np.dtype(dtype).name} array of shape {shape}")
    if not out.flags.writeable or any(s < 0 or s % out.itemsize for s in out.strides):
        raise ParameterError("out must be writeable, with non-negative whole-element strides")
    if not out.flags.aligned:
        raise ParameterError("out must be aligned to its dtype")


def run_strided(plan: Plan, x: np.ndarray, *, offset: int, hop: int, n_frames: int, out: Optional[np.ndarray] = None, dtype: Any, out_dtype: Any,
                out_checked: bool = False, threads: int = 1) -> np.ndarray:
    """Frames ``x[b, offset + t hop : offset + t hop + n_fft]`` of every row ``b`` of ``x``
    ``(rows, n)`` -> ``out[b, :, t]`` (``(rows, n_out, n_frames)``, allocated when None; any
    non-negative strides, e.g. a time-major view). ``out_checked``: ``out`` was just allocated
    by the caller as ``np.empty((rows, n_out, n_frames), out_dtype)`` (its checks skipped).
    ``threads``: calls of 512 frames or more are split over up to this many threads (C++)."""
    dt, odt = np.dtype(dtype), np.dtype(out_dtype)
    x = _frames_array(x, dt)
    if not x.flags.aligned:
        x = x.copy()
    offset, hop, n_frames = int(offset), int(hop), int(n_frames)
    if offset < 0 or hop < 1 or n_frames < 0:
        raise ParameterError(f"offset={offset}, hop={hop}, n_frames={n_frames}: need offset >= 0, hop >= 1, n_frames >= 0")
    if n_frames and offset + (n_frames - 1) * hop + plan.n_fft > x.shape[1]:
        raise ParameterError(f"{n_frames} frames of {plan.n_fft} samples at hop {hop} from {offset} run past the {x.shape[1]} samples")
    shape = (x.shape[0], plan.n_out, n_frames)
    if out is None:
        out = np.empty(shape, dtype=odt)
    elif not out_checked:
        _check_out(out, shape, odt)
    if out.size:
        plan.strided(x, offset, hop, n_frames, out, int(threads))
    return out


def run_gather(plan: Plan, x: np.ndarray, rows: np.ndarray, offsets: np.ndarray, *, out: Optional[np.ndarray] = None, dtype: Any, out_dtype: Any,
               threads: int = 1) -> np.ndarray:
    """Frames ``x[rows[i], offsets[i] : offsets[i] + n_fft]`` -> ``out[i, :]`` (``(count, n_out)``,
    allocated when None; any non-negative strides, e.g. ``.T`` of a ``(n_out, count)`` array);
    ``threads`` as :func:`run_strided`."""
    dt, odt = np.dtype(dtype), np.dtype(out_dtype)
    x = _frames_array(x, dt)
    if not x.flags.aligned:
        x = x.copy()
    rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    if rows.shape != offsets.shape:
        raise ParameterError(f"rows ({rows.size}) and offsets ({offsets.size}) must have one length")
    if rows.size:
        if rows.min() < 0 or rows.max() >= x.shape[0]:
            raise ParameterError(f"rows must lie in [0, {x.shape[0]})")
        if offsets.min() < 0 or offsets.max() + plan.n_fft > x.shape[1]:
            raise ParameterError(f"offsets must lie in [0, {x.shape[1] - plan.n_fft}]")
    shape = (rows.size, plan.n_out)
    if out is None:
        out = np.empty(shape, dtype=odt)
    else:
        _check_out(out, shape, odt)
    if out.size:
        plan.gather(x, rows, offsets, out, int(threads))
    return out


def ring_write(ring: np.ndarray, slots: np.ndarray, ats: np.ndarray, x: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, C: int, L: int) -> None:
    """``StreamPool.push_many``'s writes in one native call: ``x[starts[i] : starts[i] + lengths[i]]``
    into ring row ``slots[i]`` from sample ``ats[i]`` (position ``ats[i] % C``, wrapping around),
    the row's mirror (its last ``L`` values, a copy of its first ``L``) kept. ``ring``
    ``(rows, C + L)``, writeable, C-contiguous; ``x`` 1-D contiguous of the ring's dtype; the index
    arrays int64 of one length; every write is bounds-checked (here and in C++)."""
    if not (isinstance(ring, np.ndarray) and ring.ndim == 2 and ring.flags.c_contiguous and ring.flags.aligned and ring.flags.writeable
            and ring.shape[1] == C + L and 0 <= L <= C and C >= 1):
        raise ParameterError(f"a pool ring must be a writeable C-contiguous (rows, C + L) array; got {getattr(ring, 'shape', None)} for C={C}, L={L}")
    if not (isinstance(x, np.ndarray) and x.dtype == ring.dtype and x.ndim == 1 and x.flags.c_contiguous and x.flags.aligned):
        x = np.ascontiguousarray(x, dtype=ring.dtype).reshape(-1)
    idx = [np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in (slots, ats, starts, lengths)]
    if len({a.size for a in idx}) != 1:
        raise ParameterError("slots, ats, starts and lengths must have one length")
    try:  # every write's bounds: checked in C++ before any is made (one pass, not seven reductions here)
        _ext.ring_write(ring, *idx[:2], x, *idx[2:], int(C), int(L))
    except ValueError as exc:
        raise ParameterError(f"a ring write lies outside the ring or the samples ({exc})") from None


def kaldi_prep(frames: np.ndarray, *, n_fft: int, lo: int, remove_dc: bool, preemph: float) -> np.ndarray:
    """Kaldi's per-frame steps before the window, in C++: raw frames ``(B, T, W)`` (float32/float64,
    any non-negative whole-element strides with unit stride along samples, e.g. a strided view
    of the signal; other layouts are copied) -> ``(B, T n_fft)`` with frame ``t`` at
    ``t n_fft + lo`` (zeros around it), its mean removed (``remove_dc``, summed in double) and
    pre-emphasised (``preemph``; 0: none). Rows of the result are what
    :func:`run_strided` frames at ``hop = n_fft``."""
    if not isinstance(frames, np.ndarray) or frames.dtype not in (np.float32, np.float64) or frames.ndim != 3:
        raise ParameterError(f"frames must be a 3-D float32/float64 array (B, T, W); got {type(frames).__name__}")
    B, T, W = frames.shape
    if not frames.flags.aligned or any(st < 0 or st % frames.itemsize for st in frames.strides) or (W > 1 and frames.strides[2] != frames.itemsize):
        frames = np.ascontiguousarray(frames)
    n_fft, lo = int(n_fft), int(lo)
    if W < 1 or lo < 0 or lo + W > n_fft:
        raise ParameterError(f"frames of {W} samples at {lo} do not fit n_fft={n_fft}")
    out = np.empty((B, T * n_fft), dtype=frames.dtype)
    _ext.kaldi_prep(frames, out, n_fft, lo, bool(remove_dc), float(preemph))
    return out


def rfft(plan: Plan, x: np.ndarray) -> np.ndarray:
    """The plan's bare real FFT (no window) of ``x`` ``(count, n_fft)``: complex ``(count, n_fft // 2 + 1)``
    (tests and benchmarks)."""
    x = np.asarray(x)
    x = _frames_array(x, x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    if x.shape[1] != plan.n_fft:
        raise ParameterError(f"frames of {x.shape[1]} samples; the plan's n_fft is {plan.n_fft}")
    out = np.empty((x.shape[0], plan.n_fft // 2 + 1, 2), dtype=x.dtype)
    plan.rfft(x, out)
    return out.view(np.complex64 if x.dtype == np.float32 else np.complex128)[..., 0]


# --------------------------------------------------------------------------- plans of modules
#: owner (a module) -> {key: (plan, tensors the key's addresses belong to)}. Weak keys: a plan
#: lives as long as its module, and never travels with it (deepcopy, pickle, state dicts).
_PLANS: "weakref.WeakKeyDictionary[Any, Dict[tuple, tuple]]" = weakref.WeakKeyDictionary()
#: Plans kept per owner (configurations: input dtype, power, post-step).
_PLANS_PER_OWNER = 8


def _tensor_key(t: Any) -> Any:
    if t is None:
        return None
    # bumped by every in-place change (load_state_dict, copy_); an inference tensor has none
    version = -1 if t.is_inference() else t._version
    return (t.data_ptr(), version, tuple(t.shape), t.dtype)


def cached_plan(owner: Any, *, n_fft: int, window: Any, fb: Any, dtype: Any, weights: Any, power: float, mag_eps: float = 0.0,
                post: str = "none", post_a: float = 0.0, post_b: float = 0.0) -> Plan:
    """The plan of ``owner``'s constants (``window``, ``fb``: CPU tensors), built on first use.

    Keyed by the tensors' addresses and version counters (an in-place change or a new
    tensor makes a new plan); the entry holds the tensors, so an address cannot be reused
    by another tensor while its plan is cached.
    """
    key = (n_fft, np.dtype(dtype).num, np.dtype(weights).num, _tensor_key(window), _tensor_key(fb), power, mag_eps, post, post_a, post_b)
    plans = _PLANS.get(owner)
    if plans is None:
        plans = _PLANS[owner] = {}
    hit = plans.get(key)
    if hit is not None:
        return hit[0]
    plan = make_plan(
        n_fft=n_fft, window=window.detach().cpu().double().numpy(), fb=None if fb is None else fb.detach().cpu().double().numpy(),
        dtype=dtype, weights=weights, power=power, mag_eps=mag_eps, post=post, post_a=post_a, post_b=post_b,
    )
    if len(plans) >= _PLANS_PER_OWNER:
        plans.clear()
    plans[key] = (plan, window, fb)
    return plan


class RingCall:
    """Frames of a fixed, owned 2-D buffer (a streaming ring): the buffer's dtype, layout and
    alignment checked once here, each call's bounds checked in :meth:`__call__` (a few integer
    comparisons: the one-hop push's budget is a few microseconds)."""

    __slots__ = ("plan", "x", "hop", "out_dtype", "n_fft", "n_out", "rows", "length")

    def __init__(self, plan: Plan, x: np.ndarray, *, hop: int, dtype: Any, out_dtype: Any) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.dtype(dtype) or x.ndim != 2 or (x.size and x.strides[1] != x.itemsize) \
                or x.strides[0] < 0 or x.strides[0] % x.itemsize or not x.flags.aligned or not x.flags.writeable:
            raise ParameterError("a ring buffer must be a writeable, aligned 2-D array of the plan's dtype, unit stride along its last axis")
        self.plan, self.x, self.hop = plan, x, int(hop)
        self.out_dtype = np.dtype(out_dtype)
        self.n_fft, self.n_out = plan.n_fft, plan.n_out
        self.rows, self.length = x.shape

    def push(self, fill: int, chunk: np.ndarray, offset: int, n_frames: int, check: bool) -> Optional[np.ndarray]:
        """A streaming push in one native call: ``chunk`` ``(rows, n)`` (the buffer's dtype; copied
        here when not C-contiguous and aligned) into ``x[:, fill : fill + n]``, then
        ``(rows, n_out, n_frames)`` of frames ``offset + t hop`` (a new array). ``check``: ``None``,
        and the buffer untouched, when the chunk has a NaN/Inf."""
        flags = chunk.flags
        if not (flags.c_contiguous and flags.aligned):
            chunk = np.ascontiguousarray(chunk)
        if chunk.dtype != self.x.dtype or chunk.ndim != 2 or chunk.shape[0] != self.rows:
            raise ParameterError(f"a chunk of shape {chunk.shape} and dtype {chunk.dtype} does not fit the ring ({self.rows} rows of {self.x.dtype})")
        n = chunk.shape[1]
        if fill < 0 or fill + n > self.length or offset < 0 or n_frames < 0 or (n_frames and offset + (n_frames - 1) * self.hop + self.n_fft > fill + n):
            raise ParameterError(f"ring push out of bounds: fill={fill}, {n} samples, offset={offset}, n_frames={n_frames}, buffer length {self.length}")
        out = np.empty((self.rows, self.n_out, n_frames), dtype=self.out_dtype)
        if self.plan.ring(self.x, fill, chunk, offset, self.hop, out, check):
            return None
        return out

    def __call__(self, offset: int, n_frames: int) -> np.ndarray:
        """``(rows, n_out, n_frames)`` of frames ``offset + t hop`` (a new array)."""
        if offset < 0 or n_frames < 0 or (n_frames and offset + (n_frames - 1) * self.hop + self.n_fft > self.length):
            raise ParameterError(f"ring frames out of bounds: offset={offset}, n_frames={n_frames}, buffer length {self.length}")
        out = np.empty((self.rows, self.n_out, n_frames), dtype=self.out_dtype)
        if out.size:
            self.plan.strided(self.x, offset, self.hop, n_frames, out)
        return out


# --------------------------------------------------------------------------- StreamPool's tick (src/native/pool.hpp)
__all__ += ["pool_push", "pool_push_ids", "pool_due", "pool_gather", "pool_step", "PoolRing"]
#: Codes of :func:`pool_push`'s refused chunks.
PUSH_UNKNOWN, PUSH_NOT_FINITE, PUSH_OVER_BACKLOG, PUSH_OTHER = 1, 2, 3, 4
#: What :func:`pool_push_ids` returns in place of a list (nothing written): an id twice; an id
#: that is not an exact int or not open (the caller checks the ids in Python).
IDS_DUPLICATE, IDS_IN_PYTHON = 1, 2
#: Rows of the table :func:`pool_due` fills and :func:`pool_gather` reads (int64, ``(POOL_ROWS, streams)``).
POOL_ID, POOL_SLOT, POOL_T0, POOL_TAKE, POOL_OFF, POOL_HEAD, POOL_EM, POOL_ROWS = range(8)


def _pool_ring(ring: Any, C: int, L: int) -> None:
    if not (type(ring) is np.ndarray and ring.ndim == 2 and ring.flags.c_contiguous and ring.flags.aligned and ring.flags.writeable
            and ring.dtype in _POOL_FLOATS and ring.shape[1] == C + L and 0 <= L <= C and C >= 1):
        raise ParameterError(f"a pool ring must be a writeable C-contiguous float32/float64 (rows, C + L) array; got {getattr(ring, 'shape', None)} for C={C}, L={L}")


def _pool_counters(rows: int, *arrays: Any) -> None:
    for a in arrays:
        if not (type(a) is np.ndarray and a.dtype == np.int64 and a.ndim == 1 and a.flags.c_contiguous and a.flags.aligned and a.flags.writeable
                and a.shape[0] >= rows):
            raise ParameterError(f"a pool's per-slot counters must be writeable contiguous int64 arrays of at least {rows} values")


_POOL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def pool_push(ring: np.ndarray, n: np.ndarray, t: np.ndarray, chunks: list, slots: list, *, C: int, L: int, head: int, s0: int, hop: int,
              tail_keep: int, check_finite: bool) -> list:
    """``StreamPool.push_many``'s chunks in one native call: ``chunks[i]`` to ring row ``slots[i]``
    (``None``: an unknown stream) from sample ``n[slots[i]]``, as :meth:`StreamPool.push` would
    (finiteness with ``check_finite``, then the backlog: ``n + m - keep_from > C - L`` refused;
    the write keeps the row's mirror; ``n`` advanced). Chunks are read through the buffer
    protocol, never copied or concatenated; a chunk that is not a 1-D, contiguous, aligned
    ``numpy.ndarray`` (exactly) of the ring's dtype is left for the caller. Returns
    ``[(i, code, waiting)]`` of the chunks not taken (codes ``PUSH_*``; ``waiting``: the samples
    that would wait, for ``PUSH_OVER_BACKLOG``); empty when every chunk was taken."""
    _pool_ring(ring, C, L)
    _pool_counters(ring.shape[0], n, t)
    if type(chunks) is not list or type(slots) is not list or len(chunks) != len(slots):
        raise ParameterError("pool_push takes a list of chunks and a list of slots of one length")
    try:  # (the C++ checks again: a ValueError there is a bad argument)
        return _ext.pool_push(ring, n, t, chunks, slots, np.ndarray, int(C), int(L), int(head), int(s0), int(hop), int(tail_keep), bool(check_finite))
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def pool_push_ids(ring: np.ndarray, n: np.ndarray, t: np.ndarray, chunks: list, ids: list, slot_of: dict, *, C: int, L: int, head: int, s0: int,
                  hop: int, tail_keep: int, check_finite: bool) -> Any:
    """:func:`pool_push` with stream ids in place of slots: ``ids[i]`` (exact ints, each at most
    once) looked up in ``slot_of`` (``{id: slot}`` of the open streams). Returns :func:`pool_push`'s
    list, or, with nothing written, ``IDS_DUPLICATE`` (an id twice) or ``IDS_IN_PYTHON`` (an id that
    is not an exact int or not in ``slot_of``: the caller checks the ids itself)."""
    _pool_ring(ring, C, L)
    _pool_counters(ring.shape[0], n, t)
    if type(chunks) is not list or type(ids) is not list or len(chunks) != len(ids):
        raise ParameterError("pool_push_ids takes a list of chunks and a list of ids of one length")
    if type(slot_of) is not dict:
        raise ParameterError(f"pool_push_ids takes slot_of as a dict {{id: slot}}, got {type(slot_of).__name__}")
    try:  # (the C++ checks again: a ValueError there is a bad argument)
        return _ext.pool_push_ids(ring, n, t, chunks, ids, slot_of, np.ndarray, int(C), int(L), int(head), int(s0), int(hop), int(tail_keep),
                                  bool(check_finite))
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def _pool_schedule(name: str, ids: Any, slots: Any, table: Any, r: int) -> int:
    """Check the step's schedule arrays (contiguous int64 ``ids``/``slots`` of one length ``m``, a
    writeable C-contiguous int64 ``(POOL_ROWS, m)`` table, a rotation in ``[0, m)``); returns ``m``."""
    m = ids.shape[0] if type(ids) is np.ndarray else -1
    for a in (ids, slots):
        if not (type(a) is np.ndarray and a.dtype == np.int64 and a.ndim == 1 and a.flags.c_contiguous and a.shape[0] == m):
            raise ParameterError(f"{name} takes contiguous int64 ids and slots of one length")
    if not (type(table) is np.ndarray and table.dtype == np.int64 and table.shape == (POOL_ROWS, m) and table.flags.c_contiguous and table.flags.writeable):
        raise ParameterError(f"{name}'s table must be a writeable C-contiguous int64 array of shape ({POOL_ROWS}, {m})")
    if not (0 <= r < max(m, 1)):
        raise ParameterError(f"rotation r={r} must lie in [0, {m})")
    return m


def pool_due(ids: np.ndarray, slots: np.ndarray, r: int, n: np.ndarray, t: np.ndarray, table: np.ndarray, *, max_frames: int, L: int, s0: int,
             hop: int, ctx: int, head: int) -> tuple:
    """``StreamPool.step``'s frames: the open streams ``ids``/``slots`` (int64) from index ``r`` on
    (the rotation), each its complete frames (``(n - L - s0) // hop + 1`` of ``n`` samples, none
    below ``ctx`` samples) less the ``t`` computed, while the total stays within ``max_frames``.
    Fills ``table[:, :active]`` (rows ``POOL_*``: id, slot, first frame, count, column, head
    frames) for the streams that get frames; returns ``(active, K, heads)``."""
    _pool_schedule("pool_due", ids, slots, table, r)
    _pool_counters(0, n, t)
    try:  # (the C++ checks again: a ValueError there is a bad argument)
        return _ext.pool_due(ids, slots, int(r), n, t, int(max_frames), int(L), int(s0), int(hop), int(ctx), int(head), table)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def pool_gather(plan: Plan, ring: np.ndarray, table: np.ndarray, active: int, out: np.ndarray, t: np.ndarray, em: np.ndarray, *, advance_em: bool,
                C: int, hop: int, s0: int, dtype: Any, out_dtype: Any, threads: int = 1) -> None:
    """The steady frames of ``table[:, :active]`` (:func:`pool_due`'s; a stream's head frames are
    the caller's) gathered from ``ring`` (``dtype``, the plan's frames) and computed by the plan's
    gather kernel (the kernel of :func:`run_gather`: the same values) into ``out`` ``(K, n_out)``
    (``out_dtype``; any non-negative strides, e.g. ``.T`` of the step's ``(n_out, K)`` block);
    then ``t[slot] += count`` and, with ``advance_em``, ``em[slot] += count`` (the old ``em`` into
    the table's ``POOL_EM`` row). Every table entry is bounds-checked in C++."""
    if type(ring) is not np.ndarray or ring.ndim != 2 or ring.dtype != np.dtype(dtype):
        raise ParameterError(f"a pool ring must be a 2-D {np.dtype(dtype).name} array")
    _pool_ring(ring, C, ring.shape[1] - C)
    _pool_counters(ring.shape[0], t, em)
    if not (type(table) is np.ndarray and table.dtype == np.int64 and table.ndim == 2 and table.shape[0] == POOL_ROWS and table.flags.c_contiguous
            and table.flags.writeable and 0 <= active <= table.shape[1]):
        raise ParameterError(f"pool_gather's table must be a writeable C-contiguous ({POOL_ROWS}, streams) int64 array, active <= streams")
    if not (isinstance(out, np.ndarray) and out.ndim == 2):
        raise ParameterError("out must be a 2-D (K, n_out) array")
    _check_out(out, (out.shape[0], plan.n_out), np.dtype(out_dtype))
    try:  # (the C++ checks again: a ValueError there is a bad argument)
        _ext.pool_gather(plan, ring, table, int(active), out, t, em, bool(advance_em), int(C), int(hop), int(s0), int(threads))
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def pool_step(plan: Plan, ring: np.ndarray, ids: np.ndarray, slots: np.ndarray, r: int, n: np.ndarray, t: np.ndarray, em: np.ndarray, table: np.ndarray, *,
              max_frames: int, C: int, s0: int, hop: int, ctx: int, head: int, advance_em: bool, dtype: Any, out_dtype: Any, threads: int = 1) -> tuple:
    """:func:`pool_due` and, when no stream gets head frames, :func:`pool_gather` in one native call,
    into a new ``(1, n_out, K)`` array of ``out_dtype`` (frame ``k`` in column ``k``). Returns
    ``(active, K, heads, out)``: ``out`` None when ``K == 0``; with ``heads > 0`` ``out`` is
    allocated but nothing computed or advanced (the caller writes the head frames, then calls
    :func:`pool_gather` with ``out[0].T``)."""
    if type(ring) is not np.ndarray or ring.ndim != 2 or ring.dtype != np.dtype(dtype):
        raise ParameterError(f"a pool ring must be a 2-D {np.dtype(dtype).name} array")
    _pool_ring(ring, C, ring.shape[1] - C)
    _pool_counters(ring.shape[0], n, t, em)
    _pool_schedule("pool_step", ids, slots, table, r)
    odt = np.dtype(out_dtype)
    if odt not in _POOL_FLOATS:  # (the plan's own output dtype: checked in C++, before anything is computed or advanced)
        raise ParameterError(f"out_dtype={odt} must be float32 or float64, the plan's output dtype")
    try:  # (the C++ checks again: a ValueError there is a bad argument)
        return _ext.pool_step(plan, ring, ids, slots, int(r), n, t, em, table, int(max_frames), ring.shape[1] - int(C), int(s0), int(hop), int(ctx),
                              int(head), int(C), bool(advance_em), int(threads), np.empty, odt)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


class PoolRing:
    """A :class:`supermel.StreamPool`'s ring and per-slot counters, checked once (as
    :class:`RingCall` checks a streaming ring), for the tick's three native calls without
    their per-call Python checks: the pool passes its own arrays (``ids``/``slots`` of its
    streams, a ``table`` and an ``out`` it has just allocated as :func:`pool_due` and
    :func:`pool_gather` take them). Every shape, dtype, stride and index is checked again in C++
    (a failure there raises :class:`~supermel.ParameterError`, never reaches a kernel); the
    module-level :func:`pool_push`, :func:`pool_due` and :func:`pool_gather` are the checked
    entry points for other callers. Valid while the pool keeps these arrays (:meth:`holds`)."""

    __slots__ = ("ring", "n", "t", "em", "C", "L")

    def __init__(self, ring: np.ndarray, n: np.ndarray, t: np.ndarray, em: np.ndarray, *, C: int, L: int) -> None:
        _pool_ring(ring, C, L)
        _pool_counters(ring.shape[0], n, t, em)
        self.ring, self.n, self.t, self.em, self.C, self.L = ring, n, t, em, int(C), int(L)

    def holds(self, ring: np.ndarray, n: np.ndarray, t: np.ndarray, em: np.ndarray) -> bool:
        """Whether these are the arrays checked here (the pool replaces them when it grows or shrinks)."""
        return ring is self.ring and n is self.n and t is self.t and em is self.em

    def push(self, chunks: list, slots: list, *, head: int, s0: int, hop: int, tail_keep: int, check_finite: bool) -> list:
        """:func:`pool_push` on these arrays (``chunks`` and ``slots``: lists of one length)."""
        try:
            return _ext.pool_push(self.ring, self.n, self.t, chunks, slots, np.ndarray, self.C, self.L, head, s0, hop, tail_keep, check_finite)
        except (ValueError, TypeError) as exc:  # (TypeError: nanobind refused an argument's type, e.g. a read-only out)
            raise ParameterError(str(exc)) from None

    def push_ids(self, chunks: list, ids: list, slot_of: dict, *, head: int, s0: int, hop: int, tail_keep: int, check_finite: bool) -> Any:
        """:func:`pool_push_ids` on these arrays (``chunks`` and ``ids``: lists of one length)."""
        try:
            return _ext.pool_push_ids(self.ring, self.n, self.t, chunks, ids, slot_of, np.ndarray, self.C, self.L, head, s0, hop, tail_keep, check_finite)
        except (ValueError, TypeError) as exc:  # (TypeError: nanobind refused an argument's type)
            raise ParameterError(str(exc)) from None

    def step(self, plan: Plan, ids: np.ndarray, slots: np.ndarray, r: int, table: np.ndarray, *, max_frames: int, s0: int, hop: int, ctx: int, head: int,
             advance_em: bool, out_dtype: np.dtype, threads: int = 1) -> tuple:
        """:func:`pool_step` on these arrays (``out_dtype``: the plan's output dtype, a ``numpy.dtype``)."""
        try:
            return _ext.pool_step(plan, self.ring, ids, slots, r, self.n, self.t, self.em, table, max_frames, self.L, s0, hop, ctx, head, self.C,
                                  advance_em, threads, np.empty, out_dtype)
        except (ValueError, TypeError) as exc:  # (TypeError: nanobind refused an argument's type)
            raise ParameterError(str(exc)) from None

    def due(self, ids: np.ndarray, slots: np.ndarray, r: int, table: np.ndarray, *, max_frames: int, s0: int, hop: int, ctx: int, head: int) -> tuple:
        """:func:`pool_due` on these counters."""
        try:
            return _ext.pool_due(ids, slots, r, self.n, self.t, max_frames, self.L, s0, hop, ctx, head, table)
        except (ValueError, TypeError) as exc:  # (TypeError: nanobind refused an argument's type, e.g. a read-only out)
            raise ParameterError(str(exc)) from None

    def gather(self, plan: Plan, table: np.ndarray, active: int, out: np.ndarray, *, advance_em: bool, hop: int, s0: int, threads: int = 1) -> None:
        """:func:`pool_gather` from this ring into ``out`` ``(K, n_out)`` (the plan's output dtype)."""
        try:
            _ext.pool_gather(plan, self.ring, table, active, out, self.t, self.em, advance_em, self.C, hop, s0, threads)
        except (ValueError, TypeError) as exc:  # (TypeError: nanobind refused an argument's type, e.g. a read-only out)
            raise ParameterError(str(exc)) from None


# --------------------------------------------------------------------------- the streaming push
def _sync() -> None:
    """Mirror :func:`enabled` into the extension (:class:`StepRing` pushes read it)."""
    if _ext is not None:
        _ext.set_enabled(enabled())


_sync()


def step_ring(plan: Plan, segs: Any, *, held: int, chunk: int, offset: int, hop: int, k: int) -> Any:
    """The streaming steady state's push in one native call (``supermel._native_ext.StepRing``).

    ``segs``: the step's two ``(rows, held + chunk)`` C-contiguous, aligned, writeable arrays of
    the plan's dtype (checked here, once, and again in C++). ``push(chunk, check, squeeze)``
    copies ``chunk`` (an exact numpy array of the dtype, C-contiguous, ``(rows, chunk)``, or
    ``(chunk,)`` with ``squeeze`` and one row) behind the ``held`` samples of segment ``i``,
    returns the ``k`` frames at ``offset + t hop`` as a new ``(rows, n_out, k)`` (``(n_out, k)``)
    array, keeps the last ``held`` samples at the head of the other segment and flips ``i``; or
    returns None, changing nothing, when the chunk does not qualify, has a NaN/Inf (``check``)
    or the native route is off."""
    s0, s1 = segs
    for s in (s0, s1):
        if not (isinstance(s, np.ndarray) and s.ndim == 2 and s.flags.c_contiguous and s.flags.aligned and s.flags.writeable
                and s.dtype == s0.dtype and s.shape == s0.shape):
            raise ParameterError("step segments must be two writeable, aligned, C-contiguous 2-D arrays of one shape and dtype")
    try:
        return _ext.StepRing(plan, s0, s1, int(held), int(chunk), int(offset), int(hop), int(k))
    except ValueError as exc:
        raise ParameterError(f"a streaming step's segments do not fit its plan ({exc})") from None


def offline_call(plan: Plan, *, pad: int, mode: int, hop: int, min_len: int, block: int, frame_cost: int) -> Any:
    """:meth:`supermel.MelSpectrogram.native_call`'s per-call work as one native call
    (``supermel._native_ext.OfflineCall``): ``call(x, check, limit, threads)`` takes an exact
    numpy array of the plan's dtype, 1-D ``(n,)`` or 2-D ``(rows, n)``, C-contiguous and aligned,
    ``n >= min_len`` (``>= n_fft``); refuses (None) when the memory estimate
    ``itemsize * (rows (n + 2 pad) + min(rows n_frames, block) frame_cost + rows n_frames n_out)``
    exceeds ``limit`` (``-1``: none); else pads (``mode``: 0 constant, 1 reflect, 2 edge), computes
    every frame at ``hop`` into a new ``(n_out, n_frames)`` (1-D) or ``(rows, n_out, n_frames)``
    array and returns it, or None when ``check`` finds a NaN/Inf in the input or the result.
    Calls of 512 frames or more use up to ``threads`` threads."""
    try:
        return _ext.OfflineCall(plan, int(pad), int(mode), int(hop), int(min_len), int(block), int(frame_cost))
    except ValueError as exc:
        raise ParameterError(f"an offline call's constants do not fit its plan ({exc})") from None
