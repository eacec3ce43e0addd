"""`supermel serve --workers 2`: two processes share the port (SO_REUSEPORT); clients land on both
and get the offline frames; a worker killed is replaced; SIGTERM to the parent flushes every
stream of every worker and exits 0; kill -9 of the parent leaves no worker. Loopback only, bounded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("websockets")
pytest.importorskip("soxr")
if not sys.platform.startswith("linux"):
    pytest.skip("--workers needs Linux (SO_REUSEPORT)", allow_module_level=True)

import supermel  # noqa: E402
from supermel.serve import Client, stream_audio  # noqa: E402

CORE = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)
CMD = [sys.executable, "-m", "supermel", "serve", "--workers", "2", "--port", "0", "--sr", "16000", "--n-fft", "400",
       "--hop-length", "160", "--n-mels", "40", "--no-page", "--quiet"]  # fmt: skip


def _start():
    proc = subprocess.Popen(CMD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list = []

    def read():
        for _ in range(2):
            lines.append(proc.stdout.readline())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(300)  # two processes importing torch on a loaded machine
    assert len(lines) == 2 and lines[1], f"no start lines: {lines!r}"
    m = re.search(r"listening on (ws://127\.0\.0\.1:(\d+)/)", lines[0])
    assert m, lines
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", lines[1]).group(1).split(", ")]
    return proc, m.group(1), int(m.group(2)), pids


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


def _by_worker(port: int, n: int = 2, tries: int = 200) -> dict:
    """/stats of each worker (a request lands on either): pid -> stats."""
    seen: dict = {}
    for _ in range(tries):
        try:
            s = _stats(port)
        except OSError:  # (a request queued on a worker as it died)
            continue
        seen[s["pid"]] = s
        if len(seen) == n:
            break
    return seen


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _until(cond, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for: {what}"
        time.sleep(0.1)


def test_two_workers_serve_restart_and_stop_cleanly(speech):
    y, sr = speech
    proc, url, port, pids = _start()
    try:
        assert len(set(pids)) == 2
        workers = _by_worker(port)
        assert set(workers) == set(pids) and {s["worker"] for s in workers.values()} == {0, 1}

        xs = [y[i * 4000 : i * 4000 + 12000] for i in range(16)]

        async def many():
            return await asyncio.gather(*(stream_audio(url, x, sr, chunk_seconds=0.05) for x in xs))

        clients = asyncio.run(asyncio.wait_for(many(), 240))
        for c, x in zip(clients, xs):
            want = supermel.melspectrogram(y=x, **CORE)
            assert c.totals["frames"] == want.shape[-1] == c.frame_count
            np.testing.assert_allclose(c.frames(), want, rtol=1e-4, atol=1e-6 * float(np.abs(want).max()))
        served = {pid: s["connections"] for pid, s in _by_worker(port).items()}
        assert len(served) == 2 and all(v > 0 for v in served.values()), served  # both workers took streams

        # a worker killed is replaced (a new pid on the same port)
        os.kill(pids[0], signal.SIGKILL)
        _until(lambda: len(set(_by_worker(port, tries=50)) - {pids[0]}) == 2, "a replacement worker", limit=240)
        now = set(_by_worker(port))
        assert pids[1] in now and pids[0] not in now

        # SIGTERM to the parent: every worker flushes its streams (end "shutdown", close 1001), exit 0
        async def streaming_then_sigterm():
            cs = [await Client.connect(url, sample_rate=sr) for _ in range(6)]
            for c, x in zip(cs, xs):
                await c.send(x)
            await asyncio.to_thread(_until, lambda: all(c.acked == 12000 for c in cs), "all audio acknowledged")
            proc.send_signal(signal.SIGTERM)
            return cs, [await c.wait_end(timeout=60) for c in cs]

        cs, totals = asyncio.run(asyncio.wait_for(streaming_then_sigterm(), 240))
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "stopped (every worker flushed its streams)" in out
        for c, t, x in zip(cs, totals, xs):
            want = supermel.melspectrogram(y=x, **CORE)
            assert t["reason"] == "shutdown" and c.ws.close_code == 1001 and t["frames"] == want.shape[-1] == c.frame_count
        all_pids = set(pids) | now
        _until(lambda: not any(_alive(p) for p in all_pids), "no worker left", limit=10)
    finally:
        _stop(proc)


def test_kill_9_of_the_parent_leaves_no_worker():
    proc, url, port, pids = _start()
    try:
        proc.kill()  # SIGKILL: the parent cannot stop its workers; they must notice (PR_SET_PDEATHSIG)
        proc.wait(30)
        _until(lambda: not any(_alive(p) for p in pids), "the workers gone with their parent", limit=30)
    finally:
        _stop(proc)
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_port_held_by_another_server_is_refused():
    """Another process listening with SO_REUSEPORT (another `--workers` server) would silently share
    the port: refused with the reason, exit 2, before any worker starts."""
    import socket

    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        port = other.getsockname()[1]
        cmd = [c if c != "0" else str(port) for c in CMD]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "cannot listen on 127.0.0.1" in r.stderr and "Traceback" not in r.stderr
