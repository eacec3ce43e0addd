"""Per-stream resampling to the preset's rate with soxr, its state kept between chunks.

:class:`StreamResampler` wraps ``soxr.ResampleStream`` (quality ``HQ``, float32): the
concatenation of its outputs over any chunking, with :meth:`StreamResampler.flush`
at the end, equals :func:`resample_offline` of the whole stream (soxr's one-shot
call) to float32 rounding (bit-identical with soxr 0.3-1.x; ``tests/test_serve.py``
checks it). When the client's rate equals the preset's, chunks pass through unchanged.
"""

from __future__ import annotations

import numpy as np

from .._errors import ParameterError

__all__ = ["StreamResampler", "resample_offline"]


def _soxr():  # type: ignore[no-untyped-def]
    try:
        import soxr
    except ImportError:
        raise ParameterError("resampling needs the optional module 'soxr', which is not installed: pip install 'supermel[serve]'") from None
    return soxr


class StreamResampler:
    """Resample one stream from ``in_rate`` to ``out_rate`` chunk by chunk (mono float32).

    Parameters
    ----------
    in_rate, out_rate : int
        Sample rates in Hz (positive).

    Examples
    --------
    >>> import numpy as np
    >>> rs = StreamResampler(48000, 16000)
    >>> y = np.concatenate([rs.process(np.zeros(480, np.float32)) for _ in range(10)] + [rs.flush()])
    >>> y.shape
    (1600,)
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if int(in_rate) <= 0 or int(out_rate) <= 0:
            raise ParameterError(f"sample rates must be positive, got in_rate={in_rate!r}, out_rate={out_rate!r}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.passthrough = self.in_rate == self.out_rate
        self._rs = None if self.passthrough else _soxr().ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")
        self._done = False

    def process(self, x: np.ndarray) -> np.ndarray:
        """The output samples that input chunk ``x`` (1-D float32) completes."""
        if self._done:
            raise ParameterError("this resampler was flushed; start a new stream")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._rs is None:
            return x
        return self._rs.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """The last output samples (the end of the stream); the resampler is then finished."""
        if self._done:
            return np.zeros(0, np.float32)
        self._done = True
        if self._rs is None:
            return np.zeros(0, np.float32)
        return self._rs.resample_chunk(np.zeros(0, np.float32), last=True)


def resample_offline(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """The whole stream resampled at once (soxr ``HQ``, float32): what the chunks of a :class:`StreamResampler` equal.

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]
        Mono audio.
    in_rate, out_rate : int > 0
        Sample rates in Hz.

    Returns
    -------
    np.ndarray [shape=(ceil(n * out_rate / in_rate),)], float32

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.serve import resample_offline
    >>> resample_offline(np.zeros(4800, np.float32), 48000, 16000).shape
    (1600,)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if int(in_rate) == int(out_rate):
        return x
    return np.asarray(_soxr().resample(x, int(in_rate), int(out_rate), quality="HQ"), dtype=np.float32)
