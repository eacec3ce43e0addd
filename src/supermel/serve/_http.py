"""The server's plain HTTP endpoints, answered before the WebSocket upgrade: the live page and two JSON views.

=================  ==============================================================
``/``              the live page (``static/index.html``), with ``/worklet.js``
``/stats``         :meth:`Server.snapshot_stats <supermel.serve.server.Server.snapshot_stats>`
``/hello``         the ``hello`` message (presets, rates, limits)
=================  ==============================================================
"""

from __future__ import annotations

import http
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
    _guard_request: Callable[..., Optional[Tuple[int, str]]]  # (:mod:`._guard`)

    def _process_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        path = request.path.split("?", 1)[0]
        # Host, Origin, token and per-address checks first (:mod:`._guard`): the page and its worklet are public, the rest needs the token
        refused = self._guard_request(connection, request, upgrade=upgrade, needs_token=upgrade or path in ("/stats", "/hello"))
        if refused is not None:
            return self._http(refused[0], refused[1].encode(), "text/plain; charset=utf-8")
        if upgrade:
            return None
        if path == "/favicon.ico" and self.page:
            return self._http(204, b"", "image/x-icon")  # (the page links a data: icon; this is for tools that ask anyway)
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
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="supermel"'
        return Response(status, http.HTTPStatus(status).phrase, headers, body)
