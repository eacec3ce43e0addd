"""The report: Markdown sections (and the BENCHMARKS.md markers they go between), the chart."""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ._markdown import _header_md, _md_cell
from .floor import floor_cell, floor_header, floor_seconds, floors
from .harness import _fmt_time
from .runner import Results
from .workloads import targets


# =========================================================================== Markdown
def _fmt_err(e: Optional[float]) -> str:
    if e is None:
        return "-"
    if e == 0.0:
        return "0"
    return f"{e:.1e}"


_GROUP_TITLES = {"offline": "Offline", "streaming": "Streaming (per push)", "front end": "Front ends"}


def _peers_md(peers: List[Dict[str, Any]]) -> List[str]:
    lines = ["| peer | version | configured as close to librosa as it allows | used in |", "|---|---|---|---|"]
    for p in peers:
        ver = p["version"] if p["status"] == "installed" else f"**missing**: {p.get('reason', '')}"
        lines.append(f"| {p['name']} | {_md_cell(ver)} | {_md_cell(p['configured'])} | {p['used_in']} |")
    return lines


def _rows_md(rows: List[Dict[str, Any]], group: str, meta: Optional[Dict[str, Any]] = None) -> List[str]:
    """One table row per peer; with ``meta`` (the CPU tables) the arithmetic floor: ``x floor``
    (the row's median / the floor of its workload at its thread count) on every timed row, the
    floor itself on the first row of each workload and thread count (:mod:`.floor`)."""
    tput = group == "offline"
    table = floors() if meta is not None else {}
    cols = ["workload", "threads", "peer", "median" if group != "streaming" else "p50 / push", "p99", "n", "x supermel"]
    cols += ["x floor"] if meta is not None else []
    cols += ["audio h/s"] if tput else []
    cols += ["rel. error"]
    cols += ["arithmetic floor"] if meta is not None else []
    cols += ["notes"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    seen = set()
    for r in rows:
        floor_s = floor_seconds(r["workload"], meta, threads=r["threads"], table=table) if meta is not None else None
        key = (r["workload"], r["threads"])
        floor_txt = floor_cell(r["workload"], meta, threads=r["threads"], table=table) if meta is not None and key not in seen else ""
        seen.add(key)
        if r["status"] != "ok" or r.get("median_s") is None:
            cells = [r["workload"], str(r["threads"]), r["peer"], f"**{r['status']}**", "", "", ""] + ([""] if meta is not None else [])
            cells += ([""] if tput else []) + [""] + ([floor_txt] if meta is not None else []) + [_md_cell(r.get("reason", ""))]
        else:
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
            err = _fmt_err(r.get("rel_err"))
            cells = [r["workload"], str(r["threads"]), r["peer"], _fmt_time(r["median_s"]), _fmt_time(r["p99_s"]), str(r["n"]), ratio]
            if meta is not None:
                cells.append(f"{r['median_s'] / floor_s:.1f}x" if floor_s else "-")
            if tput:
                cells.append(f"{r['audio_h_per_s']:.1f}" if r.get("audio_h_per_s") else "-")
            cells.append(err)
            if meta is not None:
                cells.append(_md_cell(floor_txt))
            cells.append(_md_cell(r.get("notes", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _targets_md(tgts: List[Dict[str, Any]]) -> List[str]:
    lines = ["| acceptance figure (CPU, one thread) | measured | target | met |", "|---|---|---|---|"]
    for t in tgts:
        if t["value"] is None:
            lines.append(f"| {t['figure']} | not measured: {_md_cell(t.get('missing', ''))} | {_bound(t)} | - |")
            continue
        val = f"{t['value']:.2f}x" if t["kind"] == "speedup" else f"{t['value']:.3f}"
        if t.get("p50_p99"):
            s, p = t["p50_p99"]["supermel"], t["p50_p99"]["peer"]
            val += f" (p50/p99 {_fmt_time(s[0])}/{_fmt_time(s[1])} vs {_fmt_time(p[0])}/{_fmt_time(p[1])})"
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['figure']} | {val} | {_bound(t)} | {met} |")
    return lines


def _bound(t: Dict[str, Any]) -> str:
    if t["bound"] is None:
        return "(reported)"
    return f">= {t['bound']}x faster" if t["kind"] == "speedup" else f"<= {t['bound']}"


def render_markdown(results: Results, device: str, chart: Optional[str] = None) -> str:
    """The results section for one device: header, peers, acceptance figures, tables, chart."""
    rows = [r for r in results.rows if r["device"] == device]
    title = "CPU" if device == "cpu" else "GPU (CUDA)"
    lines = [f"### {title} results", ""]
    skipped = [s for s in results.skipped if s["device"] == device]
    if skipped and not rows:
        lines += [f"Not run: {skipped[0]['reason']}.", ""]
        return "\n".join(lines)
    lines += _header_md(results.meta, device)
    if device == "cpu":
        lines += [
            f"- **Native extension**: {results.meta.get('native', 'unknown')}; supermel's rows time the route the process runs "
            "(the native core where built and enabled) and each says which ran (its output compared bit for bit with the same call "
            "under `SUPERMEL_NATIVE=0`: the routes round differently)",
            floor_header(results.meta) + "; `x floor` = the row's median / its workload's floor",
        ]
    lines += [""]
    if device == "cpu":
        lines += ["#### Acceptance figures", ""] + _targets_md(targets(results.rows)) + [""]
    lines += ["#### Peers", ""] + _peers_md(results.peers) + [""]
    for group, gtitle in _GROUP_TITLES.items():
        grows = [r for r in rows if r["group"] == group]
        if grows:
            lines += [f"#### {gtitle}", ""] + _rows_md(grows, group, results.meta if device == "cpu" else None) + [""]
    if chart:
        lines += [f"![median time per workload, log scale]({chart})", ""]
    return "\n".join(lines)


def render_full_markdown(results: Results, chart: Optional[str] = None) -> str:
    if results.meta.get("suite") == "native":
        from .native import render_native_markdown

        return render_native_markdown(results)
    devices = [d for d in results.meta.get("devices", ["cpu"])]
    return "\n".join(render_markdown(results, d, chart) for d in devices)


def _sections(results: Results, chart: Optional[str]) -> List[Tuple[str, str]]:
    """``(marker key, body)`` of each BENCHMARKS.md section a run rewrites: one per device, or
    ``native`` for the native-core suite (``--suite native``), which has its own section."""
    if results.meta.get("suite") == "native":
        from .native import render_native_markdown

        return [("native", render_native_markdown(results))]
    return [(d, render_markdown(results, d, chart)) for d in results.meta.get("devices", ["cpu"])]


# =========================================================================== BENCHMARKS.md sections
_BEGIN = "<!-- supermel-bench:{device}:begin -->"
_END = "<!-- supermel-bench:{device}:end -->"

_TEMPLATE = """# supermel benchmarks

Regenerate with `python benchmarks/run.py` (see benchmarks/README.md).

## CPU

{cpu_begin}
(no run yet)
{cpu_end}

## GPU

{cuda_begin}
(no run yet)
{cuda_end}
"""


def update_markdown_file(path: str, results: Results, chart: Optional[str] = None) -> None:
    """(Re)write the results sections of ``path`` between the ``supermel-bench`` markers.

    Each device of the run replaces its own section (CPU and GPU runs are kept
    apart; a ``--suite native`` run has the section ``native``); a file without
    markers gets them appended; a missing file is created.
    """
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = _TEMPLATE.format(
            cpu_begin=_BEGIN.format(device="cpu"), cpu_end=_END.format(device="cpu"),
            cuda_begin=_BEGIN.format(device="cuda"), cuda_end=_END.format(device="cuda"),
        )
    for device, body in _sections(results, chart):
        begin, end = _BEGIN.format(device=device), _END.format(device=device)
        block = f"{begin}\n{body}\n{end}"
        if begin in text and end in text:
            pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
            text = pat.sub(lambda _m: block, text, count=1)
        else:
            text = text.rstrip("\n") + f"\n\n{block}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# =========================================================================== chart
def write_chart(results: Results, path: str) -> Optional[str]:
    """Horizontal bars of median time (log scale) per workload and peer, p99 as a tick; returns None on success or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return 'matplotlib is not installed (pip install "supermel[bench]"): no chart'
    ok = [r for r in results.rows if r.get("median_s")]
    if not ok:
        return "no timed rows: no chart"
    groups: List[Tuple[str, List[Dict[str, Any]]]] = []
    for r in ok:
        label = f"{r['workload']} [{r['device']}, {r['threads']} thr]"
        if not groups or groups[-1][0] != label:
            groups.append((label, []))
        groups[-1][1].append(r)
    peers = list(dict.fromkeys(r["peer"] for r in ok))
    cmap = plt.get_cmap("tab10")
    color = {p: cmap(i % 10) for i, p in enumerate(peers)}
    n_bars = sum(len(g) for _, g in groups)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.22 * (n_bars + len(groups))))
    y, ticks, labels = 0.0, [], []
    seen = set()
    for label, grows in groups:
        start = y
        for r in grows:
            kw = {"label": r["peer"]} if r["peer"] not in seen else {}
            seen.add(r["peer"])
            ax.barh(y, r["median_s"], height=0.8, color=color[r["peer"]], **kw)
            ax.plot([r["p99_s"]], [y], marker="|", color="black", markersize=8)
            y += 1
        ticks.append((start + y - 1) / 2)
        labels.append(label)
        y += 0.8
    ax.set_xscale("log")
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median time per call / push (s, log scale); | marks p99")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"supermel benchmarks, {results.meta['date'][:10]}, {results.meta['cpu']}" + (f" / {results.meta['gpu']}" if results.meta.get("gpu") else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
