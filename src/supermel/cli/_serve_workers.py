"""``supermel serve --workers N``: N server processes sharing one port (``SO_REUSEPORT``).

The parent process serves nothing itself. It reserves the port (a socket bound with
``SO_REUSEPORT``, never listening: with ``--port 0`` this picks the port every worker
then binds), starts N workers (``multiprocessing`` spawn: each a whole ``supermel
serve``, its own event loop, pools and thread pools, and a ``SO_REUSEPORT`` listening
socket on that port; the kernel spreads incoming connections over them by a hash of
the client's address and port), prints the listening line once every worker listens,
and then supervises:

- **SIGINT / SIGTERM** to the parent: SIGTERM to every worker (each stops accepting,
  flushes its streams, closes them with 1001 and exits 0, as a single server does); the
  parent waits for them (killing any that has not exited after ``FLUSH_TIMEOUT``) and
  exits 0 when all exited 0.
- **A worker that dies** (killed, crashed) is reported on stderr and replaced by a new
  process with the same index; its clients lost their connections (the streams of the
  other workers go on). More than ``MAX_RESTARTS`` deaths within ``RESTART_WINDOW``
  seconds: the parent stops every worker and exits 1.
- **The parent dies** (even ``kill -9``): each worker has asked the kernel for SIGTERM
  when its parent goes (``PR_SET_PDEATHSIG``), so it flushes and exits; none is left.

``/stats`` and ``/hello`` answer for the worker that took the request; ``/stats`` says
which (``pid``, ``worker``). Linux only (elsewhere ``SO_REUSEPORT`` does not balance).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from typing import Any, Callable, Deque, Dict, Optional

from .._errors import ParameterError

#: Seconds the parent waits for the workers to flush and exit after SIGTERM before killing them.
FLUSH_TIMEOUT = 30.0
#: Seconds a worker may take to start (import, build its pools, listen).
START_TIMEOUT = 180.0
#: A worker dying more than this many times within RESTART_WINDOW seconds stops the server.
MAX_RESTARTS, RESTART_WINDOW = 5, 60.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGTERM to this process when its parent dies (Linux ``prctl``); exit at once if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        os._exit(0)


def _reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT, not listening: the port the workers share."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ParameterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        # first without SO_REUSEPORT: a port another server holds (even one with SO_REUSEPORT, which would
        # otherwise share its connections with ours) is refused; with --port 0 this picks the port
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(info[4])
            addr = probe.getsockname()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ParameterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port (0: any free port)") from None
    return sock


def run_workers(args: argparse.Namespace, worker_main: Callable[[argparse.Namespace, int, int, Any], None]) -> int:
    """``supermel serve --workers N``: start, supervise and stop the workers; the exit status.

    ``worker_main(args, index, parent_pid, queue)`` runs one worker in a spawned process
    (:func:`supermel.cli.serve_cmd._worker_main`: passed in, so that this module does not import the command's).
    """
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise ParameterError(
            f"--workers {args.workers} needs Linux (SO_REUSEPORT spreads the connections over the processes); "
            "elsewhere run one `supermel serve` per port behind a TCP load balancer (docs/serving.md)"
        )
    reserve = _reserve_port(args.host, args.port)
    args.port = int(reserve.getsockname()[1])
    n = int(args.workers)
    ctx = multiprocessing.get_context("spawn")  # (no fork of a process with torch's threads)
    queue = ctx.Queue()
    procs: Dict[int, Any] = {}
    stopping = [False]

    def on_signal(signum: int, frame: Any) -> None:
        stopping[0] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(i: int) -> None:
        p = ctx.Process(target=worker_main, args=(args, i, os.getpid(), queue), name=f"supermel-serve-{i}", daemon=False)
        p.start()
        procs[i] = p

    def wait_ready(indices: set) -> Optional[str]:
        """Wait for these workers' ready messages; an error message, or None."""
        deadline = time.monotonic() + START_TIMEOUT
        while indices and not stopping[0]:
            try:
                kind, i, pid, text = queue.get(timeout=0.5)
            except Exception:  # queue.Empty
                if stopping[0]:
                    return None
                dead = [i for i in indices if not procs[i].is_alive()]
                if dead:
                    return f"worker {dead[0]} exited with status {procs[dead[0]].exitcode} while starting"
                if time.monotonic() > deadline:
                    return f"the workers did not start within {START_TIMEOUT:g} s"
                continue
            if kind == "error":
                return text
            indices.discard(i)
            ready[i] = pid
            threads[0] = text
        return None

    threads = [""]
    ready: Dict[int, int] = {}  # worker index -> pid of its process that reported ready
    status = 0
    try:
        for i in range(n):
            start(i)
        error = wait_ready(set(range(n)))
        if error is not None:
            raise ParameterError(error)
        if not stopping[0]:
            host = f"[{args.host}]" if ":" in args.host else args.host
            tls = bool(getattr(args, "certfile", None))
            page = f"; page: {'https' if tls else 'http'}://{host}:{args.port}/" + ("#token=..." if getattr(args, "token", None) else "") if args.page else ""
            print(f"supermel serve: listening on {'wss' if tls else 'ws'}://{host}:{args.port}/{page}", flush=True)
            pids = ", ".join(str(procs[i].pid) for i in range(n))
            print(f"supermel serve: {n} workers (pids {pids}) sharing the port (SO_REUSEPORT); threads per worker: {threads[0]}", flush=True)
        deaths: Deque[float] = collections.deque()
        while not stopping[0]:
            multiprocessing.connection.wait([p.sentinel for p in procs.values()], timeout=0.5)
            for i, p in list(procs.items()):
                if p.is_alive() or stopping[0]:
                    continue
                now = time.monotonic()
                deaths.append(now)
                while deaths and deaths[0] < now - RESTART_WINDOW:
                    deaths.popleft()
                print(f"supermel serve: worker {i} (pid {p.pid}) exited with status {p.exitcode}; its clients lost their connections", file=sys.stderr, flush=True)
                if len(deaths) > MAX_RESTARTS:
                    print(f"supermel serve: error: workers died {len(deaths)} times within {RESTART_WINDOW:g} s; stopping", file=sys.stderr, flush=True)
                    status = 1
                    stopping[0] = True
                    break
                start(i)
                error = wait_ready({i})
                if error is not None:
                    print(f"supermel serve: error: the replacement of worker {i} failed: {error}; stopping", file=sys.stderr, flush=True)
                    status = 1
                    stopping[0] = True
                    break
                print(f"supermel serve: worker {i} replaced (pid {procs[i].pid})", file=sys.stderr, flush=True)
    finally:
        for p in procs.values():
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + FLUSH_TIMEOUT
        for p in procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
        for i, p in procs.items():
            if p.is_alive():
                print(f"supermel serve: worker {i} (pid {p.pid}) did not stop within {FLUSH_TIMEOUT:g} s; killed", file=sys.stderr, flush=True)
                p.kill()
                p.join(5)
                status = 1
        reserve.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # a worker stopped by the signal before it listened had nothing to flush
    if any(p.exitcode not in (0, None) and not (ready.get(i) != p.pid and p.exitcode in (-signal.SIGTERM, -signal.SIGINT)) for i, p in procs.items()):
        status = status or 1
    print("supermel serve: stopped (every worker flushed its streams)" if status == 0 else "supermel serve: stopped", flush=True)
    return status
