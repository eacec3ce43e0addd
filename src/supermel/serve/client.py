"""A Python client of ``supermel serve``: :class:`Client` (asyncio), :func:`stream_audio` and :func:`stream_sync`.

For tests, load generators and users' own pipelines: one :class:`Client` is one
stream. It sends PCM chunks (:meth:`Client.send`), receives frame messages in a
background task (kept, and/or handed to ``on_message``), checks their indices
(``lost`` and ``reordered`` count gaps and reorderings), measures round trips from
the ``acked`` field (:attr:`Client.latencies`), and :meth:`Client.end` flushes the
stream and returns the server's totals. :meth:`Client.frames` joins what was kept
in the preset's layout: equal to the offline features of the resampled audio.

Example
-------
>>> import numpy as np
>>> from supermel.serve import stream_sync
>>> c = stream_sync("ws://127.0.0.1:8000", np.zeros(48000, np.float32), 48000)   # doctest: +SKIP
>>> c.frames().shape, c.totals["frames"], np.median(c.latencies)                  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from .._errors import ParameterError
from . import protocol as P
from ._cycles import break_cycles

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as _ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.uri import parse_uri
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(f"supermel.serve needs the optional module 'websockets' (>= 14): pip install 'supermel[serve]' ({_exc})", name=_exc.name or "websockets") from None

__all__ = ["Client", "ServerError", "ServerUnreachable", "ConnectionLost", "ServerUnresponsive", "check_url", "stream_audio", "stream_sync"]


class _Connection(ClientConnection):
    """websockets' client connection, its reference cycles broken when it is lost (:func:`~supermel.serve._cycles.break_cycles`):
    a program opening many streams frees each connection's protocol at once, not at the next full collection."""

    def connection_lost(self, exc: Optional[Exception]) -> None:
        super().connection_lost(exc)
        break_cycles(self)


class ServerError(Exception):
    """The stream failed on the server's side: the server's ``error`` code and message, and the close code.

    Subclasses say what happened to the connection itself: :class:`ServerUnreachable`
    (nobody answered), :class:`ConnectionLost` (it broke mid-stream),
    :class:`ServerUnresponsive` (the server stopped answering pings). A plain
    ``ServerError`` is the server's own refusal (``error`` is its code: ``server-full``,
    ``bad-rate``, ... or ``closed`` for a close without an ``error`` message).

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.serve import Server, ServerThread, ServerError, stream_sync
    >>> with ServerThread(Server(core=dict(sr=16000), port=0, page=False)) as srv:
    ...     try:
    ...         stream_sync(srv.url, np.zeros(1600, np.float32), 16000, preset="no-such-preset")
    ...     except ServerError as e:
    ...         print(e.error)
    unknown-preset
    """

    def __init__(self, error: str, message: str, close_code: Optional[int] = None) -> None:
        super().__init__(f"{error}: {message}" + (f" (closed with {close_code})" if close_code else ""))
        self.error, self.message, self.close_code = error, message, close_code


class ServerUnreachable(ServerError):
    """No server answered at the URL (connection refused, unknown host, handshake refused).

    ``supermel stream`` exits 3 on it.

    Examples
    --------
    >>> import socket, numpy as np
    >>> from supermel.serve import ServerUnreachable, stream_sync
    >>> with socket.socket() as s:  # a free port with nobody listening
    ...     s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    >>> try:
    ...     stream_sync(f"ws://127.0.0.1:{port}/", np.zeros(160, np.float32), 16000)
    ... except ServerUnreachable as e:
    ...     print(type(e).__name__)
    ServerUnreachable
    """


class ConnectionLost(ServerError):
    """The connection broke mid-stream without a closing handshake (the server died, or the network dropped).

    ``supermel stream`` exits 4 on it. A subclass of :class:`ServerError`.

    Examples
    --------
    >>> from supermel.serve import ConnectionLost, ServerError
    >>> issubclass(ConnectionLost, ServerError)
    True
    """


class ServerUnresponsive(ServerError):
    """The server stopped answering: no pong within ``ping_timeout``, or no handshake within ``open_timeout``.

    ``supermel stream`` exits 5 on it. A subclass of :class:`ServerError`.

    Examples
    --------
    >>> from supermel.serve import ServerUnresponsive, ServerError
    >>> issubclass(ServerUnresponsive, ServerError)
    True
    """


def check_url(url: Any) -> str:
    """``url`` if it is a ``ws://`` or ``wss://`` URL, else :class:`~supermel.ParameterError` naming it and the fix.

    Parameters
    ----------
    url : str
        The server's WebSocket URL.

    Returns
    -------
    str
        ``url`` unchanged.

    Raises
    ------
    supermel.ParameterError
        Not a string, an ``http(s)://`` address (the message gives the ``ws(s)://`` one), or not a
        WebSocket URL.

    Examples
    --------
    >>> from supermel.serve import check_url
    >>> check_url("ws://127.0.0.1:8000/")
    'ws://127.0.0.1:8000/'
    >>> check_url("http://127.0.0.1:8000/")
    Traceback (most recent call last):
    ...
    supermel._errors.ParameterError: url 'http://127.0.0.1:8000/' is an HTTP address; a stream needs the WebSocket URL: 'ws://127.0.0.1:8000/' (ws://HOST:PORT/, or wss:// with TLS)
    """
    fix = "use ws://HOST:PORT/ (wss:// with TLS), e.g. ws://127.0.0.1:8000/"
    if not isinstance(url, str):
        raise ParameterError(f"url={url!r} must be a string: {fix}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("http", "https"):
        guess = ("wss" if scheme == "https" else "ws") + url[len(scheme) :]
        raise ParameterError(f"url {url!r} is an HTTP address; a stream needs the WebSocket URL: {guess!r} (ws://HOST:PORT/, or wss:// with TLS)")
    try:
        parse_uri(url)
    except (InvalidURI, ValueError) as exc:
        raise ParameterError(f"url {url!r} is not a WebSocket URL ({exc}): {fix}") from None
    return url


def _pcm(chunk: Any, fmt: str) -> Tuple[bytes, int]:
    """A chunk as the wire's little-endian PCM bytes, and its sample count."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        size = np.dtype(P.FORMATS[fmt]).itemsize
        return bytes(chunk), len(chunk) // size
    x = np.asarray(chunk)
    if x.ndim != 1:
        raise ParameterError(f"a chunk must be 1-D (mono samples); got shape {x.shape}")
    if fmt == "int16":
        if x.dtype != np.int16:
            if not np.issubdtype(x.dtype, np.floating):
                raise ParameterError(f"an int16 stream takes int16 samples, or floats in [-1, 1]; got {x.dtype}")
            x = np.clip(np.round(x * 32768.0), -32768, 32767)
        return np.ascontiguousarray(x, dtype="<i2").tobytes(), int(x.size)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / np.float32(32768.0)
    return np.ascontiguousarray(x, dtype="<f4").tobytes(), int(x.size)


class Client:
    """One stream to a ``supermel serve`` server (create with :meth:`connect`).

    Attributes
    ----------
    hello, ready : dict
        The server's ``hello`` and ``ready`` messages (preset, rates, bands, ``time_axis``).
    totals : dict or None
        The server's ``end`` message (``frames``, ``windows``, ``samples``, ``resampled``).
    latencies : list of float
        Round trips in seconds: for each chunk, from its send to the first frame message
        whose ``acked`` covers it.
    lost, reordered : int
        Frames missing between consecutive messages, and messages that came out of order.
    frame_count : int
        Frames received.

    Examples
    --------
    A server on a free loopback port, in a thread, and a second of silence streamed to it:

    >>> import numpy as np
    >>> from supermel.serve import Server, ServerThread, stream_sync
    >>> with ServerThread(Server(core=dict(sr=16000, n_fft=400, hop_length=160, n_mels=40), port=0, page=False)) as srv:
    ...     c = stream_sync(srv.url, np.zeros(16000, np.float32), 16000)
    >>> c.frames().shape, c.totals["frames"], c.lost
    ((40, 101), 101, 0)
    """

    def __init__(self, ws: ClientConnection, hello: Dict[str, Any], *, sample_rate: int, sample_format: str, keep: bool,
                 on_message: Optional[Callable[[P.FrameMessage], None]], max_in_flight: Optional[float]) -> None:  # fmt: skip
        self.ws = ws
        self.hello = hello
        self.ready: Dict[str, Any] = {}
        self.totals: Optional[Dict[str, Any]] = None
        self.sample_rate = int(sample_rate)
        self.sample_format = sample_format
        self.keep = keep
        self.on_message = on_message
        self.max_in_flight = max_in_flight
        self.samples_sent = 0
        self.acked = 0
        self.latencies: List[float] = []
        self.lost = 0
        self.reordered = 0
        self.frame_count = 0
        self.window_count = 0
        self._next = {P.KIND_FRAMES: 0, P.KIND_WINDOWS: 0}
        self._blocks: Dict[int, List[Tuple[int, np.ndarray]]] = {P.KIND_FRAMES: [], P.KIND_WINDOWS: []}
        self._marks: Deque[Tuple[int, float]] = collections.deque(maxlen=1 << 20)
        self._ack_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._ready: "asyncio.Future[Optional[Dict[str, Any]]]" = loop.create_future()  # None: failed (self._error)
        self._ended: "asyncio.Future[Optional[Dict[str, Any]]]" = loop.create_future()
        self._error: Optional[ServerError] = None
        self.url = ""
        self._keepalive_task: Optional["asyncio.Task[None]"] = None
        self._task = asyncio.create_task(self._receive())

    # ------------------------------------------------------------------ set-up
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        sample_rate: int,
        sample_format: str = "float32",
        preset: Optional[str] = None,
        fps: Optional[float] = None,
        keep: bool = True,
        on_message: Optional[Callable[[P.FrameMessage], None]] = None,
        max_in_flight: Optional[float] = None,
        open_timeout: float = 10.0,
        ping_interval: Optional[float] = 5.0,
        ping_timeout: float = 10.0,
        token: Optional[str] = None,
        **connect_kwargs: Any,
    ) -> "Client":
        """Connect, send ``start``, and return once the server is ``ready``.

        Parameters
        ----------
        url : str
            ``ws://host:port/``.
        sample_rate : int
            The rate of the audio this client sends (the server resamples).
        sample_format : {"float32", "int16"}
        preset : str, optional
            One of the server's presets (``hello["presets"]``); default: the server's first.
        fps : float, optional
            Wav2Lip presets: also receive the per-video-frame windows at this rate.
        keep : bool
            Keep the frames received (:meth:`frames`); a load generator may pass False.
        on_message : callable, optional
            Called with each :class:`~supermel.serve.protocol.FrameMessage` as it arrives.
        max_in_flight : float, optional
            Flow control: :meth:`send` waits while more than this many seconds of
            audio are unacknowledged (sending a file faster than real time).
        open_timeout : float
            Seconds for the connection, the WebSocket handshake, ``hello`` and ``ready``
            each; past it: :class:`ServerUnresponsive` (:class:`ServerUnreachable` when
            nothing accepts the connection).
        ping_interval, ping_timeout : float
            Keepalive: a ping every ``ping_interval`` seconds (``None``: none); a pong
            later than ``ping_timeout`` seconds drops the connection and every call
            raises :class:`ServerUnresponsive` (a hung server is found within
            ``ping_interval + ping_timeout`` seconds; ``supermel stream`` uses 2 and 3 s).
        token : str, optional
            The server's bearer token (``supermel serve --token``), sent as
            ``Authorization: Bearer TOKEN``; default: the environment variable
            ``SUPERMEL_TOKEN`` when set.
        **connect_kwargs
            Passed to ``websockets.asyncio.client.connect`` (compression is off; ``ssl=``
            an ``ssl.SSLContext`` for a ``wss://`` server with a private certificate).
        """
        if sample_format not in P.FORMATS:
            raise ParameterError(f"sample_format={sample_format!r}: use 'float32' or 'int16'")
        check_url(url)
        for name, value in (("open_timeout", open_timeout), ("ping_timeout", ping_timeout), ("ping_interval", ping_interval)):
            if value is None and name == "ping_interval":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ParameterError(f"{name}={value!r} must be a positive number of seconds")
        # keepalive is this client's own (_keepalive): it drops the connection at once on a missed pong
        kw: Dict[str, Any] = dict(compression=None, max_size=None, open_timeout=open_timeout, ping_interval=None, close_timeout=min(5.0, open_timeout),
                                  create_connection=_Connection)  # fmt: skip
        kw.update(connect_kwargs)
        token = token if token is not None else (os.environ.get("SUPERMEL_TOKEN") or None)
        if token is not None:
            kw["additional_headers"] = {**dict(kw.get("additional_headers") or {}), "Authorization": f"Bearer {token}"}
        try:
            ws = await _ws_connect(url, **kw)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403, 429):  # a supermel server refusing before the upgrade: token, Origin/Host, per-address cap
                body = (exc.response.body or b"").decode("utf-8", "replace").strip()
                raise ServerError(f"http-{status}", body or exc.response.reason_phrase) from None
            raise ServerUnreachable("handshake-refused", f"{url} answered HTTP {status} {exc.response.reason_phrase} to the WebSocket handshake: "
                                    "not a supermel server, or it refused this client") from None  # fmt: skip
        except InvalidHandshake as exc:
            raise ServerUnreachable("bad-handshake", f"{url} did not complete a WebSocket handshake ({exc}): is it a supermel server?") from None
        except asyncio.TimeoutError:
            raise ServerUnresponsive("unresponsive", f"{url} accepted the connection but did not complete the handshake within {open_timeout:g} s: the server is hung or overloaded") from None
        except OSError as exc:
            raise ServerUnreachable("unreachable", f"cannot reach {url}: {exc.strerror or exc}; is `supermel serve` running there?") from None
        try:
            try:
                first = await asyncio.wait_for(ws.recv(), timeout=open_timeout)
            except asyncio.TimeoutError:
                raise ServerUnresponsive("unresponsive", f"{url} sent no hello within {open_timeout:g} s of connecting: the server is hung or overloaded") from None
            except ConnectionClosed as exc:
                if exc.rcvd is None:
                    raise ConnectionLost("connection-lost", f"the connection to {url} broke before the server's hello (no closing handshake)") from None
                raise ServerError("closed", f"the server closed the connection before its hello: {exc.rcvd.code} {exc.rcvd.reason}".strip(), exc.rcvd.code) from None
            hello = json.loads(first) if isinstance(first, str) else {}
            if hello.get("type") == "error":
                raise ServerError(hello.get("error", "?"), hello.get("message", ""), hello.get("close"))
            if hello.get("type") != "hello":
                raise ServerError("bad-hello", f"expected the server's hello, got {str(first)[:80]!r}")
            start: Dict[str, Any] = {"type": "start", "sample_rate": int(sample_rate), "format": sample_format}
            if preset is not None:
                start["preset"] = preset
            if fps is not None:
                start["fps"] = fps
            await ws.send(json.dumps(start))
        except BaseException:
            await ws.close()
            break_cycles(ws)
            raise
        self = cls(ws, hello, sample_rate=sample_rate, sample_format=sample_format, keep=keep, on_message=on_message, max_in_flight=max_in_flight)
        self.url = url
        if ping_interval is not None:
            self._keepalive_task = asyncio.create_task(self._keepalive(float(ping_interval), float(ping_timeout)))
        try:
            try:
                ready = await asyncio.wait_for(asyncio.shield(self._ready), timeout=open_timeout)
            except asyncio.TimeoutError:
                raise ServerUnresponsive("unresponsive", f"{url} did not answer start within {open_timeout:g} s: the server is hung or overloaded") from None
            if ready is None:  # the stream failed before ready
                self._raise()
            self.ready = ready
        except BaseException:
            await self.close()
            raise
        return self

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ sending
    async def send(self, chunk: Any, *, ack_timeout: float = 30.0) -> None:
        """Send one PCM chunk (1-D numpy array, or raw little-endian bytes in the stream's format)."""
        self._raise()
        data, n = _pcm(chunk, self.sample_format)
        if self.max_in_flight is not None:
            limit = self.max_in_flight * self.sample_rate
            deadline = time.perf_counter() + ack_timeout
            while self.samples_sent - self.acked > limit:
                self._ack_event.clear()
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise ServerError("timeout", f"no acknowledgement for {ack_timeout:g} s ({self.samples_sent - self.acked} samples in flight)")
                try:
                    await asyncio.wait_for(self._ack_event.wait(), timeout=left)
                except asyncio.TimeoutError:
                    pass
                self._raise()
        if n:
            self.samples_sent += n
            self._marks.append((self.samples_sent, time.perf_counter()))
        try:
            await self.ws.send(data)
        except ConnectionClosed:
            await self._raise_closed()

    async def end(self, timeout: float = 60.0) -> Dict[str, Any]:
        """Send ``end``; wait for the last frames and the totals (returned; also :attr:`totals`)."""
        self._raise()
        try:
            await self.ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            await self._raise_closed()
        return await self.wait_end(timeout)

    async def wait_end(self, timeout: float = 60.0) -> Dict[str, Any]:
        """Wait for the server's ``end`` without sending one (a server shutting down flushes every stream)."""
        totals = await asyncio.wait_for(asyncio.shield(self._ended), timeout=timeout)
        if totals is None:  # the stream failed before its end
            self._raise()
        try:
            await asyncio.wait_for(self._task, timeout=timeout)
        except ConnectionClosed:
            pass
        return totals

    async def close(self) -> None:
        """Close the connection (without ``end``: the server discards the stream)."""
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        await self.ws.close()
        if not self._task.done():
            self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, ConnectionClosed, ServerError):
            pass

    def _raise(self) -> None:
        """Raise the stream's error, a new exception each time.

        The error is kept (:attr:`_error`) and raised from this client's methods: raised itself,
        its traceback would hold their frames, which hold the client, which holds the error: a
        reference cycle per failed stream (the client, its connection and protocol), freed only by
        the collector. The futures (``_ready``, ``_ended``) end with ``None`` on a failure, not the
        exception, for the same reason.
        """
        e = self._error
        if e is not None:
            raise type(e)(e.error, e.message, e.close_code)

    async def _raise_closed(self) -> None:
        """A send found the connection closed: raise what the receive task made of it."""
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
        except (asyncio.TimeoutError, ConnectionClosed):
            pass
        self._raise()
        raise ConnectionLost("connection-lost", f"the connection to {self.url or 'the server'} closed while sending")

    async def _keepalive(self, interval: float, timeout: float) -> None:
        """A ping every ``interval`` s; no pong within ``timeout`` s: the server is hung, drop the connection."""
        ws = self.ws

        async def ping() -> None:
            waiter = await ws.ping()  # (may wait on a full socket buffer: inside the timeout)
            await waiter

        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await asyncio.wait_for(ping(), timeout=timeout)
                except asyncio.TimeoutError:
                    if self._error is None and not self._ended.done():
                        self._error = ServerUnresponsive("unresponsive", f"the server at {self.url} did not answer a ping within {timeout:g} s: it is hung or overloaded")
                    ws.transport.abort()
                    return
        except (ConnectionClosed, asyncio.CancelledError):
            return

    # ------------------------------------------------------------------ receiving
    async def _receive(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self._on_json(json.loads(message))
                else:
                    self._on_frames(P.decode_frames(message))
        except ConnectionClosed:
            pass
        finally:
            if self._keepalive_task is not None:
                self._keepalive_task.cancel()
            code, reason = self.ws.close_code, self.ws.close_reason
            if self._error is None and not self._ended.done():
                if self.ws.protocol.close_rcvd is None:  # no close frame: the server died, or the network dropped
                    self._error = ConnectionLost("connection-lost", f"the connection to {self.url or 'the server'} broke mid-stream, without a closing "
                                                 "handshake: the server stopped or the network dropped", code)  # fmt: skip
                else:
                    self._error = ServerError("closed", f"the server closed the connection before the end of the stream: {code} {reason}".strip(), code)
            elif self._error is not None and self._error.close_code is None:
                self._error.close_code = code
            for fut in (self._ready, self._ended):
                if not fut.done():
                    fut.set_result(None)  # (a failure: the waiter raises the error, see _raise)
            self._ack_event.set()
            break_cycles(self.ws)  # (a second time: a create_connection of the caller's may not have)

    def _on_json(self, msg: Dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ready" and not self._ready.done():
            self._ready.set_result(msg)
        elif kind == "end" and not self._ended.done():
            self.totals = msg
            self._ended.set_result(msg)
        elif kind == "error":
            self._error = ServerError(msg.get("error", "?"), msg.get("message", ""), msg.get("close"))

    def _on_frames(self, m: P.FrameMessage) -> None:
        now = time.perf_counter()
        expected = self._next[m.kind]
        if m.index > expected:
            self.lost += m.index - expected
        elif m.index < expected:
            self.reordered += 1
        self._next[m.kind] = max(expected, m.index + m.count)
        if m.kind == P.KIND_FRAMES:
            self.frame_count += m.count
        else:
            self.window_count += m.count
        if m.acked > self.acked:
            self.acked = m.acked
            marks = self._marks
            while marks and marks[0][0] <= m.acked:
                self.latencies.append(now - marks.popleft()[1])
            self._ack_event.set()
        if self.keep:
            self._blocks[m.kind].append((m.index, m.data))
        if self.on_message is not None:
            self.on_message(m)

    # ------------------------------------------------------------------ results
    @property
    def time_axis(self) -> int:
        return int(self.ready.get("time_axis", -1))

    def frames(self, *, finalize: bool = True) -> np.ndarray:
        """The frames received, in the preset's layout (``(bands, T)``, or ``(T, bands)`` time-major).

        For a non-frame-local preset (Whisper, NeMo, AST, ...) the server streams the
        frame-local part; with ``finalize`` (and the stream ended) the whole-input step
        is applied here, as :meth:`supermel.StreamPool.finalize` (the server's preset
        with its default configuration).
        """
        blocks = [b for _, b in sorted(self._blocks[P.KIND_FRAMES], key=lambda t: t[0])]
        bands = int(self.ready.get("bands", 0))
        tm = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, bands), np.float32)
        out = np.ascontiguousarray(tm.T) if self.time_axis == -1 else tm
        if finalize and not self.ready.get("frame_local", True) and self.totals is not None:
            import torch

            import supermel

            fe = supermel.frontend(self.ready["preset"])
            x = torch.from_numpy(np.ascontiguousarray(out))[None]
            out = fe.finalize_frames(x, [int(self.totals["resampled"])])[0].numpy()
        return out

    def windows(self) -> Optional[np.ndarray]:
        """The Wav2Lip windows received ``(w, bands, 16)`` (``fps`` streams), or ``None``."""
        blocks = [b for _, b in sorted(self._blocks[P.KIND_WINDOWS], key=lambda t: t[0])]
        return np.concatenate(blocks, axis=0) if blocks else None


async def stream_audio(
    url: str,
    audio: Any,
    sample_rate: int,
    *,
    chunk_seconds: float = 0.02,
    sample_format: Optional[str] = None,
    preset: Optional[str] = None,
    fps: Optional[float] = None,
    realtime: bool = False,
    max_in_flight: Optional[float] = 1.0,
    keep: bool = True,
    timeout: float = 60.0,
    **connect_kwargs: Any,
) -> Client:
    """Stream a whole signal to the server in chunks, end it, and return the finished :class:`Client`.

    Parameters
    ----------
    url : str
    audio : array (1-D)
        float samples (sent as float32, or converted for ``sample_format="int16"``) or int16.
    sample_rate : int
        Its rate (the server resamples to its preset's).
    chunk_seconds : float
        Chunk length (the last one may be shorter).
    sample_format : {"float32", "int16"}, optional
        Default: int16 for int16 audio, else float32.
    realtime : bool
        Pace the chunks in real time (a live source); else as fast as the flow control lets.
    max_in_flight : float, optional
        Without ``realtime``: seconds of unacknowledged audio allowed (keeps the server's
        backlog bounded); ``None`` sends without waiting.

    Examples
    --------
    >>> import asyncio, numpy as np
    >>> from supermel.serve import Server, ServerThread, stream_audio
    >>> with ServerThread(Server(core=dict(sr=16000, n_fft=400, hop_length=160, n_mels=40), port=0, page=False)) as srv:
    ...     c = asyncio.run(stream_audio(srv.url, np.zeros(8000, np.int16), 8000))
    >>> c.totals["frames"], c.totals["resampled"]
    (101, 16000)
    """
    x = np.asarray(audio)
    if x.ndim != 1 or x.size == 0:
        raise ParameterError(f"audio must be a non-empty 1-D array of mono samples; got shape {x.shape}")
    fmt = sample_format or ("int16" if x.dtype == np.int16 else "float32")
    step = max(1, int(round(chunk_seconds * sample_rate)))
    client = await Client.connect(url, sample_rate=sample_rate, sample_format=fmt, preset=preset, fps=fps, keep=keep,
                                  max_in_flight=None if realtime else max_in_flight, **connect_kwargs)  # fmt: skip
    try:
        t0 = time.perf_counter()
        for i in range(0, x.size, step):
            if realtime:
                wait = t0 + i / sample_rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            await client.send(x[i : i + step])
        await client.end(timeout=timeout)
    except BaseException:
        await client.close()
        raise
    return client


def stream_sync(url: str, audio: Any, sample_rate: int, **kwargs: Any) -> Client:
    """:func:`stream_audio` from synchronous code (``asyncio.run``; not inside a running event loop).

    Parameters
    ----------
    url : str
        ``ws://host:port/`` of a ``supermel serve`` server.
    audio : array [shape=(n,)]
        float or int16 samples.
    sample_rate : int
        Their rate in Hz.
    **kwargs
        As :func:`stream_audio` (``chunk_seconds``, ``preset``, ``fps``, ``realtime``, ...).

    Returns
    -------
    Client
        Finished: ``frames()``, ``totals``, ``latencies``.

    Raises
    ------
    ServerError
        The server refused the stream (its error code and message).

    Examples
    --------
    A server on a free loopback port, in a thread, and a second of silence streamed to it:

    >>> import numpy as np
    >>> from supermel.serve import Server, ServerThread, stream_sync
    >>> with ServerThread(Server(core=dict(sr=16000, n_fft=400, hop_length=160, n_mels=40), port=0, page=False)) as srv:
    ...     c = stream_sync(srv.url, np.zeros(16000, np.float32), 16000)
    >>> c.frames().shape, c.totals["frames"], c.lost
    ((40, 101), 101, 0)
    """
    return asyncio.run(stream_audio(url, audio, sample_rate, **kwargs))
