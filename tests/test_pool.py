"""StreamPool: independent streams joining, leaving and pushing out of step, one batched step.

Every stream's frames equal the offline call on that stream's audio within the bounds of
docs/exactness.md (tests/test_exactness.py's BOUNDS), whatever the schedule: hypothesis draws
joins, leaves, chunk sizes (0 and 1 included), interleavings and bad chunks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel
from test_exactness import BOUNDS, _err, _row

CORE = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)


def _sr(fe) -> int:
    return int(getattr(fe.config, "sr", None) or fe.config.sample_frequency)


def run_schedule(pool, auds, rng, *, max_chunk=900, p_push=0.6, bad=0.0, close_early=True, many=False):
    """Push each audio in random chunks, streams joining late and leaving when done; step in between.

    ``many``: each round's chunks go in through one ``push_many`` (bad chunks next to an
    unknown id). A chunk refused for the backlog is offered again in a later round.
    Returns {index: (frames list, PoolFrames of close)} and checks each step's frame indices.
    """
    n = len(auds)
    join = sorted(rng.integers(0, 4, n))  # some streams join after others have started
    ids, pos, got, last = {}, [0] * n, {i: [] for i in range(n)}, {}
    rounds = 0
    while len(last) < n:
        rounds += 1
        for i in range(n):
            if i not in ids and join[i] <= rounds and i not in last:
                ids[i] = pool.open()
        batch = []  # (index, sid, chunk)
        for i, sid in list(ids.items()):
            if rng.random() < p_push and pos[i] < len(auds[i]):
                m = int(rng.choice([0, 1, 2, int(rng.integers(0, max_chunk))]))
                if bad and rng.random() < bad:
                    before = (pool.samples_received(sid), pool.frame_count(sid))
                    if many:
                        errs = pool.push_many([sid, -1], [np.full(5, np.nan, np.float32), auds[i][:3]])
                        assert set(errs) == {sid, -1} and all(isinstance(e, supermel.ParameterError) for e in errs.values())
                    else:
                        with pytest.raises(supermel.ParameterError):
                            pool.push(sid, np.full(5, np.nan, np.float32))
                    assert (pool.samples_received(sid), pool.frame_count(sid)) == before
                batch.append((i, sid, auds[i][pos[i] : pos[i] + m]))
        if many:
            errs = pool.push_many([b[1] for b in batch], [b[2] for b in batch])
            for i, sid, chunk in batch:
                if sid in errs:
                    assert "backlog" in str(errs[sid])
                else:
                    pos[i] += len(chunk)
        else:
            for i, sid, chunk in batch:
                try:
                    pool.push(sid, chunk)
                except supermel.ParameterError as e:
                    assert "backlog" in str(e)
                    continue
                pos[i] += len(chunk)
        by_id = {sid: i for i, sid in ids.items()}
        for sid, f in pool.step().items():
            i = by_id[sid]
            assert f.start == sum(np.shape(x)[pool.time_axis] for x in got[i])
            got[i].append(f.frames)
        for i, sid in list(ids.items()):
            if pos[i] >= len(auds[i]) and (close_early or rng.random() < 0.5):
                last[i] = pool.close(sid)
                del ids[i]
    return got, last


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n_streams=st.integers(1, 6),
    pad_mode=st.sampled_from(["constant", "reflect", "edge", "symmetric", "linear_ramp"]),
    center=st.booleans(),
    n_fft=st.sampled_from([64, 100]),
    hop=st.sampled_from([16, 25, 64]),
    cap=st.sampled_from([7, 64, 4096]),
    backlog=st.sampled_from([0.03, 2.0]),
    many=st.booleans(),
)
def test_any_schedule_equals_offline(seed, n_streams, pad_mode, center, n_fft, hop, cap, backlog, many):
    """Any schedule; a 30 ms backlog (ring rows of 1024 samples) wraps every stream around its row."""
    rng = np.random.default_rng(seed)
    kw = dict(sr=8000, n_fft=n_fft, hop_length=hop, n_mels=10, pad_mode=pad_mode, center=center)
    pool = supermel.StreamPool(dtype=torch.float64, max_frames_per_step=cap, max_backlog_seconds=backlog, **kw)
    lo = 1 if center else n_fft
    auds = [rng.standard_normal(int(rng.integers(lo, 1500))) for _ in range(n_streams)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's short-input warning
        got, last = run_schedule(pool, auds, rng, max_chunk=150, bad=0.1, many=many)
        for i, a in enumerate(auds):
            out = np.concatenate(got[i] + [last[i].frames], axis=-1)
            want = supermel.melspectrogram(y=a, **kw)
            assert out.shape == want.shape
            np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(want).max()))
    assert len(pool) == 0


@pytest.mark.parametrize("executor", ["numpy", "torch"])
def test_core_on_speech_within_the_streaming_bound(executor, speech):
    y = speech[0]
    rng = np.random.default_rng(3)
    pool = supermel.StreamPool(executor=executor, **CORE)
    auds = [y[int(rng.integers(0, 40000)) :][: int(rng.integers(3000, 80000))] for _ in range(8)]
    got, last = run_schedule(pool, auds, rng, max_chunk=2000)
    metric, b32, _ = BOUNDS["stream-core"]
    for i, a in enumerate(auds):
        out = np.concatenate(got[i] + [last[i].frames], axis=-1)
        assert _err(out, supermel.melspectrogram(y=a, **CORE), metric) <= b32


@pytest.mark.parametrize("name", sorted(supermel.frontends()))
@pytest.mark.parametrize("executor", ["auto", "torch"])
def test_every_preset_equals_offline(name, executor, speech_at):
    fe = supermel.frontend(name)
    sr = _sr(fe)
    y = speech_at(sr)
    rng = np.random.default_rng(5)
    pool = supermel.StreamPool(name, executor=executor)
    auds = [y[int(rng.integers(0, 3 * sr)) :][: int(rng.integers(sr // 2, 3 * sr))] for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, last = run_schedule(pool, auds, rng, max_chunk=3000)
        metric, b32, _ = BOUNDS[_row(name)]
        for i, a in enumerate(auds):
            out = np.concatenate(got[i] + [last[i].frames], axis=fe.time_axis)
            if not fe.frame_local:
                out = pool.finalize(out, len(a))
            assert _err(out, fe(a), metric) <= b32, name


def test_wav2lip_windows_per_stream(speech):
    y = speech[0]
    pool = supermel.StreamPool("wav2lip")
    fe = supermel.frontend("wav2lip")
    rates = [25, 29.97, 30]
    ids = [pool.open(fps=f) for f in rates]
    auds = [y[:40000], y[5000:30000], y[100:16100]]
    wins = {sid: [] for sid in ids}
    rng = np.random.default_rng(0)
    pos = [0, 0, 0]
    while any(p < len(a) for p, a in zip(pos, auds)):
        for j, sid in enumerate(ids):
            m = int(rng.integers(0, 1200))
            pool.push(sid, auds[j][pos[j] : pos[j] + m])
            pos[j] += m
        for sid, f in pool.step().items():
            if f.windows is not None:
                assert f.window_start == sum(len(w) for w in wins[sid])
                wins[sid].append(f.windows)
    for j, sid in enumerate(ids):
        f = pool.close(sid)
        if f.windows is not None:
            wins[sid].append(f.windows)
        got = np.concatenate(wins[sid], axis=0)
        want = supermel.wav2lip_mel_chunks(fe(auds[j]), rates[j])
        assert got.shape == want.shape
        assert _err(got, want, "abs") <= BOUNDS["stream-wav2lip"][1]


def test_bad_chunks_are_refused_for_that_stream_alone():
    pool = supermel.StreamPool(**CORE)
    a, b = pool.open(), pool.open()
    y = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    pool.push(a, y[:1000])
    pool.push(b, y[:1000])
    for bad, match in [
        (np.array([0.0, np.nan], np.float32), "not finite"),
        (np.array([0.0, np.inf]), "not finite"),
        (np.arange(4, dtype=np.int16), "floating point"),
        (np.zeros((2, 4), np.float32), "shape"),
    ]:
        with pytest.raises(supermel.ParameterError, match=match):
            pool.push(a, bad)
    with pytest.raises(supermel.ParameterError, match="not open"):
        pool.push(12345, y[:10])
    assert pool.samples_received(a) == pool.samples_received(b) == 1000
    out = pool.step()
    np.testing.assert_array_equal(out[a].frames, out[b].frames)  # same audio, same route, same step


def test_push_many_reports_each_refusal_and_takes_the_rest():
    pool = supermel.StreamPool(**CORE)
    a, b, c = pool.open(), pool.open(), pool.open()
    y = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    errs = pool.push_many([a, b, c, 999], [y[:1000], np.array([1.0, np.nan], np.float32), y[:1000].astype(np.float64), y[:5]])
    assert set(errs) == {b, 999}
    assert "not finite" in str(errs[b]) and "not open" in str(errs[999])
    assert [pool.samples_received(s) for s in (a, b, c)] == [1000, 0, 1000]  # c: converted like push()
    with pytest.raises(supermel.ParameterError, match="at most once"):
        pool.push_many([a, a], [y[:10], y[:10]])
    with pytest.raises(supermel.ParameterError, match="one chunk per id"):
        pool.push_many([a, b], [y[:10]])
    assert pool.samples_received(a) == 1000
    out = pool.step()
    np.testing.assert_array_equal(out[a].frames, out[c].frames)  # same audio, same route, same step


def test_push_many_equals_push_one_by_one():
    """push_many's writes (slice assignments inside a row, _write where a chunk wraps around it) equal push's."""
    rng = np.random.default_rng(4)
    auds = [rng.standard_normal(30000).astype(np.float32) for _ in range(5)]
    pools = [supermel.StreamPool(max_backlog_seconds=0.1, **CORE) for _ in range(2)]
    ids = [[p.open() for _ in auds] for p in pools]
    pos = 0
    while pos < 30000:
        m = int(rng.integers(0, 700))
        assert not pools[0].push_many(ids[0], [a[pos : pos + m] for a in auds])
        for sid, a in zip(ids[1], auds):
            pools[1].push(sid, a[pos : pos + m])
        pos += m
        np.testing.assert_array_equal(pools[0]._ring, pools[1]._ring)
        outs = [p.step() for p in pools]
        for s0, s1 in zip(*ids):
            assert (s0 in outs[0]) == (s1 in outs[1])
            if s0 in outs[0]:
                np.testing.assert_array_equal(outs[0][s0].frames, outs[1][s1].frames)


def test_backlog_is_bounded_and_refusal_leaves_the_stream_unchanged():
    pool = supermel.StreamPool(max_backlog_seconds=0.5, **CORE)
    a = pool.open()
    pool.push(a, np.zeros(7000, np.float32))
    with pytest.raises(supermel.ParameterError, match="over the backlog limit"):
        pool.push(a, np.zeros(7000, np.float32))
    assert pool.samples_received(a) == 7000
    pool.step()  # consume
    pool.push(a, np.zeros(7000, np.float32))  # fits again
    assert pool.samples_received(a) == 14000


def test_frames_per_step_are_capped_and_served_in_rotation():
    pool = supermel.StreamPool(max_frames_per_step=10, **CORE)
    ids = [pool.open() for _ in range(3)]
    for sid in ids:
        pool.push(sid, np.zeros(16000, np.float32))  # 79 ready frames each
    served = set()
    total = 0
    while True:
        out = pool.step()
        if not out:
            break
        k = sum(f.frames.shape[-1] for f in out.values())
        assert k <= 10
        total += k
        served |= set(out)
    assert served == set(ids) and total == 3 * 79
    assert all(pool.pending_frames(s) == 0 for s in ids)


def test_memory_is_constant_over_a_long_stream():
    pool = supermel.StreamPool(**CORE)
    sid = pool.open()
    chunk = np.random.default_rng(0).standard_normal(320).astype(np.float32)
    for _ in range(3000):  # 60 s in 20 ms chunks
        pool.push(sid, chunk)
        pool.step()
    assert pool._ring.nbytes <= 4 * 2 * pool.capacity * 4  # the ring never grows past its rows
    assert pool.frame_count(sid) == (3000 * 320 + 400 - 800) // 200 + 1  # every ready frame handed out


def test_ids_are_freed_and_reused_slots_start_clean():
    pool = supermel.StreamPool(**CORE)
    y = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    a = pool.open()
    pool.push(a, y * 100)
    pool.step()
    pool.close(a)
    with pytest.raises(supermel.ParameterError, match="not open"):
        pool.close(a)
    b = pool.open()  # takes a's ring row
    pool.push(b, y)
    frames = [pool.step()[b].frames, pool.close(b).frames]
    np.testing.assert_allclose(np.concatenate(frames, -1), supermel.melspectrogram(y=y, **CORE), rtol=2e-5, atol=1e-6)


def test_close_of_an_empty_stream_and_errors():
    pool = supermel.StreamPool(**CORE)
    a = pool.open()
    with pytest.raises(supermel.ParameterError, match="no input"):
        pool.close(a)
    assert len(pool) == 0
    with pytest.raises(supermel.ParameterError, match="fps"):
        pool.open(fps=25)  # windows are Wav2Lip's
    with pytest.raises(supermel.ParameterError, match="unknown keyword"):
        supermel.StreamPool(nfft=512)
    with pytest.raises(supermel.ParameterError, match="max_frames_per_step"):
        supermel.StreamPool(max_frames_per_step=0, **CORE)
