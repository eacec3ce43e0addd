"""``supermel serve``: many live audio streams over WebSocket, one batched :class:`~supermel.StreamPool` step per tick.

How it runs
-----------
One asyncio event loop. Each connection has a receive loop (validate, convert and
resample each PCM chunk, append it to the stream's inbox) and a sender task that
writes the connection's bounded send queue. A single **stepper** task wakes when
input arrives and runs a *cycle* per pool: open the new streams, push every inbox,
one :meth:`StreamPool.step` (at most ``max_frames_per_step`` frames, streams served
in rotation), close the ended streams; then it hands each connection its frames.
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
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._errors import ParameterError
from .._version import __version__
from ..pool import PoolFrames, StreamPool
from . import protocol as P
from .resample import StreamResampler

try:
    from websockets.asyncio.server import Server as _WsServer
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as _ws_serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(f"supermel.serve needs the optional module 'websockets' (>= 14): pip install 'supermel[serve]' ({_exc})") from None

__all__ = ["Server", "ServerThread", "Recording", "limit_threads", "CORE_NAME"]

log = logging.getLogger("supermel.serve")

#: The name under which the plain mel spectrogram (no preset) is served.
CORE_NAME = "mel"
#: Largest text (JSON) message accepted.
TEXT_LIMIT = 65536
#: websockets' write buffer high-water mark per connection.
WRITE_LIMIT = 65536

_STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}  # fmt: skip


def limit_threads() -> Dict[str, Any]:
    """Pin the compute libraries to one thread for a server process; what was set.

    torch's intra-op pool (``torch.set_num_threads(1)``) and, through threadpoolctl,
    the BLAS and OpenMP pools (numpy's OpenBLAS). Worker threads spinning next to the
    event loop cost CPU the loop needs: pinning OpenBLAS to one thread cut server CPU
    by ~35% in the measurements of docs/serving.md. ``supermel serve`` calls this at start.
    """
    import torch

    torch.set_num_threads(1)
    done: Dict[str, Any] = {"torch": 1}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        done["threadpoolctl"] = "not installed (pip install threadpoolctl); set OPENBLAS_NUM_THREADS=1 instead"
        return done
    threadpool_limits(limits=1)  # applied now, kept (not used as a context manager)
    done["blas/openmp"] = 1
    return done


# --------------------------------------------------------------------------- per preset
def _band_hz(cfg: Mapping[str, Any], sr: float) -> Optional[List[float]]:
    """Centre frequencies of the mel bands (for the page's Hz axis); ``None`` when the scale is unknown."""
    import supermel

    if "num_mel_bins" in cfg:  # Kaldi: HTK's mel formula, high_freq <= 0 counts from Nyquist
        if cfg.get("use_energy"):
            return None
        high = float(cfg.get("high_freq") or 0.0)
        n, lo, hi, htk = int(cfg["num_mel_bins"]), float(cfg.get("low_freq") or 0.0), (high if high > 0 else sr / 2 + high), True
    elif "n_mels" in cfg:
        n, lo = int(cfg["n_mels"]), float(cfg.get("fmin") or 0.0)
        hi = float(cfg["fmax"]) if cfg.get("fmax") is not None else sr / 2
        htk = bool(cfg.get("htk"))
    else:
        return None
    centres = supermel.mel_frequencies(n + 2, fmin=lo, fmax=hi, htk=htk)[1:-1]
    return [round(float(f), 2) for f in centres]


@dataclass
class _PoolState:
    name: str
    pool: StreamPool
    info: Dict[str, Any]
    wav2lip: bool
    opening: List["_Conn"] = field(default_factory=list)
    dirty: Dict["_Conn", None] = field(default_factory=dict)  # ordered set
    closing: List["_Conn"] = field(default_factory=list)
    by_sid: Dict[int, "_Conn"] = field(default_factory=dict)
    more: bool = False  # the last step was capped: frames may be pending

    def has_work(self) -> bool:
        return bool(self.opening or self.dirty or self.closing or self.more)


# --------------------------------------------------------------------------- per connection
@dataclass
class Recording:
    """What a connection sent and received (``Server(record=True)``: a test and debugging hook).

    ``audio`` is the PCM the server received, as float32 at the client's rate (int16
    divided by 32768), at most ``max_record_seconds``; ``frames`` the frames sent,
    concatenated in the preset's layout (``time_axis``); ``end`` the totals sent
    (``None`` when the stream did not end normally); ``close_code`` the code the
    connection closed with.
    """

    id: int
    sample_rate: int = 0
    format: str = ""
    preset: str = ""
    time_axis: int = -1
    chunks: List[np.ndarray] = field(default_factory=list)
    samples: int = 0
    truncated: bool = False
    frame_blocks: List[Tuple[int, np.ndarray]] = field(default_factory=list)
    window_blocks: List[Tuple[int, np.ndarray]] = field(default_factory=list)
    end: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    close_code: Optional[int] = None
    close_reason: str = ""

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    @property
    def frames(self) -> np.ndarray:
        """The frames sent (time-major blocks joined, in the preset's layout)."""
        blocks = [b for _, b in sorted(self.frame_blocks, key=lambda t: t[0])]
        tm = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, 0), np.float32)
        return np.ascontiguousarray(tm.T) if self.time_axis == -1 else tm

    @property
    def windows(self) -> Optional[np.ndarray]:
        blocks = [b for _, b in sorted(self.window_blocks, key=lambda t: t[0])]
        return np.concatenate(blocks, axis=0) if blocks else None


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


_NEW, _STREAMING, _ENDING, _CLOSING = "new", "streaming", "ending", "closing"


class _Conn:
    """One client: its stream's state, inbox and send queue (touched by the event loop only)."""

    def __init__(self, cid: int, ws: ServerConnection) -> None:
        self.id = cid
        self.ws = ws
        self.state = _NEW
        self.ps: Optional[_PoolState] = None
        self.sid: Optional[int] = None
        self.detached = False  # the stream was handed to the pool for closing without output
        self.gone = False  # nothing more is sent to this client
        self.end_reason = ""
        self.rate = 0
        self.format = "float32"
        self.fps: Optional[float] = None
        self.max_bytes = 0
        self.resampler: Optional[StreamResampler] = None
        self.inbox: List[np.ndarray] = []
        self.inbox_n = 0
        self.samples_in = 0  # client samples received
        self.resampled = 0  # samples at the preset's rate handed to the pool
        self.acked = 0  # samples_in when the current cycle took the inbox
        self.frames_sent = 0
        self.windows_sent = 0
        self.outq: Deque[Any] = collections.deque()
        self.out_event = asyncio.Event()
        self.queued_frames = 0
        self.max_queued_frames = 0
        self.sender: Optional["asyncio.Task[None]"] = None
        self.record: Optional[Recording] = None
        self.close_code: Optional[int] = None

    def __hash__(self) -> int:
        return self.id

    def put(self, item: Any, frames: int = 0) -> None:
        self.outq.append((item, frames) if not isinstance(item, _Close) else item)
        self.queued_frames += frames
        self.out_event.set()


@dataclass
class _Work:
    """One cycle's input (snapshot taken in the loop) and output (filled by :meth:`Server._run`)."""

    ps: _PoolState
    opens: List[_Conn]
    pushes: List[Tuple[_Conn, List[np.ndarray]]]
    closes: List[_Conn]
    sids: Dict[int, Optional[int]]  # conn id -> stream id, as the loop knows it
    opened: List[Tuple[_Conn, Union[int, Exception]]] = field(default_factory=list)
    failed: List[Tuple[_Conn, str]] = field(default_factory=list)
    out: Dict[int, PoolFrames] = field(default_factory=dict)
    closed: List[Tuple[_Conn, Union[PoolFrames, Exception, None]]] = field(default_factory=list)
    frames: int = 0


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()  # a torch tensor (GPU pools)


# --------------------------------------------------------------------------- the server
class Server:
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
        if socket_send_buffer is not None:
            positive("socket_send_buffer", socket_send_buffer, integer=True)
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
        self.max_send_seconds = float(max_send_seconds)
        self.max_chunk_seconds = float(max_chunk_seconds)
        self.start_timeout = float(start_timeout)
        self.close_timeout = float(close_timeout)
        self.socket_send_buffer = socket_send_buffer
        self.record = bool(record)
        self.max_record_seconds = float(max_record_seconds)
        self.page = bool(page)
        self._pools: Dict[str, _PoolState] = {}
        pool_kw = dict(device=device, max_frames_per_step=int(max_frames_per_step), max_backlog_seconds=self.max_backlog_seconds)
        specs: List[Tuple[str, Optional[str], Dict[str, Any]]] = [(n, n, {}) for n in names]
        if core is not None or not names:
            specs.append((CORE_NAME, None, dict(core or {})))
        for name, preset, kw in specs:
            pool = StreamPool(preset, **pool_kw, **kw)  # type: ignore[arg-type]
            self._pools[name] = self._pool_state(name, pool, core=preset is None)
        self.default = next(iter(self._pools))
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="supermel-step") if step_thread else None
        self._static = {path: (resources.files(__package__).joinpath("static", fname).read_bytes(), ctype) for path, (fname, ctype) in _STATIC.items()}
        self._conns: Dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self.recordings: "collections.OrderedDict[int, Recording]" = collections.OrderedDict()
        self.stats: Dict[str, Any] = {
            "connections": 0, "steps": 0, "frames": 0, "max_step_frames": 0, "step_seconds": 0.0,
            "errors": collections.Counter(), "close_codes": collections.Counter(),
        }  # fmt: skip
        self._ws: Optional[_WsServer] = None
        self._wake: Optional[asyncio.Event] = None
        self._stepper: Optional["asyncio.Task[None]"] = None
        self._stopped: Optional[asyncio.Event] = None
        self._closing = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._shutdown_task: Optional["asyncio.Future[None]"] = None
        self.port: Optional[int] = None

    @staticmethod
    def _pool_state(name: str, pool: StreamPool, *, core: bool) -> _PoolState:
        fe = pool.frontend
        cfg = fe.config.as_dict()
        if core:
            p = float(cfg.get("power", 2.0))
            scale = "power" if p == 2.0 else ("magnitude" if p == 1.0 else f"magnitude^{p:g}")
        else:
            scale = "log"
        info = {
            "sr": int(round(pool.sr)), "bands": int(fe.mel_rows), "hop_length": int(pool.hop_length),
            "frame_rate": pool.sr / pool.hop_length, "time_axis": int(pool.time_axis), "frame_local": bool(pool.frame_local),
            "scale": scale, "band_hz": _band_hz(cfg, pool.sr), "wav2lip": name.startswith("wav2lip") or cfg.get("name", "").startswith("wav2lip"),
            "config": {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }  # fmt: skip
        return _PoolState(name, pool, info, wav2lip=bool(info["wav2lip"]))

    # ------------------------------------------------------------------ public
    @property
    def pools(self) -> Dict[str, StreamPool]:
        """The pools served, by name."""
        return {name: ps.pool for name, ps in self._pools.items()}

    @property
    def url(self) -> str:
        """``ws://host:port/`` (after :meth:`start`)."""
        if self.port is None:
            raise ParameterError("the server has not started yet: await server.start() (or use `async with server`)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/"

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

    def snapshot_stats(self) -> Dict[str, Any]:
        """Counters (JSON-ready): connections, open streams, steps, frames, step time, errors and close codes."""
        s = dict(self.stats)
        s["errors"], s["close_codes"] = dict(s["errors"]), {str(k): v for k, v in s["close_codes"].items()}
        s.update(clients=len(self._conns), streams=self.open_streams, closing=self._closing)
        return s

    async def start(self) -> "Server":
        """Listen (returns once the socket is bound)."""
        if self._ws is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        biggest = int(P.MAX_RATE * 4 * self.max_chunk_seconds)
        self._ws = await _ws_serve(
            self._handler, self.host, self.requested_port, compression=None, max_size=max(2 * biggest, 2 * TEXT_LIMIT),
            max_queue=16, write_limit=WRITE_LIMIT, close_timeout=self.close_timeout, process_request=self._process_request,
            server_header=f"supermel/{__version__}",
        )  # fmt: skip
        self.port = int(self._ws.sockets[0].getsockname()[1])
        self._stepper = asyncio.create_task(self._step_loop(), name="supermel-stepper")
        log.info("listening on %s", self.url)
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
            if conn.state == _STREAMING:
                self._end(conn, reason="shutdown")
            elif conn.state == _NEW:
                conn.put(_Close(1001, reason))
        try:
            await asyncio.wait_for(self._ws.wait_closed(), timeout=self.close_timeout + 5.0)
        except asyncio.TimeoutError:
            log.warning("shutdown: some connections did not close in time; dropping them")
            for conn in list(self._conns.values()):
                conn.ws.transport.abort()
        if self._stepper is not None:
            self._stepper.cancel()
            try:
                await self._stepper
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        assert self._stopped is not None
        self._stopped.set()

    async def __aenter__(self) -> "Server":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.shutdown()

    # ------------------------------------------------------------------ HTTP
    def _process_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = request.path.split("?", 1)[0]
        if path == "/stats":
            return self._http(200, json.dumps(self.snapshot_stats()).encode(), "application/json")
        if path == "/hello":
            return self._http(200, json.dumps(self.hello()).encode(), "application/json")
        static = self._static.get(path) if self.page else None
        if static is None:
            return self._http(404, b"not found: the page is at /, the WebSocket at ws://HOST:PORT/\n", "text/plain; charset=utf-8")
        return self._http(200, *static)

    @staticmethod
    def _http(status: int, body: bytes, ctype: str) -> Response:
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"), ("Connection", "close")])
        return Response(status, "OK" if status == 200 else "Not Found", headers, body)

    # ------------------------------------------------------------------ a connection
    async def _handler(self, ws: ServerConnection) -> None:
        conn = _Conn(next(self._ids), ws)
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
            conn.state = _CLOSING
            conn.put(_Close(1001, "server shutting down"))
        elif len(self._conns) >= self.max_clients:
            self._fail(conn, P.ProtocolError("server-full", f"the server serves {self.max_clients} clients at most; try again later"))
        else:
            self._conns[conn.id] = conn
            conn.put(json.dumps(self.hello()))
        try:
            await self._receive(conn)  # (a refused connection: reads, and ignores, until the close completes)
        except ConnectionClosed:
            pass
        except Exception:  # a bug: this client only
            log.exception("connection %d: internal error", conn.id)
            self._fail(conn, P.ProtocolError("flush-failed", "internal server error"))
        finally:
            self._conns.pop(conn.id, None)
            self._detach(conn)
        try:
            await asyncio.wait_for(asyncio.shield(conn.sender), timeout=self.close_timeout + 1.0)
        except (asyncio.TimeoutError, ConnectionClosed):
            conn.sender.cancel()
        code = ws.close_code if ws.close_code is not None else conn.close_code
        self.stats["close_codes"][code] += 1
        if conn.record is not None:
            conn.record.close_code, conn.record.close_reason = code, ws.close_reason or ""

    async def _receive(self, conn: _Conn) -> None:
        ws = conn.ws
        try:
            first = await asyncio.wait_for(ws.recv(), timeout=self.start_timeout)
        except asyncio.TimeoutError:
            if conn.state == _NEW:
                self._fail(conn, P.ProtocolError("timeout", f"no start message within {self.start_timeout:g} s of connecting"))
            first = None
        if first is not None:
            self._on_message(conn, first)
        async for message in ws:
            self._on_message(conn, message)

    def _on_message(self, conn: _Conn, message: Union[str, bytes]) -> None:
        if conn.state in (_CLOSING, _ENDING):
            return  # closing: what is still in flight is dropped
        try:
            if isinstance(message, str):
                self._on_text(conn, message)
            elif conn.state == _NEW:
                raise P.ProtocolError("not-started", 'audio before start: send {"type": "start", "sample_rate": ...} as a text message first')
            else:
                self._on_audio(conn, message)
        except P.ProtocolError as exc:
            self._fail(conn, exc)

    def _on_text(self, conn: _Conn, text: str) -> None:
        if len(text) > TEXT_LIMIT:
            raise P.ProtocolError("too-large", f"a text message of {len(text)} characters; at most {TEXT_LIMIT}")
        obj = P.parse_json(text)
        kind = obj["type"]
        if kind == "start":
            if conn.state != _NEW:
                raise P.ProtocolError("bad-request", "start: this connection has started already (one stream per connection)")
            self._start(conn, P.parse_start(obj, self._pools))
        elif kind == "end":
            if conn.state == _NEW:
                raise P.ProtocolError("bad-request", "end before start: nothing to end")
            self._end(conn, reason="client")
        else:
            raise P.ProtocolError("bad-request", f"unknown message type {kind!r}: a client sends start, binary audio chunks and end")

    def _start(self, conn: _Conn, req: P.StartRequest) -> None:
        if self._closing:
            conn.put(_Close(1001, "server shutting down"))
            conn.state = _CLOSING
            return
        ps = self._pools[req.preset or self.default]
        if req.fps is not None and not ps.wav2lip:
            raise P.ProtocolError("bad-request", f"start: fps={req.fps:g} asks for Wav2Lip windows, but preset {ps.name!r} is not Wav2Lip")
        conn.ps, conn.rate, conn.format = ps, req.sample_rate, req.format
        conn.resampler = StreamResampler(req.sample_rate, int(ps.info["sr"]))
        conn.max_bytes = int(req.sample_rate * self.max_chunk_seconds) * np.dtype(P.FORMATS[req.format]).itemsize
        conn.max_queued_frames = max(1, int(self.max_send_seconds * ps.info["frame_rate"]))
        conn.fps = req.fps
        conn.state = _STREAMING
        if conn.record is not None:
            conn.record.sample_rate, conn.record.format, conn.record.preset = req.sample_rate, req.format, ps.name
            conn.record.time_axis = int(ps.info["time_axis"])
        ps.opening.append(conn)
        self._kick()

    def _on_audio(self, conn: _Conn, data: bytes) -> None:
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
        self._kick()

    def _end(self, conn: _Conn, *, reason: str) -> None:
        """The stream's end: push the resampler's tail, then the pool flushes it in the next cycle."""
        assert conn.resampler is not None and conn.ps is not None
        tail = conn.resampler.flush()
        if tail.size:
            conn.inbox.append(tail)
            conn.inbox_n += tail.size
            conn.resampled += tail.size
        conn.state = _ENDING
        conn.end_reason = reason
        conn.ps.dirty[conn] = None
        conn.ps.closing.append(conn)
        self._kick()

    def _detach(self, conn: _Conn) -> None:
        """The client is gone (or failed): close its stream in the pool, sending nothing more."""
        conn.gone = True
        if conn.state in (_STREAMING, _ENDING, _CLOSING) and conn.ps is not None and not conn.detached:
            conn.detached = True
            conn.inbox, conn.inbox_n = [], 0
            conn.ps.dirty.pop(conn, None)
            if conn not in conn.ps.closing:
                conn.ps.closing.append(conn)
            self._kick()
        conn.state = _CLOSING

    def _fail(self, conn: _Conn, err: P.ProtocolError, *, stuck: bool = False) -> None:
        """Send ``error`` to this client and close it with the error's code; free its stream."""
        if conn.close_code is not None:
            return
        self.stats["errors"][err.error] += 1
        log.info("connection %d: %s: %s", conn.id, err.error, err.message)
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
        conn.put(_Close(err.close_code, reason))

    async def _close_ws(self, conn: _Conn, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code, reason), timeout=self.close_timeout)
        except (asyncio.TimeoutError, ConnectionClosed):
            conn.ws.transport.abort()

    async def _sender(self, conn: _Conn) -> None:
        ws = conn.ws
        try:
            while True:
                while not conn.outq:
                    conn.out_event.clear()
                    await conn.out_event.wait()
                item = conn.outq.popleft()
                if isinstance(item, _Close):
                    conn.close_code = conn.close_code or item.code
                    await self._close_ws(conn, item.code, item.reason)
                    return
                data, frames = item
                await ws.send(data)
                conn.queued_frames -= frames
        except ConnectionClosed:
            return

    # ------------------------------------------------------------------ the step
    def _kick(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _step_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
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
            if any(ps.more for ps in self._pools.values()):
                self._wake.set()
            await asyncio.sleep(0)  # let the receivers run before the next cycle

    def _snapshot(self, ps: _PoolState) -> _Work:
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
        return _Work(ps, opens, pushes, closes, sids)

    def _run(self, works: Iterable[_Work]) -> None:
        """One cycle per pool: opens, pushes, one step, closes. Touches the pools only (maybe in the worker thread)."""
        for w in works:
            pool, sids = w.ps.pool, dict(w.sids)
            for conn in w.opens:
                try:
                    sid = pool.open(fps=conn.fps)
                except ParameterError as exc:
                    w.opened.append((conn, exc))
                    continue
                sids[conn.id] = sid
                w.opened.append((conn, sid))
            for conn, chunks in w.pushes:
                sid = sids.get(conn.id)
                if sid is None:
                    continue
                try:
                    for chunk in chunks:
                        pool.push(sid, chunk)
                except ParameterError as exc:
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
                except ParameterError as exc:
                    w.closed.append((conn, exc))

    def _dispatch(self, w: _Work) -> None:
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

    def _send_frames(self, conn: _Conn, pf: PoolFrames, *, final: bool) -> None:
        ps = conn.ps
        assert ps is not None
        flags = P.FLAG_FINAL if final else 0
        acked = conn.samples_in if final else conn.acked
        frames = _to_numpy(pf.frames)
        k = int(frames.shape[ps.pool.time_axis])
        if k:
            tm = frames.T if ps.pool.time_axis == -1 else frames
            if not final and conn.queued_frames > conn.max_queued_frames:  # (one step's frames always fit: the backlog bounds them)
                msg = f"the client does not read its frames: {conn.queued_frames} frames wait to be sent (limit {self.max_send_seconds:g} s)"
                self._fail(conn, P.ProtocolError("not-reading", msg), stuck=True)
                return
            conn.put(P.encode_frames(P.KIND_FRAMES, pf.start, tm, acked=acked, flags=flags), k)
            conn.frames_sent = pf.start + k
            if conn.record is not None:
                conn.record.frame_blocks.append((pf.start, np.array(tm, dtype=np.float32)))
        if pf.windows is not None and len(pf.windows):
            win = _to_numpy(pf.windows)
            conn.put(P.encode_frames(P.KIND_WINDOWS, pf.window_start, win, acked=acked, flags=flags))
            conn.windows_sent = pf.window_start + len(win)
            if conn.record is not None:
                conn.record.window_blocks.append((pf.window_start, np.array(win, dtype=np.float32)))

    def _finish(self, conn: _Conn, res: Union[PoolFrames, Exception, None]) -> None:
        """After the pool's close: the last frames, ``end`` with the totals, close (1000; 1001 at shutdown)."""
        ps = conn.ps
        assert ps is not None
        if isinstance(res, Exception):
            if conn.resampled > 0:  # a configuration that refuses this short a stream, e.g. center=False
                self._fail(conn, P.ProtocolError("flush-failed", f"end: {res}"))
                return
            res = None  # no audio at all: an empty stream, zero frames
        if res is not None:
            self._send_frames(conn, res, final=True)
        end = {"type": "end", "reason": conn.end_reason, "frames": conn.frames_sent, "windows": conn.windows_sent,
               "samples": conn.samples_in, "resampled": conn.resampled, "sample_rate": conn.rate, "server_rate": ps.info["sr"]}  # fmt: skip
        if conn.record is not None:
            conn.record.end = end
        conn.put(json.dumps(end))
        conn.state = _CLOSING
        conn.gone = True
        if conn.end_reason == "shutdown":
            conn.put(_Close(1001, "server shutting down: stream flushed"))
        else:
            conn.put(_Close(1000, "end of stream"))


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
