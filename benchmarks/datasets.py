#!/usr/bin/env python
"""Featurising a corpus end to end: hours of audio per minute, decode + features + write.

Compares, on one generated corpus (FLAC and WAV, a few seconds each, speech-like):

* a librosa loop: ``librosa.load(sr=None)`` + ``librosa.feature.melspectrogram`` + ``np.save``;
* ``supermel batch`` with the local engine, 1 and 2 worker processes (one torch thread each), and
  2 processes writing ``.npz`` shards of 250 inputs instead of one file per input;
* ``supermel batch --engine ray`` (a local Ray instance started by the command), whose fixed
  costs (start, first result, shutdown) are reported separately from its steady rate.

Every run is a fresh process writing one ``.npy`` per input into an empty folder. Two times are
reported: *processing* -- from listing the files to the last output written (supermel: the
manifest's ``elapsed_s``, which includes starting the worker processes or Ray and its shutdown;
librosa: the loop, listing included) -- and the *whole command*, interpreter start and imports
included. Hours of audio per minute use the processing time. librosa's defaults throughout
(``n_fft=2048``, ``hop_length=512``, ``n_mels=128``, each file at its own rate). A sample of the
outputs is checked against librosa's.

Network rule: Ray must not bind a routable address, so the Ray runs happen only inside a
loopback-only network namespace; run the whole script there (as root)::

    unshare -n sh -c 'ip link set lo up && python benchmarks/datasets.py'

Outside one, the Ray rows are left out (and say why). Options: ``--files N`` (default 2000),
``--repeats R`` (default 3 rounds, each run once per round; the best is reported), ``--seconds LO,HI``
(clip lengths, default ``2,4``), ``--json PATH``, ``--keep DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

LIBROSA_LOOP = r"""
import json, sys, time, numpy as np, librosa
from pathlib import Path
t = time.perf_counter()
src, out = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
first = None
for p in files:
    y, sr = librosa.load(str(p), sr=None)
    S = librosa.feature.melspectrogram(y=y, sr=sr)
    dst = out / p.relative_to(src).with_suffix(".npy")
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.save(dst, S)
    first = first or time.perf_counter() - t
elapsed = time.perf_counter() - t
print(json.dumps({"elapsed_s": elapsed, "engine": {"first_result_s": first, "run_s": elapsed, "batch_size": 1}}))
"""


def loopback_only() -> bool:
    """Only an up loopback interface in this network namespace."""
    try:
        names = {ln.split(":")[0].strip() for ln in Path("/proc/net/dev").read_text().splitlines()[2:]}
        if names != {"lo"}:
            return False
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        return True
    except OSError:
        return False


def make_corpus(root: Path, n: int, seed: int = 0, seconds_range: Tuple[float, float] = (2.0, 4.0)) -> Dict[str, Any]:
    """``n`` speech-like clips: slices of the bundled speech (repeated for clips longer than it),
    ``seconds_range`` long, gain and noise, mostly 16 kHz (some 22.05 and 44.1 kHz), half FLAC
    half 16-bit WAV, in 40 speaker folders."""
    import soundfile as sf

    import supermel
    from supermel.audio import resample

    speech, sr0 = supermel.audio.example_audio()
    speech = np.tile(speech, int(np.ceil(seconds_range[1] * sr0 / speech.size)) + 1)
    rng = np.random.default_rng(seed)
    seconds = 0.0
    formats = {"flac": 0, "wav": 0}
    for k in range(n):
        dur = rng.uniform(*seconds_range)
        start = rng.integers(0, speech.size - int(dur * sr0))
        y = speech[start : start + int(dur * sr0)] * rng.uniform(0.3, 1.0)
        y = y + rng.standard_normal(y.size).astype(np.float32) * 0.01
        sr = int(rng.choice([16000, 16000, 16000, 16000, 22050, 44100]))
        if sr != sr0:
            y = resample(y.astype(np.float32), orig_sr=sr0, target_sr=sr)
        ext = "flac" if k % 2 == 0 else "wav"
        path = root / f"spk{k % 40:02d}" / f"utt{k:05d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.clip(y, -1, 1), sr, subtype="PCM_16")
        seconds += y.size / sr
        formats[ext] += 1
    return {"files": n, "hours": seconds / 3600.0, "formats": formats}


def timed(cmd: List[str], env: Dict[str, str]) -> Tuple[float, str]:
    """Wall time of the whole command, and its standard output."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def check_sample(src: Path, out: Path, n: int = 20) -> float:
    """Largest relative error of supermel's outputs against librosa's on ``n`` files."""
    import librosa

    files = sorted(src.rglob("*.*"))[:: max(1, len(list(src.rglob("*.*"))) // n)][:n]
    worst = 0.0
    for p in files:
        y, sr = librosa.load(str(p), sr=None)
        want = librosa.feature.melspectrogram(y=y, sr=sr)
        got = np.load(out / p.relative_to(src).with_suffix(".npy"))
        worst = max(worst, float(np.linalg.norm(got - want) / np.linalg.norm(want)))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--keep", default=None, help="generate the corpus here and keep it")
    ap.add_argument("--seconds", default="2,4", help="clip lengths LO,HI in seconds (default 2,4: VCTK-like; 10,16: LibriSpeech-like)")
    opts = ap.parse_args()
    lo, hi = (float(v) for v in opts.seconds.split(","))

    work = Path(tempfile.mkdtemp(prefix="supermel-bench-datasets-"))
    src = Path(opts.keep) if opts.keep else work / "corpus"
    t = time.perf_counter()
    corpus = make_corpus(src, opts.files, seconds_range=(lo, hi))
    corpus["seconds_range"] = [lo, hi]
    corpus["generate_s"] = round(time.perf_counter() - t, 1)
    hours = corpus["hours"]
    print(f"corpus: {corpus['files']} files ({corpus['formats']}), {hours:.3f} h of audio, generated in {corpus['generate_s']} s", flush=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0")
    cli = [sys.executable, "-m", "supermel", "batch", str(src)]
    runs: Dict[str, Dict[str, Any]] = {
        "librosa loop": {"cmd": [sys.executable, "-c", LIBROSA_LOOP, str(src)], "threads": "1 process; numpy/BLAS default threads"},
        "supermel batch, 1 process": {"cmd": cli, "args": ["-q"], "threads": "1 process, 1 torch thread"},
        "supermel batch, 2 processes": {"cmd": cli, "args": ["--workers", "2", "-q"], "threads": "2 processes, 1 torch thread each"},
        "supermel batch, 2 processes, --shard-size 250": {"cmd": cli, "args": ["--workers", "2", "--shard-size", "250", "-q"],
                                                           "threads": "2 processes, 1 torch thread each"},
    }
    ray_note = ""
    if loopback_only():
        runs["supermel batch --engine ray (local instance)"] = {"cmd": cli, "args": ["--engine", "ray", "-q"], "threads": "2 actors (1 CPU, 1 torch thread each)"}
    else:
        ray_note = "Ray not run: this is not a loopback-only network namespace (run under `unshare -n`, see the docstring)"
        print(ray_note, flush=True)

    # Rounds: every run once per round, so that a change in the machine's load falls on all of them.
    walls: Dict[str, List[float]] = {name: [] for name in runs}
    procs: Dict[str, List[float]] = {name: [] for name in runs}
    engines: Dict[str, List[Dict[str, Any]]] = {name: [] for name in runs}
    loads: List[float] = []
    for r in range(opts.repeats):
        for name, run in runs.items():
            out = work / f"out-{r}"
            cmd = run["cmd"] + ([str(out)] + run.get("args", []) if run["cmd"] is cli else [str(out)])
            loads.append(os.getloadavg()[0])
            wall, stdout = timed(cmd, env)
            walls[name].append(wall)
            man = out / "supermel_manifest.json"
            if man.exists():  # supermel: listing, planning, workers' start, decode, features, writes, manifest
                m = json.loads(man.read_text())
                assert m["counts"]["done"] == corpus["files"], m["counts"]
                engines[name].append(dict(m["engine"], elapsed_s=m["elapsed_s"]))
                procs[name].append(float(m["elapsed_s"]))
            else:  # the librosa loop: listing, decode, features, writes
                done = json.loads(stdout.strip().splitlines()[-1])
                procs[name].append(float(done["elapsed_s"]))
                engines[name].append(done["engine"])
            if r == opts.repeats - 1 and run["cmd"] is cli and "--shard-size" not in run.get("args", []):
                run["max_rel_err_vs_librosa"] = check_sample(src, out)
            shutil.rmtree(out, ignore_errors=True)
            print(f"round {r + 1}: {name}: {procs[name][-1]:.2f} s processing, {wall:.2f} s command", flush=True)
    results: List[Dict[str, Any]] = []
    for name, run in runs.items():
        best = int(np.argmin(procs[name]))
        row = {"run": name, "threads": run["threads"], "processing_s": [round(w, 2) for w in procs[name]], "best_s": round(procs[name][best], 2),
               "hours_per_min": round(hours / (procs[name][best] / 60.0), 3), "files_per_s": round(corpus["files"] / procs[name][best], 1),
               "command_wall_s": [round(w, 2) for w in walls[name]], "hours_per_min_command": round(hours / (min(walls[name]) / 60.0), 3)}
        if engines[name]:
            row["engine"] = e = engines[name][best]
            if e.get("first_result_s") is not None and e.get("run_s") and "--shard-size" not in run.get("args", []):  # the rate once the workers run
                first = int(e.get("batch_size") or 1)  # the first result holds a task's (or Ray batch's) files
                steady = (corpus["files"] - first) / max(e["run_s"] - e["first_result_s"], 1e-9)
                row["steady_files_per_s"] = round(steady, 1)
                row["steady_hours_per_min"] = round(steady * hours * 60.0 / corpus["files"], 3)
        if "max_rel_err_vs_librosa" in run:
            row["max_rel_err_vs_librosa"] = float(f"{run['max_rel_err_vs_librosa']:.2e}")
        results.append(row)

    base, base_cmd = results[0]["hours_per_min"], results[0]["hours_per_min_command"]
    for row in results:
        row["vs_librosa"] = round(row["hours_per_min"] / base, 2)
        row["vs_librosa_command"] = round(row["hours_per_min_command"] / base_cmd, 2)
    report = {
        "corpus": corpus,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_1min_before_runs": [round(x, 2) for x in loads]},
        "versions": _versions(),
        "results": results,
        "note": ray_note,
    }
    print(_table(report))
    if opts.json:
        Path(opts.json).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _versions() -> Dict[str, str]:
    out = {}
    for mod in ("supermel", "torch", "librosa", "numpy", "soundfile", "ray"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = "not installed"
    return out


def _table(report: Dict[str, Any]) -> str:
    lines = [
        "| run | threads | processing (s): best (all runs) | files/s | hours of audio / min | vs librosa loop | whole command (s) | hours / min, whole command | vs librosa, whole command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['run']} | {r['threads']} | {r['best_s']} ({', '.join(map(str, r['processing_s']))}) | {r['files_per_s']} | {r['hours_per_min']} | "
            f"**{r['vs_librosa']}x** | {', '.join(map(str, r['command_wall_s']))} | {r['hours_per_min_command']} | {r['vs_librosa_command']}x |"
        )
    base = report["results"][0].get("steady_hours_per_min") or report["results"][0]["hours_per_min"]
    steady = [f"{r['run']}: {r['steady_files_per_s']} files/s, {r['steady_hours_per_min']} h/min ({r['steady_hours_per_min'] / base:.2f}x)"
              for r in report["results"] if "steady_files_per_s" in r]
    if steady:
        lines.append("")
        lines.append("Steady rates, from each run's first result to its last (start-up left out; x: against the librosa loop's steady rate): " + "; ".join(steady) + ".")
    ray = [r for r in report["results"] if "ray" in r["run"]]
    if ray:
        e = ray[0]["engine"]
        lines.append("")
        lines.append(
            f"Ray fixed costs (best run): start of the local instance {e.get('init_s')} s, node check {e.get('check_s')} s, "
            f"first result {e.get('first_result_s')} s after submitting, shutdown {e.get('shutdown_s')} s; "
            f"dataset run {e.get('run_s')} s in all."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
