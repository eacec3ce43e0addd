"""Whisper (``whisper-80``, ``whisper-128``) against openai-whisper: ``whisper.log_mel_spectrogram``
and ``whisper.pad_or_trim``; the streaming form against the offline one (tolerances: _helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import supermel
from _helpers import F32, check_abs, clip, close, random_cuts, stream_all
from conftest import SEED

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


# =========================================================================== streaming
@pytest.mark.usefixtures("torch_kernels")
def test_whisper_batch_max_scope_across_streams(speech_at):
    fe = supermel.frontend("whisper-80", max_scope="batch")
    Y = np.stack([clip(speech_at, 16000, 1.0, offset=o) for o in (0.5, 5.0)])
    Y[1] *= 0.01  # the quiet stream is floored at the loud one's maximum
    stream = fe.streaming(num_streams=2)
    got = stream.finalize(stream_all(stream, Y, random_cuts(Y.shape[-1], np.random.default_rng(SEED)), -1))
    close(got, fe(Y), F32, "batch max")
