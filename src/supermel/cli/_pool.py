"""The worker processes of ``supermel batch --workers N`` (the local engine).

Not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its processes dies, the whole
pool breaks and every pending task is lost. Here each worker has its own pipe, and the driver
knows which work unit each worker is on, so that

- a worker that dies (``kill -9``, out of memory) is replaced; the unit it was on is retried once
  (alone), then marked failed (``worker died``); the rest of its tasks go back to the queue; the
  other workers go on;
- a stop (Ctrl-C, or a full disk) starts no new unit: each worker finishes the unit it is on, and
  the units not started are reported as such;
- the workers die with the driver, even under ``kill -9``: on Linux the fork server gets
  ``PR_SET_PDEATHSIG`` (SIGKILL when the driver dies, set by :mod:`._forkserver_guard`, which only
  the fork server imports) and each worker the same towards the fork server; everywhere, a
  watchdog thread in each worker reads a pipe whose only writer is the driver, and ends the
  process when it closes.

Messages, worker -> driver: ``("ready", parameters)`` or ``("error", message)`` (invalid options)
once; then per unit ``("begin", task id)`` and ``("rows", task id, rows)``; ``("done", task id)``
per task. Driver -> worker: ``(task id, units)``, or ``None`` to end.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from .._errors import ParameterError

__all__ = ["WorkerPool", "set_parent_death_signal"]

Rows = List[Tuple[int, Dict[str, Any], List[str]]]
Unit = Dict[str, Any]

#: The environment variable naming the driver's process id, for :mod:`._forkserver_guard`.
DRIVER_PID_VAR = "SUPERMEL_BATCH_DRIVER_PID"

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(expected_parent: Optional[int] = None) -> bool:
    """Linux: ask the kernel to SIGKILL this process when its parent dies; whether it could.

    When the parent is already gone (not ``expected_parent``), this process ends at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:  # died before the prctl
        os._exit(1)
    return True


def _watchdog(alive: Any) -> None:
    """End this process when the driver's end of ``alive`` closes (the driver died)."""

    def watch() -> None:
        try:
            alive.recv_bytes()
        except BaseException:  # EOFError: the driver is gone
            pass
        os._exit(1)

    threading.Thread(target=watch, name="supermel-watchdog", daemon=True).start()


def _worker_main(conn: Any, alive: Any, stop: Any, options: Dict[str, Any], fmt: str, min_duration: float) -> None:
    """One worker process: set up, say so, then run the tasks the driver sends until ``None``."""
    set_parent_death_signal()  # towards the fork server (or, spawned, the driver)
    _watchdog(alive)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    from . import _worker

    try:
        _worker.set_torch_threads(1)
        worker = _worker.Worker(options, fmt, min_duration)
        import torch

        conn.send(("ready", worker.pipeline.describe(), {"pid": os.getpid(), "torch_threads": torch.get_num_threads()}))
    except ParameterError as exc:
        conn.send(("error", str(exc)))
        return
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, units = msg

        def on_rows(rows: Rows, task_id: int = task_id) -> None:
            if any(entry.get("reason") == _worker.DISK_FULL for _, entry, _ in rows):
                stop.set()  # no worker starts another unit
            conn.send(("rows", task_id, rows))

        worker.run(units, on_rows=on_rows, stop=stop.is_set, on_begin=lambda k, task_id=task_id: conn.send(("begin", task_id)))
        conn.send(("done", task_id))


class _Task:
    def __init__(self, task_id: int, units: List[Unit]) -> None:
        self.id, self.units = task_id, units
        self.begun = 0  # units started
        self.reported = 0  # units whose rows arrived


class _Slot:
    """One worker process and the tasks sent to it, in order."""

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc, self.conn = proc, conn
        self.ready = False
        self.dead = False
        self.tasks: Deque[_Task] = collections.deque()


def _unit_indices(unit: Unit) -> List[int]:
    return [int(unit["i"])] if unit["kind"] == "file" else [int(m[0]) for m in unit["members"]]


def _died_rows(unit: Unit, detail: str) -> Rows:
    return [(i, {"status": "failed", "reason": "worker died", "detail": detail}, []) for i in _unit_indices(unit)]


class WorkerPool:
    """``n`` worker processes started from ``ctx`` (a forkserver or spawn context).

    The fork server is started here, from the calling (main) thread, so that its parent-death
    signal follows this process; the workers themselves start in a side thread (each waits for the
    fork server's imports), overlapping the driver's listing. :meth:`parameters` waits for the
    first worker to answer.
    """

    def __init__(self, ctx: Any, n: int, options: Dict[str, Any], fmt: str, min_duration: float) -> None:
        self.ctx, self.n = ctx, n
        self.args = (options, fmt, float(min_duration))
        self.stop_event = ctx.Event()
        self._alive_r, self._alive_w = ctx.Pipe(duplex=False)  # the workers get the reader; nobody writes
        self.slots: List[_Slot] = []
        self.description: Optional[Tuple[str, Any]] = None
        self.start_error: Optional[BaseException] = None
        self.deaths = 0
        self.worker_info: List[Dict[str, Any]] = []  # per worker up: its pid and torch threads
        self._lock = threading.Lock()
        self.closed = False
        if ctx.get_start_method() == "forkserver":
            os.environ[DRIVER_PID_VAR] = str(os.getpid())
            from multiprocessing import forkserver

            forkserver.ensure_running()  # spawned from this thread: see the class docstring
        self._starter = threading.Thread(target=self._start_all, name="supermel-pool-start", daemon=True)
        self._starter.start()

    # -- processes ------------------------------------------------------------------------
    def _spawn(self) -> _Slot:
        here, there = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_worker_main, args=(there, self._alive_r, self.stop_event, *self.args), daemon=True)
        proc.start()
        there.close()
        return _Slot(proc, here)

    def _start_all(self) -> None:
        try:
            for _ in range(self.n):
                with self._lock:
                    if self.closed:
                        return
                    self.slots.append(self._spawn())
        except BaseException as exc:  # the fork server failed to start, out of processes...
            self.start_error = exc

    def _started(self) -> None:
        self._starter.join()
        if not self.slots and self.start_error is not None:
            raise self.start_error

    # -- the first answer: the options checked --------------------------------------------
    def parameters(self) -> Tuple[str, Any]:
        """``("ok", the run's parameters)``, ``("error", message)`` for invalid options, or
        ``("failed", why)`` when no worker came up."""
        self._started()
        while self.description is None:
            live = [s for s in self.slots if not s.dead]
            if not live:
                return "failed", "every worker process ended while starting"
            for slot in self._wait(live, None):
                self._receive(slot, lambda rows: None)
        return self.description

    # -- messages -------------------------------------------------------------------------
    def _wait(self, slots: Sequence[_Slot], timeout: Optional[float]) -> List[_Slot]:
        by_handle: Dict[Any, _Slot] = {}
        for s in slots:
            by_handle[s.conn] = s
            by_handle[s.proc.sentinel] = s
        ready = multiprocessing.connection.wait(list(by_handle), timeout)
        out: List[_Slot] = []
        for handle in ready:
            if by_handle[handle] not in out:
                out.append(by_handle[handle])
        return out

    def _receive(self, slot: _Slot, on_rows: Callable[[Rows], None]) -> bool:
        """Handle the messages waiting from ``slot``; ``False`` when its process is gone."""
        slot.dead = slot.dead or not self._receive_all(slot, on_rows)
        return not slot.dead

    def _receive_all(self, slot: _Slot, on_rows: Callable[[Rows], None]) -> bool:
        while True:
            try:
                if not slot.conn.poll():
                    return slot.proc.exitcode is None or self._gone(slot)
                msg = slot.conn.recv()
            except (EOFError, OSError):
                return False
            kind = msg[0]
            if kind in ("ready", "error", "failed"):
                slot.ready = kind == "ready"
                if slot.ready:
                    self.worker_info.append(msg[2])
                if self.description is None or (self.description[0] == "failed" and kind != "failed"):
                    self.description = (("ok" if kind == "ready" else kind), msg[1])
                if kind != "ready":
                    return False
            elif kind == "begin":
                slot.tasks[0].begun += 1
            elif kind == "rows":
                slot.tasks[0].reported += 1
                on_rows(msg[2])
            elif kind == "done":
                slot.tasks.popleft()

    def _gone(self, slot: _Slot) -> bool:
        slot.proc.join(0.2)
        return slot.proc.exitcode is None

    # -- running --------------------------------------------------------------------------
    def run(self, tasks: Sequence[List[Unit]], on_rows: Callable[[Rows], None], stopping: Callable[[], bool]) -> Dict[str, Any]:
        """Run ``tasks``, reporting rows as they come; returns what happened (deaths, retries).

        ``stopping()`` is asked between messages: once true, no new unit starts (the running
        ones finish). A :class:`KeyboardInterrupt` does the same, then is raised again; a second
        one ends the workers at once.
        """
        self._started()
        queue: Deque[_Task] = collections.deque(_Task(k, list(t)) for k, t in enumerate(tasks))
        next_id = len(queue)
        retried: Dict[int, int] = {}
        info: Dict[str, Any] = {"workers_replaced": 0, "units_retried": 0}
        interrupted = False
        no_progress = 0  # worker deaths since a unit last finished
        max_deaths = 2 * self.n + 2

        def report(rows: Rows) -> None:
            nonlocal no_progress
            no_progress = 0
            on_rows(rows)

        def stop_now() -> bool:
            return interrupted or stopping() or self.stop_event.is_set()

        while True:
            try:
                if stop_now():
                    self.stop_event.set()
                else:
                    for slot in self.slots:
                        # two tasks per worker (no idle gap between them), but one shard: a shard's
                        # list is large, and a send blocked on a full pipe while the worker blocks
                        # sending its rows would deadlock
                        depth = 1 if queue and queue[0].units[0]["kind"] == "shard" else 2
                        while slot.ready and len(slot.tasks) < depth and queue:
                            task = queue.popleft()
                            slot.tasks.append(task)
                            try:
                                slot.conn.send((task.id, task.units))
                            except OSError:
                                break  # dead: found below
                busy = [s for s in self.slots if s.tasks or not s.ready]
                if not busy or (not queue and not any(s.tasks for s in self.slots)) or (stop_now() and not any(s.tasks for s in self.slots)):
                    break
                for slot in self._wait(busy, 1.0):
                    if self._receive(slot, report):
                        continue
                    # the process is gone: its messages are read; requeue or retry what it held
                    self.deaths += 1
                    no_progress += 1
                    slot.proc.join(1.0)
                    code = slot.proc.exitcode
                    why = f"signal {-code}" if code is not None and code < 0 else ("still running" if code is None else f"exit status {code}")
                    detail = f"the worker process ended abruptly ({why}: killed, or out of memory) while processing this file, twice"
                    requeue: List[_Task] = []
                    for n, task in enumerate(slot.tasks):
                        rest = task.units[task.reported:]
                        if n == 0 and task.begun > task.reported:  # the unit it was on
                            current = task.units[task.begun - 1]
                            first = _unit_indices(current)[0]
                            if retried.get(first, 0) >= 1 or no_progress > max_deaths:
                                on_rows(_died_rows(current, detail))
                            else:
                                retried[first] = retried.get(first, 0) + 1
                                info["units_retried"] += 1
                                requeue.append(_Task(next_id, [current]))
                                next_id += 1
                            rest = [u for u in rest if u is not current]
                        if rest:
                            requeue.append(_Task(next_id, rest))
                            next_id += 1
                    slot.tasks.clear()
                    queue.extendleft(reversed(requeue))
                    self._close_slot(slot)
                    self.slots.remove(slot)
                    if no_progress > max_deaths:  # the workers die faster than they work: give up
                        detail = "not processed: the worker processes kept ending abruptly (killed, or out of memory)"
                        for task in queue:
                            for unit in task.units:
                                on_rows(_died_rows(unit, detail))
                        queue.clear()
                    if queue or any(s.tasks for s in self.slots):
                        try:
                            self.slots.append(self._spawn())
                            info["workers_replaced"] += 1
                        except Exception:  # no new process: the others go on
                            if not self.slots:
                                raise
            except KeyboardInterrupt:
                if interrupted:  # a second Ctrl-C: stop waiting
                    self.terminate()
                    raise
                interrupted = True
                self.stop_event.set()
        if interrupted:
            raise KeyboardInterrupt
        return info

    # -- ending ---------------------------------------------------------------------------
    def _close_slot(self, slot: _Slot) -> None:
        try:
            slot.conn.close()
        except OSError:
            pass
        slot.proc.join(1.0)
        if slot.proc.exitcode is None:
            slot.proc.kill()
            slot.proc.join(1.0)

    def terminate(self) -> None:
        """Kill every worker now (their outputs are atomic: nothing partial is left)."""
        for slot in self.slots:
            if slot.proc.exitcode is None:
                slot.proc.kill()

    def close(self) -> None:
        """End the workers: ask them, then kill the ones that do not end within a few seconds."""
        with self._lock:
            self.closed = True
        self._starter.join(30.0)
        for slot in self.slots:
            try:
                slot.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for slot in self.slots:
            slot.proc.join(max(0.0, deadline - time.monotonic()))
            if slot.proc.exitcode is None:
                slot.proc.kill()
                slot.proc.join(1.0)
            try:
                slot.conn.close()
            except OSError:
                pass
        self.slots = []
        self._alive_w.close()
        self._alive_r.close()
