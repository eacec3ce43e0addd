"""One client's connection: its receive loop, the checks and limits on what it sends, and its sender task.

Mixin of :class:`~supermel.serve.server.Server` (the event loop's thread only). A
connection's life: ``hello`` on connect; ``start`` (validated by
:func:`~supermel.serve.protocol.parse_start`) queues its stream for opening at the next
cycle; each binary chunk is checked (size, length, finite samples), converted to
float32, resampled and appended to the inbox; ``end`` pushes the resampler's tail and
queues the stream for its flush. Any :class:`~supermel.serve.protocol.ProtocolError`
goes to this client only (:meth:`Sessions._fail`): an ``error`` message, then its close
code. The sender task writes the bounded send queue in order.

Limits enforced here: ``max_clients`` connections (1013 ``server-full``),
``start_timeout``, :data:`TEXT_LIMIT` characters per text message and
``max_chunk_seconds`` per binary message (1009 ``too-large``), ``max_backlog_seconds``
of audio in the inbox (1013 ``behind``); the send queue's bound is checked when frames
are queued (:mod:`._step`, 1013 ``not-reading``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import socket
import time
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from . import protocol as P
from ._cycles import break_cycles
from ._memory import malloc_trim
from ._state import CLOSING, ENDING, NEW, STREAMING, Close, Conn, PoolState, Recording
from ._ws import ConnectionClosed, ServerConnection, State

_CLOSED = State.CLOSED
from .resample import StreamResampler

log = logging.getLogger("supermel.serve")

#: Largest text (JSON) message accepted.
TEXT_LIMIT = 65536
#: websockets' write buffer high-water mark per connection.
WRITE_LIMIT = 65536
#: Seconds after a connection closes before the freed heap is returned to the system (at most one trim per this interval).
TRIM_DELAY = 5.0


class Sessions:
    """Mixin of :class:`~supermel.serve.server.Server`: the per-connection handling (``_handler`` serves one connection)."""

    # (the server's, declared for readers and type checkers)
    max_clients: int
    max_backlog_seconds: float
    max_send_seconds: float
    max_chunk_seconds: float
    start_timeout: float
    close_timeout: float
    socket_send_buffer: Optional[int]
    record: bool
    max_record_seconds: float
    recordings: "collections.OrderedDict[int, Recording]"
    stats: Dict[str, Any]
    default: str
    _pools: Dict[str, PoolState]
    _conns: Dict[int, Conn]
    _ids: "itertools.count[int]"
    _closing: bool
    hello: Callable[[], Dict[str, Any]]
    _hello_text: Callable[[], str]  # hello() as JSON, built once
    _log_client: Callable[..., None]  # one line per event, rate-limited (:class:`._guard.LogLimiter`)
    _kick: Callable[..., None]  # wake the stepper (:mod:`._step`)
    _trim_timer: Optional[asyncio.TimerHandle]

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Conn(next(self._ids), ws)
        self.stats["connections"] += 1
        if self.socket_send_buffer is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(self.socket_send_buffer))
        if self.record:
            conn.record = Recording(conn.id)
            self.recordings[conn.id] = conn.record
            while len(self.recordings) > 64:
                self.recordings.popitem(last=False)
        conn.sender = asyncio.create_task(self._sender(conn))
        if self._closing:
            conn.state = CLOSING
            conn.put(Close(1001, "server shutting down"))
        elif len(self._conns) >= self.max_clients:
            self._fail(conn, P.ProtocolError("server-full", f"the server serves {self.max_clients} clients at most; try again later"))
        else:
            self._conns[conn.id] = conn
            conn.put(self._hello_text())
        try:
            await self._receive(conn)  # (a refused connection: reads, and ignores, until the close completes)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug: this client only (one line, rate-limited; the traceback at DEBUG level)
            self._log_client(logging.ERROR, "connection %d: internal error: %s: %s", conn.id, type(exc).__name__, exc)
            log.debug("connection %d: internal error", conn.id, exc_info=True)
            self._fail(conn, P.ProtocolError("flush-failed", "internal server error"))
        finally:
            self._conns.pop(conn.id, None)
            self._detach(conn)
        # the client closed or dropped: nothing more can be sent, so the sender (waiting for frames that will
        # not come) is woken to finish now, not after the close timeout (the handler, its buffers and
        # resampler were held close_timeout + 1 s, 6 s by default, per client gone without end)
        conn.out_event.set()
        try:
            await asyncio.wait_for(asyncio.shield(conn.sender), timeout=self.close_timeout + 1.0)
        except (asyncio.TimeoutError, ConnectionClosed):
            conn.sender.cancel()
        break_cycles(ws)  # (no reference cycles left behind: see _cycles.break_cycles)
        code = ws.close_code if ws.close_code is not None else conn.close_code
        self.stats["close_codes"][code] += 1
        if conn.record is not None:
            conn.record.close_code, conn.record.close_reason = code, ws.close_reason or ""
        if self._trim_timer is None:  # the connection's memory is free: give it back to the system soon (see _memory.py)
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim)

    def _trim(self) -> None:
        self._trim_timer = None
        t0 = time.perf_counter()
        if malloc_trim():
            self.stats["memory_trims"] += 1
            self.stats["trim_seconds"] += time.perf_counter() - t0

    async def _receive(self, conn: Conn) -> None:
        # The start timeout is a timer, not ``asyncio.wait_for(ws.recv())``: wait_for runs recv in a task of its own, and
        # the ConnectionClosed that task ends with (its traceback holds wait_for's frame, which holds the task) is a
        # reference cycle per connection, freed only by the garbage collector (a stall of the event loop; see _memory.py).
        timer = asyncio.get_running_loop().call_later(self.start_timeout, self._start_timed_out, conn)
        try:
            async for message in conn.ws:
                self._on_message(conn, message)
        finally:
            timer.cancel()

    def _start_timed_out(self, conn: Conn) -> None:
        if conn.state == NEW and not conn.gone:
            self._fail(conn, P.ProtocolError("timeout", f"no start message within {self.start_timeout:g} s of connecting"))

    def _on_message(self, conn: Conn, message: Union[str, bytes]) -> None:
        if conn.state in (CLOSING, ENDING):
            return  # closing: what is still in flight is dropped
        try:
            if isinstance(message, str):
                try:
                    self._on_text(conn, message)
                except P.ProtocolError:
                    raise
                except Exception as exc:  # whatever a text message could still trip: its sender's error, never 1011
                    log.debug("connection %d: a text message tripped %s", conn.id, type(exc).__name__, exc_info=True)
                    raise P.ProtocolError("bad-request", f"could not process this message ({type(exc).__name__}); see docs/serving.md for the messages") from None
            elif conn.state == NEW:
                raise P.ProtocolError("not-started", 'audio before start: send {"type": "start", "sample_rate": ...} as a text message first')
            else:
                self._on_audio(conn, message)
        except P.ProtocolError as exc:
            self._fail(conn, exc)

    def _on_text(self, conn: Conn, text: str) -> None:
        if len(text) > TEXT_LIMIT:
            raise P.ProtocolError("too-large", f"a text message of {len(text)} characters; at most {TEXT_LIMIT}")
        obj = P.parse_json(text)
        kind = obj["type"]
        if kind == "start":
            if conn.state != NEW:
                raise P.ProtocolError("bad-request", "start: this connection has started already (one stream per connection)")
            self._start(conn, P.parse_start(obj, self._pools))
        elif kind == "end":
            if conn.state == NEW:
                raise P.ProtocolError("bad-request", "end before start: nothing to end")
            self._end(conn, reason="client")
        else:
            raise P.ProtocolError("bad-request", f"unknown message type {P._short(kind)}: a client sends start, binary audio chunks and end")

    def _start(self, conn: Conn, req: P.StartRequest) -> None:
        if self._closing:
            conn.put(Close(1001, "server shutting down"))
            conn.state = CLOSING
            return
        ps = self._pools[req.preset or self.default]
        if req.fps is not None and not ps.wav2lip:
            raise P.ProtocolError("bad-request", f"start: fps={req.fps:g} asks for Wav2Lip windows, but preset {ps.name!r} is not Wav2Lip")
        conn.ps, conn.rate, conn.format = ps, req.sample_rate, req.format
        conn.resampler = StreamResampler(req.sample_rate, int(ps.info["sr"]))
        conn.max_bytes = int(req.sample_rate * self.max_chunk_seconds) * np.dtype(P.FORMATS[req.format]).itemsize
        conn.max_queued_frames = max(1, int(self.max_send_seconds * ps.info["frame_rate"]))
        conn.fps = req.fps
        conn.state = STREAMING
        if conn.record is not None:
            conn.record.sample_rate, conn.record.format, conn.record.preset = req.sample_rate, req.format, ps.name
            conn.record.time_axis = int(ps.info["time_axis"])
        ps.opening.append(conn)
        self._kick()

    def _on_audio(self, conn: Conn, data: bytes) -> None:
        if len(data) > conn.max_bytes:
            raise P.ProtocolError(
                "too-large",
                f"a chunk of {len(data)} bytes; at most {conn.max_bytes} ({self.max_chunk_seconds:g} s at {conn.rate} Hz {conn.format}): send smaller chunks",
            )
        x = P.decode_pcm(data, conn.format)
        if not x.size:
            return
        conn.samples_in += x.size
        rec = conn.record
        if rec is not None and not rec.truncated:
            room = int(self.max_record_seconds * conn.rate) - rec.samples
            rec.chunks.append(x[:room].copy())
            rec.samples += min(room, x.size)
            rec.truncated = room <= x.size
        assert conn.resampler is not None and conn.ps is not None
        y = conn.resampler.process(x)
        if y.size:
            conn.inbox.append(y)
            conn.inbox_n += y.size
            conn.resampled += y.size
            limit = self.max_backlog_seconds * conn.ps.info["sr"]
            if conn.inbox_n > limit:
                waiting = conn.inbox_n / conn.ps.info["sr"]
                raise P.ProtocolError("behind", f"falling behind: {waiting:.2f} s of audio wait to be computed (limit {self.max_backlog_seconds:g} s)")
        conn.ps.dirty[conn] = None
        # a stream whose inbox holds over half its bound (a burst faster than real time) is not kept waiting for the step interval
        self._kick(now=conn.inbox_n > 0.5 * self.max_backlog_seconds * conn.ps.info["sr"])

    def _end(self, conn: Conn, *, reason: str) -> None:
        """The stream's end: push the resampler's tail, then the pool flushes it in the next cycle."""
        assert conn.resampler is not None and conn.ps is not None
        tail = conn.resampler.flush()
        if tail.size:
            conn.inbox.append(tail)
            conn.inbox_n += tail.size
            conn.resampled += tail.size
        conn.state = ENDING
        conn.end_reason = reason
        conn.ps.dirty[conn] = None
        conn.ps.closing.append(conn)
        self._kick()

    def _detach(self, conn: Conn) -> None:
        """The client is gone (or failed): close its stream in the pool, sending nothing more."""
        conn.gone = True
        if conn.state in (STREAMING, ENDING, CLOSING) and conn.ps is not None and not conn.detached:
            conn.detached = True
            conn.inbox, conn.inbox_n = [], 0
            conn.ps.dirty.pop(conn, None)
            if conn not in conn.ps.closing:
                conn.ps.closing.append(conn)
            self._kick()
        conn.state = CLOSING

    def _fail(self, conn: Conn, err: P.ProtocolError, *, stuck: bool = False) -> None:
        """Send ``error`` to this client and close it with the error's code; free its stream."""
        if conn.close_code is not None:
            return
        self.stats["errors"][err.error] += 1
        self._log_client(logging.INFO, "connection %d: %s: %s", conn.id, err.error, err.message)
        if conn.record is not None:
            conn.record.error = {"error": err.error, "message": err.message}
        self._detach(conn)
        conn.close_code = err.close_code
        conn.outq.clear()
        conn.queued_frames = 0
        reason = f"{err.error}: {err.message}"
        if len(reason.encode()) > 120:
            reason = reason.encode()[:117].decode(errors="ignore") + "..."
        if stuck:  # the sender is blocked on a client that does not read: close now, behind what is in flight
            if conn.sender is not None:
                conn.sender.cancel()
            conn.sender = asyncio.create_task(self._close_ws(conn, err.close_code, reason))
            return
        conn.put(err.as_message())
        conn.put(Close(err.close_code, reason))

    async def _close_ws(self, conn: Conn, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code, reason), timeout=self.close_timeout)
        except (asyncio.TimeoutError, ConnectionClosed):
            conn.ws.transport.abort()

    async def _sender(self, conn: Conn) -> None:
        ws = conn.ws
        try:
            while True:
                while not conn.outq:
                    if ws.state is _CLOSED:  # nothing more can go out
                        return
                    conn.out_event.clear()
                    await conn.out_event.wait()
                item = conn.outq.popleft()
                if isinstance(item, Close):
                    conn.close_code = conn.close_code or item.code
                    await self._close_ws(conn, item.code, item.reason)
                    return
                data, frames = item
                await ws.send(data)
                conn.queued_frames -= frames
        except ConnectionClosed:
            return
