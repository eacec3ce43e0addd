#!/usr/bin/env python
"""The attack mode of the live-serving benchmark (``python benchmarks/serve.py --attack``): honest clients under attack.

    python benchmarks/serve.py --attack                      # 64 honest clients, 1,000 half-open, 256 idle, 200 churn/s, 60 s
    python benchmarks/serve.py --attack --markdown-file BENCHMARKS.md   # and (re)write its section of BENCHMARKS.md
    python benchmarks/serve.py --attack --seconds 3 --honest 4 --half-open 20 --idle 8 --churn-rate 20 --idle-timeout 1   # a quick check

What runs (all on this machine, 127.0.0.1 only, the same cores):

* **the server**: ``supermel serve`` in its own process, the reference configuration of
  ``benchmarks/serve.py``, its defaults (``--max-half-open 2048``, ``--handshake-timeout 5``, ``--full-gc-interval 600``)
  except: ``--max-per-address 4096`` (every client of this benchmark comes from 127.0.0.1:
  the default cap of 64 per address would refuse them), ``--max-clients 1024`` (honest +
  idle + churning connections at once) and ``--idle-timeout`` (``--idle-timeout``, default 10 s,
  so that the idle attackers are closed several times within the run);
* **the honest clients**: ``--honest`` clients (default 64) in one process, the load of
  ``benchmarks/serve.py`` (20 ms chunks at 16 kHz in real time, joining over 2 s,
  out of step) for ``--seconds`` (default 60);
* **the attackers**, in one other process (asyncio), started 2 s before the honest clients
  and running until they finish:

  - ``--half-open`` (1,000) TCP connections that send an unfinished HTTP request
    (``GET / HTTP/1.1`` and a ``Host`` line, never the blank line) and wait; when the
    server drops one, it is opened again ``--half-open-renew`` seconds later (default 1 s);
  - ``--idle`` (256) WebSocket connections that read ``hello``, send ``start`` and then
    nothing; when the server closes one, it connects again at once;
  - a churn of ``--churn-rate`` (200) connect / ``hello`` / disconnect cycles per second.

What is reported: the honest clients' round trips (p50, p99, max), their frames lost (gaps,
and frames missing at the end against the offline count) and errors; the server's CPU; for
each attacker kind, how its connections ended (the WebSocket close code the attacker saw,
``reset``/``eof`` for connections dropped without one, HTTP statuses for refused upgrades)
and the server's own counters (``/stats``: close codes, errors, half-open connections
dropped, refusals).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve as bench  # noqa: E402  (benchmarks/serve.py: the server, the honest load, the reporting helpers)

SECTION = "## Live serving under attack (supermel serve)"
#: Acceptance (the network-safety issue): honest p99 round trip (seconds) and frames lost.
P99_LIMIT = 0.020
#: The endings documented for each attacker (docs/serving.md): what the acceptance counts as "closed with its documented code".
DOCUMENTED = {
    "half_open": {"reset", "eof", "still open at the end"},  # dropped: the oldest past --max-half-open, or at --handshake-timeout
    "idle": {"1008 idle", "1013 server-full", "still open at the end"},  # --idle-timeout; --max-clients
    "churn": {"1000 (the attacker closed)", "1013 server-full"},
}


# --------------------------------------------------------------------------- the attackers
async def _half_open(port: int, n: int, renew: float, until: float, out: "collections.Counter[str]", held: List[float]) -> None:
    async def one(i: int) -> None:
        while time.time() < until:
            t0 = time.time()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                out[f"connect failed ({type(exc).__name__})"] += 1
                await asyncio.sleep(renew)
                continue
            writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())  # never the blank line
            try:
                left = until - time.time()
                data = await asyncio.wait_for(reader.read(1), timeout=max(0.01, left))
                out["eof" if not data else "answered"] += 1
                held.append(time.time() - t0)
            except (ConnectionResetError, BrokenPipeError):
                out["reset"] += 1
                held.append(time.time() - t0)
            except asyncio.TimeoutError:
                out["still open at the end"] += 1
            writer.transport.abort()
            if time.time() < until:
                await asyncio.sleep(renew)

    await asyncio.gather(*(one(i) for i in range(n)))


async def _idle(url: str, n: int, until: float, out: "collections.Counter[str]", held: List[float]) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    async def one(i: int) -> None:
        while time.time() < until:
            t0 = time.time()
            try:
                ws = await connect(url, compression=None, open_timeout=30)
            except InvalidStatus as exc:
                out[f"HTTP {exc.response.status_code}"] += 1
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # (OSError, TimeoutError, a handshake the server dropped: InvalidMessage)
                out[f"connect failed ({type(exc).__name__})"] += 1
                await asyncio.sleep(1.0)
                continue
            try:
                await ws.recv()  # hello
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
                while True:
                    left = until - time.time()
                    if left <= 0:
                        out["still open at the end"] += 1
                        break
                    await asyncio.wait_for(ws.recv(), timeout=left)  # (ready, then the error message before the close)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason.split(":", 1)[0] if exc.rcvd is not None else ""
                out[f"{code} {reason}".strip() if code else "closed without a code"] += 1
                held.append(time.time() - t0)
            except asyncio.TimeoutError:
                out["still open at the end"] += 1
            finally:
                ws.transport.abort()

    await asyncio.gather(*(one(i) for i in range(n)))


async def _churn(url: str, rate: float, until: float, out: "collections.Counter[str]") -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    async def one() -> None:
        try:
            async with connect(url, compression=None, open_timeout=30) as ws:
                await ws.recv()  # hello
            out["1000 (the attacker closed)" if ws.close_code == 1000 else f"{ws.close_code} {(ws.close_reason or '').split(':', 1)[0]}".strip()] += 1
        except InvalidStatus as exc:
            out[f"HTTP {exc.response.status_code}"] += 1
        except ConnectionClosed as exc:
            out[f"{exc.rcvd.code if exc.rcvd else 'no code'} (server)"] += 1
        except Exception as exc:  # (OSError, TimeoutError, a handshake the server dropped: InvalidMessage)
            out[f"failed ({type(exc).__name__})"] += 1

    tasks = set()
    t0 = time.time()
    k = 0
    while time.time() < until:
        k += 1
        due = t0 + k / rate
        await asyncio.sleep(max(0.0, due - time.time()))
        t = asyncio.ensure_future(one())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)


def _attacker(port: int, url: str, args: Dict[str, Any], start: float, until: float, queue: Any) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker holds ~1,300 descriptors

    async def main() -> Dict[str, Any]:
        await asyncio.sleep(max(0.0, start - time.time()))
        res: Dict[str, Any] = {k: collections.Counter() for k in ("half_open", "idle", "churn")}
        held: Dict[str, List[float]] = {"half_open": [], "idle": []}
        t_cpu = time.process_time()
        jobs = []
        if args["half_open"]:
            jobs.append(_half_open(port, args["half_open"], args["half_open_renew"], until, res["half_open"], held["half_open"]))
        if args["idle"]:
            jobs.append(_idle(url, args["idle"], until, res["idle"], held["idle"]))
        if args["churn_rate"]:
            jobs.append(_churn(url, args["churn_rate"], until, res["churn"]))
        await asyncio.gather(*jobs)
        out = {k: dict(v) for k, v in res.items()}
        out["held_p50_s"] = {k: (float(np.median(v)) if v else None) for k, v in held.items()}
        out["cpu"] = time.process_time() - t_cpu
        return out

    queue.put(asyncio.run(main()))


# --------------------------------------------------------------------------- one run
def start_server(args: argparse.Namespace) -> "tuple[subprocess.Popen[str], str]":
    prof = ["-m", "cProfile", "-o", args.profile_server] if args.profile_server else []
    cmd = [sys.executable, *prof, "-m", "supermel", "serve", "--port", "0", "--no-page", "--quiet", "--max-clients", str(args.max_clients),
           "--max-per-address", str(args.max_per_address), "--idle-timeout", f"{args.idle_timeout:g}"]  # fmt: skip
    for k, v in bench.CORE.items():
        cmd += [f"--{k.replace('_', '-')}", f"{v:g}" if isinstance(v, float) else str(v)]
    env = dict(os.environ, PYTHONPATH=(args.server_src or os.path.join(bench.ROOT, "src")) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=bench.ROOT)
    url = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            url = line.split("listening on ", 1)[1].split(";")[0].strip()
        if "threads:" in line:
            break
    if not url:
        proc.kill()
        raise RuntimeError(f"the server did not start ({' '.join(cmd)}): exit {proc.wait()}")
    proc.command = " ".join(cmd[1:])  # type: ignore[attr-defined]
    return proc, url


def run(args: argparse.Namespace) -> Dict[str, Any]:
    proc, url = start_server(args)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    try:
        os.environ.update(bench._THREAD_ENV)
        ctx = multiprocessing.get_context("spawn")
        qa, qh = ctx.Queue(), ctx.Queue()
        t_attack = time.time() + 2.0
        t_honest = t_attack + args.attack_lead
        until = t_honest + args.ramp + args.seconds + 1.0
        attacker = ctx.Process(target=_attacker, args=(port, url, vars(args), t_attack, until, qa), daemon=True)
        attacker.start()
        kw = dict(url=url, ids=list(range(args.honest)), n_clients=args.honest, seconds=args.seconds, chunk_s=0.02, rate=16000, fmt="float32",
                  ramp=args.ramp, t0_wall=t_honest, seed=17)  # fmt: skip
        honest = ctx.Process(target=bench._worker, args=(kw, qh), daemon=True)
        honest.start()
        win = (t_honest + args.ramp + 1.0, t_honest + args.ramp + args.seconds - 0.5)
        marks = []
        for t in win:
            time.sleep(max(0.0, t - time.time()))
            marks.append((time.perf_counter(), bench.cpu_seconds(proc.pid), bench.machine_busy_seconds(), bench.cpu_seconds(attacker.pid), bench.cpu_seconds(honest.pid)))
        mid = bench.server_stats(port)
        h = qh.get(timeout=args.seconds + args.ramp + 300)
        a = qa.get(timeout=args.seconds + args.ramp + 300)
        honest.join(30)
        attacker.join(30)
        time.sleep(0.5)
        final = bench.server_stats(port)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    (ta, sa, ma, aa, ha), (tb, sb, mb, ab, hb) = marks
    wall = tb - ta
    clients = h["clients"]
    lat = np.concatenate([c["lat"] for c in clients]) if clients else np.zeros(0)
    lost = exact = 0
    for c in clients:
        expected = bench.offline_frames(int(c["totals"]["resampled"]) if c["totals"] else int(round(c["sent"] * bench.CORE["sr"] / 16000)))
        lost += c["lost"] + max(0, expected - c["end_index"])
        exact += int(c["totals"] is not None and c["frames"] == expected and c["totals"]["frames"] == expected)
    errors = dict(collections.Counter(c["error"] for c in clients if c["error"]))
    return dict(
        honest=args.honest, seconds=args.seconds, chunks=int(lat.size), p50_ms=bench._ms(lat, 50), p99_ms=bench._ms(lat, 99),
        max_ms=float(lat.max() * 1e3) if lat.size else None, lost=lost, exact=exact, errors=errors,
        server_cpu=(sb - sa) / wall, attacker_cpu=(ab - aa) / wall, honest_cpu=(hb - ha) / wall,
        others_cpu=max(0.0, (mb - ma) - (sb - sa) - (ab - aa) - (hb - ha)) / wall,
        attackers={k: a[k] for k in ("half_open", "idle", "churn")}, held_p50_s=a["held_p50_s"],
        server={k: final.get(k) for k in ("close_codes", "errors", "refused", "half_open_dropped", "handshake_timeouts", "tcp_connections", "fd_limit", "connections")},
        server_mid={k: mid.get(k) for k in ("tcp_open", "half_open", "clients", "streams", "fds_open")}, command=proc.command,  # type: ignore[attr-defined]
    )  # fmt: skip


# --------------------------------------------------------------------------- report
def _codes(d: Dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"


def section(r: Dict[str, Any], args: argparse.Namespace, command: str) -> str:
    f = bench._f
    ok_p99 = r["p99_ms"] is not None and r["p99_ms"] <= P99_LIMIT * 1e3
    ho, idle, churn = r["attackers"]["half_open"], r["attackers"]["idle"], r["attackers"]["churn"]
    lines = [
        SECTION,
        "",
        f"{r['honest']} honest clients streaming in real time (the load of the section above: 20 ms chunks at 16 kHz, out of step) for "
        f"{r['seconds']:g} s while, from the same address (127.0.0.1), {args.half_open} half-open connections (an unfinished HTTP request, "
        f"reopened {args.half_open_renew:g} s after the server drops one), {args.idle} idle connections (`start`, then no audio; reconnecting when "
        f"closed) and a churn of {args.churn_rate:g} connect/`hello`/disconnect cycles per second. Method: the docstring of `benchmarks/serve_attack.py`.",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- **Date**: {datetime.now(timezone.utc).isoformat(timespec='seconds')}; **machine**: {bench.machine()}, shared: the server, the honest "
        f"clients and the attackers run on the same cores, and other jobs ran on this machine at the same time (their CPU is in the table; load "
        f"average (1 min) {r['load_before'][0]:.2f} before the run, {r['load_after'][0]:.2f} after; waited {r['waited_s']:g} s for a quieter machine first)",
        f"- **Server**: `{r['command']}` - the defaults (`--max-half-open 2048`, `--handshake-timeout 5`, `--full-gc-interval 600`: full garbage collections only when idle or every 10 min) except `--max-per-address "
        f"{args.max_per_address}` (every client here is 127.0.0.1; the default cap of 64 per address would refuse the honest clients behind "
        f"the attackers: raise it this way for any load test from one machine), `--max-clients {args.max_clients}` and `--idle-timeout {args.idle_timeout:g}`",
        "",
        "| honest clients | chunks | round trip p50 | p99 | max | frames lost | frames = offline | honest errors | server CPU | honest clients' CPU | attackers' CPU | other processes' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['honest']} | {r['chunks']} | {f(r['p50_ms'])} ms | {f(r['p99_ms'])} ms | {f(r['max_ms'], '{:.1f}')} ms | {r['lost']} | {r['exact']}/{r['honest']} "
        f"| {_codes(r['errors']) if r['errors'] else 0} | {r['server_cpu']:.2f} | {r['honest_cpu']:.2f} | {r['attacker_cpu']:.2f} | {r['others_cpu']:.2f} |",
        "",
        "| attacker | connections ended by (as the attacker saw it) | median time held | documented |",
        "|---|---|---|---|",
        f"| half-open ({args.half_open}) | {_codes(ho)} | {f(r['held_p50_s']['half_open'])} s | dropped without a response: the oldest past `--max-half-open`, "
        "or at `--handshake-timeout` (`reset`/`eof`) |",
        f"| idle `start`-only ({args.idle}) | {_codes(idle)} | {f(r['held_p50_s']['idle'])} s | 1008 `idle` after `--idle-timeout` |",
        f"| churn ({args.churn_rate:g}/s) | {_codes(churn)} | - | 1000, closed by the attacker after `hello` |",
        "",
        f"Server counters (`/stats` at the end): close codes {_codes(r['server']['close_codes'] or {})}; errors {_codes(r['server']['errors'] or {})}; "
        f"refused before the upgrade {_codes(r['server']['refused'] or {})}; half-open connections dropped past `--max-half-open` {r['server']['half_open_dropped']}, at `--handshake-timeout` {r['server'].get('handshake_timeouts')}; "
        f"TCP connections accepted {r['server']['tcp_connections']}; descriptor limit {r['server']['fd_limit']}. "
        f"Mid-run: {_codes(r['server_mid'])}.",
        "",
        "| acceptance figure | measured | target | met |",
        "|---|---|---|---|",
        f"| honest p99 round trip | {f(r['p99_ms'])} ms | <= {P99_LIMIT * 1e3:g} ms | {'yes' if ok_p99 else '**no**'} |",
        f"| honest frames lost | {r['lost']} ({r['exact']}/{r['honest']} clients with every frame, errors: {_codes(r['errors']) if r['errors'] else 0}) | 0 | "
        f"{'yes' if r['lost'] == 0 and not r['errors'] and r['exact'] == r['honest'] else '**no**'} |",
    ]
    for kind, name, want in (("idle", "idle attackers", "1008 `idle` (or 1013 `server-full` when the server is full)"),
                             ("half_open", "half-open attackers", "dropped without a response (reset/eof)"),
                             ("churn", "churn cycles", "1000 after `hello` (or 1013 `server-full`)")):  # fmt: skip
        got = r["attackers"][kind]
        other = {k: v for k, v in got.items() if k not in DOCUMENTED[kind]}
        lines.append(f"| {name}: every ending documented | {_codes(got)} | {want} | {'yes' if not other else '**no**: ' + _codes(other)} |")
    if r["others_cpu"] > 0.3:
        symptoms = []
        if any("behind" in str(e) for e in r["errors"]):
            symptoms.append("it fell behind real-time clients (1013 `behind` past `--max-backlog` 2 s)")
        if any("InvalidMessage" in k for a in r["attackers"].values() for k in a):
            symptoms.append("it could not finish some handshakes within `--handshake-timeout` (`InvalidMessage`)")
        if (r["server"]["errors"] or {}).get("server-full"):
            symptoms.append("it filled up with connections it had no time to serve (`server-full`)")
        lines += ["", f"**This run does not measure the defences alone**: other jobs on this shared machine used {r['others_cpu']:.2f} of its "
                      f"{os.cpu_count()} cores during it, and the server got {r['server_cpu']:.2f} of a core (it is single-threaded: it could use one)"
                      + (": " + "; ".join(symptoms) if symptoms else "") + ". Rerun on a quiet machine (`--wait-quiet 600`) for the acceptance figures."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--attack", action="store_true", help="(the flag that selects this mode in benchmarks/serve.py)")
    p.add_argument("--honest", type=int, default=64, help="honest real-time clients (default 64)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds the honest clients stream (default 60)")
    p.add_argument("--ramp", type=float, default=2.0, help="honest clients join over this many seconds (default 2)")
    p.add_argument("--half-open", type=int, default=1000, help="half-open connections held (default 1000)")
    p.add_argument("--half-open-renew", type=float, default=1.0, help="seconds before a dropped half-open connection is reopened (default 1)")
    p.add_argument("--idle", type=int, default=256, help="idle start-only connections (default 256)")
    p.add_argument("--churn-rate", type=float, default=200.0, help="connect/disconnect cycles per second (default 200)")
    p.add_argument("--attack-lead", type=float, default=2.0, help="seconds the attack runs before the honest clients join (default 2)")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="the server's --idle-timeout (default 10)")
    p.add_argument("--max-per-address", type=int, default=4096, help="the server's --max-per-address (default 4096: every client is 127.0.0.1)")
    p.add_argument("--max-clients", type=int, default=1024, help="the server's --max-clients (default 1024)")
    p.add_argument("--server-src", metavar="DIR", help="run the server from this source tree (its src/ folder) instead of this checkout's: A/B of server changes")
    p.add_argument("--profile-server", metavar="FILE", help="run the server under cProfile, writing FILE (slows it: for finding where the time goes)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S", help="first wait (at most S seconds) until other processes use under 0.2 cores over 5 s")
    p.add_argument("--markdown-file", metavar="FILE", help=f"(re)write the section {SECTION!r} of this file")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    waited = bench.wait_quiet(args.wait_quiet)
    command = "python benchmarks/serve.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    print(f"serve attack: {args.honest} honest clients, {args.half_open} half-open, {args.idle} idle, {args.churn_rate:g} churn/s, {args.seconds:g} s ...",
          file=sys.stderr, flush=True)  # fmt: skip
    load_before = os.getloadavg()
    r = run(args)
    r.update(waited_s=round(waited, 1), load_before=load_before, load_after=os.getloadavg())
    text = section(r, args, command.strip())
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(r, f, indent=1, default=str)
    if args.markdown_file:
        saved = bench.SECTION
        bench.SECTION = SECTION  # write_section replaces the section of that title
        try:
            bench.write_section(args.markdown_file, text)
        finally:
            bench.SECTION = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
