"""The wire format of ``supermel serve`` (``docs/serving.md``): JSON control messages, binary PCM up, binary frames down.

One WebSocket connection carries one stream:

1. server -> client, text: ``{"type": "hello", ...}`` (the presets served, their rates and bands);
2. client -> server, text: ``{"type": "start", "sample_rate": 44100, "format": "int16", "preset": "mel", "fps": 25}``
   (``format``, ``preset`` and ``fps`` optional);
3. server -> client, text: ``{"type": "ready", ...}``;
4. client -> server, binary: PCM chunks, little-endian float32 or int16, mono, any size;
5. server -> client, binary: frame messages (:data:`HEADER` then float32 payload);
6. client -> server, text: ``{"type": "end"}``; server -> client: the last frames (flag
   :data:`FLAG_FINAL`), then ``{"type": "end", "frames": ..., "samples": ...}``, then close 1000.

Errors: ``{"type": "error", "error": CODE, "message": ..., "close": CLOSE_CODE}``, then the
connection is closed with that code (:data:`ERRORS`).

Binary frame message (little-endian, 32-byte header, then ``count * bands * width`` float32):

====== ===== ============================================================
offset type  field
====== ===== ============================================================
0      2s    magic ``b"SM"``
2      u8    protocol version (1)
3      u8    kind: 1 frames (``width`` 1), 2 Wav2Lip windows (``width`` 16)
4      u16   bands (mel bands, rows of a frame)
6      u16   width: columns per item (1 for a frame, 16 for a Wav2Lip window)
8      u32   count: frames (or windows) in this message
12     u64   index: the stream's index of the first frame (or window)
20     u64   acked: client samples the server had received when it computed these
28     u32   flags: bit 0 (:data:`FLAG_FINAL`): part of the end flush
32     f32[] payload: frame-major ``(count, bands)``; windows ``(count, bands, width)``
====== ===== ============================================================
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Dict, Mapping, NamedTuple, Optional

import numpy as np

__all__ = [
    "PROTOCOL",
    "VERSION",
    "MAGIC",
    "HEADER",
    "KIND_FRAMES",
    "KIND_WINDOWS",
    "FLAG_FINAL",
    "FORMATS",
    "MIN_RATE",
    "MAX_RATE",
    "ERRORS",
    "ProtocolError",
    "FrameMessage",
    "StartRequest",
    "encode_frames",
    "decode_frames",
    "parse_json",
    "parse_start",
    "decode_pcm",
    "error_message",
]

#: Protocol name and version, sent in ``hello``.
PROTOCOL = "supermel.serve/1"
VERSION = 1
MAGIC = b"SM"
#: magic, version, kind, bands, width, count, index, acked, flags (32 bytes, little-endian).
HEADER = struct.Struct("<2sBBHHIQQI")
KIND_FRAMES = 1
KIND_WINDOWS = 2
#: Set on the frame messages of the end flush (after ``end``, or at server shutdown).
FLAG_FINAL = 1

#: Sample formats of the PCM chunks: numpy dtype (little-endian).
FORMATS: Dict[str, str] = {"float32": "<f4", "int16": "<i2"}
#: Client sample rates accepted (Hz).
MIN_RATE = 8000
MAX_RATE = 192000

#: error code -> WebSocket close code sent after the JSON error message.
ERRORS: Dict[str, int] = {
    "bad-json": 1007,  # a text message that is not a JSON object
    "bad-request": 1008,  # a JSON message of an unknown type, or a field missing, unknown or invalid
    "unknown-preset": 1008,  # start names a preset the server does not serve
    "bad-rate": 1008,  # start's sample_rate outside [MIN_RATE, MAX_RATE]
    "bad-format": 1008,  # start's format is neither float32 nor int16
    "not-started": 1003,  # audio (binary) before start
    "bad-length": 1007,  # a binary message that is not a whole number of samples
    "not-finite": 1007,  # NaN or Inf float32 samples
    "too-large": 1009,  # a message over the size limit
    "timeout": 1008,  # no start within the server's start timeout
    "idle": 1008,  # no audio for the server's idle timeout after start
    "overflow": 1007,  # finite audio whose features are not finite (float32 overflow: samples far outside [-1, 1])
    "server-full": 1013,  # the server's maximum connection count is reached
    "behind": 1013,  # more audio waiting to be computed than the backlog allows
    "not-reading": 1013,  # the client does not read its frames fast enough
    "flush-failed": 1011,  # the end flush failed (e.g. a configuration refusing short input)
}


class ProtocolError(Exception):
    """A client's protocol error: the JSON ``error`` message sent to it, and the close code.

    Examples
    --------
    >>> from supermel.serve import ProtocolError
    >>> e = ProtocolError("unknown-preset", "start: preset='x' is not served here")
    >>> e.error, e.close_code
    ('unknown-preset', 1008)
    """

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.close_code = ERRORS[error]

    def as_message(self) -> str:
        return error_message(self.error, self.message)


def error_message(error: str, message: str) -> str:
    """The JSON text of an ``error`` message."""
    return json.dumps({"type": "error", "error": error, "message": message, "close": ERRORS[error]})


class FrameMessage(NamedTuple):
    """A decoded binary frame message.

    ``data`` is ``(count, bands)`` float32 for frames (time-major: one row per frame), or
    ``(count, bands, width)`` for Wav2Lip windows. ``index`` is the stream's index of the
    first frame (window); ``acked`` the client samples the server had received when it
    computed them.

    Examples
    --------
    See :class:`Client`: ``Client(on_message=...)`` receives each one as it arrives.

    >>> import numpy as np
    >>> from supermel.serve import FrameMessage
    >>> m = FrameMessage(kind=1, index=0, acked=320, flags=0, data=np.zeros((2, 80), np.float32))
    >>> m.data.shape
    (2, 80)
    """

    kind: int
    index: int
    acked: int
    flags: int
    data: np.ndarray

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    @property
    def final(self) -> bool:
        return bool(self.flags & FLAG_FINAL)


def encode_frames(kind: int, index: int, data: np.ndarray, *, acked: int, flags: int = 0) -> bytes:
    """One binary frame message: ``data`` is ``(count, bands)`` (frames) or ``(count, bands, width)`` (windows)."""
    arr = np.ascontiguousarray(data, dtype="<f4")
    count, bands = arr.shape[0], arr.shape[1]
    width = arr.shape[2] if arr.ndim == 3 else 1
    return HEADER.pack(MAGIC, VERSION, kind, bands, width, count, index, acked, flags) + arr.tobytes()


def decode_frames(message: bytes) -> FrameMessage:
    """Decode a binary frame message (:class:`ValueError` when it is not one)."""
    if len(message) < HEADER.size:
        raise ValueError(f"a frame message has a {HEADER.size}-byte header; got {len(message)} bytes")
    magic, version, kind, bands, width, count, index, acked, flags = HEADER.unpack_from(message)
    if magic != MAGIC or version != VERSION or kind not in (KIND_FRAMES, KIND_WINDOWS):
        raise ValueError(f"not a supermel.serve/{VERSION} frame message (magic {magic!r}, version {version}, kind {kind})")
    n = count * bands * width
    if len(message) != HEADER.size + 4 * n:
        raise ValueError(f"frame message of {len(message)} bytes; its header announces {HEADER.size + 4 * n}")
    data = np.frombuffer(message, dtype="<f4", count=n, offset=HEADER.size)
    data = data.reshape((count, bands, width) if kind == KIND_WINDOWS else (count, bands))
    return FrameMessage(kind, index, acked, flags, data)


# --------------------------------------------------------------------------- client -> server
@dataclass(frozen=True)
class StartRequest:
    """A validated ``start`` message."""

    sample_rate: int
    format: str
    preset: Optional[str]
    fps: Optional[float]


_START_FIELDS = ("type", "sample_rate", "format", "preset", "fps")


def parse_json(text: str) -> Dict[str, Any]:
    """A text message as a JSON object with a string ``type`` (:class:`ProtocolError` otherwise)."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("bad-json", f"a text message must be a JSON object; could not parse it ({str(exc)[:120]})") from None
    except RecursionError:  # thousands of nested brackets
        raise ProtocolError("bad-json", "a text message must be a JSON object; this one nests too deeply to parse") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("bad-json", 'a text message must be a JSON object with a "type", e.g. {"type": "end"}')
    return obj


def _short(x: Any) -> str:
    """``repr(x)``, at most 40 characters (a client's value quoted in an error message)."""
    try:
        r = repr(x)
    except ValueError:  # an integer past Python's digit limit
        return "<a huge integer>"
    return r if len(r) <= 40 else r[:37] + "..."


def _finite_number(x: Any) -> bool:
    """An int or float that is finite and within float range (a 400-digit integer is not: ``math.isfinite`` overflows on it)."""
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return abs(x) < 1 << 64
    return isinstance(x, float) and math.isfinite(x)


def parse_start(obj: Mapping[str, Any], presets: Mapping[str, Any]) -> StartRequest:
    """Validate a ``start`` message against the presets served (:class:`ProtocolError` naming the field and the fix)."""
    unknown = sorted(set(obj) - set(_START_FIELDS))
    if unknown:
        raise ProtocolError("bad-request", f"start: unknown field(s) {_short(unknown)}; the fields are {list(_START_FIELDS)}")
    rate = obj.get("sample_rate")
    if rate is None:
        raise ProtocolError("bad-request", 'start: "sample_rate" (Hz) is required, e.g. {"type": "start", "sample_rate": 48000}')
    if not _finite_number(rate) or rate != int(rate):
        raise ProtocolError("bad-rate", f"start: sample_rate={_short(rate)} must be a whole number of Hz between {MIN_RATE} and {MAX_RATE}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError("bad-rate", f"start: sample_rate={_short(rate)} is not supported; send audio at {MIN_RATE} to {MAX_RATE} Hz")
    fmt = obj.get("format", "float32")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ProtocolError("bad-format", f"start: format={_short(fmt)} is not supported; use 'float32' or 'int16' (little-endian, mono)")
    preset = obj.get("preset")
    if preset is not None and (not isinstance(preset, str) or preset not in presets):
        raise ProtocolError("unknown-preset", f"start: preset={_short(preset)} is not served here; this server serves {sorted(presets)}")
    fps = obj.get("fps")
    if fps is not None:
        if not _finite_number(fps) or not 0 < fps <= 1000:
            raise ProtocolError("bad-request", f"start: fps={_short(fps)} must be a video frame rate in (0, 1000]")
        fps = float(fps)
    return StartRequest(int(rate), str(fmt), preset, fps)


def decode_pcm(message: bytes, fmt: str) -> np.ndarray:
    """A binary PCM chunk as float32 samples (int16 divided by 32768); :class:`ProtocolError` when invalid."""
    dtype = np.dtype(FORMATS[fmt])
    if len(message) % dtype.itemsize:
        raise ProtocolError("bad-length", f"a {fmt} chunk must hold a whole number of {dtype.itemsize}-byte samples; got {len(message)} bytes")
    x = np.frombuffer(message, dtype=dtype)
    if fmt == "int16":
        return x.astype(np.float32) * np.float32(1.0 / 32768.0)
    if x.size and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ProtocolError("not-finite", f"audio sample {bad} of this chunk is {x[bad]}; send finite float32 samples (NaN and Inf are refused)")
    return x.astype(np.float32)
