"""``supermel bench``: the command line (``supermel.bench.main``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from .floor import floor_seconds, floors
from .harness import Settings
from .native import core_peak, native_status, native_workloads
from .peers import peer_table
from .report import render_full_markdown, update_markdown_file, write_chart
from .runner import run_suite, supermel_errors
from .workloads import default_workloads


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="supermel bench",
        description="Benchmark supermel against librosa, naive torch and the other peers (median, p99, ratio, exactness).",
    )
    p.add_argument("--quick", action="store_true", help="short budgets: checks the harness end to end in under a minute")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="threads per row (default 1); offline workloads also get an all-cores row")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="cpu", help="cpu (default), cuda, or all")
    p.add_argument("--only", metavar="SUBSTRING", help="run only the workloads whose name contains this")
    p.add_argument("--out", metavar="DIR", help="write results.json, results.md and chart.png here")
    p.add_argument("--markdown-file", metavar="FILE", help="(re)write the results section of this file (e.g. BENCHMARKS.md)")
    p.add_argument("--label", metavar="TEXT", help="a line shown above the results (e.g. 'development run, machine busy')")
    p.add_argument("--budget", type=float, metavar="SECONDS", help="override the timing budget per workload")
    p.add_argument("--suite", choices=("default", "native"), default="default",
                   help="default: every workload and peer; native: the native core's acceptance table (issue 19: both supermel routes, "
                   "the peers, ratios and the arithmetic floor; CPU)")
    p.add_argument("--peak-gflops", type=float, metavar="G", help="one core's float32 peak for the arithmetic floor columns (default: estimated from /proc/cpuinfo)")
    p.add_argument("--list", action="store_true", help="list the workloads and peers, then exit")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``supermel bench``: run the suite, print Markdown, write the files asked for.

    Returns 0, or 1 when a row of supermel's own (any peer whose name starts
    with "supermel": the module, the function, the CUDA graph, the twins)
    failed with an error: a broken harness or library, as opposed to a missing
    peer or a supermel API that has not landed. Those rows are printed last, on
    stderr, after the tables.
    """
    args = _parser().parse_args(argv)
    if args.threads <= 0:
        _parser().error(f"--threads {args.threads} must be a positive integer")
    native = args.suite == "native"
    if native and args.device != "cpu":
        _parser().error("--suite native runs on the CPU only (the native core is a CPU kernel); leave out --device")
    suite = native_workloads() if native else None  # None: run_suite's default workloads
    if args.list:
        for w in suite or default_workloads():
            print(f"{w.group:<10} {w.name}  (devices: {', '.join(w.devices)})")
        for p in peer_table():
            print(f"peer {p['name']:<20} {p['version'] or 'missing: ' + p.get('reason', '')}")
        return 0
    settings = Settings.quick() if args.quick else Settings()
    if args.budget is not None:
        settings.budget_s = args.budget
    devices = ("cpu", "cuda") if args.device == "all" else (args.device,)
    if not native and "cpu" in devices and not _native_on():
        built, why = native_status()
        print(f"supermel bench: the native core is not in use ({'switched off: SUPERMEL_NATIVE=0' if built else why}): "
              "supermel's CPU rows time the torch/numpy route", file=sys.stderr)
    t0 = time.perf_counter()
    results = run_suite(suite, settings=settings, threads=args.threads, devices=devices, only=args.only)
    peak, how = core_peak(args.peak_gflops)
    results.meta.update(native=native_status()[1], core_peak_flops=peak, core_peak_how=how)
    table = floors()
    for r in results.rows:  # results.json: each CPU row's floor (its workload's flops / its threads' peak)
        if r["device"] == "cpu":
            r["floor_s"] = floor_seconds(r["workload"], results.meta, threads=r["threads"], table=table)
    if native:
        results.meta["suite"] = "native"
    results.meta["command"] = "supermel bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results.meta["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.label:
        results.meta["label"] = args.label
    chart_rel = None
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        chart_path = os.path.join(args.out, "chart.png")
        why = write_chart(results, chart_path)
        if why:
            print(why, file=sys.stderr)
        else:
            chart_rel = chart_path
        with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results.to_json(), f, indent=1, default=str)
        with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
            f.write(render_full_markdown(results, "chart.png" if chart_rel else None))
    text = render_full_markdown(results, chart_rel)
    if args.markdown_file:
        rel = os.path.relpath(chart_rel, os.path.dirname(os.path.abspath(args.markdown_file))) if chart_rel else None
        update_markdown_file(args.markdown_file, results, rel)
    print(text, flush=True)
    print(f"\n(wall time {results.meta['wall_s']} s)", file=sys.stderr)
    failed = supermel_errors(results.rows)
    if failed:
        _print_failures(failed)
    return 1 if failed else 0


def _native_on() -> bool:
    try:
        from supermel import _native  # type: ignore[attr-defined]
    except ImportError:
        return False
    return bool(_native.enabled())


def _print_failures(rows: List[Dict[str, Any]]) -> None:
    """The failed supermel rows, last in the log (stdout flushed first, so they stay last when both are captured)."""
    sys.stdout.flush()
    lines = [f"\nsupermel bench: FAILED: {len(rows)} supermel row{'s' if len(rows) > 1 else ''} in error:"]
    for r in rows:
        lines.append(f"  [{r['device']}] {r['workload']}, {r['threads']} thread{'s' if r['threads'] > 1 else ''}: {r['peer']}: {r.get('reason', '')}")
    print("\n".join(lines), file=sys.stderr, flush=True)
