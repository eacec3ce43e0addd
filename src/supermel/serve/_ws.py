"""The parts of ``websockets`` (>= 14, its asyncio implementation) the server is built on.

Imported by every server module, so that a missing ``serve`` extra is reported once,
with the command that installs it.
"""

from __future__ import annotations

try:
    from websockets.asyncio.server import Server as WsServer
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
    from websockets.protocol import State
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(f"supermel.serve needs the optional module 'websockets' (>= 14): pip install 'supermel[serve]' ({_exc})", name=_exc.name or "websockets") from None

__all__ = ["WsServer", "ServerConnection", "ws_serve", "Headers", "ConnectionClosed", "Request", "Response", "State"]
