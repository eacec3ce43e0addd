"""Where the memory of connection churn goes: a diagnostic for ``benchmarks/serve.py --churn``.

Runs ``supermel serve`` (built as the CLI builds it: warm-up, ``gc.freeze()``, the given
``--full-gc-interval``) in a child process that, on SIGUSR1, writes what it holds: RSS and
its anonymous and file-backed parts (``/proc``), pymalloc's arenas and live blocks
(``sys._debugmallocstats``), glibc's heap (``mallinfo2``: arena, in use, free), the objects
the collector tracks counted by type, and tracemalloc's traced total and a snapshot (with
``--trace``, started after the warm-up; slows the server several times). The driver takes a
probe before any connection, runs ``--cycles`` churn cycles (``benchmarks/serve.py``'s
load), waits ``--settle`` s (past the server's 5 s ``malloc_trim``), takes a probe, runs
``3 x --cycles`` more, takes another, and prints the growth from the start to the first and
between the last two (traced memory by line and by traceback with ``--trace``).
``PROBE_GARBAGE=1`` also writes ``OUT.garbage.txt`` at the first probe after the churn: the
objects by generation, what young and full collections free, and the cycles found.

    python benchmarks/churn_probe.py --cycles 2500 [--trace] [--full-gc-interval 0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallinfo() -> Dict[str, float]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    return {"arena_mb": m.arena / 2**20, "mmap_mb": m.hblkhd / 2**20, "in_use_mb": m.uordblks / 2**20, "free_mb": m.fordblks / 2**20}


def proc_status(pid: int = 0) -> Dict[str, float]:
    """RSS and its parts (anonymous, file-backed), MB."""
    out = {}
    with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as f:
        for line in f:
            k = line.split(":")[0]
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmData"):
                out[k] = int(line.split()[1]) / 1024
    return out


def pymalloc() -> Dict[str, float]:
    """pymalloc's arenas (sys._debugmallocstats, which writes to the C stderr)."""
    import re
    import tempfile

    with tempfile.TemporaryFile("w+") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    out: Dict[str, float] = {}
    for key, pat in (("arenas_allocated_now", r"# arenas allocated current\s*=\s*([\d,]+)"), ("arenas_highwater", r"# arenas highwater mark\s*=\s*([\d,]+)"),
                     ("bytes_in_blocks", r"bytes in allocated blocks\s*=\s*([\d,]+)"), ("bytes_in_arenas", r"Total\s*=\s*([\d,]+)")):
        m = re.search(pat, text)
        if m:
            out[key] = int(m.group(1).replace(",", ""))
    for k in ("bytes_in_blocks", "bytes_in_arenas"):
        if k in out:
            out[k] = out[k] / 2**20
    return out


def rss_mb(pid: int = 0) -> float:
    with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- the server side
def _name(parent: Any, child: Any) -> str:
    """How ``parent`` refers to ``child`` (an attribute, a key, an index), for a readable cycle."""
    d = getattr(parent, "__dict__", None)
    if isinstance(d, dict):
        for k, v in d.items():
            if v is child:
                return f".{k}"
    if d is child:
        return ".__dict__"
    for k in getattr(type(parent), "__slots__", ()) or ():
        if getattr(parent, k, None) is child:
            return f".{k}"
    if isinstance(parent, dict):
        for k, v in parent.items():
            if v is child:
                return f"[{k!r}]"[:40]
    if isinstance(parent, (list, tuple)):
        for i, v in enumerate(parent):
            if v is child:
                return f"[{i}]"
    for a in ("f_locals", "tb_frame", "f_back", "__traceback__", "__context__", "__cause__", "cr_frame", "gi_frame", "__self__", "__func__"):
        try:
            if getattr(parent, a, None) is child:
                return f".{a}"
        except Exception:
            pass
    return " ->"


def _label(o: Any) -> str:
    t = type(o).__name__
    if t == "frame":
        return f"frame({o.f_code.co_name} {os.path.basename(o.f_code.co_filename)}:{o.f_lineno})"
    if t in ("function", "method", "builtin_function_or_method"):
        return f"{t}({getattr(o, '__qualname__', '?')})"
    if t == "coroutine":
        return f"coroutine({o.__qualname__})"
    return t


def garbage_report(path: str) -> None:
    """The cyclic garbage now: counts by type, and one cycle through each of the commonest types."""
    lines0 = []
    c0 = collections.Counter(type(x).__name__ for x in gc.get_objects())
    g = [len(gc.get_objects(i)) for i in range(3)]
    lines0.append(f"before: {sum(c0.values())} objects by generation {g}, ServerProtocol {c0['ServerProtocol']}, count {gc.get_count()}")
    freed = gc.collect(0)
    c1 = collections.Counter(type(x).__name__ for x in gc.get_objects())
    lines0.append(f"gc.collect(0) -> {freed}; after: {sum(c1.values())} objects, ServerProtocol {c1['ServerProtocol']}")
    freed = gc.collect(1)
    c1 = collections.Counter(type(x).__name__ for x in gc.get_objects())
    lines0.append(f"gc.collect(1) -> {freed}; after: {sum(c1.values())} objects, ServerProtocol {c1['ServerProtocol']}")
    protos = [p for p in gc.get_objects() if type(p).__name__ == "ServerProtocol"]
    lines0.append(f"{len(protos)} ServerProtocol objects tracked before the collection")
    if protos:
        o = protos[len(protos) // 2]
        for depth in range(6):
            refs = []  # (a loop, not a comprehension: that would make ``o`` a cell, one more referrer)
            for r in gc.get_referrers(o):
                if r is not protos and r is not refs and not isinstance(r, type(sys._getframe())):
                    refs.append(r)
            names = []
            for r in refs[:6]:
                names.append(_label(r) + _name(r, o))
            lines0.append("  held by: " + ", ".join(names))
            if not refs:
                break
            o = refs[0]
        del o, refs
    del protos
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    garbage = list(gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)
    ids = {id(o) for o in garbage}
    counts = collections.Counter(type(o).__name__ for o in garbage)
    lines = lines0 + [f"{len(garbage)} objects in cycles", ", ".join(f"{t} {c}" for t, c in counts.most_common(40)), ""]
    done = set()
    for t, _ in counts.most_common(12):
        if t in done:
            continue
        start = next(o for o in garbage if type(o).__name__ == t)
        # shortest path start -> ... -> start within the garbage
        prev = {id(start): None}
        queue = collections.deque([start])
        found = None
        while queue and found is None:
            o = queue.popleft()
            for r in gc.get_referents(o):
                if r is start:
                    found = o
                    break
                if id(r) in ids and id(r) not in prev:
                    prev[id(r)] = o
                    queue.append(r)
        if found is None:
            lines.append(f"{t}: not on a cycle itself (held by one)")
            continue
        chain = [found]
        while prev[id(chain[-1])] is not None:
            chain.append(prev[id(chain[-1])])
        chain.reverse()  # start ... found
        text = _label(chain[0])
        for a, b in zip(chain + [start], (chain + [start])[1:]):
            text += f" {_name(a, b)} {_label(b)}"
        done.update(type(o).__name__ for o in chain)
        lines.append(f"{t}: {text}")
    del garbage
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def server_main(argv: Any) -> None:
    out, trace, rest = argv[0], argv[1] == "1", argv[2:]
    sys.argv = ["supermel", "serve", *rest]
    from supermel.cli import serve_cmd
    from supermel.serve import server as server_mod


    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    serve_cmd.add_parser(sub)
    args = p.parse_args(["serve", *rest])
    server, _ = serve_cmd._build(args, server_mod)
    if trace:
        tracemalloc.start(12)
    n = [0]

    def probe() -> None:
        n[0] += 1
        if os.environ.get("PROBE_GARBAGE") and n[0] == 2:
            garbage_report(f"{out}.garbage.txt")
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        info = dict(rss_mb=rss_mb(), status=proc_status(), pymalloc=pymalloc(), mallinfo=mallinfo(), gc_count=gc.get_count(), stats=server.snapshot_stats(), objects=dict(counts),
                    gc_objects=sum(counts.values()), traced_mb=(tracemalloc.get_traced_memory()[0] / 2**20 if trace else None))  # fmt: skip
        with open(f"{out}.{n[0]}.json", "w") as f:
            json.dump(info, f, default=str)
        if trace:
            tracemalloc.take_snapshot().dump(f"{out}.{n[0]}.snap")
        with open(f"{out}.{n[0]}.done", "w") as f:
            f.write("ok")

    async def main() -> None:
        await server.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, probe)
        loop.add_signal_handler(signal.SIGINT, server.request_shutdown)
        print(f"listening on {server.url}", flush=True)
        await server.serve_forever()

    asyncio.run(main())


# --------------------------------------------------------------------------- the driver
def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--server":
        server_main(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=2500)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--settle", type=float, default=7.0)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--full-gc-interval", default="600")
    p.add_argument("--out", default="/tmp/churn_probe")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    sys.path.insert(0, HERE)
    import serve as bench  # benchmarks/serve.py

    cmd = [sys.executable, __file__, "--server", a.out, "1" if a.trace else "0", "--port", "0", "--no-page", "--quiet", "--max-clients", "256",
           "--max-per-address", "0", "--full-gc-interval", a.full_gc_interval]  # fmt: skip
    for k, v in bench.CORE.items():
        cmd += [f"--{k.replace('_', '-')}", f"{v:g}" if isinstance(v, float) else str(v)]
    for f in os.listdir(os.path.dirname(a.out)):
        if f.startswith(os.path.basename(a.out) + "."):
            os.remove(os.path.join(os.path.dirname(a.out), f))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if "listening on" in line:
            url = line.split("listening on ", 1)[1].strip()
            break
    print(f"server {proc.pid} at {url}; RSS {rss_mb(proc.pid):.1f} MB", flush=True)

    def take(k: int) -> Dict[str, Any]:
        os.kill(proc.pid, signal.SIGUSR1)
        while not os.path.exists(f"{a.out}.{k}.done"):
            time.sleep(0.2)
        with open(f"{a.out}.{k}.json") as f:
            return json.load(f)

    results = []
    try:
        time.sleep(2.0)
        start = take(1)
        print(f"probe 0 (before any connection): RSS {start['rss_mb']:.1f} MB, malloc {json.dumps({x: round(y, 1) for x, y in start['mallinfo'].items()})}, "
              f"pymalloc {start['pymalloc']}, status {start['status']}", flush=True)
        for k, n in enumerate((a.cycles, 3 * a.cycles), 2):
            t0 = time.time()
            outcome = asyncio.run(bench._churn_load(url, n, a.concurrency, lambda d: None))
            print(f"{n} cycles in {time.time() - t0:.0f} s: {dict(outcome)}; RSS {rss_mb(proc.pid):.1f} MB", flush=True)
            time.sleep(a.settle)
            results.append(take(k))
            r = results[-1]
            print(f"probe {k - 1}: RSS {r['rss_mb']:.1f} MB, traced {r['traced_mb']}, malloc {json.dumps({x: round(y, 1) for x, y in r['mallinfo'].items()})}, "
                  f"gc objects {r['gc_objects']}, trims {r['stats']['memory_trims']}, gc_full {r['stats'].get('gc_full')}", flush=True)  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    r1, r2 = results
    for r in (start, *results):
        print("  status", r["status"], "pymalloc", r["pymalloc"])
    print(f"\nfrom the start to probe 1 (after {a.cycles} cycles): RSS {r1['rss_mb'] - start['rss_mb']:+.1f} MB; "
          + ", ".join(f"{x} {r1['mallinfo'][x] - start['mallinfo'][x]:+.1f}" for x in start["mallinfo"])
          + "".join(f", pymalloc {x} {r1['pymalloc'][x] - start['pymalloc'][x]:+g}" for x in start["pymalloc"] if x in r1["pymalloc"])
          + (f", traced {r1['traced_mb'] - start['traced_mb']:+.2f} MB" if a.trace else ""))
    print(f"\nbetween probe 1 (after {a.cycles}) and probe 2 (after {4 * a.cycles} cycles):")
    print(f"  RSS {r2['rss_mb'] - r1['rss_mb']:+.1f} MB; " + ", ".join(f"{x} {r2['mallinfo'][x] - r1['mallinfo'][x]:+.1f}" for x in r1["mallinfo"]))
    if a.trace:
        print(f"  traced {r2['traced_mb'] - r1['traced_mb']:+.2f} MB")
    diff = {t: r2["objects"].get(t, 0) - r1["objects"].get(t, 0) for t in set(r1["objects"]) | set(r2["objects"])}
    print("  objects (gc-tracked) by type, growth: " + ", ".join(f"{t} {d:+d}" for t, d in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:20]))
    if a.trace:
        s1 = tracemalloc.Snapshot.load(f"{a.out}.2.snap")
        s2 = tracemalloc.Snapshot.load(f"{a.out}.3.snap")
        filt = [tracemalloc.Filter(False, tracemalloc.__file__)]
        s1, s2 = s1.filter_traces(filt), s2.filter_traces(filt)
        for key in ("lineno", "traceback"):
            print(f"\n  top growth by {key}:")
            for st in s2.compare_to(s1, key)[: a.top]:
                print(f"   {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks  now {st.size / 1024:9.1f} KiB")
                frames = st.traceback.format()[-12:] if key == "traceback" else st.traceback.format()[:2]
                for line in frames:
                    print("        " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
