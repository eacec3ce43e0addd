"""The streaming workloads: one timed call is one push of a chunk.

supermel's ``StreamingMelSpectrogram`` (and, on CUDA, its CUDA-graph replay)
against the "naive" streams: naive torch and librosa on a buffer holding the
samples the next frames need (``center=False``), and kaldi-native-fbank's
``OnlineFbank``. Exactness: a fresh stream over a second signal, frame for frame
against librosa's offline frames.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from .harness import _HOP, _NFFT, _SR, REFERENCE, Built, Case, PeerMissing, Workload, _join, _signal, _to_numpy
from .peers import _case, _import, _knf_frames, _knf_librosa_options, _librosa_mel, _mel_basis, _supermel_api


class _BufferStream:
    """A stream that keeps the samples the next frames need and runs ``compute`` on them.

    Starts with ``n_fft // 2`` zeros (librosa's left padding), so the frames it
    emits are librosa's centred frames 0, 1, 2, ... This is the "naive" way:
    per push, concatenate and run an offline ``center=False`` transform.
    """

    def __init__(self, compute: Callable[[Any], Any], cat: Callable[[Any, Any], Any], zeros: Any, empty: Callable[[], Any]) -> None:
        self.compute, self.cat, self.buf, self.empty = compute, cat, zeros, empty

    def push(self, chunk: Any) -> Any:
        buf = self.cat(self.buf, chunk)
        n = buf.shape[-1]
        if n < _NFFT:
            self.buf = buf
            return self.empty()
        k = (n - _NFFT) // _HOP + 1
        out = self.compute(buf[..., : (k - 1) * _HOP + _NFFT])
        self.buf = buf[..., k * _HOP :]
        return out


def _stream_chunks(y: np.ndarray, size: int) -> List[np.ndarray]:
    n = (y.shape[-1] // size) * size
    return [np.ascontiguousarray(y[..., i : i + size]) for i in range(0, n, size)]


def _streaming_cases(chunk: int, streams: Optional[int], device: str, y_time: np.ndarray, y_exact: np.ndarray, device_io: bool = False) -> List[Case]:
    """Cases for one streaming workload: each has a timed push and a fresh run over ``y_exact``."""
    import torch

    timed_chunks = _stream_chunks(y_time, chunk)
    exact_chunks = _stream_chunks(y_exact, chunk)
    lead = (streams,) if streams else ()

    def drive(make: Callable[[], Any], prep: Callable[[np.ndarray], Any] = lambda c: c, post: Callable[[Any], Any] = _to_numpy) -> Tuple[Callable[[], Any], Callable[[], Any]]:
        s = make()
        pre = [prep(c) for c in timed_chunks]
        it = itertools.cycle(pre)

        def timed() -> Any:
            return s.push(next(it))

        def exact() -> np.ndarray:
            s2 = make()
            return np.concatenate([post(s2.push(prep(c))) for c in exact_chunks], axis=-1)
        return timed, exact

    def sm(graph: bool) -> Callable[[], Case]:
        def make_case() -> Case:
            cls = _supermel_api("StreamingMelSpectrogram", "the streaming issue")
            fixed = chunk if chunk % _HOP == 0 else None
            if graph and fixed is None:
                raise PeerMissing(f"not available: a CUDA graph needs a fixed chunk size that is a multiple of the hop ({chunk} is not)")
            extra = {} if device == "cpu" else {"check_finite": False}

            def make() -> Any:
                return cls(**REFERENCE, num_streams=streams, device=device, chunk_size=fixed, cuda_graph=graph, **extra)
            prep = (lambda c: torch.from_numpy(c).to(device)) if device_io else (lambda c: c)
            timed, exact = drive(make, prep)
            note = f"chunk_size={fixed}" if fixed else f"no fixed chunk size ({chunk} is not a multiple of the hop)"
            if extra:
                note += ", check_finite=False"
            note += ", tensors in and out" if device_io else (", numpy in and out" if device != "cpu" else "")
            return Case("supermel (CUDA graph)" if graph else "supermel", timed, output=exact, notes=note)
        return make_case

    def naive() -> Case:
        basis_np, note = _mel_basis()
        window = torch.hann_window(_NFFT, device=device)
        basis = torch.as_tensor(basis_np, device=device)

        def compute(seg: Any) -> Any:
            s = torch.stft(seg, _NFFT, _HOP, window=window, center=False, return_complex=True)
            out = torch.matmul(basis, s.abs().pow(2))
            return out if device_io else out.cpu().numpy()

        def make() -> _BufferStream:
            return _BufferStream(
                compute,
                lambda a, b: torch.cat([a, b], dim=-1),
                torch.zeros(lead + (_NFFT // 2,), device=device),
                lambda: torch.zeros(lead + (80, 0)) if not device_io else torch.zeros(lead + (80, 0), device=device),
            )
        prep = (lambda c: torch.from_numpy(c).to(device)) if device_io else (lambda c: torch.from_numpy(c).to(device) if device != "cpu" else torch.from_numpy(c))
        timed, exact = drive(make, prep)
        return Case("naive torch", timed, output=exact, notes=_join("last n_fft samples, torch.stft(center=False)", note))

    def librosa_buf() -> Case:
        _import("librosa", "librosa")

        def make() -> _BufferStream:
            return _BufferStream(
                lambda seg: _librosa_mel(seg, center=False),
                lambda a, b: np.concatenate([a, b], axis=-1),
                np.zeros(lead + (_NFFT // 2,), np.float32),
                lambda: np.zeros(lead + (80, 0), np.float32),
            )
        timed, exact = drive(make)
        return Case("librosa", timed, output=exact, notes="same buffer, center=False")

    def knf_stream() -> Case:
        knf = _import("kaldi_native_fbank", "kaldi-native-fbank")
        opts = _knf_librosa_options()

        class One:
            def __init__(self) -> None:
                self.f = knf.OnlineFbank(opts)
                self.f.accept_waveform(float(_SR), np.zeros(_NFFT // 2, np.float32))
                self.t = 0

            def push(self, c: np.ndarray) -> np.ndarray:
                self.f.accept_waveform(float(_SR), c)
                n = self.f.num_frames_ready
                out = _knf_frames(self.f, self.t, n)
                if n > self.t:
                    self.f.pop(n - self.t)
                    self.t = n
                return out

        class Many:
            def __init__(self) -> None:
                self.s = [One() for _ in range(streams or 1)]

            def push(self, c: np.ndarray) -> np.ndarray:
                return np.stack([s.push(r) for s, r in zip(self.s, c)])
        timed, exact = drive(Many if streams else One)
        return Case("kaldi-native-fbank", timed, output=exact, notes="OnlineFbank, librosa-like options" + ("; a loop over streams" if streams else ""))

    cases = [_case("supermel", sm(False))]
    if device == "cuda":
        cases.append(_case("supermel (CUDA graph)", sm(True)))
    cases.append(_case("naive torch", naive))
    if device == "cpu":
        cases += [_case("librosa", librosa_buf), _case("kaldi-native-fbank", knf_stream)]
    return cases


def _streaming_workload(name: str, chunk: int, streams: Optional[int] = None, device_io: bool = False, all_threads: bool = False) -> Workload:
    def build(device: str) -> Built:
        batch = streams
        y_time = _signal(_SR, seed=1, batch=batch)
        y_exact = _signal(_SR // 2, seed=2, batch=batch)
        cases = _streaming_cases(chunk, streams, device, y_time, y_exact, device_io)

        def reference() -> np.ndarray:
            ref = _librosa_mel(y_exact)
            n_out = (y_exact.shape[-1] // chunk) * chunk  # samples pushed
            t_ready = (n_out + _NFFT // 2 - _NFFT) // _HOP + 1  # frames complete without the end
            return ref[..., :t_ready]
        return Built(cases, reference=reference)
    seconds = chunk / _SR * (streams or 1)
    return Workload(name, "streaming", build, audio_seconds=seconds, per="push", devices=("cuda",) if device_io else ("cpu", "cuda"), all_threads=all_threads)
