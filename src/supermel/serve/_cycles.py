"""Reference cycles a closed websockets connection leaves behind, broken (server and client alike).

Imports nothing of the server (:mod:`supermel.serve.client` uses it too) and nothing of
``websockets`` (it reads a few attributes, with ``getattr`` where they are not in every version).
"""

from __future__ import annotations

from typing import Any

__all__ = ["break_cycles"]


def break_cycles(ws: Any) -> None:
    """Break the reference cycles a closed connection keeps, so that reference counting frees it at once.

    - websockets' parser is a generator that holds its protocol (``protocol.parser`` -> the
      generator's frame -> ``self``) and, once the stream reached its end, stays suspended at its
      last ``yield`` for good: every connection's protocol (its reader, buffers, logger adapter,
      ~20 objects) was left in a cycle, freed only by the collector, and not counted by
      ``gc.collect()``'s return value (the collector frees it by closing the generator, a
      finaliser, not as garbage). A connection that lived through two young collections
      (any connection under load) waited for a full collection: under churn, with the full
      collections held back (``full_gc_interval``), tens of thousands piled up in the oldest
      generation and grew the heap. Closing the generator here (after EOF nothing steps it:
      the reader refuses data past its end) frees it.
    - The parser's exception (EOFError of a connection dropped mid-stream, kept as the close
      exception's cause) holds the parser's frame, which holds the protocol; a failed write's
      exception (``connection_exc``: ConnectionResetError) holds ``send_data``'s frame, which
      holds the connection: the exceptions stay, their tracebacks go.

    ``ws`` is a websockets asyncio connection, a server's or a client's (the same protocol
    classes underneath: :class:`~supermel.serve.client.Client` opens many connections too).
    The server calls it when a connection is lost and again when its handler ends (a write may
    fail, or websockets may start a new parser, in between); the client when its connection is
    lost and again when its receiving task ends.
    """
    protocol = ws.protocol
    for exc in (getattr(protocol, "parser_exc", None), getattr(ws, "connection_exc", None)):
        if exc is not None:
            exc.__traceback__ = None
    parser = getattr(protocol, "parser", None)
    if parser is not None and getattr(protocol, "reader", None) is not None and protocol.reader.eof:
        parser.close()
