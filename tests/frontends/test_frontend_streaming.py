"""Streaming front ends equal their offline front ends, for every chunking: the contract
over all presets (any chunking, float64, multi-stream, reset, finalize, types,
latency, errors, CUDA graphs).

The reference is the offline ``supermel.frontend(name)(y)`` on the whole signal
(tested against its family's reference in test_<family>.py) and its pieces
(``post_local(mel(y))``), never the streaming code itself. Tolerances
(``F32``, ``F64``, ``F64_FFT``) and why these tests run torch's kernels on the
CPU (``torch_kernels``): _helpers.py. Family-specific streaming tests are in
the family files (test_wav2lip.py: ``Wav2LipChunker``; test_whisper.py;
test_kaldi.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel
from _helpers import F32, F64, F64_FFT, clip, close, random_cuts, stream_all
from conftest import SEED

pytestmark = pytest.mark.usefixtures("torch_kernels")  # every test here (_helpers.py docstring)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NAMES = tuple(supermel.frontends())
GLOBAL = tuple(n for n in NAMES if not supermel.frontend(n).frame_local)
LOCAL = tuple(n for n in NAMES if n not in GLOBAL)


def sr_of(fe) -> int:
    return int(fe.core.sr)


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


# =========================================================================== whole-input presets: finalize
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
