"""``supermel batch --engine ray``: the driver plans, Ray actors decode, featurise and write.

The layout measured to work (``docs/datasets.md``): ``ray.data.from_items`` over the planned work
units, ``map_batches`` with a callable class on an actor pool (one CPU, one torch thread, or one
GPU, per actor); each actor writes its outputs itself, atomically, and returns only small
manifest rows. Ray's file readers are not used: a corrupt file would abort the whole dataset
without naming the file, and bytes through the object store are slower.

A killed actor is restarted by Ray and its batch retried (outputs are rewritten whole, never
half); the temporary file it was writing is swept at the end of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from .._errors import ParameterError
from . import _worker
from ._common import _json_default

__all__ = ["run", "connect", "WORKER_CLASS_NAME"]

Rows = List[Tuple[int, Dict[str, Any], List[str]]]

_AUTH_HINT = (
    "Ray >= 2.59 clusters use token authentication: set RAY_AUTH_MODE=token (the token is read from RAY_AUTH_TOKEN, "
    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as `ray start` wrote it), or run on a cluster node with --address auto"
)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ParameterError("--engine ray needs Ray, which is not installed: pip install 'supermel[ray]' (or use --engine local)") from None
    return ray


@contextlib.contextmanager
def _captured_stderr() -> Iterator[List[str]]:
    """Collect what is written to file descriptor 2 (Ray's C++ core logs there) into a list."""
    out: List[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as cap:
        saved = os.dup(2)
        os.dup2(cap.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            cap.seek(0)
            out.append(cap.read().decode("utf-8", "replace"))


def connect(address: Optional[str], num_cpus: Optional[int] = None) -> Tuple[Any, bool]:
    """``ray.init`` for the engine: a new local instance (``address=None``) or a running cluster.

    Returns
    -------
    ray : module
    started : bool
        Whether a local instance was started here (and is stopped by ``ray.shutdown()``).

    Raises
    ------
    ParameterError
        When Ray is missing or the cluster cannot be joined; an authentication failure names
        ``RAY_AUTH_MODE=token``.
    """
    ray = _import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray, False
    common: Dict[str, Any] = {"logging_level": logging.ERROR, "configure_logging": True}  # Ray's notices go to its session logs
    if address is None:
        # A local instance for this run alone: bound to loopback (nothing outside reaches it).
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1", **common)
        return ray, True
    try:
        with _captured_stderr() as log:
            ray.init(address=address, **common)
    except Exception as exc:
        text = "".join(log) + str(exc)
        if "Unauthenticated" in text or "InvalidAuthToken" in text or "auth" in str(exc).lower():
            raise ParameterError(f"cannot join the Ray cluster at {address!r}: authentication failed. {_AUTH_HINT}") from None
        sys.stderr.write("".join(log))
        raise ParameterError(
            f"cannot join the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); check the address "
            f"(`ray status` on the head node prints it) or use --address auto on a cluster node. If it is a Ray >= 2.59 cluster: {_AUTH_HINT}"
        ) from None
    return ray, False


# =========================================================================== checks before starting
def _node_check(cwd: str, in_path: str, sample: Optional[str], out_dir: str) -> str:
    """What this node cannot see or write ("" when all is well); run on every node."""
    import socket

    if os.path.isdir(cwd):
        os.chdir(cwd)
    problems = []
    if not os.path.exists(in_path):
        problems.append(f"the input {in_path!r} does not exist there")
    elif sample is not None and not os.path.isfile(sample):
        problems.append(f"the input file {sample!r} does not exist there")
    if not os.path.isdir(out_dir):
        problems.append(f"the output folder {out_dir!r} does not exist there")
    else:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".supermel-probe-", dir=out_dir)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            problems.append(f"cannot create files in {out_dir!r} ({exc.strerror or exc})")
    if problems:
        return f"{socket.gethostname()}: " + "; ".join(problems)
    return ""


def _check_nodes(ray: Any, cwd: str, in_path: str, sample: Optional[str], out_dir: str) -> int:
    """Run :func:`_node_check` on every alive node; the number of nodes. Refuse when any cannot see the paths."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    check = ray.remote(num_cpus=0, max_retries=1)(_node_check)
    refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(cwd, in_path, sample, out_dir) for n in nodes]
    try:
        results = ray.get(refs, timeout=300)
    except Exception as exc:
        raise ParameterError(
            f"could not check the Ray nodes ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "is supermel installed on every node (pip install 'supermel[ray]')?"
        ) from None
    problems = [r for r in results if r]
    if problems:
        raise ParameterError(
            "inputs and outputs must be on a filesystem every Ray node shares, at the same paths: "
            + "; ".join(problems[:3])
            + ("" if len(problems) <= 3 else f"; ... ({len(problems) - 3} more nodes)")
            + "; put them on shared storage (NFS, Lustre, a FUSE mount) and give absolute paths"
        )
    return len(nodes)


def _check_gpus(ray: Any, device: str) -> int:
    """The cluster's GPU count for ``--device cuda``; refuse at once when there is none."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus < 1:
        raise ParameterError(
            f"--device {device}: the Ray cluster has no GPUs (cluster_resources: {int(resources.get('CPU', 0))} CPUs, 0 GPUs); "
            "use --device cpu, or add GPU nodes to the cluster"
        )
    return gpus


# =========================================================================== the actors
class _RayWorker:
    """The callable class of ``map_batches``: one :class:`~._worker.Worker` per actor.

    Its configuration travels as the class attribute ``init_kwargs`` of a subclass made per run
    (:func:`_worker_class`), pickled with the class, rather than as constructor arguments, which
    Ray Data keeps in the object store (a restarted actor would need them still there).
    """

    init_kwargs: Dict[str, Any] = {}

    def __init__(self) -> None:
        kw = self.init_kwargs
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"
        if os.path.isdir(kw["cwd"]):  # relative paths mean what they mean to the driver
            os.chdir(kw["cwd"])
        _worker.set_torch_threads(1)
        self.worker = _worker.Worker(kw["options"], kw["fmt"], kw["min_duration"])

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        import numpy as np

        out = [json.dumps(self.worker.run([json.loads(str(text))]), default=_json_default) for text in batch["unit"]]
        return {"rows": np.asarray(out, dtype=object)}


#: The name of the actors' class: their processes are titled ``ray::MapWorker(MapBatches(SupermelBatchWorker))``.
WORKER_CLASS_NAME = "SupermelBatchWorker"


def _worker_class(options: Dict[str, Any], fmt: str, min_duration: float, cwd: str) -> type:
    kw = {"options": dict(options), "fmt": fmt, "min_duration": float(min_duration), "cwd": cwd}
    return type(WORKER_CLASS_NAME, (_RayWorker,), {"init_kwargs": kw, "__module__": __name__, "__qualname__": WORKER_CLASS_NAME})


def _indices(unit: Dict[str, Any]) -> List[int]:
    return [int(unit["i"])] if unit["kind"] == "file" else [int(m[0]) for m in unit["members"]]


def run(
    args: argparse.Namespace,
    units: List[Dict[str, Any]],
    fmt: str,
    on_rows: Callable[[Rows], None],
    *,
    in_path: Path,
    sample: Optional[Path],
    out_dir: Path,
    progress: Any = None,
) -> Dict[str, Any]:
    """Run ``units`` on Ray; what the engine did (address, actors, fixed costs in seconds) for the manifest."""
    t0 = time.perf_counter()
    ray = _import_ray()
    owned = not ray.is_initialized()  # a session this process had already is left as it was
    ray, started = connect(args.address)
    info: Dict[str, Any] = {"engine": "ray", "address": args.address or "local", "init_s": round(time.perf_counter() - t0, 3)}
    try:
        cwd = os.getcwd()
        if args.device != "cpu":
            gpus = _check_gpus(ray, args.device)
        info["nodes"] = _check_nodes(ray, cwd, os.fspath(in_path), None if sample is None else os.fspath(sample), os.fspath(out_dir))
        info["check_s"] = round(time.perf_counter() - t0 - info["init_s"], 3)
        if not units:
            return info
        if progress is not None:  # the clock starts with the work, not with Ray's start
            progress.start = time.perf_counter()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        limit = gpus if args.device != "cpu" else max(1, cpus)
        actors = max(1, min(args.workers or limit, limit, len(units)))
        shards = units[0]["kind"] == "shard"
        batch_size = 1 if shards else max(1, min(64, math.ceil(len(units) / (actors * 4))))
        info.update(actors=actors, batch_size=batch_size)
        _run_dataset(ray, args, units, fmt, cwd, actors, batch_size, on_rows, info)
    finally:
        t1 = time.perf_counter()
        if owned:
            ray.shutdown()  # stops the local instance started here; from a cluster, only disconnects
        info["shutdown_s"] = round(time.perf_counter() - t1, 3)
    return info


def _run_dataset(
    ray: Any, args: argparse.Namespace, units: List[Dict[str, Any]], fmt: str, cwd: str, actors: int, batch_size: int,
    on_rows: Callable[[Rows], None], info: Dict[str, Any],
) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # supermel's own progress: files/s, hours of audio/s
    for name in ("print_on_execution_start", "enable_auto_log_stats"):
        if hasattr(ctx, name):
            setattr(ctx, name, False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    strategy_kw: Dict[str, Any] = {"min_size": 1, "max_size": actors}
    if "initial_size" in inspect.signature(ray.data.ActorPoolStrategy.__init__).parameters:
        strategy_kw["initial_size"] = actors
    resources: Dict[str, Any] = {"num_cpus": 1}
    if args.device != "cpu":
        resources["num_gpus"] = 1
    ds = ray.data.from_items([{"unit": json.dumps(u)} for u in units])
    ds = ds.map_batches(
        _worker_class(vars(args), fmt, float(args.min_duration), cwd),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(**strategy_kw),
        **resources,
    )
    seen: Set[int] = set()
    t_start = time.perf_counter()
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if "first_result_s" not in info:
                info["first_result_s"] = round(time.perf_counter() - t_start, 3)
            rows: Rows = []
            for text in batch["rows"]:
                for i, fields, messages in json.loads(str(text)):
                    if i not in seen:  # a retried batch may report a file twice
                        seen.add(i)
                        rows.append((int(i), fields, messages))
            on_rows(rows)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # Ray itself failed: every file not reported is failed, with the reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = f"the Ray job failed before this file was done ({type(exc).__name__}: {first[:300]}); rerun to resume"
        lost = [i for u in units for i in _indices(u) if i not in seen]
        on_rows([(i, {"status": "failed", "reason": "engine error", "detail": detail}, []) for i in lost])
        import warnings

        warnings.warn(f"the Ray job failed: {type(exc).__name__}: {first[:500]}")
    info["run_s"] = round(time.perf_counter() - t_start, 3)
