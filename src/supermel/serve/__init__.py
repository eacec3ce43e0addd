"""Live serving: ``supermel serve`` (a WebSocket server over :class:`~supermel.StreamPool`), its page and a client.

Needs the ``serve`` extra (``pip install 'supermel[serve]'``: websockets, soxr, threadpoolctl).
The protocol is documented in ``docs/serving.md`` and :mod:`supermel.serve.protocol`.

=====================  ===============================================================
:class:`Server`        the server (asyncio); :class:`ServerThread` runs one in a thread
:class:`Client`        one stream from Python (asyncio); :func:`stream_audio`, :func:`stream_sync`
:mod:`.protocol`       message formats, error and close codes
:mod:`.resample`       per-stream soxr resampling, state kept between chunks
=====================  ===============================================================

:mod:`.protocol` and :mod:`.resample` import without websockets; the server and the
client are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import protocol
from .protocol import FrameMessage, ProtocolError
from .resample import StreamResampler, resample_offline

__all__ = [
    "Server",
    "ServerThread",
    "Recording",
    "limit_threads",
    "Client",
    "ServerError",
    "ServerUnreachable",
    "ConnectionLost",
    "ServerUnresponsive",
    "check_url",
    "stream_audio",
    "stream_sync",
    "FrameMessage",
    "ProtocolError",
    "StreamResampler",
    "resample_offline",
    "protocol",
]

_LAZY = {
    "Server": "server",
    "ServerThread": "server",
    "Recording": "server",
    "limit_threads": "server",
    "Client": "client",
    "ServerError": "client",
    "ServerUnreachable": "client",
    "ConnectionLost": "client",
    "ServerUnresponsive": "client",
    "check_url": "client",
    "stream_audio": "client",
    "stream_sync": "client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'supermel.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
