"""Connection churn: every connection's handler, tasks, stream slot and ring rows are released
when it goes, whatever way it goes (``end``, a close without ``end``, a dropped TCP connection),
at once and not after the close timeout; the full 40k-cycle RSS measurement is
``python benchmarks/serve.py --churn 40000`` (docs/serving.md)."""

from __future__ import annotations

import asyncio
import gc
import json

import numpy as np
import pytest

pytest.importorskip("websockets")
pytest.importorskip("soxr")

from websockets.asyncio.client import connect  # noqa: E402

from supermel.serve import Server  # noqa: E402
from supermel.serve._state import Conn  # noqa: E402

CORE = dict(sr=16000, n_fft=400, hop_length=160, n_mels=40)
NOISE = (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32)


async def until(cond, what: str, limit: float = 20.0) -> None:
    """Poll ``cond()`` (a bounded wait on server state, not a timing assertion)."""
    for _ in range(int(limit / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for: {what}")


async def _cycle(url: str, i: int) -> None:
    rate = (16000, 44100, 48000)[i % 3]
    kind = ("end", "close", "drop")[(i // 3) % 3]
    async with connect(url, compression=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        for k in range(1 + i % 4):
            await ws.send(NOISE[k * rate // 50 : (k + 1) * rate // 50].tobytes())
        if kind == "end":
            await ws.send(json.dumps({"type": "end"}))
            async for _ in ws:
                pass
        elif kind == "drop":
            ws.transport.abort()


def _released(srv: Server) -> bool:
    return not srv._conns and srv.open_streams == 0 and not srv._ws.handler_tasks and not srv._ws.all_connections


def test_churn_releases_every_connection():
    """2,000 connect/disconnect cycles (32 at a time): afterwards no handler, connection, Conn,
    stream or task is left, and the pool's ring is back to its smallest."""

    async def main():
        # close_timeout 30 s: a handler that waited for it would still be there when checked
        srv = Server(core=CORE, port=0, close_timeout=30.0, max_clients=64)
        await srv.start()
        try:
            sem = asyncio.Semaphore(32)

            async def one(i):
                async with sem:
                    await _cycle(srv.url, i)

            await asyncio.gather(*(one(i) for i in range(2000)))
            await until(lambda: _released(srv), "every handler released", limit=10.0)
            gc.collect()
            conns = [o for o in gc.get_objects() if type(o) is Conn]  # (type(): isinstance on a dead weak proxy raises)
            assert len(conns) <= 16, len(conns)  # (the last few may be held a moment by the last cycle's locals)
            assert srv.pools["mel"]._ring.shape[0] == 4  # shrunk from the 32 rows the churn used
            # the server's standing tasks (the idle and handshake sweeps of the guard) are not per connection
            tasks = [t for t in asyncio.all_tasks() if not t.done() and t.get_name() not in ("supermel-idle", "supermel-handshakes")]
            assert len(tasks) <= 3, [t.get_name() for t in tasks]  # main, the stepper, the listener
            codes = srv.snapshot_stats()["close_codes"]
            assert sum(codes.values()) == 2000
        finally:
            await srv.shutdown()

    asyncio.run(asyncio.wait_for(main(), 300))


@pytest.mark.parametrize("how", ["drop", "close"])
def test_a_client_gone_without_end_releases_its_handler_at_once(how):
    """A client that drops (or closes) without ``end``: its handler ends within seconds, not the
    close timeout (it was held close_timeout + 1 s: 6 s by default)."""

    async def main():
        srv = Server(core=CORE, port=0, close_timeout=60.0)
        await srv.start()
        try:
            ws = await connect(srv.url, compression=None)
            await ws.recv()
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            await ws.send(NOISE[:3200].tobytes())
            await until(lambda: srv.open_streams == 1, "the stream open")
            if how == "drop":
                ws.transport.abort()
            else:
                await ws.close()
            await until(lambda: _released(srv), "the handler released", limit=10.0)  # < close_timeout 60 s
        finally:
            await srv.shutdown()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_churn_leaves_no_protocol_for_the_collector():
    """With the collector off, 300 connections (every way of ending) leave no websockets protocol behind.

    websockets' parser generator stays suspended at its last ``yield`` once the stream has ended,
    holding its protocol (``protocol.parser`` -> the generator's frame -> the protocol): a cycle
    per connection that only the collector frees (by closing the generator, so ``gc.collect()``
    returns 0 for it). Under churn, with the full collections held back (``full_gc_interval``),
    those that had reached the oldest generation piled up until the next full collection
    (docs/serving.md, "Connection churn"). The server closes the generator when a connection goes.
    """
    from websockets.server import ServerProtocol

    def alive(cls) -> int:
        return sum(1 for o in gc.get_objects() if type(o) is cls or (type(o).__name__ == "GuardedConnection" and cls is None))

    async def main():
        srv = Server(core=CORE, port=0, close_timeout=30.0, max_clients=64)
        await srv.start()
        try:
            await asyncio.gather(*(_cycle(srv.url, i) for i in range(16)))  # warm: first-use objects not counted
            await until(lambda: _released(srv), "the warm-up connections released", limit=10.0)
            gc.collect()
            before_p, before_c = alive(ServerProtocol), alive(None)
            gc.disable()
            try:
                sem = asyncio.Semaphore(16)

                async def one(i):
                    async with sem:
                        await _cycle(srv.url, i)

                await asyncio.gather(*(one(i) for i in range(300)))
                await until(lambda: _released(srv), "every handler released", limit=10.0)
                await asyncio.sleep(0.2)  # (the last transports' connection_lost callbacks)
                protocols, connections = alive(ServerProtocol) - before_p, alive(None) - before_c
            finally:
                gc.enable()
            # before: one protocol per connection (300), each with its reader, buffers and logger adapter
            assert protocols <= 4, protocols
            assert connections <= 4, connections
        finally:
            await srv.shutdown()

    asyncio.run(asyncio.wait_for(main(), 300))


async def _client_cycle(url: str, i: int) -> None:
    """One stream with supermel's client, ended one of four ways: ``end``, a close without it, a dropped
    connection, a stream the server refuses (an unknown preset)."""
    from supermel.serve.client import Client, ServerError, stream_audio

    kind = ("end", "close", "drop", "refused")[i % 4]
    if kind == "end":
        await stream_audio(url, NOISE[:3200], 16000, ping_interval=None)
        return
    try:
        c = await Client.connect(url, sample_rate=16000, preset="no-such-preset" if kind == "refused" else None, ping_interval=None)
    except ServerError:
        assert kind == "refused"
        return
    try:
        await c.send(NOISE[:3200])
        if kind == "drop":
            c.ws.transport.abort()
            with pytest.raises(ServerError):
                await c.wait_end(10.0)
    finally:
        await c.close()


def test_client_churn_leaves_no_protocol_for_the_collector():
    """With the collector off, 200 streams through :class:`~supermel.serve.client.Client` (every way of
    ending) leave no client, connection or websockets protocol behind.

    The client's connection has the server's cycle (the finished parser generator holds its
    protocol: closed by ``_cycles.break_cycles`` when the connection is lost), and a failed stream
    had one of its own (the error kept by the client, its traceback holding the client's frames:
    the client raises a new exception each time). Before: every protocol (200 of 200), and the
    client and connection of every failed stream, stayed until a collection.
    """
    from websockets.client import ClientProtocol

    from supermel.serve.client import Client, ClientConnection

    def alive():
        objs = gc.get_objects()
        return (sum(1 for o in objs if type(o) is ClientProtocol), sum(1 for o in objs if type(o) is Client),
                sum(1 for o in objs if issubclass(type(o), ClientConnection)))  # fmt: skip (type(): isinstance on a weak proxy raises)

    async def main():
        srv = Server(core=CORE, port=0, close_timeout=30.0, max_clients=64)
        await srv.start()
        try:
            await asyncio.gather(*(_client_cycle(srv.url, i) for i in range(8)))  # warm: first-use objects not counted
            await until(lambda: _released(srv), "the warm-up connections released", limit=10.0)
            await asyncio.sleep(0.2)
            gc.collect()
            before = alive()
            gc.disable()
            try:
                sem = asyncio.Semaphore(16)

                async def one(i):
                    async with sem:
                        await _client_cycle(srv.url, i)

                await asyncio.gather(*(one(i) for i in range(200)))
                await until(lambda: _released(srv), "every handler released", limit=10.0)
                await asyncio.sleep(0.2)  # (the last transports' connection_lost callbacks)
                protocols, clients, connections = (a - b for a, b in zip(alive(), before))
            finally:
                gc.enable()
            assert protocols <= 4, protocols
            assert clients <= 4, clients
            assert connections <= 4, connections
        finally:
            await srv.shutdown()

    asyncio.run(asyncio.wait_for(main(), 120))
