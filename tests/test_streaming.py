"""Streaming equals offline: any chunking, any length, many streams, CUDA-graph step."""

from __future__ import annotations

import contextlib
import warnings

import librosa
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel
from supermel.streaming import static_step
from conftest import SEED

REF = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


#: The CPU steady-state step runs numpy kernels by default; "torch" runs the
#: kernels the CUDA step captures in graphs, so both are tested here.
EXECUTORS = ["numpy", "torch"]


@contextlib.contextmanager
def cpu_executor(name):
    old = supermel.streaming.CPU_EXECUTOR
    supermel.streaming.CPU_EXECUTOR = name
    try:
        yield
    finally:
        supermel.streaming.CPU_EXECUTOR = old


def stream_all(stream, y, cuts):
    """Push y cut at `cuts` (sorted sample indices), then flush; concatenate the frames."""
    parts, i = [], 0
    for c in list(cuts) + [y.shape[-1]]:
        parts.append(stream.push(y[..., i:c]))
        i = c
    parts.append(stream.flush())
    return np.concatenate(parts, axis=-1)


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# ----------------------------------------------------------------------------- properties
configs = st.fixed_dictionaries(
    {
        "n_fft": st.sampled_from([16, 17, 31, 32, 40]),
        "hop_length": st.integers(1, 44),
        "win_length": st.integers(1, 16),
        "center": st.booleans(),
        "pad_mode": st.sampled_from(["constant", "reflect", "symmetric", "edge", "linear_ramp"]),
        "power": st.sampled_from([1.0, 2.0, 1.5]),
    }
)


@st.composite
def audio_and_cuts(draw):
    n = draw(st.integers(1, 400))
    y = np.asarray(draw(st.lists(st.floats(-1, 1, width=64), min_size=n, max_size=n)), dtype=np.float64)
    sizes = draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 16, 17, 33, 100]), max_size=30))
    cuts = np.minimum(np.cumsum(sizes), n).astype(int)
    return y, cuts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, data=audio_and_cuts())
def test_any_chunking_equals_offline(cfg, data):
    y, cuts = data
    kw = dict(sr=8000, n_mels=6, **cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = supermel.melspectrogram(y=y, **kw)
        except supermel.ParameterError as exc:
            stream = supermel.StreamingMelSpectrogram(**kw)
            for c0, c1 in zip([0] + list(cuts), list(cuts) + [len(y)]):
                stream.push(y[c0:c1])
            with pytest.raises(supermel.ParameterError, match="too large" if "too large" in str(exc) else "empty"):
                stream.flush()
            return
        got = stream_all(supermel.StreamingMelSpectrogram(**kw), y, cuts)
    assert got.shape == expected.shape
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * max(1.0, float(np.abs(expected).max())))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2000),
    chunk_hops=st.integers(1, 3),
    pad_mode=st.sampled_from(["constant", "reflect"]),
    streams=st.sampled_from([None, 3]),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_fixed_chunks_static_step_equals_offline(executor, n, chunk_hops, pad_mode, streams, seed):
    """Declared fixed-size chunks take the static-shape step (what CUDA graphs capture)."""
    rng = np.random.default_rng(seed)
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8, pad_mode=pad_mode)
    y = rng.standard_normal((streams, n) if streams else n)
    chunk = 16 * chunk_hops
    with cpu_executor(executor):
        stream = supermel.StreamingMelSpectrogram(**kw, num_streams=streams, chunk_size=chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = stream_all(stream, y, range(chunk, n, chunk))
            expected = supermel.melspectrogram(y=y, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "over",
    [
        dict(power=1.0),
        dict(power=1.5, win_length=48),
        dict(backend="matmul"),
        dict(backend="matmul", power=1.0, window=("kaiser", 8.0)),
        dict(mag_eps=1e-9, power=1.0),
        dict(mel_dtype=np.float64),  # float64 filterbank on float32 audio: librosa promotes the output
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
@pytest.mark.parametrize("streams", [None, 3])
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_static_step_routes_equal_offline(rng, over, streams, executor, as_tensor):
    """The preallocated steady-state step covers every route of the core (rfft/matmul, power, eps, dtype promotion)."""
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    mod = supermel.MelSpectrogram(**kw, **over, dtype=torch.float32)
    y = rng.standard_normal((streams, 1000) if streams else 1000).astype(np.float32)
    with cpu_executor(executor):
        stream = supermel.StreamingMelSpectrogram(module=mod, num_streams=streams, chunk_size=32)
        parts = []
        for i in range(0, 1000, 32):
            c = y[..., i : i + 32]
            out = stream.push(torch.from_numpy(c.copy()) if as_tensor else c)
            assert isinstance(out, torch.Tensor) == as_tensor
            parts.append(np.asarray(out))
            if i == 320:
                step = stream._groups[0].step
                assert step is not None and step.numpy == (executor == "numpy")
        parts.append(np.asarray(stream.flush()))
    got = np.concatenate(parts, -1)
    expected = mod(y)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("executor", EXECUTORS)
def test_static_step_survives_other_sizes_and_resets(rng, executor, monkeypatch):
    """Leaving the step (another chunk size, a per-stream reset) hands its ring buffer back intact."""
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", executor)
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    y = rng.standard_normal((2, 1200))
    stream = supermel.StreamingMelSpectrogram(**kw, num_streams=2, chunk_size=32)
    cuts = [32, 64, 96, 128, 133, 165, 197, 229, 261, 300, 332, 364, 396, 428, 460]
    got = stream_all(stream, y[:, :500], cuts)
    np.testing.assert_allclose(got, supermel.melspectrogram(y=y[:, :500], **kw), rtol=1e-9, atol=1e-12)
    stream.reset()
    for c in range(0, 256, 32):
        stream.push(y[:, c : c + 32])
    assert stream._groups[0].step is not None  # in the steady state now
    stream.reset(1)  # stream 1 restarts; stream 0 goes on from its ring buffer
    parts = [[], []]
    for c in range(256, 1184, 32):
        out = stream.push(np.stack([y[0, c : c + 32], y[1, c - 256 : c - 256 + 32]]))
        for i in range(2):
            parts[i].append(out[i])
    end = stream.flush()
    for i in range(2):
        parts[i].append(end[i])
    first = np.concatenate(parts[0], -1)
    want0 = supermel.melspectrogram(y=y[0, :1184], **kw)
    np.testing.assert_allclose(first, want0[:, -first.shape[-1] :], rtol=1e-9, atol=1e-12)
    second = np.concatenate(parts[1], -1)
    np.testing.assert_allclose(second, supermel.melspectrogram(y=y[1, : 1184 - 256], **kw), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- librosa, real audio
@pytest.fixture(scope="module")
def speech():
    y, sr = supermel.audio.example_audio()
    return y[: 3 * sr], sr


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("chunk, fixed", [(200, False), (320, False), (533, False), (4096, False), (200, True), (4000, True)])
def test_speech_stream_equals_librosa(speech, pad_mode, chunk, fixed):
    """Any chunking; with ``fixed`` the chunk size is declared (the CPU steady-state step)."""
    y, sr = speech
    stream = supermel.StreamingMelSpectrogram(**REF, pad_mode=pad_mode, chunk_size=chunk if fixed else None)
    got = stream_all(stream, y, range(chunk, len(y), chunk))
    expected = librosa.feature.melspectrogram(y=y, **REF, pad_mode=pad_mode)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert rel(got, expected) <= 2e-5


def test_center_false_stream_equals_librosa(speech):
    y, sr = speech
    kw = dict(REF, center=False)
    got = stream_all(supermel.StreamingMelSpectrogram(**kw), y, range(160, len(y), 160))
    expected = librosa.feature.melspectrogram(y=y, **kw)
    assert got.shape == expected.shape
    assert rel(got, expected) <= 2e-5


# ----------------------------------------------------------------------------- many streams
def test_multistream_each_equals_its_offline(rng):
    y = rng.standard_normal((5, 3001)).astype(np.float32)
    stream = supermel.StreamingMelSpectrogram(**REF, num_streams=5)
    got = stream_all(stream, y, range(533, 3001, 533))
    assert got.shape == (5, 80, 1 + 3001 // 200)
    for i in range(5):
        expected = librosa.feature.melspectrogram(y=y[i], **REF)
        assert rel(got[i], expected) <= 2e-5


def test_reset_one_stream_restarts_it(rng):
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    a = rng.standard_normal((3, 500))
    b = rng.standard_normal((3, 300))
    stream = supermel.StreamingMelSpectrogram(**kw, num_streams=3)
    first = [stream.push(a[:, :250]), stream.push(a[:, 250:])]
    stream.reset(1)  # stream 1 starts over with b[1]; the others continue with b
    mixed = b.copy()
    outs = [stream.push(mixed[:, :100]), stream.push(mixed[:, 100:]), stream.flush()]
    # stream 0 and 2: continuous audio a + b
    for i in (0, 2):
        got = np.concatenate([f[i] for f in first] + [o[i] for o in outs], axis=-1)
        expected = supermel.melspectrogram(y=np.concatenate([a[i], b[i]]), **kw)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # stream 1: only b[1] since its reset
    got = np.concatenate([o[1] for o in outs], axis=-1)
    np.testing.assert_allclose(got, supermel.melspectrogram(y=b[1], **kw), rtol=1e-9, atol=1e-12)
    # different frame counts after a separate reset come back as a list
    assert isinstance(outs[0], list) and len(outs[0]) == 3
    counts = stream.frame_count
    assert counts[0] == counts[2] == 1 + 800 // 16 and counts[1] == 1 + 300 // 16


def test_reset_all_and_frame_counter(rng):
    y = rng.standard_normal(1000)
    stream = supermel.StreamingMelSpectrogram(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    stream.push(y)
    assert stream.frame_count == supermel._core.frames_ready(1000, n_fft=64, hop_length=16, pad=32, pad_mode="constant")
    stream.flush()
    stream.reset()
    assert stream.frame_count == 0 and stream.samples_received == 0
    got = stream_all(stream, y[:500], [123])
    np.testing.assert_allclose(got, supermel.melspectrogram(y=y[:500], sr=8000, n_fft=64, hop_length=16, n_mels=8), rtol=1e-9)


# ----------------------------------------------------------------------------- input contract
def test_types_follow_input(rng):
    y = rng.standard_normal(2000).astype(np.float32)
    s_np = supermel.StreamingMelSpectrogram(**REF)
    out = s_np.push(y)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape[0] == 80
    s_t = supermel.StreamingMelSpectrogram(**REF)
    out_t = s_t.push(torch.from_numpy(y))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_array_equal(out, out_t.numpy())
    s64 = supermel.StreamingMelSpectrogram(**REF)
    assert s64.push(y.astype(np.float64)).dtype == np.float64


def test_empty_and_one_sample_pushes(rng):
    y = rng.standard_normal(900)
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8, pad_mode="reflect")
    stream = supermel.StreamingMelSpectrogram(**kw)
    parts = [stream.push(y[:0])]
    parts += [stream.push(y[i : i + 1]) for i in range(len(y))]
    parts.append(stream.push(y[:0]))
    parts.append(stream.flush())
    assert all(p.shape[0] == 8 for p in parts)
    np.testing.assert_allclose(np.concatenate(parts, -1), supermel.melspectrogram(y=y, **kw), rtol=1e-9)


def test_short_total_length_matches_offline_behaviour():
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    y = np.linspace(-1, 1, 10)
    stream = supermel.StreamingMelSpectrogram(**kw)
    stream.push(y)
    with pytest.warns(UserWarning, match="too large"):
        got = stream.flush()
    with pytest.warns(UserWarning, match="too large"):
        expected = supermel.melspectrogram(y=y, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # center=False: the offline call refuses, so does flush
    stream = supermel.StreamingMelSpectrogram(**kw, center=False)
    stream.push(y)
    with pytest.raises(supermel.ParameterError, match="too large for uncentered"):
        stream.flush()
    with pytest.raises(supermel.ParameterError, match="too large for uncentered"):
        supermel.melspectrogram(y=y, center=False, **kw)
    # nothing pushed at all
    with pytest.raises(supermel.ParameterError, match="empty"):
        supermel.StreamingMelSpectrogram(**kw).flush()


def test_errors_leave_state_unchanged(rng):
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    y = rng.standard_normal(600)
    stream = supermel.StreamingMelSpectrogram(**kw)
    parts = [stream.push(y[:300])]
    bad = y[300:350].copy()
    bad[7] = np.nan
    with pytest.raises(supermel.ParameterError, match="not finite"):
        stream.push(bad)
    bad[7] = np.inf
    with pytest.raises(supermel.ParameterError, match="not finite"):
        stream.push(torch.from_numpy(bad))
    with pytest.raises(supermel.ParameterError, match=r"shape \(2, 5\)"):
        stream.push(np.zeros((2, 5)))
    with pytest.raises(supermel.ParameterError, match="int16"):
        stream.push(np.zeros(5, dtype=np.int16))
    parts += [stream.push(y[300:]), stream.flush()]
    np.testing.assert_allclose(np.concatenate(parts, -1), supermel.melspectrogram(y=y, **kw), rtol=1e-9)
    with pytest.raises(supermel.ParameterError, match="after flush"):
        stream.push(y[:10])
    with pytest.raises(supermel.ParameterError, match="twice"):
        stream.flush()


def test_wrong_stream_count_and_parameters():
    stream = supermel.StreamingMelSpectrogram(**REF, num_streams=4)
    with pytest.raises(supermel.ParameterError, match=r"\(4, n\)"):
        stream.push(np.zeros((3, 200), dtype=np.float32))
    with pytest.raises(supermel.ParameterError, match=r"\(4, n\)"):
        stream.push(np.zeros(200, dtype=np.float32))
    with pytest.raises(supermel.ParameterError, match="index=7"):
        stream.reset(7)
    with pytest.raises(supermel.ParameterError, match="num_streams=0"):
        supermel.StreamingMelSpectrogram(**REF, num_streams=0)
    with pytest.raises(supermel.ParameterError, match="chunk_size=300"):
        supermel.StreamingMelSpectrogram(**REF, chunk_size=300)
    with pytest.raises(supermel.ParameterError, match="cuda_graph"):
        supermel.StreamingMelSpectrogram(**REF, chunk_size=200, cuda_graph=True)
    with pytest.raises(supermel.ParameterError, match="hop_length=0"):
        supermel.StreamingMelSpectrogram(sr=16000, hop_length=0)


def test_latency_samples_is_the_look_ahead(rng):
    """Frame t arrives with the push that delivers sample t*hop + latency_samples - 1."""
    stream = supermel.StreamingMelSpectrogram(**REF)
    assert stream.latency_samples == 400
    y = rng.standard_normal(3000).astype(np.float32)
    seen = 0
    for i in range(len(y)):
        seen += stream.push(y[i : i + 1]).shape[-1]
        # after sample i, every frame t with t*hop + latency - 1 <= i is out, and no other
        assert seen == (i + 1 - stream.latency_samples) // 200 + 1 if i + 1 >= stream.latency_samples else seen == 0


@pytest.mark.parametrize("streams", [None, 3])
def test_ring_step_any_chunk_size(speech, streams):
    """Undeclared chunk sizes (a 30 fps video frame: 533 samples, then others) run
    through the CPU ring step once past the left padding; equal to librosa."""
    y, sr = speech
    y = np.stack([y, y[::-1].copy(), 0.5 * y]) if streams else y
    stream = supermel.StreamingMelSpectrogram(**REF, num_streams=streams)
    cuts = list(range(533, 20000, 533)) + [20001, 20003, 20200, 26000] + list(range(26000 + 534, y.shape[-1], 534))
    parts, i, kinds = [], 0, set()
    for c in cuts:
        parts.append(stream.push(y[..., i:c]))
        kinds.add(type(stream._groups[0].step).__name__)
        i = c
    parts.append(stream.push(y[..., i:]))
    parts.append(stream.flush())
    assert "_RingStep" in kinds
    got = np.concatenate(parts, -1)
    expected = librosa.feature.melspectrogram(y=y, **REF)
    assert got.shape == expected.shape
    assert rel(got, expected) <= 2e-5


def test_bounded_memory_over_an_hour():
    """An hour of 16 kHz audio in 20 ms chunks: the buffer never grows."""
    stream = supermel.StreamingMelSpectrogram(**REF, check_finite=False)
    chunk = np.zeros(320, dtype=np.float32)
    chunk[::7] = 0.1
    bound = 800 + 320
    peak = 0
    n_chunks = 3600 * 50
    frames = 0
    storage = set()
    for i in range(n_chunks):
        frames += stream.push(chunk).shape[-1]
        peak = max(peak, stream.buffered_samples)
        if i >= 50:  # past the start: the steady state's storage never changes size
            storage.add(stream.state_nbytes)
    assert peak <= bound
    assert len(storage) == 1 and storage.pop() <= 8 * bound * 4
    assert stream.samples_received == n_chunks * 320
    assert frames + stream.flush().shape[-1] == 1 + n_chunks * 320 // 200


# ----------------------------------------------------------------------------- the caller's module
def _module_state(module):
    """Everything the stream must leave alone: per tensor its identity, storage, dtype, device, grad flag and values."""
    return [(id(t), t.data_ptr(), t.dtype, t.device, t.requires_grad, t.detach().clone()) for t in list(module.parameters()) + list(module.buffers())]


def _assert_unchanged(module, before):
    after = _module_state(module)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        assert a[:5] == b[:5], f"the caller's module changed: {b[:5]} -> {a[:5]}"
        assert torch.equal(a[5], b[5])


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("chunk_size", [None, 400])
def test_callers_module_is_never_modified(rng, executor, chunk_size, monkeypatch):
    """A float64 module with a learnable filterbank and a parameter (requires_grad), streamed with
    float32 chunks: the stream computes in float32 on a copy without grad; the caller's module keeps
    its dtype, device, grad flags and values."""
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", executor)
    mod = supermel.MelSpectrogram(**REF, dtype=torch.float64)
    mod.mel_scale.fb.requires_grad_(True)
    mod.register_parameter("gain", torch.nn.Parameter(torch.ones(())))
    before = _module_state(mod)
    stream = supermel.StreamingMelSpectrogram(module=mod, chunk_size=chunk_size)
    assert stream.module is not mod and stream.device == torch.device("cpu")
    y = rng.standard_normal(8000).astype(np.float32)
    got = stream_all(stream, y, range(400, 8000, 400))
    _assert_unchanged(mod, before)
    assert got.dtype == np.float32
    assert rel(got, librosa.feature.melspectrogram(y=y, **REF)) <= 2e-5


def test_module_without_grad_is_used_as_it_is(rng):
    """Nothing to change: the stream uses the caller's module itself and never casts it
    (a float64 module streaming float32 chunks stays float64)."""
    mod = supermel.MelSpectrogram(**REF, dtype=torch.float64)
    before = _module_state(mod)
    stream = supermel.StreamingMelSpectrogram(module=mod, chunk_size=200)
    assert stream.module is mod
    y = rng.standard_normal(4000).astype(np.float32)
    got = stream_all(stream, y, range(200, 4000, 200))
    stream.reset()
    got2 = stream_all(stream, torch.from_numpy(y), range(200, 4000, 200))
    _assert_unchanged(mod, before)
    want = librosa.feature.melspectrogram(y=y, **REF)
    assert got.dtype == np.float32 and rel(got, want) <= 2e-5 and rel(got2, want) <= 2e-5


def test_device_is_inferred_from_the_module():
    """``device=None`` takes the module's device (meta: no data, so any host read would raise);
    a module on another device than ``device`` is copied there, the caller's left where it is."""
    meta = supermel.MelSpectrogram(**REF).to("meta")
    stream = supermel.StreamingMelSpectrogram(module=meta, chunk_size=200)
    assert stream.device == torch.device("meta") and stream.module is meta
    for _ in range(8):  # check_finite=True (default) skips chunks already on the device: no host read
        out = stream.push(torch.empty(200, device="meta"))
        assert out.device.type == "meta" and out.shape[0] == 80
    assert stream._groups[0].step is not None  # reached the steady state on meta
    assert stream.flush().device.type == "meta"
    cpu = supermel.MelSpectrogram(**REF)
    before = _module_state(cpu)
    moved = supermel.StreamingMelSpectrogram(module=cpu, device="meta")
    assert moved.device == torch.device("meta") and moved.module is not cpu
    assert {t.device.type for t in moved.module.buffers()} == {"meta"}
    _assert_unchanged(cpu, before)


def test_finiteness_checked_on_the_host_only(rng):
    """check_finite refuses NaN in numpy arrays and CPU tensors (before anything is copied) and
    skips chunks already on a device, where a check would synchronise every push."""
    stream = supermel.StreamingMelSpectrogram(**REF)
    bad = rng.standard_normal(400).astype(np.float32)
    bad[3] = np.nan
    for chunk in (bad, torch.from_numpy(bad)):
        with pytest.raises(supermel.ParameterError, match="not finite"):
            stream.push(chunk)
    assert stream.samples_received == 0
    chunk, was_numpy = supermel.streaming.check_chunk(torch.empty(400, device="meta"), num_streams=None, check_finite=True)
    assert chunk.device.type == "meta" and not was_numpy


# ----------------------------------------------------------------------------- inference mode
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("built_inside", [True, False])
def test_inference_mode_inside_then_outside(rng, executor, built_inside, monkeypatch):
    """A stream whose steady-state step was built inside torch.inference_mode() keeps working
    outside it (its buffers are built outside inference mode), and the other way round."""
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", executor)
    y = rng.standard_normal(8000).astype(np.float32)
    with torch.inference_mode(built_inside):
        stream = supermel.StreamingMelSpectrogram(**REF, chunk_size=200)
        parts = [stream.push(torch.from_numpy(y[i : i + 200])) for i in range(0, 2000, 200)]
        assert stream._groups[0].step is not None
    parts += [stream.push(torch.from_numpy(y[i : i + 200])) for i in range(2000, 4000, 200)]
    with torch.inference_mode(not built_inside):
        parts += [stream.push(torch.from_numpy(y[i : i + 200])) for i in range(4000, 6000, 200)]
    parts += [stream.push(torch.from_numpy(y[i : i + 200])) for i in range(6000, 8000, 200)]
    parts.append(stream.flush())
    got = torch.cat(parts, -1).numpy()
    assert rel(got, librosa.feature.melspectrogram(y=y, **REF)) <= 2e-5


# ----------------------------------------------------------------------------- steps kept and cached
@pytest.mark.parametrize("executor", EXECUTORS)
def test_steps_survive_reset_and_are_cached_by_phase(rng, executor, monkeypatch):
    """reset() keeps the steady-state step (only the samples are forgotten); chunks of other sizes
    leave it and the stream re-enters a cached step for each phase: alternating sizes build a
    bounded number of steps, and every utterance equals its offline frames."""
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", executor)
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    stream = supermel.StreamingMelSpectrogram(**kw, num_streams=2, chunk_size=32)
    built = []
    original = stream._take_step

    def spy(state, offset):
        step = original(state, offset)
        built.append(step)
        return step

    stream._take_step = spy
    sizes = ([32] * 5 + [13] + [32] * 5 + [19]) * 3 + [32] * 5  # phases 0, 13 and (13 + 19) % 16 = 0
    for utt in range(3):
        y = rng.standard_normal((2, sum(sizes)))
        stream.reset()
        got = stream_all(stream, y, np.cumsum(sizes)[:-1])
        np.testing.assert_allclose(got, supermel.melspectrogram(y=y, **kw), rtol=1e-9, atol=1e-12)
    assert len(built) >= 3 * 7  # every utterance entered the step after each odd chunk
    assert len({id(s) for s in built}) == 2, "one step per phase, reused across resets and re-entries"
    assert sum(len(v) for v in stream._steps.values()) == 2


def test_steps_rebuilt_when_the_module_changes(rng):
    """A state dict loaded into the module after the step was built: reset() builds a new step from it."""
    kw = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8)
    mod = supermel.MelSpectrogram(**kw, dtype=torch.float64)
    stream = supermel.StreamingMelSpectrogram(module=mod, chunk_size=32)
    y = rng.standard_normal(640)
    stream_all(stream, y, range(32, 640, 32))
    first = next(iter(stream._steps.values()))[0]
    other = supermel.MelSpectrogram(**kw, window="hamming", dtype=torch.float64)
    mod.load_state_dict(other.state_dict())
    stream.reset()
    got = stream_all(stream, y, range(32, 640, 32))
    assert next(iter(stream._steps.values()))[0] is not first
    np.testing.assert_allclose(got, other(y), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- static step / CUDA graph
def test_static_step_shapes_and_values(rng):
    mod = supermel.MelSpectrogram(sr=8000, n_fft=64, hop_length=16, n_mels=8, center=False, dtype=torch.float64)
    y = torch.from_numpy(rng.standard_normal((2, 64 - 16 + 5 * 16)))
    state, chunk = y[:, : 64 - 16], y[:, 64 - 16 :]
    new_state, frames = static_step(mod, state, chunk)
    assert new_state.shape == state.shape and frames.shape == (2, 8, 5)
    torch.testing.assert_close(frames, mod(y))
    torch.testing.assert_close(new_state, y[:, 5 * 16 :])


@CUDA
@pytest.mark.parametrize("streams", [None, 64])
def test_cuda_graph_stream_equals_offline(rng, streams):
    n = 16000
    y = rng.standard_normal((streams, n) if streams else n).astype(np.float32)
    stream = supermel.StreamingMelSpectrogram(**REF, num_streams=streams, device="cuda", chunk_size=200, cuda_graph=True)
    parts = []
    for i in range(0, n, 200):
        out = stream.push(torch.from_numpy(y[..., i : i + 200]).pin_memory())
        assert out.is_cuda
        parts.append(out.clone().cpu().numpy())
    parts.append(stream.flush().cpu().numpy())
    got = np.concatenate(parts, -1)
    expected = librosa.feature.melspectrogram(y=y, **REF)
    assert got.shape == expected.shape
    assert rel(got, expected) <= 2e-5


@CUDA
def test_cuda_stream_device_tensor_input(rng):
    y = torch.from_numpy(rng.standard_normal(4000).astype(np.float32)).cuda()
    stream = supermel.StreamingMelSpectrogram(**REF, device="cuda")
    got = torch.cat([stream.push(y[i : i + 533]) for i in range(0, 4000, 533)] + [stream.flush()], -1)
    assert got.is_cuda
    expected = librosa.feature.melspectrogram(y=y.cpu().numpy(), **REF)
    assert rel(got.cpu().numpy(), expected) <= 2e-5


# =========================================================================== thread pools
@pytest.fixture
def torch_threads():
    """Set torch's intra-op threads inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(3, 401), (64, 401), (2, 16, 401)])
def test_numpy_kernels_matmul_routes_agree(shape, torch_threads):
    # Larger products leave numpy for torch's BLAS when torch's thread pool is active
    # (so OpenBLAS does not start a competing pool): both routes give the same product.
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal((401, 80)).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    k = supermel._core._NumpyKernels
    for threads in (1, 2):
        torch_threads(threads)
        out = np.empty(shape[:-1] + (80,), np.float32)
        assert k.matmul(a, b, out=out) is out
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
        got = k.matmul(a, b)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n", [100, 20000])
def test_all_finite_np_routes(n, torch_threads):
    x = np.random.default_rng(SEED).standard_normal(n).astype(np.float32)
    for threads in (1, 2):
        torch_threads(threads)
        assert supermel._core.all_finite_np(x)
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[n // 3] = bad
            assert not supermel._core.all_finite_np(y)
        assert supermel._core.all_finite_np(np.full(n, 3e38, np.float32))  # the sum of squares overflows; finite all the same


@pytest.mark.parametrize("chunk_size", [None, 200])
def test_chunks_that_require_grad_are_read_detached(chunk_size):
    """Streaming computes without autograd: a chunk with requires_grad=True gives the frames of its
    values (never a raw torch error from a numpy view, whichever step the stream is in)."""
    kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, chunk_size=chunk_size)
    a, b = supermel.StreamingMelSpectrogram(**kw), supermel.StreamingMelSpectrogram(**kw)
    rng = np.random.default_rng(0)
    for _ in range(8):
        x = torch.from_numpy(rng.standard_normal(200).astype(np.float32))
        got = a.push(x.clone().requires_grad_(True))
        want = b.push(x)
        assert not got.requires_grad
        assert torch.equal(got, want)


def test_pool_reads_chunks_that_require_grad_detached():
    pool, ref = supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80), supermel.StreamPool(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    sa, sb = pool.open(), ref.open()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(1600).astype(np.float32))
    pool.push(sa, x.clone().requires_grad_(True))
    ref.push(sb, x)
    got, want = pool.step()[sa], ref.step()[sb]
    assert got.start == want.start == 0
    assert got.frames.shape == want.frames.shape == (80, 7)
    assert np.array_equal(np.asarray(got.frames), np.asarray(want.frames))
