"""Putting the server on a network: access control and exhaustion defences (``docs/serving.md``, "Access control").

Mixin of :class:`~supermel.serve.server.Server`, event loop's thread only.

Before the WebSocket upgrade (:meth:`Guard._guard_request`, called first by the HTTP
handler, so that it covers the page, ``/stats`` and ``/hello`` too):

- **Host allow-list** (DNS rebinding): the ``Host`` header's name must be a loopback
  name or address, the bound address, any IP address when bound to a wildcard address
  (a rebinding attack needs a name), or one of ``allow_hosts``; otherwise 403.
- **Origin allow-list** (cross-site WebSocket hijacking), on upgrades: no ``Origin``
  (not a browser), the page's own origin (the scheme of this server, the request's own
  ``Host``; loopback names on this port when bound to loopback or a wildcard), or one of
  ``allow_origins``; otherwise 403 (``null`` included).
- **Bearer token**: ``Authorization: Bearer TOKEN`` or the query parameter
  ``?token=TOKEN`` (browsers cannot set headers on a WebSocket), compared with
  :func:`hmac.compare_digest`; needed for the upgrade, ``/stats`` and ``/hello``
  (the page and its worklet are static and public); otherwise 401.
- **Per-address cap**: more than ``max_per_address`` open TCP connections from one
  address (handshakes in progress included): 429.

Connections (:func:`connection_class`, websockets' ``create_connection``): every TCP
connection is counted per address from accept to close; connections that have not sent
their HTTP request yet (*half-open*) are bounded by ``max_half_open``: past it the
oldest one is dropped; a connection must send its request within ``handshake_timeout``
(:meth:`Guard._handshake_loop` drops the late ones oldest first, at most
:data:`HANDSHAKE_DROPS_PER_SWEEP` every 0.05 s, so that a crowd opened together is not
dropped in one burst; websockets' own handshake timeout, 5 s later, and the TLS handshake
timeout, ``handshake_timeout``, stay as backstops).
After ``start``, a stream with no audio for ``idle_timeout`` seconds is closed 1008
``idle`` (:meth:`Guard._idle_loop`, a sweep every 0.25 s, no per-message cost; at most
:data:`IDLE_CLOSES_PER_SWEEP` closes per sweep, so that a crowd going idle together is not closed in one burst).

Log lines about clients go through :class:`LogLimiter`: one line each, at most
``burst`` per ``period``, the rest counted and reported with the next line.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import logging
import os
import ssl
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

from .._errors import ParameterError
from . import protocol as P
from ._cycles import break_cycles
from ._state import STREAMING, Conn
from ._ws import Request, ServerConnection

log = logging.getLogger("supermel.serve")

#: Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
#: Addresses meaning "every interface".
WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
#: Connections asyncio accepts in one go (its ``backlog`` argument; the kernel's queue is :data:`LISTEN_BACKLOG`).
#: Up to three batches are in flight before their connections are counted (accepted, transport made, counted).
ACCEPT_BATCH = 32
#: The kernel's queue of connections not yet accepted (``listen()``): a burst waits there without a descriptor.
LISTEN_BACKLOG = 1024
#: Idle streams closed per sweep at most (a sweep every 0.25 s).
IDLE_CLOSES_PER_SWEEP = 32
#: Half-open connections dropped at their handshake timeout per sweep at most (a sweep every 0.05 s): a thousand
#: connections opened together time out together, and dropping them in one go stalled the loop for ~0.3 s.
HANDSHAKE_DROPS_PER_SWEEP = 32
#: Descriptors kept free besides one accept batch (files, the stats' /proc listing, new honest connections).
FD_RESERVE = 32


def deepen_listen_queue(sockets: Iterable[Any], backlog: int = LISTEN_BACKLOG) -> None:
    """``listen(backlog)`` on the server's sockets: asyncio uses one number for the kernel's queue and its accept batch."""
    import socket as _socket

    for ts in sockets:
        dup = _socket.socket(fileno=os.dup(ts.fileno()))
        try:
            dup.listen(backlog)
        finally:
            dup.close()


def _ip(name: str) -> Optional[Any]:
    try:
        return ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a ``Host`` name) is this machine only."""
    name = host.strip().lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    ip = _ip(name)
    return ip is not None and ip.is_loopback


def split_host(value: str) -> Tuple[str, Optional[int]]:
    """A ``Host`` header (or an origin's netloc) as (lower-case name without brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[1:end] if end > 0 else value[1:], value[end + 1 :] if end > 0 else ""
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, ""
    try:
        return name.rstrip("."), (int(port) if port else None)
    except ValueError:
        return name.rstrip("."), -1


def raise_fd_limit() -> Tuple[int, int]:
    """Raise this process's soft descriptor limit (``RLIMIT_NOFILE``) to its hard limit; the (soft, hard) limits after."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard_to = 1 << 20  # (an "infinite" hard limit: a large finite soft one)
    else:
        hard_to = hard
    if soft != resource.RLIM_INFINITY and soft < hard_to:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_to, hard))
        except (ValueError, OSError) as exc:  # pragma: no cover - a restricted sandbox
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard_to, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def open_descriptors() -> int:
    """Descriptors this process has open (``/proc/self/fd``; -1 where unknown)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # (the listing's own)
    except OSError:  # pragma: no cover - not Linux
        return -1


class LogLimiter:
    """One-line log messages about clients, at most ``burst`` per ``period`` seconds; the rest counted, reported later."""

    def __init__(self, burst: int = 20, period: float = 10.0) -> None:
        self.burst, self.period = burst, period
        self.window = -1e18
        self.used = 0
        self.suppressed = 0
        self.total_suppressed = 0

    def __call__(self, level: int, msg: str, *args: Any) -> None:
        if not log.isEnabledFor(level):
            return
        now = time.monotonic()
        if now - self.window >= self.period:
            self.window, self.used = now, 0
        if self.used >= self.burst:
            self.suppressed += 1
            self.total_suppressed += 1
            return
        self.used += 1
        if self.suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        text = msg % args if args else msg
        log.log(level, "%s", "".join(ch if ch.isprintable() else " " for ch in text[:300]))  # one line, whatever a client sent


def connection_class(guard: "Guard") -> type:
    """The ``ServerConnection`` subclass counting TCP connections per address and bounding the half-open ones."""

    class GuardedConnection(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            guard._tcp_open(self, transport)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            guard._tcp_lost(self)
            super().connection_lost(exc)
            # A failed handshake's exception (kept by the protocol, read by nothing on the server side once the
            # connection is lost) holds the request parser's frames, which hold the protocol: a reference cycle of ~100
            # objects per half-open connection, freed only by a full garbage collection (a stall of the event loop).
            self.protocol.handshake_exc = None
            break_cycles(self)
            # asyncio's socket transport keeps its read callback, a bound method of itself, until it is freed: a reference
            # cycle (transport, socket, buffers) per connection (CPython 3.11; harmless once the transport is closed).
            if getattr(self.transport, "_read_ready_cb", None) is not None:
                self.transport._read_ready_cb = None

    return GuardedConnection


def _origin_key(origin: str) -> Optional[Tuple[str, str, int]]:
    """(scheme, host, port) of an origin, default ports filled in; None when it is not a http(s) origin."""
    try:
        u = urllib.parse.urlsplit(origin.strip())
    except ValueError:
        return None
    scheme = u.scheme.lower()
    if scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/") or u.query or u.fragment:
        return None
    name, port = split_host(u.netloc.rsplit("@", 1)[-1])
    if port == -1 or not name:
        return None
    return scheme, name, port if port is not None else (443 if scheme == "https" else 80)


class Guard:
    """Mixin of :class:`~supermel.serve.server.Server`: access control, connection bounds, idle timeout."""

    # (the server's, declared for readers and type checkers)
    host: str
    port: Optional[int]
    stats: Dict[str, Any]
    _conns: Dict[int, Conn]
    _fail: Callable[..., None]

    def _init_guard(
        self,
        *,
        token: Optional[str],
        allow_origins: Iterable[str],
        allow_hosts: Iterable[str],
        certfile: Optional[str],
        keyfile: Optional[str],
        insecure: bool,
        idle_timeout: Optional[float],
        max_per_address: Optional[int],
        max_half_open: int,
        handshake_timeout: float,
    ) -> None:
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ParameterError("token must be a non-empty string (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if token is None and not insecure and not is_loopback(self.host):
            raise ParameterError(
                f"refusing to listen on {self.host!r} without a token: that address is reachable from other machines, and anyone "
                "who can reach it could use the server (and any web page they visit could try). Pass a token (--token, or the "
                "environment variable SUPERMEL_TOKEN; token= in Python), or --insecure (insecure=True) if that is what you want"
            )
        for name, value in (("idle_timeout", idle_timeout), ("handshake_timeout", handshake_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6):
                raise ParameterError(f"{name}={value!r} must be a positive number of seconds" + (" (None: no idle timeout)" if name == "idle_timeout" else ""))
        for name, value in (("max_per_address", max_per_address), ("max_half_open", max_half_open)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ParameterError(f"{name}={value!r} must be a positive integer" + (" (None: no cap)" if name == "max_per_address" else ""))
        origins = set()
        self._any_origin = False
        for o in allow_origins:
            if o == "*":
                self._any_origin = True
                continue
            key = _origin_key(o)
            if key is None:
                raise ParameterError(f"allow_origins: {o!r} is not an origin; write scheme://host[:port], e.g. https://example.org (or * for any)")
            origins.add(key)
        self._allow_origins = frozenset(origins)
        hosts = set()
        self._any_host = False
        for h in allow_hosts:
            if h == "*":
                self._any_host = True
                continue
            name, port = split_host(h)
            if not name or port is not None:
                raise ParameterError(f"allow_hosts: {h!r} must be a host name or address without a port, e.g. mel.example.org (or * for any)")
            hosts.add(name)
        self._allow_hosts = frozenset(hosts)
        self._host_cache: Dict[str, bool] = {}
        if (certfile is None) != (keyfile is None) and keyfile is not None:
            raise ParameterError("keyfile given without certfile: pass both (or certfile alone when it holds the key too)")
        self._ssl: Optional[ssl.SSLContext] = None
        if certfile is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(certfile, keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ParameterError(f"cannot load the TLS certificate {certfile!r} (key {keyfile!r}): {exc}") from None
            self._ssl = ctx
        self.token = token
        self._token_b = token.encode() if token is not None else None
        self.idle_timeout = None if idle_timeout is None else float(idle_timeout)
        self.max_per_address = max_per_address
        self.max_half_open = int(max_half_open)
        self.handshake_timeout = float(handshake_timeout)
        self._per_address: "collections.Counter[str]" = collections.Counter()
        self._tcp_open_n = 0  # sum of _per_address
        self._half_open: "collections.OrderedDict[ServerConnection, float]" = collections.OrderedDict()  # -> accept time
        self._idle_task: Optional["asyncio.Task[None]"] = None
        self._handshake_task: Optional["asyncio.Task[None]"] = None
        self._log_client = LogLimiter()
        self.fd_limits = (-1, -1)
        self._base_fds = 0  # descriptors open when the server started listening
        self.stats.update(refused=collections.Counter(), half_open_dropped=0, handshake_timeouts=0, tcp_connections=0)

    # ------------------------------------------------------------------ what the server knows about itself
    @property
    def tls(self) -> bool:
        return self._ssl is not None

    def _guard_stats(self) -> Dict[str, Any]:
        return {
            "refused": dict(self.stats["refused"]), "tcp_open": self._tcp_open_n, "half_open": len(self._half_open),
            "addresses": len(self._per_address), "fd_limit": self.fd_limits[0], "fd_hard_limit": self.fd_limits[1],
            "fds_open": open_descriptors(), "log_suppressed": self._log_client.total_suppressed,
        }  # fmt: skip

    # ------------------------------------------------------------------ TCP connections
    def _tcp_open(self, conn: ServerConnection, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        conn._supermel_addr = addr = str(peer[0]) if peer else "?"  # type: ignore[attr-defined]
        self._per_address[addr] += 1
        self._tcp_open_n += 1
        self.stats["tcp_connections"] += 1
        self._half_open[conn] = conn.loop.time()
        bound = self.max_half_open
        if self.fd_limits[0] > 0:  # never let half-open connections take the descriptors the others need (no EMFILE)
            settled = self._tcp_open_n - len(self._half_open)
            bound = min(bound, max(8, self.fd_limits[0] - self._base_fds - settled - 3 * ACCEPT_BATCH - FD_RESERVE))
        while len(self._half_open) > bound:
            oldest, _ = self._half_open.popitem(last=False)
            self.stats["half_open_dropped"] += 1
            oldest.transport.abort()

    def _tcp_lost(self, conn: ServerConnection) -> None:
        addr = getattr(conn, "_supermel_addr", None)
        if addr is not None:
            conn._supermel_addr = None  # type: ignore[attr-defined]
            self._per_address[addr] -= 1
            self._tcp_open_n -= 1
            if self._per_address[addr] <= 0:
                del self._per_address[addr]
        self._half_open.pop(conn, None)

    # ------------------------------------------------------------------ the checks before the upgrade
    def _refuse(self, connection: ServerConnection, status: int, why: str, text: str) -> Tuple[int, str]:
        self.stats["refused"][why] += 1
        self._log_client(logging.INFO, "refused %s (HTTP %d): %s", getattr(connection, "_supermel_addr", "?"), status, why)
        return status, text

    def _host_allowed(self, name: str) -> bool:
        ok = self._host_cache.get(name)
        if ok is None:
            ok = self._host_check(name)
            if len(self._host_cache) >= 1024:
                self._host_cache.clear()
            self._host_cache[name] = ok
        return ok

    def _host_check(self, name: str) -> bool:
        if self._any_host or name in self._allow_hosts or is_loopback(name):
            return True
        bound = self.host.strip("[]").lower()
        if bound in WILDCARDS:
            return _ip(name) is not None  # any address of this machine; a rebinding attack needs a name
        ip, bip = _ip(name), _ip(bound)
        return name == bound or (ip is not None and ip == bip)

    def _origin_allowed(self, origin: str, host_header: str) -> bool:
        if self._any_origin:
            return True
        key = _origin_key(origin)
        if key is None:  # "null" (sandboxed frames, file: pages) and anything that is not http(s)://host[:port]
            return False
        if key in self._allow_origins:
            return True
        scheme = "https" if self.tls else "http"
        if key[0] != scheme:
            return False
        hname, hport = split_host(host_header)
        if (key[1], key[2]) == (hname, hport if hport is not None else (443 if self.tls else 80)):
            return True  # the page's own origin: this server at the address the client used
        bound = self.host.strip("[]").lower()
        return key[2] == self.port and is_loopback(key[1]) and (is_loopback(bound) or bound in WILDCARDS)

    def _token_ok(self, request: Request) -> bool:
        if self._token_b is None:
            return True
        auth = request.headers.get("Authorization", "")
        given = ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        else:
            query = request.path.split("?", 1)[1] if "?" in request.path else ""
            given = urllib.parse.parse_qs(query).get("token", [""])[-1]
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token_b)

    def _guard_request(self, connection: ServerConnection, request: Request, *, upgrade: bool, needs_token: bool) -> Optional[Tuple[int, str]]:
        """None when the request may go on; else (HTTP status, text) of the refusal."""
        self._half_open.pop(connection, None)  # the request arrived: no longer half-open
        hosts = request.headers.get_all("Host")
        if len(hosts) != 1 or not self._host_allowed(split_host(hosts[0])[0]):
            return self._refuse(connection, 403, "host", "forbidden: this server does not answer to that Host name (see --allow-host)\n")
        if upgrade:
            origins = request.headers.get_all("Origin")
            if len(origins) > 1 or (origins and not self._origin_allowed(origins[0], hosts[0])):
                return self._refuse(connection, 403, "origin", "forbidden: WebSocket connections from that Origin are not allowed (see --allow-origin)\n")
        if needs_token and not self._token_ok(request):
            return self._refuse(connection, 401, "token", "unauthorized: this server needs its token (Authorization: Bearer TOKEN, or ?token=TOKEN)\n")
        if upgrade and self.max_per_address is not None:
            addr = getattr(connection, "_supermel_addr", "?")
            if self._per_address[addr] > self.max_per_address:
                return self._refuse(connection, 429, "per-address", f"too many connections from {addr}: at most {self.max_per_address} (--max-per-address)\n")
        return None

    async def _handshake_loop(self) -> None:
        """Drop the connections that sent no request within ``handshake_timeout``, oldest first, a few per sweep."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.05)
            deadline = loop.time() - self.handshake_timeout
            for _ in range(HANDSHAKE_DROPS_PER_SWEEP):
                if not self._half_open:
                    break
                conn, t = next(iter(self._half_open.items()))
                if t > deadline:
                    break
                del self._half_open[conn]
                self.stats["handshake_timeouts"] += 1
                conn.transport.abort()

    # ------------------------------------------------------------------ idle streams
    async def _idle_loop(self) -> None:
        """Close streams that received no audio for ``idle_timeout`` seconds (a sweep, no per-message cost)."""
        assert self.idle_timeout is not None
        period = min(0.25, self.idle_timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            closed = 0
            for conn in list(self._conns.values()):
                if conn.state != STREAMING:
                    continue
                if conn.idle_mark != conn.samples_in or conn.idle_since is None:
                    conn.idle_mark, conn.idle_since = conn.samples_in, now
                elif now - conn.idle_since >= self.idle_timeout and closed < IDLE_CLOSES_PER_SWEEP:
                    closed += 1  # (a crowd that went idle together is closed over a few sweeps: no burst of closes stalls the loop)
                    self._fail(conn, P.ProtocolError("idle", f"no audio for {self.idle_timeout:g} s after start; send audio, or end the stream"))


def describe(server: Any) -> str:
    """How the server is protected, in a few words (``supermel serve`` prints it)."""
    out = ["token required" if server.token is not None else ("NO TOKEN (--insecure)" if not is_loopback(server.host) else "no token (loopback only)")]
    out.append("TLS" if server.tls else "no TLS")
    out.append("origins: the page's own" + (" and " + ", ".join(sorted(f"{s}://{h}:{p}" for s, h, p in server._allow_origins)) if server._allow_origins else "") + (", any (*)" if server._any_origin else ""))
    if server.idle_timeout is not None:
        out.append(f"idle timeout {server.idle_timeout:g} s")
    out.append(f"per address {server.max_per_address if server.max_per_address is not None else 'no cap'}")
    return "; ".join(out)
