"""The stepper: one batched :meth:`StreamPool.step <supermel.StreamPool.step>` per pool per cycle, and the frames to each client.

Mixin of :class:`~supermel.serve.server.Server`. A single stepper task
(:meth:`Stepper._step_loop`) wakes when input arrives (:meth:`Stepper._kick`) and runs a
*cycle*; cycles start at least ``step_interval`` apart: input arriving sooner waits for
that time and joins the next cycle, except after a capped cycle and for a stream whose
inbox holds over half its bound. :meth:`~Stepper._snapshot` takes,
in the event loop, each pool's streams to open, inboxes and streams to close;
:meth:`~Stepper._run` opens, pushes (one push per stream: its chunks joined), steps once
(at most ``max_frames_per_step`` frames) and closes, touching the pools only, in the
loop's thread or in the one step thread (``step_thread=True``); :meth:`~Stepper._dispatch`
hands the results to the connections' send queues, back in the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import time
from typing import Any, Callable, Dict, Iterable, Optional, Union

import numpy as np

from .._errors import ParameterError
from ..pool import PoolFrames
from . import protocol as P
from ._state import CLOSING, Close, Conn, PoolState, Work, to_numpy

log = logging.getLogger("supermel.serve")


class Stepper:
    """Mixin of :class:`~supermel.serve.server.Server`: the pool cycles and the frames sent back."""

    # (the server's, declared for readers and type checkers)
    max_send_seconds: float
    step_interval: float
    stats: Dict[str, Any]
    _pools: Dict[str, PoolState]
    _executor: Optional[concurrent.futures.ThreadPoolExecutor]
    _wake: Optional[asyncio.Event]
    _loop: Optional[asyncio.AbstractEventLoop]
    _next_cycle: float  # loop time before which a kick waits (the last cycle's start + step_interval)
    _kick_timer: Optional[asyncio.TimerHandle]
    _fail: Callable[..., None]  # send an error to one client and close it (:mod:`._session`)

    def warm_up(self) -> None:
        """Run each pool and the resampler once on noise before serving (``supermel serve`` calls it at start).

        What the first clients would otherwise pay (first use of the kernels and
        workspaces, soxr's library and filters) is paid here, before the first
        connection: the first round trips are not slow, and the memory figures after
        start-up are the server's steady state (benchmarks/serve.py ``--churn``).
        """
        from .resample import StreamResampler

        noise = (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32)
        for ps in self._pools.values():
            sr = int(ps.info["sr"])
            for rate in {44100, 48000, 16000} - {sr}:
                rs = StreamResampler(rate, sr)
                rs.process(noise[: rate // 50])
                rs.flush()
            pool = ps.pool
            fps = 25.0 if ps.wav2lip else None
            sids = [pool.open(fps=fps) for _ in range(2)]
            try:
                for k in range(3):
                    pool.push_many(sids, [noise[k * sr // 50 : (k + 1) * sr // 50 + 3200 * i] for i in range(len(sids))])
                    pool.step()
            finally:
                for sid in sids:
                    try:
                        pool.close(sid)
                    except ParameterError:  # (a configuration refusing so short a stream, e.g. center=False: warmed anyway)
                        pass

    def _kick(self, *, now: bool = False) -> None:
        """Wake the stepper: at once, or ``step_interval`` after the last cycle's start if that is later (``now``: at once)."""
        assert self._wake is not None and self._loop is not None
        if now or self._loop.time() >= self._next_cycle:
            self._wake.set()
        elif self._kick_timer is None:  # input arriving until then joins that cycle
            self._kick_timer = self._loop.call_at(self._next_cycle, self._kick_due)

    def _kick_due(self) -> None:
        assert self._wake is not None
        self._kick_timer = None
        self._wake.set()

    async def _step_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._kick_timer is not None:  # this cycle takes what the timer was for
                self._kick_timer.cancel()
                self._kick_timer = None
            self._next_cycle = loop.time() + self.step_interval
            works = [self._snapshot(ps) for ps in self._pools.values() if ps.has_work()]
            if works:
                t0 = time.perf_counter()
                try:
                    if self._executor is not None:
                        await loop.run_in_executor(self._executor, self._run, works)
                    else:
                        self._run(works)
                except Exception:  # a bug: fail the clients of this cycle, keep serving
                    log.exception("pool cycle failed")
                    for w in works:
                        for c, _ in w.pushes:
                            self._fail(c, P.ProtocolError("flush-failed", "internal server error in the pool step"))
                    continue
                self.stats["step_seconds"] += time.perf_counter() - t0
                for w in works:
                    self._dispatch(w)
            works = []  # (the last cycle's connections are not kept alive while the stepper waits)
            if any(ps.more for ps in self._pools.values()):
                self._wake.set()
            await asyncio.sleep(0)  # let the receivers run before the next cycle

    def _snapshot(self, ps: PoolState) -> Work:
        opens, ps.opening = ps.opening, []
        closes, ps.closing = ps.closing, []
        pushes = []
        for conn in ps.dirty:
            conn.acked = conn.samples_in
            if conn.inbox:
                pushes.append((conn, conn.inbox))
                conn.inbox, conn.inbox_n = [], 0
        ps.dirty.clear()
        sids = {c.id: c.sid for c in itertools.chain(opens, closes, (c for c, _ in pushes))}
        ps.more = False
        return Work(ps, opens, pushes, closes, sids)

    def _run(self, works: Iterable[Work]) -> None:
        """One cycle per pool: opens, pushes, one step, closes. Touches the pools only (maybe in the worker thread)."""
        for w in works:
            pool, sids = w.ps.pool, dict(w.sids)
            for conn in w.opens:
                try:
                    sid = pool.open(fps=conn.fps)
                except ParameterError as exc:  # (kept without its traceback: its frame holds w, a reference cycle)
                    w.opened.append((conn, exc.with_traceback(None)))
                    continue
                sids[conn.id] = sid
                w.opened.append((conn, sid))
            # one push_many per cycle, one chunk per stream (the same samples as chunk by chunk, fewer calls)
            by_sid = {}
            chunks_in = []
            for conn, chunks in w.pushes:
                sid = sids.get(conn.id)
                if sid is not None:
                    by_sid[sid] = conn
                    chunks_in.append(chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
            for sid, exc in pool.push_many(list(by_sid), chunks_in).items():
                conn = by_sid[sid]
                w.failed.append((conn, str(exc)))
                sids[conn.id] = None
                try:
                    pool.close(sid)
                except ParameterError:
                    pass
            if len(pool):
                w.out = pool.step()
            w.frames = sum(int(np.shape(f.frames)[pool.time_axis]) for f in w.out.values())
            w.ps.more = w.frames >= max(1, pool.max_frames_per_step // 2)
            for conn in w.closes:
                sid = sids.get(conn.id)
                if sid is None:
                    w.closed.append((conn, None))
                    continue
                sids[conn.id] = None
                try:
                    w.closed.append((conn, pool.close(sid)))
                except ParameterError as exc:  # (a stream closed before any audio; kept without its traceback, as above)
                    w.closed.append((conn, exc.with_traceback(None)))

    def _dispatch(self, w: Work) -> None:
        """Hand a cycle's results to the connections (event loop)."""
        ps = w.ps
        self.stats["steps"] += 1
        self.stats["frames"] += w.frames
        self.stats["max_step_frames"] = max(self.stats["max_step_frames"], w.frames)
        for conn, res in w.opened:
            if isinstance(res, Exception):
                self._fail(conn, P.ProtocolError("bad-request", f"start: {res}"))
                continue
            conn.sid = res
            ps.by_sid[res] = conn
            if not conn.gone:
                ready = {"type": "ready", "stream": conn.id, "preset": ps.name, "sample_rate": conn.rate, "format": conn.format,
                         "server_rate": ps.info["sr"], **{k: v for k, v in ps.info.items() if k != "config"}}  # fmt: skip
                conn.put(json.dumps(ready))
        for conn, reason in w.failed:
            ps.by_sid.pop(conn.sid, None)  # type: ignore[arg-type]
            conn.sid = None
            conn.detached = True
            self._fail(conn, P.ProtocolError("behind", f"falling behind: {reason}"))
        for sid, pf in w.out.items():
            conn = ps.by_sid.get(sid)
            if conn is not None and not conn.gone:
                self._send_frames(conn, pf, final=False)
        for conn, res in w.closed:
            if conn.sid is not None:
                ps.by_sid.pop(conn.sid, None)
                conn.sid = None
            if conn.gone:
                continue
            self._finish(conn, res)

    def _send_frames(self, conn: Conn, pf: PoolFrames, *, final: bool) -> bool:
        """Queue a stream's frames (and windows) for sending; False when the client was failed instead."""
        ps = conn.ps
        assert ps is not None
        flags = P.FLAG_FINAL if final else 0
        acked = conn.samples_in if final else conn.acked
        frames = to_numpy(pf.frames)
        k = int(frames.shape[ps.pool.time_axis])
        if k:
            tm = frames.T if ps.pool.time_axis == -1 else frames
            if not np.isfinite(tm).all():  # finite audio far outside [-1, 1] overflowed float32 (the library warns; a client is refused)
                self._fail(conn, P.ProtocolError("overflow", "these features are not finite: the audio's amplitude overflows float32 in the power spectrum; scale the samples to about [-1, 1]"))
                return False
            if not final and conn.queued_frames > conn.max_queued_frames:  # (one step's frames always fit: the backlog bounds them)
                msg = f"the client does not read its frames: {conn.queued_frames} frames wait to be sent (limit {self.max_send_seconds:g} s)"
                self._fail(conn, P.ProtocolError("not-reading", msg), stuck=True)
                return False
            conn.put(P.encode_frames(P.KIND_FRAMES, pf.start, tm, acked=acked, flags=flags), k)
            conn.frames_sent = pf.start + k
            if conn.record is not None:
                conn.record.frame_blocks.append((pf.start, np.array(tm, dtype=np.float32)))
        if pf.windows is not None and len(pf.windows):
            win = to_numpy(pf.windows)
            conn.put(P.encode_frames(P.KIND_WINDOWS, pf.window_start, win, acked=acked, flags=flags))
            conn.windows_sent = pf.window_start + len(win)
            if conn.record is not None:
                conn.record.window_blocks.append((pf.window_start, np.array(win, dtype=np.float32)))
        return True

    def _finish(self, conn: Conn, res: Union[PoolFrames, Exception, None]) -> None:
        """After the pool's close: the last frames, ``end`` with the totals, close (1000; 1001 at shutdown)."""
        ps = conn.ps
        assert ps is not None
        if isinstance(res, Exception):
            if conn.resampled > 0:  # a configuration that refuses this short a stream, e.g. center=False
                self._fail(conn, P.ProtocolError("flush-failed", f"end: {res}"))
                return
            res = None  # no audio at all: an empty stream, zero frames
        if res is not None and not self._send_frames(conn, res, final=True):
            return
        end = {"type": "end", "reason": conn.end_reason, "frames": conn.frames_sent, "windows": conn.windows_sent,
               "samples": conn.samples_in, "resampled": conn.resampled, "sample_rate": conn.rate, "server_rate": ps.info["sr"]}  # fmt: skip
        if conn.record is not None:
            conn.record.end = end
        conn.put(json.dumps(end))
        conn.state = CLOSING
        conn.gone = True
        if conn.end_reason == "shutdown":
            conn.put(Close(1001, "server shutting down: stream flushed"))
        else:
            conn.put(Close(1000, "end of stream"))

