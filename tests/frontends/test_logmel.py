"""Log-mel vocoder/TTS front ends against the librosa/numpy expressions of their originals
(frontends.md 3, 4, 7: the originals are not packages).

HiFi-GAN, BigVGAN (v1, v2), VITS (``ref_hifigan``); Tacotron2, Vocos, F5-TTS,
SpeechT5 (``ref_tacotron2``, ``ref_vocos``, ``ref_speecht5``). The log-domain
tolerances (float32 vs float64 references) are explained in _helpers.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import supermel
from _helpers import F64_ATOL, check_abs
from conftest import check_log

import librosa  # noqa: E402  (a hard test dependency: a missing one must fail, not skip)


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
