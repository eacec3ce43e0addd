"""Wav2Lip (frontends.md 1): the front end, its video-frame windows and its streaming chunker.

References, never supermel's own code:

* offline: the librosa expression of Wav2Lip's ``audio.melspectrogram``
  (frontends.md 1.4, ``ref_wav2lip``);
* windows: Wav2Lip ``inference.py``'s loop, in integer arithmetic
  (``expected_windows``, ``starts_by_rule``);
* ``Wav2LipChunker``: ``supermel.wav2lip_mel_chunks`` of the offline front end
  (both tested above against the references). Streaming tolerances: _helpers.py.
"""

from __future__ import annotations

import fractions

import numpy as np
import pytest
import torch

import supermel
from _helpers import F32, F64_ATOL, check_abs, clip, close, preemph, random_cuts
from conftest import SEED

import librosa  # noqa: E402  (a hard test dependency: a missing one must fail, not skip)


# =========================================================================== offline
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


# =========================================================================== video-frame windows (wav2lip_mel_chunks)
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


# =========================================================================== streaming: Wav2LipChunker
def starts_by_rule(n_cols: int, num: int, den: int) -> list:
    """Wav2Lip inference.py's loop for fps = num/den in integer arithmetic: floor(80 i den / num), then T - 16."""
    out, i = [], 0
    while (80 * i * den) // num + 16 <= n_cols:
        out.append((80 * i * den) // num)
        i += 1
    return out + [n_cols - 16]


FPS = [(25, 25, 1), (30, 30, 1), (29.97, 2997, 100), (fractions.Fraction(30000, 1001), 30000, 1001)]


@pytest.mark.usefixtures("torch_kernels")
@pytest.mark.parametrize("fps, num, den", FPS)
def test_chunker_on_mel_columns(fps, num, den):
    rng = np.random.default_rng(SEED)
    mel = rng.standard_normal((80, 220)).astype(np.float32)
    for n_cols in list(range(16, 60)) + [219, 220]:  # every way the last window can clamp
        m = mel[:, :n_cols]
        chunker = supermel.Wav2LipChunker(fps)
        parts, k = [], 0
        for c in random_cuts(n_cols, rng, (0, 1, 2, 5, 16, 17)):
            parts.append(chunker.push(m[:, k:c]))
            k = c
            # as soon as the columns exist: every regular window within the first k columns
            assert chunker.window_count == len(starts_by_rule(k, num, den)) - 1 if k >= 16 else chunker.window_count == 0
        parts.append(chunker.flush())
        got = np.concatenate(parts, axis=0)
        want = supermel.wav2lip_mel_chunks(m, fps)
        assert got.shape == want.shape and np.array_equal(got, want), (fps, n_cols)
        assert [int(np.flatnonzero((m[0] == w[0, 0]))[0]) for w in got] == starts_by_rule(n_cols, num, den)


@pytest.mark.usefixtures("torch_kernels")
@pytest.mark.parametrize("fps, num, den", FPS)
@pytest.mark.parametrize("n", [3000, 3199, 3200, 16123, 24000])
def test_chunker_on_audio_equals_offline_windows(fps, num, den, n, speech_at):
    fe = supermel.frontend("wav2lip")
    y = clip(speech_at, 16000, n / 16000)
    want = supermel.wav2lip_mel_chunks(fe(y), fps)
    chunker = supermel.Wav2LipChunker(fps, frontend="wav2lip")
    got = np.concatenate([chunker.push(y[i : i + 640]) for i in range(0, n, 640)] + [chunker.flush()], axis=0)
    close(got, want, F32, f"fps={fps} n={n}")
    assert len(got) == len(starts_by_rule(1 + n // 200, num, den)) == chunker.window_count


@pytest.mark.usefixtures("torch_kernels")
def test_chunker_latency_is_212_5_ms(speech_at):
    chunker = supermel.Wav2LipChunker(25, frontend="wav2lip")
    assert chunker.latency_samples == 3400 and chunker.latency_ms == 212.5 and chunker.latency_columns == 16
    assert supermel.Wav2LipChunker(30).latency_ms == 212.5
    y = clip(speech_at, 16000, 1.0)
    arrival = []
    for j in range(0, len(y), 40):  # 2.5 ms pushes
        arrival += [j + 39] * chunker.push(y[j : j + 40]).shape[0]
    for i, j in enumerate(arrival):
        need = 200 * ((80 * i) // 25) + chunker.latency_samples - 1  # last sample window i reads
        assert j == need + (-need - 1) % 40, (i, j, need)  # returned by the push that delivers it
        assert need - 16000 * i / 25 <= 3400  # at most 212.5 ms after the frame's timestamp


@pytest.mark.usefixtures("torch_kernels")
def test_chunker_multistream_and_tensors(speech_at):
    fe = supermel.frontend("wav2lip")
    Y = np.stack([clip(speech_at, 16000, 1.0, offset=o) for o in (0.5, 4.0)])
    chunker = supermel.Wav2LipChunker(30, frontend=fe, num_streams=2)
    got = np.concatenate([chunker.push(Y[:, i : i + 1000]) for i in range(0, Y.shape[-1], 1000)] + [chunker.flush()], axis=1)
    close(got, supermel.wav2lip_mel_chunks(fe(Y), 30), F32, "two streams")
    mel = torch.from_numpy(fe(Y[0]))
    chunker = supermel.Wav2LipChunker(25)
    out = [chunker.push(mel[:, :40]), chunker.push(mel[:, 40:]), chunker.flush()]
    assert all(isinstance(o, torch.Tensor) for o in out)
    assert torch.equal(torch.cat(out), supermel.wav2lip_mel_chunks(mel, 25))


@pytest.mark.usefixtures("torch_kernels")
def test_chunker_errors():
    chunker = supermel.Wav2LipChunker(25)
    chunker.push(np.zeros((80, 15), np.float32))
    with pytest.raises(supermel.ParameterError, match="15 columns"):
        chunker.flush()
    with pytest.raises(supermel.ParameterError, match="rows"):
        chunker.push(np.zeros((81, 5), np.float32))
    with pytest.raises(supermel.ParameterError, match="shape"):
        chunker.push(np.zeros(5, np.float32))
    chunker.push(np.zeros((80, 1), np.float32))
    assert chunker.flush().shape == (1, 80, 16)
    with pytest.raises(supermel.ParameterError, match="after flush"):
        chunker.push(np.zeros((80, 1), np.float32))
    chunker.reset()
    assert chunker.push(np.zeros((80, 16), np.float32)).shape == (1, 80, 16)
    with pytest.raises(supermel.ParameterError, match="fps=0"):
        supermel.Wav2LipChunker(0)
    with pytest.raises(supermel.ParameterError, match="Wav2Lip"):
        supermel.Wav2LipChunker(25, frontend="whisper-80")
    audio = supermel.Wav2LipChunker(25, frontend="wav2lip")
    bad = np.zeros(100, np.float32)
    bad[3] = np.inf
    with pytest.raises(supermel.ParameterError, match="not finite"):
        audio.push(bad)
