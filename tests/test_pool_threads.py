"""StreamPool: non-finite chunks in push_many (any count of NaN/Inf, all-NaN included), and
several threads sharing one pool (the lock around open/push/push_many/step/close)."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel

CORE = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)


def test_all_nan_chunk_is_refused_by_push_many():
    """Issue 18 item 1: an all-NaN chunk of 4000 samples was dropped silently (``{}``)."""
    pool = supermel.StreamPool(**CORE)
    sid = pool.open()
    errs = pool.push_many([sid], [np.full(4000, np.nan, np.float32)])
    assert set(errs) == {sid} and "not finite" in str(errs[sid])
    assert pool.samples_received(sid) == 0
    with pytest.raises(supermel.ParameterError, match="not finite"):
        pool.push(sid, np.full(4000, np.nan, np.float32))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=5),
    bad=st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1), st.floats(0, 1), st.sampled_from([np.nan, np.inf, -np.inf])), max_size=6),
)
def test_push_many_refuses_every_chunk_with_a_non_finite_sample(sizes, bad):
    """Any number of NaN/Inf in any chunks (even counts, whole chunks, long and short chunks):
    exactly those streams are refused and unchanged, the others take their samples."""
    rng = np.random.default_rng(len(sizes))
    pool = supermel.StreamPool(max_backlog_seconds=1.0, **CORE)
    ids = [pool.open() for _ in sizes]
    chunks = [rng.standard_normal(m).astype(np.float32) for m in sizes]
    for i, a, b, v in bad:
        c = chunks[i % len(chunks)]
        if c.size:
            lo, hi = sorted((int(a * c.size), int(b * c.size)))
            c[lo : max(hi, lo + 1)] = v  # a run of non-finite samples, up to the whole chunk
    errs = pool.push_many(ids, chunks)
    want_bad = {sid for sid, c in zip(ids, chunks) if not np.isfinite(c).all()}
    assert set(errs) == want_bad
    for sid, c in zip(ids, chunks):
        assert pool.samples_received(sid) == (0 if sid in want_bad else c.size)


def test_threads_sharing_a_pool_get_the_offline_frames():
    """Threads open, push (in chunks), step and close streams of one pool at once; every
    stream's frames (from whichever thread stepped) equal the offline call on its audio."""
    pool = supermel.StreamPool(max_backlog_seconds=0.5, **CORE)
    rng = np.random.default_rng(7)
    n_threads, per_thread = 4, 3
    auds = [[rng.standard_normal(int(rng.integers(2000, 9000))).astype(np.float32) for _ in range(per_thread)] for _ in range(n_threads)]
    got: dict = {}  # sid -> list of (start, frames)
    got_lock = threading.Lock()
    errors: list = []
    finals: dict = {}

    def collect(out):
        with got_lock:
            for sid, f in out.items():
                got.setdefault(sid, []).append((f.start, np.array(f.frames)))

    def worker(k: int) -> None:
        try:
            r = np.random.default_rng(k)
            for a in auds[k]:
                sid = pool.open()
                pos = 0
                while pos < a.size:
                    m = int(r.integers(0, 700))
                    try:
                        if r.random() < 0.5:
                            pool.push(sid, a[pos : pos + m])
                        else:
                            e = pool.push_many([sid], [a[pos : pos + m]])
                            if e:
                                raise e[sid]
                    except supermel.ParameterError as e:
                        assert "backlog" in str(e)
                        collect(pool.step())
                        continue
                    pos += m
                    if r.random() < 0.4:
                        collect(pool.step())
                collect(pool.step())
                last = pool.close(sid)
                with got_lock:
                    finals[sid] = (a, last)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many more thread switches inside the pool's methods
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    assert len(finals) == n_threads * per_thread and len(pool) == 0
    for sid, (a, last) in finals.items():
        parts = sorted(got.get(sid, []), key=lambda p: p[0])
        n = 0
        for start, f in parts:
            assert start == n  # no gap, no overlap
            n += f.shape[-1]
        assert last.start == n
        out = np.concatenate([f for _, f in parts] + [np.asarray(last.frames)], axis=-1)
        want = supermel.melspectrogram(y=a, **CORE)
        assert out.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6 * float(np.abs(want).max()))


def test_ring_shrinks_after_a_burst_and_the_remaining_streams_are_unchanged():
    """64 streams open at once grow the ring to 64 rows; when 60 have closed it shrinks (the
    rows in use gather at the bottom: new streams take the lowest free slot), and the 4 that
    remain give the offline frames across the shrink."""
    pool = supermel.StreamPool(max_backlog_seconds=0.5, **CORE)
    rng = np.random.default_rng(3)
    ids = [pool.open() for _ in range(64)]
    assert pool._ring.shape[0] == 64
    auds = {sid: rng.standard_normal(6000).astype(np.float32) for sid in ids}
    keep = ids[:4]  # the lowest slots
    got = {sid: [] for sid in keep}
    for pos in range(0, 3000, 500):
        assert not pool.push_many(ids if pos < 1000 else keep, [auds[s][pos : pos + 500] for s in (ids if pos < 1000 else keep)])
        for sid, f in pool.step().items():
            if sid in got:
                got[sid].append(f.frames)
        if pos == 500:
            for sid in ids[4:]:
                pool.close(sid)
            assert pool._ring.shape[0] <= 8  # shrunk
    for pos in range(3000, 6000, 700):
        assert not pool.push_many(keep, [auds[s][pos : pos + 700] for s in keep])
        for sid, f in pool.step().items():
            got[sid].append(f.frames)
    for sid in keep:
        out = np.concatenate(got[sid] + [pool.close(sid).frames], axis=-1)
        want = supermel.melspectrogram(y=auds[sid], **CORE)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6 * float(np.abs(want).max()))
    assert pool._ring.shape[0] == 4 and len(pool) == 0
    assert pool.open() == 64 and pool._ring.shape[0] == 4  # and it grows again from there
