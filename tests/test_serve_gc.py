"""No reference cycles per connection: a closed connection is freed by reference counting alone.

Objects left in reference cycles are freed only by the garbage collector, whose full
collections over a busy server's objects stop the event loop for 100-470 ms (BENCHMARKS.md,
"Live serving under attack"). Each test drives the real server (in a thread) with raw
blocking sockets (no client library of our own in the process, so the garbage counted is the
server's), with the collector off: ``gc.collect()`` then returns the number of unreachable
objects the connections left, and the objects tracked before and after it say how many it
freed (a cycle broken by a finaliser is freed without being counted in its return value).
Before the fixes: 16-82 objects per connection; and 9-11 more (tuples and dicts aside), websockets'
protocol held by its own finished parser generator (``_cycles.break_cycles``).
"""

from __future__ import annotations

import base64
import concurrent.futures
import gc
import json
import os
import socket
import struct
import time

import numpy as np
import pytest

pytest.importorskip("websockets")
pytest.importorskip("soxr")

from supermel.serve import Server, ServerThread  # noqa: E402

CORE = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)
TOKEN = "gc-test-token"
#: Connections per kind, and the garbage allowed: a small constant per connection plus a little slack.
N = 16
PER_CONNECTION = 2
SLACK = 20
AUDIO = (np.random.default_rng(0).standard_normal(320) * 0.1).astype(np.float32).tobytes()
START = json.dumps({"type": "start", "sample_rate": 16000, "format": "float32"}).encode()


# --------------------------------------------------------------------------- a minimal client (RFC 6455 framing)
def _frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
    return head + mask + masked


def _recv(s: socket.socket, buf: bytearray) -> "tuple[int | None, bytes]":
    """The next frame (opcode, payload), or (None, b"") at EOF / reset."""
    while True:
        if len(buf) >= 2:
            n, off = buf[1] & 0x7F, 2
            if n == 126 and len(buf) >= 4:
                n, off = struct.unpack("!H", bytes(buf[2:4]))[0], 4
            elif n == 127 and len(buf) >= 10:
                n, off = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
            if (buf[1] & 0x7F) < 126 or off > 2:
                if len(buf) >= off + n:
                    op, payload = buf[0] & 0x0F, bytes(buf[off : off + n])
                    del buf[: off + n]
                    return op, payload
        try:
            data = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return None, b""
        if not data:
            return None, b""
        buf += data


def _drain(s: socket.socket) -> None:
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, socket.timeout):
        pass


def _upgrade(port: int, *, token: str = TOKEN, extra: str = "") -> "tuple[socket.socket, bytes, bytearray]":
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n{extra}\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return s, head.split(b"\r\n")[0], bytearray(rest)


def _open(port: int) -> "tuple[socket.socket, bytearray]":
    s, status, buf = _upgrade(port)
    assert b" 101 " in status, status
    op, hello = _recv(s, buf)
    assert op == 1 and json.loads(hello)["type"] == "hello"
    return s, buf


def _until_closed(s: socket.socket, buf: bytearray) -> int:
    """Read up to the server's close frame, answer it, wait for EOF; the close code (-1: none)."""
    while True:
        op, payload = _recv(s, buf)
        if op is None:
            return -1
        if op == 8:
            try:
                s.sendall(_frame(8, payload[:2]))
            except OSError:
                pass
            _drain(s)
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def _close(s: socket.socket, buf: bytearray, code: int = 1000) -> int:
    s.sendall(_frame(8, struct.pack("!H", code)))
    got = _until_closed(s, buf)
    s.close()
    return got


# --------------------------------------------------------------------------- the kinds of connection (N at a time)
def k_close(port: int) -> None:
    """connect, hello, close (1000)."""
    for _ in range(N):
        assert _close(*_open(port)) == 1000


def k_end(port: int) -> None:
    """start, audio, end: the frames, then the server's 1000."""
    for _ in range(N):
        s, buf = _open(port)
        s.sendall(_frame(1, START) + _frame(2, AUDIO) * 3 + _frame(1, b'{"type": "end"}'))
        assert _until_closed(s, buf) == 1000
        s.close()


def k_drop(port: int) -> None:
    """start, audio, then a TCP reset (no end, no close)."""
    for _ in range(N):
        s, buf = _open(port)
        s.sendall(_frame(1, START) + _frame(2, AUDIO) * 3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def k_eof(port: int) -> None:
    """hello, then the socket closed (EOF without a close frame)."""
    for _ in range(N):
        s, _ = _open(port)
        s.close()


def k_refused(port: int) -> None:
    """401 (wrong token), 403 (foreign Origin), 429 (past the per-address cap)."""
    for _ in range(N // 2):
        for kw, want in ((dict(token="wrong"), b" 401 "), (dict(extra="Origin: http://evil.example\r\n"), b" 403 ")):
            s, status, _ = _upgrade(port, **kw)
            assert want in status, status
            _drain(s)
            s.close()
    held = [_open(port) for _ in range(2)]  # the cap (2): one more is refused
    for _ in range(N):
        s, status, _ = _upgrade(port)
        assert b" 429 " in status, status
        _drain(s)
        s.close()
    for s, buf in held:
        _close(s, buf)


def k_idle(port: int) -> None:
    """start, then nothing: closed 1008 idle (N at once)."""
    for _ in range(N // 2):
        socks = [_open(port) for _ in range(2)]
        for s, buf in socks:
            s.sendall(_frame(1, START))
        for s, buf in socks:
            assert _until_closed(s, buf) == 1008
            s.close()


def k_start_timeout(port: int) -> None:
    """hello, then no start: closed at the start timeout."""
    for _ in range(N // 2):
        socks = [_open(port) for _ in range(2)]
        for s, buf in socks:
            assert _until_closed(s, buf) == 1008
            s.close()


def k_half_open(port: int) -> None:
    """an unfinished HTTP request: dropped at the handshake timeout (N at once)."""
    socks = []
    for _ in range(N):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        socks.append(s)
    for s in socks:
        _drain(s)
        s.close()


KINDS = {f.__name__[2:]: f for f in (k_close, k_end, k_drop, k_eof, k_refused, k_idle, k_start_timeout, k_half_open)}


@pytest.fixture(scope="module")
def server():
    srv = Server(core=CORE, port=0, page=False, token=TOKEN, max_per_address=2, idle_timeout=0.2, start_timeout=0.2, handshake_timeout=0.2)
    thread = ServerThread(srv)
    with thread:
        srv._test_loop = thread.loop  # (the measurement runs on the server's own loop)
        yield srv


def _settled(srv: Server) -> None:
    """Wait (bounded) until the server holds no connection, handler or stream."""
    for _ in range(1000):
        if srv._tcp_open_n == 0 and not srv._conns and not srv._ws.handler_tasks and srv.open_streams == 0 and not srv._half_open:
            time.sleep(0.05)  # (the handlers' last steps: close codes counted, tasks finished)
            return
        time.sleep(0.01)
    raise AssertionError("the server did not release its connections within 10 s")


def _tracked() -> int:
    """Objects the collector tracks, tuples and dicts aside (a collection untracks those holding only atoms)."""
    return sum(1 for o in gc.get_objects() if type(o) not in (tuple, dict))


def _collect_on_the_loop(srv: Server) -> "tuple[int, int]":
    """One full collection as a callback of the server's own event loop: (what ``gc.collect()``
    reports, what it freed). The freed count includes objects in a cycle broken by a finaliser (a
    suspended generator's close(), e.g. websockets' parser holding its protocol), which the return
    value leaves out. Counted inside one callback, so the loop's own work (timers, the pool's step
    interval) allocates and frees nothing between the two counts."""
    result: "concurrent.futures.Future[tuple[int, int]]" = concurrent.futures.Future()

    def measure() -> None:
        try:
            tracked = _tracked()
            garbage = gc.collect()
            result.set_result((garbage, tracked - _tracked()))
        except BaseException as e:  # pragma: no cover - reported by result()
            result.set_exception(e)

    srv._test_loop.call_soon_threadsafe(measure)
    return result.result(timeout=30)


@pytest.mark.parametrize("kind", list(KINDS))
def test_connections_leave_no_reference_cycles(server, kind):
    run = KINDS[kind]
    run(server.port)  # warm-up: first-use caches, the rate limiter's log lines, ...
    _settled(server)
    gc.collect()
    gc.collect()
    gc.disable()
    try:
        run(server.port)
        _settled(server)
        garbage, freed = _collect_on_the_loop(server)
    finally:
        gc.enable()
    connections = 2 * N + 2 if kind == "refused" else N
    assert garbage <= SLACK + PER_CONNECTION * connections, f"{kind}: {garbage} objects in reference cycles after {connections} connections"
    assert freed <= SLACK + PER_CONNECTION * connections, f"{kind}: the collection freed {freed} objects after {connections} connections"


# --------------------------------------------------------------------------- full collections at quiet moments
def test_full_collections_at_idle_moments_and_at_the_interval(monkeypatch):
    """``full_gc_interval``: no automatic full collection while serving; one when the server is idle, one at the
    interval while a client is connected; the collector's thresholds restored at shutdown."""
    from supermel.serve import _gc

    monkeypatch.setattr(_gc, "SWEEP", 0.02)
    monkeypatch.setattr(_gc, "IDLE_GAP", 0.05)
    before = gc.get_threshold()
    srv = Server(core=CORE, port=0, page=False, full_gc_interval=0.3)
    with ServerThread(srv):
        assert gc.get_threshold()[2] == _gc.NO_AUTO_FULL
        s, buf = _open(srv.port)
        _junk = [[i] for i in range(3000)]  # young collections happen: the idle pass has something to do
        del _junk
        n = srv.stats["gc_full"]
        for _ in range(500):  # a client is connected: not idle, so only the interval's collection
            if srv.stats["gc_full"] > n:
                break
            time.sleep(0.01)
        assert srv.stats["gc_full"] > n, "no full collection at the interval while a client was connected"
        srv.full_gc_interval = 1e6  # from here on, only an idle moment brings a full collection
        time.sleep(0.1)
        assert _close(s, buf) == 1000
        _settled(srv)
        n = srv.stats["gc_full"]
        for _ in range(2000):
            _junk = [[i] for i in range(3000)]
            del _junk
            if srv.stats["gc_full"] > n:
                break
            time.sleep(0.005)
        assert srv.stats["gc_full"] > n, "no full collection while idle"
        assert srv.snapshot_stats()["gc_full_max_s"] > 0
    assert gc.get_threshold() == before
