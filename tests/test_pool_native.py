"""StreamPool's tick in C++ (src/native/pool.hpp: pool_push, pool_due, pool_gather).

* the native tick equals the Python bookkeeping it replaced (``pool._native_tick = False``) bit
  for bit, over random out-of-step schedules (hypothesis): the same refusals with the same
  messages, the same per-stream frame indices, the same frames (the same kernel), the same
  last frames at close;
* chunks that are not 1-D contiguous aligned numpy arrays of the pool's dtype (strided, misaligned,
  read-only, zero-size, other dtypes, tensors, subclasses) are taken as ``push`` takes them;
* the checked wrappers in supermel._native refuse bad rings, counters, tables and outputs with a
  ParameterError before any native call, and the C++ refuses out-of-bounds table entries.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel
from supermel import _native

pytestmark = pytest.mark.skipif(not _native.enabled(), reason="the native extension is not built or is switched off (SUPERMEL_NATIVE=0)")

CORE = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)


def _pair(**kw):
    """Two pools of one configuration: the native tick and the Python bookkeeping."""
    a = supermel.StreamPool(**{**CORE, **kw})
    b = supermel.StreamPool(**{**CORE, **kw})
    b._native_tick = False
    return a, b


def _same_step(sa, sb):
    assert list(sa) == list(sb)
    for sid in sb:
        fa, fb = sa[sid], sb[sid]
        assert fa.start == fb.start
        assert fa.frames.dtype == fb.frames.dtype and fa.frames.shape == fb.frames.shape
        np.testing.assert_array_equal(fa.frames, fb.frames)  # bit for bit: the same kernel on the same frames


def _same_errors(ea, eb):
    assert list(ea) == list(eb) or set(ea) == set(eb)
    assert {k: str(v) for k, v in ea.items()} == {k: str(v) for k, v in eb.items()}
    assert all(isinstance(v, supermel.ParameterError) for v in ea.values())


def _chunk(rng, kind, m):
    x = rng.standard_normal(m).astype(np.float32) * 0.3
    if kind == "nan" and m:
        x[rng.integers(0, m)] = np.nan
    elif kind == "strided":
        x = np.repeat(x, 2)[::2]
    elif kind == "misaligned":
        buf = np.zeros(4 * m + 1, np.uint8)
        y = buf[1:].view(np.float32)
        y[:] = x
        x = y
    elif kind == "readonly":
        x.setflags(write=False)
    elif kind == "float64":
        x = x.astype(np.float64)
    elif kind == "tensor":
        x = torch.from_numpy(x)
    elif kind == "2d":
        x = x[None]
    elif kind == "bigendian":
        x = x.astype(">f4")
    elif kind == "float16":
        x = x.astype(np.float16)
    elif kind == "subclass":
        x = x.view(_Sub)
    elif kind == "column":
        x = np.repeat(x[:, None], 2, axis=1)[:, 0]
    return x


class _Sub(np.ndarray):
    pass


KINDS = ["plain"] * 8 + ["nan", "strided", "misaligned", "readonly", "float64", "tensor", "2d", "empty", "huge", "bigendian", "subclass", "column"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_streams=st.integers(1, 12), cap=st.sampled_from([4096, 7, 1]), center=st.booleans(),
       check_finite=st.booleans())
def test_native_tick_equals_the_python_bookkeeping(seed, n_streams, cap, center, check_finite):
    rng = np.random.default_rng(seed)
    a, b = _pair(max_frames_per_step=cap, max_backlog_seconds=0.1, center=center, check_finite=check_finite)
    open_ids = []
    for _ in range(40):
        r = rng.random()
        if r < 0.15 or not open_ids:
            if len(open_ids) < n_streams:
                sid = a.open()
                assert b.open() == sid
                open_ids.append(sid)
        elif r < 0.22:
            sid = open_ids.pop(int(rng.integers(0, len(open_ids))))
            try:
                fa = a.close(sid)
            except supermel.ParameterError as e:
                with pytest.raises(supermel.ParameterError, match=re.escape(str(e))):
                    b.close(sid)
            else:
                fb = b.close(sid)
                assert fa.start == fb.start
                np.testing.assert_array_equal(fa.frames, fb.frames)
        ids, chunks = [], []
        for sid in open_ids:
            if rng.random() < 0.8:
                kind = KINDS[int(rng.integers(0, len(KINDS)))]
                m = 0 if kind == "empty" else int(rng.integers(1000, 4000)) if kind == "huge" else int(rng.choice([1, 2, int(rng.integers(0, 700))]))
                ids.append(sid)
                chunks.append(_chunk(rng, kind, m))
        if rng.random() < 0.2:
            ids.append(10_000)  # an unknown id
            chunks.append(np.zeros(3, np.float32))
        order = rng.permutation(len(ids))
        ids, chunks = [ids[i] for i in order], [chunks[i] for i in order]
        ea = a.push_many(ids, chunks)
        eb = b.push_many(ids, [c.clone() if isinstance(c, torch.Tensor) else c.copy() for c in chunks])
        _same_errors(ea, eb)
        for sid in open_ids:
            assert a.samples_received(sid) == b.samples_received(sid)
            assert a.pending_frames(sid) == b.pending_frames(sid)
        if rng.random() < 0.7:
            _same_step(a.step(), b.step())
    for sid in open_ids:
        _same_step(a.step(), b.step())
        try:
            fa = a.close(sid)
        except supermel.ParameterError:
            with pytest.raises(supermel.ParameterError):
                b.close(sid)
            continue
        fb = b.close(sid)
        np.testing.assert_array_equal(fa.frames, fb.frames)


@pytest.mark.parametrize("preset", ["whisper-80", "wav2lip", "hifigan-22k", "speecht5", "nemo-80"])
def test_native_tick_equals_the_python_bookkeeping_on_presets(preset):
    """Presets whose step emits per stream (Whisper withholds its last frame, Wav2Lip windows) or
    post-processes the block (log mel, time-major)."""
    a = supermel.StreamPool(preset)
    b = supermel.StreamPool(preset)
    b._native_tick = False
    fps = 25 if preset == "wav2lip" else None
    sr = int(a.sr)
    ids = [a.open(fps=fps) for _ in range(5)]
    assert [b.open(fps=fps) for _ in range(5)] == ids
    rng = np.random.default_rng(1)
    for _ in range(12):
        chunks = [rng.standard_normal(int(rng.integers(0, sr // 10))).astype(np.float32) * 0.2 for _ in ids]
        _same_errors(a.push_many(ids, chunks), b.push_many(ids, chunks))
        sa, sb = a.step(), b.step()
        _same_step(sa, sb)
        for sid in sb:
            if sb[sid].windows is None:
                assert sa[sid].windows is None
            else:
                np.testing.assert_array_equal(sa[sid].windows, sb[sid].windows)
    for sid in ids:
        np.testing.assert_array_equal(a.close(sid).frames, b.close(sid).frames)


def test_pool_step_result_is_lazy_and_complete():
    pool = supermel.StreamPool(**CORE)
    ids = [pool.open() for _ in range(4)]
    pool.push_many(ids, [np.zeros(800 + 160 * i, np.float32) for i in range(4)])
    step = pool.step()
    assert step._lists is None and step._index is None  # nothing per stream made yet
    assert len(step) == 4
    assert step.ids == ids and all(type(v) is int for v in step.ids + step.starts + step.offsets + step.counts)
    assert step.counts == [4, 5, 6, 7] and step.offsets == [0, 4, 9, 15] and step.starts == [0] * 4  # (n - n_fft + 2 pad) // hop + 1 frames
    assert step.features.shape == (40, 22)
    np.testing.assert_array_equal(step[ids[2]].frames, step.features[:, 9:15])
    assert ids[3] in step and 99 not in step and sorted(step) == ids


def test_chunks_of_every_layout_are_taken_as_push_takes_them():
    """The chunks pool_push leaves to Python (and the zero-size and read-only ones it takes)."""
    rng = np.random.default_rng(0)
    a, b = _pair()
    kinds = ["plain", "strided", "misaligned", "readonly", "float64", "tensor", "empty", "nan", "2d", "bigendian", "float16", "subclass", "column"]
    ids = [a.open() for _ in kinds]
    assert [b.open() for _ in kinds] == ids
    chunks = [_chunk(rng, k, 0 if k == "empty" else 500) for k in kinds]
    ea = a.push_many(ids, chunks)
    eb = {}
    for sid, c in zip(ids, chunks):
        try:
            b.push(sid, c)
        except supermel.ParameterError as e:
            eb[sid] = e
    _same_errors(ea, eb)
    assert set(ea) == {ids[kinds.index("nan")], ids[kinds.index("2d")]}
    assert "not finite" in str(ea[ids[kinds.index("nan")]])
    for sid in ids:
        assert a.samples_received(sid) == b.samples_received(sid)
    _same_step(a.step(), b.step())


def test_pool_push_refuses_bad_arguments_before_the_native_call():
    pool = supermel.StreamPool(**CORE)
    sid = pool.open()
    lay, C = pool.layout, pool.capacity
    kw = dict(C=C, L=lay.L, head=lay.head, s0=lay.s0, hop=lay.hop, tail_keep=pool._tail_keep, check_finite=True)
    x = [np.zeros(10, np.float32)]
    good = (pool._ring, pool._n, pool._t)
    ro = pool._ring.copy()
    ro.setflags(write=False)
    bad_rings = [pool._ring[:, :-1], pool._ring[:, ::2], ro, pool._ring.astype(np.float16), pool._ring.T, pool._ring.tolist()]
    for ring in bad_rings:
        with pytest.raises(supermel.ParameterError, match="pool ring"):
            _native.pool_push(ring, pool._n, pool._t, x, [0], **kw)
    for n in (pool._n.astype(np.int32), pool._n[:1], pool._n[::-1], np.zeros((pool._n.size, 1), np.int64)):
        with pytest.raises(supermel.ParameterError, match="counters"):
            _native.pool_push(pool._ring, n, pool._t, x, [0], **kw)
    with pytest.raises(supermel.ParameterError, match="list"):
        _native.pool_push(*good, tuple(x), [0], **kw)
    with pytest.raises(supermel.ParameterError, match="list"):
        _native.pool_push(*good, x, [0, 1], **kw)
    # checked again in C++: a slot outside the ring
    with pytest.raises(supermel.ParameterError, match="slot"):
        _native.pool_push(*good, x, [pool._ring.shape[0]], **kw)
    with pytest.raises(supermel.ParameterError, match="slot"):
        _native.pool_push(*good, x, [-1], **kw)
    assert _native.pool_push(*good, x, [None], **kw) == [(0, _native.PUSH_UNKNOWN, 0)]
    assert pool.samples_received(sid) == 0
    assert [r[:2] for r in _native.pool_push(*good, [np.full(3, np.inf, np.float32), np.zeros(0, np.float32)], [0, 1], **kw)] == [(0, _native.PUSH_NOT_FINITE)]
    over = C - lay.L + 1
    assert _native.pool_push(*good, [np.zeros(over, np.float32)], [0], **kw) == [(0, _native.PUSH_OVER_BACKLOG, over)]
    assert _native.pool_push(*good, [np.zeros(5, np.float64), torch.zeros(5), "abc"], [0, 1, 2], **kw) == [(i, _native.PUSH_OTHER, 0) for i in range(3)]
    assert pool.samples_received(sid) == 0
    assert _native.pool_push(*good, [np.arange(5, dtype=np.float32)], [0], **kw) == []
    assert pool.samples_received(sid) == 5 and pool._ring[0, :5].tolist() == [0, 1, 2, 3, 4]
    assert pool._ring[0, C : C + 5].tolist() == [0, 1, 2, 3, 4]  # the mirror


def _due_setup():
    pool = supermel.StreamPool(**CORE)
    ids = [pool.open() for _ in range(3)]
    pool.push_many(ids, [np.ones(2000, np.float32)] * 3)
    pool.step()  # the head frames (left padding) go through the Python side
    pool.push_many(ids, [np.ones(480, np.float32)] * 3)
    oid, osl = pool._order
    lay = pool.layout
    due = dict(max_frames=4096, L=lay.L, s0=lay.s0, hop=lay.hop, ctx=lay.ctx, head=lay.head)
    return pool, oid, osl, due


def test_pool_due_and_gather_compute_what_run_gather_computes():
    pool, oid, osl, due = _due_setup()
    lay, plan = pool.layout, pool._native_plan
    table = np.empty((_native.POOL_ROWS, 3), np.int64)
    t_before = pool._t.copy()
    active, K, heads = _native.pool_due(oid, osl, 1, pool._n, pool._t, table, **due)
    assert (active, K, heads) == (3, 9, 0)
    assert table[_native.POOL_ID, :3].tolist() == [1, 2, 0]  # rotation from index 1
    assert table[_native.POOL_OFF, :3].tolist() == [0, 3, 6] and table[_native.POOL_TAKE, :3].tolist() == [3, 3, 3]
    out = np.empty((40, K), np.float32)
    _native.pool_gather(plan, pool._ring, table, active, out.T, pool._t, pool._em, advance_em=True, C=pool.capacity, hop=lay.hop, s0=lay.s0,
                        dtype=np.float32, out_dtype=np.float32)
    assert (pool._t[:3] - t_before[:3]).tolist() == [3, 3, 3]
    slots = np.repeat(table[_native.POOL_SLOT, :3], 3)
    starts = np.concatenate([(lay.s0 + (t_before[s] + np.arange(3)) * lay.hop) % pool.capacity for s in table[_native.POOL_SLOT, :3]])
    ref = _native.run_gather(plan, pool._ring, slots, starts, dtype=np.float32, out_dtype=np.float32)
    np.testing.assert_array_equal(out.T, ref)
    # capped: max_frames 4 takes 3 frames of the first stream and 1 of the second
    table2 = np.empty_like(table)
    pool._t[:] = t_before
    assert _native.pool_due(oid, osl, 0, pool._n, pool._t, table2, **{**due, "max_frames": 4}) == (2, 4, 0)
    assert table2[_native.POOL_TAKE, :2].tolist() == [3, 1]


def test_pool_due_and_gather_refuse_bad_arguments():
    pool, oid, osl, due = _due_setup()
    lay, plan = pool.layout, pool._native_plan
    table = np.empty((_native.POOL_ROWS, 3), np.int64)
    for ids, slots in ((oid.astype(np.int32), osl), (oid, osl[:2]), (oid[::-1], osl)):
        with pytest.raises(supermel.ParameterError, match="ids and slots"):
            _native.pool_due(ids, slots, 0, pool._n, pool._t, table, **due)
    for tab in (table[:, :2], table.astype(np.int32), np.asfortranarray(table)):
        with pytest.raises(supermel.ParameterError, match="table"):
            _native.pool_due(oid, osl, 0, pool._n, pool._t, tab, **due)
    with pytest.raises(supermel.ParameterError, match="rotation"):
        _native.pool_due(oid, osl, 3, pool._n, pool._t, table, **due)
    bad_slots = osl.copy()
    bad_slots[1] = 10_000
    with pytest.raises(supermel.ParameterError, match="slot"):
        _native.pool_due(oid, bad_slots, 0, pool._n, pool._t, table, **due)
    active, K, _ = _native.pool_due(oid, osl, 0, pool._n, pool._t, table, **due)
    gk = dict(advance_em=True, C=pool.capacity, hop=lay.hop, s0=lay.s0, dtype=np.float32, out_dtype=np.float32)
    out = np.empty((40, K), np.float32)
    t0 = pool._t.copy()
    ro = out.copy()
    ro.setflags(write=False)
    misaligned = np.zeros(40 * K * 4 + 1, np.uint8)[1:].view(np.float32).reshape(40, K)
    for o in (out.T[:-1], out.T.astype(np.float64), ro.T, misaligned.T, out.T[::-1], out):
        with pytest.raises(supermel.ParameterError, match="out"):
            _native.pool_gather(plan, pool._ring, table, active, o, pool._t, pool._em, **gk)
    with pytest.raises(supermel.ParameterError, match="ring"):
        _native.pool_gather(plan, pool._ring.astype(np.float64), table, active, out.T, pool._t, pool._em, **gk)
    with pytest.raises(supermel.ParameterError, match="table"):
        _native.pool_gather(plan, pool._ring, table, 4, out.T, pool._t, pool._em, **gk)
    # entries that would point outside the ring or the output: refused in C++, nothing computed or advanced
    for row, value in ((_native.POOL_SLOT, 10_000), (_native.POOL_SLOT, -1), (_native.POOL_OFF, K), (_native.POOL_TAKE, K + 1), (_native.POOL_HEAD, 99),
                       (_native.POOL_T0, -1)):
        bad = table.copy()
        bad[row, 1] = value
        with pytest.raises(supermel.ParameterError, match="table entry"):
            _native.pool_gather(plan, pool._ring, bad, active, out.T, pool._t, pool._em, **gk)
        np.testing.assert_array_equal(pool._t, t0)
    # zero frames: nothing to do
    _native.pool_gather(plan, pool._ring, table, 0, np.empty((0, 40), np.float32), pool._t, pool._em, **gk)
    np.testing.assert_array_equal(pool._t, t0)


def test_the_checked_ring_does_not_keep_a_replaced_ring_alive():
    """open() grows and close() shrinks the ring: the native calls' checked arrays follow, and the old
    ring's memory is not held by them (the churn of a server)."""
    import weakref

    pool = supermel.StreamPool(**CORE)
    ids = [pool.open() for _ in range(32)]
    pool.push_many(ids, [np.zeros(1000, np.float32)] * 32)
    pool.step()
    old = weakref.ref(pool._ring)
    for sid in ids[4:]:
        pool.close(sid)
    assert pool._ring.shape[0] < 32 and old() is None
    pool.push_many(ids[:4], [np.zeros(400, np.float32)] * 4)
    assert pool._pool_ring.holds(pool._ring, pool._n, pool._t, pool._em)
    assert sorted(pool.step()) == ids[:4]


@pytest.mark.parametrize("center", [True, False])
def test_native_tick_equals_the_python_bookkeeping_in_float64(center):
    a, b = _pair(dtype=torch.float64, center=center, max_backlog_seconds=0.1, max_frames_per_step=9)
    ids = [a.open() for _ in range(6)]
    assert [b.open() for _ in range(6)] == ids
    rng = np.random.default_rng(5)
    for _ in range(30):
        chunks = [rng.standard_normal(int(rng.integers(0, 500))) for _ in ids]
        chunks[int(rng.integers(0, 6))] = np.full(3, np.inf)  # refused, float64 like the pool
        _same_errors(a.push_many(ids, chunks), b.push_many(ids, chunks))
        sa, sb = a.step(), b.step()
        assert a.layout is not None and (not sa or sa.features.dtype == np.float64)
        _same_step(sa, sb)
    for sid in ids:
        np.testing.assert_array_equal(a.close(sid).frames, b.close(sid).frames)


def test_pool_push_ids_looks_up_and_checks_the_ids_in_cpp():
    """pool_push_ids: pool_push with the ids' duplicate check and id -> slot lookups in C++; an id twice
    (IDS_DUPLICATE) or an id it cannot look up (IDS_IN_PYTHON: not an exact int, not open) writes nothing."""
    pool = supermel.StreamPool(**CORE)
    ids = [pool.open() for _ in range(3)]
    lay, C = pool.layout, pool.capacity
    kw = dict(C=C, L=lay.L, head=lay.head, s0=lay.s0, hop=lay.hop, tail_keep=pool._tail_keep, check_finite=True)
    good = (pool._ring, pool._n, pool._t)
    x = [np.arange(5, dtype=np.float32) + i for i in range(3)]
    for bad_ids in ([0, 1, 1], [2, 0, 2]):
        assert _native.pool_push_ids(*good, x, bad_ids, pool._slot_of, **kw) == _native.IDS_DUPLICATE
    for bad_ids in ([0, 1, 99], [0, np.int64(1), 2], [0, True, 2], [0, 1.0, 2], [0, "1", 2]):
        assert _native.pool_push_ids(*good, x, bad_ids, pool._slot_of, **kw) == _native.IDS_IN_PYTHON
    assert [pool.samples_received(s) for s in ids] == [0, 0, 0]
    # refused before the native call, or in C++
    with pytest.raises(supermel.ParameterError, match="list"):
        _native.pool_push_ids(*good, x, tuple(ids), pool._slot_of, **kw)
    with pytest.raises(supermel.ParameterError, match="list"):
        _native.pool_push_ids(*good, x[:2], ids, pool._slot_of, **kw)
    with pytest.raises(supermel.ParameterError, match="dict"):
        _native.pool_push_ids(*good, x, ids, list(pool._slot_of.items()), **kw)
    for bad_slot in (10_000, -1, 1.0, None):
        with pytest.raises(supermel.ParameterError, match="slot"):
            _native.pool_push_ids(*good, x, ids, {**pool._slot_of, ids[1]: bad_slot}, **kw)
    with pytest.raises(supermel.ParameterError, match="pool ring"):
        _native.pool_push_ids(pool._ring[:, :-1], pool._n, pool._t, x, ids, pool._slot_of, **kw)
    assert [pool.samples_received(s) for s in ids] == [0, 0, 0]
    # what pool_push does with the slots
    x[1] = np.full(4, np.nan, np.float32)
    assert [r[:2] for r in _native.pool_push_ids(*good, x, ids[::-1], pool._slot_of, **kw)] == [(1, _native.PUSH_NOT_FINITE)]
    assert [pool.samples_received(s) for s in ids] == [5, 0, 5]
    assert pool._ring[pool._slot_of[ids[0]], :5].tolist() == [2, 3, 4, 5, 6] and pool._ring[pool._slot_of[ids[2]], :5].tolist() == [0, 1, 2, 3, 4]
    assert _native.pool_push_ids(*good, [], [], pool._slot_of, **kw) == []


@pytest.mark.parametrize("ids", [[1, 1], [7, 7], [np.int64(0), np.int64(0)], [0, 7, 0]])
def test_push_many_duplicate_and_unknown_ids_as_before(ids):
    """The ids' checks moved into C++ keep push_many's errors: a duplicate raises (nothing written),
    an unknown id is reported per chunk, ids that are not exact ints take the Python checks."""
    a, b = _pair()
    for p in (a, b):
        for _ in range(3):
            p.open()
    chunks = [np.ones(100, np.float32)] * len(ids)
    with pytest.raises(supermel.ParameterError) as ea:
        a.push_many(ids, chunks)
    with pytest.raises(supermel.ParameterError) as eb:
        b.push_many(ids, chunks)
    assert str(ea.value) == str(eb.value) and "at most once" in str(ea.value)
    assert [a.samples_received(s) for s in range(3)] == [0, 0, 0]
    mixed = [np.int64(2), 7, 0]
    _same_errors(a.push_many(mixed, chunks[:1] * 3), b.push_many(mixed, chunks[:1] * 3))
    assert [a.samples_received(s) for s in range(3)] == [b.samples_received(s) for s in range(3)] == [100, 0, 100]


def test_pool_step_is_pool_due_then_pool_gather():
    """pool_step: pool_due and pool_gather in one call, into a new (1, n_out, K) block; with head frames due
    it computes and advances nothing (the caller writes the head frames, then calls pool_gather)."""
    pool, oid, osl, due = _due_setup()
    lay, plan = pool.layout, pool._native_plan
    sk = dict(max_frames=4096, C=pool.capacity, s0=lay.s0, hop=lay.hop, ctx=lay.ctx, head=lay.head, advance_em=True, dtype=np.float32,
              out_dtype=np.float32)
    t0, em0 = pool._t.copy(), pool._em.copy()
    table = np.empty((_native.POOL_ROWS, 3), np.int64)
    active, K, heads, out = _native.pool_step(plan, pool._ring, oid, osl, 1, pool._n, pool._t, pool._em, table, **sk)
    assert (active, K, heads) == (3, 9, 0) and out.shape == (1, 40, 9) and out.dtype == np.float32
    t1, em1 = pool._t.copy(), pool._em.copy()
    pool._t[:], pool._em[:] = t0, em0
    ref_table = np.empty_like(table)
    assert _native.pool_due(oid, osl, 1, pool._n, pool._t, ref_table, **due) == (3, 9, 0)
    ref = np.empty((40, 9), np.float32)
    _native.pool_gather(plan, pool._ring, ref_table, 3, ref.T, pool._t, pool._em, advance_em=True, C=pool.capacity, hop=lay.hop, s0=lay.s0,
                        dtype=np.float32, out_dtype=np.float32)
    np.testing.assert_array_equal(out[0], ref)
    np.testing.assert_array_equal(table, ref_table)
    np.testing.assert_array_equal(pool._t, t1)
    np.testing.assert_array_equal(pool._em, em1)
    # nothing due: no block
    assert _native.pool_step(plan, pool._ring, oid, osl, 0, pool._n, pool._t, pool._em, table, **sk)[1:] == (0, 0, None)
    # a new stream's head frames: the block allocated, nothing computed or advanced
    sid = pool.open()
    pool.push(sid, np.ones(1000, np.float32))
    oid2 = np.array(list(pool._streams), np.int64)
    osl2 = np.array([st.slot for st in pool._streams.values()], np.int64)
    t2 = pool._t.copy()
    table2 = np.empty((_native.POOL_ROWS, 4), np.int64)
    active, K, heads, out = _native.pool_step(plan, pool._ring, oid2, osl2, 0, pool._n, pool._t, pool._em, table2, **sk)
    assert heads == 1 and out.shape == (1, 40, K)
    np.testing.assert_array_equal(pool._t, t2)


def test_pool_step_refuses_bad_arguments():
    pool, oid, osl, due = _due_setup()
    lay, plan = pool.layout, pool._native_plan
    sk = dict(max_frames=4096, C=pool.capacity, s0=lay.s0, hop=lay.hop, ctx=lay.ctx, head=lay.head, advance_em=True, dtype=np.float32,
              out_dtype=np.float32)
    table = np.empty((_native.POOL_ROWS, 3), np.int64)
    t0 = pool._t.copy()
    args = (plan, pool._ring, oid, osl, 0, pool._n, pool._t, pool._em)
    with pytest.raises(supermel.ParameterError, match="ring"):
        _native.pool_step(plan, pool._ring.astype(np.float64), oid, osl, 0, pool._n, pool._t, pool._em, table, **sk)
    with pytest.raises(supermel.ParameterError, match="counters"):
        _native.pool_step(plan, pool._ring, oid, osl, 0, pool._n[:1], pool._t, pool._em, table, **sk)
    with pytest.raises(supermel.ParameterError, match="ids and slots"):
        _native.pool_step(plan, pool._ring, oid, osl[:2], 0, pool._n, pool._t, pool._em, table, **sk)
    for tab in (table[:, :2], table.astype(np.int32)):
        with pytest.raises(supermel.ParameterError, match="table"):
            _native.pool_step(*args, tab, **sk)
    with pytest.raises(supermel.ParameterError, match="rotation"):
        _native.pool_step(plan, pool._ring, oid, osl, 3, pool._n, pool._t, pool._em, table, **sk)
    with pytest.raises(supermel.ParameterError, match="out_dtype"):
        _native.pool_step(*args, table, **{**sk, "out_dtype": np.int32})
    # checked in C++: the plan's output dtype (float32 here), a slot outside the counters; nothing advanced
    with pytest.raises(supermel.ParameterError, match="dtype"):
        _native.pool_step(*args, table, **{**sk, "out_dtype": np.float64})
    bad = osl.copy()
    bad[1] = 10_000
    with pytest.raises(supermel.ParameterError, match="slot"):
        _native.pool_step(plan, pool._ring, oid, bad, 0, pool._n, pool._t, pool._em, table, **sk)
    np.testing.assert_array_equal(pool._t, t0)
