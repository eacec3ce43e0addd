"""The benchmark harness (:mod:`supermel.bench`): structure, ratios, missing peers, exactness.

Tiny workloads and budgets only; nothing here asserts a timing.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import librosa
import numpy as np
import pytest
import torch

import supermel
from supermel import bench
from supermel.bench import harness, offline, peers, runner, streaming

KW = bench.REFERENCE
TINY = bench.Settings(warmup=1, warmup_s=0.0, budget_s=0.0, slice_s=1.0, min_rounds=3, max_rounds=3, max_inner=2)


def _tiny_workload(calls=None, name="tiny offline"):
    """supermel, librosa, and a peer configured wrongly (HTK scale); ``calls`` records the call order."""
    y = harness._signal(1600, seed=7)

    def logged(peer, fn):
        def f():
            if calls is not None:
                calls.append(peer)
            return fn()
        return f

    def build(device):
        mod = supermel.MelSpectrogram(**KW)
        cases = [
            bench.Case("supermel", logged("supermel", lambda: mod(torch.from_numpy(y)))),
            bench.Case("librosa", logged("librosa", lambda: librosa.feature.melspectrogram(y=y, **KW))),
            bench.Case("wrong peer", logged("wrong peer", lambda: librosa.feature.melspectrogram(y=y, htk=True, **KW)), notes="HTK scale"),
        ]
        return bench.Built(cases, reference=lambda: librosa.feature.melspectrogram(y=y, **KW))

    return bench.Workload(name, "offline", build, audio_seconds=0.1, devices=("cpu",))


def _run(workloads, **kw):
    return bench.run_suite(workloads, settings=TINY, threads=1, devices=("cpu",), log=lambda s: None, **kw)


def test_results_structure_json_and_markdown(tmp_path):
    res = _run([_tiny_workload()])
    doc = json.loads(json.dumps(res.to_json(), default=str))
    assert set(doc) >= {"meta", "peers", "rows", "targets", "skipped"}
    meta = doc["meta"]
    for key in ("date", "cpu", "cores", "threads", "thread_env", "versions", "settings"):
        assert key in meta
    for lib in ("python", "torch", "numpy", "librosa", "supermel"):
        assert lib in meta["versions"]
    assert {p["name"] for p in doc["peers"]} >= {"librosa", "naive torch", "nnAudio", "kaldi-native-fbank", "audioflux", "openai-whisper", "torchaudio"}
    rows = doc["rows"]
    assert [r["peer"] for r in rows] == ["supermel", "librosa", "wrong peer"]
    for r in rows:
        assert r["status"] == "ok"
        assert r["n"] >= TINY.min_rounds
        assert r["p99_s"] >= r["median_s"] > 0
        assert r["timer"] == "perf_counter"
        assert r["threads"] == 1 and r["device"] == "cpu"
    md = bench.render_markdown(res, "cpu", chart="chart.png")
    assert "| workload | threads | peer | median | p99 | n | x supermel | x floor | audio h/s | rel. error | arithmetic floor | notes |" in md
    assert "**Arithmetic floor**" in md and "**Native extension**" in md
    for name in ("supermel", "librosa", "wrong peer", "**Versions**", "**Threads**", "![median time"):
        assert name in md
    # the chart (matplotlib is optional)
    pytest.importorskip("matplotlib")
    assert bench.write_chart(res, str(tmp_path / "chart.png")) is None
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_come_from_the_same_run_and_peers_interleave():
    calls = []
    res = _run([_tiny_workload(calls)])
    base = next(r for r in res.rows if r["peer"] == "supermel")
    assert base["ratio"] == 1.0
    for r in res.rows:
        assert r["ratio"] == pytest.approx(r["median_s"] / base["median_s"], rel=1e-12)
    # round-robin: every peer's timed calls are spread across the run, not one peer after another
    first = {p: calls.index(p) for p in set(calls)}
    last = {p: len(calls) - 1 - calls[::-1].index(p) for p in set(calls)}
    for a in first:
        for b in first:
            if a != b:
                assert first[a] < last[b], (a, b)
    # the timed rounds are A, B, C, A, B, C, ... (blocks of max_inner calls)
    timed = calls[-TINY.min_rounds * 3 * TINY.max_inner:]
    blocks = [timed[i] for i in range(0, len(timed), TINY.max_inner)]
    assert blocks == ["supermel", "librosa", "wrong peer"] * TINY.min_rounds


def test_exactness_column_is_a_real_comparison():
    res = _run([_tiny_workload()])
    err = {r["peer"]: r["rel_err"] for r in res.rows}
    assert err["librosa"] == 0.0
    assert err["supermel"] < 2e-5
    assert err["wrong peer"] > 0.05  # HTK instead of Slaney: a large error, not a rounding difference
    md = bench.render_markdown(res, "cpu")
    assert "0 |" in md


def test_rel_error():
    ref = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    assert bench.rel_error(ref, ref) == 0.0
    assert bench.rel_error(torch.from_numpy(ref.T.copy()), ref) == 0.0  # time-major output is transposed
    assert bench.rel_error(2 * ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not match"):
        bench.rel_error(ref[:, :3], ref)


def test_missing_peer_is_reported_not_dropped(monkeypatch):
    for mod in ("nnAudio", "nnAudio.features", "audioflux", "kaldi_native_fbank"):
        monkeypatch.setitem(sys.modules, mod, None)  # "import nnAudio" now raises ImportError
    y = harness._signal(1600)
    cases = {c.peer: c for c in offline._offline_cases(y, "cpu")}
    for peer in ("nnAudio", "audioflux", "kaldi-native-fbank", "torchaudio"):
        assert peer in cases
    assert cases["nnAudio"].status == "missing"
    assert "not installed" in cases["nnAudio"].reason
    assert cases["supermel"].status == "ok" and cases["naive torch"].status == "ok"
    table = {p["name"]: p for p in bench.peer_table()}
    assert table["nnAudio"]["status"] == "missing" and table["audioflux"]["status"] == "missing"
    assert table["librosa"]["status"] == "installed"

    def build(device):
        return bench.Built([c for c in offline._offline_cases(y, device) if c.peer in ("supermel", "nnAudio")], reference=lambda: peers._librosa_mel(y))

    res = _run([bench.Workload("tiny with missing peer", "offline", build, devices=("cpu",))])
    rows = {r["peer"]: r for r in res.rows}
    assert rows["nnAudio"]["status"] == "missing" and rows["nnAudio"].get("median_s") is None
    assert rows["supermel"]["status"] == "ok"
    md = bench.render_markdown(res, "cpu")
    assert "| nnAudio | **missing** |" in md


def test_missing_librosa_is_a_missing_row_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)
    cases = {c.peer: c for c in offline._offline_cases(harness._signal(1600), "cpu")}
    assert cases["librosa"].status == "missing" and "not installed" in cases["librosa"].reason
    assert cases["supermel"].status == "ok"


def test_missing_supermel_api_is_not_available(monkeypatch):
    # supermel resolves its public names lazily (module __getattr__): hide the name there.
    monkeypatch.setattr(supermel, "StreamingMelSpectrogram", None, raising=False)
    y = harness._signal(1600, batch=None)
    cases = {c.peer: c for c in streaming._streaming_cases(200, None, "cpu", y, y)}
    assert cases["supermel"].status == "not available"
    assert "StreamingMelSpectrogram" in cases["supermel"].reason
    assert cases["naive torch"].status == "ok"


def test_streaming_peers_emit_librosa_frames():
    y_time, y_exact = harness._signal(4000, seed=1), harness._signal(4000, seed=2)
    ref = librosa.feature.melspectrogram(y=y_exact, **KW)
    for c in streaming._streaming_cases(200, None, "cpu", y_time, y_exact):
        if c.status != "ok":
            continue
        out = c.output()
        assert bench.rel_error(out, ref[:, : out.shape[-1]]) < 1e-5, c.peer
        assert out.shape[-1] == (4000 + 400 - 800) // 200 + 1


def test_default_suite_rows_have_the_floor_and_their_route(monkeypatch):
    """The CPU tables: the floor of each workload (one core's peak x threads) on its first row, every
    timed row's median / floor, and supermel's rows saying which route ran (checked, not assumed)."""
    from supermel.bench import floor, native

    monkeypatch.setenv("SUPERMEL_BENCH_PEAK_GFLOPS", "10")
    wl = next(w for w in bench.default_workloads() if w.name == "offline 1 s")
    monkeypatch.setattr(offline, "_offline_cases", lambda x, device, h2d=False: [c for c in _orig_cases(x, device, h2d) if c.peer in ("supermel", "librosa")])
    res = _run([wl])
    res.meta.update(core_peak_flops=10e9, core_peak_how="10 Gflop/s as given", native=native.native_status()[1])
    md = bench.render_markdown(res, "cpu")
    fl = floor.floors()["offline 1 s"]
    lines = {ln.split(" | ")[2]: ln for ln in md.splitlines() if ln.startswith("| offline 1 s | 1 |")}
    sm, lib = lines["supermel"], lines["librosa"]
    rows = {r["peer"]: r for r in res.rows if r["threads"] == 1}
    assert f"{harness._fmt_time(fl.flops / 10e9)} ({fl.flops / 1e6:.3g} Mflop, 81 frames)" in sm
    assert f"| {rows['librosa']['median_s'] / (fl.flops / 10e9):.1f}x |" in lib and "Mflop" not in lib
    enabled = native._enabled()
    assert ("route: native extension" in rows["supermel"]["notes"]) is enabled
    assert ("route: torch/numpy" in rows["supermel"]["notes"]) is not enabled
    assert "route" not in rows["librosa"]["notes"]
    two = [ln for ln in md.splitlines() if ln.startswith("| offline 1 s | 2 | supermel |")]
    if two:  # the all-cores row is held to two cores' peak
        assert f"{harness._fmt_time(fl.flops / 20e9)} (" in two[0]


_orig_cases = offline._offline_cases


def test_route_note_says_when_the_native_core_did_not_run():
    """The check can fail: a supermel case whose output is the same on both routes is reported."""
    from supermel.bench import native

    if not native._enabled():
        pytest.skip("needs the native extension, enabled")
    y = harness._signal(16000)
    mod = supermel.MelSpectrogram(**KW)
    assert native.route_note(bench.Case("supermel", lambda: mod(torch.from_numpy(y)))).startswith("route: native extension")
    with_grad = torch.from_numpy(y).requires_grad_()  # autograd: the torch route on both
    note = native.route_note(bench.Case("supermel", lambda: mod(with_grad).detach()))
    assert "native core not taken" in note, note


def test_main_writes_files_and_markdown_section(tmp_path, capsys):
    md_file = tmp_path / "BENCHMARKS.md"
    md_file.write_text("# Benchmarks\n\nIntro kept.\n")
    argv = ["--quick", "--budget", "0", "--only", "streaming one hop (200)", "--out", str(tmp_path / "out"),
            "--markdown-file", str(md_file), "--label", "development run"]
    assert bench.main(argv) == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["workload"] for r in doc["rows"]} == {"streaming one hop (200)"}
    assert {r["peer"] for r in doc["rows"]} >= {"supermel", "naive torch", "librosa", "kaldi-native-fbank"}
    assert (tmp_path / "out" / "results.md").exists()
    assert "| workload | threads | peer | p50 / push |" in capsys.readouterr().out
    assert bench.main(argv) == 0  # a second run replaces the section instead of appending
    text = md_file.read_text()
    assert text.startswith("# Benchmarks\n\nIntro kept.")
    assert text.count("<!-- supermel-bench:cpu:begin -->") == 1 and text.count("<!-- supermel-bench:cpu:end -->") == 1
    assert "development run" in text


def test_cuda_request_without_cuda_is_reported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = bench.run_suite([_tiny_workload()], settings=TINY, devices=("cuda",), log=lambda s: None)
    assert res.rows == []
    assert res.skipped and "CUDA is not available" in res.skipped[0]["reason"]
    assert "Not run" in bench.render_markdown(res, "cuda")


def _failing(after=0, exc=RuntimeError("capture failed")):
    """A call that raises from its ``after + 1``-th call on."""
    n = [0]

    def f():
        n[0] += 1
        if n[0] > after:
            raise exc
        return np.zeros((80, 9), np.float32)
    return f


def _workload_of(cases, name="tiny failing"):
    y = harness._signal(1600, seed=7)

    def build(device):
        mod = supermel.MelSpectrogram(**KW)
        return bench.Built([bench.Case("supermel", lambda: mod(torch.from_numpy(y)))] + cases(),
                           reference=lambda: librosa.feature.melspectrogram(y=y, **KW))
    return bench.Workload(name, "offline", build, audio_seconds=0.1, devices=("cpu",))


def _main_log(monkeypatch, workloads, argv=("--quick", "--budget", "0")):
    """``bench.main`` on ``workloads`` (instead of the default ones); its exit status and stdout + stderr as one log."""
    monkeypatch.setattr(runner, "default_workloads", lambda: list(workloads))
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        rc = bench.main(list(argv))
    return rc, log.getvalue()


def test_any_supermel_row_in_error_fails_the_run_and_is_printed_last(monkeypatch):
    # the CUDA-graph row fails at its first call (exactness), the function row while timed; an
    # ordinary peer in error is a result, not a failure of the run
    wl = _workload_of(lambda: [
        bench.Case("supermel (CUDA graph)", _failing(0, RuntimeError("graph capture failed"))),
        bench.Case("supermel (function)", _failing(1, ValueError("broke while timed"))),
        bench.Case("other peer", _failing(0, RuntimeError("peer bug"))),
    ])
    rc, log = _main_log(monkeypatch, [wl])
    assert rc == 1
    tail = log[log.index("(wall time"):]
    head, failures = tail.split("supermel bench: FAILED: 2 supermel rows in error:")
    assert "|" not in failures and "other peer" not in failures  # after every table, only the supermel rows
    lines = [ln for ln in failures.splitlines() if ln.strip()]
    assert lines == [
        "  [cpu] tiny failing, 1 thread: supermel (CUDA graph): RuntimeError: graph capture failed",
        "  [cpu] tiny failing, 1 thread: supermel (function): ValueError: broke while timed",
    ]
    assert log.rstrip().endswith(lines[-1])
    # the tables show every row, the failed ones with their status
    assert "| tiny failing | 1 | supermel (CUDA graph) | **error** |" in log
    assert "| tiny failing | 1 | other peer | **error** |" in log


def test_supermel_rows_not_available_or_peers_in_error_keep_exit_zero(monkeypatch):
    wl = _workload_of(lambda: [
        bench.Case("supermel (transformers twin)", status="not available", reason="not available: not merged"),
        bench.Case("supermel (CUDA graph)", status="missing", reason="not installed"),
        bench.Case("other peer", _failing(0)),
    ])
    rc, log = _main_log(monkeypatch, [wl])
    assert rc == 0
    assert "FAILED" not in log
    rows = [{"peer": "supermel (faster-whisper twin)", "status": "error"}, {"peer": "supermel", "status": "ok"},
            {"peer": "librosa", "status": "error"}, {"peer": "supermel (CUDA graph)", "status": "not available"}]
    assert bench.supermel_errors(rows) == rows[:1]
