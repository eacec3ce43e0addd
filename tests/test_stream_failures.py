"""`supermel stream` when the server is not there, dies, hangs or refuses: each its own message
and exit status (docs/serving.md, "supermel stream: exit status"), through the real executable
(``python -m supermel``) against real servers on 127.0.0.1; every case bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("websockets")
pytest.importorskip("soxr")

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SERVE = ["serve", "--port", "0", "--sr", "16000", "--n-fft", "400", "--hop-length", "160", "--n-mels", "40", "--no-page"]


def supermel(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supermel", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


@contextlib.contextmanager
def server(*extra: str):
    """`supermel serve` as a subprocess: (process, ws URL, port)."""
    proc = subprocess.Popen([sys.executable, "-m", "supermel", *SERVE, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (ws://127\.0\.0\.1:(\d+)/)", line)
        assert m, f"no listening line: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, m.group(1), int(m.group(2))
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture
def wav(tmp_path, speech) -> Path:
    y, sr = speech
    path = tmp_path / "speech.wav"
    soundfile.write(path, y[: 8 * sr], sr, subtype="FLOAT")  # 8 s: still streaming (--realtime) when the server fails
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("supermel: error: ")
    return lines[0]


def _streams(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())["streams"]


def _stream_until_open(port: int, args) -> subprocess.Popen:
    """Start `supermel stream --realtime` and return once the server has its stream open."""
    client = subprocess.Popen([sys.executable, "-m", "supermel", "stream", *map(str, args), "--realtime"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    deadline = time.monotonic() + 60
    while _streams(port) < 1:
        assert client.poll() is None, client.communicate()
        assert time.monotonic() < deadline, "the stream never opened"
        time.sleep(0.1)
    time.sleep(0.5)  # frames flowing
    return client


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "https://example.org/live", "127.0.0.1:8000", "ws://", "ftp://x/"])
def test_a_url_that_is_not_websocket_is_one_line_naming_it_and_the_fix(url, wav, tmp_path):
    r = supermel("stream", str(wav), "--url", url, "-o", str(tmp_path / "o.npy"))
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert repr(url) in line and "ws://" in line and "InvalidURI" not in line
    if url.startswith("http://"):
        assert "'ws://127.0.0.1:8000/'" in line  # the URL to use instead


def test_nothing_listening_is_server_unreachable_3(wav, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = supermel("stream", str(wav), "--url", f"ws://127.0.0.1:{dead}/", "-o", str(tmp_path / "o.npy"))
    assert r.returncode == 3
    assert "server unreachable" in _one_error_line(r.stderr) and not (tmp_path / "o.npy").exists()


def test_server_killed_mid_stream_is_connection_lost_4(wav, tmp_path):
    out = tmp_path / "o.npy"
    with server() as (proc, url, port):
        client = _stream_until_open(port, [wav, "--url", url, "-o", out])
        proc.kill()  # SIGKILL: no closing handshake
        t0 = time.monotonic()
        _, err = client.communicate(timeout=30)
    assert client.returncode == 4, err
    assert "connection lost" in _one_error_line(err)
    assert time.monotonic() - t0 < 15 and not out.exists()


def test_server_hung_mid_stream_is_not_responding_5_within_the_ping_timeout(wav, tmp_path):
    out = tmp_path / "o.npy"
    with server() as (proc, url, port):
        client = _stream_until_open(port, [wav, "--url", url, "-o", out, "--ping-interval", "0.5", "--ping-timeout", "1"])
        os.kill(proc.pid, signal.SIGSTOP)  # hung: the kernel keeps the connection, nobody answers
        t0 = time.monotonic()
        try:
            _, err = client.communicate(timeout=30)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        waited = time.monotonic() - t0
    assert client.returncode == 5, err
    assert "not responding" in _one_error_line(err) and "ping" in err
    assert waited < 10, waited  # detected by the pings (0.5 + 1 s), not by a 30-60 s timeout
    assert not out.exists()


class _SilentServer:
    """A raw TCP server on 127.0.0.1 that accepts connections and never answers anything."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            with contextlib.suppress(OSError):
                self.conns.append(self.sock.accept()[0])

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_server_that_accepts_and_never_answers_is_not_responding_5(wav, tmp_path):
    silent = _SilentServer()
    try:
        t0 = time.monotonic()
        r = supermel("stream", str(wav), "--url", f"ws://127.0.0.1:{silent.port}/", "-o", str(tmp_path / "o.npy"), "--connect-timeout", "1.5")
        waited = time.monotonic() - t0
    finally:
        silent.close()
    assert r.returncode == 5, r.stderr
    assert "not responding" in _one_error_line(r.stderr) and "handshake" in r.stderr
    assert waited < 20


def test_server_refusals_invalid_is_2_others_6(wav, tmp_path):
    from websockets.asyncio.client import connect

    with server("--max-clients", "1") as (proc, url, port):
        r = supermel("stream", str(wav), "--url", url, "-o", str(tmp_path / "o.npy"), "--preset", "nope")
        assert r.returncode == 2 and "unknown-preset" in _one_error_line(r.stderr)

        async def hold_and_stream():  # one connection holds the only slot: the stream gets server-full
            async with connect(url) as ws:
                await ws.recv()
                return await asyncio.to_thread(supermel, "stream", str(wav), "--url", url, "-o", str(tmp_path / "o.npy"))

        r = asyncio.run(asyncio.wait_for(hold_and_stream(), 90))
    assert r.returncode == 6 and "server-full" in _one_error_line(r.stderr)
    assert not (tmp_path / "o.npy").exists()


def test_the_client_raises_typed_errors(tmp_path):
    """supermel.serve.Client: the same cases as exceptions (subclasses of ServerError)."""
    from supermel.serve import ConnectionLost, ServerError, ServerUnreachable, ServerUnresponsive, stream_audio

    import supermel

    assert issubclass(ConnectionLost, ServerError) and issubclass(ServerUnresponsive, ServerError) and issubclass(ServerUnreachable, ServerError)
    with pytest.raises(supermel.ParameterError, match="ws://"):
        asyncio.run(stream_audio("http://127.0.0.1:1/", np.zeros(10, np.float32), 16000))
    silent = _SilentServer()
    try:
        with pytest.raises(ServerUnresponsive):
            asyncio.run(stream_audio(f"ws://127.0.0.1:{silent.port}/", np.zeros(10, np.float32), 16000, open_timeout=1.0))
    finally:
        silent.close()
