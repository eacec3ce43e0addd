"""The single-frame path (src/native/single.hpp) and the one-call streaming push (StepRing).

The single-frame path vectorises one frame's FFT, power and mel product within the frame; it must
give the batched kernels' values bit for bit (streaming == offline on the native route depends on
it). The one-call push must give the previous push path's values and behaviour.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

import supermel
from supermel import _native

pytestmark = pytest.mark.skipif(not _native.available(), reason="supermel._native_ext is not built: pip install -e .")

#: powers of 2, the usual sizes, 2/3/5-smooth, odd, generic-radix primes (<= 61 and products),
#: Bluestein lengths (a prime factor > 61 in the complex FFT's length: the batched fallback)
SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 15, 16, 25, 30, 32, 49, 59, 61, 64, 97, 100, 122, 127, 128, 160, 240, 254, 256, 320, 400,
         441, 480, 510, 512, 600, 640, 800, 801, 1000, 1023, 1024, 1200, 2000, 2048, 3001, 4096]
DTYPES = [(np.float32, np.float32), (np.float32, np.float64), (np.float64, np.float64)]


@pytest.fixture(params=["avx2", "baseline"])
def isa(request):
    ext = _native._ext
    before = ext.isa()
    if request.param == "avx2" and not ext.avx2_supported():
        pytest.skip("no AVX2 + FMA on this CPU/build")
    ext.set_isa(request.param)
    yield request.param
    ext.set_isa(before)


def _plans(**kw):
    """(a plan with the single-frame path, the same plan with the batched kernels only)."""
    ext = _native._ext
    old = ext.set_single_max(ext.SINGLE_MAX_FRAMES)
    try:
        single = _native.make_plan(**kw)
        ext.set_single_max(0)
        batched = _native.make_plan(**kw)
    finally:
        ext.set_single_max(old)
    return single, batched


def _compare(n_fft, dtype, wdt, *, bands, power=2.0, post="none", post_a=0.0, post_b=0.0, seed=0):
    rng = np.random.default_rng(seed + n_fft)
    window = rng.uniform(0.1, 1.0, n_fft)
    fb = None
    if bands:
        n_mels = max(1, min(40, n_fft // 4))
        fb = np.asarray(librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=n_mels, fmin=0.0), np.float64)
        fb[0, :] *= -1.0  # a negative band: signs of zeros and the accumulation order matter
    kw = dict(n_fft=n_fft, window=window, fb=fb, dtype=dtype, weights=wdt, power=power, post=post, post_a=post_a, post_b=post_b)
    single, batched = _plans(**kw)
    hop, frames = 3, 19  # 19 = 2 full batches of 8 + 3: every lane count of the batched kernel
    x = (rng.standard_normal((2, n_fft + hop * (frames - 1))) * 10.0 ** rng.uniform(-3, 3)).astype(dtype)
    ref = _native.run_strided(batched, x, offset=0, hop=hop, n_frames=frames, dtype=dtype, out_dtype=wdt)
    for t in range(frames):
        for plan in (single, batched):
            one = _native.run_strided(plan, x, offset=hop * t, hop=hop, n_frames=1, dtype=dtype, out_dtype=wdt)
            assert np.array_equal(one[..., 0], ref[..., t], equal_nan=True), (n_fft, t, plan is single)
    # two frames per call: each alone on the single path
    two = _native.run_strided(single, x, offset=hop, hop=hop, n_frames=2, dtype=dtype, out_dtype=wdt)
    assert np.array_equal(two, ref[..., 1:3], equal_nan=True)
    return single


@pytest.mark.filterwarnings("ignore:Empty filters")
@pytest.mark.parametrize("dtype, wdt", DTYPES, ids=["f32", "f32-w64", "f64"])
@pytest.mark.parametrize("n_fft", SIZES)
def test_single_frame_equals_the_batched_kernel(isa, n_fft, dtype, wdt):
    _compare(n_fft, dtype, wdt, bands=True)
    _compare(n_fft, dtype, wdt, bands=False, power=1.0)


@pytest.mark.filterwarnings("ignore:Empty filters")
@pytest.mark.parametrize("power", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("post, a, b", [("none", 0, 0), ("ln_floor", 1e-10, 0), ("log10_floor", 1e-10, 0), ("ln_add", 1e-6, 0), ("db", 10.0, 1e-10)])
@pytest.mark.parametrize("n_fft", [400, 512, 800, 441])
def test_single_frame_post_steps_and_powers(isa, n_fft, power, post, a, b):
    for dtype, wdt in DTYPES:
        _compare(n_fft, dtype, wdt, bands=True, power=power, post=post, post_a=a, post_b=b, seed=7)


def test_single_frame_non_finite_and_zero_frames():
    """NaN/Inf and all-zero frames (signed zeros, NaN propagation) as the batched kernel."""
    for dtype, wdt in DTYPES:
        n_fft = 800
        fb = np.asarray(librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=80), np.float64)
        single, batched = _plans(n_fft=n_fft, window=np.hanning(n_fft), fb=fb, dtype=dtype, weights=wdt, power=2.0)
        x = np.zeros((4, n_fft), dtype)
        x[1, 5] = np.nan
        x[2, 700] = np.inf
        x[3, :] = -0.0
        ref = _native.run_strided(batched, np.repeat(x, 2, axis=0), offset=0, hop=1, n_frames=1, dtype=dtype, out_dtype=wdt)
        for r in range(4):
            one = _native.run_strided(single, x[r : r + 1], offset=0, hop=1, n_frames=1, dtype=dtype, out_dtype=wdt)
            assert np.array_equal(one, ref[2 * r : 2 * r + 1], equal_nan=True)
            assert np.array_equal(np.signbit(one), np.signbit(ref[2 * r : 2 * r + 1]))


# --------------------------------------------------------------------------- the one-call push
KW = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80)


def _reference_pushes(chunks, **kw):
    """The same pushes on the previous path (no one-call push)."""
    s = supermel.StreamingMelSpectrogram(**kw)
    outs = []
    for c in chunks:
        g = s._groups[0] if len(s._groups) == 1 else None
        if g is not None and g.step is not None and g.step.fast is not None:
            g.step.fast_saved, g.step.fast = g.step.fast, None
            g.step._i = g.step.fast_saved.i
        outs.append(s.push(c))
    outs.append(s.flush())
    return outs


@pytest.mark.parametrize("num_streams", [None, 1, 3])
@pytest.mark.parametrize("f64", [False, True])
def test_one_call_push_equals_the_previous_path_and_offline(num_streams, f64):
    dtype = np.float64 if f64 else np.float32
    rows = num_streams or 1
    y = np.random.default_rng(3).standard_normal((rows, 6000)).astype(dtype)
    y2 = y[0] if num_streams is None else y
    kw = dict(KW, num_streams=num_streams, chunk_size=200, dtype=torch.float64 if f64 else torch.float32)
    chunks = [np.ascontiguousarray(y2[..., i : i + 200]) for i in range(0, 6000, 200)]
    with _native.use_native(True):
        s = supermel.StreamingMelSpectrogram(**kw)
        outs = []
        for c in chunks:
            outs.append(s.push(c))
            assert isinstance(outs[-1], np.ndarray)
            assert outs[-1].shape == ((80, outs[-1].shape[-1]) if num_streams is None else (rows, 80, outs[-1].shape[-1]))
        outs.append(s.flush())
        step = s._steps and next(iter(s._steps.values()))[0]
        assert step.fast is not None  # the one-call push ran
        got = np.concatenate(outs, axis=-1)
        want = supermel.melspectrogram(y=y2, sr=16000, n_fft=800, hop_length=200, n_mels=80)
        assert np.array_equal(got, want)
        assert np.array_equal(got, np.concatenate(_reference_pushes(chunks, **kw), axis=-1))


def test_one_call_push_declines_what_it_does_not_take():
    """Tensors, other dtypes, layouts and shapes, subclasses and NaN chunks go to the general path
    (same results and errors); a declined call changes nothing."""
    y = np.random.default_rng(4).standard_normal(8000).astype(np.float32)
    with _native.use_native(True):
        s = supermel.StreamingMelSpectrogram(chunk_size=200, **KW)
        outs = [s.push(y[i : i + 200].copy()) for i in range(0, 2000, 200)]
        fast = s._groups[0].step.fast
        assert fast is not None
        i0 = fast.i
        assert fast.push(y[2000:2200].astype(np.float64), True, True) is None
        assert fast.push(y[2000:2400:2], True, True) is None  # non-contiguous
        assert fast.push(y[2000:2200][None], True, True) is None  # 2-D for a 1-D stream
        assert fast.push(y[2000:2201].copy(), True, True) is None  # another size
        assert fast.push(torch.from_numpy(y[2000:2200].copy()), True, True) is None
        assert fast.push(y[2000:2200].view(np.matrix), True, False) is None
        bad = y[2000:2200].copy()
        bad[3] = np.nan
        assert fast.push(bad, True, True) is None
        assert fast.i == i0
        with pytest.raises(supermel.ParameterError, match="not finite"):
            s.push(bad)
        t = s.push(torch.from_numpy(y[2000:2200].copy()))  # tensor in -> tensor out (the general path)
        assert isinstance(t, torch.Tensor)
        outs.append(t.numpy())
        outs += [s.push(y[i : i + 200]) for i in range(2200, 3000, 200)]
        outs.append(s.push(y[3000:3300]))  # another size: the general path, then back
        outs += [s.push(y[i : i + 200]) for i in range(3300, 8000, 200)]
        outs.append(s.flush())
        want = supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, n_mels=80)
        assert np.array_equal(np.concatenate(outs, axis=-1), want)


def test_one_call_push_follows_use_native():
    y = np.random.default_rng(6).standard_normal(4000).astype(np.float32)
    with _native.use_native(True):
        s = supermel.StreamingMelSpectrogram(chunk_size=200, **KW)
        outs = [s.push(y[i : i + 200]) for i in range(0, 2000, 200)]
        fast = s._groups[0].step.fast
        with _native.use_native(False):
            assert fast.push(y[2000:2200], True, True) is None
            outs += [s.push(y[i : i + 200]) for i in range(2000, 3000, 200)]  # the torch route
        outs += [s.push(y[i : i + 200]) for i in range(3000, 4000, 200)]
        outs.append(s.flush())
    want = supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, n_mels=80)
    got = np.concatenate(outs, axis=-1)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_step_ring_refuses_bad_segments():
    plan = _native.make_plan(n_fft=800, window=np.hanning(800), fb=None, dtype=np.float32, weights=np.float32, power=2.0)
    segs = [np.zeros((1, 800), np.float32), np.zeros((1, 800), np.float32)]
    ok = _native.step_ring(plan, segs, held=600, chunk=200, offset=0, hop=200, k=1)
    assert ok.i == 0
    with pytest.raises(supermel.ParameterError):
        _native.step_ring(plan, [segs[0], segs[1][:, ::2]], held=600, chunk=200, offset=0, hop=200, k=1)
    with pytest.raises(supermel.ParameterError):
        _native.step_ring(plan, [segs[0], np.zeros((1, 800), np.float64)], held=600, chunk=200, offset=0, hop=200, k=1)
    ext = _native._ext
    with pytest.raises(ValueError, match="run past"):
        ext.StepRing(plan, segs[0], segs[1], 600, 200, 1, 200, 1)  # offset 1 + 800 > 800
    with pytest.raises(ValueError, match="run past"):
        ext.StepRing(plan, segs[0], segs[1], 600, 200, 0, 200, 2)
    with pytest.raises(ValueError, match="segments"):
        ext.StepRing(plan, segs[0], np.zeros((1, 800), np.float64), 600, 200, 0, 200, 1)
    with pytest.raises(ValueError, match="distinct"):
        ext.StepRing(plan, segs[0], segs[0], 600, 200, 0, 200, 1)
    with pytest.raises(ValueError):
        ok.i = 2


# --------------------------------------------------------------------------- the one-call module call
def test_offline_call_equals_plan_signal_and_declines():
    n_fft, hop = 800, 200
    fb = np.asarray(librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=80), np.float64)
    plan = _native.make_plan(n_fft=n_fft, window=np.hanning(n_fft), fb=fb, dtype=np.float32, weights=np.float32, power=2.0)
    call = _native.offline_call(plan, pad=400, mode=1, hop=hop, min_len=n_fft, block=64, frame_cost=2000)
    y = np.random.default_rng(8).standard_normal((3, 4000)).astype(np.float32)
    for x in (y, y[1]):
        got = call(x, True, -1, 1)
        want = np.empty((x.reshape(-1, 4000).shape[0], 80, (4000 + 800 - 800) // hop + 1), np.float32)
        assert plan.signal(x.reshape(-1, 4000), 400, 1, hop, want, 1, True) == 0
        assert got.shape == (want.shape if x.ndim == 2 else want.shape[1:])
        assert np.array_equal(got, want if x.ndim == 2 else want[0])
    assert call(y[:, ::2], True, -1, 1) is None  # not C-contiguous
    assert call(y.astype(np.float64), True, -1, 1) is None
    assert call(y[0, :799], True, -1, 1) is None  # shorter than min_len
    assert call(y[None], True, -1, 1) is None  # 3-D
    assert call(torch.from_numpy(y), True, -1, 1) is None
    assert call(y, True, 1000, 1) is None  # over the memory limit
    assert call(y, True, 10**9, 1) is not None
    bad = y.copy()
    bad[2, 17] = np.nan
    assert call(bad, True, -1, 1) is None
    assert call(bad, False, -1, 1) is not None  # unchecked: computed (NaN frames)
    with pytest.raises(supermel.ParameterError):
        _native.offline_call(plan, pad=-1, mode=1, hop=hop, min_len=n_fft, block=64, frame_cost=2000)
    with pytest.raises(supermel.ParameterError):
        _native.offline_call(plan, pad=0, mode=3, hop=hop, min_len=n_fft, block=64, frame_cost=2000)
    with pytest.raises(supermel.ParameterError):
        _native.offline_call(plan, pad=0, mode=0, hop=hop, min_len=n_fft - 1, block=64, frame_cost=2000)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_module_one_frame_call_types_and_values(as_tensor):
    mod = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80, center=False)
    y = np.random.default_rng(9).standard_normal(800).astype(np.float32)
    x = torch.from_numpy(y) if as_tensor else y
    with _native.use_native(True):
        got = mod(x)
        offline = supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, n_mels=80, center=False)
    with _native.use_native(False):
        ref = mod(x)
    assert type(got) is type(ref) and tuple(got.shape) == tuple(ref.shape) == (80, 1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.asarray(got), offline)


def test_step_ring_keeps_its_segments_alive():
    """The StepRing holds its segments: dropping every other reference leaves pushes valid
    (the sanitizer run, tools/asan.sh, would report a use after free)."""
    import gc

    plan = _native.make_plan(n_fft=800, window=np.hanning(800), fb=None, dtype=np.float32, weights=np.float32, power=2.0)
    ring = _native.step_ring(plan, [np.zeros((1, 800), np.float32), np.zeros((1, 800), np.float32)], held=600, chunk=200, offset=0, hop=200, k=1)
    gc.collect()
    x = np.random.default_rng(10).standard_normal(1000).astype(np.float32)
    with _native.use_native(True):
        outs = [ring.push(x[i : i + 200], True, True) for i in range(0, 1000, 200)]
    frame = np.concatenate([np.zeros(600, np.float32), x])[-800:]  # the last push's frame: the last 800 samples
    want = _native.run_strided(plan, frame[None], offset=0, hop=200, n_frames=1, dtype=np.float32, out_dtype=np.float32)
    assert np.array_equal(outs[-1], want[0])


@pytest.mark.parametrize("chunk_size", [200, None])
@pytest.mark.parametrize("num_streams", [None, 2])
def test_one_call_push_takes_cpu_tensors_and_returns_tensors(num_streams, chunk_size):
    """CPU tensors take the numpy hot paths (the one-call push; the ring step without a chunk
    size) and come back as tensors, equal to the previous path and to the offline call."""
    rows = num_streams or 1
    y = np.random.default_rng(11).standard_normal((rows, 4000)).astype(np.float32)
    y2 = y[0] if num_streams is None else y
    kw = dict(KW, num_streams=num_streams, chunk_size=chunk_size)
    chunks = [torch.from_numpy(np.ascontiguousarray(y2[..., i : i + 200])) for i in range(0, 4000, 200)]
    with _native.use_native(True):
        s = supermel.StreamingMelSpectrogram(**kw)
        outs = [s.push(c) for c in chunks]
        outs.append(s.flush())
        ref = _reference_pushes(chunks, **kw)
        want = supermel.melspectrogram(y=y2, sr=16000, n_fft=800, hop_length=200, n_mels=80)
    assert all(isinstance(o, torch.Tensor) for o in outs) and all(isinstance(o, torch.Tensor) for o in ref)
    assert [tuple(o.shape) for o in outs] == [tuple(o.shape) for o in ref]
    got = torch.cat(outs, dim=-1).numpy()
    assert np.array_equal(got, torch.cat(ref, dim=-1).numpy())
    assert np.array_equal(got, want)


def test_one_call_push_leaves_odd_tensors_to_the_general_path():
    y = np.random.default_rng(12).standard_normal(3000).astype(np.float32)
    chunks = [torch.from_numpy(y[i : i + 200].copy()) for i in range(0, 2000, 200)]
    chunks.append(torch.from_numpy(y[2000:2200].copy()).conj())  # real: conj is a no-op view
    chunks.append(torch.from_numpy(y[2200:2600])[::2])  # non-contiguous: declined, the general path
    chunks.append(torch.from_numpy(y[2600:2800].astype(np.float64)))  # another dtype: the general path converts
    chunks.append(torch.from_numpy(y[2800:3000].copy()))
    with _native.use_native(True):
        s = supermel.StreamingMelSpectrogram(chunk_size=200, **KW)
        outs = [s.push(c) for c in chunks[:-1]]
        nan = chunks[-1].clone()
        nan[0] = float("nan")
        with pytest.raises(supermel.ParameterError, match="not finite"):
            s.push(nan)
        outs.append(s.push(chunks[-1]))
        outs.append(s.flush())
        signal = torch.cat([c.to(torch.float32) for c in chunks]).numpy()
        want = supermel.melspectrogram(y=signal, sr=16000, n_fft=800, hop_length=200, n_mels=80)
    assert all(isinstance(o, torch.Tensor) for o in outs)
    assert np.array_equal(torch.cat(outs, dim=-1).numpy(), want)
