"""``supermel stream``: send an audio file to a ``supermel serve`` server, write the frames it returns.

Needs the ``serve`` extra (websockets, soxr) and soundfile, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._errors import ParameterError
from ._common import _atomic_open, _check_input_file, _check_output, _import_optional, _number, _positive_int

#: Exit statuses of ``supermel stream`` (documented in its --help and docs/serving.md).
EXIT_OK, EXIT_LOST_FRAMES, EXIT_INVALID = 0, 1, 2
EXIT_UNREACHABLE, EXIT_CONNECTION_LOST, EXIT_UNRESPONSIVE, EXIT_REFUSED = 3, 4, 5, 6
#: The server's error codes that mean "your request is invalid" (exit 2, as a local invalid parameter).
_INVALID_CODES = {"bad-json", "bad-request", "unknown-preset", "bad-rate", "bad-format", "not-started", "bad-length", "not-finite", "too-large",
                  "http-401", "http-403"}  # (a missing or wrong --token, a refused Origin/Host: invalid parameters)

_EXIT_HELP = (
    "exit status: 0 done; 1 frames lost or reordered on the way, or the output could not be written; 2 invalid parameters "
    "(here, or refused as invalid by the server: bad-rate, unknown-preset, ...); 3 server unreachable (nothing answers at "
    "--url, or it refused the WebSocket handshake); 4 connection lost mid-stream (the server died or the network dropped: "
    "no closing handshake); 5 server not responding (no pong within --ping-timeout, or no handshake/reply within "
    "--connect-timeout); 6 the server ended the stream with an error (server-full, behind, shutting down, ...)."
)


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel stream`` and its options to the subcommands ``sub``."""
    p = sub.add_parser(
        "stream",
        help="stream an audio file to `supermel serve` and save the frames it returns",
        description=(
            "Send FILE (mono mix, at its own rate: the server resamples) to a `supermel serve` server in chunks, "
            "receive the frames, and write them to OUT.npy atomically, in the preset's layout: they equal "
            "`supermel compute` of the file resampled to the server's rate. Prints the totals and the round trips."
        ),
        epilog=_EXIT_HELP,
    )
    p.add_argument("file", metavar="FILE", type=Path, help="audio file")
    p.add_argument("--url", default="ws://127.0.0.1:8000/", help="the server, ws://HOST:PORT/ or wss:// (default ws://127.0.0.1:8000/)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.npy", help="where to write the frames (.npy)")
    p.add_argument("--preset", metavar="NAME", help="one of the server's presets (default: its first)")
    p.add_argument("--fps", type=_number, metavar="F", help="Wav2Lip presets: also receive the per-video-frame windows at F frames/s")
    p.add_argument("--windows-output", type=Path, metavar="W.npy", help="with --fps: where to write the windows (w, bands, 16)")
    p.add_argument("--format", dest="sample_format", choices=("float32", "int16"), default="float32", help="sample format on the wire (default float32)")
    p.add_argument("--chunk-ms", type=_positive_int, default=20, metavar="MS", help="chunk length in milliseconds (default 20)")
    p.add_argument("--realtime", action="store_true", help="pace the chunks in real time, as a live source would")
    p.add_argument("--json", action="store_true", help="print the totals and round-trip figures as JSON")
    p.add_argument("--ping-interval", type=_seconds, default=2.0, metavar="S", help="send a WebSocket ping every S seconds (default 2)")
    p.add_argument("--ping-timeout", type=_seconds, default=3.0, metavar="S",
                   help="a pong later than S seconds means the server is hung: stop with exit status 5 (default 3; "
                   "a hung server is reported within --ping-interval + --ping-timeout)")  # fmt: skip
    p.add_argument("--connect-timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds for the connection, the handshake and each of the server's replies to hello/start (default 10)")  # fmt: skip
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="the server's bearer token (default: the environment variable SUPERMEL_TOKEN); wss:// URLs use TLS, "
                   "verified against the system's CAs or the file in SSL_CERT_FILE")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run ``supermel stream``; the exit status."""
    if args.output.suffix.lower() != ".npy":
        raise ParameterError(f"-o {str(args.output)!r}: write the frames to a .npy file")
    if args.windows_output is not None and args.fps is None:
        raise ParameterError("--windows-output needs --fps (Wav2Lip's video frame rate)")
    _check_input_file(args.file, "audio file", "pass an audio file")
    probed: dict = {}
    _check_output(args.output, "output", probed)
    if args.windows_output is not None:
        _check_output(args.windows_output, "windows output", probed)
    client_mod = _import_optional("supermel.serve.client", "supermel stream", "serve")
    client_mod.check_url(args.url)  # before reading the audio: a one-line error naming the URL and the fix
    import numpy as np

    from ..audio import load

    y, sr = load(args.file)
    try:
        client = client_mod.stream_sync(args.url, y, sr, chunk_seconds=args.chunk_ms / 1000.0, sample_format=args.sample_format,
                                        preset=args.preset, fps=args.fps, realtime=args.realtime, open_timeout=args.connect_timeout,
                                        ping_interval=args.ping_interval, ping_timeout=args.ping_timeout, token=args.token)  # fmt: skip
    except client_mod.ServerUnreachable as exc:
        return _fail(f"server unreachable: {exc.message}", EXIT_UNREACHABLE)
    except client_mod.ConnectionLost as exc:
        return _fail(f"connection lost: {exc.message}; no output written", EXIT_CONNECTION_LOST)
    except client_mod.ServerUnresponsive as exc:
        return _fail(f"server not responding: {exc.message}; no output written", EXIT_UNRESPONSIVE)
    except client_mod.ServerError as exc:
        if exc.error in _INVALID_CODES:
            raise ParameterError(f"the server refused the stream as invalid: {exc}") from None
        return _fail(f"the server ended the stream: {exc}; no output written", EXIT_REFUSED)
    except OSError as exc:  # (the client maps connection errors; anything else of the kind)
        return _fail(f"server unreachable: cannot reach {args.url}: {exc.strerror or exc}", EXIT_UNREACHABLE)
    frames = client.frames()
    with _atomic_open(args.output) as fh:
        np.save(fh, frames, allow_pickle=False)
    windows = client.windows()
    if args.windows_output is not None:
        with _atomic_open(args.windows_output) as fh:
            np.save(fh, windows if windows is not None else np.zeros((0, frames.shape[0 if client.time_axis == -1 else 1], 16), np.float32), allow_pickle=False)
    lat = np.asarray(client.latencies) * 1e3
    summary = {
        "file": str(args.file), "output": str(args.output), "shape": list(frames.shape), "totals": client.totals,
        "lost": client.lost, "reordered": client.reordered,
        "round_trip_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))} if lat.size else None,
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        t = client.totals or {}
        rt = summary["round_trip_ms"]
        extra = f"; round trip p50 {rt['p50']:.1f} ms, p99 {rt['p99']:.1f} ms" if rt else ""
        print(f"{args.output}: {frames.shape} ({t.get('frames')} frames from {t.get('samples')} samples at {sr} Hz, "
              f"{t.get('resampled')} at {t.get('server_rate')} Hz; lost {client.lost}){extra}", file=sys.stderr)  # fmt: skip
    if client.lost or client.reordered or (client.totals and client.totals.get("frames") != client.frame_count):
        print("supermel: error: frames were lost or reordered on the way", file=sys.stderr)
        return 1
    return 0


def _fail(message: str, status: int) -> int:
    print(f"supermel: error: {message}", file=sys.stderr)
    return status
