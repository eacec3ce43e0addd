"""The hosts' behaviour at the edges, against the real host packages (issue 18, deliver 1).

Each drop-in and preset that stands for a host pads as the host does *before* any emptiness
check, accepts every sampling rate the host accepts with the host's features, and refuses what
librosa refuses:

- faster-whisper: ``FeatureExtractor(empty)`` is one frame; ``WhisperModel.transcribe(empty)`` and
  ``transcribe(silence, vad_filter=True)`` return no segments (checked through faster-whisper's own
  ``transcribe`` on a model-less ``WhisperModel``: everything transcribe calls before the decoder,
  which never runs for these inputs; a real model would need a download). ``sampling_rate=8000``.
- openai-whisper: ``log_mel_spectrogram(empty, padding=N_SAMPLES)`` is ``(80, 3000)``; supermel's
  equivalent, ``frontend("whisper-80", padding=N_SAMPLES)``, too.
- transformers: ``WhisperFeatureExtractor(sampling_rate=4000 / 8000)`` (8000 Hz top kept, zero
  filters above Nyquist), AST and SeamlessM4T at other rates (400 / 160-sample frames on the
  numpy route), Parakeet on empty audio.
- librosa: ``mfcc(lifter=nan)`` and negative lifters refused (and ``inf``, which makes librosa's
  result NaN); ``except librosa.ParameterError`` catches supermel's errors.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import supermel

fw = pytest.importorskip("faster_whisper")
transformers = pytest.importorskip("transformers")
whisper = pytest.importorskip("whisper")
librosa = pytest.importorskip("librosa")

from faster_whisper.feature_extractor import FeatureExtractor as HostFW  # noqa: E402

from supermel.integrations import faster_whisper as sm_fw  # noqa: E402
from supermel.integrations import transformers as sm_tf  # noqa: E402

WHISPER_ATOL = 1e-4  # the log-mel scale, as tests/test_integrations.py


def noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# --------------------------------------------------------------------------- faster-whisper
@pytest.mark.parametrize("sr", [16000, 8000])
@pytest.mark.parametrize("n", [0, 1, 159, 239, 400, 16000])
@pytest.mark.parametrize("kind", ["zeros", "noise"])
def test_faster_whisper_extractor_at_the_edges(sr, n, kind):
    y = np.zeros(n, np.float32) if kind == "zeros" else noise(n)
    want = HostFW(sampling_rate=sr)(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # faster-whisper is silent on short audio: so is the drop-in
        got = sm_fw.FeatureExtractor(sampling_rate=sr)(y)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=WHISPER_ATOL)


def model_less(extractor) -> "fw.WhisperModel":
    """A faster-whisper WhisperModel without a CTranslate2 model: what transcribe needs up to the decoder."""
    m = object.__new__(fw.WhisperModel)
    m.logger = logging.getLogger("test_host_edges")
    m.model = types.SimpleNamespace(is_multilingual=False)  # English-only: no language detection
    m.hf_tokenizer = None
    m.feature_extractor = extractor
    m.input_stride = 2
    m.num_samples_per_token = extractor.hop_length * 2
    m.frames_per_second = extractor.sampling_rate // extractor.hop_length
    m.tokens_per_second = extractor.sampling_rate // m.num_samples_per_token
    m.time_precision = 0.02
    m.max_length = 448
    return m


@pytest.mark.parametrize(
    "audio, kw",
    [(np.zeros(0, np.float32), {}), (np.zeros(5 * 16000, np.float32), {"vad_filter": True}), (np.zeros(0, np.float32), {"vad_filter": True})],
    ids=["empty", "silence-vad", "empty-vad"],
)
@pytest.mark.parametrize("extractor", [HostFW, sm_fw.FeatureExtractor], ids=["host", "supermel"])
def test_faster_whisper_transcribe_empty_and_silence_give_no_segments(audio, kw, extractor):
    segments, info = fw.WhisperModel.transcribe(model_less(extractor()), audio, suppress_tokens=None, **kw)
    assert list(segments) == []
    assert info.duration == len(audio) / 16000 and info.duration_after_vad == 0.0


def test_faster_whisper_accelerate_keeps_the_8k_configuration():
    model = model_less(HostFW(sampling_rate=8000))
    sm_fw.accelerate(model)
    assert isinstance(model.feature_extractor, sm_fw.FeatureExtractor) and model.feature_extractor.sampling_rate == 8000
    np.testing.assert_allclose(model.feature_extractor(noise(8000)), HostFW(sampling_rate=8000)(noise(8000)), rtol=0, atol=WHISPER_ATOL)


# --------------------------------------------------------------------------- openai-whisper
@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("n", [0, 1, 16000])
def test_openai_whisper_padding_before_the_emptiness_check(n_mels, n):
    y = np.zeros(n, np.float32) if n < 2 else noise(n)
    want = whisper.log_mel_spectrogram(y, n_mels=n_mels, padding=whisper.audio.N_SAMPLES).numpy()
    got = supermel.frontend(f"whisper-{n_mels}", padding=whisper.audio.N_SAMPLES)(y)
    assert want.shape == got.shape == (n_mels, 3000 + n // 160)
    np.testing.assert_allclose(got, want, rtol=0, atol=WHISPER_ATOL)


def test_whisper_empty_without_padding_is_refused_as_the_host_refuses():
    with pytest.raises(Exception):
        whisper.log_mel_spectrogram(np.zeros(0, np.float32))
    with pytest.raises(supermel.ParameterError, match="y is empty"):
        supermel.frontend("whisper-80")(np.zeros(0, np.float32))


def test_whisper_pad_or_trim_and_batches_of_empty_audio():
    fe = supermel.frontend("whisper-80", pad_or_trim=True)
    assert fe(np.zeros(0, np.float32)).shape == (80, 3000)
    assert fe(np.zeros((2, 0), np.float32)).shape == (2, 80, 3000)
    with pytest.raises(supermel.ParameterError, match="empty batch dimension"):
        fe(np.zeros((0, 0), np.float32))


# --------------------------------------------------------------------------- transformers
@pytest.mark.parametrize("sr", [4000, 8000, 16000, 44100])
@pytest.mark.parametrize("padding", ["max_length", "longest"])
@pytest.mark.parametrize("n", [0, 1600, 24000])
def test_transformers_whisper_every_rate(sr, padding, n):
    if padding == "longest" and n == 0:
        pytest.skip("transformers itself fails on empty audio without padding (a RuntimeError; supermel: ParameterError)")
    y = noise(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' own 'mel filter has all zero values' below 16 kHz
        want = transformers.WhisperFeatureExtractor(sampling_rate=sr)(y, sampling_rate=sr, padding=padding, return_tensors="np")
        got = sm_tf.WhisperFeatureExtractor(sampling_rate=sr)(y, sampling_rate=sr, padding=padding, return_tensors="np")
    assert got["input_features"].shape == want["input_features"].shape
    np.testing.assert_allclose(got["input_features"], want["input_features"], rtol=0, atol=WHISPER_ATOL)


@pytest.mark.parametrize("sr", [4000, 8000])
def test_filters_above_nyquist_are_transformers_filters(sr):
    """Whisper's 8000 Hz top at 4 / 8 kHz: transformers' mel_filter_bank, zero above Nyquist."""
    from transformers.audio_utils import mel_filter_bank

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                               sampling_rate=sr, norm="slaney", mel_scale="slaney").T  # fmt: skip
    got = supermel.filters.mel_filters_above_nyquist(sr=sr, n_fft=400, n_mels=80, fmin=0.0, fmax=8000.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert (got.max(axis=1) == 0).sum() == (want.max(axis=1) == 0).sum() > 0


def test_whisper_preset_refuses_fmax_above_nyquist_unless_asked():
    with pytest.raises(supermel.ParameterError, match="fmax_above_nyquist=True"):
        supermel.frontend("whisper-80", sr=8000)
    fe = supermel.frontend("whisper-80", sr=8000, fmax_above_nyquist=True)
    want = HostFW(sampling_rate=8000)(noise(8000), padding=0)
    np.testing.assert_allclose(fe(noise(8000)), want, rtol=0, atol=WHISPER_ATOL)


@pytest.mark.parametrize("name", ["ASTFeatureExtractor", "SeamlessM4TFeatureExtractor"])
@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_transformers_kaldi_extractors_at_other_rates(name, sr):
    """transformers' numpy route frames 400 / 160 samples at any rate (25 / 10 ms only at 16 kHz)."""
    y = noise(sr)
    host = getattr(transformers, name)(sampling_rate=sr)
    twin = getattr(sm_tf, name)(sampling_rate=sr)
    want = host(y, sampling_rate=sr, return_tensors="np")
    got = twin(y, sampling_rate=sr, return_tensors="np")
    key = "input_values" if "input_values" in want else "input_features"
    assert got[key].shape == want[key].shape
    np.testing.assert_allclose(got[key], want[key], rtol=0, atol=5e-4)


@pytest.mark.parametrize("name", ["ASTFeatureExtractor", "SeamlessM4TFeatureExtractor"])
@pytest.mark.parametrize("n", [0, 1, 2, 239, 240, 399, 400])
def test_transformers_kaldi_extractors_on_short_audio(name, n):
    """transformers' numpy route fails below 240 samples (a ValueError): the twins refuse the same inputs."""
    y = noise(n)
    try:
        want = getattr(transformers, name)()(y, sampling_rate=16000, return_tensors="np")
    except ValueError:
        with pytest.raises(supermel.ParameterError, match="needs at least 240 samples"):
            getattr(sm_tf, name)()(y, sampling_rate=16000, return_tensors="np")
        assert n < 240
        return
    assert n >= 240
    got = getattr(sm_tf, name)()(y, sampling_rate=16000, return_tensors="np")
    key = "input_values" if "input_values" in want else "input_features"
    assert got[key].shape == want[key].shape
    np.testing.assert_allclose(got[key], want[key], rtol=0, atol=5e-4)


@pytest.mark.parametrize("batch", [[0], [0, 3000], [1]])
def test_transformers_parakeet_empty_audio(batch):
    ys = [np.zeros(n, np.float32) if n < 2 else noise(n) for n in batch]
    want = transformers.ParakeetFeatureExtractor()(ys, sampling_rate=16000, return_tensors="np")
    got = sm_tf.ParakeetFeatureExtractor()(ys, sampling_rate=16000, return_tensors="np")
    a, b = want["input_features"], got["input_features"]
    assert a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(b), np.nan_to_num(a), rtol=0, atol=5e-4)
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])


# --------------------------------------------------------------------------- librosa
@pytest.mark.parametrize("lifter", [float("nan"), np.float32("nan"), -1, -np.inf])
def test_mfcc_lifter_refused_as_librosa_refuses(lifter):
    y = noise(8000)
    with pytest.raises(librosa.ParameterError, match="lifter"):
        librosa.feature.mfcc(y=y, sr=16000, lifter=lifter)
    with pytest.raises(supermel.ParameterError, match="lifter"):
        supermel.mfcc(y=y, sr=16000, lifter=lifter)
    with pytest.raises(supermel.ParameterError, match="lifter"):
        supermel.mfcc(S=np.ones((128, 4), np.float32), lifter=lifter)
    with pytest.raises(supermel.ParameterError, match="lifter"):
        supermel.MFCC(sr=16000, lifter=lifter)


def test_mfcc_lifter_inf_refused_where_librosa_returns_nan():
    y = noise(8000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(librosa.feature.mfcc(y=y, sr=16000, lifter=np.inf)).any()
    with pytest.raises(supermel.ParameterError, match="finite"):
        supermel.mfcc(y=y, sr=16000, lifter=np.inf)


def test_mfcc_finite_lifters_still_equal_librosa():
    y = noise(8000)
    for lifter in (0, 1.5, 22):
        want = librosa.feature.mfcc(y=y, sr=16000, lifter=lifter)
        np.testing.assert_allclose(supermel.mfcc(y=y, sr=16000, lifter=lifter), want, rtol=1e-4, atol=1e-3)


def test_except_librosa_parameter_error_catches_supermel_errors():
    """The decision (supermel/_errors.py): with librosa installed, supermel.ParameterError subclasses it."""
    assert issubclass(supermel.ParameterError, librosa.ParameterError)
    assert issubclass(supermel.ParameterError, ValueError)
    for call in (lambda: supermel.melspectrogram(y=np.zeros(0, np.float32)), lambda: supermel.mfcc(y=noise(100), lifter=float("nan"))):
        with pytest.raises(librosa.ParameterError):
            call()
        with pytest.raises(ValueError):
            call()
    try:  # the README's recipe for code that catches both libraries' errors
        librosa.feature.mfcc(y=noise(100), lifter=-1)
    except (supermel.ParameterError, librosa.ParameterError) as exc:
        assert "lifter" in str(exc)


def test_without_librosa_supermel_errors_are_value_errors_only():
    code = (
        "import sys; sys.modules['librosa'] = None\n"
        "import supermel, numpy as np\n"
        "names = [k.__module__ + '.' + k.__name__ for k in supermel.ParameterError.__mro__]\n"
        "assert not any(n.startswith('librosa') for n in names), names\n"
        "try:\n"
        "    supermel.melspectrogram(y=np.zeros(0, np.float32))\n"
        "except ValueError as exc:\n"
        "    print('ValueError:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ValueError: y is empty")
