"""Parity with librosa 0.11: filterbanks, STFT, spectrogram, mel spectrogram, dB, MFCC.

The acceptance criterion: on white noise and on real speech, over a
representative parameter grid, supermel's output has librosa's shape and dtype
and a relative Frobenius error of at most 2e-5 (float32) or 1e-6 (float64).
The grid is a base configuration varied one or two axes at a time, plus random
combinations drawn with a fixed seed (a full cartesian product would take hours).
"""

from __future__ import annotations

import functools
import random
import warnings

import librosa
import numpy as np
import pytest
import torch
from conftest import SEED, TOL, assert_like_librosa, rel_err, user_warnings, white_noise
from hypothesis import given, settings
from hypothesis import strategies as st

import supermel

PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric")
DTYPES = (np.float32, np.float64)
KINDS = ("noise", "speech")
BATCH_SHAPES = ((), (2,), (2, 3))

#: An explicit window: arbitrary positive values (not a named window).
ARRAY_WINDOW = np.random.default_rng(SEED).uniform(0.1, 1.0, 400)

STFT_KEYS = ("n_fft", "hop_length", "win_length", "window", "center", "pad_mode")
SPEC_KEYS = STFT_KEYS + ("power",)

BASE = dict(
    sr=16000,
    n_fft=512,
    hop_length=128,
    win_length=None,
    window="hann",
    center=True,
    pad_mode="constant",
    power=2.0,
    n_mels=64,
    fmin=0.0,
    fmax=None,
    htk=False,
    norm="slaney",
)

# Variations of the STFT axes (they apply to stft, spectrogram and melspectrogram).
STFT_CASES = [
    ("base", {}),
    ("n_fft=255-odd", dict(n_fft=255, hop_length=64)),
    ("n_fft=400", dict(n_fft=400, hop_length=160)),
    ("n_fft=1000", dict(n_fft=1000, hop_length=250)),
    ("n_fft=2048-hop=512", dict(n_fft=2048, hop_length=512)),
    ("hop=100-not-dividing", dict(hop_length=100)),
    ("hop=333-gt-half", dict(hop_length=333)),
    ("hop=n_fft", dict(hop_length=512)),
    ("hop=700-gt-n_fft", dict(hop_length=700)),
    ("hop=None", dict(hop_length=None)),
    ("win=400", dict(win_length=400)),
    ("win=257-odd", dict(win_length=257)),
    ("n_fft=511-win=300", dict(n_fft=511, win_length=300)),
    ("hamming", dict(window="hamming")),
    ("blackman", dict(window="blackman")),
    ("kaiser8", dict(window=("kaiser", 8.0))),
    ("array-window", dict(window=ARRAY_WINDOW, win_length=400)),
    ("callable-window", dict(window=np.hanning, win_length=300)),
    ("center=False", dict(center=False)),
    ("center=False-odd", dict(center=False, n_fft=255, hop_length=100)),
    ("center=False-win=300", dict(center=False, win_length=300, hop_length=300)),
    *[(f"pad={m}", dict(pad_mode=m)) for m in PAD_MODES[1:]],
    ("reflect-hop=300", dict(pad_mode="reflect", hop_length=300)),
    ("symmetric-odd-hop=200", dict(pad_mode="symmetric", n_fft=255, hop_length=200)),
    ("edge-hop=700", dict(pad_mode="edge", hop_length=700)),
    ("linear_ramp-win=300", dict(pad_mode="linear_ramp", win_length=300, hop_length=96)),
]

POWER_CASES = [
    ("power=1", dict(power=1.0)),
    ("power=1.5", dict(power=1.5)),
    ("power=1-reflect-kaiser", dict(power=1, pad_mode="reflect", window=("kaiser", 8.0))),
]

SR_CASES = [
    ("sr=8000", dict(sr=8000, n_fft=256, hop_length=80, n_mels=40)),
    ("sr=22050-librosa-defaults", dict(sr=22050, n_fft=2048, hop_length=512, n_mels=128)),
    ("sr=44100", dict(sr=44100, n_fft=2048, hop_length=441, n_mels=128, fmax=16000.0)),
    ("sr=48000", dict(sr=48000, n_fft=1200, hop_length=480, n_mels=96)),
]

# Variations of the filterbank axes (melspectrogram only).
MEL_CASES = [
    ("htk", dict(htk=True)),
    ("norm=None", dict(norm=None)),
    ("norm=1", dict(norm=1.0)),
    ("norm=2", dict(norm=2.0)),
    ("norm=inf", dict(norm=np.inf)),
    ("htk-norm=None", dict(htk=True, norm=None, n_mels=40)),
    ("fmin=30", dict(fmin=30.0)),
    ("fmax=7600", dict(fmax=7600.0)),
    ("fmin=125-fmax=3800", dict(fmin=125.0, fmax=3800.0, n_mels=40)),
    ("fmax=nyquist", dict(fmax=8000.0)),
    ("n_mels=128", dict(n_mels=128)),
    ("n_mels=80-fmin=55-fmax=7600", dict(n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)),
    # librosa's `dtype` keyword (the filterbank's precision): the output dtype is
    # np.result_type(audio, filterbank), e.g. float64 for float32 audio here.
    ("mel-dtype=float64", dict(dtype=np.float64)),
    ("mel-dtype=float16", dict(dtype=np.float16, n_mels=40)),
]


def _random_cases(count: int, seed: int):
    """Random combinations of every axis, drawn once with a fixed seed."""
    r = random.Random(seed)
    cases = []
    windows = ["hann", "hamming", "blackman", ("kaiser", 8.0), "array"]
    while len(cases) < count:
        sr = r.choice([8000, 11025, 16000, 22050, 32000, 44100, 48000])
        n_fft = r.choice([200, 255, 256, 400, 511, 512, 777, 1024, 2048])
        win_length = r.choice([None, r.randint(n_fft // 3, n_fft)])
        hop_length = r.randint(max(1, n_fft // 8), 3 * n_fft // 2)
        window = r.choice(windows)
        if window == "array":
            window = np.random.default_rng(seed + len(cases)).uniform(0.1, 1.0, win_length or n_fft)
        fmin = r.choice([0.0, 20.0, 60.5])
        fmax = r.choice([None, sr / 2, 0.45 * sr])
        case = dict(
            sr=sr,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            window=window,
            center=r.random() < 0.75,
            pad_mode=r.choice(PAD_MODES),
            power=r.choice([1.0, 1.5, 2.0]),
            n_mels=r.choice([20, 40, 64, 80, 128]),
            fmin=fmin,
            fmax=fmax,
            htk=r.random() < 0.5,
            norm=r.choice(["slaney", None, 1.0, 2.0, np.inf]),
        )
        extra = dict(batch_shape=r.choice(BATCH_SHAPES), kind=r.choice(KINDS))
        cases.append((f"random{len(cases)}", case, extra))
    return cases


RANDOM_CASES = _random_cases(14, SEED)


def _config(overrides):
    cfg = dict(BASE)
    cfg.update(overrides)
    return cfg


def _params(cases):
    """pytest params with a batch shape assigned round-robin (every shape meets every kind of case)."""
    return [pytest.param(_config(c), BATCH_SHAPES[i % 3], id=name) for i, (name, c) in enumerate(cases)]


def _signal(make_signal, cfg, kind, batch_shape, dtype):
    # ~0.8 s, a length that is a multiple of nothing in particular.
    n = int(0.8 * cfg["sr"]) + 37
    return make_signal(kind, cfg["sr"], n, batch_shape, dtype)


def _pick(cfg, keys):
    return {k: cfg[k] for k in keys}


def _librosa_mel(y, cfg):
    return librosa.feature.melspectrogram(y=y, **cfg)


def _quiet(fn):
    """Call fn with the 'Empty filters' warning silenced (librosa and supermel both emit it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        return fn()


# =========================================================================== mel filters
FB_VARIANTS = [
    ("base", {}),
    ("htk", dict(htk=True)),
    ("norm=None", dict(norm=None)),
    ("norm=1", dict(norm=1.0)),
    ("norm=2", dict(norm=2)),
    ("norm=2.5", dict(norm=2.5)),
    ("norm=inf", dict(norm=np.inf)),
    ("htk-norm=None-n_mels=40", dict(htk=True, norm=None, n_mels=40)),
    ("fmin=20-fmax=3000", dict(fmin=20.0, fmax=3000.0)),
    ("fmin=133.3-htk", dict(fmin=133.3, htk=True, n_mels=80)),
    ("n_mels=256", dict(n_mels=256)),
    ("n_mels=13", dict(n_mels=13)),
    ("float64", dict(dtype=np.float64)),
    ("float64-htk-norm=1", dict(dtype=np.float64, htk=True, norm=1.0)),
]


@pytest.mark.parametrize("variant", [pytest.param(v, id=n) for n, v in FB_VARIANTS])
@pytest.mark.parametrize("n_fft", [255, 512, 2048])
@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_mel_filters_equal_librosa(sr, n_fft, variant):
    kw = dict(sr=sr, n_fft=n_fft, **variant)
    want, lib_warnings = user_warnings(lambda: librosa.filters.mel(**kw))
    if lib_warnings:
        with pytest.warns(UserWarning, match="Empty filters detected in mel frequency basis") as record:
            got = supermel.mel_filters(**kw)
        assert sorted({str(w.message) for w in record}) == lib_warnings
    else:
        got, sm_warnings = user_warnings(lambda: supermel.mel_filters(**kw))
        assert sm_warnings == []
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_mel_filters_empty_filter_warning():
    """A configuration where librosa warns: supermel warns the same and returns the same zeros."""
    kw = dict(sr=16000, n_fft=512, n_mels=256)
    want, lib_warnings = user_warnings(lambda: librosa.filters.mel(**kw))
    assert any("Empty filters detected" in m for m in lib_warnings), "precondition: librosa warns here"
    with pytest.warns(UserWarning, match="Empty filters detected in mel frequency basis"):
        got = supermel.mel_filters(**kw)
    np.testing.assert_array_equal(got, want)
    assert (got.max(axis=1) == 0).any()


def test_mel_filters_default_arguments():
    """Keyword defaults equal librosa's (n_mels=128, slaney scale and norm, float32)."""
    want = librosa.filters.mel(sr=22050, n_fft=2048)
    got = supermel.mel_filters(sr=22050, n_fft=2048)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_mel_filters_returns_a_fresh_writable_array():
    """The filterbank is cached internally; callers must not be able to corrupt the cache."""
    a = supermel.mel_filters(sr=16000, n_fft=512, n_mels=40)
    a[:] = -1.0
    b = supermel.mel_filters(sr=16000, n_fft=512, n_mels=40)
    np.testing.assert_array_equal(b, librosa.filters.mel(sr=16000, n_fft=512, n_mels=40))


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_helpers_equal_librosa(htk):
    f = np.concatenate([np.linspace(0.0, 24000.0, 97), [999.9, 1000.0, 1000.1]])
    np.testing.assert_allclose(supermel.hz_to_mel(f, htk=htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12, atol=0)
    m = librosa.hz_to_mel(f, htk=htk)
    np.testing.assert_allclose(supermel.mel_to_hz(m, htk=htk), librosa.mel_to_hz(m, htk=htk), rtol=1e-12, atol=0)
    for scalar in (0.0, 440.0, 1000.0, 8000.0):
        np.testing.assert_allclose(supermel.hz_to_mel(scalar, htk=htk), librosa.hz_to_mel(scalar, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(
        supermel.mel_frequencies(40, fmin=30.0, fmax=7600.0, htk=htk),
        librosa.mel_frequencies(40, fmin=30.0, fmax=7600.0, htk=htk),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(supermel.fft_frequencies(sr=22050, n_fft=1023), librosa.fft_frequencies(sr=22050, n_fft=1023))


# =========================================================================== stft / spectrogram
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cfg,batch_shape", _params(STFT_CASES))
def test_stft_equals_librosa(cfg, batch_shape, dtype, kind, make_signal):
    y = _signal(make_signal, cfg, kind, batch_shape, dtype)
    kw = _pick(cfg, STFT_KEYS)
    want = librosa.stft(y, **kw)
    got = supermel.stft(y, **kw)
    assert np.iscomplexobj(got)
    assert_like_librosa(got, want, what="stft")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cfg,batch_shape", _params(STFT_CASES + POWER_CASES))
def test_spectrogram_equals_librosa(cfg, batch_shape, dtype, kind, make_signal):
    y = _signal(make_signal, cfg, kind, batch_shape, dtype)
    want = np.abs(librosa.stft(y, **_pick(cfg, STFT_KEYS))) ** cfg["power"]
    got = supermel.spectrogram(y=y, **_pick(cfg, SPEC_KEYS))
    assert_like_librosa(got, want, what="spectrogram")


def test_stft_default_arguments(speech):
    """librosa's defaults: n_fft 2048, hop win_length // 4, hann, center, constant padding."""
    y = speech[0][:30000]
    assert_like_librosa(supermel.stft(y), librosa.stft(y), what="stft defaults")
    assert_like_librosa(supermel.spectrogram(y=y), np.abs(librosa.stft(y)) ** 2, what="spectrogram defaults")


# =========================================================================== melspectrogram
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cfg,batch_shape", _params(STFT_CASES + POWER_CASES + SR_CASES + MEL_CASES))
def test_melspectrogram_equals_librosa(cfg, batch_shape, dtype, kind, make_signal):
    y = _signal(make_signal, cfg, kind, batch_shape, dtype)
    want = _quiet(lambda: _librosa_mel(y, cfg))
    got = _quiet(lambda: supermel.melspectrogram(y=y, **cfg))
    assert_like_librosa(got, want, what="melspectrogram")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,cfg,extra", RANDOM_CASES, ids=[c[0] for c in RANDOM_CASES])
def test_melspectrogram_random_configs(name, cfg, extra, dtype, make_signal):
    y = _signal(make_signal, cfg, extra["kind"], extra["batch_shape"], dtype)
    if not cfg["center"] and y.shape[-1] < cfg["n_fft"]:
        pytest.fail("the signal must be longer than n_fft for center=False")
    want = _quiet(lambda: _librosa_mel(y, cfg))
    got = _quiet(lambda: supermel.melspectrogram(y=y, **cfg))
    assert_like_librosa(got, want, what=f"melspectrogram {name} {cfg}")
    # the STFT of the same configuration
    kw = _pick(cfg, STFT_KEYS)
    assert_like_librosa(supermel.stft(y, **kw), librosa.stft(y, **kw), what=f"stft {name}")


def test_melspectrogram_empty_filter_warning(make_signal):
    """Where librosa's melspectrogram warns about empty filters, building the module warns too."""
    kw = dict(sr=16000, n_fft=512, hop_length=128, n_mels=256)
    y = make_signal("speech", 16000, 8000)
    want, lib_warnings = user_warnings(lambda: librosa.feature.melspectrogram(y=y, **kw))
    assert any("Empty filters detected" in m for m in lib_warnings), "precondition: librosa warns here"
    with pytest.warns(UserWarning, match="Empty filters detected in mel frequency basis"):
        module = supermel.MelSpectrogram(**kw)
    assert_like_librosa(module(y), want, what="empty filters")


def test_melspectrogram_default_arguments(speech_at):
    """No keywords at all: sr 22050, n_fft 2048, hop 512, 128 slaney mels."""
    y = speech_at(22050)[: 3 * 22050]
    assert_like_librosa(supermel.melspectrogram(y=y), librosa.feature.melspectrogram(y=y), what="defaults")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(
    "kw",
    [
        pytest.param(dict(n_fft=400, hop_length=160, n_mels=80), id="whisper-like"),
        pytest.param(dict(n_fft=2048, hop_length=512), id="librosa-defaults"),
        pytest.param(dict(n_fft=1024, hop_length=256, pad_mode="reflect", power=1.0, n_mels=80, fmax=8000.0), id="vocoder-like"),
    ],
)
def test_melspectrogram_full_speech_clip(speech, kw, dtype):
    """The whole 12 s clip (thousands of frames: exercises the CPU's frame blocking)."""
    y, sr = speech
    y = y.astype(dtype)
    want = librosa.feature.melspectrogram(y=y, sr=sr, **kw)
    got = supermel.melspectrogram(y=y, sr=sr, **kw)
    assert_like_librosa(got, want, what="full clip")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_batch_shapes_long_signal(make_signal, batch_shape, dtype):
    """Batches of long signals (several CPU frame blocks per item)."""
    y = make_signal("speech", 16000, 3 * 16000 + 5, batch_shape, dtype)
    kw = dict(sr=16000, n_fft=512, hop_length=100, n_mels=64, pad_mode="reflect")
    want = librosa.feature.melspectrogram(y=y, **kw)
    got = supermel.melspectrogram(y=y, **kw)
    assert want.shape == batch_shape + (64, 1 + y.shape[-1] // 100)
    assert_like_librosa(got, want, what="batch")


# =========================================================================== short inputs
@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("n_fft", [256, 255])
@pytest.mark.parametrize("func", ["stft", "melspectrogram"])
def test_short_input_centered(func, n_fft, pad_mode, rng):
    """center=True with len(y) < n_fft: librosa warns and numpy's padding wraps; same warning, same values."""
    hop = n_fft // 4
    lengths = sorted({1, 2, 3, n_fft // 2 - 1, n_fft // 2, n_fft // 2 + 1, n_fft // 2 + 2, n_fft - 1, n_fft, n_fft + 1})
    for i, n in enumerate(lengths):
        dtype = DTYPES[i % 2]
        shape = (n,) if i % 3 else (2, n)
        y = white_noise(rng, shape, dtype)
        if func == "stft":
            kw = dict(n_fft=n_fft, hop_length=hop, pad_mode=pad_mode)
            want, lib_warnings = user_warnings(lambda: librosa.stft(y, **kw))
            call = lambda: supermel.stft(y, **kw)  # noqa: E731
        else:
            kw = dict(sr=16000, n_fft=n_fft, hop_length=hop, pad_mode=pad_mode, n_mels=20)
            want, lib_warnings = user_warnings(lambda: librosa.feature.melspectrogram(y=y, **kw))
            call = lambda: supermel.melspectrogram(y=y, **kw)  # noqa: E731
        too_large = f"n_fft={n_fft} is too large for input signal of length={n}"
        assert (too_large in lib_warnings) == (n < n_fft), "precondition: librosa warns exactly for short input"
        if n < n_fft:
            with pytest.warns(UserWarning, match=f"^{too_large}$") as record:
                got = call()
            assert sorted({str(w.message) for w in record}) == lib_warnings
        else:
            got, sm_warnings = user_warnings(call)
            assert sm_warnings == lib_warnings == []
        assert_like_librosa(got, want, what=f"{func} n={n} shape={shape} {dtype.__name__}")


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize(
    "n_fft,hop", [(400, 201), (400, 300), (400, 400), (255, 128), (255, 200), (256, 1000)], ids=lambda v: str(v)
)
def test_large_hop_head_and_tail_padding(n_fft, hop, pad_mode, rng):
    """hop > n_fft / 2: librosa pads head and tail segments separately; lengths around every boundary."""
    half = n_fft // 2
    lengths = {1, half, half + 1, n_fft - 1, n_fft, n_fft + 1, hop - 1, hop, hop + 1, 2 * hop - 1, 2 * hop + 1}
    lengths |= {k * hop + half + d for k in (1, 2, 3, 5) for d in (-1, 0, 1)}
    lengths |= {k * hop + n_fft + d for k in (1, 2) for d in (-1, 0, 1)}
    base = white_noise(rng, (2, max(lengths)), np.float64)
    for n in sorted(x for x in lengths if x > 0):
        y = base[..., :n]
        kw = dict(n_fft=n_fft, hop_length=hop, pad_mode=pad_mode)
        want = _quiet_short(lambda: librosa.stft(y, **kw))
        got = _quiet_short(lambda: supermel.stft(y, **kw))
        assert_like_librosa(got, want, what=f"stft n={n}")
        y32 = y.astype(np.float32)
        want_p = np.abs(_quiet_short(lambda: librosa.stft(y32, **kw))) ** 1.5
        got_p = _quiet_short(lambda: supermel.spectrogram(y=y32, power=1.5, **kw))
        assert_like_librosa(got_p, want_p, what=f"spectrogram n={n}")


def _quiet_short(fn):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        return fn()


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (255, 100), (400, 400), (256, 300)], ids=str)
def test_uncentered_frame_boundaries(n_fft, hop, rng):
    """center=False at lengths n_fft, n_fft + 1, and at the edges of the next frame."""
    base = white_noise(rng, (3, n_fft + 3 * hop + 1), np.float32)
    for n in (n_fft, n_fft + 1, n_fft + hop - 1, n_fft + hop, n_fft + hop + 1, n_fft + 3 * hop + 1):
        y = base[..., :n]
        kw = dict(n_fft=n_fft, hop_length=hop, center=False)
        assert_like_librosa(supermel.stft(y, **kw), librosa.stft(y, **kw), what=f"stft n={n}")
        want = librosa.feature.melspectrogram(y=y, sr=16000, n_mels=32, **kw)
        assert_like_librosa(supermel.melspectrogram(y=y, sr=16000, n_mels=32, **kw), want, what=f"mel n={n}")


# =========================================================================== property-based
HYPOTHESIS = settings(max_examples=120, deadline=None, derandomize=True, database=None)


@HYPOTHESIS
@given(
    n_fft=st.integers(2, 600),
    hop_frac=st.floats(0.05, 2.5),
    win_frac=st.floats(0.3, 1.0),
    n=st.integers(1, 3000),
    pad_mode=st.sampled_from(PAD_MODES),
    center=st.booleans(),
    f64=st.booleans(),
)
def test_stft_any_geometry(n_fft, hop_frac, win_frac, n, pad_mode, center, f64):
    """Any n_fft, hop, window length, signal length and padding (derandomized: reproducible)."""
    hop = max(1, int(hop_frac * n_fft))
    win = max(1, int(win_frac * n_fft))
    if not center and n < n_fft:
        n = n_fft + n % 50
    y = white_noise(np.random.default_rng(n), (n,), np.float64 if f64 else np.float32)
    kw = dict(n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode)
    want = _quiet_short(lambda: librosa.stft(y, **kw))
    assert_like_librosa(_quiet_short(lambda: supermel.stft(y, **kw)), want, what=f"stft {kw} n={n}")
    got_mag = _quiet_short(lambda: supermel.spectrogram(y=y, power=1.0, **kw))
    assert_like_librosa(got_mag, np.abs(want), what=f"spectrogram {kw} n={n}")


@settings(HYPOTHESIS, max_examples=50)
@given(
    sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    n_fft=st.integers(64, 1500),
    hop_frac=st.floats(0.1, 1.5),
    n_mels=st.integers(1, 160),
    fmin_frac=st.floats(0.0, 0.3),
    fmax_frac=st.floats(0.35, 1.0),
    htk=st.booleans(),
    norm=st.sampled_from(["slaney", None, 1.0, 2.0, np.inf]),
    power=st.sampled_from([1.0, 1.5, 2.0]),
    kind=st.sampled_from(KINDS),
)
def test_melspectrogram_any_filterbank(sr, n_fft, hop_frac, n_mels, fmin_frac, fmax_frac, htk, norm, power, kind):
    """Random filterbanks (empty filters included) on speech and noise (derandomized: reproducible)."""
    cfg = dict(sr=sr, n_fft=n_fft, hop_length=max(1, int(hop_frac * n_fft)), n_mels=n_mels, htk=htk, norm=norm, power=power)
    cfg.update(fmin=fmin_frac * sr / 2, fmax=fmax_frac * sr / 2)
    y = _hypothesis_signal(kind, sr)
    want = _quiet(lambda: librosa.feature.melspectrogram(y=y, **cfg))
    got = _quiet(lambda: supermel.melspectrogram(y=y, **cfg))
    assert_like_librosa(got, want, what=f"melspectrogram {cfg}")


@functools.lru_cache(maxsize=None)
def _hypothesis_signal(kind, sr):
    """0.5 s of noise or speech at sr (hypothesis tests cannot take function fixtures)."""
    from supermel import audio

    if kind == "noise":
        return white_noise(np.random.default_rng(SEED), (sr // 2,), np.float32)
    y16, _ = audio.example_audio()
    return audio.resample(y16[16000:24000], orig_sr=16000, target_sr=sr)


# =========================================================================== S= path of melspectrogram
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize(
    "kw",
    [
        pytest.param(dict(n_fft=512, power=2.0), id="power"),
        pytest.param(dict(n_fft=255, power=1.0, htk=True, norm=None, n_mels=40), id="odd-magnitude-htk"),
        pytest.param(dict(n_fft=400, power=2.0, fmin=60.0, fmax=7000.0, norm=2.0, n_mels=80), id="fmin-fmax-norm2"),
    ],
)
def test_melspectrogram_from_S(make_signal, kw, batch_shape, dtype):
    kw = dict(kw)
    power = kw.pop("power")
    n_fft = kw["n_fft"]
    y = make_signal("speech", 16000, 12000, batch_shape, dtype)
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=160)) ** power
    want = librosa.feature.melspectrogram(S=S, sr=16000, **kw)
    assert_like_librosa(supermel.melspectrogram(S=S, sr=16000, **kw), want, what="S= numpy")
    got_t = supermel.melspectrogram(S=torch.from_numpy(S), sr=16000, **kw)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.from_numpy(S).dtype
    assert rel_err(got_t, want) <= TOL[np.dtype(dtype)]


def test_melspectrogram_from_S_infers_n_fft(make_signal):
    """librosa infers n_fft = 2 (bins - 1) from S when n_fft does not match it (here: the default 2048)."""
    y = make_signal("speech", 16000, 12000)
    S = np.abs(librosa.stft(y, n_fft=512, hop_length=128)) ** 2
    want = librosa.feature.melspectrogram(S=S, sr=16000, n_mels=40)
    got = supermel.melspectrogram(S=S, sr=16000, n_mels=40)
    assert_like_librosa(got, want, what="S= with inferred n_fft")


# =========================================================================== decibels
def _db_input(make_signal, dtype):
    """A (2, 64, T) mel power spectrogram of speech with silent frames (exact zeros);
    the second item is 1e-4 times quieter, so whole-array and per-item maxima differ."""
    return _db_input_cached(make_signal, np.dtype(dtype)).copy()


@functools.lru_cache(maxsize=None)
def _db_input_cached(make_signal, dtype):
    y = make_signal("speech", 16000, 16000, (2,), np.float64)
    y[..., 3000:8000] = 0.0
    y[1] *= 1e-2
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, n_mels=64).astype(dtype)
    assert (S == 0).any()
    return S


REFS = [
    pytest.param(1.0, id="ref=1"),
    pytest.param(1e-3, id="ref=1e-3"),
    pytest.param(np.max, id="ref=np.max"),
    pytest.param(np.median, id="ref=np.median"),
    pytest.param(lambda s: 0.5 * s.mean(), id="ref=lambda"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("top_db", [None, 80.0, 40, 0.0], ids=lambda v: f"top_db={v}")
@pytest.mark.parametrize("ref", REFS)
@pytest.mark.parametrize("fn", ["power_to_db", "amplitude_to_db"])
def test_db_equals_librosa(fn, ref, top_db, dtype, make_signal):
    S = _db_input(make_signal, dtype)
    if fn == "amplitude_to_db":
        S = np.sqrt(S)
    want = getattr(librosa, fn)(S, ref=ref, top_db=top_db)
    got = getattr(supermel, fn)(S, ref=ref, top_db=top_db)
    assert_like_librosa(got, want, what=fn)
    got_t = getattr(supermel, fn)(torch.from_numpy(S), ref=ref, top_db=top_db)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.from_numpy(S).dtype
    assert rel_err(got_t, want) <= TOL[np.dtype(dtype)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("amin", [1e-10, 1e-5, 1e-3, 0.05])
@pytest.mark.parametrize("fn", ["power_to_db", "amplitude_to_db"])
def test_db_amin_equals_librosa(fn, amin, dtype, make_signal):
    S = _db_input(make_signal, dtype)
    for ref in (1.0, np.max):
        want = getattr(librosa, fn)(S, ref=ref, amin=amin, top_db=None)
        got = getattr(supermel, fn)(S, ref=ref, amin=amin, top_db=None)
        assert_like_librosa(got, want, what=f"{fn} amin={amin} ref={ref}")


def test_db_top_db_is_over_the_whole_array(make_signal):
    """librosa 0.11 semantics: ref=np.max and top_db use the whole array, batch included."""
    S = _db_input(make_signal, np.float32)
    want = librosa.power_to_db(S, ref=np.max, top_db=60.0)
    got = supermel.power_to_db(S, ref=np.max, top_db=60.0)
    per_item = np.stack([librosa.power_to_db(s, ref=np.max, top_db=60.0) for s in S])
    assert rel_err(want, per_item) > 1e-2, "precondition: the two semantics differ on this input"
    assert_like_librosa(got, want, what="whole-array top_db")


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("fn", ["power_to_db", "amplitude_to_db"])
def test_db_of_complex_input(fn, dtype, make_signal):
    """Complex input: the magnitude is used (librosa warns that phase is discarded)."""
    y = make_signal("speech", 16000, 8000, (), np.float64)
    D = librosa.stft(y, n_fft=512, hop_length=128).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = getattr(librosa, fn)(D, ref=np.max)
        got = getattr(supermel, fn)(D, ref=np.max)
    assert_like_librosa(got, want, what=fn)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("ref", [1.0, 2.5, 1e-3])
@pytest.mark.parametrize("fn", ["db_to_power", "db_to_amplitude"])
def test_db_inverse_equals_librosa(fn, ref, dtype, make_signal):
    S_db = librosa.power_to_db(_db_input(make_signal, dtype), top_db=None)
    want = getattr(librosa, fn)(S_db, ref=ref)
    got = getattr(supermel, fn)(S_db, ref=ref)
    assert_like_librosa(got, want, what=fn)
    got_t = getattr(supermel, fn)(torch.from_numpy(S_db), ref=ref)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.from_numpy(S_db).dtype
    assert rel_err(got_t, want) <= TOL[np.dtype(dtype)]


# =========================================================================== mfcc
MFCC_MEL = dict(n_fft=512, hop_length=160, n_mels=40)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("norm", [None, "ortho"], ids=lambda v: f"norm={v}")
@pytest.mark.parametrize("dct_type", [1, 2, 3], ids=lambda v: f"dct{v}")
def test_mfcc_dct_equals_librosa(dct_type, norm, dtype, make_signal):
    y = make_signal("speech", 16000, 20000, (), dtype)
    kw = dict(sr=16000, n_mfcc=20, dct_type=dct_type, norm=norm, **MFCC_MEL)
    assert_like_librosa(supermel.mfcc(y=y, **kw), librosa.feature.mfcc(y=y, **kw), what="mfcc")


@pytest.mark.parametrize("n_mfcc", [13, 40])
@pytest.mark.parametrize("lifter", [0, 1.5, 22, 100])
def test_mfcc_lifter_equals_librosa(lifter, n_mfcc, make_signal):
    y = make_signal("speech", 16000, 20000, (2,), np.float32)
    kw = dict(sr=16000, n_mfcc=n_mfcc, lifter=lifter, **MFCC_MEL)
    assert_like_librosa(supermel.mfcc(y=y, **kw), librosa.feature.mfcc(y=y, **kw), what="mfcc lifter")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(
    "kw",
    [
        pytest.param(dict(n_fft=400, hop_length=160, n_mels=80, fmin=20.0, fmax=7600.0), id="fmin-fmax"),
        pytest.param(dict(n_fft=512, hop_length=128, htk=True, n_mels=26, window="hamming"), id="htk-hamming"),
        pytest.param(dict(n_fft=255, hop_length=100, center=False, power=1.0, n_mels=30), id="uncentered-magnitude"),
        pytest.param(dict(n_fft=512, hop_length=256, pad_mode="reflect", win_length=400, n_mels=40, dct_type=3, lifter=10), id="reflect-win-dct3"),
    ],
)
def test_mfcc_with_spectral_keywords(kw, dtype, make_signal):
    y = make_signal("noise", 16000, 16000, (2, 3), dtype)
    assert_like_librosa(supermel.mfcc(y=y, sr=16000, **kw), librosa.feature.mfcc(y=y, sr=16000, **kw), what="mfcc kw")


@pytest.mark.parametrize("mel_norm", [None, 1.0, "slaney"], ids=lambda v: f"mel_norm={v}")
def test_mfcc_mel_norm(mel_norm, make_signal):
    """librosa 0.11's mfcc passes ``mel_norm`` to the filterbank (``norm`` is the DCT's)."""
    y = make_signal("speech", 16000, 16000)
    kw = dict(sr=16000, mel_norm=mel_norm, **MFCC_MEL)
    assert_like_librosa(supermel.mfcc(y=y, **kw), librosa.feature.mfcc(y=y, **kw), what="mfcc mel_norm")


def test_mfcc_default_arguments(speech_at):
    y = speech_at(22050)[: 2 * 22050]
    assert_like_librosa(supermel.mfcc(y=y), librosa.feature.mfcc(y=y), what="mfcc defaults")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_mfcc_batch_uses_whole_array_top_db(make_signal, dtype):
    """Batched mfcc equals librosa's batched mfcc (one top_db floor for the whole batch in 0.11)."""
    y = make_signal("speech", 16000, 16000, (3,), dtype)
    y[1] *= 1e-3
    kw = dict(sr=16000, **MFCC_MEL)
    assert_like_librosa(supermel.mfcc(y=y, **kw), librosa.feature.mfcc(y=y, **kw), what="batched mfcc")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize(
    "kw",
    [
        pytest.param(dict(n_mfcc=20), id="defaults"),
        pytest.param(dict(n_mfcc=13, dct_type=3, norm=None, lifter=22), id="dct3-lifter"),
        pytest.param(dict(n_mfcc=40, dct_type=1, norm="ortho"), id="dct1-all-coefficients"),
    ],
)
def test_mfcc_from_S(make_signal, kw, batch_shape, dtype):
    y = make_signal("speech", 16000, 12000, batch_shape, dtype)
    S_db = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, **MFCC_MEL))
    want = librosa.feature.mfcc(S=S_db, **kw)
    assert_like_librosa(supermel.mfcc(S=S_db, **kw), want, what="mfcc S=")
    got_t = supermel.mfcc(S=torch.from_numpy(S_db), **kw)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.from_numpy(S_db).dtype
    assert rel_err(got_t, want) <= TOL[np.dtype(dtype)]


@pytest.mark.parametrize("fftbins", [True, False])
def test_hann_without_scipy_signal_is_librosas_window_bit_for_bit(fftbins):
    """supermel builds the default window itself (importing scipy.signal costs every new process
    about a second); it must be librosa's (scipy's) window exactly, for every length."""
    from supermel.filters import get_window

    for n in [1, 2, 3, 4, 5, 7, 16, 255, 256, 400, 511, 512, 800, 1023, 1024, 2048, 4096, 16000]:
        want = librosa.filters.get_window("hann", n, fftbins=fftbins)
        got = get_window("hann", n, fftbins=fftbins)
        assert got.dtype == want.dtype and np.array_equal(got, want), n


def test_the_default_mel_spectrogram_does_not_import_scipy_signal():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, supermel; supermel.melspectrogram(y=np.zeros(4096, np.float32), sr=16000); "
        "print('scipy.signal' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False"
