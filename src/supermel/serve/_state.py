"""The server's state: per preset (:class:`PoolState`), per connection (:class:`Conn`,
:class:`Recording`) and per step cycle (:class:`Work`).

All of it is touched by the event loop's thread only, except a :class:`Work` while its
cycle runs (``_run`` in :mod:`._step`, possibly in the step thread).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..pool import PoolFrames, StreamPool
from ._ws import ServerConnection
from .resample import StreamResampler

__all__ = ["Recording"]


# --------------------------------------------------------------------------- per preset
def band_hz(cfg: Mapping[str, Any], sr: float) -> Optional[List[float]]:
    """Centre frequencies of the mel bands (for the page's Hz axis); ``None`` when the scale is unknown."""
    import supermel

    if "num_mel_bins" in cfg:  # Kaldi: HTK's mel formula, high_freq <= 0 counts from Nyquist
        if cfg.get("use_energy"):
            return None
        high = float(cfg.get("high_freq") or 0.0)
        n, lo, hi, htk = int(cfg["num_mel_bins"]), float(cfg.get("low_freq") or 0.0), (high if high > 0 else sr / 2 + high), True
    elif "n_mels" in cfg:
        n, lo = int(cfg["n_mels"]), float(cfg.get("fmin") or 0.0)
        hi = float(cfg["fmax"]) if cfg.get("fmax") is not None else sr / 2
        htk = bool(cfg.get("htk"))
    else:
        return None
    centres = supermel.mel_frequencies(n + 2, fmin=lo, fmax=hi, htk=htk)[1:-1]
    return [round(float(f), 2) for f in centres]


@dataclass
class PoolState:
    """One served pool and the connections waiting on its next cycle (opening, with input, closing)."""

    name: str
    pool: StreamPool
    info: Dict[str, Any]
    wav2lip: bool
    opening: List["Conn"] = field(default_factory=list)
    dirty: Dict["Conn", None] = field(default_factory=dict)  # ordered set
    closing: List["Conn"] = field(default_factory=list)
    by_sid: Dict[int, "Conn"] = field(default_factory=dict)
    more: bool = False  # the last step was capped: frames may be pending

    def has_work(self) -> bool:
        return bool(self.opening or self.dirty or self.closing or self.more)


def pool_state(name: str, pool: StreamPool, *, core: bool) -> PoolState:
    """A served pool and what ``hello`` and ``ready`` say about it (``core``: the plain mel spectrogram)."""
    fe = pool.frontend
    cfg = fe.config.as_dict()
    if core:
        p = float(cfg.get("power", 2.0))
        scale = "power" if p == 2.0 else ("magnitude" if p == 1.0 else f"magnitude^{p:g}")
    else:
        scale = "log"
    info = {
        "sr": int(round(pool.sr)), "bands": int(fe.mel_rows), "hop_length": int(pool.hop_length),
        "frame_rate": pool.sr / pool.hop_length, "time_axis": int(pool.time_axis), "frame_local": bool(pool.frame_local),
        "scale": scale, "band_hz": band_hz(cfg, pool.sr), "wav2lip": name.startswith("wav2lip") or cfg.get("name", "").startswith("wav2lip"),
        "config": {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool, type(None)))},
    }  # fmt: skip
    return PoolState(name, pool, info, wav2lip=bool(info["wav2lip"]))


# --------------------------------------------------------------------------- per connection
@dataclass
class Recording:
    """What a connection sent and received (``Server(record=True)``: a test and debugging hook).

    ``audio`` is the PCM the server received, as float32 at the client's rate (int16
    divided by 32768), at most ``max_record_seconds``; ``frames`` the frames sent,
    concatenated in the preset's layout (``time_axis``); ``end`` the totals sent
    (``None`` when the stream did not end normally); ``close_code`` the code the
    connection closed with.

    Examples
    --------
    >>> import numpy as np
    >>> from supermel.serve import Server, ServerThread, stream_sync
    >>> server = Server(core=dict(sr=16000, n_fft=400, hop_length=160, n_mels=40), port=0, page=False, record=True)
    >>> with ServerThread(server) as srv:
    ...     _ = stream_sync(srv.url, np.ones(3200, np.float32), 16000)
    >>> rec = next(iter(server.recordings.values()))
    >>> rec.audio.shape, rec.frames.shape
    ((3200,), (40, 21))
    """

    id: int
    sample_rate: int = 0
    format: str = ""
    preset: str = ""
    time_axis: int = -1
    chunks: List[np.ndarray] = field(default_factory=list)
    samples: int = 0
    truncated: bool = False
    frame_blocks: List[Tuple[int, np.ndarray]] = field(default_factory=list)
    window_blocks: List[Tuple[int, np.ndarray]] = field(default_factory=list)
    end: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    close_code: Optional[int] = None
    close_reason: str = ""

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    @property
    def frames(self) -> np.ndarray:
        """The frames sent (time-major blocks joined, in the preset's layout)."""
        blocks = [b for _, b in sorted(self.frame_blocks, key=lambda t: t[0])]
        tm = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, 0), np.float32)
        return np.ascontiguousarray(tm.T) if self.time_axis == -1 else tm

    @property
    def windows(self) -> Optional[np.ndarray]:
        blocks = [b for _, b in sorted(self.window_blocks, key=lambda t: t[0])]
        return np.concatenate(blocks, axis=0) if blocks else None


class Close:
    """A send-queue item: close the connection with this code and reason."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


NEW, STREAMING, ENDING, CLOSING = "new", "streaming", "ending", "closing"


class Conn:
    """One client: its stream's state, inbox and send queue (touched by the event loop only)."""

    def __init__(self, cid: int, ws: ServerConnection) -> None:
        self.id = cid
        self.ws = ws
        self.state = NEW
        self.ps: Optional[PoolState] = None
        self.sid: Optional[int] = None
        self.detached = False  # the stream was handed to the pool for closing without output
        self.gone = False  # nothing more is sent to this client
        self.end_reason = ""
        self.rate = 0
        self.format = "float32"
        self.fps: Optional[float] = None
        self.max_bytes = 0
        self.resampler: Optional[StreamResampler] = None
        self.inbox: List[np.ndarray] = []
        self.inbox_n = 0
        self.samples_in = 0  # client samples received
        self.resampled = 0  # samples at the preset's rate handed to the pool
        self.acked = 0  # samples_in when the current cycle took the inbox
        self.frames_sent = 0
        self.windows_sent = 0
        self.outq: Deque[Any] = collections.deque()
        self.out_event = asyncio.Event()
        self.queued_frames = 0
        self.max_queued_frames = 0
        self.sender: Optional["asyncio.Task[None]"] = None
        self.record: Optional[Recording] = None
        self.close_code: Optional[int] = None
        self.idle_mark = -1  # samples_in when the idle sweep last saw it change (:mod:`._guard`)
        self.idle_since: Optional[float] = None

    def __hash__(self) -> int:
        return self.id

    def put(self, item: Any, frames: int = 0) -> None:
        self.outq.append((item, frames) if not isinstance(item, Close) else item)
        self.queued_frames += frames
        self.out_event.set()


@dataclass
class Work:
    """One cycle's input (snapshot taken in the loop) and output (filled by ``_run`` in :mod:`._step`)."""

    ps: PoolState
    opens: List[Conn]
    pushes: List[Tuple[Conn, List[np.ndarray]]]
    closes: List[Conn]
    sids: Dict[int, Optional[int]]  # conn id -> stream id, as the loop knows it
    opened: List[Tuple[Conn, Union[int, Exception]]] = field(default_factory=list)
    failed: List[Tuple[Conn, str]] = field(default_factory=list)
    out: Mapping[int, PoolFrames] = field(default_factory=dict)  # StreamPool.step's PoolStep
    closed: List[Tuple[Conn, Union[PoolFrames, Exception, None]]] = field(default_factory=list)
    frames: int = 0


def to_numpy(x: Any) -> np.ndarray:
    """A pool's output as a numpy array (a GPU pool returns torch tensors)."""
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()  # a torch tensor (GPU pools)
