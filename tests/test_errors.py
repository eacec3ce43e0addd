"""Every invalid input raises ``supermel.ParameterError`` (a ``ValueError``) naming the offending value.

Each error is checked through every public entry point that can meet it: the
functions (``stft``, ``spectrogram``, ``melspectrogram``, ``mfcc``, the dB
conversions, ``mel_filters``) and the modules (``Spectrogram``,
``MelSpectrogram``, ``MFCC``), at construction or at call time.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
import torch

import supermel


@contextlib.contextmanager
def raises_parameter_error(match: str):
    """``pytest.raises(ParameterError, match=...)`` that also checks the error is a ValueError."""
    with pytest.raises(supermel.ParameterError, match=match) as info:
        yield info
    assert isinstance(info.value, ValueError)


def test_parameter_error_hierarchy():
    assert issubclass(supermel.ParameterError, ValueError)
    assert issubclass(supermel.ParameterError, supermel.SupermelError)


# --------------------------------------------------------------------------- audio
SMALL = dict(n_fft=256, hop_length=64)
MEL = dict(sr=16000, n_mels=20, **SMALL)

AUDIO_ENTRY_POINTS = {
    "stft": lambda y: supermel.stft(y, **SMALL),
    "spectrogram": lambda y: supermel.spectrogram(y=y, **SMALL),
    "melspectrogram": lambda y: supermel.melspectrogram(y=y, **MEL),
    "mfcc": lambda y: supermel.mfcc(y=y, **MEL),
    "Spectrogram": lambda y: supermel.Spectrogram(**SMALL)(y),
    "MelSpectrogram": lambda y: supermel.MelSpectrogram(**MEL)(y),
    "MFCC": lambda y: supermel.MFCC(**MEL)(y),
}
entry_points = pytest.mark.parametrize("call", list(AUDIO_ENTRY_POINTS.values()), ids=list(AUDIO_ENTRY_POINTS))


def _noise(n=2000, dtype=np.float32):
    return (0.1 * np.random.default_rng(0).standard_normal(n)).astype(dtype)


@entry_points
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_non_finite_audio(call, bad, as_tensor, dtype):
    y = _noise(dtype=dtype)
    y[1234] = bad
    if as_tensor:
        y = torch.from_numpy(y)
    with raises_parameter_error(r"\by is not finite.*NaN or Inf"):
        call(y)


@entry_points
def test_non_finite_audio_in_a_batch(call):
    y = np.stack([_noise(), _noise()])
    y[1, -1] = np.nan
    with raises_parameter_error(r"not finite"):
        call(y)


@entry_points
@pytest.mark.parametrize(
    "y,name",
    [
        pytest.param(np.zeros(2000, dtype=np.int16), "int16", id="np.int16"),
        pytest.param(np.zeros(2000, dtype=np.int32), "int32", id="np.int32"),
        pytest.param(torch.zeros(2000, dtype=torch.int16), "torch.int16", id="torch.int16"),
        pytest.param(np.zeros(2000, dtype=np.complex64), "complex64", id="np.complex64"),
        pytest.param(np.zeros(2000, dtype=np.complex128), "complex128", id="np.complex128"),
        pytest.param(torch.zeros(2000, dtype=torch.complex64), "torch.complex64", id="torch.complex64"),
        pytest.param(np.zeros(2000, dtype=bool), "bool", id="np.bool"),
        pytest.param(torch.zeros(2000, dtype=torch.bool), "torch.bool", id="torch.bool"),
    ],
)
def test_non_float_audio(call, y, name):
    with raises_parameter_error(rf"dtype {re.escape(name)}\b.*floating point"):
        call(y)


@entry_points
@pytest.mark.parametrize(
    "y,pattern",
    [
        pytest.param(np.zeros(0, np.float32), r"empty \(shape \(0,\)\)", id="np-(0,)"),
        pytest.param(np.zeros((2, 0), np.float32), r"empty \(shape \(2, 0\)\)", id="np-(2,0)"),
        pytest.param(torch.zeros(0), r"empty \(shape \(0,\)\)", id="torch-(0,)"),
        pytest.param(torch.zeros(2, 0, dtype=torch.float64), r"empty \(shape \(2, 0\)\)", id="torch-(2,0)"),
        pytest.param(np.zeros((0, 2000), np.float32), r"empty.*\(0, 2000\)", id="np-(0,2000)"),
    ],
)
def test_empty_audio(call, y, pattern):
    with raises_parameter_error(pattern):
        call(y)


@entry_points
@pytest.mark.parametrize(
    "y,pattern",
    [
        pytest.param(np.array(0.5, dtype=np.float32), r"scalar", id="np-0d-array"),
        pytest.param(torch.tensor(0.5), r"scalar", id="torch-0d-tensor"),
        pytest.param(np.float32(0.5), r"scalar|float32", id="np.float32-scalar"),
        pytest.param(0.5, r"scalar|float", id="python-float"),
    ],
)
def test_scalar_audio(call, y, pattern):
    """librosa: 'Audio data must be at least one-dimensional'."""
    with raises_parameter_error(pattern):
        call(y)


@entry_points
def test_uncentered_input_shorter_than_n_fft(call):
    y = _noise(100)
    with raises_parameter_error(r"n_fft=256 is too large.*length=100"):
        _with(call, center=False)(y)


def _with(call, **extra):
    """Re-bind one of AUDIO_ENTRY_POINTS with extra keywords."""
    name = next(k for k, v in AUDIO_ENTRY_POINTS.items() if v is call)
    fn = {
        "stft": lambda y: supermel.stft(y, **SMALL, **extra),
        "spectrogram": lambda y: supermel.spectrogram(y=y, **SMALL, **extra),
        "melspectrogram": lambda y: supermel.melspectrogram(y=y, **MEL, **extra),
        "mfcc": lambda y: supermel.mfcc(y=y, **MEL, **extra),
        "Spectrogram": lambda y: supermel.Spectrogram(**SMALL, **extra)(y),
        "MelSpectrogram": lambda y: supermel.MelSpectrogram(**MEL, **extra)(y),
        "MFCC": lambda y: supermel.MFCC(**MEL, **extra)(y),
    }
    return fn[name]


# --------------------------------------------------------------------------- STFT parameters
STFT_ENTRY_POINTS = {
    "stft": lambda **kw: supermel.stft(_noise(), **kw),
    "spectrogram": lambda **kw: supermel.spectrogram(y=_noise(), **kw),
    "melspectrogram": lambda **kw: supermel.melspectrogram(y=_noise(), sr=16000, n_mels=20, **kw),
    "mfcc": lambda **kw: supermel.mfcc(y=_noise(), sr=16000, n_mels=20, **kw),
    "Spectrogram": lambda **kw: supermel.Spectrogram(**kw),
    "MelSpectrogram": lambda **kw: supermel.MelSpectrogram(sr=16000, n_mels=20, **kw),
    "MFCC": lambda **kw: supermel.MFCC(sr=16000, n_mels=20, **kw),
}
stft_entry_points = pytest.mark.parametrize("make", list(STFT_ENTRY_POINTS.values()), ids=list(STFT_ENTRY_POINTS))


@stft_entry_points
@pytest.mark.parametrize("name", ["n_fft", "hop_length", "win_length"])
@pytest.mark.parametrize("value", [0, -1, -256, 1.5, 256.0, "256", True], ids=repr)
def test_stft_sizes_must_be_positive_integers(make, name, value):
    kw = dict(n_fft=256, hop_length=64, win_length=None)
    kw[name] = value
    with raises_parameter_error(rf"{name}={re.escape(repr(value))} must be a positive integer"):
        make(**kw)


@stft_entry_points
def test_win_length_above_n_fft(make):
    with raises_parameter_error(r"win_length=300 must be <= n_fft=256"):
        make(n_fft=256, hop_length=64, win_length=300)


@stft_entry_points
@pytest.mark.parametrize("window", ["notawindow", ("kaiser",), ("nope", 1.0)], ids=repr)
def test_unknown_window(make, window):
    with raises_parameter_error(rf"window={re.escape(repr(window))}"):
        make(n_fft=256, hop_length=64, window=window)


@stft_entry_points
@pytest.mark.parametrize(
    "win_length,length",
    [(None, 255), (None, 257), (200, 256), (200, 199)],
    ids=["n_fft-1", "n_fft+1", "n_fft-for-win200", "win-1"],
)
def test_window_array_of_wrong_length(make, win_length, length):
    expected = 256 if win_length is None else win_length
    with raises_parameter_error(rf"shape \({length},\).*win_length={expected}"):
        make(n_fft=256, hop_length=64, win_length=win_length, window=np.hanning(length))


@stft_entry_points
@pytest.mark.parametrize("pad_mode", ["foo", "Reflect", "wrap", "maximum", "mean", "median", "minimum"])
def test_pad_mode_refused(make, pad_mode):
    """Unknown modes, and the numpy modes librosa.stft refuses."""
    with raises_parameter_error(rf"pad_mode={re.escape(repr(pad_mode))}"):
        make(n_fft=256, hop_length=64, pad_mode=pad_mode)


@pytest.mark.parametrize("pad_mode", ["wrap", "maximum", "mean", "median", "minimum"])
def test_pad_mode_refused_like_librosa(pad_mode):
    """The refused modes are the ones librosa refuses (checked against librosa itself)."""
    import librosa

    with pytest.raises(librosa.ParameterError, match=pad_mode):
        librosa.stft(_noise(), n_fft=256, pad_mode=pad_mode)
    with raises_parameter_error(rf"pad_mode='{pad_mode}' is not supported"):
        supermel.stft(_noise(), n_fft=256, pad_mode=pad_mode)


SPEC_POWER_ENTRY_POINTS = {k: v for k, v in STFT_ENTRY_POINTS.items() if k not in ("stft", "mfcc", "MFCC")}


@pytest.mark.parametrize("make", list(SPEC_POWER_ENTRY_POINTS.values()), ids=list(SPEC_POWER_ENTRY_POINTS))
@pytest.mark.parametrize("power", [0, 0.0, -1, -2.0, float("nan"), float("inf")], ids=repr)
def test_power_must_be_positive(make, power):
    with raises_parameter_error(rf"power={re.escape(repr(power))} must be a positive number"):
        make(n_fft=256, hop_length=64, power=power)


@stft_entry_points
def test_center_must_be_bool(make):
    with raises_parameter_error(r"center='yes'"):
        make(n_fft=256, hop_length=64, center="yes")


@pytest.mark.parametrize("cls", [supermel.Spectrogram, supermel.MelSpectrogram, supermel.MFCC])
def test_unknown_backend(cls):
    with raises_parameter_error(r"backend='cuda-fft'"):
        cls(n_fft=256, hop_length=64, backend="cuda-fft")


# --------------------------------------------------------------------------- mel parameters
MEL_ENTRY_POINTS = {
    "mel_filters": lambda **kw: supermel.mel_filters(n_fft=512, **kw),
    "melspectrogram": lambda **kw: supermel.melspectrogram(y=_noise(), n_fft=512, hop_length=128, **kw),
    "mfcc": lambda **kw: supermel.mfcc(y=_noise(), n_fft=512, hop_length=128, **kw),
    "MelSpectrogram": lambda **kw: supermel.MelSpectrogram(n_fft=512, hop_length=128, **kw),
    "MFCC": lambda **kw: supermel.MFCC(n_fft=512, hop_length=128, **kw),
}
mel_entry_points = pytest.mark.parametrize("make", list(MEL_ENTRY_POINTS.values()), ids=list(MEL_ENTRY_POINTS))


@mel_entry_points
@pytest.mark.parametrize("fmin,fmax", [(5000.0, 4000.0), (4000, 4000), (8000.0, None)], ids=str)
def test_fmin_not_below_fmax(make, fmin, fmax):
    with raises_parameter_error(rf"fmin={re.escape(repr(fmin))} must be below fmax=(4000|8000)"):
        make(sr=16000, fmin=fmin, fmax=fmax)


@mel_entry_points
@pytest.mark.parametrize("fmax", [8000.5, 9000, 16000.0], ids=repr)
def test_fmax_above_nyquist(make, fmax):
    with raises_parameter_error(rf"fmax={re.escape(repr(fmax))} is above the Nyquist frequency sr/2=8000"):
        make(sr=16000, fmax=fmax)


@mel_entry_points
@pytest.mark.parametrize("fmin", [-1, -0.5, float("nan")], ids=repr)
def test_fmin_negative(make, fmin):
    with raises_parameter_error(rf"fmin={re.escape(repr(fmin))}"):
        make(sr=16000, fmin=fmin)


@mel_entry_points
@pytest.mark.parametrize("n_mels", [0, -3, 40.0], ids=repr)
def test_n_mels_must_be_positive_integer(make, n_mels):
    with raises_parameter_error(rf"n_mels={re.escape(repr(n_mels))}"):
        make(sr=16000, n_mels=n_mels)


@pytest.mark.parametrize("make", [MEL_ENTRY_POINTS["mel_filters"], MEL_ENTRY_POINTS["melspectrogram"], MEL_ENTRY_POINTS["MelSpectrogram"]], ids=["mel_filters", "melspectrogram", "MelSpectrogram"])
@pytest.mark.parametrize("norm", ["l2", "ortho", -1.0], ids=repr)
def test_unknown_mel_norm(make, norm):
    with raises_parameter_error(rf"norm={re.escape(repr(norm))}"):
        make(sr=16000, norm=norm)


@pytest.mark.parametrize(
    "call",
    [
        lambda: supermel.melspectrogram(y=_noise(), sr=16000, n_melz=40),
        lambda: supermel.melspectrogram(y=_noise(), sr=16000, fmin=0.0, f_max=4000.0),
        lambda: supermel.mfcc(y=_noise(), sr=16000, n_melz=40),
        lambda: supermel.melspectrogram(S=np.ones((1025, 3)), sr=16000, n_melz=40),
    ],
    ids=["melspectrogram", "melspectrogram-torchaudio-name", "mfcc", "melspectrogram-S"],
)
def test_unknown_mel_keyword(call):
    with raises_parameter_error(r"unknown keyword.*'(n_melz|f_max)'"):
        call()


# --------------------------------------------------------------------------- dB
@pytest.mark.parametrize("fn", [supermel.power_to_db, supermel.amplitude_to_db], ids=["power_to_db", "amplitude_to_db"])
@pytest.mark.parametrize("amin", [0, 0.0, -1e-10, -1.0], ids=repr)
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
def test_amin_must_be_positive(fn, amin, as_tensor):
    S = np.ones((4, 5), np.float32)
    with raises_parameter_error(rf"amin={re.escape(repr(amin))} must be strictly positive"):
        fn(torch.from_numpy(S) if as_tensor else S, amin=amin)


@pytest.mark.parametrize("fn", [supermel.power_to_db, supermel.amplitude_to_db], ids=["power_to_db", "amplitude_to_db"])
@pytest.mark.parametrize("top_db", [-1, -0.5, -80.0], ids=repr)
def test_top_db_must_be_non_negative(fn, top_db):
    with raises_parameter_error(rf"top_db={re.escape(repr(top_db))} must be non-negative"):
        fn(np.ones((4, 5), np.float32), top_db=top_db)


# --------------------------------------------------------------------------- MFCC
@pytest.mark.parametrize(
    "make",
    [
        lambda lifter: supermel.mfcc(y=_noise(), sr=16000, n_mels=20, n_fft=256, lifter=lifter),
        lambda lifter: supermel.mfcc(S=np.zeros((20, 7)), lifter=lifter),
        lambda lifter: supermel.MFCC(sr=16000, n_mels=20, n_fft=256, lifter=lifter),
    ],
    ids=["mfcc-y", "mfcc-S", "MFCC"],
)
@pytest.mark.parametrize("lifter", [-1, -0.5, -22], ids=repr)
def test_negative_lifter(make, lifter):
    with raises_parameter_error(rf"lifter={re.escape(repr(lifter))} must be a non-negative number"):
        make(lifter)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: supermel.mfcc(y=_noise(), sr=16000, n_mels=20, n_fft=256, **kw),
        lambda **kw: supermel.MFCC(sr=16000, n_mels=20, n_fft=256, **kw),
    ],
    ids=["mfcc", "MFCC"],
)
@pytest.mark.parametrize(
    "kw,pattern",
    [
        (dict(n_mfcc=0), r"n_mfcc=0"),
        (dict(n_mfcc=-5), r"n_mfcc=-5"),
        (dict(dct_type=5), r"dct_type=5"),
        (dict(dct_type=0), r"dct_type=0"),
        (dict(norm="l2"), r"norm='l2'"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_invalid_mfcc_parameters(make, kw, pattern):
    with raises_parameter_error(pattern):
        make(**kw)


def test_melspectrogram_needs_audio_or_spectrogram():
    with raises_parameter_error(r"needs y"):
        supermel.melspectrogram(sr=16000)
    with raises_parameter_error(r"needs y"):
        supermel.mfcc(sr=16000)


def test_validation_does_not_depend_on_earlier_calls():
    """The functional API caches modules; an invalid value equal to a cached valid one (256.0 == 256,
    True == 1) must still be refused."""
    y = _noise()
    supermel.stft(y, n_fft=256, hop_length=1)
    supermel.melspectrogram(y=y, sr=16000, n_fft=256, hop_length=64, n_mels=20)
    with raises_parameter_error(r"n_fft=256\.0 must be a positive integer"):
        supermel.stft(y, n_fft=256.0, hop_length=1)
    with raises_parameter_error(r"hop_length=True must be a positive integer"):
        supermel.stft(y, n_fft=256, hop_length=True)
    with raises_parameter_error(r"n_fft=256\.0 must be a positive integer"):
        supermel.melspectrogram(y=y, sr=16000, n_fft=256.0, hop_length=64, n_mels=20)


# --------------------------------------------------------------------------- rough edges (issue 10)
@entry_points
def test_list_audio_is_refused_with_the_fix(call):
    # as librosa: lists are not audio (they used to become float64 silently)
    with raises_parameter_error(r"not list; convert it with np\.asarray\(y, dtype=np\.float32\)"):
        call([0.1] * 2000)


@pytest.fixture
def memory_limit():
    previous = supermel.get_memory_limit()
    yield
    supermel.set_memory_limit(previous)


def test_huge_n_fft_is_refused_before_allocating(memory_limit):
    # 1 s of audio with n_fft = 2**24: a 128 x 8M float64 filterbank (tens of GB) before any check
    y = np.zeros(16000, dtype=np.float32)
    with raises_parameter_error(r"n_fft=16777216 and n_mels=128 needs about \d+\.\d GiB of working memory, above the limit of 8\.0 GiB"):
        supermel.melspectrogram(y=y, sr=16000, n_fft=2**24)
    with raises_parameter_error(r"n_fft=16777216.*set_memory_limit"):
        supermel.MelSpectrogram(sr=16000, n_fft=2**24)


def test_memory_limit_applies_per_call_and_can_be_changed(memory_limit):
    y = np.zeros((4, 16000), dtype=np.float32)
    want = supermel.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=128, n_mels=40)
    assert supermel.set_memory_limit(1 << 20) == 8 << 30  # 1 MiB, returns the previous limit
    with raises_parameter_error(r"n_fft=512, hop_length=128 on 4 x 16000 samples \(504 frames\) needs about .* above the limit of 1\.0 MiB"):
        supermel.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=128, n_mels=40)
    with raises_parameter_error(r"hop_length=128 on 4 x 16000"):
        supermel.Spectrogram(n_fft=512, hop_length=128)(y)
    supermel.set_memory_limit(None)  # no limit
    np.testing.assert_array_equal(supermel.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=128, n_mels=40), want)
    for bad in (0, -1, 1.5, True):
        with raises_parameter_error(r"nbytes=.* must be a positive number of bytes"):
            supermel.set_memory_limit(bad)


def test_memory_limit_from_the_environment():
    import subprocess
    import sys

    code = "import supermel; print(supermel.get_memory_limit())"
    for value, want in (("32G", str(32 << 30)), ("1.5M", str(int(1.5 * (1 << 20)))), ("none", "None"), ("123", "123")):
        out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "SUPERMEL_MAX_MEMORY": value}, capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == want, (value, out.stderr)
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "SUPERMEL_MAX_MEMORY": "lots"}, capture_output=True, text=True)
    assert out.returncode != 0 and "SUPERMEL_MAX_MEMORY='lots' is not a size" in out.stderr


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: supermel.MelSpectrogram(sr=16000, device="cuda"),
        lambda: supermel.Spectrogram(device="cuda"),
        lambda: supermel.MFCC(sr=16000, device="cuda"),
        lambda: supermel.StreamingMelSpectrogram(sr=16000, device="cuda"),
        lambda: supermel.frontend("wav2lip", device="cuda"),
        lambda: supermel.frontend("wav2lip").streaming(device="cuda"),
    ],
    ids=["MelSpectrogram", "Spectrogram", "MFCC", "StreamingMelSpectrogram", "frontend", "frontend.streaming"],
)
def test_cuda_device_without_cuda_is_a_parameter_error(make, no_cuda):
    with raises_parameter_error(r"device='cuda' needs CUDA, which this torch cannot use .* use device='cpu'"):
        make()


def test_bad_device_names(monkeypatch):
    with raises_parameter_error(r"device='gpu0' is not a device name"):
        supermel.MelSpectrogram(sr=16000, device="gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with raises_parameter_error(r"device='cuda:3': this machine has 1 CUDA device"):
        supermel.MelSpectrogram(sr=16000, device="cuda:3")


@pytest.mark.parametrize("convert", [supermel.power_to_db, supermel.amplitude_to_db])
def test_db_of_an_empty_array(convert):
    with raises_parameter_error(r"S is empty \(shape \(0, 3\)\): top_db and a callable ref need the array's maximum"):
        convert(np.zeros((0, 3), dtype=np.float32))
    with raises_parameter_error(r"S is empty"):
        convert(torch.zeros(2, 0), top_db=None, ref=np.max)
    out = convert(np.zeros((0, 3), dtype=np.float32), top_db=None)  # a numeric ref: nothing to reduce
    assert out.shape == (0, 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda y: supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200),
        lambda y: supermel.spectrogram(y=y, n_fft=800, hop_length=200),
        lambda y: supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200)(y),
        lambda y: supermel.frontend("hifigan-22k", sr=16000)(y),
    ],
    ids=["melspectrogram", "spectrogram", "MelSpectrogram", "frontend"],
)
def test_huge_finite_amplitude_warns(call):
    # |X| of a 1e17 sine over 800 samples is ~2e19: its square overflows float32 (librosa: numpy warns)
    y = (1e17 * np.sin(0.3 * np.arange(16000))).astype(np.float32)
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf values although the audio is finite: samples up to \|y\| = 1e\+17 overflow the float32"):
        call(y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(y / 1e17)  # ordinary audio: no warning
        supermel.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, check_finite=False)  # the check is off


@pytest.mark.parametrize("name", ["wav2lip", "whisper-80", "kaldi-fbank"])
def test_frontend_dtype_moves(name):
    y = np.random.default_rng(0).standard_normal(16000)
    fe = supermel.frontend(name).double()
    assert fe.dtype == torch.float64
    out = fe(y)
    assert out.dtype == np.float64
    # the same constants as built in float64 (rebuilt, not the float32 ones cast up): same route, same bits
    np.testing.assert_array_equal(out, supermel.frontend(name, dtype=torch.float64)(y))
    back = fe.float()
    assert back(y).dtype == np.float32 and back.dtype == torch.float32
    with raises_parameter_error(r"front ends compute in float32 or float64, not torch.float16"):
        fe.half()
    assert fe(y).dtype == np.float32  # unchanged by the refused move


# --------------------------------------------------------------------------- misspelt keywords (issue 18, item 9)
@pytest.mark.parametrize(
    "call, bad, want",
    [
        (lambda y, **kw: supermel.melspectrogram(y=y, sr=16000, **kw), "nfft", "n_fft"),
        (lambda y, **kw: supermel.melspectrogram(y=y, sr=16000, **kw), "hoplength", "hop_length"),
        (lambda y, **kw: supermel.melspectrogram(y=y, sr=16000, **kw), "nmels", "n_mels"),
        (lambda y, **kw: supermel.mfcc(y=y, sr=16000, **kw), "nfft", "n_fft"),
        (lambda y, **kw: supermel.mfcc(y=y, sr=16000, **kw), "lifer", "lifter"),
        (lambda y, **kw: supermel.StreamPool(sr=16000, **kw), "nfft", "n_fft"),
        (lambda y, **kw: supermel.frontend("whisper-80", **kw), "nfft", "n_fft"),
    ],
)
def test_misspelt_keyword_suggests_the_close_match_among_all_keywords(call, bad, want):
    """nfft=512 names n_fft (an STFT keyword, not one of the mel filter keywords the message used to list)."""
    y = np.zeros(4000, dtype=np.float32)
    with pytest.raises(supermel.ParameterError) as info:
        call(y, **{bad: 512})
    msg = str(info.value)
    assert f"{bad}: did you mean {want}" in msg, msg
    assert f"'{want}'" in msg  # the full list of accepted keywords includes it


@pytest.mark.parametrize("fn", [supermel.melspectrogram, supermel.mfcc])
def test_device_keyword_gets_its_own_message(fn):
    with pytest.raises(supermel.ParameterError) as info:
        fn(y=np.zeros(4000, dtype=np.float32), sr=16000, device="cuda")
    msg = str(info.value)
    assert "device:" in msg and "y.to('cuda')" in msg and "did you mean" not in msg, msg


def test_unknown_keyword_without_a_close_match_says_so():
    with pytest.raises(supermel.ParameterError, match=r"zzz: no keyword of that name"):
        supermel.melspectrogram(y=np.zeros(4000, dtype=np.float32), sr=16000, zzz=1)
