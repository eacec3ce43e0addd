"""The live page in a real browser: Debian's chromium driven by playwright, a fake microphone playing a file.

The fake microphone (``--use-file-for-fake-audio-capture``) plays the bundled speech at
44.1 kHz stereo; the page resamples it to the server's rate in its AudioWorklet and
streams it. Checks: the audio the server received matches the file (normalised
cross-correlation >= 0.99 after fractional-sample alignment), the frames the page
received are the frames the server sent, and equal the offline features of that
audio (docs/exactness.md's bound); no frame dropped; the canvas is not blank. A
screenshot is saved (its path is printed; SUPERMEL_UPDATE_SCREENSHOT=1 also copies it to docs/serve-page.png).

Needs ``/usr/bin/chromium`` (``apt-get install chromium``: ``.ci/run`` installs it) and the
``playwright`` Python package; never ``playwright install`` (it downloads browsers, and its
headless shell refuses real getUserMedia). Without chromium the browser test is skipped with the
install command, unless the environment variable ``CI`` is set: then it fails (``.ci/run`` sets
``CI=1``), by the rule of ``conftest.require_program``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

import supermel
from conftest import require_program
from supermel.serve import Server, ServerThread, resample_offline
from test_exactness import BOUNDS, _err

CHROMIUM = os.environ.get("SUPERMEL_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
CORE = dict(sr=16000, n_fft=512, hop_length=160, n_mels=80, fmin=20.0, fmax=8000.0)
FILE_RATE = 44100


def aligned_ncc(seg: np.ndarray, ref: np.ndarray, *, margin: int = 64) -> tuple:
    """Best normalised cross-correlation of ``seg`` with a window of ``ref``, at a fractional lag.

    The integer lag comes from an FFT cross-correlation; the fraction (in [-1, 1], steps of
    1/200 sample, then 1/4000 around the best) from shifting the matching window of ``ref``
    by a linear phase in the frequency domain. Returns ``(ncc, lag in samples)``.
    """
    seg = seg.astype(np.float64)
    ref = ref.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(ref) + len(seg))))
    xc = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(seg, n)), n)[: len(ref) - len(seg) + 1]
    lag = int(np.argmax(xc))
    lo = max(0, lag - margin)
    win = ref[lo : lag + len(seg) + margin]
    spec = np.fft.rfft(win)
    freqs = np.fft.rfftfreq(len(win))
    off = lag - lo

    def ncc(d: float) -> float:
        shifted = np.fft.irfft(spec * np.exp(2j * np.pi * freqs * d), len(win))[off : off + len(seg)]
        return float(seg @ shifted / np.sqrt((seg @ seg) * (shifted @ shifted)))

    coarse = np.linspace(-1.0, 1.0, 401)
    best = coarse[int(np.argmax([ncc(d) for d in coarse]))]
    fine = np.linspace(best - 0.005, best + 0.005, 41)
    vals = [ncc(d) for d in fine]
    i = int(np.argmax(vals))
    return vals[i], lag + fine[i]


def require_chromium() -> None:
    """Skip (fail under CI) without Debian's chromium; never `playwright install` (it downloads browsers)."""
    require_program(CHROMIUM, install="apt-get install chromium", why="the live page's browser test drives Debian's chromium")


def test_alignment_helper_can_fail():
    """The NCC check distinguishes a fractionally shifted copy (high) from other audio (low)."""
    y, sr = supermel.audio.example_audio()
    up = resample_offline(y[: 4 * sr], sr, 8 * sr)
    shifted = resample_offline(up[3:], 8 * sr, sr)  # the speech, 3/8 sample later
    ncc, lag = aligned_ncc(shifted[8000:24000], y[: 4 * sr])
    assert ncc > 0.999 and abs(lag - (8000 + 3 / 8)) < 0.05
    other, _ = aligned_ncc(y[40000:56000], y[: 2 * sr])  # not in the reference
    assert other < 0.9


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory):
    """The bundled speech at 44.1 kHz, stereo, 16-bit PCM: what chromium's fake microphone plays."""
    y, sr = supermel.audio.example_audio()
    y44 = resample_offline(y, sr, FILE_RATE)
    path = tmp_path_factory.mktemp("mic") / "speech-44k1-stereo.wav"
    soundfile.write(path, np.stack([y44, y44], axis=1), FILE_RATE, subtype="PCM_16")
    played, _ = soundfile.read(path, dtype="float32")
    return path, played[:, 0].copy()


def _save_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def test_live_page_in_chromium(fake_mic, tmp_path):
    require_chromium()
    from matplotlib import image as mpimg
    from playwright.sync_api import sync_playwright

    wav, played = fake_mic
    server = Server(core=CORE, port=0, record=True)
    flags = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox",
    ]
    shot = tmp_path / "serve-page.png"
    with ServerThread(server) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1120, "height": 780}, device_scale_factor=1)
            logs: list = []
            page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
            page.goto(f"http://127.0.0.1:{srv.port}/?keep=1")
            page.wait_for_function("window.supermel && window.supermel.hello !== null", timeout=20000)
            page.click("#start")
            try:
                page.wait_for_function("window.supermel.frames >= 550 || window.supermel.error !== null", timeout=60000)
            except Exception:
                raise AssertionError(f"no frames: state {page.evaluate('window.supermel.state')}, console: {logs}") from None
            assert page.evaluate("window.supermel.error") is None, (page.evaluate("window.supermel.error"), logs)
            page.wait_for_timeout(300)  # let the figures refresh (the display, not an assertion)
            png = page.screenshot(full_page=True)
            canvas_png = page.locator("#spec").screenshot()
            rtt_text = page.inner_text("#rtt")
            page.click("#stop")
            page.wait_for_function("window.supermel.state === 'closed'", timeout=30000)
            state = page.evaluate(
                "({end: window.supermel.end, frames: window.supermel.frames, dropped: window.supermel.dropped,"
                " reordered: window.supermel.reordered, rate: window.supermel.contextRate, kept: window.supermel.kept, error: window.supermel.error})"
            )
        finally:
            browser.close()
    shot.write_bytes(png)
    print(f"\nscreenshot of the live page: {shot}")
    if os.environ.get("SUPERMEL_UPDATE_SCREENSHOT"):  # refresh the README's picture on purpose only
        _save_atomic(png, ROOT / "docs" / "serve-page.png")

    # the page: streamed, figures shown, nothing dropped, the server's totals match
    assert state["error"] is None, (state["error"], logs)
    assert rtt_text.endswith("ms"), rtt_text
    assert state["dropped"] == 0 and state["reordered"] == 0
    end = state["end"]
    assert end is not None and end["frames"] == state["frames"] and end["sample_rate"] == CORE["sr"]

    # the canvas is not blank: the plot area's pixels vary
    img = mpimg.imread(io.BytesIO(canvas_png))[..., :3]
    plot = img[int(0.1 * img.shape[0]) : int(0.8 * img.shape[0]), int(0.1 * img.shape[1]) : int(0.85 * img.shape[1])]
    assert plot.std() > 0.05 and len(np.unique(plot.reshape(-1, 3), axis=0)) > 50, plot.std()

    # what the server received: the file's audio, resampled by the worklet
    recs = [r for r in server.recordings.values() if r.end is not None]
    assert len(recs) == 1
    rec = recs[0]
    audio = rec.audio
    assert rec.sample_rate == CORE["sr"] and len(audio) == end["samples"]
    ref = resample_offline(played, FILE_RATE, CORE["sr"])
    sr = CORE["sr"]
    seg = audio[int(0.5 * sr) : int(0.5 * sr) + 2 * sr]  # a steady-state stretch, past the start-up
    assert len(seg) == 2 * sr, f"only {len(audio) / sr:.2f} s of audio received"
    ncc, lag = aligned_ncc(seg, ref)
    print(f"received audio vs the file: normalised cross-correlation {ncc:.5f} at lag {lag:.3f} samples; context rate {state['rate']} Hz")
    assert ncc >= 0.99, (ncc, lag)

    # the frames: the page's = the server's = the offline features of the received audio
    kept = sorted(state["kept"], key=lambda b: b["index"])
    assert [b["index"] for b in kept] == list(np.cumsum([0] + [b["count"] for b in kept])[:-1])
    page_frames = np.concatenate([np.asarray(b["data"], np.float32).reshape(b["count"], b["bands"]) for b in kept]).T
    np.testing.assert_array_equal(page_frames, rec.frames)
    want = supermel.melspectrogram(y=audio, **CORE)
    assert page_frames.shape == want.shape
    metric, bound, _ = BOUNDS["stream-core"]
    assert _err(page_frames, want, metric) <= bound


def test_chromium_command_exists_for_ci():
    """.ci/run installs chromium with apt (guarded by `command -v chromium`), never with playwright."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    assert "command -v chromium >/dev/null 2>&1 || missing+=(chromium)" in lines
    assert 'apt-get update -qq && apt-get install -y -qq "${missing[@]}"' in lines  # the one apt step installs what is missing
    commands = [line.split("#", 1)[0] for line in text.splitlines()]
    assert not any("playwright install" in line for line in commands)
    require_chromium()
