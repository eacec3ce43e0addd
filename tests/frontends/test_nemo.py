"""NeMo (``nemo-80``, ``nemo-128``; variants 2.5 and 2.4) against the librosa/scipy expression
of NeMo's ``FilterbankFeatures`` (frontends.md 6, ``ref_nemo``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

import supermel
from _helpers import F64_ATOL, check_abs, preemph
from conftest import SEED

import librosa  # noqa: E402  (a hard test dependency: a missing one must fail, not skip)


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
