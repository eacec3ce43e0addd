"""The front-end workloads: model input features against the library that defines them.

Whisper's log-mel (openai-whisper, the reference; librosa's expression of it;
``transformers`` and faster-whisper and their supermel twins), Kaldi fbank
(kaldi-native-fbank, torchaudio) and the Hugging Face extractors of w2v-bert,
AST and Parakeet, each against ``supermel.frontend(name)``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from .harness import _SR, Built, Case, PeerMissing, Workload, _signal
from .peers import _case, _frontend, _hf_extractors, _import, _knf_frames, _knf_kaldi_options


def _whisper_workload() -> Workload:
    seconds = 30.0

    def build(device: str) -> Built:
        import torch

        y = _signal(int(seconds * _SR), seed=3)
        yt = torch.from_numpy(y).to(device)

        def supermel_case() -> Case:
            fe = _frontend("whisper-80", device)
            return Case("supermel", lambda: fe(yt), notes='frontend("whisper-80")')

        def whisper_case() -> Case:
            whisper = _import("whisper", "openai-whisper")
            return Case("openai-whisper", lambda: whisper.log_mel_spectrogram(yt, n_mels=80), notes="the original")

        def librosa_case() -> Case:
            librosa = _import("librosa", "librosa")

            def f() -> np.ndarray:
                p = librosa.feature.melspectrogram(y=y, sr=_SR, n_fft=400, hop_length=160, pad_mode="reflect", n_mels=80)[:, :-1]
                return (librosa.power_to_db(p, ref=1.0, amin=1e-10, top_db=80.0) / 10.0 + 4.0) / 4.0
            return Case("librosa", f, notes="frontends.md 2.4 expression")

        def reference() -> Any:
            whisper = _import("whisper", "openai-whisper")
            return whisper.log_mel_spectrogram(torch.from_numpy(y), n_mels=80)
        def hf_case(twin: bool) -> Callable[[], Case]:
            def make() -> Case:
                hf = _hf_extractors(twin)
                fe = hf.WhisperFeatureExtractor()
                d = "cuda" if device == "cuda" else "cpu"
                name = "supermel (transformers twin)" if twin else "transformers"
                return Case(name, lambda: fe(y, sampling_rate=_SR, return_tensors="np", device=d)["input_features"][0], notes="WhisperFeatureExtractor(), 30 s")
            return make

        cases = [_case("supermel", supermel_case), _case("openai-whisper", whisper_case)]
        if device == "cpu":
            cases.append(_case("librosa", librosa_case))
        def fw_case(twin: bool) -> Callable[[], Case]:
            def make() -> Case:
                _import("faster_whisper", "faster-whisper")
                if twin:
                    try:
                        mod = importlib.import_module("supermel.integrations.faster_whisper")
                    except ImportError:
                        raise PeerMissing("not available: supermel.integrations.faster_whisper is missing") from None
                else:
                    mod = importlib.import_module("faster_whisper.feature_extractor")
                fe = mod.FeatureExtractor()
                name = "supermel (faster-whisper twin)" if twin else "faster-whisper"
                return Case(name, lambda: fe(y), output=lambda: fe(y, padding=0), notes="FeatureExtractor()(y), 160 zeros appended")
            return make

        cases += [_case("transformers", hf_case(False)), _case("supermel (transformers twin)", hf_case(True))]
        if device == "cpu":
            cases += [_case("faster-whisper", fw_case(False)), _case("supermel (faster-whisper twin)", fw_case(True))]
        return Built(cases, reference=reference, reference_name="openai-whisper")
    return Workload("whisper-80 30 s", "front end", build, audio_seconds=seconds, all_threads=True)


def _hf_workload(title: str, cls: str, preset: str, key: str, time_major: bool = True) -> Workload:
    """A Hugging Face extractor on 10 s, against the supermel preset and the supermel twin of the
    class (``key``: the output's name; ``time_major=False``: the preset's output is transposed)."""
    seconds = 10.0

    def build(device: str) -> Built:
        y = _signal(int(seconds * _SR), seed=7)

        def supermel_case() -> Case:
            fe = _frontend(preset, "cpu")
            return Case("supermel", (lambda: fe(y)) if time_major else (lambda: fe(y).T), notes=f'frontend("{preset}")')

        def hf_case(twin: bool) -> Callable[[], Case]:
            def make() -> Case:
                fe = getattr(_hf_extractors(twin), cls)()
                name = "supermel (transformers twin)" if twin else "transformers"
                return Case(name, lambda: fe(y, sampling_rate=_SR, return_tensors="np")[key][0], notes=f"{cls}()")
            return make

        def reference() -> Any:
            return getattr(_hf_extractors(False), cls)()(y, sampling_rate=_SR, return_tensors="np")[key][0]
        cases = [_case("supermel", supermel_case), _case("transformers", hf_case(False)), _case("supermel (transformers twin)", hf_case(True))]
        return Built(cases, reference=reference, reference_name="transformers")
    return Workload(title, "front end", build, audio_seconds=seconds, devices=("cpu",))


def _kaldi_workload() -> Workload:
    seconds = 10.0

    def build(device: str) -> Built:
        import torch

        y = _signal(int(seconds * _SR), seed=4) * np.float32(32768.0)  # Kaldi's int16 scale
        yt = torch.from_numpy(y).to(device)
        fe, fe_error = None, None
        try:
            fe = _frontend("kaldi-fbank", device)
        except PeerMissing as exc:
            fe_error = exc
        cfg = getattr(fe, "config", None)
        n_bins = int(getattr(cfg, "num_mel_bins", 80))
        int16 = bool(getattr(cfg, "int16_scale", False))

        def knf_run() -> np.ndarray:
            knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
            f = knf.OnlineFbank(_knf_kaldi_options(cfg))
            f.accept_waveform(float(_SR), y * np.float32(32768.0) if int16 else y)
            f.input_finished()
            return _knf_frames(f, 0, f.num_frames_ready).T

        def supermel_case() -> Case:
            if fe is None:
                raise fe_error  # type: ignore[misc]
            return Case("supermel", lambda: fe(yt), notes='frontend("kaldi-fbank")')

        def knf_case() -> Case:
            _knf_kaldi_options(cfg)
            return Case("kaldi-native-fbank", knf_run, notes=f"the preset's options ({n_bins} bins), dither 0; frames read with get_frame")

        def torchaudio_case() -> Case:
            kaldi = _import("torchaudio.compliance.kaldi", "torchaudio")
            scale = 32768.0 if int16 else 1.0
            return Case("torchaudio", lambda: kaldi.fbank(yt[None] * scale, num_mel_bins=n_bins, dither=0.0), notes=f"compliance.kaldi.fbank(num_mel_bins={n_bins}, dither=0)")

        def reference() -> Any:
            try:
                return knf_run()
            except PeerMissing:
                try:
                    kaldi = _import("torchaudio.compliance.kaldi", "torchaudio")
                except PeerMissing:
                    raise PeerMissing("not installed (nor torchaudio, the fallback reference)") from None
                return kaldi.fbank(torch.from_numpy(y)[None] * (32768.0 if int16 else 1.0), num_mel_bins=n_bins, dither=0.0)
        cases = [_case("supermel", supermel_case)]
        if device == "cpu":
            cases.append(_case("kaldi-native-fbank", knf_case))
        cases.append(_case("torchaudio", torchaudio_case))
        return Built(cases, reference=reference, reference_name="kaldi-native-fbank")
    return Workload("kaldi fbank 10 s", "front end", build, audio_seconds=seconds, all_threads=True)
