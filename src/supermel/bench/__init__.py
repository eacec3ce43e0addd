"""Benchmark suite: supermel against its peers, timed in the same run, with an exactness column.

``supermel bench`` and ``python benchmarks/run.py`` call :func:`main`. One
harness serves every workload:

* **Warm-up** calls first (they also build caches, plans and CUDA graphs).
* **Interleaved repetitions**: the peers of a workload are timed round-robin
  (A, B, C, A, B, C, ...), a short block of calls per peer per round, so the
  noise of a busy machine hits every peer alike and the ratios hold.
* **Statistics** per call (per push for streaming): median, p99, count, and the
  ratio of each peer's median to supermel's median *from the same run*.
* **Exactness**: relative Frobenius error ``||out - ref|| / ||ref||`` against
  librosa on the same input (against openai-whisper or kaldi-native-fbank for the
  front ends).
* **Threads**: offline workloads run with ``--threads`` (default 1) and with all
  cores; everything else with ``--threads``. torch and the BLAS pools
  (threadpoolctl) are set for each row.
* **CUDA** (``--device cuda``): device-side times from ``torch.cuda.Event`` pairs
  with a synchronisation per call, host-to-device copies included and excluded,
  CUDA-graph replays for streaming, throughput in audio hours per second.
* **Output**: a header (machine, cores, threads, versions, date), Markdown
  tables, ``results.json`` and ``chart.png`` (log-scale time per workload).
* **Exit status**: 1 when any row of supermel's own (a peer whose name starts
  with "supermel", the CUDA-graph and twin rows included) ends in an error.

Peers are optional (``pip install "supermel[bench]"``): a peer that cannot be
imported, or a supermel API that has not landed, gets a row that says so; it is
never dropped silently.

Workloads use the reference configuration unless named: 16 kHz, n_fft 800,
hop 200, 80 mels, 55-7600 Hz (:data:`REFERENCE`).

Modules, each importing only the ones above it:

========================  =====================================================
:mod:`.harness`           Case, Built, Workload, Settings; test signal,
                          :func:`rel_error`; timer, interleaved loop, threads
:mod:`.peers`             the peer table and the adapters shared by workloads
                          (librosa, kaldi-native-fbank, audioflux, Hugging Face)
:mod:`.offline`,          the workloads of each group
:mod:`.streaming`,
:mod:`.frontends`
:mod:`.floor`             the arithmetic floor of every CPU workload (flops /
                          one core's peak), shared by both suites' tables
:mod:`.workloads`         :func:`default_workloads` (supermel's CPU rows checked
                          for the route they run), the acceptance figures
:mod:`.native`            ``--suite native``: the native core's table (issue
                          19): both supermel routes, peers, ratios, the
                          arithmetic floor
:mod:`.runner`            :func:`run_suite`, :class:`Results`, the run's header
:mod:`.report`            Markdown, BENCHMARKS.md sections, the chart
:mod:`.cli`               :func:`main` (``supermel bench``)
========================  =====================================================
"""

from __future__ import annotations

from .cli import main
from .harness import BASELINE, REFERENCE, Built, Case, PeerMissing, Settings, Workload, rel_error
from .peers import PEERS, PeerInfo, peer_table
from .report import render_full_markdown, render_markdown, update_markdown_file, write_chart
from .runner import Results, environment, run_suite, supermel_errors
from .workloads import default_workloads, targets

__all__ = [
    "REFERENCE",
    "Case",
    "Built",
    "Workload",
    "Settings",
    "Results",
    "PEERS",
    "default_workloads",
    "run_suite",
    "rel_error",
    "render_markdown",
    "update_markdown_file",
    "write_chart",
    "main",
    # also public: the ratio's denominator, the peer table, the pieces of a run and its report
    "BASELINE",
    "PeerInfo",
    "PeerMissing",
    "peer_table",
    "environment",
    "targets",
    "supermel_errors",
    "render_full_markdown",
]
