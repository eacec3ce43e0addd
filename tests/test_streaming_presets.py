"""Streaming front ends equal their offline front ends, for every chunking.

References, never the streaming code itself:

* the offline ``supermel.frontend(name)(y)`` on the whole signal (tested
  against openai-whisper, kaldi-native-fbank and the librosa expressions of the
  originals in tests/test_presets.py), and its pieces (``post_local(mel(y))``);
* ``supermel.wav2lip_mel_chunks`` (tested against Wav2Lip's inference loop in
  tests/test_presets.py) and, for the window starts, Wav2Lip's rule written out
  in integer arithmetic here.

Tolerances. In float64 (``dtype=torch.float64``) streaming and offline run the
same arithmetic on the same samples, only in different block shapes (FFT batch
and mel GEMM sizes), so they agree to a few float64 ulps of the feature values
(observed <= 4e-15 on features of magnitude <= 20): ``F64`` = rtol 1e-10, atol
1e-10. In float32 the same block-shape effect is a few float32 ulps of the mel
energies (observed <= 2e-6 on log features of magnitude <= 20), but in the log
domain a band 80 dB below its frame's loudest one carries the FFT's rounding
relative to the loud part, so we allow ``F32`` = rtol 1e-5, atol 1e-4. Any real
streaming error (a lost pre-emphasis predecessor, a shifted frame, a wrong
edge) changes features by 1e-2 or more, and the float64 checks would see
anything above 1e-10.

The CPU steady state (the ring step, or the static step of a declared
``chunk_size``) computes its FFT with numpy (pocketfft, as librosa), the
offline path with torch: two FFTs that round differently. In float64 that
leaves ~1e-16 of a frame's peak in every band, which the log of a band 120 dB
below the peak turns into up to ~3e-9 (observed): ``F64_FFT`` = rtol 1e-10,
atol 1e-7, still five orders below any real streaming error. So the tests of
this file run the streaming machinery with torch's kernels (``torch_kernels``,
autouse: the CUDA step's code and the offline FFT), and
``test_float64_streams_equal_offline`` runs both executors; the numpy kernels
are also held to the core's tolerance against librosa in tests/test_streaming.py.
"""

from __future__ import annotations

import fractions
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel
from conftest import SEED

F32 = dict(rtol=1e-5, atol=1e-4)
F64 = dict(rtol=1e-10, atol=1e-10)
F64_FFT = dict(rtol=1e-10, atol=1e-7)


@pytest.fixture(autouse=True)
def torch_kernels(monkeypatch):
    """The streams of this file run torch's kernels on the CPU (see the module docstring)."""
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", "torch")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NAMES = tuple(supermel.frontends())
GLOBAL = tuple(n for n in NAMES if not supermel.frontend(n).frame_local)
LOCAL = tuple(n for n in NAMES if n not in GLOBAL)
#: chunk sizes drawn for random chunkings: empty, 1-sample, odd and large chunks
SIZES = (0, 1, 2, 7, 160, 333, 1024, 2999, 4096)


def sr_of(fe) -> int:
    return int(fe.core.sr)


def clip(speech_at, sr: int, seconds: float, offset: float = 0.5, dtype=np.float32) -> np.ndarray:
    """``seconds`` of the speech clip at ``sr``, from ``offset`` s in."""
    y = speech_at(sr)
    a = int(offset * sr)
    return np.ascontiguousarray(y[a : a + int(seconds * sr)], dtype=dtype)


def random_cuts(n: int, rng: np.random.Generator, sizes=SIZES) -> list:
    """Sorted cut points covering [0, n] with chunk sizes drawn from ``sizes`` (zeros included)."""
    cuts, i = [], 0
    while i < n:
        i = min(n, i + int(rng.choice(sizes)))
        cuts.append(i)
    return cuts


def stream_all(stream, y: np.ndarray, cuts, axis: int):
    """Push ``y`` cut at ``cuts``, then flush; concatenate along ``axis``."""
    parts, i = [], 0
    for c in list(cuts):
        parts.append(stream.push(y[..., i:c]))
        i = c
    assert i == y.shape[-1]
    parts.append(stream.flush())
    return np.concatenate(parts, axis=axis)


def close(got, want, tol, what=""):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != offline {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != offline {want.dtype}"
    np.testing.assert_allclose(got, want, err_msg=what, **tol)


# =========================================================================== frame-local presets
@pytest.mark.parametrize("name", LOCAL)
def test_frame_local_preset_streams_equal_offline(name, speech_at):
    fe = supermel.frontend(name)
    assert fe.frame_local
    y = clip(speech_at, sr_of(fe), 2.0)
    want = fe(y)
    rng = np.random.default_rng(SEED)
    # random chunks with empty and 1-sample pushes
    got = stream_all(fe.streaming(), y, random_cuts(len(y), rng), fe.time_axis)
    close(got, want, F32, f"{name} random chunks")
    # a run of 1-sample pushes across the start (left padding / Kaldi's left reflection)
    cuts = list(range(1, 1200)) + [1199 + c for c in random_cuts(len(y) - 1199, rng, (4096,))]
    got = stream_all(fe.streaming(), y, cuts, fe.time_axis)
    close(got, want, F32, f"{name} 1-sample pushes")
    # fixed chunks, a multiple of the hop (declared: the static steady-state step)
    hop = fe.streaming().hop_length
    stream = fe.streaming(chunk_size=4 * hop)
    got = stream_all(stream, y, list(range(4 * hop, len(y), 4 * hop)) + [len(y)], fe.time_axis)
    close(got, want, F32, f"{name} chunk_size=4 hops")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fixed", [False, True], ids=["random-chunks", "chunk_size"])
@pytest.mark.parametrize("executor", ["numpy", "torch"])
def test_float64_streams_equal_offline(name, fixed, executor, speech_at, monkeypatch):
    """In float64 any streaming error shows above 1e-10 (1e-7 with numpy's FFT in
    the CPU steady state, the default, against the offline path's torch FFT)."""
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", executor)
    fe = supermel.frontend(name, dtype=torch.float64)
    y = clip(speech_at, sr_of(fe), 1.5, offset=3.0, dtype=np.float64)
    want = fe(y)
    if fixed:
        hop = fe.streaming().hop_length
        stream = fe.streaming(chunk_size=3 * hop)
        cuts = list(range(3 * hop, len(y), 3 * hop)) + [len(y)]
    else:
        stream = fe.streaming()
        cuts = random_cuts(len(y), np.random.default_rng(SEED + 1))
    got = stream_all(stream, y, cuts, fe.time_axis)
    if not fe.frame_local:
        got = stream.finalize(got)
    close(got, want, F64_FFT if executor == "numpy" else F64, name)


_lengths = st.integers(1, 4000)
_chunkings = st.lists(st.sampled_from([0, 1, 2, 3, 80, 159, 160, 161, 199, 200, 401, 1000]), max_size=40)


@pytest.mark.parametrize("name", ["wav2lip", "kaldi-fbank", "lhotse-fbank"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(n=_lengths, offset=st.integers(0, 100_000), sizes=_chunkings)
def test_any_length_and_chunking_equals_offline(name, n, offset, sizes, speech_at):
    """Property: any length (shorter than a window, one sample, ...), any chunking, equals offline."""
    fe = supermel.frontend(name, dtype=torch.float64)
    y = speech_at(16000)[offset : offset + n].astype(np.float64)
    cuts = [c for c in np.cumsum(sizes) if c < n] + [n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer samples than n_fft: both warn
        want = fe(y)
        got = stream_all(fe.streaming(), y, cuts, fe.time_axis)
    close(got, want, F64, f"{name} n={n}")


def test_kaldi_stream_memory_is_bounded(speech_at):
    fe = supermel.frontend("lhotse-fbank")
    stream = fe.streaming()
    y = speech_at(16000)
    for _ in range(3):  # 36 s
        for i in range(0, len(y), 1600):
            stream.push(y[i : i + 1600])
    held = max(g.buf.shape[-1] for g in stream._engine.groups)
    assert held <= 400 + 1600, held  # a frame length plus a chunk


# =========================================================================== multi-stream
@pytest.mark.parametrize("name", ["wav2lip", "speecht5", "kaldi-fbank", "lhotse-fbank", "whisper-80", "nemo-80"])
def test_multistream_each_equals_its_offline(name, speech_at):
    fe = supermel.frontend(name)
    sr = sr_of(fe)
    Y = np.stack([clip(speech_at, sr, 1.2, offset=o) for o in (0.5, 2.0, 4.0)])
    stream = fe.streaming(num_streams=3)
    got = stream_all(stream, Y, random_cuts(Y.shape[-1], np.random.default_rng(SEED + 2)), fe.time_axis)
    assert got.shape[0] == 3
    if not fe.frame_local:
        got = stream.finalize(got)
    for i in range(3):
        close(got[i], fe(Y[i]), F32, f"{name} stream {i}")


@pytest.mark.parametrize("name", ["wav2lip-reflect", "nemo-80", "lhotse-fbank", "whisper-80"])
def test_reset_one_stream_restarts_it(name, speech_at):
    fe = supermel.frontend(name, dtype=torch.float64)
    Y = np.stack([clip(speech_at, 16000, 2.0, offset=o, dtype=np.float64) for o in (3.0, 0.5, 6.0)])
    assert Y[1, 4320] != 0  # stream 1's last sample before its reset must not act as a predecessor
    stream = fe.streaming(num_streams=3)
    parts = [[], [], []]

    def add(out):
        rows = out if isinstance(out, list) else list(out)
        for i, r in enumerate(rows):
            parts[i].append(r)

    add(stream.push(Y[:, :4321]))
    stream.reset(1)  # stream 1 restarts with a new signal: Y[1] from sample 0
    parts[1] = []
    assert stream.samples_received.tolist() == [4321, 0, 4321]
    pos = [4321, 0, 4321]
    lists = 0
    for c in (1, 333, 0, 4000, 7, 2345):
        out = stream.push(np.stack([Y[i, pos[i] : pos[i] + c] for i in range(3)]))
        lists += isinstance(out, list)
        add(out)
        pos = [p + c for p in pos]
    assert lists > 0  # the streams complete different numbers of frames
    add(stream.flush())
    cat = [np.concatenate(p, axis=fe.time_axis) for p in parts]
    if not fe.frame_local:
        cat = stream.finalize(cat)
    for i in range(3):
        close(cat[i], fe(Y[i, : pos[i]]), F64, f"{name} stream {i}")
    assert stream.frame_count.tolist() == [fe.num_frames(p) for p in pos]


# =========================================================================== Whisper, NeMo, AST, SeamlessM4T, FunASR
@pytest.mark.parametrize(
    "name, overrides",
    [
        ("whisper-80", {}),
        ("whisper-128", {}),
        ("whisper-80", {"pad_or_trim": True}),
        ("whisper-80", {"pad_or_trim": True, "n_samples": 16000}),  # input longer than n_samples: cut
        ("whisper-80", {"padding": 480}),
        ("whisper-80", {"hop_length": 400}),  # pad < hop: the dropped frame is ready before flush
        ("nemo-80", {}),
        ("nemo-128", {}),
        ("nemo-80", {"variant": "2.4"}),
        ("nemo-80", {"normalize": None}),
        ("nemo-80", {"variant": "2.4", "normalize": None}),
        ("nemo-80", {"pad_to": 16}),
        ("ast", {}),  # padded to 1024 frames
        ("ast", {"max_length": 100}),  # cut
        ("seamless-m4t", {}),
        ("seamless-m4t", {"stride": 3, "do_normalize_per_mel_bins": False}),
        ("funasr", {}),
        ("funasr", {"lfr_m": 5, "lfr_n": 3}),
    ],
)
@pytest.mark.filterwarnings("ignore:Empty filters")  # AST: 128 bins on a 512-point FFT
def test_whole_input_presets_finalize_equals_offline(name, overrides, speech_at):
    fe = supermel.frontend(name, **overrides)
    y = clip(speech_at, 16000, 27450 / 16000)  # 27450 % 400 >= 200: with hop 400 the last frame is complete before the end
    want = fe(y)
    stream = fe.streaming()
    got = stream_all(stream, y, random_cuts(len(y), np.random.default_rng(SEED + 3)), fe.time_axis)
    # push/flush return the post_local frames (Whisper: log10 mel; NeMo: ln(mel + guard)), without dropped frames
    local = fe.post_local(fe.mel(torch.from_numpy(y)[None]))[0].numpy()
    close(got, local, F32, f"{name} {overrides} post_local frames")
    close(stream.finalize(got), want, F32, f"{name} {overrides} finalize")
    # tensors in the finalize call stay tensors
    assert isinstance(stream.finalize(torch.from_numpy(got)), torch.Tensor)


def test_whisper_batch_max_scope_across_streams(speech_at):
    fe = supermel.frontend("whisper-80", max_scope="batch")
    Y = np.stack([clip(speech_at, 16000, 1.0, offset=o) for o in (0.5, 5.0)])
    Y[1] *= 0.01  # the quiet stream is floored at the loud one's maximum
    stream = fe.streaming(num_streams=2)
    got = stream.finalize(stream_all(stream, Y, random_cuts(Y.shape[-1], np.random.default_rng(SEED)), -1))
    close(got, fe(Y), F32, "batch max")


def test_finalize_errors(speech_at):
    fe = supermel.frontend("nemo-80")
    y = clip(speech_at, 16000, 0.5)
    stream = fe.streaming()
    part = stream.push(y)
    with pytest.raises(supermel.ParameterError, match="flush"):
        stream.finalize(part)
    frames = np.concatenate([part, stream.flush()], axis=-1)
    with pytest.raises(supermel.ParameterError, match="frames"):
        stream.finalize(frames[:, :-1])
    short = fe.streaming()
    short.push(y[:200])
    with pytest.warns(UserWarning, match="too large"):  # as offline: fewer samples than n_fft
        frames = short.flush()
    with pytest.raises(supermel.ParameterError, match="2 valid frames"):
        short.finalize(frames)


# =========================================================================== contract
def test_types_dtypes_and_counters(speech_at):
    fe = supermel.frontend("wav2lip")
    y = clip(speech_at, 16000, 0.5)
    stream = fe.streaming()
    assert isinstance(stream, supermel.StreamingFrontend)
    out = stream.push(y[:1000])
    # frame t (window [200 t - 400, 200 t + 400)) is complete for t <= 3
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (80, 4)
    assert stream.frame_count == 4 and stream.samples_received == 1000
    out = stream.push(torch.from_numpy(y[1000:2000]))
    assert isinstance(out, torch.Tensor) and out.shape == (80, 5)
    # float64 numpy into a float32 front end: float32 out, as offline
    out = stream.push(y[2000:3000].astype(np.float64))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    stream.flush()
    assert stream.frame_count == fe.num_frames(3000)
    stream.reset()
    assert stream.frame_count == 0 and stream.samples_received == 0
    close(stream_all(stream, y, [len(y)], -1), fe(y), F32, "after reset")
    k = supermel.frontend("kaldi-fbank").streaming()
    assert k.push(np.zeros(399, np.float32)).shape == (0, 80)
    assert k.push(np.zeros(1, np.float32)).shape == (1, 80)  # time-major


@pytest.mark.parametrize("name", ["wav2lip", "whisper-80", "hifigan-22k", "speecht5", "kaldi-fbank", "lhotse-fbank"])
def test_latency_samples_is_the_look_ahead(name, rng):
    fe = supermel.frontend(name)
    stream = fe.streaming()
    sr = sr_of(fe)
    y = (0.1 * rng.standard_normal(sr // 5)).astype(np.float32)
    arrival = []
    for j in range(len(y)):  # one sample per push: frame t arrives with sample ...
        arrival += [j] * stream.push(y[j : j + 1]).shape[fe.time_axis]
    H, L = stream.hop_length, stream.latency_samples
    for t, j in enumerate(arrival[1:], start=1):  # frame 0 of reflect padding waits for pad + 1 samples
        assert j == t * H + L - 1, (name, t, j)
    assert stream.latency_ms == pytest.approx(1000 * L / sr)


def test_errors_leave_the_stream_unchanged(speech_at):
    fe = supermel.frontend("wav2lip")
    y = clip(speech_at, 16000, 0.5)
    stream = fe.streaming()
    parts = [stream.push(y[:1234])]
    bad = y[1234:2000].copy()
    bad[5] = np.nan
    with pytest.raises(supermel.ParameterError, match="not finite"):
        stream.push(bad)
    with pytest.raises(supermel.ParameterError, match="shape"):
        stream.push(y[None, 1234:2000])
    with pytest.raises(supermel.ParameterError, match="floating point"):
        stream.push((y[1234:2000] * 32767).astype(np.int16))
    parts += [stream.push(y[1234:]), stream.flush()]
    close(np.concatenate(parts, axis=-1), fe(y), F32, "after refused chunks")
    with pytest.raises(supermel.ParameterError, match="after flush"):
        stream.push(y[:10])
    with pytest.raises(supermel.ParameterError, match="twice"):
        stream.flush()
    with pytest.raises(supermel.ParameterError, match="empty"):
        fe.streaming().flush()
    multi = supermel.frontend("kaldi-fbank").streaming(num_streams=2)
    with pytest.raises(supermel.ParameterError, match=r"\(2, n\)"):
        multi.push(np.zeros((3, 10), np.float32))
    with pytest.raises(supermel.ParameterError, match="stream index"):
        multi.reset(2)
    multi.push(np.zeros((2, 10), np.float32))
    multi.reset(1)
    with pytest.raises(supermel.ParameterError, match=r"stream\(s\) \[1\]"):
        multi.flush()
    with pytest.raises(supermel.ParameterError, match="pad_or_trim"):
        supermel.frontend("whisper-80", pad_or_trim=True).streaming(num_streams=2).reset(0)
    with pytest.raises(supermel.ParameterError, match="cuda_graph"):
        supermel.frontend("kaldi-fbank").streaming(cuda_graph=True)
    with pytest.raises(supermel.ParameterError, match="frame shift"):
        supermel.frontend("kaldi-fbank").streaming(chunk_size=100)
    with pytest.raises(supermel.ParameterError, match="multiple of hop_length"):
        supermel.frontend("wav2lip").streaming(chunk_size=100)
    with pytest.raises(supermel.ParameterError, match="num_streams"):
        supermel.frontend("wav2lip").streaming(num_streams=0)


@CUDA
@pytest.mark.parametrize("name", ["wav2lip", "speecht5"])
def test_cuda_graph_stream_equals_offline(name, speech_at):
    fe = supermel.frontend(name, device="cuda")
    y = clip(speech_at, sr_of(fe), 2.0)
    hop = fe.core.spectrogram.hop_length
    stream = fe.streaming(chunk_size=8 * hop, cuda_graph=True)
    parts = [stream.push(torch.from_numpy(y[i : i + 8 * hop]).cuda()).clone() for i in range(0, len(y), 8 * hop)]
    parts.append(stream.flush())
    got = torch.cat(parts, dim=fe.time_axis).cpu().numpy()
    close(got, fe(y), F32, name)


# =========================================================================== Wav2Lip windows
def starts_by_rule(n_cols: int, num: int, den: int) -> list:
    """Wav2Lip inference.py's loop for fps = num/den in integer arithmetic: floor(80 i den / num), then T - 16."""
    out, i = [], 0
    while (80 * i * den) // num + 16 <= n_cols:
        out.append((80 * i * den) // num)
        i += 1
    return out + [n_cols - 16]


FPS = [(25, 25, 1), (30, 30, 1), (29.97, 2997, 100), (fractions.Fraction(30000, 1001), 30000, 1001)]


@pytest.mark.parametrize("fps, num, den", FPS)
def test_chunker_on_mel_columns(fps, num, den):
    rng = np.random.default_rng(SEED)
    mel = rng.standard_normal((80, 220)).astype(np.float32)
    for n_cols in list(range(16, 60)) + [219, 220]:  # every way the last window can clamp
        m = mel[:, :n_cols]
        chunker = supermel.Wav2LipChunker(fps)
        parts, k = [], 0
        for c in random_cuts(n_cols, rng, (0, 1, 2, 5, 16, 17)):
            parts.append(chunker.push(m[:, k:c]))
            k = c
            # as soon as the columns exist: every regular window within the first k columns
            assert chunker.window_count == len(starts_by_rule(k, num, den)) - 1 if k >= 16 else chunker.window_count == 0
        parts.append(chunker.flush())
        got = np.concatenate(parts, axis=0)
        want = supermel.wav2lip_mel_chunks(m, fps)
        assert got.shape == want.shape and np.array_equal(got, want), (fps, n_cols)
        assert [int(np.flatnonzero((m[0] == w[0, 0]))[0]) for w in got] == starts_by_rule(n_cols, num, den)


@pytest.mark.parametrize("fps, num, den", FPS)
@pytest.mark.parametrize("n", [3000, 3199, 3200, 16123, 24000])
def test_chunker_on_audio_equals_offline_windows(fps, num, den, n, speech_at):
    fe = supermel.frontend("wav2lip")
    y = clip(speech_at, 16000, n / 16000)
    want = supermel.wav2lip_mel_chunks(fe(y), fps)
    chunker = supermel.Wav2LipChunker(fps, frontend="wav2lip")
    got = np.concatenate([chunker.push(y[i : i + 640]) for i in range(0, n, 640)] + [chunker.flush()], axis=0)
    close(got, want, F32, f"fps={fps} n={n}")
    assert len(got) == len(starts_by_rule(1 + n // 200, num, den)) == chunker.window_count


def test_chunker_latency_is_212_5_ms(speech_at):
    chunker = supermel.Wav2LipChunker(25, frontend="wav2lip")
    assert chunker.latency_samples == 3400 and chunker.latency_ms == 212.5 and chunker.latency_columns == 16
    assert supermel.Wav2LipChunker(30).latency_ms == 212.5
    y = clip(speech_at, 16000, 1.0)
    arrival = []
    for j in range(0, len(y), 40):  # 2.5 ms pushes
        arrival += [j + 39] * chunker.push(y[j : j + 40]).shape[0]
    for i, j in enumerate(arrival):
        need = 200 * ((80 * i) // 25) + chunker.latency_samples - 1  # last sample window i reads
        assert j == need + (-need - 1) % 40, (i, j, need)  # returned by the push that delivers it
        assert need - 16000 * i / 25 <= 3400  # at most 212.5 ms after the frame's timestamp


def test_chunker_multistream_and_tensors(speech_at):
    fe = supermel.frontend("wav2lip")
    Y = np.stack([clip(speech_at, 16000, 1.0, offset=o) for o in (0.5, 4.0)])
    chunker = supermel.Wav2LipChunker(30, frontend=fe, num_streams=2)
    got = np.concatenate([chunker.push(Y[:, i : i + 1000]) for i in range(0, Y.shape[-1], 1000)] + [chunker.flush()], axis=1)
    close(got, supermel.wav2lip_mel_chunks(fe(Y), 30), F32, "two streams")
    mel = torch.from_numpy(fe(Y[0]))
    chunker = supermel.Wav2LipChunker(25)
    out = [chunker.push(mel[:, :40]), chunker.push(mel[:, 40:]), chunker.flush()]
    assert all(isinstance(o, torch.Tensor) for o in out)
    assert torch.equal(torch.cat(out), supermel.wav2lip_mel_chunks(mel, 25))


def test_chunker_errors():
    chunker = supermel.Wav2LipChunker(25)
    chunker.push(np.zeros((80, 15), np.float32))
    with pytest.raises(supermel.ParameterError, match="15 columns"):
        chunker.flush()
    with pytest.raises(supermel.ParameterError, match="rows"):
        chunker.push(np.zeros((81, 5), np.float32))
    with pytest.raises(supermel.ParameterError, match="shape"):
        chunker.push(np.zeros(5, np.float32))
    chunker.push(np.zeros((80, 1), np.float32))
    assert chunker.flush().shape == (1, 80, 16)
    with pytest.raises(supermel.ParameterError, match="after flush"):
        chunker.push(np.zeros((80, 1), np.float32))
    chunker.reset()
    assert chunker.push(np.zeros((80, 16), np.float32)).shape == (1, 80, 16)
    with pytest.raises(supermel.ParameterError, match="fps=0"):
        supermel.Wav2LipChunker(0)
    with pytest.raises(supermel.ParameterError, match="Wav2Lip"):
        supermel.Wav2LipChunker(25, frontend="whisper-80")
    audio = supermel.Wav2LipChunker(25, frontend="wav2lip")
    bad = np.zeros(100, np.float32)
    bad[3] = np.inf
    with pytest.raises(supermel.ParameterError, match="not finite"):
        audio.push(bad)


@pytest.mark.parametrize("overrides", [dict(use_energy=True), dict(use_energy=True, snip_edges=False, raw_energy=False, htk_compat=True)])
def test_kaldi_energy_streams_equal_offline(overrides, speech_at):
    fe = supermel.frontend("kaldi-fbank", **overrides)
    y = clip(speech_at, 16000, 1.5)
    want = fe(y)
    assert want.shape[-1] == 81
    got = stream_all(fe.streaming(), y, random_cuts(len(y), np.random.default_rng(SEED + 5)), fe.time_axis)
    close(got, want, F32, f"kaldi-fbank {overrides}")
