"""The server's plain HTTP endpoints, answered before the WebSocket upgrade: the live page and two JSON views.

=================  ==============================================================
``/``              the live page (``static/index.html``), with ``/worklet.js``
``/stats``         :meth:`Server.snapshot_stats <supermel.serve.server.Server.snapshot_stats>`
``/hello``         the ``hello`` message (presets, rates, limits)
=================  ==============================================================
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Callable, Dict, Optional, Tuple

from ._ws import Headers, Request, Response, ServerConnection

#: URL path -> (file in ``static/``, content type).
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}  # fmt: skip


def load_static() -> Dict[str, Tuple[bytes, str]]:
    """The page's files, read once: URL path -> (body, content type)."""
    return {path: (resources.files(__package__).joinpath("static", fname).read_bytes(), ctype) for path, (fname, ctype) in STATIC.items()}


class HttpEndpoints:
    """Mixin of :class:`~supermel.serve.server.Server`: ``process_request`` for ``websockets.serve``.

    Uses the server's ``page`` (serve the page or not), ``_static`` (:func:`load_static`),
    ``hello()`` and ``snapshot_stats()``.
    """

    # (the server's, declared for readers and type checkers)
    page: bool
    _static: Dict[str, Tuple[bytes, str]]
    hello: Callable[[], Dict[str, Any]]
    snapshot_stats: Callable[[], Dict[str, Any]]

    def _process_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = request.path.split("?", 1)[0]
        if path == "/stats":
            return self._http(200, json.dumps(self.snapshot_stats()).encode(), "application/json")
        if path == "/hello":
            return self._http(200, json.dumps(self.hello()).encode(), "application/json")
        static = self._static.get(path) if self.page else None
        if static is None:
            return self._http(404, b"not found: the page is at /, the WebSocket at ws://HOST:PORT/\n", "text/plain; charset=utf-8")
        return self._http(200, *static)

    @staticmethod
    def _http(status: int, body: bytes, ctype: str) -> Response:
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"), ("Connection", "close")])
        return Response(status, "OK" if status == 200 else "Not Found", headers, body)
