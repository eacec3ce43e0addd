"""supermel.integrations.transformers against the Hugging Face extractors it replaces.

Every reference is the ``transformers`` class itself, called the same way on the
bundled speech clip and white noise. ``transformers`` computes Whisper with
``torch.stft`` in float32, and AST / SeamlessM4T in float64 numpy, frame by frame.
supermel computes all three in float32. The tolerances are those of the matching
preset tests in tests/frontends/ (test_whisper.py, test_kaldi_models.py), with the reason
given there.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import transformers  # a hard test dependency: a missing one must fail, not skip

import supermel
from conftest import SEED, check_log, rel_err
from supermel.integrations import transformers as smt

#: Whisper log-mel, (log10 + 4) / 4 scale: float32 FFT rounding; frontends/test_whisper.WHISPER_ATOL.
WHISPER_ATOL = 1e-4
#: AST log energies (frontends/test_kaldi_models.AST).
AST = dict(log_base=math.e, power=2, loud_db=60.0, loud_atol=2e-4, lin_rel=5e-6)
#: SeamlessM4T per-bin normalised features (frontends/test_kaldi_models.test_seamless_m4t_vs_transformers).
M4T_ATOL, M4T_REL = 2e-3, 2e-5


@pytest.fixture(scope="module")
def clips(speech_at):
    """A batch of different lengths: speech, a quiet speech excerpt, white noise."""
    y = speech_at(16000)
    noise = (0.1 * np.random.default_rng(SEED).standard_normal(37000)).astype(np.float32)
    return [y, 0.3 * y[16000:40000], noise]


def _features(extractor, clips, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AST: 128 bins on a 512-point FFT leave empty filters, in both
        return extractor(clips, sampling_rate=16000, return_tensors="np", **kwargs)


# =========================================================================== Whisper
@pytest.mark.parametrize(
    "config, call",
    [
        ({}, {}),  # 30 s windows, as Whisper checkpoints
        ({"feature_size": 128}, {}),  # large-v3
        ({}, {"padding": "longest", "return_attention_mask": True}),
        ({"chunk_length": 10}, {"truncation": True}),  # the 12 s clip is cut to 10 s
    ],
)
def test_whisper_equals_transformers(config, call, clips):
    ref = _features(transformers.WhisperFeatureExtractor(**config), clips, **call)
    out = _features(smt.WhisperFeatureExtractor(**config), clips, **call)
    assert set(out) == set(ref)
    a, b = out["input_features"], ref["input_features"]
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.abs(a.astype(np.float64) - b).max() <= WHISPER_ATOL
    assert rel_err(a, b) <= 2e-5
    for key in set(ref) - {"input_features"}:
        np.testing.assert_array_equal(out[key], ref[key])


def test_whisper_tensors_and_single_example(clips):
    ref = transformers.WhisperFeatureExtractor()(clips[0], sampling_rate=16000, return_tensors="pt")["input_features"]
    out = smt.WhisperFeatureExtractor()(clips[0], sampling_rate=16000, return_tensors="pt")["input_features"]
    assert isinstance(out, torch.Tensor) and out.shape == ref.shape == (1, 80, 3000)
    assert (out - ref).abs().max().item() <= WHISPER_ATOL


def test_whisper_dither_draws_the_same_noise(clips):
    # transformers adds dither * torch.randn(waveform.shape) before its STFT; supermel draws
    # the same numbers from the same generator state, so the outputs agree as without dither.
    # Dither 1.0 on audio of std ~0.1 makes every cell differ from the undithered features.
    kw = dict(dither=1.0)
    torch.manual_seed(SEED)
    ref = _features(transformers.WhisperFeatureExtractor(**kw), clips)["input_features"]
    torch.manual_seed(SEED)
    out = _features(smt.WhisperFeatureExtractor(**kw), clips)["input_features"]
    plain = _features(smt.WhisperFeatureExtractor(), clips)["input_features"]
    assert np.abs(out.astype(np.float64) - ref).max() <= WHISPER_ATOL
    assert np.abs(out - plain).max() > 0.1


# =========================================================================== AST, SeamlessM4T
def test_ast_equals_transformers(clips):
    ref = _features(transformers.ASTFeatureExtractor(), clips)["input_values"]
    out = _features(smt.ASTFeatureExtractor(), clips)["input_values"]
    assert out.shape == ref.shape == (3, 1024, 128) and out.dtype == np.float32
    c = transformers.ASTFeatureExtractor()
    to_log = lambda f: np.asarray(f, dtype=np.float64) * 2.0 * c.std + c.mean  # noqa: E731 (undo the normalisation)
    for i in range(len(clips)):
        check_log(to_log(out[i]), to_log(ref[i]), what=f"ast example {i}", **AST)


def test_ast_without_normalisation_and_other_length(clips):
    kw = dict(do_normalize=False, max_length=300)
    ref = _features(transformers.ASTFeatureExtractor(**kw), clips)["input_values"]
    out = _features(smt.ASTFeatureExtractor(**kw), clips)["input_values"]
    assert out.shape == ref.shape == (3, 300, 128)
    for i in range(len(clips)):
        check_log(out[i].astype(np.float64), ref[i].astype(np.float64), what=f"ast raw example {i}", **AST)


@pytest.mark.parametrize("call", [{}, {"do_normalize_per_mel_bins": False}, {"pad_to_multiple_of": 4}])
def test_seamless_m4t_equals_transformers(call, clips):
    ref = _features(transformers.SeamlessM4TFeatureExtractor(), clips, **call)
    out = _features(smt.SeamlessM4TFeatureExtractor(), clips, **call)
    assert set(out) == set(ref) == {"input_features", "attention_mask"}
    a, b = out["input_features"], ref["input_features"].astype(np.float64)
    assert a.shape == b.shape and a.dtype == np.float32
    if call.get("do_normalize_per_mel_bins", True):
        assert np.abs(a - b).max() <= M4T_ATOL
        assert rel_err(a, b) <= M4T_REL
    else:  # raw log energies (padding rows are 0 in both)
        for i in range(len(clips)):
            valid = ref["attention_mask"][i].astype(bool)
            check_log(a[i][valid], b[i][valid], log_base=math.e, power=2, loud_db=40.0, loud_atol=2e-4, lin_rel=2e-5, what=f"m4t raw {i}")
    np.testing.assert_array_equal(out["attention_mask"], ref["attention_mask"])


def test_seamless_m4t_uses_the_first_channel(clips):
    stereo = np.stack([clips[1], -0.5 * clips[1]])
    ref = transformers.SeamlessM4TFeatureExtractor()._extract_fbank_features(stereo)
    out = smt.SeamlessM4TFeatureExtractor()._extract_fbank_features(stereo)
    mono = smt.SeamlessM4TFeatureExtractor()._extract_fbank_features(clips[1])
    np.testing.assert_array_equal(out, mono)
    check_log(out.astype(np.float64), ref.astype(np.float64), log_base=math.e, power=2, loud_db=40.0, loud_atol=2e-4, lin_rel=2e-5, what="stereo")


# =========================================================================== Parakeet
#: Per-feature normalised NeMo log-mels (like SeamlessM4T's): float32 FFT rounding in cells far
#: below the maximum, scaled by their feature's 1/std; measured 4.1e-5 on these clips.
PARAKEET_ATOL = 5e-4


@pytest.mark.parametrize("config", [{}, {"feature_size": 128}])
@pytest.mark.parametrize("call", [{}, {"pad_to_multiple_of": 1600}])
def test_parakeet_equals_transformers(config, call, clips):
    ref = _features(transformers.ParakeetFeatureExtractor(**config), clips, **call)
    out = _features(smt.ParakeetFeatureExtractor(**config), clips, **call)
    assert set(out) == set(ref) == {"input_features", "attention_mask"}
    a, b = out["input_features"], ref["input_features"]
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.abs(a.astype(np.float64) - b).max() <= PARAKEET_ATOL
    assert rel_err(a, b) <= 2e-5
    np.testing.assert_array_equal(out["attention_mask"], ref["attention_mask"])


# =========================================================================== accelerate, save / load, errors
@pytest.mark.parametrize(
    "hf_class, config",
    [
        (transformers.WhisperFeatureExtractor, {"feature_size": 128}),
        (transformers.ASTFeatureExtractor, {"max_length": 512, "do_normalize": False}),
        (transformers.SeamlessM4TFeatureExtractor, {"stride": 3}),
        (transformers.ParakeetFeatureExtractor, {"feature_size": 128}),
    ],
)
def test_accelerate_keeps_the_configuration(hf_class, config, clips):
    theirs = hf_class(**config)
    ours = smt.accelerate(theirs)
    assert type(ours).__name__ == hf_class.__name__ and type(ours).__module__ == smt.__name__
    assert isinstance(ours, hf_class)
    assert ours.to_dict() == theirs.to_dict()
    assert smt.accelerate(ours) is ours
    a, b = _features(ours, clips[1:]), _features(theirs, clips[1:])
    key = "input_values" if hf_class is transformers.ASTFeatureExtractor else "input_features"
    assert a[key].shape == b[key].shape
    assert rel_err(a[key], b[key]) <= 2e-5


def test_accelerate_refuses_other_extractors():
    with pytest.raises(supermel.ParameterError, match="Wav2Vec2FeatureExtractor"):
        smt.accelerate(transformers.Wav2Vec2FeatureExtractor())


def test_save_and_load_stay_portable(tmp_path, clips):
    ours = smt.WhisperFeatureExtractor(feature_size=128)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "WhisperFeatureExtractor" and saved["feature_size"] == 128
    assert not any(k.startswith("_supermel") for k in saved)
    loaded = smt.WhisperFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded) is smt.WhisperFeatureExtractor
    auto = transformers.AutoFeatureExtractor.from_pretrained(tmp_path)  # the checkpoint still loads without supermel
    assert type(auto) is transformers.WhisperFeatureExtractor
    a, b = _features(loaded, clips[1:]), _features(auto, clips[1:])
    assert np.abs(a["input_features"].astype(np.float64) - b["input_features"]).max() <= WHISPER_ATOL


def test_non_finite_audio_is_refused(clips):
    bad = clips[1].copy()
    bad[100] = np.nan
    for extractor in (smt.WhisperFeatureExtractor(), smt.ASTFeatureExtractor(), smt.SeamlessM4TFeatureExtractor(), smt.ParakeetFeatureExtractor()):
        with pytest.raises(supermel.ParameterError, match="not finite"):
            _features(extractor, [bad])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_whisper_on_cuda_equals_cpu(clips):
    fe = smt.WhisperFeatureExtractor()
    gpu = _features(fe, clips, device="cuda")["input_features"]
    cpu = _features(fe, clips)["input_features"]
    assert np.abs(gpu.astype(np.float64) - cpu).max() <= WHISPER_ATOL


# =========================================================================== faster-whisper
from faster_whisper.feature_extractor import FeatureExtractor as FWFeatureExtractor  # noqa: E402  (the reference)

from supermel.integrations import faster_whisper as smfw  # noqa: E402


@pytest.mark.parametrize("config", [{}, {"feature_size": 128}, {"hop_length": 320, "n_fft": 800}])
@pytest.mark.parametrize("call", [{}, {"padding": 0}, {"padding": 480, "chunk_length": 10}])
def test_faster_whisper_equals_its_extractor(config, call, clips):
    theirs, ours = FWFeatureExtractor(**config), smfw.FeatureExtractor(**config)
    for y in clips:
        ref, out = theirs(y, **call), ours(y, **call)
        assert out.shape == ref.shape and out.dtype == ref.dtype == np.float32
        assert np.abs(out.astype(np.float64) - ref).max() <= WHISPER_ATOL
        assert rel_err(out, ref) <= 2e-5
    assert (ours.n_samples, ours.nb_max_frames) == (theirs.n_samples, theirs.nb_max_frames)  # chunk_length's side effect


def test_faster_whisper_batch_is_per_example(clips):
    y = np.stack([clips[0][:40000], 0.01 * clips[0][40000:80000]])
    out = smfw.FeatureExtractor()(y)
    ref = [FWFeatureExtractor()(row) for row in y]
    assert out.shape == (2,) + ref[0].shape
    for o, r in zip(out, ref):
        assert np.abs(o.astype(np.float64) - r).max() <= WHISPER_ATOL


class _Model:
    """The attributes of faster_whisper.WhisperModel that accelerate() touches (no model download)."""

    def __init__(self, **kw):
        self.feature_extractor = FWFeatureExtractor(**kw)


class _Pipeline:
    def __init__(self, model):
        self.model = model


def test_faster_whisper_accelerate(clips):
    model = _Model(feature_size=128)
    model.feature_extractor(clips[1], chunk_length=10)  # a changed state is carried over
    ref = model.feature_extractor(clips[1])
    assert smfw.accelerate(model) is model
    fe = model.feature_extractor
    assert type(fe) is smfw.FeatureExtractor
    assert (fe.n_samples, fe.nb_max_frames, fe.mel_filters.shape) == (160000, 1000, (128, 201))
    assert np.abs(fe(clips[1]).astype(np.float64) - ref).max() <= WHISPER_ATOL
    assert smfw.accelerate(model).feature_extractor is fe  # already accelerated: unchanged
    pipe = _Pipeline(_Model())
    assert type(smfw.accelerate(pipe).model.feature_extractor) is smfw.FeatureExtractor
    with pytest.raises(supermel.ParameterError, match="faster-whisper feature_extractor"):
        smfw.accelerate(object())


def test_faster_whisper_refuses_nan(clips):
    bad = clips[1].copy()
    bad[7] = np.inf
    with pytest.raises(supermel.ParameterError, match="not finite"):
        smfw.FeatureExtractor()(bad)
