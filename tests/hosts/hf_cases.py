"""transformers' feature-extraction tests for the four extractors supermel replaces, run by the hosts'
harness (copied into its work folder as ``tests/test_supermel_hf_cases.py``; not collected here).

transformers' sdist ships its common mixins (``SequenceFeatureExtractionTestMixin``,
``FeatureExtractionSavingTestMixin``, imported from the sdist as ``hf_tests``) but not its
``tests/models/*``. The testers below are ours (the mixins need one per extractor); the cases
after them are ours too, the cases of transformers' model tests on local audio instead of hub
datasets: batched equals unbatched, list / numpy / float64 inputs, truncation, padding, the
Whisper numpy and torch routes, normalisation, attention masks. In the supermel run
``transformers.<Name>FeatureExtractor`` is supermel's twin (the harness's plugin substitutes it);
both runs record every extractor call's features and the harness compares them.
"""

from __future__ import annotations

import unittest

import numpy as np
import torch
from transformers import ASTFeatureExtractor, ParakeetFeatureExtractor, SeamlessM4TFeatureExtractor, WhisperFeatureExtractor

from hf_tests.test_sequence_feature_extraction_common import SequenceFeatureExtractionTestMixin

import supermel

SPEECH, SR = supermel.audio.example_audio()


def speech_batch(lengths, seed=0):
    """Excerpts of the bundled speech clip (16 kHz), one per length, at different offsets."""
    rng = np.random.default_rng(seed)
    return [SPEECH[o : o + n].copy() for n, o in zip(lengths, rng.integers(0, len(SPEECH) - max(lengths), len(lengths)))]


class Tester:
    """What the mixins ask of a tester: a constructor dict and (length, feature_size) inputs to pad."""

    def __init__(self, feature_size, *, batch_size=7, min_seq_length=400, max_seq_length=2000, **extra):
        self.feature_size = feature_size
        self.batch_size = batch_size
        self.min_seq_length = min_seq_length
        self.max_seq_length = max_seq_length
        self.seq_length_diff = (max_seq_length - min_seq_length) // (batch_size - 1)
        self.extra = dict(sampling_rate=16000, padding_value=0.0, **extra)

    def prepare_feat_extract_dict(self):
        return dict(feature_size=self.feature_size, **self.extra)

    def prepare_inputs_for_common(self, equal_length=False, numpify=False):
        rng = np.random.default_rng(1)
        lengths = [self.max_seq_length] * self.batch_size if equal_length else range(self.min_seq_length, self.max_seq_length, self.seq_length_diff)
        shape = (lambda n: (n,)) if self.feature_size == 1 else (lambda n: (n, self.feature_size))  # raw audio: 1-D
        inputs = [rng.random(shape(n)).tolist() for n in lengths]
        return [np.asarray(x) for x in inputs] if numpify else inputs


class TestWhisperCommon(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = WhisperFeatureExtractor
    feat_extract_tester = Tester(10, hop_length=160, chunk_length=8, n_fft=400)


class TestASTCommon(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = ASTFeatureExtractor
    feat_extract_tester = Tester(1)


class TestSeamlessM4TCommon(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = SeamlessM4TFeatureExtractor
    feat_extract_tester = Tester(10, num_mel_bins=10, stride=2)


class TestParakeetCommon(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = ParakeetFeatureExtractor
    feat_extract_tester = Tester(80)


# --------------------------------------------------------------------------- the model tests' cases, local audio
def _close(a, b, atol=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.allclose(a, b, atol=atol, equal_nan=True), float(np.nanmax(np.abs(a - b)))


def test_whisper_call_batched_unbatched_numpy_list():
    fe = WhisperFeatureExtractor(feature_size=80)
    inputs = speech_batch([8000, 12000, 16000])
    batched = fe(inputs, sampling_rate=16000, return_tensors="np").input_features
    assert batched.shape == (3, 80, 3000)
    for x, row in zip(inputs, batched):
        _close(fe(x, sampling_rate=16000, return_tensors="np").input_features[0], row)
    _close(fe([x.tolist() for x in inputs], sampling_rate=16000, return_tensors="np").input_features, batched)
    _close(fe(np.stack([x[:8000] for x in inputs]), sampling_rate=16000, return_tensors="np").input_features, fe([x[:8000] for x in inputs], sampling_rate=16000, return_tensors="np").input_features)


def test_whisper_truncation_and_longest_padding():
    fe = WhisperFeatureExtractor()
    inputs = speech_batch([1600, 4800, 9600])
    longest = fe(inputs, sampling_rate=16000, padding="longest", return_tensors="np", return_attention_mask=True)
    assert longest.input_features.shape == (3, 80, 60)
    assert longest.attention_mask.sum(-1).tolist() == [10, 30, 60]  # frames of each input
    long = [SPEECH[: 40 * 16000 // 4 * 4]] if len(SPEECH) >= 40 * 16000 else [np.tile(SPEECH, 4)[: 40 * 16000]]
    assert fe(long, sampling_rate=16000, return_tensors="np").input_features.shape == (1, 80, 3000)


def test_whisper_numpy_and_torch_routes_and_float64():
    fe = WhisperFeatureExtractor()
    x = speech_batch([16000])[0]
    np_route = fe._np_extract_fbank_features(np.pad(x, (0, 480000 - x.size))[None], "cpu")
    torch_route = fe._torch_extract_fbank_features(np.pad(x, (0, 480000 - x.size))[None], "cpu")
    _close(np_route, torch_route, atol=1e-3)
    _close(fe(x.astype(np.float64), sampling_rate=16000, return_tensors="np").input_features, fe(x, sampling_rate=16000, return_tensors="np").input_features)
    assert fe.pad([{"input_features": np.ones((3, 5))}], return_tensors="np").input_features.dtype == np.float32


def test_whisper_normalize_and_rates():
    fe = WhisperFeatureExtractor()
    x = speech_batch([16000, 8000])
    out = fe(x, sampling_rate=16000, do_normalize=True, padding="longest", return_tensors="np").input_features
    assert np.isfinite(out).all()
    for rate in (8000, 4000):
        y = supermel.audio.resample(x[0], orig_sr=16000, target_sr=rate)
        feats = WhisperFeatureExtractor(sampling_rate=rate)(y, sampling_rate=rate, return_tensors="np").input_features
        assert feats.shape == (1, 80, 30 * rate // 160)


def test_whisper_torch_input_and_dither():
    fe = WhisperFeatureExtractor(dither=0.5)
    x = torch.from_numpy(speech_batch([4000])[0])
    torch.manual_seed(0)
    a = fe(x.numpy(), sampling_rate=16000, return_tensors="np").input_features
    torch.manual_seed(0)
    b = fe(x.numpy(), sampling_rate=16000, return_tensors="np").input_features
    _close(a, b, atol=0)


def test_ast_call_and_normalisation():
    fe = ASTFeatureExtractor()
    inputs = speech_batch([16000, 24000, 40000])
    batched = fe(inputs, sampling_rate=16000, return_tensors="np").input_values
    assert batched.shape == (3, 1024, 128)
    for x, row in zip(inputs, batched):
        _close(fe(x, sampling_rate=16000, return_tensors="np").input_values[0], row, atol=1e-3)
    raw = ASTFeatureExtractor(do_normalize=False)(inputs[0], sampling_rate=16000, return_tensors="np").input_values
    _close((raw - fe.mean) / (fe.std * 2), batched[:1], atol=1e-3)
    short = ASTFeatureExtractor(max_length=50)(inputs, sampling_rate=16000, return_tensors="np").input_values
    assert short.shape == (3, 50, 128)
    _close(fe(np.asarray(inputs[0], dtype=np.float64), sampling_rate=16000, return_tensors="np").input_values, batched[:1], atol=1e-3)


def test_seamless_call_stride_normalisation_mask():
    fe = SeamlessM4TFeatureExtractor()
    inputs = speech_batch([8000, 12000, 16000])
    out = fe(inputs, sampling_rate=16000, padding=True, return_tensors="np", return_attention_mask=True)
    assert out.input_features.shape[0] == 3 and out.input_features.shape[2] == 160
    for x, row, mask in zip(inputs, out.input_features, out.attention_mask):
        one = fe(x, sampling_rate=16000, return_tensors="np").input_features[0]
        _close(one, row[: one.shape[0]], atol=1e-3)
        assert 0 < mask.sum() <= one.shape[0] * 2
    single = fe(inputs[2], sampling_rate=16000, return_tensors="np", do_normalize_per_mel_bins=True).input_features[0]
    stacked = single.reshape(-1, 80)
    assert np.allclose(stacked.mean(0), 0, atol=1e-2)
    stereo = np.stack([inputs[0], inputs[0][::-1].copy()])
    _close(fe([stereo], sampling_rate=16000, return_tensors="np").input_features, fe([inputs[0]], sampling_rate=16000, return_tensors="np").input_features, atol=1e-3)


def test_parakeet_call_mask_and_lengths():
    fe = ParakeetFeatureExtractor()
    inputs = speech_batch([8000, 12000, 16000])
    out = fe(inputs, sampling_rate=16000, return_tensors="np")
    assert out.input_features.shape == (3, 101, 80)
    assert out.attention_mask.sum(-1).tolist() == [50, 75, 100]
    for x, row, n in zip(inputs, out.input_features, [51, 76, 101]):
        _close(fe(x, sampling_rate=16000, return_tensors="np").input_features[0], row[:n], atol=1e-3)
    pt = fe(inputs, sampling_rate=16000, return_tensors="pt")
    _close(pt.input_features.numpy(), out.input_features, atol=1e-5)


def test_save_and_load_keep_the_class(tmp_path):
    for cls in (WhisperFeatureExtractor, ASTFeatureExtractor, SeamlessM4TFeatureExtractor, ParakeetFeatureExtractor):
        fe = cls()
        fe.save_pretrained(tmp_path / cls.__name__)
        again = cls.from_pretrained(tmp_path / cls.__name__)
        assert type(again) is cls and again.to_dict() == fe.to_dict()
