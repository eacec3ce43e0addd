"""``supermel serve`` on 127.0.0.1 (ephemeral ports): frames, errors, overload, disconnects, shutdown.

Every client's frames must equal the offline features (``supermel.melspectrogram`` /
``supermel.frontend``) of its audio resampled one-shot to the server's rate with soxr
(float32), within the bounds of docs/exactness.md (tests/test_exactness.py's BOUNDS);
the per-stream resampler must equal that one-shot resampling to float32 rounding.
No assertion here depends on timing: waits are bounded polls of the server's state.
"""

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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import soundfile
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import supermel
from supermel.cli import main as cli_main
from supermel.serve import Client, Server, ServerThread, StreamResampler, protocol, resample_offline, stream_audio
from test_exactness import BOUNDS, _err, _row

CORE = dict(sr=16000, n_fft=400, hop_length=160, n_mels=80)
ROOT = Path(__file__).resolve().parents[1]


def run(coro: Any, timeout: float = 180.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def serving(*presets: str, **kw: Any):
    kw.setdefault("core", None if presets else CORE)
    srv = Server(list(presets), port=0, record=True, **kw)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.shutdown()


async def until(cond, what: str, limit: float = 20.0) -> None:
    """Poll ``cond()`` (a bounded wait on server state, not a timing assertion)."""
    for _ in range(int(limit / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for: {what}")


def _excerpt(speech_at, rate: int, seconds: float, offset: float) -> np.ndarray:
    y = speech_at(rate)
    a = int(offset * rate)
    return np.ascontiguousarray(y[a : a + int(seconds * rate)])


def _as_sent(x: np.ndarray, fmt: str) -> np.ndarray:
    """The float32 samples the server decodes from ``x`` sent in ``fmt``."""
    if fmt == "int16":
        return (np.clip(np.round(x * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)
    return x.astype(np.float32)


def _offline_core(x: np.ndarray, rate: int) -> np.ndarray:
    return supermel.melspectrogram(y=resample_offline(x, rate, CORE["sr"]), **CORE)


# --------------------------------------------------------------------------- resampling and wire format
@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (16000, 22050), (22050, 16000), (16000, 16000)])
def test_chunked_resampling_equals_one_shot(rates, speech_at):
    a, b = rates
    x = speech_at(a)[: 3 * a]
    want = resample_offline(x, a, b)
    rng = np.random.default_rng(1)
    cuts = {
        "1": [1] * 2000 + [len(x)],
        "37": [37] * (len(x) // 37 + 1),
        "20ms": [a // 50] * (len(x) // (a // 50) + 1),
        "random": list(rng.integers(0, 3000, 5000)),
    }
    eps = np.finfo(np.float32).eps * float(np.abs(want).max())
    for name, sizes in cuts.items():
        rs, parts, i = StreamResampler(a, b), [], 0
        for m in sizes:
            if i >= len(x):
                break
            parts.append(rs.process(x[i : i + int(m)]))
            i += int(m)
        parts.append(rs.process(x[i:]))
        parts.append(rs.flush())
        got = np.concatenate(parts)
        assert got.dtype == np.float32 and got.shape == want.shape, (name, got.shape, want.shape)
        assert float(np.abs(got - want).max()) <= 4 * eps, name


def test_frame_messages_round_trip():
    frames = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = protocol.encode_frames(protocol.KIND_FRAMES, 2**40 + 5, frames, acked=2**33 + 1, flags=protocol.FLAG_FINAL)
    assert protocol.HEADER.size == 32 and len(msg) == 32 + 4 * 12
    m = protocol.decode_frames(msg)
    assert (m.kind, m.index, m.acked, m.final, m.count) == (protocol.KIND_FRAMES, 2**40 + 5, 2**33 + 1, True, 3)
    np.testing.assert_array_equal(m.data, frames)
    wins = np.random.default_rng(0).standard_normal((2, 80, 16)).astype(np.float32)
    w = protocol.decode_frames(protocol.encode_frames(protocol.KIND_WINDOWS, 7, wins, acked=0))
    assert w.kind == protocol.KIND_WINDOWS and w.index == 7
    np.testing.assert_array_equal(w.data, wins)
    for bad in (msg[:20], msg[:-4], b"XX" + msg[2:]):
        with pytest.raises(ValueError):
            protocol.decode_frames(bad)


# --------------------------------------------------------------------------- many clients, exact frames
#: (rate, format, chunk samples, seconds): 16, 44.1 and 48 kHz, float32 and int16, different chunk sizes
CLIENTS = [
    (16000, "float32", 320, 2.0),
    (16000, "int16", 160, 1.5),
    (44100, "float32", 441, 2.0),
    (44100, "int16", 1000, 2.5),
    (44100, "float32", 37, 0.4),
    (48000, "float32", 960, 2.0),
    (48000, "int16", 4096, 3.0),
    (48000, "int16", 7, 0.2),
    (16000, "float32", 16000, 2.2),
    (44100, "int16", 2205, 1.0),
]


@pytest.mark.parametrize("step_thread, interval", [(False, 0.002), (True, 0.002), (False, 0.0)], ids=["step-in-loop", "step-in-thread", "no-interval"])
def test_many_clients_get_the_offline_frames(step_thread, interval, speech_at):
    metric, bound, _ = BOUNDS["stream-core"]

    async def main():
        async with serving(step_thread=step_thread, step_interval=interval, max_frames_per_step=64) as srv:
            auds = [_excerpt(speech_at, r, s, 0.3 + 0.7 * i) for i, (r, _, _, s) in enumerate(CLIENTS)]
            clients = await asyncio.gather(
                *[stream_audio(srv.url, x, r, sample_format=f, chunk_seconds=c / r) for x, (r, f, c, _) in zip(auds, CLIENTS, strict=True)]
            )
            await until(lambda: srv.open_streams == 0 and all(r.close_code for r in srv.recordings.values()), "every stream closed")
            return srv, auds, clients

    srv, auds, clients = run(main())
    assert srv.stats["max_step_frames"] <= 64  # the cap held
    assert srv.stats["errors"] == {}
    for x, (rate, fmt, chunk, _), c in zip(auds, CLIENTS, clients, strict=True):
        sent = _as_sent(x, fmt)
        want = _offline_core(sent, rate)
        got = c.frames()
        assert got.shape == want.shape, (rate, fmt, chunk)
        assert _err(got, want, metric) <= bound, (rate, fmt, chunk)
        assert c.totals["frames"] == want.shape[-1] == c.frame_count  # the end's totals: the offline count
        assert c.totals["samples"] == len(x) and c.totals["resampled"] == len(resample_offline(sent, rate, CORE["sr"]))
        assert (c.lost, c.reordered) == (0, 0)
        assert c.latencies and c.acked == len(x)
        rec = srv.recordings[c.ready["stream"]]
        np.testing.assert_array_equal(rec.audio, sent)  # the server decoded exactly what was sent
        np.testing.assert_array_equal(rec.frames, got)  # and the client decoded exactly what it sent
        assert rec.close_code == 1000


def test_cycles_start_step_interval_apart(speech_at):
    """Input arriving within ``step_interval`` of a cycle's start waits for the next cycle (joined with the rest)."""
    interval = 0.05
    starts: List[float] = []

    async def main():
        async with serving(step_interval=interval) as srv:
            loop, snapshot = asyncio.get_running_loop(), srv._snapshot

            def timed(ps):  # a cycle's first act (one pool served)
                starts.append(loop.time())
                return snapshot(ps)

            srv._snapshot = timed
            x = _excerpt(speech_at, 16000, 1.0, 0.5)
            clients = await asyncio.gather(*[stream_audio(srv.url, x, 16000, chunk_seconds=0.005, realtime=True) for _ in range(4)])
            return srv, x, clients

    srv, x, clients = run(main())
    gaps = np.diff(starts)
    assert len(gaps) > 2 and gaps.min() >= interval - 5e-3, gaps.min()
    assert srv.stats["steps"] < 4 * 200  # 800 chunks in real time (one each 5 ms per client), far fewer cycles: batched
    metric, bound, _ = BOUNDS["stream-core"]
    want = _offline_core(x, 16000)
    for c in clients:
        assert c.frames().shape == want.shape and _err(c.frames(), want, metric) <= bound
        assert c.totals["frames"] == want.shape[-1] == c.frame_count and (c.lost, c.reordered) == (0, 0)


def test_presets_wav2lip_windows_and_finalized_frames(speech_at):
    async def main():
        async with serving("wav2lip", "kaldi-fbank", "whisper-80") as srv:
            x48 = _excerpt(speech_at, 48000, 3.0, 1.0)
            x44 = _excerpt(speech_at, 44100, 2.0, 4.0)
            jobs = [
                stream_audio(srv.url, x48, 48000, fps=25),  # no preset: the first served (wav2lip)
                stream_audio(srv.url, x44, 44100, preset="kaldi-fbank", sample_format="int16", chunk_seconds=0.05),
                stream_audio(srv.url, x48, 48000, preset="whisper-80", chunk_seconds=0.01),
            ]
            return srv, x48, x44, await asyncio.gather(*jobs)

    srv, x48, x44, (w2l, kal, whi) = run(main())
    assert srv.hello()["default"] == "wav2lip" and w2l.ready["preset"] == "wav2lip"
    fe = supermel.frontend("wav2lip")
    want = fe(resample_offline(x48, 48000, 16000))
    assert _err(w2l.frames(), want, "abs") <= BOUNDS["stream-wav2lip"][1]
    wins = supermel.wav2lip_mel_chunks(want, 25)
    assert w2l.windows().shape == wins.shape and w2l.totals["windows"] == len(wins)
    assert _err(w2l.windows(), wins, "abs") <= BOUNDS["stream-wav2lip"][1]
    want = supermel.frontend("kaldi-fbank")(resample_offline(_as_sent(x44, "int16"), 44100, 16000))
    assert kal.time_axis == -2 and kal.frames().shape == want.shape  # time-major preset
    assert _err(kal.frames(), want, "abs") <= BOUNDS[_row("kaldi-fbank")][1]
    want = supermel.frontend("whisper-80")(resample_offline(x48, 48000, 16000))
    assert not whi.ready["frame_local"]  # streamed post_local frames, finalized by the client
    assert _err(whi.frames(), want, "abs") <= BOUNDS[_row("whisper-80")][1]


def test_empty_stream_ends_with_zero_frames():
    async def main():
        async with serving() as srv:
            c = await Client.connect(srv.url, sample_rate=16000)
            await c.send(np.zeros(0, np.float32))
            return await c.end()

    totals = run(main())
    assert (totals["frames"], totals["samples"], totals["reason"]) == (0, 0, "client")


# --------------------------------------------------------------------------- errors: that client only
def _start(**kw: Any) -> str:
    return json.dumps({"type": "start", "sample_rate": 16000, **kw})


#: name -> (messages to send after hello, expected error code)
ERROR_CASES: Dict[str, Any] = {
    "bad-json": (["{not json"], "bad-json"),
    "json-not-object": (["[1, 2]"], "bad-json"),
    "unknown-type": ([json.dumps({"type": "hello"})], "bad-request"),
    "start-without-rate": ([json.dumps({"type": "start"})], "bad-request"),
    "start-unknown-field": ([_start(samplerate=16000)], "bad-request"),
    "unknown-preset": ([_start(preset="nope")], "unknown-preset"),
    "rate-too-low": ([_start(sample_rate=4000)], "bad-rate"),
    "rate-too-high": ([_start(sample_rate=1_000_000)], "bad-rate"),
    "rate-fractional": ([_start(sample_rate=44100.5)], "bad-rate"),
    "rate-string": ([_start(sample_rate="44100")], "bad-rate"),
    "format": ([_start(format="int24")], "bad-format"),
    "fps-not-wav2lip": ([_start(fps=25)], "bad-request"),
    "binary-before-start": ([np.zeros(10, np.float32).tobytes()], "not-started"),
    "start-twice": ([_start(), _start()], "bad-request"),
    "end-before-start": ([json.dumps({"type": "end"})], "bad-request"),
    "odd-length-float32": ([_start(), b"\x00" * 6], "bad-length"),
    "odd-length-int16": ([_start(format="int16"), b"\x00" * 3], "bad-length"),
    "nan-audio": ([_start(), np.array([0.1, np.nan, 0.2], np.float32).tobytes()], "not-finite"),
    "inf-audio": ([_start(), np.array([np.inf], np.float32).tobytes()], "not-finite"),
    "oversize-audio": ([_start(), np.zeros(16001, np.float32).tobytes()], "too-large"),
    "oversize-text": (["x" * 70000], "too-large"),
}


async def _expect_error(url: str, messages: List[Any], code: str) -> Dict[str, Any]:
    async with connect(url, compression=None, max_size=None) as ws:
        got: List[Any] = [await ws.recv()]  # hello (or, when refused at once, the error)
        first = json.loads(got[0])
        assert first["type"] == "error" or (first["type"] == "hello" and first["protocol"] == protocol.PROTOCOL)
        for m in messages:
            await ws.send(m)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                got.append(await ws.recv())
        texts = [json.loads(m) for m in got if isinstance(m, str)]
        errors = [m for m in texts if m["type"] == "error"]
        assert len(errors) == 1, texts
        err = errors[0]
        assert err["error"] == code and err["close"] == protocol.ERRORS[code] and err["message"]
        assert closed.value.rcvd is not None and closed.value.rcvd.code == protocol.ERRORS[code]
        assert closed.value.rcvd.reason.startswith(code)
        return err


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_go_to_that_client_only(case, speech_at):
    messages, code = ERROR_CASES[case]
    x = _excerpt(speech_at, 44100, 1.5, 2.0)

    async def main():
        async with serving() as srv:
            good = asyncio.create_task(stream_audio(srv.url, x, 44100, realtime=False, chunk_seconds=0.01))
            err = await _expect_error(srv.url, messages, code)
            c = await good
            await until(lambda: srv.open_streams == 0, "streams freed")
            return srv, err, c

    srv, err, c = run(main())
    assert _err(c.frames(), _offline_core(x, 44100), "peak") <= BOUNDS["stream-core"][1]
    assert c.totals["frames"] == c.frame_count and (c.lost, c.reordered) == (0, 0)
    assert dict(srv.stats["errors"]) == {code: 1}


def test_message_over_the_websocket_limit_is_closed_1009():
    async def main():
        async with serving(max_chunk_seconds=0.01, max_backlog_seconds=0.5) as srv:
            ws = await connect(srv.url, compression=None, max_size=None)  # (closed by the server)
            await ws.recv()
            await ws.send(_start())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.send(b"\x00" * (4 * 1024 * 1024))  # over websockets' own max_size
                while True:
                    await ws.recv()
            await until(lambda: srv.snapshot_stats()["clients"] == 0 and srv.open_streams == 0, "its stream freed")
            return closed.value.rcvd.code if closed.value.rcvd else ws.close_code

    assert run(main()) == 1009


def test_start_timeout_and_server_full():
    async def main():
        async with serving(start_timeout=0.3, max_clients=2) as srv:
            idle = await _expect_error(srv.url, [], "timeout")
            await until(lambda: srv.snapshot_stats()["clients"] == 0, "the idle client gone")
            a = await Client.connect(srv.url, sample_rate=16000)
            b = await Client.connect(srv.url, sample_rate=16000)
            full = await _expect_error(srv.url, [], "server-full")
            await a.send(np.zeros(1600, np.float32))
            ta, tb = await a.end(), await b.end()
            return idle, full, ta, tb

    idle, full, ta, tb = run(main())
    assert "start" in idle["message"] and "2 clients" in full["message"]
    assert ta["frames"] == 11 and tb["frames"] == 0


# --------------------------------------------------------------------------- overload, disconnects, shutdown
def test_a_client_that_stops_reading_is_closed_1013_and_the_others_go_on(speech_at):
    x = _excerpt(speech_at, 16000, 30.0, 0.0)
    others = [_excerpt(speech_at, 48000, 3.0, 1.0 + i) for i in range(3)]

    async def main():
        async with serving(socket_send_buffer=8192, max_send_seconds=0.5, close_timeout=30.0) as srv:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            async with connect(srv.url, sock=sock, compression=None, max_queue=2) as slow:
                await slow.recv()  # hello
                await slow.send(_start())
                jobs = [asyncio.create_task(stream_audio(srv.url, y, 48000, chunk_seconds=0.02)) for y in others]
                for i in range(0, len(x), 320):  # 30 s of audio, faster than real time, never reading
                    await slow.send(x[i : i + 320].tobytes())
                    await asyncio.sleep(0)  # (one event loop: let the server run)
                    if srv.stats["errors"]["not-reading"]:
                        break
                await until(lambda: srv.stats["errors"]["not-reading"] == 1, "the slow client closed as not reading")
                done = await asyncio.gather(*jobs)
                got = 0
                with pytest.raises(ConnectionClosed) as closed:  # now read: what was in flight, then the close
                    while True:
                        got += isinstance(await slow.recv(), bytes)
            await until(lambda: srv.open_streams == 0, "its stream freed")
            return srv, closed.value.rcvd, done, got

    srv, rcvd, done, got = run(main())
    assert rcvd.code == 1013 and rcvd.reason.startswith("not-reading"), rcvd
    assert got > 0
    assert dict(srv.stats["errors"]) == {"not-reading": 1}
    for y, c in zip(others, done, strict=True):
        assert _err(c.frames(), _offline_core(y, 48000), "peak") <= BOUNDS["stream-core"][1]
        assert (c.lost, c.reordered) == (0, 0) and c.totals["frames"] == c.frame_count


def test_falling_behind_the_backlog_is_closed_1013():
    async def main():
        async with serving(max_backlog_seconds=0.2, max_chunk_seconds=0.1) as srv:
            srv._wake.set = lambda: None  # the stepper never wakes: audio piles up in the inbox
            async with connect(srv.url, compression=None) as ws:
                await ws.recv()
                await ws.send(_start())
                with pytest.raises(ConnectionClosed) as closed:
                    for _ in range(100):
                        await ws.send(np.zeros(1600, np.float32).tobytes())
                    while True:
                        await ws.recv()
            return closed.value.rcvd

    rcvd = run(main())
    assert rcvd.code == 1013 and rcvd.reason.startswith("behind")


@pytest.mark.parametrize("how", ["abort", "close-without-end"])
def test_a_client_that_disconnects_mid_stream_frees_its_slot(how, speech_at):
    x = _excerpt(speech_at, 16000, 2.0, 0.0)

    async def main():
        async with serving() as srv:
            c = await Client.connect(srv.url, sample_rate=16000)
            other = await Client.connect(srv.url, sample_rate=16000)
            for i in range(0, 16000, 320):
                await c.send(x[i : i + 320])
            await until(lambda: c.frame_count > 0 and srv.open_streams == 2, "frames flowing")
            if how == "abort":
                c.ws.transport.abort()
            else:
                await c.ws.close()
            await until(lambda: srv.open_streams == 1, "the slot freed")
            for i in range(0, len(x), 320):
                await other.send(x[i : i + 320])
            await other.end()
            await until(lambda: srv.open_streams == 0, "all freed")
            return srv, other

    srv, other = run(main())
    assert len(srv.pools["mel"]) == 0 and srv.stats["errors"] == {}
    assert _err(other.frames(), _offline_core(x, 16000), "peak") <= BOUNDS["stream-core"][1]


def test_shutdown_flushes_every_stream_in_process(speech_at):
    x = _excerpt(speech_at, 44100, 1.3, 0.5)

    async def main():
        srv = Server(core=CORE, port=0)
        await srv.start()
        c = await Client.connect(srv.url, sample_rate=44100, sample_format="int16")
        idle = await connect(srv.url, compression=None)
        for i in range(0, len(x), 4410):
            await c.send(x[i : i + 4410])
        await until(lambda: c.frame_count > 0, "frames flowing")
        await srv.shutdown()
        totals = await c.wait_end()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await idle.recv()
        return c, totals, closed.value.rcvd

    c, totals, rcvd = run(main())
    assert totals["reason"] == "shutdown" and c.ws.close_code == 1001 and rcvd.code == 1001
    want = _offline_core(_as_sent(x, "int16"), 44100)
    assert totals["frames"] == want.shape[-1] and _err(c.frames(), want, "peak") <= BOUNDS["stream-core"][1]


def test_sigterm_flushes_every_stream_and_exits_0(speech_at):
    """`supermel serve` as a subprocess: SIGTERM -> the clients get their last frames and the totals, exit 0."""
    cmd = [sys.executable, "-m", "supermel", "serve", "--port", "0", "--sr", "16000", "--n-fft", "400", "--hop-length", "160", "--n-mels", "80"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (ws://127\.0\.0\.1:(\d+)/)", line)
        assert m, f"no listening line: {line!r}"
        url = m.group(1)
        xs = [_excerpt(speech_at, 44100, 1.7, 0.5), _excerpt(speech_at, 16000, 2.3, 3.0)]

        async def main():
            a = await Client.connect(url, sample_rate=44100, sample_format="int16")
            b = await Client.connect(url, sample_rate=16000)
            for c, x in ((a, xs[0]), (b, xs[1])):
                for i in range(0, len(x), 4000):
                    await c.send(x[i : i + 4000])
            await until(lambda: a.acked == len(xs[0]) and b.acked == len(xs[1]), "all audio acknowledged")
            proc.send_signal(signal.SIGTERM)
            return a, b, await a.wait_end(), await b.wait_end()

        a, b, ta, tb = run(main())
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped (every stream flushed)" in out
    for c, x, t, fmt in ((a, xs[0], ta, "int16"), (b, xs[1], tb, "float32")):
        want = _offline_core(_as_sent(x, fmt), c.sample_rate)
        assert t["reason"] == "shutdown" and c.ws.close_code == 1001
        assert t["frames"] == want.shape[-1] == c.frame_count
        assert _err(c.frames(), want, "peak") <= BOUNDS["stream-core"][1]


# --------------------------------------------------------------------------- HTTP, CLI
def test_page_and_info_over_http():
    with ServerThread(Server(core=CORE, port=0)) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        page = urllib.request.urlopen(base + "/").read().decode()
        assert "worklet.js" in page and "getUserMedia" in page and "echoCancellation: false" in page
        js = urllib.request.urlopen(base + "/worklet.js")
        assert js.headers["Content-Type"].startswith("text/javascript") and b"registerProcessor" in js.read()
        hello = json.loads(urllib.request.urlopen(base + "/hello").read())
        assert hello["presets"]["mel"]["sr"] == 16000 and len(hello["presets"]["mel"]["band_hz"]) == 80
        assert json.loads(urllib.request.urlopen(base + "/stats").read())["streams"] == 0
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/nope")
        assert e.value.code == 404


def test_stream_command_writes_the_offline_frames(tmp_path, speech_at, capsys):
    x = _excerpt(speech_at, 44100, 2.0, 1.0)
    wav = tmp_path / "in.wav"
    soundfile.write(wav, x, 44100, subtype="FLOAT")
    out = tmp_path / "sub" / "out.npy"
    with ServerThread(Server(core=CORE, port=0)) as srv:
        assert cli_main(["stream", str(wav), "--url", srv.url, "-o", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert cli_main(["stream", str(wav), "--url", srv.url, "-o", str(tmp_path / "x.npz")]) == 2
        assert ".npy" in capsys.readouterr().err
    got = np.load(out)
    want = _offline_core(x, 44100)
    assert _err(got, want, "peak") <= BOUNDS["stream-core"][1]
    assert summary["totals"]["frames"] == want.shape[-1] and summary["lost"] == 0
    assert [p.name for p in out.parent.iterdir()] == ["out.npy"]  # atomic: no temporary left
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    assert cli_main(["stream", str(wav), "--url", f"ws://127.0.0.1:{dead}/", "-o", str(tmp_path / "y.npy")]) == 3  # server unreachable
    assert "cannot reach" in capsys.readouterr().err and not (tmp_path / "y.npy").exists()


def test_serve_command_help_and_refusals(capsys):
    assert cli_main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "threadpoolctl" in text and "torch.set_num_threads(1)" in text and "docs/serving.md" in text
    assert cli_main(["serve", "--preset", "wav2lip", "--n-mels", "40", "--port", "0"]) == 2
    assert "preset fixes its own" in capsys.readouterr().err
    with pytest.raises(supermel.ParameterError, match="max_chunk_seconds"):
        Server(core=CORE, max_chunk_seconds=3.0, max_backlog_seconds=2.0)
    with pytest.raises(supermel.ParameterError, match="port"):
        Server(core=CORE, port=70000)
    for bad in (-0.001, 1.0, float("nan"), True):
        with pytest.raises(supermel.ParameterError, match="step_interval"):
            Server(core=CORE, step_interval=bad)
    assert cli_main(["serve", "--step-interval", "2", "--port", "0"]) == 2
    assert "--step-interval" in capsys.readouterr().err


def test_docs_describe_the_protocol():
    doc = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    for code, close in protocol.ERRORS.items():
        assert re.search(rf"`{re.escape(code)}`.*\b{close}\b", doc), f"docs/serving.md must list the error `{code}` ({close})"
    for field in ("sample_rate", "format", "preset", "fps", "acked", "FLAG_FINAL", "1013"):
        assert field in doc, field
    assert websockets.__version__  # the extra is installed


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device (the pool's GPU path; the rest of this file runs on the CPU)")
def test_serving_from_a_gpu_pool(speech_at):
    x = _excerpt(speech_at, 48000, 2.0, 1.0)

    async def main():
        async with serving(device="cuda") as srv:
            return await stream_audio(srv.url, x, 48000, sample_format="int16")

    c = run(main())
    assert _err(c.frames(), _offline_core(_as_sent(x, "int16"), 48000), "peak") <= BOUNDS["stream-core"][1]
