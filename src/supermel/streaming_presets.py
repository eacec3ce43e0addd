"""Streaming model front ends, and Wav2Lip's per-video-frame windows as audio arrives.

``supermel.frontend(name).streaming(...)`` returns a :class:`StreamingFrontend`:
push audio chunks, get the front end's frames as soon as their analysis windows
are complete, in the preset's own layout (``(n_mels, k)``, or ``(k, n_mels)``
for the time-major Kaldi fbank and SpeechT5 presets). For every **frame-local**
preset, concatenating what ``push`` and ``flush`` return along the preset's
``time_axis`` equals the offline ``supermel.frontend(name)(y)``, for every
chunking.

How each preset streams
-----------------------
* librosa-style presets (Wav2Lip, HiFi-GAN/BigVGAN/VITS, Tacotron2, Vocos,
  F5-TTS, SpeechT5, Whisper, NeMo): the preset's core
  :class:`~supermel.MelSpectrogram` runs inside a
  :class:`~supermel.StreamingMelSpectrogram` (``module=fe.core``); the
  waveform step runs before it, statefully: pre-emphasis keeps each stream's
  last sample, and the stream's first sample has no predecessor, exactly as the
  offline whole-signal filter (``y[0] = x[0]``). ``post_local`` is applied to
  each emitted block.
* Kaldi fbank presets (``kaldi-fbank``, ``lhotse-fbank``, ``wenet-fbank``):
  Kaldi frames are not centred windows, so the framing is
  :mod:`supermel.kaldi`'s (:func:`~supermel.kaldi.frames_ready`,
  :func:`~supermel.kaldi.extract_frame_range`), and each frame block goes
  through the preset's own per-frame processing
  (:meth:`~supermel.KaldiFbank.frames_mel`). ``snip_edges=True``: frame ``t``
  covers samples ``[t shift, t shift + frame_length)`` and is returned as soon
  as they have arrived; ``flush`` adds nothing. ``snip_edges=False``: the
  left-edge reflection reads the first samples (kept until the first frames are
  out) and the last frames, which reflect at the right edge, come at ``flush``.
  With ``dither > 0`` the noise is drawn per frame as offline, so the values are
  equal only in distribution.
* **Not frame-local** (Whisper's floor at the whole input's maximum, NeMo's
  per-utterance normalisation and its last-frame masking): ``push``/``flush``
  return the ``post_local`` frames (Whisper: ``log10(max(M, 1e-10))``, the log
  scale before the ``max - 8`` floor and the ``(x + 4) / 4`` scaling; NeMo:
  ``ln(M + 2^-24)``), and :meth:`StreamingFrontend.finalize` applies
  ``post_global`` to their concatenation, which then equals the offline output.
  Whisper's waveform step is streamed too: ``padding`` zeros are appended at
  ``flush``, and with ``pad_or_trim=True`` the input is cut at ``n_samples``
  and zero-filled up to it at ``flush`` (3000 frames). The frame Whisper drops
  (its last) is never returned.

:class:`Wav2LipChunker` turns a stream of Wav2Lip mel columns (or of audio, with
``frontend="wav2lip"``) into Wav2Lip's per-video-frame 16-column windows, each
as soon as its columns exist, with the offline rule of
:func:`supermel.wav2lip_mel_chunks`.
"""

from __future__ import annotations

import copy
import fractions
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import _core, kaldi
from ._errors import ParameterError
from .presets import Frontend, KaldiFbank, Nemo, Wav2Lip, Wav2LipConfig, Whisper, frontend, wav2lip_window_ratio, wav2lip_window_start
from .streaming import StreamingMelSpectrogram, _Group, check_chunk, restart_stream

__all__ = ["StreamingFrontend", "Wav2LipChunker"]

Array = Union[np.ndarray, torch.Tensor]
Frames = Union[torch.Tensor, List[torch.Tensor]]  # (S, C, k), or one (C, k_i) per stream


def _check_streams(num_streams: Optional[int]) -> None:
    if num_streams is not None and (isinstance(num_streams, bool) or not isinstance(num_streams, (int, np.integer)) or num_streams <= 0):
        raise ParameterError(f"num_streams={num_streams!r} must be a positive integer or None")


def _rows(out: Frames, n_streams: int) -> List[torch.Tensor]:
    """One ``(C, k_i)`` tensor per stream."""
    return list(out) if isinstance(out, list) else [out[i] for i in range(n_streams)]


def _frames(out: Union[Array, List[Array]]) -> Frames:
    """The core stream's output as tensors (views of the numpy path's arrays)."""
    if isinstance(out, np.ndarray):
        return torch.from_numpy(out)
    if isinstance(out, list):
        return [torch.from_numpy(r) if isinstance(r, np.ndarray) else r for r in out]
    return out


def _stack(rows: Sequence[torch.Tensor]) -> Frames:
    """Stack per-stream ``(C, k_i)`` blocks when their lengths agree, else keep the list."""
    if len({r.shape[-1] for r in rows}) == 1:
        return torch.stack(list(rows))
    return list(rows)


# =========================================================================== Kaldi framing engine
class _KaldiEngine:
    """Kaldi framing, incrementally (the engine of a streaming Kaldi fbank preset).

    Same interface as the part of :class:`~supermel.StreamingMelSpectrogram`
    that :class:`StreamingFrontend` uses: ``push((S, n) tensor)`` and
    ``flush()`` return raw mel energies ``(S, bins, k)`` (or one ``(bins, k_i)``
    per stream when streams were reset separately), ``reset(index)``.
    """

    def __init__(self, fe: KaldiFbank, *, num_streams: int, device: torch.device, dtype: torch.dtype) -> None:
        self.fe = fe
        w, h, _ = fe.config.sizes
        self.kw = dict(window_size=w, window_shift=h, snip_edges=bool(fe.config.snip_edges))
        self.window_size, self.hop_length = w, h
        self.num_streams = num_streams
        self.device, self.dtype = device, dtype
        self.n_mels = fe.mel_rows
        # frame t is complete when sample t * shift + latency_samples - 1 has arrived
        self.latency_samples = kaldi.first_sample_of_frame(0, **self.kw) + w  # type: ignore[arg-type]
        self.groups: List[_Group] = []
        self.reset()

    def _empty(self, g: int) -> torch.Tensor:
        return torch.zeros((g, 0), dtype=self.dtype, device=self.device)

    def reset(self, index: Optional[int] = None) -> None:
        if index is None:
            self.groups = [_Group(index=list(range(self.num_streams)), buf=self._empty(self.num_streams))]
            return
        self.groups = restart_stream(self.groups, index, self._empty)

    def _frames(self, g: _Group, stop: int) -> torch.Tensor:
        """Mel energies ``(g, bins, k)`` of frames ``g.t .. stop-1`` (Kaldi's per-frame steps, then the core)."""
        if stop <= g.t:
            return g.buf.new_zeros((g.buf.shape[0], self.n_mels, 0))
        step = self.fe.block_frames  # bound the memory of a long chunk, as offline
        parts = []
        for t0 in range(g.t, stop, step):
            raw = kaldi.extract_frame_range(g.buf, seg_start=g.start, n_samples=g.n, t0=t0, t1=min(stop, t0 + step), **self.kw)  # type: ignore[arg-type]
            parts.append(self.fe.frames_mel(raw))
        g.t = stop
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def _trim(self, g: _Group) -> None:
        # Keep the next frame's samples, and (a conservative bound) the last
        # frame_length samples, which the right-edge reflection (snip_edges=False)
        # reads at flush.
        keep_from = max(0, min(kaldi.first_sample_of_frame(g.t, **self.kw), g.n - self.window_size))  # type: ignore[arg-type]
        if keep_from > g.start:
            g.buf = g.buf[:, keep_from - g.start :]
            g.start = keep_from

    def _assemble(self, outs: List[torch.Tensor]) -> Frames:
        if len(self.groups) == 1:
            return outs[0]
        per_stream: List[torch.Tensor] = [torch.empty(0)] * self.num_streams
        for g, o in zip(self.groups, outs):
            for row, i in enumerate(g.index):
                per_stream[i] = o[row]
        return _stack(per_stream)

    def push(self, t: torch.Tensor) -> Frames:
        outs = []
        for g in self.groups:
            rows = t if len(self.groups) == 1 else t[g.index]
            if rows.shape[-1]:
                g.buf = torch.cat([g.buf, rows], dim=-1)
                g.n += rows.shape[-1]
            outs.append(self._frames(g, kaldi.frames_ready(g.n, **self.kw)))  # type: ignore[arg-type]
            self._trim(g)
        return self._assemble(outs)

    def flush(self) -> Frames:
        return self._assemble([self._frames(g, kaldi.num_frames(g.n, **self.kw)) for g in self.groups])  # type: ignore[arg-type]


# =========================================================================== streaming front end
class StreamingFrontend:
    """A model front end, streaming: push audio chunks, get its frames as they complete.

    Build it with :meth:`supermel.Frontend.streaming` (``supermel.frontend(name).streaming()``).

    Parameters
    ----------
    fe : Frontend
        The offline front end (its configuration, dtype and core are used; with
        another ``device`` a copy is moved there).
    num_streams : int or None
        ``None``: one stream, chunks ``(n,)``. ``S``: chunks ``(S, n)``, frames
        ``(S, ...)``; each stream equals its own offline result.
    device : str or torch.device, optional
        Where to compute (default: the front end's device).
    chunk_size, cuda_graph
        As :class:`~supermel.StreamingMelSpectrogram` (fixed-size static step,
        CUDA-graph replay); not available for the Kaldi presets.
    check_finite : bool
        Refuse chunks with NaN/Inf samples (the stream is left unchanged).

    The contract is :class:`~supermel.StreamingMelSpectrogram`'s: ``push``
    returns the frames a chunk completes, ``flush`` the rest and ends the
    stream; ``reset()`` (or ``reset(i)`` for one stream) starts again;
    numpy in gives numpy out; a list of per-stream blocks is returned when
    streams reset separately complete different numbers of frames.
    Frames come in the preset's layout; concatenate them along
    :attr:`time_axis` (``-1``, or ``-2`` for the time-major Kaldi and SpeechT5
    presets).

    Frame-local presets (:attr:`frame_local`): the concatenation equals
    ``fe(y)``. Whisper and NeMo: it is the ``post_local`` part (Whisper:
    ``log10(max(M, log_floor))``; NeMo: ``ln(M + log_guard)``), and
    ``finalize(concatenation)`` equals ``fe(y)``.

    Attributes
    ----------
    hop_length : int
        Samples between frames (Kaldi: the frame shift).
    latency_samples : int
        Frame ``t`` is returned by the push that delivers input sample
        ``t * hop_length + latency_samples - 1`` (frames clear of the left
        edge; with reflect padding frame 0 waits for ``pad + 1`` samples).
        Centred presets: ``n_fft - n_fft // 2`` (half a window after the
        frame's centre); HiFi-GAN framing: ``n_fft - (n_fft - hop) // 2``;
        Kaldi: the frame length (``snip_edges=True``) or
        ``frame_length - frame_length // 2 + shift // 2``. Add up to one chunk
        of waiting for the chunk that completes the frame.
    latency_ms : float
        ``latency_samples`` in milliseconds.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> fe = supermel.frontend("wav2lip")
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> stream = fe.streaming()
    >>> parts = [stream.push(y[i:i + 333]) for i in range(0, len(y), 333)] + [stream.flush()]
    >>> np.allclose(np.concatenate(parts, axis=-1), fe(y), rtol=1e-5, atol=1e-5)
    True
    >>> w = supermel.frontend("whisper-80")
    >>> stream = w.streaming()
    >>> parts = [stream.push(y[:7000]), stream.push(y[7000:]), stream.flush()]
    >>> np.allclose(stream.finalize(np.concatenate(parts, axis=-1)), w(y), rtol=1e-5, atol=1e-5)
    True
    """

    def __init__(
        self,
        fe: Frontend,
        *,
        num_streams: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        chunk_size: Optional[int] = None,
        cuda_graph: bool = False,
        check_finite: bool = True,
    ) -> None:
        if not isinstance(fe, Frontend):
            raise ParameterError(f"StreamingFrontend needs a supermel Frontend (supermel.frontend(name)), not {type(fe).__name__}")
        _check_streams(num_streams)
        here = fe.core.spectrogram.window.device
        dev = here if device is None else _core.resolve_device(device)
        if dev != here:
            fe = copy.deepcopy(fe).to(dev)
        self.frontend = fe
        self.device = dev
        self.dtype = fe.dtype
        self.num_streams = None if num_streams is None else int(num_streams)
        self.check_finite = bool(check_finite)
        self.frame_local = bool(fe.frame_local)
        self.time_axis = fe.time_axis
        self.n_mels = fe.mel_rows
        cfg = fe.config
        self._trim_at = int(cfg.n_samples) if isinstance(fe, Whisper) and cfg.pad_or_trim else None
        self._pre_context = fe.pre_context
        if isinstance(fe, KaldiFbank):
            if cuda_graph:
                raise ParameterError(f"{cfg.name}: cuda_graph=True is not available for the Kaldi fbank presets (their framing is not a centred STFT)")
            w, h, _ = cfg.sizes
            if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0 or chunk_size % h):
                raise ParameterError(f"chunk_size={chunk_size!r} must be a positive multiple of the frame shift ({h} samples)")
            self._engine: Any = _KaldiEngine(fe, num_streams=self._n_streams, device=dev, dtype=self.dtype)
            self.hop_length = h
            self.latency_samples = self._engine.latency_samples
        else:
            self._engine = StreamingMelSpectrogram(
                module=fe.core, num_streams=self._n_streams, device=dev, dtype=self.dtype,
                chunk_size=chunk_size, cuda_graph=cuda_graph, check_finite=False,
            )  # fmt: skip
            spec = fe.core.spectrogram
            self.hop_length = spec.hop_length
            self.latency_samples = spec.n_fft - spec.pad
        self.sr = float(fe.core.sr)
        self.latency_ms = 1000.0 * self.latency_samples / self.sr
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.cuda_graph = bool(cuda_graph)
        # numpy chunks on the CPU stay numpy through the waveform step and the core's
        # numpy step (a numpy call costs a fraction of a torch operator call on a few
        # frames); the identity and pre-emphasis waveform steps take numpy arrays
        self._numpy_io = (
            dev.type == "cpu"
            and not self.cuda_graph
            and isinstance(self._engine, StreamingMelSpectrogram)
            and type(fe).pre in (Frontend.pre, Wav2Lip.pre, Nemo.pre, Whisper.pre)
        )
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def _n_streams(self) -> int:
        return 1 if self.num_streams is None else self.num_streams

    def reset(self, index: Optional[int] = None) -> None:
        """Forget all input (``index=None``) or that of stream ``index`` alone (it restarts at sample 0)."""
        S = self._n_streams
        if index is None:
            self._engine.reset()
            self._n = [0] * S  # samples received
            self._emitted = [0] * S  # frames returned
            self._held: List[Optional[torch.Tensor]] = [None] * S  # frames withheld (drop_last)
            self._prev = torch.zeros((S, max(1, self._pre_context)), dtype=self.dtype, device=self.device)
            self._flushed = False
            self._final_samples: Optional[List[int]] = None
            return
        if self.num_streams is None:
            if index != 0:
                raise ParameterError(f"index={index!r}: this stream object has a single stream; call reset()")
            self.reset()
            return
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.num_streams:
            raise ParameterError(f"index={index!r} must be a stream index in [0, {self.num_streams})")
        if self._flushed:
            raise ParameterError(f"reset({index}) after flush(): the streams have ended; call reset() to restart all of them")
        if self._trim_at is not None:
            raise ParameterError(
                f"{self.frontend.config.name}: with pad_or_trim=True the streams must stay in step (each is cut and "
                "zero-filled to n_samples); call reset() for all streams"
            )
        if self.cuda_graph:
            raise ParameterError("per-stream reset is not available with cuda_graph=True; call reset() for all streams")
        self._engine.reset(int(index))
        self._n[index] = 0
        self._emitted[index] = 0
        self._held[index] = None
        self._prev[index] = 0.0

    @staticmethod
    def _one_or_all(counts: Sequence[int]) -> Union[int, np.ndarray]:
        return counts[0] if len(set(counts)) == 1 else np.asarray(counts)

    @property
    def frame_count(self) -> Union[int, np.ndarray]:
        """Frames returned so far: an int, or one per stream when streams were reset separately."""
        return self._one_or_all(self._emitted)

    @property
    def samples_received(self) -> Union[int, np.ndarray]:
        """Samples pushed since the last reset (per stream when they differ)."""
        return self._one_or_all(self._n)

    # ------------------------------------------------------------------ input
    def _validate(self, chunk: Array) -> Tuple[Array, bool]:
        """Check a chunk without touching the state; return it as ``(S, n)`` in the front end's dtype and device
        (a numpy array for numpy chunks on the CPU path, else a tensor)."""
        chunk, was_numpy = check_chunk(chunk, num_streams=self.num_streams, check_finite=self.check_finite)
        if was_numpy and self._numpy_io:
            a = np.ascontiguousarray(chunk, dtype=np.float64 if self.dtype == torch.float64 else np.float32)
            return (a[None] if self.num_streams is None else a), was_numpy
        t = torch.from_numpy(np.ascontiguousarray(chunk)) if was_numpy else chunk
        t = t.to(device=self.device, dtype=self.dtype)
        return (t.unsqueeze(0) if self.num_streams is None else t), was_numpy

    def _pre(self, z: Array) -> Array:
        """The waveform step on a chunk, with each stream's previous samples; updates them."""
        if isinstance(self.frontend, Whisper) or z.shape[-1] == 0:
            return z  # Whisper's pad/trim acts on the stream's ends (push / flush)
        if self._pre_context:
            k = self._pre_context
            if isinstance(z, np.ndarray):
                out = self.frontend.pre(z, self._prev.numpy())
                tail = np.concatenate([self._prev.numpy(), z], axis=-1)[:, -k:] if z.shape[-1] < k else z[:, -k:]
                self._prev = torch.from_numpy(np.array(tail))  # a copy: the caller's chunk stays theirs
                return out
            out = self.frontend.pre(z, self._prev)
            self._prev = torch.cat([self._prev, z], dim=-1)[:, -k:] if z.shape[-1] < k else z[:, -k:].clone()
            return out
        return self.frontend.pre(z)

    # ------------------------------------------------------------------ output
    def _output(self, out: Frames, *, final: bool, was_numpy: bool) -> Union[Array, List[Array]]:
        """Withhold the frames the offline front end drops, apply ``post_local``, convert."""
        fe, S = self.frontend, self._n_streams
        post = fe.post_local
        if fe.drop_last or any(h is not None for h in self._held):
            rows = _rows(out, S)
            for i in range(S):
                if self._held[i] is not None:
                    rows[i] = torch.cat([self._held[i], rows[i]], dim=-1)
                    self._held[i] = None
                if final:
                    limit = fe.num_frames(self._n[i]) - self._emitted[i]
                else:  # frames certainly kept however the stream ends
                    n_core = self._n[i] if self._trim_at is None else min(self._n[i], self._trim_at)
                    limit = max(0, fe.core.spectrogram.num_frames(n_core) - fe.drop_last) - self._emitted[i]
                    if rows[i].shape[-1] > limit:
                        self._held[i] = rows[i][:, limit:].clone()  # (cuda_graph: the block is a reused buffer)
                rows[i] = rows[i][:, : max(0, limit)]
            out = _stack(rows)
        if isinstance(out, list):
            res: Union[torch.Tensor, List[torch.Tensor]] = [post(r.unsqueeze(0))[0] for r in out]
            for i, r in enumerate(out):
                self._emitted[i] += r.shape[-1]
        else:
            res = post(out)
            k = out.shape[-1]
            self._emitted = [e + k for e in self._emitted]
            if self.num_streams is None:
                res = res[0]

        def conv(x: torch.Tensor) -> Array:
            return x.detach().cpu().numpy() if was_numpy else x

        return [conv(r) for r in res] if isinstance(res, list) else conv(res)

    # ------------------------------------------------------------------ push / flush
    def push(self, chunk: Array) -> Union[Array, List[Array]]:
        """Add samples; return the frames they complete.

        Parameters
        ----------
        chunk : np.ndarray or Tensor [shape=(n,) or (num_streams, n)], n >= 0

        Returns
        -------
        frames : the preset's layout with ``k >= 0`` frames, e.g. ``(n_mels, k)``,
            ``(k, n_mels)`` (time-major) or ``(num_streams, ...)``; a list of
            per-stream blocks when streams reset separately complete different
            numbers of frames. numpy for numpy input.
        """
        if self._flushed:
            raise ParameterError("push() after flush(): the stream has ended; call reset() to start a new one")
        t, was_numpy = self._validate(chunk)
        n = t.shape[-1]
        if self._trim_at is not None:  # Whisper pad_or_trim: input beyond n_samples is cut
            t = t[:, : max(0, min(n, self._trim_at - self._n[0]))]
        out = _frames(self._engine.push(self._pre(t)))
        self._n = [c + n for c in self._n]
        self._last_numpy = was_numpy
        return self._output(out, final=False, was_numpy=was_numpy)

    _last_numpy = True

    def flush(self) -> Union[Array, List[Array]]:
        """End the input; return the remaining frames (none of the frames the offline front end drops).

        Raises :class:`~supermel.ParameterError` when a stream received no
        samples (the offline call refuses empty audio too).
        """
        if self._flushed:
            raise ParameterError("flush() called twice: the stream has ended; call reset() to start a new one")
        empty = [i for i, c in enumerate(self._n) if c == 0]
        if empty:
            which = "the stream is" if self.num_streams is None else f"stream(s) {empty} are"
            raise ParameterError(f"flush() with no input: {which} empty (the offline call refuses empty audio too)")
        fe = self.frontend
        tail = None
        if isinstance(fe, Whisper):  # Whisper's waveform step at the end: zero fill to n_samples, then `padding`
            k = (self._trim_at - min(self._n[0], self._trim_at) if self._trim_at is not None else 0) + fe.config.padding
            if k:
                tail = _frames(self._engine.push(torch.zeros((self._n_streams, k), dtype=self.dtype, device=self.device)))
        out = _frames(self._engine.flush())
        if tail is not None:
            S = self._n_streams
            a, b = _rows(tail, S), _rows(out, S)
            out = _stack([torch.cat([x, y], dim=-1) for x, y in zip(a, b)])
        self._flushed = True
        self._final_samples = list(self._n)
        return self._output(out, final=True, was_numpy=self._last_numpy)

    # ------------------------------------------------------------------ whole-input step
    def finalize(self, frames: Union[Array, Sequence[Array]], n_samples: Union[None, int, Sequence[int]] = None) -> Union[Array, List[Array]]:
        """Apply the preset's whole-input step (``post_global``) to the concatenated frames.

        ``finalize(concatenate(all push and flush outputs, axis=time_axis))``
        equals the offline ``fe(y)``. Whisper: the floor at the input's maximum
        minus ``dynamic_range`` and ``(x + 4) / 4`` (``max_scope="batch"``: the
        maximum over all streams, as one batched offline call). NeMo: the
        per-feature normalisation over the valid frames and ``pad_value`` after
        them (and ``pad_to``). Frame-local presets: unchanged.

        Parameters
        ----------
        frames : array or Tensor [shape=(..., n_mels, T)], or a list of per-stream blocks
        n_samples : int or sequence of int, optional
            Samples of each stream (NeMo's valid frames depend on it). Default:
            what this stream received before :meth:`flush`.
        """
        if n_samples is None:
            if self._final_samples is None:
                raise ParameterError("finalize() needs the stream's length: call flush() first, or pass n_samples")
            counts = list(self._final_samples)
        else:
            counts = [int(n_samples)] * self._n_streams if isinstance(n_samples, (int, np.integer)) else [int(c) for c in n_samples]
        if isinstance(frames, (list, tuple)):
            if len(frames) != len(counts):
                raise ParameterError(f"finalize() got {len(frames)} per-stream blocks for {len(counts)} streams")
            return [self._finalize_one(f, [c]) for f, c in zip(frames, counts)]
        return self._finalize_one(frames, counts if self.num_streams is not None else counts[:1])

    def _finalize_one(self, frames: Array, counts: List[int]) -> Array:
        fe = self.frontend
        was_numpy = not isinstance(frames, torch.Tensor)
        x = torch.from_numpy(np.asarray(frames)) if was_numpy else frames
        x = x.to(device=self.device, dtype=self.dtype)
        single = x.ndim == 2
        if single:
            x = x.unsqueeze(0)
        if x.ndim != 3 or x.shape[0] != len(counts):
            raise ParameterError(f"finalize() got frames of shape {tuple(frames.shape)}; expected one block of frames per stream ({len(counts)})")
        ta = self.time_axis % 3
        for c in counts:
            if x.shape[ta] != fe.num_frames(c):
                raise ParameterError(
                    f"finalize() got {x.shape[ta]} frames, but {c} samples give {fe.num_frames(c)}: pass the "
                    "concatenation of everything push() and flush() returned"
                )
        if isinstance(fe, Nemo):
            n_valid = torch.as_tensor([fe.valid_frames(c) for c in counts], device=self.device)
            if fe.config.normalize == "per_feature" and bool((n_valid < 2).any()):
                raise ParameterError(
                    f"{fe.config.name}: per-feature normalisation needs at least 2 valid frames per item "
                    f"(>= {2 * fe.config.hop_length} samples); got {min(counts)} samples"
                )
            out = fe.post_global(x, n_valid)
        else:
            out = fe.post_global(x)
        if single:
            out = out[0]
        return out.detach().cpu().numpy() if was_numpy else out


# =========================================================================== Wav2Lip windows
class Wav2LipChunker:
    """Wav2Lip's per-video-frame mel windows, each as soon as its 16 columns exist.

    Video frame ``i`` gets the window ``mel[:, s_i : s_i + 16]`` with
    ``s_i = floor(mel_fps * i / fps)`` (the rule of
    :func:`supermel.wav2lip_mel_chunks`, shared with it: exact arithmetic on
    the given numbers, so integer fps is integer arithmetic). :meth:`push`
    returns every window whose columns have all arrived; :meth:`flush` returns
    the one window Wav2Lip's ``inference.py`` ends with: the first window that
    would run past the end is replaced by the last 16 columns. The
    concatenation of all outputs (axis ``-3``) equals
    ``supermel.wav2lip_mel_chunks(mel, fps)``.

    Parameters
    ----------
    fps : float or Fraction > 0
        Video frame rate (25, 30, 29.97, ``Fraction(30000, 1001)``...).
    frontend : None, str or Wav2Lip
        ``None``: :meth:`push` takes mel columns ``(n_mels, k)`` (or
        ``(num_streams, n_mels, k)``), e.g. from a Wav2Lip
        :class:`StreamingFrontend`. A Wav2Lip preset name (``"wav2lip"``,
        ``"wav2lip-reflect"``) or module: :meth:`push` takes audio chunks and
        runs them through that front end's streaming form.
    mel_step_size : int
        Columns per window (16 = 200 ms).
    mel_fps : float, optional
        Mel columns per second (default: the front end's ``sr / hop_length``, 80).
    num_streams, device, check_finite
        As :class:`StreamingFrontend` (audio mode); ``num_streams`` also sets the
        shape of the mel columns.

    Attributes
    ----------
    window_count : int
        Windows returned so far: the next window is video frame ``window_count``'s.
    latency_samples, latency_ms
        Audio look-ahead: video frame ``i``'s window needs audio up to
        ``hop * (s_i + 15) + n_fft - pad`` samples, i.e. up to
        ``(mel_step_size - 1) * hop + n_fft / 2`` = 3400 samples (**212.5 ms**)
        after sample ``hop * s_i``, which is at or before the frame's timestamp
        ``i / fps``: 15 further columns of 12.5 ms plus the half window (25 ms)
        of the last one. Add the wait for the audio chunk that completes it.
        Computed from the front end (default Wav2Lip parameters in mel mode).
    latency_columns : int
        Mel columns a window needs from its start (``mel_step_size``).

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    >>> chunker = supermel.Wav2LipChunker(25, frontend="wav2lip")
    >>> parts = [chunker.push(y[i:i + 640]) for i in range(0, len(y), 640)] + [chunker.flush()]
    >>> windows = np.concatenate(parts, axis=0)
    >>> windows.shape, chunker.latency_ms
    ((47, 80, 16), 212.5)
    >>> np.allclose(windows, supermel.wav2lip_mel_chunks(supermel.frontend("wav2lip")(y), 25), atol=1e-5)
    True
    """

    def __init__(
        self,
        fps: Union[float, int, fractions.Fraction],
        *,
        frontend: Union[None, str, Wav2Lip] = None,
        mel_step_size: int = 16,
        mel_fps: Optional[float] = None,
        num_streams: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        check_finite: bool = True,
    ) -> None:
        _check_streams(num_streams)
        self.stream: Optional[StreamingFrontend] = None
        if frontend is not None:
            fe = _wav2lip_frontend(frontend)
            self.stream = fe.streaming(num_streams=num_streams, device=device, check_finite=check_finite)
            cfg: Wav2LipConfig = fe.config
            pad = fe.core.spectrogram.pad
        else:
            cfg = Wav2LipConfig()
            pad = cfg.effective_pad
        if mel_fps is None:
            mel_fps = fractions.Fraction(cfg.sr) / cfg.hop_length
        self.ratio = wav2lip_window_ratio(fps, mel_fps=mel_fps, mel_step_size=mel_step_size)
        self.fps, self.mel_fps, self.mel_step_size = fps, mel_fps, int(mel_step_size)
        self.num_streams = None if num_streams is None else int(num_streams)
        self.latency_columns = self.mel_step_size
        self.latency_samples = (self.mel_step_size - 1) * cfg.hop_length + cfg.n_fft - pad
        self.latency_ms = 1000.0 * self.latency_samples / float(cfg.sr)
        self.reset()

    def reset(self) -> None:
        """Forget all input (every stream): the next window is video frame 0's."""
        if self.stream is not None:
            self.stream.reset()
        self._cols: Optional[torch.Tensor] = None  # (S, C, m) kept columns
        self._col0 = 0  # column index of _cols[..., 0]
        self._n_cols = 0  # columns received
        self.window_count = 0
        self._flushed = False
        self._was_numpy = True

    @property
    def columns_received(self) -> int:
        """Mel columns received since the last reset."""
        return self._n_cols

    def _take(self, mel: Array) -> Union[Array, None]:
        """Add columns ``(S, C, k)``; return the windows they complete, ``(S, n, C, step)``."""
        was_numpy = not isinstance(mel, torch.Tensor)
        t = torch.from_numpy(np.ascontiguousarray(mel)) if was_numpy else mel
        want = 2 if self.num_streams is None else 3
        if t.ndim != want or (self.num_streams is not None and t.shape[0] != self.num_streams):
            expected = "(n_mels, k)" if self.num_streams is None else f"({self.num_streams}, n_mels, k)"
            raise ParameterError(f"mel has shape {tuple(t.shape)}; this chunker takes mel columns of shape {expected}")
        if self.num_streams is None:
            t = t.unsqueeze(0)
        if self._cols is not None and (t.shape[1] != self._cols.shape[1] or t.dtype != self._cols.dtype):
            raise ParameterError(
                f"mel has {t.shape[1]} rows of {t.dtype}; the earlier columns had {self._cols.shape[1]} of {self._cols.dtype}"
            )
        self._was_numpy = was_numpy
        self._cols = t if self._cols is None else torch.cat([self._cols, t], dim=-1)
        self._n_cols += t.shape[-1]
        step, wins = self.mel_step_size, []
        while True:
            s = wav2lip_window_start(self.window_count, self.ratio)
            if s + step > self._n_cols:
                break
            wins.append(self._cols[..., s - self._col0 : s - self._col0 + step])
            self.window_count += 1
        # the next window starts after n_cols - step: the last `step` columns are all it (or the final clamp) reads
        keep_from = max(self._col0, self._n_cols - step)
        if keep_from > self._col0:
            self._cols = self._cols[..., keep_from - self._col0 :]
            self._col0 = keep_from
        if wins:
            return torch.stack(wins, dim=1)
        return self._cols.new_zeros((self._cols.shape[0], 0, self._cols.shape[1], step))

    def _out(self, w: torch.Tensor, was_numpy: bool) -> Array:
        if self.num_streams is None:
            w = w[0]
        return w.detach().cpu().numpy() if was_numpy else w

    def push(self, data: Array) -> Array:
        """Add mel columns (or audio, with ``frontend``); return the windows they complete.

        Returns ``(n, n_mels, mel_step_size)`` (``(num_streams, n, ...)``), ``n >= 0``;
        numpy for numpy input.
        """
        if self._flushed:
            raise ParameterError("push() after flush(): the stream has ended; call reset() to start a new one")
        if self.stream is not None:
            mel = self.stream.push(data)
            was_numpy = not isinstance(data, torch.Tensor)
        else:
            mel, was_numpy = data, not isinstance(data, torch.Tensor)
        return self._out(self._take(mel), was_numpy)

    def flush(self) -> Array:
        """End the input; return the remaining windows: with ``frontend``, those of the last columns, then the clamped last window."""
        if self._flushed:
            raise ParameterError("flush() called twice: the stream has ended; call reset() to start a new one")
        parts = []
        was_numpy = self._was_numpy
        if self.stream is not None:
            was_numpy = self.stream._last_numpy
            parts.append(self._take(self.stream.flush()))
        step = self.mel_step_size
        if self._n_cols < step:
            raise ParameterError(
                f"mel has {self._n_cols} columns, fewer than mel_step_size={step}; "
                f"Wav2Lip needs at least {step} columns ({step - 1} hops of audio plus one sample)"
            )
        assert self._cols is not None
        lo = self._n_cols - step - self._col0
        parts.append(self._cols[..., lo : lo + step].unsqueeze(1))
        self.window_count += 1
        self._flushed = True
        return self._out(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0], was_numpy)


def _wav2lip_frontend(spec: Union[str, Wav2Lip]) -> Wav2Lip:
    fe = frontend(spec) if isinstance(spec, str) else spec
    if not isinstance(fe, Wav2Lip):
        raise ParameterError(f"frontend must be a Wav2Lip preset name or module (e.g. 'wav2lip'), not {type(fe).__name__}")
    return fe
