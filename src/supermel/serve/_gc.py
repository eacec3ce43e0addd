"""Full garbage collections at the server's quiet moments (``supermel serve --full-gc-interval``).

Mixin of :class:`~supermel.serve.server.Server`, event loop's thread only.

Python runs a full (generation 2) collection whenever enough objects survived the young
generations: under the attack of ``benchmarks/serve.py --attack`` (~1,300 connections open,
their objects renewed every few seconds) that was every ~4 s, each traversing every tracked
object of the open connections and stopping the event loop for 100-160 ms, while finding
nothing to free (a closed connection leaves no reference cycle: ``tests/test_serve_gc.py``).
With ``full_gc_interval`` set, the server takes the full collections over: the automatic ones
are off (the young generations are still collected as usual), and :meth:`GcSchedule._gc_loop`
runs one when the server is idle (no connection open) and at least :data:`IDLE_GAP` seconds
after the previous one, and at the latest every ``full_gc_interval`` seconds whatever the
load (so that a reference cycle left by some path we did not foresee is still freed).
The collector's settings are the process's: the option is off by default for a
:class:`~supermel.serve.Server` in someone else's program; ``supermel serve`` turns it on
(default 600 s). Counted in ``/stats``: ``gc_full``, ``gc_full_seconds``, ``gc_full_max_s``,
``gc_full_freed``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Dict, Optional, Tuple

#: Least seconds between two full collections at idle moments.
IDLE_GAP = 10.0
#: Seconds between two looks at the server's state.
SWEEP = 1.0
#: The generation-2 threshold that keeps Python from starting full collections itself.
NO_AUTO_FULL = 1 << 30


class GcSchedule:
    """Mixin of :class:`~supermel.serve.server.Server`: full collections when idle, or every ``full_gc_interval`` s."""

    stats: Dict[str, Any]
    _conns: Dict[int, Any]
    _tcp_open_n: int

    def _init_gc(self, full_gc_interval: Optional[float]) -> None:
        self.full_gc_interval = full_gc_interval
        self._gc_task: Optional["asyncio.Task[None]"] = None
        self._gc_saved: Optional[Tuple[int, ...]] = None
        self.stats.update(gc_full=0, gc_full_seconds=0.0, gc_full_max_s=0.0, gc_full_freed=0)

    def _gc_start(self) -> None:
        if self.full_gc_interval is None:
            return
        self._gc_saved = gc.get_threshold()
        t0, t1 = self._gc_saved[0], (self._gc_saved[1] if len(self._gc_saved) > 1 else 10)
        gc.set_threshold(t0, t1, NO_AUTO_FULL)
        self._gc_task = asyncio.create_task(self._gc_loop(), name="supermel-gc")

    def _gc_stop(self) -> None:
        if self._gc_saved is not None:
            gc.set_threshold(*self._gc_saved)
            self._gc_saved = None

    def _gc_full(self) -> None:
        t0 = time.perf_counter()
        freed = gc.collect()
        dt = time.perf_counter() - t0
        s = self.stats
        s["gc_full"] += 1
        s["gc_full_seconds"] += dt
        s["gc_full_max_s"] = max(s["gc_full_max_s"], dt)
        s["gc_full_freed"] += freed

    async def _gc_loop(self) -> None:
        assert self.full_gc_interval is not None
        loop = asyncio.get_running_loop()
        last = loop.time()
        young = gc.get_count()[2] if len(gc.get_count()) > 2 else 0
        while True:
            await asyncio.sleep(SWEEP)
            now = loop.time()
            counts = gc.get_count()
            grown = counts[2] != young if len(counts) > 2 else True  # young collections since the last full one
            idle = not self._conns and self._tcp_open_n == 0
            if (idle and grown and now - last >= IDLE_GAP) or now - last >= self.full_gc_interval:
                self._gc_full()
                last = loop.time()
                young = gc.get_count()[2] if len(gc.get_count()) > 2 else 0
