"""Model front ends (``supermel.frontend``) against their real references.

References, never supermel's own code:

* openai-whisper: ``whisper.log_mel_spectrogram`` (80, 128), ``whisper.pad_or_trim``;
* kaldi-native-fbank: ``OnlineFbank`` (dither 0, snip_edges both ways, the
  sherpa-onnx configuration);
* Hugging Face transformers: ``ASTFeatureExtractor``, ``SeamlessM4TFeatureExtractor``;
* elsewhere (the original is not a package): the librosa/numpy/scipy
  expression of the original code written in docs/frontends.md ("librosa
  expression" sections), built below.

Tolerances (frontends.md section 10) are stated where used, with the reason. The
recurring one: supermel computes in float32 by default; the librosa references
run in float64. float32 rounding of the FFT is ~1e-7 of a frame's energy, so it
is invisible in loud cells but dominates cells 60+ dB below the loudest one
(e.g. bands above 8 kHz of speech resampled from 16 kHz). There, the log of a
mel value is the log of rounding noise and can differ by ~1 (Vocos, no floor
worth the name); the *linear* error stays at float32 rounding of the loudest
value everywhere. So log-domain features are checked (a) in the log domain on
cells within 60 dB of the clip's maximum and (b) in the linear domain on all
cells, relative to the maximum; and in float64 (``dtype=torch.float64``) on all
cells at 1e-7.
"""

from __future__ import annotations

import dataclasses
import fractions
import json
import math
import warnings

import numpy as np
import pytest
import scipy.signal
import torch

import supermel
from conftest import SEED, check_log

import librosa  # noqa: E402  (a hard test dependency: a missing one must fail, not skip)

REQUIRED = (
    "wav2lip", "wav2lip-reflect", "whisper-80", "whisper-128", "hifigan-22k", "bigvgan-22k-80", "bigvgan-v2-22k-80",
    "bigvgan-24k-100", "bigvgan-v2-44k-128-256x", "bigvgan-v2-44k-128-512x", "vits", "tacotron2", "vocos-24k",
    "f5-tts", "speecht5", "nemo-80", "nemo-128", "kaldi-fbank", "lhotse-fbank",
)  # fmt: skip


@pytest.fixture(scope="module")
def noise16() -> np.ndarray:
    """2.5 s of white noise (std 0.1): full band, no near-silent cells."""
    return (0.1 * np.random.default_rng(SEED).standard_normal(40000)).astype(np.float32)


# =========================================================================== checks
def check_abs(out, ref, atol: float, what: str) -> None:
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != reference {ref.shape}"
    err = np.abs(out - ref).max()
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


#: float64 supermel vs float64 librosa: the same arithmetic up to summation order
#: (FFT and matrix-product orderings); ~1e-12 in loud cells, up to ~4e-9 in the log
#: of cells at 1e-10 of the maximum.
F64_ATOL = 1e-7


def preemph(x: np.ndarray) -> np.ndarray:
    """Whole-signal pre-emphasis as the originals: ``scipy.signal.lfilter([1, -0.97], [1], x)`` (float64)."""
    return scipy.signal.lfilter([1.0, -0.97], [1.0], x.astype(np.float64))


# =========================================================================== Wav2Lip
def ref_wav2lip(x: np.ndarray, pad_mode: str) -> np.ndarray:
    """frontends.md 1.4: pre-emphasis, ``feature.melspectrogram``, ``amplitude_to_db(ref=10, amin=1e-5)``, normalise."""
    m = librosa.feature.melspectrogram(
        y=preemph(x), sr=16000, n_fft=800, hop_length=200, win_length=800, window="hann", center=True,
        pad_mode=pad_mode, power=1.0, n_mels=80, fmin=55, fmax=7600, htk=False, norm="slaney",
    )  # fmt: skip
    return np.clip((librosa.amplitude_to_db(m, ref=10.0, amin=1e-5, top_db=None) + 100) * 0.08 - 4, -4, 4)


@pytest.mark.parametrize("name, pad_mode", [("wav2lip", "constant"), ("wav2lip-reflect", "reflect")])
@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_wav2lip_vs_librosa(name, pad_mode, signal, speech_at, noise16):
    x = speech_at(16000) if signal == "speech" else noise16
    ref = ref_wav2lip(x, pad_mode)
    out = supermel.frontend(name)(x)
    assert out.dtype == np.float32 and out.shape == (80, 1 + len(x) // 200)
    # float32 vs float64 reference. The output is clip(1.6 log10 M + 2.4, +-4): cells
    # below M = 1e-4 are clipped to -4 on both sides, so the error is float32 rounding
    # of M relative to >= 1e-4 (measured 4.8e-5).
    check_abs(out, ref, 1e-4, name)
    check_abs(supermel.frontend(name, dtype=torch.float64)(x.astype(np.float64)), ref, F64_ATOL, name + " float64")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_wav2lip_post_of_few_and_many_frames_agree(dtype, speech_at):
    # post_local takes one route per device (numpy on CPU tensors), whatever the number of
    # frames: the columns of a streaming push equal those of the whole input, bit for bit.
    fe = supermel.frontend("wav2lip", dtype=dtype)
    mel = fe.mel(torch.from_numpy(speech_at(16000)).to(dtype)[None])  # (1, 80, 961)
    few, many = fe.post_local(mel[..., 3:13]), fe.post_local(mel)[..., 3:13]
    one = fe.post_local(mel[..., 7:8])
    assert isinstance(few, torch.Tensor) and few.dtype == many.dtype == dtype
    np.testing.assert_array_equal(few.numpy(), many.numpy())
    np.testing.assert_array_equal(one.numpy(), many[..., 4:5].numpy())
    assert np.abs(few.numpy()).max() > 1.0  # real features, not the clip floor


def test_wav2lip_padding_variants_differ_only_at_the_edges(speech_at):
    # frontends.md 1.4 pitfalls: zero vs reflect padding changes only the frames
    # whose 800-sample window reaches past an end (columns 0-1 and the last 2).
    x = speech_at(16000)[: 16000 * 3]
    a = supermel.frontend("wav2lip")(x)
    b = supermel.frontend("wav2lip-reflect")(x)
    assert np.array_equal(a[:, 2:-2], b[:, 2:-2])
    assert np.abs(a[:, :2] - b[:, :2]).max() > 1e-3


# =========================================================================== Whisper
import whisper  # noqa: E402  (the reference; in the test extra)

#: supermel float32 vs openai-whisper float32 (torch.stft, |X|^2 via abs()**2): rounding
#: differences of the two float32 FFTs; cells near the max-8 floor are floored alike,
#: so the largest difference is ~4e-5 (measured 3.8e-5) for log10 values scaled by 1/4.
WHISPER_ATOL = 1e-4


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_whisper_vs_openai(n_mels, signal, speech_at, noise16):
    x = speech_at(16000) if signal == "speech" else noise16
    ref = whisper.log_mel_spectrogram(torch.from_numpy(x), n_mels=n_mels).numpy()
    fe = supermel.frontend(f"whisper-{n_mels}")
    out = fe(x)
    assert out.shape == (n_mels, len(x) // 160) == ref.shape and fe.num_frames(len(x)) == len(x) // 160
    check_abs(out, ref, WHISPER_ATOL, f"whisper-{n_mels}")
    t = fe(torch.from_numpy(x))  # a tensor in gives a tensor out
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    check_abs(t.numpy(), ref, WHISPER_ATOL, "tensor input")


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [5, 36])  # padded up to 30 s, and cut down to it
def test_whisper_pad_or_trim_vs_openai(n_mels, seconds, speech_at):
    y = speech_at(16000)
    x = np.tile(y, 3)[: seconds * 16000]
    ref = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(x)), n_mels=n_mels).numpy()
    out = supermel.frontend(f"whisper-{n_mels}", pad_or_trim=True)(x)
    assert out.shape == (n_mels, 3000)
    check_abs(out, ref, WHISPER_ATOL, "pad_or_trim")


def test_whisper_padding_argument_vs_openai(speech_at):
    x = speech_at(16000)[: 16000 * 4]
    ref = whisper.log_mel_spectrogram(torch.from_numpy(x), padding=12345).numpy()
    check_abs(supermel.frontend("whisper-80", padding=12345)(x), ref, WHISPER_ATOL, "padding")


def test_whisper_batch_max_scope(rng):
    # openai floors a batched tensor at the maximum of the whole batch; the default
    # ("example", as Hugging Face) floors each item at its own maximum.
    xb = (0.1 * rng.standard_normal((3, 16000))).astype(np.float32)
    xb[1] *= 1e-3  # quiet item: its floor differs between the two rules
    ref_batch = whisper.log_mel_spectrogram(torch.from_numpy(xb)).numpy()
    check_abs(supermel.frontend("whisper-80", max_scope="batch")(xb), ref_batch, WHISPER_ATOL, "batch max")
    out = supermel.frontend("whisper-80")(xb)
    for i in range(3):
        check_abs(out[i], whisper.log_mel_spectrogram(torch.from_numpy(xb[i])).numpy(), WHISPER_ATOL, f"item {i}")
    assert np.abs(out[1] - ref_batch[1]).max() > 0.1


# =========================================================================== HiFi-GAN / BigVGAN / VITS
def ref_hifigan(x, sr, n_fft, hop, win, n_mels, fmax, eps):
    """frontends.md 3.3: reflect-pad (N - H)/2, uncentred stft, ln(max(fb @ sqrt(|X|^2 + eps), 1e-5))."""
    p = (n_fft - hop) // 2
    y = np.pad(x.astype(np.float64), p, mode="reflect")
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=False)) ** 2
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0, fmax=fmax)
    return np.log(np.maximum(fb @ np.sqrt(power + eps), 1e-5))


# frontends.md 3.2 / 3.4 tables: name, sr, n_fft, hop, win, mels, fmax, eps
HIFIGAN = [
    ("hifigan-22k", 22050, 1024, 256, 1024, 80, 8000, 1e-9),
    ("bigvgan-22k-80", 22050, 1024, 256, 1024, 80, 8000, 1e-9),
    ("bigvgan-v2-22k-80", 22050, 1024, 256, 1024, 80, None, 1e-9),
    ("bigvgan-24k-100", 24000, 1024, 256, 1024, 100, 12000, 1e-9),
    ("bigvgan-v2-44k-128-256x", 44100, 1024, 256, 1024, 128, None, 1e-9),
    ("bigvgan-v2-44k-128-512x", 44100, 2048, 512, 2048, 128, None, 1e-9),
    ("vits", 22050, 1024, 256, 1024, 80, None, 1e-6),
]


@pytest.mark.parametrize("name, sr, n_fft, hop, win, n_mels, fmax, eps", HIFIGAN)
def test_hifigan_family_vs_librosa(name, sr, n_fft, hop, win, n_mels, fmax, eps, speech_at, noise16):
    x = speech_at(sr)
    ref = ref_hifigan(x, sr, n_fft, hop, win, n_mels, fmax, eps)
    fe = supermel.frontend(name)
    out = fe(x)
    assert out.shape == (n_mels, len(x) // hop) and fe.num_frames(len(x)) == len(x) // hop
    # Loud cells: float32 rounding (measured <= 9e-6 within 60 dB); all cells: linear
    # error <= 1e-7 of the maximum measured, 1e-6 allowed (module docstring).
    check_log(out, ref, log_base=math.e, power=1, loud_atol=1e-4, lin_rel=1e-6, what=name)
    check_abs(supermel.frontend(name, dtype=torch.float64)(x.astype(np.float64)), ref, F64_ATOL, name + " float64")
    # White noise (read as audio at sr): no near-silent cells, so a plain bound holds (measured 4e-6).
    check_abs(fe(noise16), ref_hifigan(noise16, sr, n_fft, hop, win, n_mels, fmax, eps), 1e-4, name + " noise")


def test_hifigan_aliases_resolve_to_the_table():
    cfg = supermel.frontend("bigvgan_v2_44khz_128band_512x").config
    assert (cfg.sr, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmax) == (44100, 2048, 512, 128, 22050.0)
    assert supermel.frontend("bigvgan_v2_22khz_80band_fmax8k_256x").config.fmax == 8000.0


# =========================================================================== Tacotron2, Vocos, F5-TTS, SpeechT5
def ref_tacotron2(x):
    """frontends.md 4.3."""
    m = librosa.feature.melspectrogram(
        y=x.astype(np.float64), sr=22050, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=True,
        pad_mode="reflect", power=1.0, n_mels=80, fmin=0, fmax=8000,
    )  # fmt: skip
    return np.log(np.maximum(m, 1e-5))


def ref_vocos(x, floor):
    """frontends.md 7.2 (HTK scale, no filter norm)."""
    m = librosa.feature.melspectrogram(
        y=x.astype(np.float64), sr=24000, n_fft=1024, hop_length=256, power=1.0, n_mels=100, fmin=0, fmax=12000,
        htk=True, norm=None, pad_mode="reflect",
    )  # fmt: skip
    return np.log(np.maximum(m, floor))


def ref_speecht5(x):
    """frontends.md 7.1 (log10, time-major)."""
    m = librosa.feature.melspectrogram(
        y=x.astype(np.float64), sr=16000, n_fft=1024, hop_length=256, win_length=1024, center=True, pad_mode="reflect",
        power=1.0, n_mels=80, fmin=80, fmax=7600,
    )  # fmt: skip
    return np.log10(np.maximum(m, 1e-10)).T


@pytest.mark.parametrize(
    "name, sr, ref, log_base, shape",
    [
        ("tacotron2", 22050, ref_tacotron2, math.e, lambda n: (80, 1 + n // 256)),
        ("vocos-24k", 24000, lambda x: ref_vocos(x, 1e-7), math.e, lambda n: (100, 1 + n // 256)),
        ("f5-tts", 24000, lambda x: ref_vocos(x, 1e-5), math.e, lambda n: (100, 1 + n // 256)),
        ("speecht5", 16000, ref_speecht5, 10.0, lambda n: (1 + n // 256, 80)),
    ],
)
def test_logmel_presets_vs_librosa(name, sr, ref, log_base, shape, speech_at, noise16):
    x = speech_at(sr)
    want = ref(x)
    fe = supermel.frontend(name)
    out = fe(x)
    assert out.shape == shape(len(x)) and out.dtype == np.float32
    # Vocos/F5 (no filter norm, HTK bands up to 12 kHz of speech resampled from 16 kHz):
    # the top 13 bands hold only float32 rounding, log errors there reach ~1.3 while
    # the linear error is 2.5e-7 of the maximum; loud cells agree to <= 3.1e-5.
    check_log(out, want, log_base=log_base, power=1, loud_atol=1e-4, lin_rel=1e-6, what=name)
    check_abs(supermel.frontend(name, dtype=torch.float64)(x.astype(np.float64)), want, F64_ATOL, name + " float64")
    check_abs(fe(noise16), ref(noise16), 1e-4, name + " noise")


def test_vocos_padding_same_vs_librosa(speech_at):
    """Vocos ``padding="same"`` (frontends.md 7.2): reflect (W - H) / 2 = 384 on each side, uncentred:
    the ``pad=384`` override; the librosa expression pads with numpy first."""
    x = speech_at(24000)
    z = np.pad(x.astype(np.float64), 384, mode="reflect")
    m = librosa.feature.melspectrogram(
        y=z, sr=24000, n_fft=1024, hop_length=256, power=1.0, n_mels=100, fmin=0, fmax=12000, htk=True, norm=None, center=False,
    )  # fmt: skip
    want = np.log(np.maximum(m, 1e-7))
    out = supermel.frontend("vocos-24k", pad=384)(x)
    assert out.shape == want.shape == (100, len(x) // 256)
    check_log(out, want, log_base=math.e, power=1, loud_atol=1e-4, lin_rel=1e-6, what="vocos padding=same")
    check_abs(supermel.frontend("vocos-24k", pad=384, dtype=torch.float64)(x.astype(np.float64)), want, F64_ATOL, "vocos same float64")


# =========================================================================== NeMo
def ref_nemo(x, n_mels, variant):
    """frontends.md 6.3: pre-emphasis, melspectrogram (symmetric Hann 400 in 512), ln(P + 2^-24), per-feature CMVN."""
    p = librosa.feature.melspectrogram(
        y=preemph(x), sr=16000, n_fft=512, hop_length=160, win_length=400,
        window=scipy.signal.get_window("hann", 400, fftbins=False), center=True,
        pad_mode="constant" if variant == "2.5" else "reflect", power=2.0, n_mels=n_mels, fmin=0, fmax=8000,
        htk=False, norm="slaney",
    )  # fmt: skip
    lg = np.log(p + 2.0**-24)
    n = len(x) // 160 + (0 if variant == "2.5" else 1)
    mu = lg[:, :n].mean(axis=1, keepdims=True)
    sd = lg[:, :n].std(axis=1, ddof=1, keepdims=True)
    out = (lg - mu) / (sd + 1e-5)
    out[:, n:] = 0.0
    return out


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("variant", ["2.5", "2.4"])
def test_nemo_vs_librosa(n_mels, variant, speech_at, noise16):
    x = speech_at(16000)
    fe = supermel.frontend(f"nemo-{n_mels}", variant=variant)
    out = fe(x)
    assert out.shape == (n_mels, 1 + len(x) // 160)
    # float32 vs float64: ln(M + 2^-24) bounds near-silent cells; the normalisation
    # divides by per-band standard deviations of order 1-5 (measured 5.2e-5).
    check_abs(out, ref_nemo(x, n_mels, variant), 2e-4, f"nemo-{n_mels} {variant}")
    check_abs(supermel.frontend(f"nemo-{n_mels}", variant=variant, dtype=torch.float64)(x.astype(np.float64)),
              ref_nemo(x, n_mels, variant), F64_ATOL, "float64")  # fmt: skip
    check_abs(fe(noise16), ref_nemo(noise16, n_mels, variant), 2e-4, "noise")


def test_nemo_valid_frames_by_variant(speech_at):
    x = speech_at(16000)[:16000 + 77]
    for variant, n_valid in (("2.5", len(x) // 160), ("2.4", len(x) // 160 + 1)):
        fe = supermel.frontend("nemo-80", variant=variant)
        out = fe(x)
        assert fe.valid_frames(len(x)) == n_valid
        assert np.all(out[:, n_valid:] == 0.0) and np.all(np.abs(out[:, :n_valid]).max(axis=0) > 0)


def test_nemo25_padded_batch_equals_items(rng):
    # NeMo >= 2.5 zeroes samples past each item's length and pads with zeros, so a
    # padded batch item equals the item computed alone (frontends.md 6.2; float32 rounding only).
    lens = [16000, 12345, 7001]
    items = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lens]
    batch = np.zeros((3, max(lens)), np.float32)
    for i, it in enumerate(items):
        batch[i, : len(it)] = it
        batch[i, len(it) :] = 0.3  # garbage past the length must not matter
    fe = supermel.frontend("nemo-80")
    out = fe(batch, lengths=lens)
    for i, it in enumerate(items):
        alone = fe(it)
        check_abs(out[i, :, : alone.shape[1]], alone.astype(np.float64), 1e-5, f"item {i}")
        assert np.all(out[i, :, len(it) // 160:] == 0.0)


def test_nemo_pad_to():
    out = supermel.frontend("nemo-80", pad_to=16)(np.random.default_rng(SEED).standard_normal(16000).astype(np.float32))
    assert out.shape[-1] % 16 == 0 and out.shape[-1] >= 101 and np.all(out[:, 100:] == 0.0)


# =========================================================================== Kaldi (kaldi-native-fbank)
import kaldi_native_fbank as knf  # noqa: E402  (the reference; in the test extra)


def ref_knf(x, *, num_bins=80, sr=16000, **opts):
    """``kaldi_native_fbank.OnlineFbank`` with dither 0 and the given frame/mel options."""
    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.frame_opts.samp_freq = sr
    o.mel_opts.num_bins = num_bins
    for k, v in opts.items():
        setattr(o.frame_opts if hasattr(o.frame_opts, k) else o.mel_opts if hasattr(o.mel_opts, k) else o, k, v)
    f = knf.OnlineFbank(o)
    f.accept_waveform(sr, x.astype(np.float32).tolist())
    f.input_finished()
    return np.array([f.get_frame(i) for i in range(f.num_frames_ready)], dtype=np.float64).reshape(-1, num_bins)


#: knf runs everything in float32, its mel bank included (weights up to 1.1e-5 off the
#: exact bank: test_kaldi_filters_vs_knf), so even loud cells differ by ~1e-4 (measured
#: <= 9.3e-5 within 40 dB). 40 dB rather than 60: knf's own float32 FFT rounding shows
#: 50 dB down (3.7e-4 at 22.05 kHz in the resampler's transition band, the same whether
#: supermel runs in float32 or float64). All cells: linear error <= 8.5e-6 of the
#: maximum measured, 2e-5 allowed.
KALDI = dict(log_base=math.e, power=2, loud_db=40.0, loud_atol=2e-4, lin_rel=2e-5)


@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_kaldi_fbank_vs_knf(snip_edges, signal, speech_at, noise16):
    x = speech_at(16000) if signal == "speech" else noise16
    fe = supermel.frontend("kaldi-fbank", snip_edges=snip_edges)
    out = fe(x)
    n = len(x)
    assert out.shape == ((1 + (n - 400) // 160) if snip_edges else (n + 80) // 160, 80) == (fe.num_frames(n), 80)
    check_log(out, ref_knf(x, snip_edges=snip_edges), what=f"snip_edges={snip_edges}", **KALDI)


def test_lhotse_sherpa_fbank_vs_knf(speech_at):
    # sherpa-onnx's configuration of knf (frontends.md 5.4): snip_edges False, high_freq -400, [-1, 1] input.
    x = speech_at(16000)
    out = supermel.frontend("lhotse-fbank")(x)
    assert out.shape == ((len(x) + 80) // 160, 80)
    check_log(out, ref_knf(x, snip_edges=False, high_freq=-400.0), what="lhotse-fbank", **KALDI)


def test_int16_scale_vs_knf(speech_at):
    x = speech_at(16000)[: 16000 * 4]
    check_log(supermel.frontend("wenet-fbank")(x), ref_knf(x * 32768.0), what="wenet-fbank", **KALDI)
    check_log(supermel.frontend("kaldi-fbank", int16_scale=True)(x), ref_knf(x * 32768.0), what="int16_scale", **KALDI)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (dict(window_type="hamming"), dict(window_type="hamming")),
        (dict(window_type="hanning", snip_edges=False), dict(window_type="hanning", snip_edges=False)),
        (dict(window_type="rectangular"), dict(window_type="rectangular")),
        (dict(window_type="blackman", blackman_coeff=0.4), dict(window_type="blackman", blackman_coeff=0.4)),
        (dict(remove_dc_offset=False, preemphasis_coefficient=0.0), dict(remove_dc_offset=False, preemph_coeff=0.0)),
        (dict(frame_length=20.0, frame_shift=12.5, snip_edges=False), dict(frame_length_ms=20.0, frame_shift_ms=12.5, snip_edges=False)),
        (dict(round_to_power_of_two=False), dict(round_to_power_of_two=False)),
        (dict(num_mel_bins=23, low_freq=64.0, high_freq=7000.0), dict(num_bins=23, low_freq=64.0, high_freq=7000.0)),
        (dict(use_power=False), dict(use_power=False)),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) if d else "-",
)
def test_kaldi_options_vs_knf(ours, theirs, speech_at):
    x = speech_at(16000)[: 16000 * 3]
    theirs = dict(theirs)
    ref = ref_knf(x, num_bins=theirs.pop("num_bins", 80), **theirs)
    power = 2 if ours.get("use_power", True) else 1
    check_log(supermel.frontend("kaldi-fbank", **ours)(x), ref, what=str(ours), **{**KALDI, "power": power})


@pytest.mark.parametrize(
    "opts",
    [
        dict(use_energy=True, energy_floor=0.0),  # raw energy: before pre-emphasis and window, first column
        dict(use_energy=True, energy_floor=0.0, raw_energy=False),  # after the window
        dict(use_energy=True, energy_floor=1.0, htk_compat=True),  # floored, last column
        dict(use_energy=True, energy_floor=0.0, snip_edges=False),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
@pytest.mark.parametrize("signal", ["speech", "silence-start"])
def test_kaldi_energy_vs_knf(opts, signal, speech_at):
    x = speech_at(16000)[: 16000 * 3].copy()
    if signal == "silence-start":
        x[:4000] = 0.0  # frames of digital silence: the energy floors (eps or energy_floor) decide
    out = supermel.frontend("kaldi-fbank", **opts)(x)
    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.mel_opts.num_bins = 80
    for k, v in opts.items():
        setattr(o.frame_opts if hasattr(o.frame_opts, k) else o, k, v)
    f = knf.OnlineFbank(o)
    f.accept_waveform(16000, x.tolist())
    f.input_finished()
    ref = np.array([f.get_frame(i) for i in range(f.num_frames_ready)], dtype=np.float64)
    assert out.shape == ref.shape == (supermel.frontend("kaldi-fbank", **opts).num_frames(len(x)), 81)
    e = -1 if opts.get("htk_compat") else 0
    # the log energy: a sum of squares in float32 on both sides, measured <= 1e-5
    check_abs(out[:, e], ref[:, e], 1e-4, f"{opts} energy")
    mel = np.delete(out, e, axis=1)
    check_log(mel, np.delete(ref, e, axis=1), what=f"{opts} mel", **KALDI)


# =========================================================================== Hugging Face: AST, SeamlessM4T
from transformers import ASTFeatureExtractor, SeamlessM4TFeatureExtractor  # noqa: E402  (the references; in the test extra)

#: AST (frontends.md 7.3), checked on the log energies L = out * 2 std + mean. HF's
#: Kaldi route (numpy, float64 inside, float32 out; torchaudio's kaldi.fbank when
#: installed) vs supermel in float32: measured <= 6.7e-5 within 60 dB of the maximum,
#: linear error <= 1.1e-6 of the maximum; float64 supermel <= 9.3e-7 (HF's float32
#: output rounding).
AST = dict(log_base=math.e, power=2, loud_db=60.0, loud_atol=2e-4, lin_rel=5e-6)
AST64 = dict(AST, loud_atol=5e-6)


def _ast_log(feats):
    c = supermel.presets.AstConfig()
    return np.asarray(feats, dtype=np.float64) * 2.0 * c.std + c.mean


@pytest.mark.parametrize("signal, seconds", [("speech", 3), ("speech", 12), ("noise", 2.5)])  # padded to 1024 frames; cut to it
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ast_vs_transformers(signal, seconds, dtype, speech_at, noise16):
    x = speech_at(16000)[: int(seconds * 16000)] if signal == "speech" else noise16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 128 bins on a 512-point FFT: empty filters, in both
        out = supermel.frontend("ast", dtype=dtype)(x)
        ref = ASTFeatureExtractor()(x, sampling_rate=16000, return_tensors="np")["input_values"][0]
    assert out.shape == ref.shape == (1024, 128)
    check_log(_ast_log(out), _ast_log(ref), what=f"ast {signal} {seconds} s {dtype}", **(AST if dtype == torch.float32 else AST64))


#: SeamlessM4T (frontends.md 7.4): per-bin normalised features (~unit variance), compared
#: directly. float32: measured max |error| 5.2e-4 (cells 60+ dB down, scaled by their bin's
#: 1/std), relative Frobenius 3.5e-6; float64: 8.1e-6 and 1.9e-6 (HF's float32 output).
@pytest.mark.parametrize("signal, n", [("speech", 48000), ("speech", 48160), ("speech", None), ("noise", None)])  # odd / even frame counts
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seamless_m4t_vs_transformers(signal, n, dtype, speech_at, noise16):
    x = (speech_at(16000) if signal == "speech" else noise16)[:n]
    out = supermel.frontend("seamless-m4t", dtype=dtype)(x)
    ref = SeamlessM4TFeatureExtractor()(x, sampling_rate=16000, return_tensors="np")["input_features"][0].astype(np.float64)
    t = supermel.frontend("kaldi-fbank").num_frames(len(x))
    assert out.shape == ref.shape == ((t + 1) // 2, 160)
    out = np.asarray(out, dtype=np.float64)
    assert np.abs(out - ref).max() <= (2e-3 if dtype == torch.float32 else 5e-5)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= (2e-5 if dtype == torch.float32 else 1e-5)


def test_seamless_m4t_refuses_one_frame():
    with pytest.raises(supermel.ParameterError, match="at least 2 frames"):
        supermel.frontend("seamless-m4t")(np.zeros(500, dtype=np.float32))
    assert supermel.frontend("seamless-m4t", do_normalize_per_mel_bins=False)(np.zeros(500, dtype=np.float32)).shape == (1, 160)


# =========================================================================== FunASR
def ref_lfr(feats: np.ndarray, m: int, n: int) -> np.ndarray:
    """FunASR's ``apply_lfr`` loop (frontends.md 5.4), on ``(T, D)``."""
    t_lfr = int(np.ceil(len(feats) / n))
    x = np.vstack([np.repeat(feats[:1], (m - 1) // 2, axis=0), feats])
    t = len(x)
    rows = []
    for i in range(t_lfr):
        if m <= t - i * n:
            rows.append(x[i * n : i * n + m].reshape(-1))
        else:  # the last LFR frames: copies of the last frame
            rows.append(np.concatenate([x[i * n :].reshape(-1)] + [x[-1]] * (m - (t - i * n))))
    return np.vstack(rows) if rows else np.zeros((0, m * feats.shape[1]))


def ref_load_cmvn(path) -> np.ndarray:
    """FunASR's ``load_cmvn``: the values on the line after ``<AddShift>`` / ``<Rescale>``."""
    lines = open(path, encoding="utf-8").readlines()
    means, scales = [], []
    for i, line in enumerate(lines):
        item = line.split()
        if item[0] == "<AddShift>" and lines[i + 1].split()[0] == "<LearnRateCoef>":
            means = lines[i + 1].split()[3:-1]
        elif item[0] == "<Rescale>" and lines[i + 1].split()[0] == "<LearnRateCoef>":
            scales = lines[i + 1].split()[3:-1]
    return np.array([np.array(means, dtype=np.float64), np.array(scales, dtype=np.float64)]).astype(np.float32)


def write_am_mvn(path, shift: np.ndarray, scale: np.ndarray) -> None:
    """An ``am.mvn`` in the layout FunASR's model directories ship."""
    d = len(shift)
    fmt = lambda v: " ".join(f"{x:.6f}" for x in v)  # noqa: E731
    path.write_text(
        f"<Nnet>\n<Splice> {d} {d}\n[ 0 ]\n<AddShift> {d} {d}\n<LearnRateCoef> 0 [ {fmt(shift)} ]\n"
        f"<Rescale> {d} {d}\n<LearnRateCoef> 0 [ {fmt(scale)} ]\n</Nnet>\n"
    )


def ref_funasr_fbank(x: np.ndarray) -> np.ndarray:
    """torchaudio kaldi.fbank as FunASR calls it (x 32768, hamming, energy_floor 0), via kaldi-native-fbank, dither 0."""
    return ref_knf(x * 32768.0, window_type="hamming")


@pytest.mark.parametrize("n", [16000 * 3, 16000 * 3 + 160, 16000 * 3 + 800, 560, 400, None])  # T % 6: 0, 1, 5; 2 frames; 1 frame; 12 s
@pytest.mark.parametrize("lfr", [(7, 6), (5, 3), (4, 2), (1, 1)])  # an even m: (m - 1) // 2 != m // 2
def test_funasr_vs_knf_and_lfr(n, lfr, speech_at):
    x = speech_at(16000)[:n]
    m, k = lfr
    out = supermel.frontend("funasr", lfr_m=m, lfr_n=k)(x)
    ref = ref_lfr(ref_funasr_fbank(x), m, k)
    assert out.shape == ref.shape == (-(-supermel.frontend("kaldi-fbank").num_frames(len(x)) // k), 80 * m)
    check_log(out, ref, what=f"funasr n={n} lfr={lfr}", **KALDI)


def test_funasr_cmvn_file(tmp_path, speech_at):
    rng = np.random.default_rng(SEED)
    shift = -rng.uniform(5.0, 15.0, 560)
    scale = rng.uniform(0.05, 0.5, 560)
    write_am_mvn(tmp_path / "am.mvn", shift, scale)
    x = speech_at(16000)[: 16000 * 4]
    out = supermel.frontend("funasr", cmvn_file=str(tmp_path / "am.mvn"))(x)
    cmvn = ref_load_cmvn(tmp_path / "am.mvn")
    # FunASR: inputs += means; inputs *= vars (float32). Undo it on the output and compare the log energies.
    logs = np.asarray(out, dtype=np.float64) / cmvn[1] - cmvn[0]
    check_log(logs, ref_lfr(ref_funasr_fbank(x), 7, 6), what="funasr cmvn", **KALDI)
    ref = (ref_lfr(ref_funasr_fbank(x), 7, 6).astype(np.float32) + cmvn[0]) * cmvn[1]
    assert np.abs(out - ref).max() <= 2e-4 * scale.max() * 10  # the log tolerance, scaled (cells 40 dB down: 10x)
    # a longer am.mvn row is cut to the feature size, as FunASR's cmvn[:, :dim]
    write_am_mvn(tmp_path / "long.mvn", np.r_[shift, [1.0] * 20], np.r_[scale, [2.0] * 20])
    np.testing.assert_array_equal(supermel.frontend("funasr", cmvn_file=str(tmp_path / "long.mvn"))(x), out)


def test_funasr_cmvn_errors(tmp_path):
    with pytest.raises(supermel.ParameterError, match="cannot be read"):
        supermel.frontend("funasr", cmvn_file=str(tmp_path / "missing.mvn"))
    (tmp_path / "bad.mvn").write_text("<Nnet>\n<AddShift> 3 3\n<LearnRateCoef> 0 [ 1 2 3 ]\n</Nnet>\n")
    with pytest.raises(supermel.ParameterError, match="not a FunASR am.mvn"):
        supermel.frontend("funasr", cmvn_file=str(tmp_path / "bad.mvn"))
    write_am_mvn(tmp_path / "short.mvn", np.zeros(80), np.ones(80))
    with pytest.raises(supermel.ParameterError, match="560"):
        supermel.frontend("funasr", cmvn_file=str(tmp_path / "short.mvn"))
    with pytest.raises(supermel.ParameterError, match="lfr_n"):
        supermel.frontend("funasr", lfr_n=0)


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_kaldi_other_rates_vs_knf(sr, snip_edges, speech_at):
    x = speech_at(sr)[: sr * 2]
    out = supermel.frontend("kaldi-fbank", sample_frequency=sr, snip_edges=snip_edges, num_mel_bins=40)(x)
    check_log(out, ref_knf(x, num_bins=40, sr=sr, snip_edges=snip_edges), what=f"{sr} Hz", **KALDI)


@pytest.mark.parametrize("n", [1, 79, 80, 239, 240, 399, 400, 401, 559, 560, 1000])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_kaldi_short_inputs_vs_knf(n, snip_edges):
    # Frame counts at the boundaries, and Kaldi's repeated edge reflection when the
    # signal is shorter than a frame (snip_edges=False).
    x = (0.1 * np.random.default_rng(SEED + n).standard_normal(n)).astype(np.float32)
    ref = ref_knf(x, num_bins=23, snip_edges=snip_edges)
    out = supermel.frontend("kaldi-fbank", num_mel_bins=23, snip_edges=snip_edges)(x)
    assert out.shape == ref.shape
    if ref.size:  # white noise: no near-silent cells; float32 bank rounding only (measured 1.1e-5)
        check_abs(out, ref, 1e-4, f"n={n}")


def test_kaldi_filters_vs_knf():
    # The bank itself: knf computes it in float32 (hence the 2e-5).
    for bins, low, high in [(80, 20.0, 0.0), (80, 20.0, -400.0), (23, 20.0, 0.0), (40, 100.0, 7000.0)]:
        mo = knf.MelBanksOptions()
        mo.num_bins, mo.low_freq, mo.high_freq = bins, low, high
        theirs = np.array(knf.MelBanks(mo, knf.FrameExtractionOptions(), 1.0).get_matrix())
        ours = supermel.kaldi_mel_filters(sr=16000, n_fft=512, n_mels=bins, low_freq=low, high_freq=high, dtype=np.float64)
        assert ours.shape == (bins, 257) and np.all(ours[:, -1] == 0.0)
        check_abs(ours[:, : theirs.shape[1]], theirs, 2e-5, f"bank {bins} {low}-{high}")


def test_kaldi_dither():
    # Digital silence: with dither 0 every cell is the log floor ln(float32 eps) (Kaldi's
    # floor); dither adds fresh Gaussian noise to every frame, lifting every cell above it.
    silence = np.zeros(16000, np.float32)
    a = supermel.frontend("kaldi-fbank")(silence)
    assert np.all(a == np.float32(np.log(np.finfo(np.float32).eps)))
    fe = supermel.frontend("kaldi-fbank", dither=1.0, int16_scale=True)
    b, c = fe(silence), fe(silence)
    assert np.all(b > a) and np.all(np.isfinite(b)) and not np.array_equal(b, c)


# =========================================================================== API: arrays, batches, dtypes
@pytest.mark.parametrize("name", REQUIRED)
def test_batches_types_and_frame_counts(name, speech_at):
    fe = supermel.frontend(name)
    sr = fe.config.sample_frequency if isinstance(fe.config, supermel.KaldiFbankConfig) else fe.config.sr
    y = speech_at(int(sr))
    n = int(sr) + 123
    batch = np.stack([y[i * 1000 : i * 1000 + n] for i in range(6)]).reshape(2, 3, n)
    out = fe(batch)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    single = fe(batch[1, 2])
    assert out.shape == (2, 3) + single.shape
    assert single.shape[fe.time_axis] == fe.num_frames(n)
    # Whisper's default floor is per example, so items are independent everywhere.
    np.testing.assert_allclose(out[1, 2], single, rtol=0, atol=1e-5)
    t = fe(torch.from_numpy(batch.astype(np.float64)))  # float64 tensor in: float32 tensor out
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == out.shape


@pytest.mark.parametrize(
    "name, frames",
    [
        ("wav2lip", lambda n: 1 + n // 200),
        ("whisper-80", lambda n: n // 160),
        ("hifigan-22k", lambda n: n // 256),
        ("bigvgan-v2-44k-128-512x", lambda n: n // 512),
        ("tacotron2", lambda n: 1 + n // 256),
        ("nemo-80", lambda n: 1 + n // 160),
        ("kaldi-fbank", lambda n: 1 + (n - 400) // 160),
        ("lhotse-fbank", lambda n: (n + 80) // 160),
    ],
)
def test_frame_counts_follow_the_spec(name, frames):
    # frontends.md section 9, last column; lengths at +-1 of frame boundaries.
    fe = supermel.frontend(name)
    rng = np.random.default_rng(SEED)
    for n in (4096, 4095, 4097, 5120, 5119, 6400, 6401):
        assert fe.num_frames(n) == frames(n)
        out = fe((0.1 * rng.standard_normal(n)).astype(np.float32))
        assert out.shape[fe.time_axis] == frames(n), (name, n)


def test_output_layouts():
    y = np.zeros(16000, np.float32)
    assert supermel.frontend("kaldi-fbank")(y).shape == (98, 80)  # (T, bins)
    assert supermel.frontend("speecht5")(y).shape == (63, 80)  # (T, 80)
    assert supermel.frontend("wav2lip")(y).shape == (80, 81)  # (n_mels, T)
    assert supermel.frontend("wav2lip")(y).min() == -4.0  # digital silence maps to -4


# =========================================================================== streaming hooks
@pytest.mark.parametrize("name", REQUIRED)
def test_streaming_hooks(name, speech_at):
    fe = supermel.frontend(name)
    assert isinstance(fe.core, supermel.MelSpectrogram)
    y = torch.from_numpy(speech_at(16000)[8000:24000]).reshape(1, -1)
    # pre on a chunk with its predecessor equals pre on the whole signal.
    k = 5000
    whole = fe.pre(y)
    prev = y[:, k - fe.pre_context : k] if fe.pre_context else None
    if not isinstance(fe, supermel.Whisper):  # Whisper's pre pads/trims the whole input
        assert torch.equal(fe.pre(y[:, k:], prev), whole[:, k:])
    # post = post_global o post_local
    # mel values spanning 12 decades, so Whisper's max - 8 floor and the clips act
    mel = 10.0 ** (12.0 * torch.rand(2, fe.core.n_mels, 50, generator=torch.Generator().manual_seed(SEED)) - 12.0)
    mel[0, :, 40:] *= 100.0  # the loudest frames lie outside the slice below
    assert torch.equal(fe.post(mel), fe.post_global(fe.post_local(mel)))
    # frame-local presets: post of a column range is that range of post; Whisper and
    # NeMo (per-utterance statistics) are not frame-local, and post shows it.
    ta = fe.time_axis
    part = fe.post(mel[..., 10:30])
    full = fe.post(mel).narrow(ta, 10, 20)
    assert fe.frame_local == torch.equal(part, full), name
    assert fe.frame_local == (not name.startswith(("whisper", "nemo")))


def test_preemphasis_matches_lfilter(speech_at):
    x = speech_at(16000)[:5000].astype(np.float64)
    out = supermel.presets.preemphasis(torch.from_numpy(x)[None], 0.97)[0].numpy()
    np.testing.assert_allclose(out, preemph(x), rtol=0, atol=1e-15)


# =========================================================================== configurations
@pytest.mark.parametrize("name", sorted(supermel.frontends()))
def test_config_round_trip(name):
    cfg = supermel.frontend(name).config
    d = cfg.as_dict()
    assert d["name"] == name
    back = type(cfg).from_dict(json.loads(json.dumps(d)))
    assert back == cfg
    assert supermel.FrontendConfig.from_dict({"name": name}) == cfg
    assert supermel.frontend(back).config == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"  # type: ignore[misc]


def test_partial_dict_fills_defaults():
    cfg = supermel.WhisperConfig.from_dict({"n_mels": 128, "pad_or_trim": True})
    assert cfg == dataclasses.replace(supermel.WhisperConfig(), n_mels=128, pad_or_trim=True)
    cfg = supermel.FrontendConfig.from_dict({"name": "bigvgan-24k-100", "fmax": None})
    assert isinstance(cfg, supermel.HifiGanConfig) and cfg.sr == 24000 and cfg.fmax is None
    assert supermel.frontend("whisper-80", n_mels=128).config == supermel.frontend("whisper-128").config.replace(name="whisper-80")


def test_frontends_listing():
    listing = supermel.frontends()
    assert set(REQUIRED) <= set(listing)
    for name, desc in listing.items():
        assert isinstance(desc, str) and desc and "\n" not in desc, name
        assert supermel.frontend(name).config.name == name


# =========================================================================== errors
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: supermel.frontend("wav2lipp"), r"unknown front end 'wav2lipp'"),
        (lambda: supermel.frontend("wav2lip", n_mel=80), r"unknown parameter\(s\) \['n_mel'\]"),
        (lambda: supermel.WhisperConfig.from_dict({"nmels": 1}), r"\['nmels'\]"),
        (lambda: supermel.FrontendConfig.from_dict({"sr": 1}), r"needs a 'name'"),
        (lambda: supermel.WhisperConfig.from_dict({"name": "wav2lip"}), r"has a Wav2LipConfig"),
        (lambda: supermel.frontend("kaldi-fbank", window_type="hann"), r"window_type='hann'"),
        (lambda: supermel.frontend("kaldi-fbank", high_freq=9000.0), r"high_freq=9000"),
        (lambda: supermel.frontend("kaldi-fbank", frame_length=0.05), r"frame_length=0.05"),
        (lambda: supermel.frontend("kaldi-fbank", snip_edges="yes"), r"snip_edges='yes'"),
        (lambda: supermel.frontend("nemo-80", variant="2.6"), r"variant='2.6'"),
        (lambda: supermel.frontend("whisper-80", max_scope="all"), r"max_scope='all'"),
        (lambda: supermel.frontend("whisper-80", padding=-1), r"padding=-1"),
        (lambda: supermel.frontend("wav2lip", fmax=9000.0), r"fmax=9000"),
        (lambda: supermel.frontend("wav2lip", max_abs_value=0), r"max_abs_value=0"),
        (lambda: supermel.frontend("tacotron2", log="log2"), r"log='log2'"),
        (lambda: supermel.frontend("vits", hop_length=0), r"hop_length=0"),
        (lambda: supermel.frontend("wav2lip", dtype=torch.float16), r"dtype=torch.float16"),
        (lambda: supermel.frontend("nemo-80")(np.zeros(300, np.float32)), r"at least 2 valid frames"),
        (lambda: supermel.frontend("nemo-80")(np.zeros((2, 500), np.float32), lengths=[500]), r"lengths has shape"),
        (lambda: supermel.frontend("nemo-80")(np.zeros((2, 500), np.float32), lengths=[500, 501]), r"lengths must lie"),
        (lambda: supermel.frontend("wav2lip")(np.zeros(100, np.int16)), r"dtype int16"),
        (lambda: supermel.frontend("wav2lip")(np.array([0.0, np.nan] * 500, np.float32)), r"not finite"),
    ],
)
def test_errors(call, match):
    with pytest.raises(supermel.ParameterError, match=match):
        call()


# =========================================================================== Wav2Lip video-frame windows
def expected_windows(n_cols, num, den):
    """Wav2Lip inference.py's loop for fps = num/den, in integer arithmetic: start = floor(80 i den / num)."""
    out, i = [], 0
    while True:
        start = (80 * i * den) // num
        if start + 16 > n_cols:
            out.append(n_cols - 16)
            return out
        out.append(start)
        i += 1


@pytest.mark.parametrize(
    "n_cols, fps, num, den",
    [
        (413, 25, 25, 1),
        (413, 30, 30, 1),
        (16, 25, 25, 1),
        (17, 25, 25, 1),
        (1000, 24, 24, 1),
        (977, 60, 60, 1),
        (8100, fractions.Fraction(30000, 1001), 30000, 1001),
        (8100, 29.97, 2997, 100),  # i = 2997 lands on column 8000 exactly
    ],
)
def test_wav2lip_mel_chunks(n_cols, fps, num, den):
    rng = np.random.default_rng(SEED)
    mel = rng.standard_normal((3, n_cols)).astype(np.float32)
    starts = expected_windows(n_cols, num, den)
    chunks = supermel.wav2lip_mel_chunks(mel, fps)
    assert isinstance(chunks, np.ndarray) and chunks.shape == (len(starts), 3, 16)
    for c, s in zip(chunks, starts):
        assert np.array_equal(c, mel[:, s : s + 16])
    # frontends.md 1.3: N = ceil((T - 15) fps / 80) + 1
    assert len(starts) == -(-(n_cols - 15) * num // (80 * den)) + 1
    if fps == 29.97:  # the original's float expression agrees on every window
        assert starts[:-1] == [int(i * (80.0 / fps)) for i in range(len(starts) - 1)]


def test_wav2lip_mel_chunks_counts_and_batches(speech_at):
    assert supermel.wav2lip_mel_chunks(np.zeros((80, 413)), 25).shape == (126, 80, 16)
    assert supermel.wav2lip_mel_chunks(np.zeros((80, 413)), 30).shape == (151, 80, 16)
    mel = supermel.frontend("wav2lip")(torch.from_numpy(np.stack([speech_at(16000)[:82400]] * 2)))
    assert mel.shape == (2, 80, 413)
    chunks = supermel.wav2lip_mel_chunks(mel, 25)
    assert isinstance(chunks, torch.Tensor) and chunks.shape == (2, 126, 80, 16)
    assert torch.equal(chunks[1, 5], mel[1, :, 16:32])  # floor(80 * 5 / 25) = 16


@pytest.mark.parametrize(
    "mel, fps, match",
    [
        (np.zeros((80, 100)), 0, r"fps=0"),
        (np.zeros((80, 100)), -25, r"fps=-25"),
        (np.zeros((80, 100)), float("nan"), r"fps=nan"),
        (np.zeros((80, 15)), 25, r"15 columns"),
        (np.zeros(100), 25, r"shape \(\.\.\., n_mels, T\)"),
    ],
)
def test_wav2lip_mel_chunks_errors(mel, fps, match):
    with pytest.raises(supermel.ParameterError, match=match):
        supermel.wav2lip_mel_chunks(mel, fps)
