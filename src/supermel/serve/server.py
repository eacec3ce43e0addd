"""``supermel serve``: many live audio streams over WebSocket, one batched :class:`~supermel.StreamPool` step per tick.

How it runs
-----------
One asyncio event loop. Each connection has a receive loop (validate, convert and
resample each PCM chunk, append it to the stream's inbox) and a sender task that
writes the connection's bounded send queue. A single **stepper** task wakes when
input arrives and runs a *cycle* per pool (cycles start at least ``step_interval``
apart): open the new streams, push every inbox, one :meth:`StreamPool.step` (at most
``max_frames_per_step`` frames, streams served in rotation), close the ended
streams; then it hands each connection its frames.
The cycle runs in the event-loop thread (default) or, with ``step_thread=True``, in
one worker thread (the pool is touched by that one thread only); docs/serving.md
gives the measurements behind the default.

Bounds (one client's load never grows the server's memory without bound):

- audio waiting to be computed: the inbox plus the pool's backlog, each at most
  ``max_backlog_seconds`` (past that: close 1013 ``behind``);
- frames queued for sending: ``max_send_seconds`` of frames (past that: close 1013
  ``not-reading``), the socket's own buffers (``socket_send_buffer``) and
  ``websockets``' write buffer (64 KiB);
- messages: ``max_chunk_seconds`` of audio per binary message, 64 KiB per text message;
- connections: ``max_clients`` (past that: close 1013 ``server-full``).

Errors go to the client concerned only (a JSON ``error`` message, then a close code:
:data:`supermel.serve.protocol.ERRORS`); the others are not affected.

Where the code lives
--------------------
=====================  ==============================================================
``server.py``          :class:`Server` (options, start, shutdown, stats), :class:`ServerThread`
``_session.py``        a connection: receive loop, checks and limits, sender (mixin)
``_step.py``           the stepper: pool cycles, frames to the send queues (mixin)
``_http.py``           the page and ``/stats``, ``/hello`` (mixin)
``_guard.py``          access control (Host, Origin, token), connection bounds, idle timeout (mixin)
``_gc.py``             full garbage collections at quiet moments (``full_gc_interval``; mixin)
``_state.py``          per-pool, per-connection and per-cycle state; :class:`Recording`
``_threads.py``        :func:`limit_threads`
``_ws.py``             the ``websockets`` names used (one place for the missing-extra error)
=====================  ==============================================================
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
import logging
import math
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._errors import ParameterError
from .._version import __version__
from ..pool import StreamPool
from . import protocol as P
from ._gc import GcSchedule
from ._guard import ACCEPT_BATCH, Guard, connection_class, deepen_listen_queue, open_descriptors, raise_fd_limit
from ._http import HttpEndpoints, load_static
from ._session import TEXT_LIMIT, WRITE_LIMIT, Sessions
from ._state import NEW, STREAMING, Close, Conn, PoolState, Recording, pool_state
from ._step import Stepper
from ._threads import limit_threads
from ._ws import WsServer, ws_serve

__all__ = ["Server", "ServerThread", "Recording", "limit_threads", "CORE_NAME"]

log = logging.getLogger("supermel.serve")

#: The name under which the plain mel spectrogram (no preset) is served.
CORE_NAME = "mel"


# --------------------------------------------------------------------------- the server
class Server(Guard, GcSchedule, HttpEndpoints, Sessions, Stepper):
    """A WebSocket server streaming mel features of many live clients (``supermel serve``).

    Parameters
    ----------
    presets : str, sequence of str, or None
        Front ends to serve (``supermel.frontend`` names), one :class:`~supermel.StreamPool`
        each. ``None`` (or empty): the plain mel spectrogram of ``core``, named ``"mel"``.
        A client's ``start`` names one of them, or takes the first.
    core : dict, optional
        ``supermel.melspectrogram`` keywords of the plain mel spectrogram (``sr``,
        ``n_fft``, ``hop_length``, ``n_mels``, ...); served as ``"mel"`` (also next to
        ``presets`` when given). Default: librosa's defaults at 22050 Hz.
    host, port : str, int
        Where to listen (``port=0``: an ephemeral port, see :attr:`port`).
    device : str, optional
        Where the pools compute (``"cpu"``, ``"cuda"``).
    max_clients : int
        Connections served at once; one more is closed with 1013 ``server-full``.
    max_frames_per_step : int
        Cap on the frames one pool step computes (bounds one step's latency).
    step_interval : float
        Least time between the starts of two cycles, in seconds (``0``: a cycle as soon
        as input arrives). Input arriving sooner joins the next cycle: under load, fewer
        and larger steps for at most this much added latency; a light load (cycles further
        apart than this) is not delayed, nor is the cycle after a capped one, nor a stream
        whose inbox holds over half of ``max_backlog_seconds``.
    max_backlog_seconds : float
        Audio per stream that may wait to be computed (inbox, and the pool's backlog).
    max_send_seconds : float
        Frames per client that may wait to be sent, in seconds of audio.
    max_chunk_seconds : float
        Longest binary audio message, in seconds at the client's rate (< ``max_backlog_seconds``).
    start_timeout : float
        Seconds a connection may wait before its ``start``.
    close_timeout : float
        Seconds the closing handshake may take before the connection is dropped.
    socket_send_buffer : int, optional
        ``SO_SNDBUF`` of each connection's socket (bytes; ``None``: the system's,
        which may grow to megabytes and delay the detection of a client that stops reading).
    step_thread : bool
        Run the pool cycle in one worker thread instead of the event loop's thread.
    record : bool
        Keep each connection's received audio and sent frames (:attr:`recordings`): a
        test and debugging hook, at most ``max_record_seconds`` of audio per connection
        and the last 64 connections.
    page : bool
        Serve the live page at ``/`` (and ``/worklet.js``).
    token : str, optional
        Bearer token the WebSocket, ``/stats`` and ``/hello`` need (``Authorization:
        Bearer TOKEN`` or ``?token=TOKEN``; compared in constant time). Required to listen
        on a non-loopback address, unless ``insecure``.
    allow_origins : sequence of str
        ``Origin`` values accepted on the WebSocket besides the page's own
        (``scheme://host[:port]``; ``"*"``: any). Browsers send ``Origin``; a foreign one
        (``null`` included) is refused with HTTP 403 before the upgrade.
    allow_hosts : sequence of str
        ``Host`` names accepted besides the bound address and the loopback names (any
        IP address when bound to a wildcard address; ``"*"``: any): DNS rebinding defence.
    certfile, keyfile : str, optional
        TLS certificate chain and key (PEM): the server speaks ``wss://`` and ``https://``.
    insecure : bool
        Allow a non-loopback address without a token.
    idle_timeout : float or None
        Seconds a started stream may go without audio before it is closed 1008 ``idle``.
    max_per_address : int or None
        Open TCP connections per client address; past it the upgrade is refused with HTTP 429.
    max_half_open : int
        Connections that have not sent their HTTP request yet; past it the oldest is dropped.
    handshake_timeout : float
        Seconds the TLS and WebSocket handshakes may take.
    raise_fd_limit : bool
        At :meth:`start`, raise the process's soft descriptor limit to its hard limit
        (reported in :meth:`snapshot_stats`).
    full_gc_interval : float or None
        Take the garbage collector's full collections over (they stopped the event loop for
        100-160 ms every few seconds under many connections, finding nothing to free): none
        automatic, one when the server is idle, and one at least every this many seconds.
        ``None`` (default): Python's own policy (the collector's settings are the process's;
        ``supermel serve`` sets 600). See ``_gc.py``.

    Examples
    --------
    >>> import asyncio
    >>> async def main():                                             # doctest: +SKIP
    ...     async with Server(core=dict(sr=16000, n_fft=400, hop_length=160, n_mels=80), port=0) as srv:
    ...         print(srv.url)
    ...         await srv.serve_forever()
    """

    def __init__(
        self,
        presets: Union[None, str, Sequence[str]] = None,
        *,
        core: Optional[Mapping[str, Any]] = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        device: Optional[str] = None,
        max_clients: int = 256,
        max_frames_per_step: int = 1024,
        step_interval: float = 0.002,
        max_backlog_seconds: float = 2.0,
        max_send_seconds: float = 2.0,
        max_chunk_seconds: float = 1.0,
        start_timeout: float = 30.0,
        close_timeout: float = 5.0,
        socket_send_buffer: Optional[int] = None,
        step_thread: bool = False,
        record: bool = False,
        max_record_seconds: float = 600.0,
        page: bool = True,
        token: Optional[str] = None,
        allow_origins: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        insecure: bool = False,
        idle_timeout: Optional[float] = 30.0,
        max_per_address: Optional[int] = 64,
        max_half_open: int = 2048,
        handshake_timeout: float = 5.0,
        raise_fd_limit: bool = True,
        full_gc_interval: Optional[float] = None,
    ) -> None:
        def positive(name: str, value: Any, integer: bool = False) -> None:
            ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
                kind = "a positive integer" if integer else "a positive number"
                raise ParameterError(f"{name}={value!r} must be {kind}")

        for name, value in (("max_clients", max_clients), ("max_frames_per_step", max_frames_per_step)):
            positive(name, value, integer=True)
        for name, value in (("max_backlog_seconds", max_backlog_seconds), ("max_send_seconds", max_send_seconds),
                            ("max_chunk_seconds", max_chunk_seconds), ("start_timeout", start_timeout),
                            ("close_timeout", close_timeout), ("max_record_seconds", max_record_seconds)):  # fmt: skip
            positive(name, value)
        if max_chunk_seconds >= max_backlog_seconds:
            raise ParameterError(f"max_chunk_seconds={max_chunk_seconds} must be below max_backlog_seconds={max_backlog_seconds}: one chunk must fit the backlog")
        if full_gc_interval is not None:
            positive("full_gc_interval", full_gc_interval)
        if socket_send_buffer is not None:
            positive("socket_send_buffer", socket_send_buffer, integer=True)
        if isinstance(step_interval, bool) or not isinstance(step_interval, (int, float)) or not 0 <= step_interval < 1:
            raise ParameterError(f"step_interval={step_interval!r} must be a number of seconds in [0, 1) (0: a cycle as soon as input arrives)")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ParameterError(f"port={port!r} must be an integer in 0..65535 (0: an ephemeral port)")
        names = [presets] if isinstance(presets, str) else list(presets or [])
        if len(set(names)) != len(names):
            raise ParameterError(f"presets={names!r} names a preset twice")
        if CORE_NAME in names:
            raise ParameterError(f"{CORE_NAME!r} is the plain mel spectrogram's name here; pass core=... for it")
        self.host, self.requested_port = host, port
        self.max_clients = int(max_clients)
        self.max_backlog_seconds = float(max_backlog_seconds)
        self.step_interval = float(step_interval)
        self.max_send_seconds = float(max_send_seconds)
        self.max_chunk_seconds = float(max_chunk_seconds)
        self.start_timeout = float(start_timeout)
        self.close_timeout = float(close_timeout)
        self.socket_send_buffer = socket_send_buffer
        self.record = bool(record)
        self.max_record_seconds = float(max_record_seconds)
        self.page = bool(page)
        self._pools: Dict[str, PoolState] = {}
        # check_finite=False: every chunk was checked on arrival (protocol.decode_pcm), not again per push
        pool_kw = dict(device=device, max_frames_per_step=int(max_frames_per_step), max_backlog_seconds=self.max_backlog_seconds, check_finite=False)
        specs: List[Tuple[str, Optional[str], Dict[str, Any]]] = [(n, n, {}) for n in names]
        if core is not None or not names:
            specs.append((CORE_NAME, None, dict(core or {})))
        for name, preset, kw in specs:
            pool = StreamPool(preset, **pool_kw, **kw)  # type: ignore[arg-type]
            self._pools[name] = pool_state(name, pool, core=preset is None)
        self.default = next(iter(self._pools))
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="supermel-step") if step_thread else None
        self._static = load_static()
        self._conns: Dict[int, Conn] = {}
        self._ids = itertools.count(1)
        self.recordings: "collections.OrderedDict[int, Recording]" = collections.OrderedDict()
        self.stats: Dict[str, Any] = {
            "connections": 0, "steps": 0, "frames": 0, "max_step_frames": 0, "step_seconds": 0.0,
            "errors": collections.Counter(), "close_codes": collections.Counter(), "memory_trims": 0, "trim_seconds": 0.0,
        }  # fmt: skip
        self._trim_timer: Optional[asyncio.TimerHandle] = None  # (_session.py: malloc_trim after connections close)
        self._init_guard(token=token, allow_origins=allow_origins, allow_hosts=allow_hosts, certfile=certfile, keyfile=keyfile, insecure=insecure,
                         idle_timeout=idle_timeout, max_per_address=max_per_address, max_half_open=max_half_open, handshake_timeout=handshake_timeout)  # fmt: skip
        self._raise_fd_limit = bool(raise_fd_limit)
        self._init_gc(None if full_gc_interval is None else float(full_gc_interval))
        self._hello_cache: Optional[str] = None
        self._ws: Optional[WsServer] = None
        self._wake: Optional[asyncio.Event] = None
        self._next_cycle = 0.0
        self._kick_timer: Optional[asyncio.TimerHandle] = None
        self._stepper: Optional["asyncio.Task[None]"] = None
        self._stopped: Optional[asyncio.Event] = None
        self._closing = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._shutdown_task: Optional["asyncio.Future[None]"] = None
        self.port: Optional[int] = None
        self.reuse_port = False  # SO_REUSEPORT (``supermel serve --workers N``: the workers share the port)
        self.worker: Optional[int] = None  # this process's index among the workers (reported in /stats)

    # ------------------------------------------------------------------ public
    @property
    def pools(self) -> Dict[str, StreamPool]:
        """The pools served, by name."""
        return {name: ps.pool for name, ps in self._pools.items()}

    @property
    def url(self) -> str:
        """``ws://host:port/`` (``wss://`` with TLS; after :meth:`start`)."""
        if self.port is None:
            raise ParameterError("the server has not started yet: await server.start() (or use `async with server`)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}/"

    @property
    def open_streams(self) -> int:
        """Streams open in the pools (a slot per streaming client)."""
        return sum(len(ps.pool) for ps in self._pools.values())

    def hello(self) -> Dict[str, Any]:
        """The ``hello`` message: protocol, presets served and limits."""
        return {
            "type": "hello", "protocol": P.PROTOCOL, "server": f"supermel {__version__}",
            "presets": {name: ps.info for name, ps in self._pools.items()}, "default": self.default,
            "formats": sorted(P.FORMATS), "rates": [P.MIN_RATE, P.MAX_RATE], "max_chunk_seconds": self.max_chunk_seconds,
        }  # fmt: skip

    def _hello_text(self) -> str:
        """:meth:`hello` as JSON, built once (the presets and limits do not change; 0.2 ms a connection otherwise)."""
        if self._hello_cache is None:
            self._hello_cache = json.dumps(self.hello())
        return self._hello_cache

    def snapshot_stats(self) -> Dict[str, Any]:
        """Counters (JSON-ready): connections, open streams, steps, frames, step time, errors and close codes;
        this process's ``pid`` and ``worker`` index (``supermel serve --workers N``: the worker that answered)."""
        s = dict(self.stats)
        s["errors"], s["close_codes"] = dict(s["errors"]), {str(k): v for k, v in s["close_codes"].items()}
        s.update(clients=len(self._conns), streams=self.open_streams, closing=self._closing, pid=os.getpid(), worker=self.worker, **self._guard_stats())
        return s

    async def start(self) -> "Server":
        """Listen (returns once the socket is bound)."""
        if self._ws is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        if self._raise_fd_limit:
            self.fd_limits = raise_fd_limit()
        biggest = int(P.MAX_RATE * 4 * self.max_chunk_seconds)
        self._ws = await ws_serve(
            self._handler, self.host, self.requested_port, compression=None, max_size=max(2 * biggest, 2 * TEXT_LIMIT),
            max_queue=16, write_limit=WRITE_LIMIT, close_timeout=self.close_timeout, process_request=self._process_request,
            server_header=f"supermel/{__version__}", **({"reuse_port": True} if self.reuse_port else {}), open_timeout=self.handshake_timeout + 5.0, create_connection=connection_class(self),
            ssl=self._ssl, **({"ssl_handshake_timeout": self.handshake_timeout} if self._ssl is not None else {}), backlog=ACCEPT_BATCH, logger=logging.getLogger("websockets.server"),  # (else a getLogger call per connection)
        )  # fmt: skip
        deepen_listen_queue(self._ws.sockets)
        self._base_fds = open_descriptors()
        self.port = int(self._ws.sockets[0].getsockname()[1])
        self._stepper = asyncio.create_task(self._step_loop(), name="supermel-stepper")
        if self.idle_timeout is not None:
            self._idle_task = asyncio.create_task(self._idle_loop(), name="supermel-idle")
        self._handshake_task = asyncio.create_task(self._handshake_loop(), name="supermel-handshakes")
        self._gc_start()
        log.debug("listening on %s", self.url)
        return self

    async def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or :meth:`request_shutdown`) has finished."""
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    def request_shutdown(self) -> None:
        """Begin :meth:`shutdown` from a signal handler or another thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def go() -> None:
            if not self._closing:
                self._shutdown_task = asyncio.ensure_future(self.shutdown())

        loop.call_soon_threadsafe(go)

    async def shutdown(self, reason: str = "server shutting down") -> None:
        """Stop accepting, flush every stream (last frames, then ``end``), close with 1001, stop."""
        if self._closing:
            assert self._stopped is not None
            await self._stopped.wait()
            return
        self._closing = True
        if self._ws is None:
            return
        self._ws.close(close_connections=False)  # no new connections
        for conn in list(self._conns.values()):
            if conn.state == STREAMING:
                self._end(conn, reason="shutdown")
            elif conn.state == NEW:
                conn.put(Close(1001, reason))
        try:
            await asyncio.wait_for(self._ws.wait_closed(), timeout=self.close_timeout + 5.0)
        except asyncio.TimeoutError:
            log.warning("shutdown: some connections did not close in time; dropping them")
            for conn in list(self._conns.values()):
                conn.ws.transport.abort()
        for task in (self._stepper, self._idle_task, self._handshake_task, self._gc_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._gc_stop()
        if self._kick_timer is not None:
            self._kick_timer.cancel()
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        assert self._stopped is not None
        self._stopped.set()

    async def __aenter__(self) -> "Server":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.shutdown()

# --------------------------------------------------------------------------- in a thread
class ServerThread:
    """Run a :class:`Server` in a background thread with its own event loop (tests, notebooks).

    Examples
    --------
    >>> with ServerThread(Server(core=dict(sr=16000), port=0)) as srv:   # doctest: +SKIP
    ...     print(srv.url)
    """

    def __init__(self, server: Server, *, timeout: float = 30.0) -> None:
        self.server = server
        self.timeout = timeout
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> Server:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:  # bind errors
                self._error = exc
                self._ready.set()
                loop.close()
                return
            self._ready.set()
            try:
                loop.run_until_complete(self.server.serve_forever())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="supermel-serve", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout):
            raise ParameterError(f"the server did not start within {self.timeout:g} s")
        if self._error is not None:
            raise self._error
        return self.server

    def call(self, coro: Any, timeout: Optional[float] = None) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout or self.timeout)

    def __exit__(self, *exc: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.call(self.server.shutdown(), timeout=self.timeout)
            except (RuntimeError, concurrent.futures.TimeoutError):
                pass
        if self._thread is not None:
            self._thread.join(self.timeout)
