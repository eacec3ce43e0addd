"""The serving workloads: many independent live streams, out of step, one call = one tick.

A tick: every stream pushes one 20 ms chunk (320 samples at 16 kHz), the streams'
frame phases all different (they joined at different times), then the frames
are computed. Peers, same audio, same frames, same run:

* ``supermel`` — :class:`supermel.StreamPool`: one ``push_many`` of the 256
  chunks (what a server does with the chunks that arrived since the last tick)
  and one ``step`` (the frames of every stream in one batched computation; the
  per-stream entries of its result are views made when read, as a consumer
  slices the lockstep peer's ``(S, n_mels, k)`` array);
* ``supermel push()`` — the same with 256 ``push`` calls;
* ``supermel lockstep`` — one ``StreamingMelSpectrogram(num_streams=S)``
  ``push((S, 320))``: the same frame count, but only possible when the streams
  advance in lockstep (the lower bound a pool is held to);
* ``supermel per stream`` — one ``StreamingMelSpectrogram`` per stream, pushed
  one after the other (what a server without a pool does).

The chunks are views of one array, made before the timing (a server receives
each client's chunk as a buffer of its own; the lockstep peer gets its
``(S, 320)`` slice of the same array): the per-stream peers cycle through 100
ticks of chunks (32000 samples, 160 hops: every stream keeps its frame phase).

Exactness: stream 0 of a fresh pool (all streams joined at different offsets)
against librosa's offline frames of its audio.
"""

from __future__ import annotations

from typing import Any, List

import numpy as np

from .harness import _HOP, _NFFT, _SR, REFERENCE, Built, Case, Workload, _signal
from .peers import _librosa_mel, _supermel_api

#: One 20 ms chunk at 16 kHz.
CHUNK = 320


#: Ticks in a cycle of the per-stream peers' chunks: 100 x 320 samples = 160 hops.
TICKS = 100


def _offsets(streams: int) -> np.ndarray:
    return np.random.default_rng(11).integers(0, _HOP, streams)


def _ticks(y: np.ndarray, pos: np.ndarray) -> List[List[np.ndarray]]:
    """Every stream's chunk of each tick of the cycle: views of ``y`` (stream ``i`` from ``pos[i]``)."""
    return [[y[i, p + CHUNK * k : p + CHUNK * (k + 1)] for i, p in enumerate(pos.tolist())] for k in range(TICKS)]


def _pool_case(streams: int, y: np.ndarray, *, many: bool = True) -> Case:
    StreamPool = _supermel_api("StreamPool", "the live-serving issue")
    pool = StreamPool(**REFERENCE)
    ids = [pool.open() for _ in range(streams)]
    pos = _offsets(streams)
    ticks = _ticks(y, pos)
    for sid, p in zip(ids, pos):
        pool.push(sid, y[sid % y.shape[0], : int(p)])
    pool.step()
    k = [0]

    def tick_many() -> Any:
        chunks = ticks[k[0] % TICKS]
        k[0] += 1
        if pool.push_many(ids, chunks):
            raise RuntimeError("a chunk was refused")
        return pool.step()

    def tick_each() -> Any:
        chunks = ticks[k[0] % TICKS]
        k[0] += 1
        for sid, c in zip(ids, chunks):
            pool.push(sid, c)
        return pool.step()

    if many:
        return Case("supermel", tick_many, output=lambda: _pool_exact(StreamPool, streams), notes=f"StreamPool: push_many of {streams} chunks + one step")
    return Case("supermel push()", tick_each, output=lambda: _pool_exact(StreamPool, streams), notes=f"StreamPool: {streams} push calls + one step")


def _pool_exact(StreamPool: Any, streams: int) -> np.ndarray:
    y = _signal(_SR // 2, seed=2)
    pool = StreamPool(**REFERENCE)
    others = [pool.open() for _ in range(streams - 1)]
    first = pool.open()
    frames: List[np.ndarray] = []
    rng = np.random.default_rng(3)
    for p in range(0, y.shape[-1], CHUNK):
        for sid in others:
            pool.push(sid, rng.standard_normal(int(rng.integers(0, 2 * CHUNK))).astype(np.float32))
        pool.push(first, y[p : p + CHUNK])
        out = pool.step()
        if first in out:
            frames.append(out[first].frames)
        for sid in others:  # keep the other streams' backlogs bounded
            while pool.pending_frames(sid) > 64:
                pool.step()
    frames.append(pool.close(first).frames)
    return np.concatenate(frames, axis=-1)


def _lockstep_case(streams: int, y: np.ndarray) -> Case:
    SMS = _supermel_api("StreamingMelSpectrogram", "the streaming issue")
    stream = SMS(num_streams=streams, **REFERENCE)
    stream.push(np.ascontiguousarray(y[:, :_NFFT]))
    it = [_NFFT]

    def tick() -> Any:
        p = it[0]
        if p + CHUNK > y.shape[-1]:
            stream.reset()
            stream.push(np.ascontiguousarray(y[:, :_NFFT]))
            p = _NFFT
        it[0] = p + CHUNK
        return stream.push(y[:, p : p + CHUNK])

    def exact() -> np.ndarray:
        ys = _signal(_SR // 2, seed=2)
        s = SMS(num_streams=streams, **REFERENCE)
        parts = [s.push(np.repeat(ys[None, p : p + CHUNK], streams, axis=0))[0] for p in range(0, ys.shape[-1], CHUNK)]
        return np.concatenate(parts + [s.flush()[0]], axis=-1)

    return Case("supermel lockstep", tick, output=exact, notes=f"StreamingMelSpectrogram(num_streams={streams}): one push of ({streams}, {CHUNK}), streams in step")


def _per_stream_case(streams: int, y: np.ndarray) -> Case:
    SMS = _supermel_api("StreamingMelSpectrogram", "the streaming issue")
    objs = [SMS(**REFERENCE) for _ in range(streams)]
    pos = _offsets(streams)
    ticks = _ticks(y, pos)
    for o, p in zip(objs, pos):
        o.push(y[0, : int(p)])
    k = [0]

    def tick() -> Any:
        chunks = ticks[k[0] % TICKS]
        k[0] += 1
        return [o.push(c) for o, c in zip(objs, chunks)]

    def exact() -> np.ndarray:
        ys = _signal(_SR // 2, seed=2)
        s = SMS(**REFERENCE)
        return np.concatenate([s.push(ys[p : p + CHUNK]) for p in range(0, ys.shape[-1], CHUNK)] + [s.flush()], axis=-1)

    return Case("supermel per stream", tick, output=exact, notes=f"{streams} StreamingMelSpectrogram objects, one push each")


def pool_workload(streams: int) -> Workload:
    def build(device: str) -> Built:
        y = _signal(2 * _SR + _HOP, seed=9, batch=streams)  # a cycle of TICKS chunks after any offset < one hop
        cases = [_pool_case(streams, y), _pool_case(streams, y, many=False), _lockstep_case(streams, y), _per_stream_case(streams, y)]
        return Built(cases, reference=lambda: _librosa_mel(_signal(_SR // 2, seed=2)))

    return Workload(f"serving {streams} streams out of step (20 ms ticks)", "streaming", build, audio_seconds=streams * CHUNK / _SR, per="push", devices=("cpu",))
