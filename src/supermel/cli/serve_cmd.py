"""``supermel serve``: the live WebSocket server (:mod:`supermel.serve`) and its page.

Needs the ``serve`` extra (websockets, soxr, threadpoolctl), imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from typing import Any, Dict

from .._errors import ParameterError
from ._common import _device, _import_optional, _number, _positive_int
from ._pipeline import add_mel_arguments

_CORE_OPTIONS = ("sr", "n_fft", "hop_length", "win_length", "window", "n_mels", "fmin", "fmax", "power", "htk", "norm", "pad_mode", "center")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 0..65535 (0: any free port)")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _interval(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds in [0, 1)")
    return value


def _seconds_or_off(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds (0: off)")
    return value


def _count_or_off(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 (no cap) or more")
    return value


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel serve`` and its options to the subcommands ``sub``."""
    p = sub.add_parser(
        "serve",
        help="serve live mel spectrograms over WebSocket, with a live page at /",
        description=(
            "A WebSocket server computing the mel features of many live audio streams, all streams' complete "
            "frames in one batched step (supermel.StreamPool), and a live page at http://HOST:PORT/ "
            "(microphone -> scrolling mel spectrogram). Clients send JSON start, binary PCM (float32 or int16, "
            "any rate from 8 to 192 kHz: the server resamples with soxr) and JSON end; they receive binary "
            "frame messages. Protocol: docs/serving.md. Thread pools: the server pins torch to one thread "
            "(torch.set_num_threads(1)) and OpenBLAS/OpenMP to one thread (threadpoolctl), so that no worker "
            "threads spin next to the event loop. SIGINT/SIGTERM: stop accepting, flush every stream (last "
            "frames and totals to each client), close, exit 0. Needs: pip install 'supermel[serve]'."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; browsers allow the microphone on http:// only for localhost)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port, printed at start)")
    p.add_argument("--preset", action="append", metavar="NAME", default=None,
                   help="serve this front end (see `supermel presets`); repeat to serve several, clients choose one in start "
                   "(default: the plain mel spectrogram of the options below, named 'mel')")  # fmt: skip
    g = p.add_argument_group("mel spectrogram options (the plain mel spectrogram, served as 'mel')",
                             "librosa.feature.melspectrogram's parameters; anything not given takes librosa's default, at 22050 Hz.")  # fmt: skip
    g.add_argument("--sr", type=_positive_int, metavar="SR", help="the rate features are computed at; clients' audio is resampled to it (default 22050)")
    add_mel_arguments(g)
    s = p.add_argument_group("serving limits")
    s.add_argument("--device", type=_device, default="cpu", metavar="cpu|cuda", help="where the pools compute (default cpu)")
    s.add_argument("--max-clients", type=_positive_int, default=256, metavar="N", help="connections at once; more are closed with 1013 (default 256)")
    s.add_argument("--max-frames-per-step", type=_positive_int, default=1024, metavar="K", help="cap on the frames of one batched step (default 1024)")
    s.add_argument("--step-interval", type=_interval, default=0.002, metavar="S",
                   help="least seconds between the starts of two batched steps; input arriving meanwhile joins the next step: under "
                   "load, fewer and larger steps for at most S of added latency (default 0.002; 0: a step as soon as input arrives)")  # fmt: skip
    s.add_argument("--max-backlog", type=_seconds, default=2.0, metavar="S", help="seconds of a client's audio that may wait to be computed; past that: close 1013 (default 2)")
    s.add_argument("--max-send-backlog", type=_seconds, default=2.0, metavar="S", help="seconds of a client's frames that may wait to be sent; past that: close 1013 (default 2)")
    s.add_argument("--max-chunk", type=_seconds, default=1.0, metavar="S", help="longest audio message, in seconds (default 1)")
    s.add_argument("--socket-send-buffer", type=_positive_int, default=262144, metavar="BYTES",
                   help="SO_SNDBUF per connection, bounding the kernel's buffer for a client that stops reading (default 262144)")  # fmt: skip
    s.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="serve from N processes, each with its own pools, sharing the port (SO_REUSEPORT, Linux): the kernel spreads "
                   "the connections; /stats answers for the worker that took the request (its pid and index in it); SIGINT/SIGTERM "
                   "stops and flushes every worker; a worker that dies is replaced (default 1)")  # fmt: skip
    s.add_argument("--step-thread", action="store_true", help="run the batched step in one worker thread instead of the event loop's (see docs/serving.md)")
    s.add_argument("--no-page", dest="page", action="store_false", help="do not serve the live page at /")
    s.add_argument("--idle-timeout", type=_seconds_or_off, default=30.0, metavar="S",
                   help="close a started stream that sends no audio for S seconds, with 1008 idle (default 30; 0: never)")  # fmt: skip
    s.add_argument("--max-per-address", type=_count_or_off, default=64, metavar="N",
                   help="open connections per client address; more are refused with HTTP 429 (default 64; 0: no cap)")  # fmt: skip
    s.add_argument("--max-half-open", type=_positive_int, default=2048, metavar="N",
                   help="connections that have not sent their request yet; past N the oldest is dropped (default 2048; lower where the descriptor limit is low)")  # fmt: skip
    s.add_argument("--handshake-timeout", type=_seconds, default=5.0, metavar="S", help="seconds the TLS and WebSocket handshakes may take (default 5)")
    s.add_argument("--full-gc-interval", type=_seconds_or_off, default=600.0, metavar="S",
                   help="the garbage collector's full collections: when the server is idle, and at least every S seconds, instead of "
                   "whenever Python's counts say (each stops the event loop; default 600; 0: Python's own policy)")  # fmt: skip
    s.add_argument("--quiet", action="store_true", help="do not log connections and errors")
    a = p.add_argument_group("access control (docs/serving.md, 'Access control')")
    a.add_argument("--token", default=os.environ.get("SUPERMEL_TOKEN") or None, metavar="TOKEN",
                   help="clients must send this bearer token (Authorization: Bearer TOKEN, or ?token=TOKEN; the page: URL#token=TOKEN); "
                   "default: the environment variable SUPERMEL_TOKEN, which keeps it out of the process list")  # fmt: skip
    a.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="accept WebSocket connections from pages of this origin (scheme://host[:port]; repeatable; * for any) "
                   "besides the page's own; browsers' other origins (and null) get HTTP 403")  # fmt: skip
    a.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="answer to this Host name (repeatable; * for any) besides the bound address and localhost: DNS rebinding defence")  # fmt: skip
    a.add_argument("--certfile", metavar="PEM", help="TLS certificate chain (PEM): serve wss:// and https://")
    a.add_argument("--keyfile", metavar="PEM", help="TLS private key (PEM), when not in --certfile")
    a.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")


def _core_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    kw = {k: getattr(args, k, None) for k in _CORE_OPTIONS}
    kw = {k: v for k, v in kw.items() if v is not None}
    if kw.get("norm") == "none":
        kw["norm"] = None
    return kw


def run(args: argparse.Namespace) -> int:
    """Run ``supermel serve`` until SIGINT/SIGTERM; the exit status."""
    server_mod = _import_optional("supermel.serve.server", "supermel serve", "serve")
    guard_mod = _import_optional("supermel.serve._guard", "supermel serve", "serve")
    core = _core_kwargs(args)
    if args.preset and core:
        raise ParameterError(
            f"the mel spectrogram options ({', '.join('--' + k.replace('_', '-') for k in core)}) configure the plain mel spectrogram; "
            "a preset fixes its own: drop them, or drop --preset"
        )
    if args.workers > 1:
        from ._serve_workers import run_workers

        return run_workers(args, _worker_main)
    server, threads = _build(args, server_mod)

    async def main() -> None:
        await _start(server, args)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_shutdown)
        served = ", ".join(f"{name} ({info['sr']} Hz, {info['bands']} bands)" for name, info in server.hello()["presets"].items())
        host = f"[{args.host}]" if ":" in args.host else args.host
        page = f"; page: {'https' if server.tls else 'http'}://{host}:{server.port}/" + ("#token=..." if server.token else "") if args.page else ""
        print(f"supermel serve: listening on {server.url}{page}", flush=True)
        print(f"supermel serve: access: {guard_mod.describe(server)}; descriptors: {server.fd_limits[0]}", flush=True)
        print(f"supermel serve: serving {served}; threads: {threads}", flush=True)
        await server.serve_forever()
        print("supermel serve: stopped (every stream flushed)", flush=True)

    asyncio.run(main())
    return 0


def _build(args: argparse.Namespace, server_mod: Any, *, log_prefix: str = "supermel serve") -> Any:
    """The server of these options, warmed up and out of the collector's reach; and the thread-pool line."""
    core = _core_kwargs(args)
    threads = server_mod.limit_threads()
    if not args.quiet:
        import logging

        logging.basicConfig(level=logging.INFO, format=f"{log_prefix}: %(message)s", stream=sys.stderr)
        logging.getLogger("websockets").setLevel(logging.WARNING)
    server = server_mod.Server(
        args.preset, core=core if (core or not args.preset) else None, host=args.host, port=args.port, device=args.device,
        max_clients=args.max_clients, max_frames_per_step=args.max_frames_per_step, step_interval=args.step_interval, max_backlog_seconds=args.max_backlog,
        max_send_seconds=args.max_send_backlog, max_chunk_seconds=args.max_chunk, socket_send_buffer=args.socket_send_buffer,
        step_thread=args.step_thread, page=args.page, token=args.token, allow_origins=args.allow_origin, allow_hosts=args.allow_host,
        certfile=args.certfile, keyfile=args.keyfile, insecure=args.insecure, idle_timeout=args.idle_timeout or None,
        max_per_address=args.max_per_address or None, max_half_open=args.max_half_open, handshake_timeout=args.handshake_timeout,
        full_gc_interval=args.full_gc_interval or None,
    )  # fmt: skip
    server.warm_up()  # the first use of the pools and the resampler, before the first client (and before gc.freeze)
    # What the start created (torch, the pools: ~200k objects) leaves the garbage collector's reach: a full
    # collection traversing it stops the event loop for ~100 ms, a stall every client would see.
    gc.freeze()
    return server, threads


async def _start(server: Any, args: argparse.Namespace) -> None:
    try:
        await server.start()
    except OSError as exc:
        raise ParameterError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another --port (0: any free port)") from None


def _worker_main(args: argparse.Namespace, index: int, parent: int, queue: Any) -> None:
    """One worker: a whole ``supermel serve`` on the shared port (runs in a spawned process)."""
    from ._serve_workers import _die_with_parent

    _die_with_parent(parent)  # before the slow imports
    from ..serve import server as server_mod

    try:
        server, threads = _build(args, server_mod, log_prefix=f"supermel serve [worker {index}]")
        server.reuse_port = True
        server.worker = index

        async def main() -> None:
            await _start(server, args)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, server.request_shutdown)
            queue.put(("ready", index, os.getpid(), str(threads)))
            await server.serve_forever()

        asyncio.run(main())
    except ParameterError as exc:
        queue.put(("error", index, os.getpid(), str(exc)))
        sys.exit(2)
