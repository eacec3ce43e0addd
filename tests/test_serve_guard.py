"""``supermel serve`` on a network: access control, exhaustion defences, malformed input, non-finite output.

Everything on 127.0.0.1 (ephemeral ports). The access-control tests drive the real
server with the real client (:class:`supermel.serve.Client`, ``supermel stream``) and
with a raw ``websockets`` client or a raw socket sending a foreign ``Origin`` / ``Host``.
Waits are bounded polls of the server's state, never timing assertions.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest
import soundfile
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import supermel
from supermel.cli import main as cli_main
from supermel.serve import Client, Server, ServerThread, protocol, stream_audio
from supermel.serve.client import ServerError
from test_exactness import BOUNDS, _err
from test_serve import CORE, _expect_error, _offline_core, run, serving, until

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-Token_for-tests"


def _tone(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _http(port: int, path: str, host: Optional[str] = None, headers: Optional[Dict[str, str]] = None) -> "tuple[int, bytes]":
    """A plain GET with an explicit Host header (http.client sends the one given)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.putrequest("GET", path, skip_host=True)
        c.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


async def _status_of(url: str, **kw: Any) -> int:
    """Open a raw websockets connection: 101 when it opened, else the HTTP status it was refused with."""
    try:
        ws = await connect(url, compression=None, open_timeout=10, **kw)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


# --------------------------------------------------------------------------- token
def test_token_over_the_real_client_raw_websockets_and_http(monkeypatch):
    monkeypatch.delenv("SUPERMEL_TOKEN", raising=False)
    x = _tone(0.6)

    async def main():
        async with serving(token=TOKEN) as srv:
            with pytest.raises(ServerError) as no_token:
                await Client.connect(srv.url, sample_rate=16000)
            with pytest.raises(ServerError) as wrong:
                await Client.connect(srv.url, sample_rate=16000, token=TOKEN + "x")
            good = await stream_audio(srv.url, x, 16000, token=TOKEN)
            monkeypatch.setenv("SUPERMEL_TOKEN", TOKEN)
            from_env = await stream_audio(srv.url, x, 16000)
            monkeypatch.delenv("SUPERMEL_TOKEN")
            statuses = {
                "query": await _status_of(srv.url + f"?token={TOKEN}"),
                "query-wrong": await _status_of(srv.url + "?token=nope"),
                "header": await _status_of(srv.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}),
                "basic": await _status_of(srv.url, additional_headers={"Authorization": f"Basic {TOKEN}"}),
                "none": await _status_of(srv.url),
            }
            return srv, no_token.value, wrong.value, good, from_env, statuses

    srv, no_token, wrong, good, from_env, statuses = run(main())
    assert no_token.error == wrong.error == "http-401" and "token" in no_token.message
    assert statuses == {"query": 101, "query-wrong": 401, "header": 101, "basic": 401, "none": 401}
    for c in (good, from_env):
        assert _err(c.frames(), _offline_core(x, 16000), "peak") <= BOUNDS["stream-core"][1]
    assert srv.stats["refused"]["token"] == 5
    with ServerThread(Server(core=CORE, port=0, token=TOKEN)) as srv:
        assert _http(srv.port, "/")[0] == 200  # the page is public (static); it asks for the token
        assert _http(srv.port, "/worklet.js")[0] == 200
        for path in ("/stats", "/hello"):
            assert _http(srv.port, path)[0] == 401
            assert _http(srv.port, path + "?token=" + TOKEN)[0] == 200
            status, body = _http(srv.port, path, headers={"Authorization": "Bearer " + TOKEN})
            assert status == 200 and json.loads(body)
    with pytest.raises(supermel.ParameterError, match="token"):
        Server(core=CORE, port=0, token="")


def test_the_page_takes_the_token_from_the_fragment_or_asks():
    page = (ROOT / "src" / "supermel" / "serve" / "static" / "index.html").read_text(encoding="utf-8")
    assert 'location.hash' in page and 'get("token")' in page and "history.replaceState" in page
    assert 'id="token" type="password"' in page and "r.status === 401" in page
    assert 'new WebSocket(withToken(' in page and 'fetch(withToken("hello"))' in page


def test_a_non_loopback_address_needs_a_token_or_insecure(capsys, monkeypatch):
    monkeypatch.delenv("SUPERMEL_TOKEN", raising=False)
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        with pytest.raises(supermel.ParameterError, match=r"without a token.*--insecure"):
            Server(core=CORE, host=host, port=0)
        Server(core=CORE, host=host, port=0, token=TOKEN)  # (built, never started: tests listen on loopback only)
        Server(core=CORE, host=host, port=0, insecure=True)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        Server(core=CORE, host=host, port=0)
    assert cli_main(["serve", "--host", "0.0.0.0", "--port", "0", "--sr", "16000"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on '0.0.0.0' without a token" in err and "--insecure" in err and "SUPERMEL_TOKEN" in err


# --------------------------------------------------------------------------- Origin and Host
def test_foreign_origins_are_refused_before_the_upgrade():
    async def main():
        async with serving(allow_origins=["https://app.example"]) as srv:
            p = srv.port
            got = {o: await _status_of(srv.url, origin=o) for o in (
                f"http://127.0.0.1:{p}", f"http://localhost:{p}", f"http://[::1]:{p}", "https://app.example", "https://app.example:443",
                "http://evil.example", f"http://evil.example:{p}", "null", f"https://127.0.0.1:{p}", f"http://127.0.0.1:{p + 1}",
                "http://app.example", "file://", f"http://127.0.0.1:{p}/path",
            )}  # fmt: skip
            got["none (not a browser)"] = await _status_of(srv.url)
            c = await Client.connect(srv.url, sample_rate=16000, origin=f"http://localhost:{p}")
            await c.send(_tone(0.2))
            totals = await c.end()
            return srv, got, totals

    srv, got, totals = run(main())
    p = srv.port
    assert got == {
        f"http://127.0.0.1:{p}": 101, f"http://localhost:{p}": 101, f"http://[::1]:{p}": 101, "https://app.example": 101,
        "https://app.example:443": 101, "http://evil.example": 403, f"http://evil.example:{p}": 403, "null": 403,
        f"https://127.0.0.1:{p}": 403, f"http://127.0.0.1:{p + 1}": 403, "http://app.example": 403, "file://": 403,
        f"http://127.0.0.1:{p}/path": 403, "none (not a browser)": 101,
    }  # fmt: skip
    assert totals["frames"] > 0 and srv.stats["refused"]["origin"] == 8


def test_foreign_host_names_are_refused_dns_rebinding():
    async def main():
        async with serving(allow_hosts=["mel.example"]) as srv:
            p = srv.port
            out = {}
            for host in ("evil.example", "mel.example", "localhost", "127.0.0.1", "192.0.2.1"):
                sock = socket.create_connection(("127.0.0.1", p))
                # the URI's host name goes into the Host header; the socket is the loopback connection
                out[host] = await _status_of(f"ws://{host}:{p}/", sock=sock)
            return srv, out

    srv, ws_status = run(main())
    assert ws_status == {"evil.example": 403, "mel.example": 101, "localhost": 101, "127.0.0.1": 101, "192.0.2.1": 403}
    with ServerThread(Server(core=CORE, port=0)) as srv:
        p = srv.port
        for path in ("/stats", "/hello", "/"):
            assert _http(p, path, host=f"evil.example:{p}")[0] == 403, path
            assert _http(p, path, host=f"attacker.localhost.evil.example:{p}")[0] == 403, path
            assert _http(p, path, host=f"localhost:{p}")[0] == 200, path
            assert _http(p, path, host=f"127.0.0.1:{p}")[0] == 200, path
        assert _http(p, "/stats", host="")[0] in (400, 403)
        stats = json.loads(_http(p, "/stats")[1])
        assert stats["refused"]["host"] >= 6


# --------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is missing (apt-get install -y openssl)")
        pytest.skip("needs the openssl program: apt-get install -y openssl")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)  # fmt: skip
    return cert, key


def test_tls_wss_with_the_client_the_stream_command_and_the_page(certificate, tmp_path, monkeypatch, capsys):
    cert, key = certificate
    monkeypatch.delenv("SUPERMEL_TOKEN", raising=False)
    ctx = ssl.create_default_context(cafile=str(cert))
    x = _tone(1.0, 22050)
    wav = tmp_path / "in.wav"
    soundfile.write(wav, x, 22050, subtype="FLOAT")
    with ServerThread(Server(core=CORE, port=0, certfile=str(cert), keyfile=str(key), token=TOKEN)) as srv:
        assert srv.url.startswith("wss://127.0.0.1:")
        c = asyncio.run(stream_audio(srv.url, x, 22050, token=TOKEN, ssl=ctx))
        assert _err(c.frames(), _offline_core(x, 22050), "peak") <= BOUNDS["stream-core"][1]
        page = urllib.request.urlopen(f"https://127.0.0.1:{srv.port}/", context=ctx, timeout=10).read().decode()
        assert "wss://" in page and "getUserMedia" in page
        with pytest.raises(Exception):  # plain ws:// to a TLS port
            asyncio.run(Client.connect(f"ws://127.0.0.1:{srv.port}/", sample_rate=16000, token=TOKEN, open_timeout=5))
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # `supermel stream` verifies wss:// against the system's CAs or this file
        out = tmp_path / "out.npy"
        assert cli_main(["stream", str(wav), "--url", srv.url, "--token", TOKEN, "-o", str(out)]) == 0
        assert _err(np.load(out), _offline_core(x, 22050), "peak") <= BOUNDS["stream-core"][1]
        assert cli_main(["stream", str(wav), "--url", srv.url, "-o", str(tmp_path / "refused.npy")]) == 2
        assert "http-401" in capsys.readouterr().err and not (tmp_path / "refused.npy").exists()
        monkeypatch.setenv("SUPERMEL_TOKEN", TOKEN)  # the token from the environment
        assert cli_main(["stream", str(wav), "--url", srv.url, "-o", str(tmp_path / "env.npy")]) == 0
    with pytest.raises(supermel.ParameterError, match="certificate"):
        Server(core=CORE, port=0, certfile=str(tmp_path / "missing.pem"))


# --------------------------------------------------------------------------- exhaustion
def test_a_started_stream_without_audio_is_closed_idle_and_others_go_on():
    async def main():
        async with serving(idle_timeout=0.6) as srv:
            honest = await Client.connect(srv.url, sample_rate=16000)
            err = asyncio.create_task(_expect_error(srv.url, [json.dumps({"type": "start", "sample_rate": 16000})], "idle"))
            x = _tone(2.0)
            for i in range(0, len(x), 320):  # audio every 20 ms until the idle one is closed (and a little after)
                await honest.send(x[i : i + 320])
                await asyncio.sleep(0.02)
                if err.done() and i > 16000:
                    break
            e = await err
            totals = await honest.end()
            await until(lambda: srv.open_streams == 0, "streams freed")
            return srv, e, totals, honest

    srv, e, totals, honest = run(main())
    assert "no audio for 0.6 s" in e["message"]
    assert dict(srv.stats["errors"]) == {"idle": 1} and totals["frames"] == honest.frame_count > 0 and honest.lost == 0
    with pytest.raises(supermel.ParameterError, match="idle_timeout"):
        Server(core=CORE, idle_timeout=0)


def test_the_per_address_cap_refuses_with_429():
    async def main():
        async with serving(max_per_address=2) as srv:
            a = await Client.connect(srv.url, sample_rate=16000)
            b = await Client.connect(srv.url, sample_rate=16000)
            with pytest.raises(ServerError) as third:
                await Client.connect(srv.url, sample_rate=16000)
            await a.end()
            await until(lambda: srv.snapshot_stats()["tcp_open"] == 1, "a's connection closed")
            c = await Client.connect(srv.url, sample_rate=16000)  # room again
            await b.end(), await c.end()
            return srv, third.value

    srv, third = run(main())
    assert third.error == "http-429" and "at most 2" in third.message
    assert srv.stats["refused"]["per-address"] == 1


def test_half_open_connections_are_bounded_and_time_out():
    async def main():
        async with serving(max_half_open=4, handshake_timeout=1.0) as srv:
            socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(12)]  # connect, never send a request
            await until(lambda: srv.stats["half_open_dropped"] >= 8, "the oldest half-open connections dropped")
            assert srv.snapshot_stats()["half_open"] <= 4
            c = await stream_audio(srv.url, _tone(0.5), 16000)  # an honest client meanwhile
            await until(lambda: srv.snapshot_stats()["tcp_open"] == 0, "the rest timed out (handshake timeout)")
            closed = 0
            for s in socks:
                s.settimeout(5)
                try:
                    closed += s.recv(1) == b""
                except ConnectionResetError:
                    closed += 1
                s.close()
            return srv, c, closed

    srv, c, closed = run(main())
    assert closed == 12 and c.totals["frames"] == c.frame_count > 0
    assert srv.stats["half_open_dropped"] >= 8


def test_the_descriptor_limit_is_raised_and_reported():
    import resource

    with ServerThread(Server(core=CORE, port=0)) as srv:
        stats = json.loads(_http(srv.port, "/stats")[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert stats["fd_limit"] == soft and stats["fd_hard_limit"] == hard
    assert soft == (hard if hard != resource.RLIM_INFINITY else soft) or soft >= 1 << 20
    assert stats["fds_open"] > 0 and stats["tcp_open"] >= 1 and stats["half_open"] == 0


# --------------------------------------------------------------------------- malformed input: its code, never 1011, one log line
def _start(**kw: Any) -> str:
    return json.dumps({"type": "start", "sample_rate": 16000, **kw})


MALFORMED = {
    "nested-5000": ("[" * 5000 + "]" * 5000, "bad-json"),
    "nested-30000": ("[" * 30000 + "]" * 30000, "bad-json"),
    "nested-objects": ('{"type": "start", "x": ' + '{"a":' * 10000 + "1" + "}" * 10000 + "}", "bad-json"),
    "rate-1e400": ('{"type": "start", "sample_rate": 1e400}', "bad-rate"),
    "rate-huge-int": ('{"type": "start", "sample_rate": 1' + "0" * 400 + "}", "bad-rate"),
    "rate-huge-negative-int": ('{"type": "start", "sample_rate": -1' + "0" * 4000 + "}", "bad-rate"),
    "rate-over-python-digit-limit": ('{"type": "start", "sample_rate": 1' + "0" * 5000 + "}", "bad-json"),
    "rate-nan-literal": ('{"type": "start", "sample_rate": NaN}', "bad-rate"),
    "rate-list": (_start(sample_rate=[16000]), "bad-rate"),
    "fps-1e400": ('{"type": "start", "sample_rate": 16000, "fps": 1e400}', "bad-request"),
    "fps-huge-int": ('{"type": "start", "sample_rate": 16000, "fps": 1' + "0" * 400 + "}", "bad-request"),
    "fps-minus-inf": ('{"type": "start", "sample_rate": 16000, "fps": -Infinity}', "bad-request"),
    "format-list": (_start(format=["int16"]), "bad-format"),
    "format-object": (_start(format={"a": 1}), "bad-format"),
    "preset-object": (_start(preset={"a": 1}), "unknown-preset"),
    "type-list": ('{"type": ["start"]}', "bad-json"),
    "type-huge": (json.dumps({"type": "x" * 60000}), "bad-request"),
    "unknown-huge-field": (json.dumps({"type": "start", "sample_rate": 16000, "y" * 60000: 1}), "bad-request"),
    "lone-surrogate": ('{"type": "\\ud800"}', "bad-request"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_text_gets_its_documented_code(case, caplog):
    text, code = MALFORMED[case]

    async def main():
        async with serving() as srv:
            err = await _expect_error(srv.url, [text], code)
            await until(lambda: sum(srv.stats["close_codes"].values()) == 1, "the close recorded")
            return srv, err

    with caplog.at_level(logging.DEBUG, logger="supermel.serve"):
        srv, err = run(main())
    assert protocol.ERRORS[code] != 1011 and dict(srv.stats["close_codes"]) == {protocol.ERRORS[code]: 1}
    assert len(err["message"]) < 400
    lines = [r for r in caplog.records if r.name == "supermel.serve" and r.levelno >= logging.INFO]
    assert len(lines) == 1 and not any(r.exc_info for r in caplog.records), [r.getMessage() for r in lines]
    assert code in lines[0].getMessage() and "\n" not in lines[0].getMessage() and len(lines[0].getMessage()) <= 300


def test_error_log_lines_are_rate_limited(caplog):
    async def main():
        async with serving() as srv:
            for _ in range(60):
                await _expect_error(srv.url, ["[" * 30000 + "]" * 30000], "bad-json")
            await until(lambda: sum(srv.stats["close_codes"].values()) == 60, "all closed")
            return srv

    with caplog.at_level(logging.INFO, logger="supermel.serve"):
        srv = run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "supermel.serve"]
    assert srv.stats["errors"]["bad-json"] == 60
    assert 1 <= len(lines) <= 20 and srv.snapshot_stats()["log_suppressed"] == 60 - len(lines)


# --------------------------------------------------------------------------- non-finite output
def test_audio_whose_features_overflow_is_refused_1007_and_others_go_on():
    huge = np.tile(np.float32([3e38, -3e38]), 800)  # finite samples; their power spectrum overflows float32
    x = _tone(1.0)

    async def main():
        async with serving() as srv:
            good = asyncio.create_task(stream_audio(srv.url, x, 16000, chunk_seconds=0.02))
            err = await _expect_error(srv.url, [_start(), huge.tobytes(), huge.tobytes()], "overflow")
            c = await good
            await until(lambda: srv.open_streams == 0, "streams freed")
            return srv, err, c

    srv, err, c = run(main())
    assert "scale the samples" in err["message"] and err["close"] == 1007
    assert dict(srv.stats["errors"]) == {"overflow": 1}
    assert _err(c.frames(), _offline_core(x, 16000), "peak") <= BOUNDS["stream-core"][1]
    with pytest.warns(RuntimeWarning):  # the library, offline: a warning (and the non-finite values)
        supermel.melspectrogram(y=huge, **CORE)


# --------------------------------------------------------------------------- issue 18, items 4 and 12 (through the real executable)
def _supermel() -> list:
    exe = shutil.which("supermel")
    return [exe] if exe else [sys.executable, "-m", "supermel"]


def test_serve_without_the_extra_names_the_module_and_the_install_command(tmp_path):
    fake = tmp_path / "no-websockets" / "websockets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'websockets'\", name='websockets')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT / "src")])}
    proc = subprocess.run([*_supermel(), "serve", "--port", "0"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "None" not in proc.stderr and "'websockets'" in proc.stderr and "pip install" in proc.stderr and "supermel[serve]" in proc.stderr, proc.stderr


def test_serve_says_listening_once_and_serves_no_404_favicon():
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([*_supermel(), "serve", "--port", "0", "--sr", "16000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "access:" in line:
                break
        port = int(lines[0].split("ws://127.0.0.1:")[1].split("/")[0])
        assert _http(port, "/favicon.ico")[0] == 204
        assert 'rel="icon" href="data:image/svg+xml' in _http(port, "/")[1].decode()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines) + rest
    assert text.count("listening on") == 1, text
    assert "no token (loopback only)" in text and proc.returncode == 0


def test_docs_document_access_control_and_the_new_codes():
    doc = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    for word in ("--token", "SUPERMEL_TOKEN", "#token=", "--allow-origin", "--allow-host", "--certfile", "--keyfile", "wss://", "--insecure",
                 "--idle-timeout", "--max-per-address", "--max-half-open", "--handshake-timeout", "fd_limit", "`idle`", "`overflow`", "429", "403", "401"):  # fmt: skip
        assert word in doc, word


# --------------------------------------------------------------------------- the page in chromium: token, favicon, colour bar
CHROMIUM = os.environ.get("SUPERMEL_CHROMIUM", "/usr/bin/chromium")


def test_the_page_with_a_token_in_chromium(tmp_path):
    """The token from the URL's fragment (then out of the address bar), or typed into the field the page shows on 401."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
        pytest.skip(f"needs {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    y, sr = supermel.audio.example_audio()
    wav = tmp_path / "mic.wav"
    soundfile.write(wav, np.stack([y, y], axis=1), sr, subtype="PCM_16")
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
             "--autoplay-policy=no-user-gesture-required", "--no-sandbox"]  # fmt: skip
    with ServerThread(Server(core=CORE, port=0, token=TOKEN)) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        try:
            results = {}
            for how in ("fragment", "typed"):
                page = browser.new_page()
                missing: list = []
                page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
                page.goto(f"http://127.0.0.1:{srv.port}/" + (f"#token={TOKEN}" if how == "fragment" else ""))
                if how == "typed":
                    page.wait_for_selector("#token:not([hidden])", timeout=20000)
                    page.fill("#token", TOKEN)
                else:
                    page.wait_for_function("window.supermel.hello !== null", timeout=20000)
                ticks = page.evaluate("window.supermel.colourTicks")  # before Start
                page.click("#start")
                page.wait_for_function("window.supermel.frames >= 50 || window.supermel.error !== null", timeout=60000)
                page.click("#stop")
                page.wait_for_function("window.supermel.state === 'closed'", timeout=30000)
                results[how] = dict(ticks=ticks, url=page.url, missing=missing, error=page.evaluate("window.supermel.error"),
                                    end=page.evaluate("window.supermel.end"))  # fmt: skip
                page.close()
        finally:
            browser.close()
    for how, r in results.items():
        assert r["error"] is None and r["end"]["frames"] > 0, (how, r)
        assert r["ticks"] == ["0 dB", "-20", "-40", "-60", "-80"], (how, r["ticks"])
        assert TOKEN not in r["url"] and r["missing"] == [], (how, r)
    assert srv.stats["refused"]["token"] >= 1  # the typed case's first /hello


# --------------------------------------------------------------------------- the attack benchmark, short
def test_the_attack_benchmark_short_run(tmp_path):
    """`benchmarks/serve.py --attack` for a few seconds with tens of sockets: honest clients lose nothing, every attacker gets its code."""
    out, md = tmp_path / "attack.json", tmp_path / "B.md"
    md.write_text("# B\n\n## Live serving (supermel serve)\n\nold\n", encoding="utf-8")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serve.py"), "--attack", "--seconds", "3", "--honest", "4", "--half-open", "30",
           "--idle", "40", "--churn-rate", "20", "--idle-timeout", "1", "--json", str(out), "--markdown-file", str(md)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text(encoding="utf-8"))
    assert (r["lost"], r["errors"], r["exact"]) == (0, {}, 4) and r["chunks"] == 4 * 150
    att = r["attackers"]
    assert att["idle"].get("1008 idle", 0) >= 40 and set(att["idle"]) <= {"1008 idle", "still open at the end"}, att["idle"]
    assert set(att["half_open"]) <= {"reset", "eof", "still open at the end"} and att["half_open"].get("answered") is None, att["half_open"]
    assert att["churn"].get("1000 (the attacker closed)", 0) >= 20 and set(att["churn"]) == {"1000 (the attacker closed)"}, att["churn"]
    assert r["server"]["errors"].get("idle", 0) >= 40 and r["server"]["fd_limit"] > 0
    text = md.read_text(encoding="utf-8")
    assert "\n\nold\n" in text and "## Live serving under attack (supermel serve)" in text and "| honest p99 round trip |" in text


def test_half_open_flood_at_a_low_descriptor_limit_never_exhausts_the_server():
    """`supermel serve` under a hard limit of 256 descriptors, 300 connections that never send a request: the bound keeps
    descriptors free (no EMFILE), an honest client streams, /stats reports the limit."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 256))  # the server raises its soft limit to this hard one

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [*_supermel(), "serve", "--port", "0", "--sr", "16000", "--max-half-open", "64", "--handshake-timeout", "30"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=limit)
    socks = []
    try:
        line = proc.stdout.readline()
        port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))

        async def main():
            for _ in range(2000):  # until the server has accepted (and dropped) the flood: its counters, bounded
                stats = json.loads(_http(port, "/stats")[1])
                if stats["tcp_connections"] >= 300:
                    break
                await asyncio.sleep(0.01)
            c = await stream_audio(f"ws://127.0.0.1:{port}/", _tone(0.5), 16000)
            return stats, c

        stats, c = run(main(), timeout=120)
        final = json.loads(_http(port, "/stats")[1])
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert c.totals["frames"] == c.frame_count > 0
    assert (final["fd_limit"], final["fd_hard_limit"]) == (256, 256)
    assert final["half_open_dropped"] >= 300 - 64 - 2 and final["fds_open"] < 256 and stats["half_open"] <= 64
    assert "Too many open files" not in err and "out of system resource" not in err, err[-2000:]
