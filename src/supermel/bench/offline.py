"""The offline workloads: one call computes the mel spectrogram of a whole signal or batch.

Peers: supermel's module and function, naive torch, librosa, nnAudio,
torchaudio, kaldi-native-fbank and audioflux (supermel's function, librosa,
kaldi-native-fbank and audioflux on the CPU only). The ``(incl. H2D)`` variants
(CUDA only) copy the input from pinned host memory in every call.
"""

from __future__ import annotations

from typing import Any, Callable, List

import numpy as np

from .harness import _HOP, _NFFT, _SR, REFERENCE, Built, Case, Workload
from .peers import _audioflux_case, _case, _dev_input, _import, _knf_offline_case, _librosa_mel, _mel_basis


def _offline_cases(x: np.ndarray, device: str, h2d: bool = False) -> List[Case]:
    import torch

    cases: List[Case] = []
    xin, move = _dev_input(x, device, h2d)

    def supermel_module() -> Case:
        import supermel

        if device == "cpu":
            mod = supermel.MelSpectrogram(**REFERENCE)
            return Case("supermel", lambda: mod(move(xin)))
        mod = supermel.MelSpectrogram(**REFERENCE, device=device, check_finite=False)
        return Case("supermel", lambda: mod(move(xin)), notes="check_finite=False (no host sync)")

    def supermel_function() -> Case:
        import supermel

        return Case("supermel (function)", lambda: supermel.melspectrogram(y=x, **REFERENCE), notes="numpy in, numpy out")

    def naive() -> Case:
        basis_np, note = _mel_basis()
        window = torch.hann_window(_NFFT, device=device)
        basis = torch.as_tensor(basis_np, device=device)

        def f() -> Any:
            s = torch.stft(move(xin), _NFFT, _HOP, window=window, center=True, pad_mode="constant", return_complex=True)
            return torch.matmul(basis, s.abs().pow(2))
        return Case("naive torch", f, notes=note)

    def librosa_peer() -> Case:
        _import("librosa", "librosa")  # not installed: a "missing" row, not an error at the first call
        return Case("librosa", lambda: _librosa_mel(x))

    def nnaudio() -> Case:
        features = _import("nnAudio.features", "nnAudio")
        m = features.MelSpectrogram(
            sr=_SR, n_fft=_NFFT, win_length=_NFFT, n_mels=80, hop_length=_HOP, window="hann", center=True, pad_mode="constant",
            power=2.0, htk=False, fmin=55.0, fmax=7600.0, norm=1, verbose=False,
        ).to(device)
        batched = x.ndim > 1

        def f() -> Any:
            v = move(xin)
            out = m(v if batched else v[None])
            return out if batched else out[0]
        return Case("nnAudio", f)

    def torchaudio_peer() -> Case:
        ta = _import("torchaudio.transforms", "torchaudio")
        m = ta.MelSpectrogram(
            sample_rate=_SR, n_fft=_NFFT, hop_length=_HOP, f_min=55.0, f_max=7600.0, n_mels=80, pad_mode="constant",
            center=True, power=2.0, norm="slaney", mel_scale="slaney",
        ).to(device)
        return Case("torchaudio", lambda: m(move(xin)))

    cases += [_case("supermel", supermel_module)]
    if device == "cpu":
        cases += [_case("supermel (function)", supermel_function)]
    cases += [_case("naive torch", naive)]
    if device == "cpu":
        cases += [_case("librosa", librosa_peer)]
    cases += [_case("nnAudio", nnaudio), _case("torchaudio", torchaudio_peer)]
    if device == "cpu":
        cases += [_case("kaldi-native-fbank", lambda: _knf_offline_case(x)), _case("audioflux", lambda: _audioflux_case(x))]
    return cases


def _offline_workload(name: str, x_fn: Callable[[], np.ndarray], seconds: float, h2d: bool = False) -> Workload:
    def build(device: str) -> Built:
        x = x_fn()
        return Built(_offline_cases(x, device, h2d), reference=lambda: _librosa_mel(x))
    return Workload(name, "offline", build, audio_seconds=seconds, all_threads=not h2d, devices=("cuda",) if h2d else ("cpu", "cuda"))
