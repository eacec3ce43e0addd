"""The front-end API across families: batches, types and frame counts, output layouts,
the streaming hooks (``pre``, ``post_local``, ``post_global``), pre-emphasis,
configurations (round trips, partial dicts), the registry listing and errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import supermel
from _helpers import preemph
from conftest import SEED


REQUIRED = (
    "wav2lip", "wav2lip-reflect", "whisper-80", "whisper-128", "hifigan-22k", "bigvgan-22k-80", "bigvgan-v2-22k-80",
    "bigvgan-24k-100", "bigvgan-v2-44k-128-256x", "bigvgan-v2-44k-128-512x", "vits", "tacotron2", "vocos-24k",
    "f5-tts", "speecht5", "nemo-80", "nemo-128", "kaldi-fbank", "lhotse-fbank",
)  # fmt: skip


# =========================================================================== arrays, batches, dtypes, frame counts, layouts
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


# =========================================================================== configurations, listing
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
