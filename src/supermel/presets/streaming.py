"""Model front ends, streaming: the generic machinery of :class:`StreamingFrontend`.

``supermel.frontend(name).streaming(...)`` returns a :class:`StreamingFrontend`:
push audio chunks, get the front end's frames as soon as their analysis windows
are complete, in the preset's own layout (``(n_mels, k)``, or ``(k, n_mels)``
for the time-major Kaldi fbank and SpeechT5 presets). For every **frame-local**
preset, concatenating what ``push`` and ``flush`` return along the preset's
``time_axis`` gives the offline ``supermel.frontend(name)(y)``: the same frames,
the values to float32 rounding (bounds per family in docs/exactness.md).

The machinery is the same for every family: the waveform step (``pre``) runs
statefully on each chunk (pre-emphasis keeps each stream's last sample; the
stream's first sample has no predecessor, as the offline whole-signal filter),
the family's engine (:meth:`~supermel.Frontend.stream_engine`: the core in a
:class:`~supermel.StreamingMelSpectrogram`, or Kaldi's own framing) turns
samples into raw frames, and ``post_local`` is applied to each emitted block.
What a family does differently is a hook on its module (``stream_trim_at``,
``stream_tail_samples``, ``finalize_frames``), in that family's file.

**Not frame-local** presets (Whisper's floor at the whole input's maximum,
NeMo's per-utterance normalisation, AST, SeamlessM4T, FunASR): ``push``/``flush``
return the ``post_local`` frames, and :meth:`StreamingFrontend.finalize` applies
the whole-input step to their concatenation.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import _core
from .._errors import ParameterError
from ..streaming import StreamingMelSpectrogram, check_chunk

if TYPE_CHECKING:  # base imports this module lazily (Frontend.streaming): no import at run time
    from .base import Frontend

__all__ = ["StreamingFrontend"]

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
        if not callable(getattr(fe, "stream_engine", None)) or not hasattr(fe, "post_local"):
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
        self._trim_at = fe.stream_trim_at()
        self._pre_context = fe.pre_context
        self._engine, self.hop_length, self.latency_samples = fe.stream_engine(
            num_streams=self._n_streams, device=dev, dtype=self.dtype, chunk_size=chunk_size, cuda_graph=cuda_graph
        )
        self.sr = float(fe.core.sr)
        self.latency_ms = 1000.0 * self.latency_samples / self.sr
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.cuda_graph = bool(cuda_graph)
        # numpy chunks on the CPU stay numpy through the waveform step and the core's
        # numpy step (a numpy call costs a fraction of a torch operator call on a few
        # frames), where the family's waveform step takes numpy arrays
        self._numpy_io = dev.type == "cpu" and not self.cuda_graph and isinstance(self._engine, StreamingMelSpectrogram) and fe.pre_accepts_numpy
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
        if not self.frontend.stream_pre_on_chunks or z.shape[-1] == 0:
            return z  # e.g. Whisper's pad/trim acts on the stream's ends (push / flush)
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
        if self._trim_at is not None:  # e.g. Whisper pad_or_trim: input beyond n_samples is cut
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

        Returns
        -------
        frames
            The preset's layout, as :meth:`push`.

        Examples
        --------
        >>> import numpy as np, supermel
        >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
        >>> stream = supermel.frontend("kaldi-fbank", snip_edges=False).streaming()
        >>> out = np.concatenate([stream.push(y[:3000]), stream.push(y[3000:]), stream.flush()], axis=stream.time_axis)
        >>> out.shape == supermel.frontend("kaldi-fbank", snip_edges=False)(y).shape
        True
        """
        if self._flushed:
            raise ParameterError("flush() called twice: the stream has ended; call reset() to start a new one")
        empty = [i for i, c in enumerate(self._n) if c == 0]
        if empty:
            which = "the stream is" if self.num_streams is None else f"stream(s) {empty} are"
            raise ParameterError(f"flush() with no input: {which} empty (the offline call refuses empty audio too)")
        fe = self.frontend
        tail = None
        k = fe.stream_tail_samples(self._n[0])  # the waveform step at the end (Whisper: zero fill, padding)
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
        out = fe.finalize_frames(x, counts)
        if single:
            out = out[0]
        return out.detach().cpu().numpy() if was_numpy else out
