"""The peers: who they are, whether they are installed, and how each is called.

:data:`PEERS` is the table shown in every report (:func:`peer_table`: version or
why missing, configuration, workloads). The adapters below build the peers'
:class:`~.harness.Case` objects shared by several workloads: librosa, the
filterbank of the naive torch peer, kaldi-native-fbank, audioflux, Hugging Face
extractors and supermel's front ends. A peer is imported only when its case is
built; one that cannot be imported gives a case with status "missing".
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .harness import _HOP, _NFFT, _SR, REFERENCE, Case, PeerMissing, rel_error


# =========================================================================== the peer table
@dataclass(frozen=True)
class PeerInfo:
    """A peer library: how it is imported, configured and where it is used."""

    name: str
    dist: Optional[str]  # distribution name for the version (None: supermel's own)
    module: Optional[str]  # module imported to check availability
    configured: str
    used_in: str
    missing_hint: str = 'not installed (pip install "supermel[bench]")'


_TORCHAUDIO_HINT = (
    "not installed: torchaudio wheels pin one torch version and PyPI had none for "
    "torch 2.13 when this suite was written (newest torchaudio 2.11.0, which requires torch==2.11.0); "
    "installing it would replace torch"
)

#: Every peer the suite knows, in table order.
PEERS: Tuple[PeerInfo, ...] = (
    PeerInfo("supermel", None, "supermel", "`MelSpectrogram(**reference)` module held by the caller (float32, default backend); "
             "`supermel (function)` is the librosa-style `supermel.melspectrogram(y=numpy)` call; streaming: "
             "`StreamingMelSpectrogram(chunk_size=hop when the chunk is a multiple of the hop)`; front ends: `supermel.frontend(name)`",
             "all"),
    PeerInfo("librosa", "librosa", "librosa", "`librosa.feature.melspectrogram(y=..., **reference)` as users call it (filterbank rebuilt per call); "
             "streaming: the same call with `center=False` on a buffer holding the last n_fft samples; whisper: the librosa expression "
             "of Whisper's front end (frontends.md 2.4)",
             "offline, streaming, whisper"),
    PeerInfo("naive torch", "torch", "torch", "`torch.stft(center=True, pad_mode='constant', periodic Hann)`, `abs()**2`, cached "
             "`librosa.filters.mel` basis, `basis @ S`; streaming: the last n_fft samples, `torch.stft(center=False)`",
             "offline, streaming"),
    PeerInfo("nnAudio", "nnAudio", "nnAudio.features", "`features.MelSpectrogram(pad_mode='constant', htk=False, norm=1 (Slaney area), "
             "fmin, fmax, window='hann')`; float32 conv1d DFT", "offline"),
    PeerInfo("kaldi-native-fbank", "kaldi-native-fbank", "kaldi_native_fbank",
             "librosa-like `FbankOptions`: Hann, 50/12.5 ms, no dither, pre-emphasis or DC removal, no power-of-two rounding, "
             "`mel_opts.is_librosa` (Slaney scale and norm), power, no log; input zero-padded by n_fft/2 with `snip_edges=True` "
             "(librosa's centred framing); features read with `get_frame`. Streaming: `OnlineFbank`, 400 zeros first. "
             "Kaldi fbank: the options of supermel's `kaldi-fbank` preset (torchaudio's defaults, 80 bins), `dither=0`",
             "offline, streaming, kaldi"),
    PeerInfo("audioflux", "audioflux", "audioflux", "`MelSpectrogram(radix2_exp=10, slide_length=200, HANN, POWER, style SLANEY, "
             "normal BAND_WIDTH)`: n_fft 1024 (powers of two only) and an HTK-scale filterbank with Slaney area norm (equal to "
             "librosa `htk=True, norm='slaney'`); input zero-padded by 512 for centred frames. Its own-configuration error is in the notes",
             "offline"),
    PeerInfo("openai-whisper", "openai-whisper", "whisper", "`whisper.log_mel_spectrogram(audio, n_mels=80)`: the original, the exactness reference",
             "whisper"),
    PeerInfo("transformers", "transformers", "transformers",
             "Hugging Face feature extractors called as users call them: `WhisperFeatureExtractor()(y, sampling_rate=16000, "
             "return_tensors='np')` (its torch route, 30 s windows); `SeamlessM4TFeatureExtractor()(y, sampling_rate=16000, "
             "return_tensors='np')` and `ASTFeatureExtractor()` (numpy, float64, frame by frame without torchaudio), "
             "`ParakeetFeatureExtractor()` (torch): the references of the w2v-bert, ast and parakeet workloads. "
             "`supermel (transformers twin)` is `supermel.integrations.transformers`' class of the same name",
             "whisper, w2v-bert, ast, parakeet"),
    PeerInfo("faster-whisper", "faster-whisper", "faster_whisper",
             "`faster_whisper.feature_extractor.FeatureExtractor()(y)` as `WhisperModel.transcribe` calls it (numpy, 160 zeros "
             "appended); compared without the padding. `supermel (faster-whisper twin)` is "
             "`supermel.integrations.faster_whisper.FeatureExtractor`", "whisper"),
    PeerInfo("torchaudio", "torchaudio", "torchaudio", "`transforms.MelSpectrogram(norm='slaney', mel_scale='slaney', pad_mode='constant')`; "
             "kaldi: `compliance.kaldi.fbank(dither=0.0)`", "offline, kaldi", _TORCHAUDIO_HINT),
)
_PEER_BY_NAME = {p.name: p for p in PEERS}


def _import(module: str, peer: Optional[str] = None) -> Any:
    """Import ``module`` or raise :class:`PeerMissing` with the peer's install hint."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a binary that fails to load
        info = _PEER_BY_NAME.get(peer or "")
        hint = info.missing_hint if info is not None else "not installed"
        if isinstance(exc, ImportError):
            raise PeerMissing(hint) from None
        raise PeerMissing(f"import {module} failed: {type(exc).__name__}: {exc}") from None


def _supermel_api(name: str, issue: str) -> Any:
    import supermel

    obj = getattr(supermel, name, None)
    if obj is None:
        raise PeerMissing(f"not available: supermel.{name} is missing ({issue} not merged)")
    return obj


def _available(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (a ``None`` entry in sys.modules blocks it)."""
    top = module.split(".")[0]
    if top in sys.modules:
        return sys.modules[top] is not None and (module not in sys.modules or sys.modules[module] is not None)
    try:
        import importlib.util

        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(dist: str) -> Optional[str]:
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:
        return None


def peer_table() -> List[Dict[str, Any]]:
    """One entry per peer: version or why it is missing, configuration, workloads.

    Presence is checked without importing (a peer whose import fails anyway
    shows the error in its rows).
    """
    out = []
    for p in PEERS:
        entry: Dict[str, Any] = dict(name=p.name, configured=p.configured, used_in=p.used_in)
        if _available(p.module or ""):
            if p.dist is None:
                import supermel

                entry["version"] = supermel.__version__
            else:
                entry["version"] = _dist_version(p.dist) or "installed (version unknown)"
            entry["status"] = "installed"
        else:
            entry["status"] = "missing"
            entry["version"] = None
            entry["reason"] = p.missing_hint
        out.append(entry)
    return out


# =========================================================================== adapters: librosa, torch input, cases
def _librosa_mel(y: np.ndarray, **over: Any) -> np.ndarray:
    librosa = _import("librosa", "librosa")
    kw = dict(REFERENCE, **over)
    return librosa.feature.melspectrogram(y=y, **kw)


def _mel_basis() -> Tuple[np.ndarray, str]:
    """librosa's filterbank for the reference configuration (supermel's when librosa is missing)."""
    try:
        librosa = _import("librosa", "librosa")
        return librosa.filters.mel(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0), ""
    except PeerMissing:
        import supermel

        return supermel.mel_filters(sr=_SR, n_fft=_NFFT, n_mels=80, fmin=55.0, fmax=7600.0), "basis from supermel.mel_filters (librosa missing)"


def _dev_input(x: np.ndarray, device: str, h2d: bool) -> Tuple[Any, Callable[[Any], Any]]:
    """Input tensor and the per-call transfer: excluded (on the device already) or included (pinned host -> device)."""
    import torch

    t = torch.from_numpy(x)
    if device == "cpu":
        return t, lambda v: v
    if h2d:
        return t.pin_memory(), lambda v: v.to(device, non_blocking=True)
    return t.to(device), lambda v: v


def _case(peer: str, make: Callable[[], Case]) -> Case:
    try:
        return make()
    except PeerMissing as exc:
        status = "not available" if str(exc).startswith("not available") else "missing"
        return Case(peer, status=status, reason=str(exc))
    except Exception as exc:
        return Case(peer, status="error", reason=f"setup failed: {type(exc).__name__}: {exc}")


# =========================================================================== adapters: kaldi-native-fbank, audioflux
def _knf_librosa_options() -> Any:
    """kaldi-native-fbank options as close to librosa's reference configuration as it allows."""
    knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = float(_SR)
    fo.frame_length_ms = 1000.0 * _NFFT / _SR
    fo.frame_shift_ms = 1000.0 * _HOP / _SR
    fo.dither = 0.0
    fo.preemph_coeff = 0.0
    fo.remove_dc_offset = False
    fo.round_to_power_of_two = False
    fo.snip_edges = True
    fo.window_type = "hann"
    m = o.mel_opts
    m.num_bins = 80
    m.low_freq = 55.0
    m.high_freq = 7600.0
    m.is_librosa = True
    m.norm = "slaney"
    m.use_slaney_mel_scale = True
    o.use_energy = False
    o.use_log_fbank = False
    o.use_power = True
    return o


def _knf_frames(f: Any, start: int, stop: int) -> np.ndarray:
    return np.stack([f.get_frame(i) for i in range(start, stop)], axis=-1) if stop > start else np.zeros((f.dim, 0), np.float32)


def _knf_offline_case(x: np.ndarray) -> Case:
    knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
    opts = _knf_librosa_options()
    pad = _NFFT // 2

    def one(y: np.ndarray) -> np.ndarray:
        f = knf.OnlineFbank(opts)
        f.accept_waveform(float(_SR), np.pad(y, (pad, pad)))
        f.input_finished()
        return _knf_frames(f, 0, f.num_frames_ready)

    def fn() -> np.ndarray:
        return one(x) if x.ndim == 1 else np.stack([one(r) for r in x])
    return Case("kaldi-native-fbank", fn, notes="batch: a loop over rows" if x.ndim > 1 else "")


def _audioflux_case(x: np.ndarray) -> Case:
    af = _import("audioflux", "audioflux")
    from audioflux.type import SpectralDataType, SpectralFilterBankNormalType, SpectralFilterBankStyleType, WindowType

    n_fft = 1024
    m = af.MelSpectrogram(
        num=80, samplate=_SR, low_fre=55.0, high_fre=7600.0, radix2_exp=10, window_type=WindowType.HANN, slide_length=_HOP,
        data_type=SpectralDataType.POWER, style_type=SpectralFilterBankStyleType.SLANEY, normal_type=SpectralFilterBankNormalType.BAND_WIDTH,
    )
    widths = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]

    def fn() -> np.ndarray:
        return m.spectrogram(np.pad(x, widths))

    def own() -> str:
        import torch

        err = rel_error(fn(), _librosa_mel(x, n_fft=n_fft, htk=True))
        note = f"error vs librosa(n_fft=1024, htk=True): {err:.1e}"
        if err > 1e-3:
            note = "WRONG OUTPUT, " + note
            if torch.get_num_threads() > 1:
                note += " (audioflux 0.1.9 computes wrong values when torch's OpenMP pool has more than one thread in the same process)"
        return note
    return Case("audioflux", fn, notes="n_fft 1024, HTK scale (forced)", own_check=own)


def _knf_kaldi_options(cfg: Any) -> Any:
    """kaldi-native-fbank options equal to supermel's kaldi-fbank configuration (torchaudio's defaults, 80 bins, dither 0)."""
    knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
    get = (lambda k, d: getattr(cfg, k, d)) if cfg is not None else (lambda k, d: d)
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = float(get("sample_frequency", 16000.0))
    fo.frame_length_ms = float(get("frame_length", 25.0))
    fo.frame_shift_ms = float(get("frame_shift", 10.0))
    fo.round_to_power_of_two = bool(get("round_to_power_of_two", True))
    fo.dither = 0.0
    fo.preemph_coeff = float(get("preemphasis_coefficient", 0.97))
    fo.remove_dc_offset = bool(get("remove_dc_offset", True))
    fo.window_type = str(get("window_type", "povey"))
    fo.blackman_coeff = float(get("blackman_coeff", 0.42))
    fo.snip_edges = bool(get("snip_edges", True))
    o.mel_opts.num_bins = int(get("num_mel_bins", 80))
    o.mel_opts.low_freq = float(get("low_freq", 20.0))
    o.mel_opts.high_freq = float(get("high_freq", 0.0))
    o.use_power = bool(get("use_power", True))
    o.use_log_fbank = bool(get("use_log_fbank", True))
    o.use_energy = False
    return o


# =========================================================================== adapters: front ends, Hugging Face
def _frontend(name: str, device: str) -> Any:
    fn = _supermel_api("frontend", "the presets issue")
    try:
        return fn(name, device=device)
    except TypeError:
        mod = fn(name)
        return mod.to(device) if hasattr(mod, "to") else mod


def _hf_extractors(twin: bool) -> Any:
    """``transformers`` itself, or ``supermel.integrations.transformers`` (same class names)."""
    if not twin:
        return _import("transformers", "transformers")
    _import("transformers", "transformers")
    try:
        return importlib.import_module("supermel.integrations.transformers")
    except ImportError:
        raise PeerMissing("not available: supermel.integrations.transformers is missing") from None
