"""The native CPU core (supermel._native_ext through supermel._native): exactness, routes, buffers.

* the FFT against numpy's float64 FFT over n_fft 1..4096 (even, odd, prime, powers of 2), both
  instruction sets;
* the native route against librosa within the suite's bounds (TOL) over a grid of n_fft / hop /
  win_length / center / pad_mode / power / n_mels / dtype, on speech and noise;
* the native route against the torch route within :data:`NATIVE_VS_TORCH` (docs/exactness.md),
  also as a hypothesis test of random shapes, strides and configurations;
* buffers: non-contiguous, misaligned, read-only, zero-size and very long; bad calls refused
  in Python (ParameterError) and again in C++ (ValueError);
* the fallback: ``use_native(False)`` and ``SUPERMEL_NATIVE=0`` run today's routes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import librosa
import numpy as np
import pytest
import torch
from conftest import TOL, rel_err
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supermel
from supermel import _native

needs_native = pytest.mark.skipif(not _native.available(), reason="supermel._native_ext is not built: pip install -e .")

#: native vs torch route, peak-relative (max |a - b| / max |b|) on linear features: about 3x the
#: largest difference seen on this suite's signals (float32 ~3e-7: both round each FFT to float32;
#: float64 ~5e-16).
NATIVE_VS_TORCH = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 2e-15}

#: n_fft values of the FFT test: every size to 64, then powers of 2, products of 2/3/5, primes
#: (the generic radix up to 61, Bluestein above) and the sizes the presets use.
FFT_SIZES = sorted(set(range(1, 65)) | {96, 100, 127, 128, 160, 191, 199, 240, 256, 257, 320, 383, 400, 441, 480, 510, 512, 640, 800, 801,
                                         960, 1000, 1023, 1024, 1200, 1536, 2000, 2048, 2049, 3001, 4095, 4096})


def _peak_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) if b.size else 0.0


@pytest.fixture(params=["avx2", "baseline"])
def isa(request):
    """Both kernel builds where the CPU has AVX2 (else the baseline only)."""
    if not _native.available():
        pytest.skip("supermel._native_ext is not built")
    ext = _native._ext
    before = ext.isa()
    if request.param == "avx2" and not ext.avx2_supported():
        pytest.skip("no AVX2 + FMA on this CPU/build")
    ext.set_isa(request.param)
    yield request.param
    ext.set_isa(before)


def test_built_in_ci():
    """CI builds the extension (the README's install); a missing build fails there, skips elsewhere."""
    if not _native.available():
        if os.environ.get("CI"):
            pytest.fail("supermel._native_ext is not built (pip install -e . builds it)")
        pytest.skip("supermel._native_ext is not built: pip install -e .")
    assert _native.enabled() == (os.environ.get("SUPERMEL_NATIVE", "1") != "0")
    assert _native.isa() in ("avx2", "baseline")


# --------------------------------------------------------------------------- the FFT
@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_matches_numpy_float64(isa, dtype):
    rng = np.random.default_rng(1)
    bound = 1e-6 if dtype == np.float32 else 1e-14
    for n in FFT_SIZES:
        x = rng.standard_normal((11, n)).astype(dtype)  # 11 frames: one full batch of lanes and a partial one
        plan = _native.make_plan(n_fft=n, window=np.ones(n), fb=None, dtype=dtype, weights=dtype, power=2.0)
        got = _native.rfft(plan, x)
        want = np.fft.rfft(x.astype(np.float64), axis=-1)
        assert got.shape == want.shape
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= bound, f"n={n} {np.dtype(dtype).name} {isa}: {err:.3g}"


@needs_native
def test_fft_lanes_are_independent():
    """A frame's transform does not depend on its lane, batch or neighbours (bit for bit)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((19, 400)).astype(np.float32)
    plan = _native.make_plan(n_fft=400, window=np.ones(400), fb=None, dtype=np.float32, weights=np.float32, power=2.0)
    full = _native.rfft(plan, x)
    for i in (0, 7, 8, 18):
        assert np.array_equal(_native.rfft(plan, x[i : i + 1]), full[i : i + 1])


# --------------------------------------------------------------------------- against librosa
GRID = [
    # n_fft, hop, win_length, center, pad_mode, power, n_mels, sr
    (800, 200, None, True, "constant", 2.0, 80, 16000),
    (400, 160, None, True, "reflect", 2.0, 80, 16000),
    (512, 128, 400, False, "constant", 1.0, 64, 16000),
    (1024, 256, None, True, "edge", 2.0, 128, 22050),
    (2048, 512, None, True, "constant", 2.0, 128, 22050),
    (801, 200, 640, True, "symmetric", 1.5, 80, 16000),
    (257, 64, None, True, "linear_ramp", 2.0, 40, 8000),
    (97, 31, 50, False, "constant", 2.0, 16, 8000),
    (1, 1, None, False, "constant", 2.0, 1, 8000),
    (2, 1, None, True, "reflect", 1.0, 1, 8000),
    (3001, 750, None, True, "constant", 2.0, 128, 48000),
    (4096, 1024, 2048, True, "reflect", 2.0, 128, 44100),
]


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", GRID, ids=[f"n{c[0]}-h{c[1]}-w{c[2]}-{'c' if c[3] else 'nc'}-{c[4]}-p{c[5]}" for c in GRID])
@pytest.mark.filterwarnings("ignore:Empty filters")
def test_native_matches_librosa(cfg, dtype, make_signal):
    n_fft, hop, win, center, pad_mode, power, n_mels, sr = cfg
    for kind in ("speech", "noise"):
        y = make_signal(kind, sr, sr * 2 + 37, (), dtype)
        kw = dict(sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode, power=power, n_mels=n_mels)
        with _native.use_native(True):
            got = supermel.melspectrogram(y=y, **kw)
        want = librosa.feature.melspectrogram(y=y, **kw)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert rel_err(got, want) <= TOL[np.dtype(dtype)], (kind, rel_err(got, want))
        spec_kw = {k: v for k, v in kw.items() if k not in ("sr", "n_mels")}
        with _native.use_native(True):
            s = supermel.spectrogram(y=y, **spec_kw)
        s_ref = np.abs(librosa.stft(y, **{k: v for k, v in spec_kw.items() if k != "power"})) ** power
        assert rel_err(s, s_ref) <= TOL[np.dtype(dtype)], (kind, "spectrogram")


@needs_native
@pytest.mark.parametrize("mel_dtype", [np.float32, np.float64])
def test_float64_filterbank_promotes_like_librosa(mel_dtype, make_signal):
    y = make_signal("speech", 16000, 16000, (), np.float32)
    kw = dict(sr=16000, n_fft=400, hop_length=160, n_mels=80, dtype=mel_dtype)
    with _native.use_native(True):
        got = supermel.melspectrogram(y=y, **kw)
    want = librosa.feature.melspectrogram(y=y, **kw)
    assert got.dtype == want.dtype
    assert rel_err(got, want) <= TOL[np.dtype(np.float32)]


# --------------------------------------------------------------------------- against the torch route
def _both_routes(fn):
    with _native.use_native(True):
        a = fn()
    with _native.use_native(False):
        b = fn()
    return a, b


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", GRID[:8], ids=[f"n{c[0]}" for c in GRID[:8]])
@pytest.mark.filterwarnings("ignore:Empty filters")
def test_native_vs_torch_route(isa, cfg, dtype, make_signal):
    n_fft, hop, win, center, pad_mode, power, n_mels, sr = cfg
    y = make_signal("speech", sr, sr + 11, (3,), dtype)
    mod = supermel.MelSpectrogram(sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode, power=power,
                                  n_mels=n_mels, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    a, b = _both_routes(lambda: mod(torch.from_numpy(y)))
    assert a.dtype == b.dtype and a.shape == b.shape
    assert _peak_err(a, b) <= NATIVE_VS_TORCH[np.dtype(dtype)]


@needs_native
def test_routes_taken():
    """CPU without autograd: native; autograd, backend='matmul': torch (checked by the plan cache)."""
    with _native.use_native(True):  # (also under SUPERMEL_NATIVE=0)
        _check_routes()


def _check_routes():
    mod = supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)
    y = torch.randn(1, 4000)
    spec = mod.spectrogram
    assert spec.native_route(mod.spectrogram.pad_input(y))
    yg = y.clone().requires_grad_(True)
    out = mod(yg)
    assert out.requires_grad  # the torch route: autograd sees it
    out.sum().backward()
    assert yg.grad is not None and torch.isfinite(yg.grad).all()
    with torch.no_grad():
        assert spec.native_route(spec.pad_input(yg))
    assert not supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40, backend="matmul").spectrogram.native_route(y)
    with _native.use_native(False):
        assert not spec.native_route(y)


@needs_native
def test_plans_are_cached_and_follow_the_constants():
    mod = supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)
    p1 = mod.native_plan(torch.float32)
    assert mod.native_plan(torch.float32) is p1
    assert mod.native_plan(torch.float64) is not p1
    y = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32))
    before = mod(y)
    state = mod.state_dict()
    state["mel_scale.fb"] = state["mel_scale.fb"] * 2
    mod.load_state_dict(state)  # an in-place change of the filterbank: a new plan
    assert mod.native_plan(torch.float32) is not p1
    assert _peak_err(mod(y), 2 * before) <= 1e-6


# --------------------------------------------------------------------------- buffers
def _ref_plan(dtype=np.float32, n_fft=400, n_mels=40):
    mod = supermel.MelSpectrogram(sr=16000, n_fft=n_fft, hop_length=160, n_mels=n_mels, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    return mod, mod.native_plan(torch.float64 if dtype == np.float64 else torch.float32)


@needs_native
def test_non_contiguous_misaligned_read_only_inputs():
    rng = np.random.default_rng(3)
    mod, plan = _ref_plan()
    base = rng.standard_normal((2, 6001)).astype(np.float32)
    want = _native.run_strided(plan, np.ascontiguousarray(base), offset=0, hop=160, n_frames=30, dtype=np.float32, out_dtype=np.float32)
    # non-contiguous rows (every other row of a bigger array) and a non-unit sample stride
    big = np.zeros((4, 6001), np.float32)
    big[::2] = base
    assert np.array_equal(_native.run_strided(plan, big[::2], offset=0, hop=160, n_frames=30, dtype=np.float32, out_dtype=np.float32), want)
    wide = np.zeros((2, 12002), np.float32)
    wide[:, ::2] = base
    assert np.array_equal(_native.run_strided(plan, wide[:, ::2], offset=0, hop=160, n_frames=30, dtype=np.float32, out_dtype=np.float32), want)
    # misaligned: float32 samples starting one byte into a buffer
    raw = np.zeros(base.nbytes + 1, np.uint8)
    mis = np.frombuffer(raw.data, dtype=np.float32, count=base.size, offset=1).reshape(base.shape)
    assert not mis.flags.aligned
    mis_w = np.frombuffer(memoryview(raw)[1:], dtype=np.float32).reshape(base.shape)
    mis_w[...] = base
    assert np.array_equal(_native.run_strided(plan, mis, offset=0, hop=160, n_frames=30, dtype=np.float32, out_dtype=np.float32), want)
    # read-only
    ro = base.copy()
    ro.flags.writeable = False
    assert np.array_equal(_native.run_strided(plan, ro, offset=0, hop=160, n_frames=30, dtype=np.float32, out_dtype=np.float32), want)
    # the public API on the same kinds of input
    y = rng.standard_normal(16000).astype(np.float32)
    ref = supermel.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    y_ro = y.copy()
    y_ro.flags.writeable = False
    assert np.array_equal(supermel.melspectrogram(y=y_ro, sr=16000, n_fft=400, hop_length=160, n_mels=40), ref)
    y2 = np.zeros(32000, np.float32)
    y2[::2] = y
    assert np.array_equal(supermel.melspectrogram(y=y2[::2], sr=16000, n_fft=400, hop_length=160, n_mels=40), ref)
    t = torch.zeros(2, 16000)
    t[0] = torch.from_numpy(y)
    assert np.array_equal(mod(t.t().contiguous().t()[0:1]).numpy()[0], ref)  # a strided tensor


@needs_native
def test_zero_size_and_long_buffers():
    mod, plan = _ref_plan()
    x = np.zeros((0, 1000), np.float32)
    assert _native.run_strided(plan, x, offset=0, hop=160, n_frames=3, dtype=np.float32, out_dtype=np.float32).shape == (0, 40, 3)
    x = np.ones((2, 1000), np.float32)
    assert _native.run_strided(plan, x, offset=0, hop=160, n_frames=0, dtype=np.float32, out_dtype=np.float32).shape == (2, 40, 0)
    assert _native.run_gather(plan, x, np.zeros(0, np.int64), np.zeros(0, np.int64), dtype=np.float32, out_dtype=np.float32).shape == (0, 40)
    # ten minutes at 16 kHz: 60,000 frames in one call, against the torch route
    y = np.random.default_rng(4).standard_normal(16000 * 600).astype(np.float32)
    a, b = _both_routes(lambda: supermel.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=40))
    assert a.shape == (40, 60001) and _peak_err(a, b) <= NATIVE_VS_TORCH[np.dtype(np.float32)]


@needs_native
def test_bad_calls_are_refused_in_python_and_in_cpp():
    mod, plan = _ref_plan()
    x = np.ones((2, 1000), np.float32)
    kw = dict(dtype=np.float32, out_dtype=np.float32)
    with pytest.raises(supermel.ParameterError, match="run past"):
        _native.run_strided(plan, x, offset=0, hop=160, n_frames=5, **kw)
    with pytest.raises(supermel.ParameterError):
        _native.run_strided(plan, x, offset=-1, hop=160, n_frames=1, **kw)
    with pytest.raises(supermel.ParameterError, match="out must"):
        _native.run_strided(plan, x, offset=0, hop=160, n_frames=2, out=np.empty((2, 40, 3), np.float32), **kw)
    with pytest.raises(supermel.ParameterError, match="out must"):
        _native.run_strided(plan, x, offset=0, hop=160, n_frames=2, out=np.empty((2, 40, 2), np.float64), **kw)
    ro = np.empty((2, 40, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(supermel.ParameterError, match="writeable"):
        _native.run_strided(plan, x, offset=0, hop=160, n_frames=2, out=ro, **kw)
    with pytest.raises(supermel.ParameterError, match="offsets"):
        _native.run_gather(plan, x, np.array([0]), np.array([601]), **kw)
    with pytest.raises(supermel.ParameterError, match="rows"):
        _native.run_gather(plan, x, np.array([2]), np.array([0]), **kw)
    # the same calls straight into C++ (skipping the Python checks) raise instead of running
    with pytest.raises(ValueError):
        plan.strided(x, 0, 160, 5, np.empty((2, 40, 5), np.float32))
    with pytest.raises(ValueError):
        plan.strided(x.astype(np.float64), 0, 160, 1, np.empty((2, 40, 1), np.float32))
    with pytest.raises(ValueError):
        plan.gather(x, np.array([0], np.int64), np.array([601], np.int64), np.empty((1, 40), np.float32))
    with pytest.raises(ValueError):
        plan.gather(x, np.array([-1], np.int64), np.array([0], np.int64), np.empty((1, 40), np.float32))
    with pytest.raises(ValueError):
        plan.strided(x, 0, 0, 1, np.empty((2, 40, 1), np.float32))


@needs_native
def test_gather_equals_strided_and_threads_share_a_plan():
    rng = np.random.default_rng(5)
    mod, plan = _ref_plan()
    x = rng.standard_normal((3, 5000)).astype(np.float32)
    kw = dict(dtype=np.float32, out_dtype=np.float32)
    strided = _native.run_strided(plan, x, offset=7, hop=160, n_frames=20, **kw)
    rows = np.repeat(np.arange(3), 20)
    offs = np.tile(7 + 160 * np.arange(20), 3)
    gathered = _native.run_gather(plan, x, rows, offs, **kw)
    assert np.array_equal(gathered.reshape(3, 20, 40).transpose(0, 2, 1), strided)
    # a time-major (count, n_mels) result written through a transposed view
    out = np.empty((40, 60), np.float32)
    _native.run_gather(plan, x, rows, offs, out=out.T, **kw)
    assert np.array_equal(out.T, gathered)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(_native.run_strided(plan, x, offset=7, hop=160, n_frames=20, **kw))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(np.array_equal(r, strided) for r in results)


@needs_native
@pytest.mark.parametrize("post, fn", [
    ("ln_floor", lambda m: np.log(np.maximum(m, 1e-5))),
    ("log10_floor", lambda m: np.log10(np.maximum(m, 1e-5))),
    ("ln_add", lambda m: np.log(m + 1e-5)),
    ("db", lambda m: 10 * np.log10(np.maximum(m, 1e-10))),
])
def test_post_steps(post, fn):
    mod = supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40, dtype=torch.float64)
    x = np.random.default_rng(6).standard_normal((1, 4000))
    kw = dict(offset=0, hop=160, n_frames=20, dtype=np.float64, out_dtype=np.float64)
    plain = _native.run_strided(mod.native_plan(torch.float64), x, **kw)
    a, b = (10.0, 1e-10) if post == "db" else (1e-5, 0.0)
    got = _native.run_strided(mod.native_plan(torch.float64, post=post, post_a=a, post_b=b), x, **kw)
    assert np.allclose(got, fn(plain), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- random configurations
@needs_native
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_fft=st.integers(1, 700),
    hop=st.integers(1, 300),
    win_frac=st.floats(0.3, 1.0),
    batch=st.integers(1, 3),
    n=st.integers(1, 3000),
    center=st.booleans(),
    pad_mode=st.sampled_from(["constant", "reflect", "edge"]),
    power=st.sampled_from([1.0, 2.0, 0.7]),
    f64=st.booleans(),
    step=st.integers(1, 3),
)
@pytest.mark.filterwarnings("ignore")
def test_random_configurations_against_the_torch_route(n_fft, hop, win_frac, batch, n, center, pad_mode, power, f64, step):
    win = max(1, int(n_fft * win_frac))
    if not center and n < n_fft:
        n = n_fft
    dtype = torch.float64 if f64 else torch.float32
    mod = supermel.MelSpectrogram(sr=16000, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode, power=power,
                                  n_mels=8, fmax=8000.0, dtype=dtype)
    g = torch.Generator().manual_seed(n_fft * 7919 + n)
    y = torch.randn(batch, n * step, generator=g, dtype=dtype)[:, ::step]  # a strided input when step > 1
    a, b = _both_routes(lambda: mod(y))
    assert a.shape == b.shape and a.dtype == b.dtype
    bound = NATIVE_VS_TORCH[np.dtype(np.float64 if f64 else np.float32)] * 10  # tiny n_fft: few bins, larger relative rounding
    if power < 1:
        # |X|**power is Hoelder-continuous with exponent `power`, not Lipschitz: a bin at rounding level
        # (|X| ~ bound * peak) differs by up to ~(bound)**power of the peak between two routes that round
        # differently (hypothesis found n_fft=5, n=1, reflect, power 0.7, float64: 2.6e-12 of the peak).
        bound = bound**power
    assert _peak_err(a, b) <= bound


# --------------------------------------------------------------------------- fallback
def test_use_native_false_is_the_torch_route(make_signal):
    """``use_native(False)`` runs today's route: bit-identical to the torch functions it calls."""
    y = torch.from_numpy(make_signal("speech", 16000, 16000, (2,)))
    mod = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)
    with _native.use_native(False):
        assert not _native.enabled()
        got = mod(y)
        with _native.use_native(True):
            assert _native.enabled() == _native.available()
        assert not _native.enabled()
    z = mod.spectrogram.pad_input(y)
    want = supermel._core._mel_frames(z, **mod.mel_function(z.dtype).keywords)  # the torch functions themselves
    assert torch.equal(got, want)


def test_env_switch_off():
    code = "import supermel._native as n, supermel; assert not n.enabled(); print(supermel.melspectrogram(y=__import__('numpy').ones(4000, 'float32'), sr=16000).shape)"
    env = dict(os.environ, SUPERMEL_NATIVE="0")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(128, 8)" in r.stdout


# --------------------------------------------------------------------------- streaming
@needs_native
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(1, 1500), min_size=1, max_size=12),
    center=st.booleans(),
    pad_mode=st.sampled_from(["constant", "reflect"]),
    chunk=st.sampled_from([None, 160, 320]),
    f64=st.booleans(),
)
@pytest.mark.filterwarnings("ignore")
def test_streaming_any_chunking_equals_offline(cuts, center, pad_mode, chunk, f64):
    """Every chunking of a stream gives the offline frames bit for bit (one route: the native core)."""
    dtype = np.float64 if f64 else np.float32
    n = sum(cuts)
    if not center and n < 400:
        cuts.append(400 - n)
        n = 400
    y = np.random.default_rng(n).standard_normal((2, n)).astype(dtype)
    kw = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40, center=center, pad_mode=pad_mode)
    with _native.use_native(True):
        want = supermel.melspectrogram(y=y, **kw)
        stream = supermel.StreamingMelSpectrogram(num_streams=2, chunk_size=chunk, dtype=torch.float64 if f64 else torch.float32, **kw)
        if chunk is not None:  # a declared chunk size: pushes of that size (the static step), then the rest
            cuts = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
        outs, a = [], 0
        for c in cuts:
            outs.append(stream.push(y[:, a : a + c]))
            a += c
        outs.append(stream.flush())
    got = np.concatenate(outs, axis=-1)
    assert got.shape == want.shape
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------- StreamPool
@needs_native
@pytest.mark.parametrize("f64", [False, True])
@pytest.mark.parametrize("center", [True, False])
def test_pool_out_of_step_streams_equal_offline(f64, center):
    """StreamPool's gathered frames (steady, head and close) equal the offline call bit for bit."""
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(7)
    ys = [rng.standard_normal(n).astype(dtype) for n in (5000, 7310, 4410, 401)]
    kw = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40, center=center, pad_mode="reflect")
    with _native.use_native(True):
        pool = supermel.StreamPool(dtype=torch.float64 if f64 else torch.float32, **kw)
        ids = [pool.open() for _ in ys]
        got = {i: [] for i in ids}
        pos = [0] * len(ys)
        for _ in range(40):
            for j, i in enumerate(ids):
                c = int(rng.integers(50, 700))
                pool.push(i, ys[j][pos[j] : pos[j] + c])
                pos[j] += c
            for sid, pf in pool.step().items():
                got[sid].append(pf.frames)
        for j, i in enumerate(ids):
            got[i].append(pool.close(i).frames)
            want = supermel.melspectrogram(y=ys[j], **kw)
            assert np.array_equal(np.concatenate(got[i], -1), want)


@needs_native
@pytest.mark.parametrize("f64", [False, True])
def test_split_over_threads_is_bit_identical(f64):
    """A large call split over threads (whole lane batches per thread) equals the one-thread call."""
    dtype = np.float64 if f64 else np.float32
    mod, plan = _ref_plan(dtype)
    x = np.random.default_rng(8).standard_normal((3, 160 * 700 + 400)).astype(dtype)
    kw = dict(offset=3, hop=160, n_frames=700, dtype=dtype, out_dtype=dtype)
    one = _native.run_strided(plan, x, **kw)
    for threads in (2, 3, 8):
        assert np.array_equal(_native.run_strided(plan, x, threads=threads, **kw), one)
    rows, offs = np.repeat(np.arange(3), 700), np.tile(3 + 160 * np.arange(700), 3)
    g1 = _native.run_gather(plan, x, rows, offs, dtype=dtype, out_dtype=dtype)
    assert np.array_equal(_native.run_gather(plan, x, rows, offs, threads=4, dtype=dtype, out_dtype=dtype), g1)
    assert np.array_equal(g1.reshape(3, 700, 40).transpose(0, 2, 1), one)


@needs_native
def test_cpp_refuses_overflowing_and_misaligned_calls():
    """Arguments that would overflow the bounds arithmetic, or misaligned buffers, never run."""
    mod, plan = _ref_plan()
    x = np.ones((1, 1000), np.float32)
    with pytest.raises(ValueError):
        plan.strided(x, 2**62, 2**62, 2, np.empty((1, 40, 2), np.float32))
    with pytest.raises(ValueError):
        plan.strided(x, 0, 2**62, 3, np.empty((1, 40, 3), np.float32))
    with pytest.raises(ValueError):
        plan.gather(x, np.array([0], np.int64), np.array([2**63 - 100], np.int64), np.empty((1, 40), np.float32))
    raw = np.zeros(4001, np.uint8)
    mis = np.frombuffer(raw.data, dtype=np.float32, count=1000, offset=1).reshape(1, 1000)
    with pytest.raises(ValueError, match="aligned"):
        plan.strided(mis, 0, 160, 1, np.empty((1, 40, 1), np.float32))
    out_raw = np.zeros(161, np.uint8)
    mis_out = np.frombuffer(memoryview(out_raw)[1:], dtype=np.float32).reshape(1, 40, 1)
    with pytest.raises(ValueError, match="aligned"):
        plan.strided(x, 0, 160, 1, mis_out)


# --------------------------------------------------------------------------- the one-crossing fast path
@needs_native
@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_equals_the_padded_route(pad_mode, dtype):
    """MelSpectrogram.native_call (C++ padding, checks in one crossing) == pad_input + native_from_padded, bit for bit."""
    rng = np.random.default_rng(11)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    with _native.use_native(True):
        for center in (True, False):
            mod = supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40, center=center, pad_mode=pad_mode, dtype=tdt)
            for shape in [(400,), (401,), (3, 1000), (1, 16000)]:
                y = rng.standard_normal(shape).astype(dtype)
                fast = mod.native_call(y, True)
                assert fast is not None and isinstance(fast, np.ndarray) and fast.dtype == dtype
                t = torch.from_numpy(y.reshape(-1, shape[-1]))
                want = mod.native_from_padded(mod.spectrogram.pad_input(t, mod.n_mels)).numpy().reshape(shape[:-1] + (40, -1))
                assert np.array_equal(fast, want)
                ft = mod(torch.from_numpy(y))
                assert isinstance(ft, torch.Tensor) and np.array_equal(ft.numpy(), want)
                if len(shape) == 1 and center:
                    assert np.array_equal(supermel.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=40, pad_mode=pad_mode), want)


@needs_native
def test_fast_path_declines_and_the_general_path_answers():
    """Where the fast path does not apply, the general path's results, errors and warnings hold."""
    mod = supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)
    y = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    with _native.use_native(True):
        bad = y.copy()
        bad[3999] = np.nan  # the last sample: inside the padded signal's last frame only
        assert mod.native_call(bad, True) is None
        with pytest.raises(supermel.ParameterError, match="not finite"):
            mod(bad)
        with pytest.raises(supermel.ParameterError, match="not finite"):
            supermel.melspectrogram(y=bad, sr=16000, n_fft=400, hop_length=160, n_mels=40)
        huge = y * np.float32(1e20)  # finite audio whose power overflows float32
        assert mod.native_call(huge, True) is None
        with pytest.warns(RuntimeWarning, match="overflow"):
            mod(huge)
        assert mod.native_call(y[:100], True) is None  # shorter than n_fft: librosa's warning on the general path
        with pytest.warns(UserWarning, match="too large"):
            mod(y[:100])
        assert mod.native_call(y.astype(">f4"), True) is None  # byte-swapped: converted by the general path
        assert np.array_equal(mod(y.astype(">f4")), mod(y))
        assert mod.native_call(y[::2], True) is None  # non-contiguous
        assert mod.native_call(torch.from_numpy(y).requires_grad_(True), True) is None
        prev = supermel.set_memory_limit(10_000)
        try:
            assert mod.native_call(y, True) is None
            with pytest.raises(supermel.ParameterError, match="working memory"):
                mod(y)
        finally:
            supermel.set_memory_limit(prev)
        before = mod(y)
        with torch.no_grad():
            mod.mel_scale.fb.mul_(2)  # in place: the fast path's state follows
        assert np.array_equal(mod(y), mod.native_from_padded(mod.spectrogram.pad_input(torch.from_numpy(y)[None], 40))[0].numpy())
        assert not np.array_equal(mod(y), before)
    with _native.use_native(False):
        assert mod.native_call(y, True) is None


@needs_native
@pytest.mark.parametrize("chunk_size", [None, 200])
def test_native_push_refuses_nan_and_keeps_the_stream(chunk_size):
    """The one-call push (copy, finiteness check, frames in C++): a NaN chunk raises and leaves the
    ring as it was; the pushes after it equal the offline call bit for bit."""
    y = np.random.default_rng(5).standard_normal(8000).astype(np.float32)
    kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    with _native.use_native(True):
        s = supermel.StreamingMelSpectrogram(chunk_size=chunk_size, **kw)
        outs = [s.push(y[i : i + 200]) for i in range(0, 4000, 200)]
        bad = y[4000:4200].copy()
        bad[7] = np.inf
        with pytest.raises(supermel.ParameterError, match="not finite"):
            s.push(bad)
        outs += [s.push(y[i : i + 200]) for i in range(4000, 8000, 200)]
        outs.append(s.flush())
        assert np.array_equal(np.concatenate(outs, axis=-1), supermel.MelSpectrogram(**kw)(y))


@needs_native
def test_ring_write_wraps_keeps_the_mirror_and_refuses_bad_writes():
    C, L = 10, 4
    ring = np.zeros((3, C + L), np.float32)
    x = np.arange(1, 13, dtype=np.float32)
    # row 1: 5 samples from sample 8 (wraps: 8, 9 then 0, 1, 2); row 2: 3 samples from sample 14 (position 4)
    _native.ring_write(ring, np.array([1, 2]), np.array([8, 14]), x, np.array([0, 5]), np.array([5, 3]), C=C, L=L)
    want = np.zeros((3, C + L), np.float32)
    want[1, [8, 9, 0, 1, 2]] = x[:5]
    want[1, C:] = want[1, :L]
    want[2, 4:7] = x[5:8]
    assert np.array_equal(ring, want)
    for bad in [dict(slots=[3]), dict(ats=[-1]), dict(lengths=[C + 1]), dict(starts=[10], lengths=[5])]:
        args = dict(slots=[0], ats=[0], starts=[0], lengths=[2]) | bad
        with pytest.raises(supermel.ParameterError):
            _native.ring_write(ring, *(np.array(args[k]) for k in ("slots", "ats")), x, np.array(args["starts"]), np.array(args["lengths"]), C=C, L=L)
        with pytest.raises(ValueError):  # the C++ checks on their own
            _native._ext.ring_write(ring, *(np.array(args[k], np.int64) for k in ("slots", "ats")), x, np.array(args["starts"], np.int64),
                                    np.array(args["lengths"], np.int64), C, L)
    with pytest.raises(supermel.ParameterError):
        _native.ring_write(ring[:, :-1], np.array([0]), np.array([0]), x, np.array([0]), np.array([1]), C=C, L=L)


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kaldi_prep_matches_process_frames(dtype):
    """The native Kaldi pre-step (DC removal, pre-emphasis, placement in the n_fft slot) against the
    torch steps (process_frames + pad), on a strided view of a signal; bad arguments refused."""
    from supermel.presets.kaldi import extract_frames, process_frames

    y = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 4000)).astype(dtype) * 1000)
    frames = extract_frames(y, window_size=400, window_shift=160, snip_edges=True)
    for dc, c in [(True, 0.97), (False, 0.97), (True, 0.0)]:
        got = _native.kaldi_prep(frames.numpy(), n_fft=512, lo=56, remove_dc=dc, preemph=c)
        want = torch.nn.functional.pad(process_frames(frames, remove_dc_offset=dc, preemphasis_coefficient=c), (56, 56)).reshape(2, -1).numpy()
        assert got.shape == want.shape and np.all(got[:, :56] == 0)
        tol = 1e-3 if dtype == np.float32 else 1e-9  # the mean: summed in double here, by torch's reduction there
        assert np.max(np.abs(got - want)) <= tol
    with pytest.raises(supermel.ParameterError):
        _native.kaldi_prep(frames.numpy(), n_fft=512, lo=200, remove_dc=True, preemph=0.97)
    with pytest.raises(ValueError):
        _native._ext.kaldi_prep(frames.numpy(), np.empty((2, 10), dtype), 512, 56, True, 0.97)


@needs_native
def test_fast_path_declining_warns_once():
    """A call the fast path declines replays the filterbank's warnings once, as before it."""
    import warnings

    y = np.zeros(30, np.float32)  # shorter than n_fft: the general path (and librosa's short-signal warning)
    with _native.use_native(True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        supermel.melspectrogram(y=y, sr=8000, n_fft=64, n_mels=128)  # 33 bins for 128 bands: empty filters
    assert sum("Empty filters" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("n", [512, 513, 520, 544, 545, 600])
@pytest.mark.parametrize("n_fft,hop", [(64, 64), (64, 48), (400, 400)])
def test_reflect_tail_shorter_than_the_padding_matches_librosa(n, n_fft, hop):
    """librosa reflects the tail segment ``y[tail_k hop - pad:]`` on its own; when it holds at most
    ``pad`` samples numpy's reflection folds back, which padding the whole signal does not: the
    native one-crossing path must leave such inputs to the general path (found by
    tests/test_pool.py's schedules: n=512, n_fft=hop=64)."""
    y = np.random.default_rng(n).standard_normal(n)
    kw = dict(sr=8000, n_fft=n_fft, hop_length=hop, n_mels=10, pad_mode="reflect", center=True)
    want = librosa.feature.melspectrogram(y=y, **kw)
    got = supermel.melspectrogram(y=y, **kw)
    assert got.shape == want.shape
    assert rel_err(got, want) < 1e-12
