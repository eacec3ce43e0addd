"""Models on Kaldi fbank: AST and SeamlessM4T against Hugging Face transformers'
``ASTFeatureExtractor`` / ``SeamlessM4TFeatureExtractor``; FunASR against kaldi-native-fbank
(``_helpers.ref_knf``) followed by FunASR's ``apply_lfr`` and ``load_cmvn`` (``ref_lfr``,
``ref_load_cmvn``; frontends.md 5.4, 7.3, 7.4)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import supermel
from _helpers import KALDI, ref_knf
from conftest import SEED, check_log

from transformers import ASTFeatureExtractor, SeamlessM4TFeatureExtractor  # noqa: E402  (the references; in the test extra)


# =========================================================================== AST, SeamlessM4T (Hugging Face transformers)
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
