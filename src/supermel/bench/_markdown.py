"""Markdown pieces shared by the benchmark reports (report.py, native.py): table cells and the run's header."""

from __future__ import annotations

from typing import Any, Dict, List


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")



def _header_md(meta: Dict[str, Any], device: str) -> List[str]:
    v = meta["versions"]
    lines = [
        f"- **Date**: {meta['date']}",
        f"- **Machine**: {meta['cpu']}, {meta['cores']} cores ({meta['cores_available']} available), {meta['platform']}",
    ]
    if device == "cuda" and meta.get("gpu"):
        lines.append(f"- **GPU**: {meta['gpu']} (CUDA {meta.get('cuda')}); times are device-side, from CUDA events, one synchronisation per call")
    envs = ", ".join(f"{k}={val}" for k, val in meta["thread_env"].items()) or "none set"
    lines += [
        f"- **Threads**: {meta['threads']} per row unless the row says otherwise (all cores = {meta['all_threads']}); "
        f"torch default {meta['torch_threads_default']} intra-op, {meta['torch_interop_threads']} inter-op; env: {envs}",
        f"- **BLAS**: {'; '.join(meta['blas']) or 'threadpoolctl not installed'}",
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- **Repetitions**: after the exactness call, warm-up of at least {meta['settings']['warmup']} call(s) and "
        f"{meta['settings']['warmup_s']} s per peer, then about {meta['settings']['budget_s']} s per workload round-robin across peers "
        f"(at least {meta['settings']['min_rounds']} rounds, stopped after {meta['settings']['max_workload_s']} s); "
        "garbage collector off while timing",
    ]
    if meta.get("label"):
        lines.insert(0, f"> **{meta['label']}**")
        lines.insert(1, "")
    return lines
