"""The native core's acceptance suite (``supermel bench --suite native``): routes, rows, ratios, floor, report.

Tiny workloads and budgets only; nothing here asserts a timing. The native
extension is replaced by a stand-in module (its routes recorded) or hidden.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

import supermel
from supermel import bench
from supermel.bench import floor, harness, native

KW = bench.REFERENCE
TINY = bench.Settings(warmup=1, warmup_s=0.0, budget_s=0.0, slice_s=1.0, min_rounds=3, max_rounds=3, max_inner=2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_native(monkeypatch):
    """The real ``supermel._native`` with its switch set (``SUPERMEL_NATIVE`` on or off as read at
    import) and its instruction set named "fake"; the route each call takes is the real one."""
    from supermel import _native as real

    if not real.available():
        pytest.skip("needs the native extension (tools: /work/wt/_notes/build_native.sh or pip install .)")

    def install(env_on: bool = True):
        monkeypatch.setattr(real, "_ENV_ON", env_on)
        monkeypatch.setattr(real, "isa", lambda: "fake")
        return real
    return install


@pytest.fixture
def no_native(monkeypatch):
    """The extension not built: ``supermel._native`` without its compiled module (the torch routes run)."""
    from supermel import _native as real

    monkeypatch.setattr(real, "_ext", None)


def _base(seen=None):
    """A workload whose supermel case records the route of every call (``seen``), plus librosa."""
    y = harness._signal(1600, seed=7)

    def build(device):
        mod = supermel.MelSpectrogram(**KW)

        def sm():
            if seen is not None:
                mod_native = sys.modules.get("supermel._native")
                seen.append(bool(mod_native and mod_native.enabled()))
            return mod(torch.from_numpy(y))

        cases = [bench.Case("supermel", sm), bench.Case("librosa", lambda: librosa.feature.melspectrogram(y=y, **KW)), bench.Case("dropped", lambda: 0)]
        return bench.Built(cases, reference=lambda: librosa.feature.melspectrogram(y=y, **KW))

    return bench.Workload("tiny", "offline", build, audio_seconds=0.1, devices=("cpu",))


def _run(workloads):
    return bench.run_suite(workloads, settings=TINY, threads=1, devices=("cpu",), log=lambda s: None)


def test_without_the_extension_native_rows_are_na_and_route0_runs(no_native):
    res = _run([native.routed("offline 1 s", _base(), peers=("librosa",))])
    rows = {r["peer"]: r for r in res.rows}
    assert list(rows) == ["supermel", native.TORCH_ROUTE, "librosa"]  # "dropped" is not a peer of this table
    assert rows["supermel"]["status"] == "not available" and rows["supermel"]["reason"] == "n/a (extension not built)"
    assert rows[native.TORCH_ROUTE]["status"] == "ok" and rows[native.TORCH_ROUTE]["rel_err"] < 2e-5
    assert not bench.supermel_errors(res.rows)  # n/a is not a failure of the run
    res.meta.update(suite="native", native=native.native_status()[1])
    md = native.render_native_markdown(res)
    assert "| workload | threads | supermel native | supermel SUPERMEL_NATIVE=0 route | peers | ratios (issue 19 bound) | arithmetic floor |" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| offline 1 s | 1 |"))
    assert "n/a (extension not built)" in line and "librosa" in line and "route 0:" in line and "Mflop, 81 frames" in line
    fig = next(e for e in native.acceptance(res.rows) if e["workload"] == "offline 1 s" and e["figure"] == "native / librosa")
    assert fig["value"] is None and fig["route0_value"] == pytest.approx(rows[native.TORCH_ROUTE]["median_s"] / rows["librosa"]["median_s"])


@pytest.mark.parametrize("env_on", [True, False], ids=["default-native", "env-SUPERMEL_NATIVE=0"])
def test_each_route_runs_on_its_own_route(fake_native, env_on):
    fake = fake_native(env_on=env_on)
    seen_first, seen = [], []
    first = native.routed("tiny routes", _base(seen_first), peers=("librosa",))
    wl = native.routed("tiny routes", _base(seen), peers=("librosa",))
    built = wl.build("cpu")
    by = {c.peer: c for c in built.cases}
    assert set(by) == {"supermel", native.TORCH_ROUTE, "librosa"}
    assert "fake" in by["supermel"].notes and "use_native(False)" in by[native.TORCH_ROUTE].notes
    seen.clear()
    by["supermel"].fn()
    by[native.TORCH_ROUTE].fn()
    by["supermel"].fn()
    assert seen == [True, False, True]  # native calls on the native route (also under SUPERMEL_NATIVE=0), route 0 inside use_native(False)
    assert fake._override is None  # the switch is restored after every call
    res = _run([first])
    assert {r["peer"]: r["status"] for r in res.rows} == {"supermel": "ok", native.TORCH_ROUTE: "ok", "librosa": "ok"}
    assert set(seen_first) == {True, False}


def test_repeat_makes_one_timed_call_of_several(no_native):
    calls = []

    def build(device):
        return bench.Built([bench.Case("supermel", lambda: calls.append(1), output=lambda: np.ones(3)), bench.Case("peer", lambda: calls.append(2), output=lambda: np.ones(3))])

    wl = native.routed("r", bench.Workload("r", "streaming", build, per="push", devices=("cpu",)), supermel=("supermel",), peers=("peer",), repeat=5)
    cases = {c.peer: c for c in wl.build("cpu").cases}
    cases[native.TORCH_ROUTE].fn()
    cases["peer"].fn()
    assert calls == [1] * 5 + [2] * 5
    assert wl.per == "push" and wl.all_threads is False and wl.devices == ("cpu",)


def test_acceptance_ratios_bounds_and_kinds():
    def row(wl, peer, med, p99=None):
        return dict(device="cpu", threads=1, workload=wl, peer=peer, status="ok", median_s=med, p99_s=p99 or med, per="call")

    rows = [
        row("offline 1 s", "supermel", 0.05), row("offline 1 s", "librosa", 1.0), row("offline 1 s", "naive torch", 0.1),
        row("one-hop push (200 samples)", "supermel", 5e-6, 30e-6), row("one-hop push (200 samples)", "naive torch", 40e-6),
        row("whisper-80 30 s", "supermel", 1.0), row("whisper-80 30 s", "openai-whisper", 3.0),
        row("torch.compile vs eager 60 s", native.COMPILED + native.ROUTE0, 1.1), row("torch.compile vs eager 60 s", native.TORCH_ROUTE, 1.0),
    ]
    acc = {(e["workload"], e["figure"]): e for e in native.acceptance(rows)}
    e = acc[("offline 1 s", "native / librosa")]
    assert e["value"] == pytest.approx(0.05) and e["met"] is True
    assert acc[("offline 1 s", "native / naive torch")]["met"] is None  # reported, no bound
    hop = acc[("one-hop push (200 samples)", "native p99 / native p50")]
    assert hop["value"] == pytest.approx(6.0) and hop["met"] is False
    assert acc[("one-hop push (200 samples)", "native p50 / naive torch p50")]["value"] == pytest.approx(0.125)
    wh = acc[("whisper-80 30 s", "openai-whisper / native")]
    assert wh["value"] == pytest.approx(3.0) and wh["met"] is True  # a speed-up: peer time / supermel time
    cp = acc[("torch.compile vs eager 60 s", "compiled / eager (route 0)")]
    assert cp["value"] == pytest.approx(1.1) and cp["met"] is False
    assert acc[("offline 60 s", "native / route 0")]["value"] is None
    cn = acc[("torch.compile vs eager 60 s", "compiled / eager (native)")]
    assert cn["value"] is None and cn["route0_value"] == pytest.approx(1.1)  # no native rows: the route-0 pair
    assert "not met" in native._fmt_ratio(cp) and "met" in native._fmt_ratio(e)


def test_arithmetic_floor():
    nnz = int(np.count_nonzero(librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55.0, fmax=7600.0)))
    per_frame = native.flops_per_frame(800, nnz)
    assert per_frame == pytest.approx(22.8e3, rel=0.01)  # docs/native.md: 800 + 19,300 + 1,200 + 1,500
    fl = native.floors()
    assert fl["offline 1 s"].frames == 81 and fl["offline 60 s"].frames == 4801
    assert fl["StreamPool 256 out-of-step streams, 5 ticks (2,048 frames)"].frames == 2048
    assert fl["offline 1 s"].flops == pytest.approx(81 * per_frame)
    assert {w.name for w in native.native_workloads()} <= set(fl)  # every workload of the suite has a floor
    cpu_default = {w.name for w in bench.default_workloads() if "cpu" in w.devices}
    assert cpu_default <= set(fl), cpu_default - set(fl)  # and every CPU workload of the default suite
    assert fl["serving 256 streams out of step (20 ms ticks)"].frames == pytest.approx(256 * 1.6)
    assert native.core_peak(50.0) == (50e9, "50 Gflop/s as given")


def test_core_peak_from_cpuinfo(monkeypatch):
    monkeypatch.delenv("SUPERMEL_BENCH_PEAK_GFLOPS", raising=False)
    monkeypatch.setattr(floor, "_cpuinfo", lambda: {"cpu MHz": "2600.0", "flags": "sse avx2 fma avx512f", "vendor_id": "AuthenticAMD"})
    peak, how = native.core_peak()
    assert peak == pytest.approx(83.2e9) and "2.60 GHz" in how and "8 fp32 lanes" in how  # Zen 4: AVX-512 as 2 x 256
    monkeypatch.setattr(floor, "_cpuinfo", lambda: {"model name": "Intel(R) Xeon(R) @ 2.00GHz", "flags": "avx2 avx512f", "vendor_id": "GenuineIntel"})
    assert native.core_peak()[0] == pytest.approx(2.0e9 * 2 * 16 * 2)
    monkeypatch.setenv("SUPERMEL_BENCH_PEAK_GFLOPS", "10")
    assert native.core_peak()[0] == pytest.approx(10e9)


def test_one_frame_workload_rows_are_exact(no_native):
    res = _run([native.routed("one frame (800 samples, center=False)", native.one_frame_workload(), peers=("naive torch", "librosa"))])
    rows = {r["peer"]: r for r in res.rows}
    assert rows["librosa"]["rel_err"] == 0.0
    assert rows[native.TORCH_ROUTE]["rel_err"] < 2e-5 and rows["naive torch"]["rel_err"] < 2e-5
    assert rows[native.TORCH_ROUTE]["n"] >= TINY.min_rounds


def test_suite_names_and_cli(tmp_path, capsys, no_native):
    names = [w.name for w in native.native_workloads()]
    assert names[0] == "offline 1 s" and "torch.compile vs eager 60 s" in names and len(names) == 9
    assert bench.main(["--suite", "native", "--list"]) == 0
    out = capsys.readouterr().out
    assert "whisper-80 30 s" in out and "one frame (800 samples, center=False)" in out
    with pytest.raises(SystemExit):
        bench.main(["--suite", "native", "--device", "cuda"])
    md = tmp_path / "B.md"
    md.write_text("# B\n\n<!-- supermel-bench:cpu:begin -->\ncpu table\n<!-- supermel-bench:cpu:end -->\n", encoding="utf-8")
    code = bench.main(["--suite", "native", "--quick", "--only", "one frame", "--markdown-file", str(md), "--out", str(tmp_path / "out")])
    assert code == 0
    text = md.read_text(encoding="utf-8")
    assert "cpu table" in text  # the default suite's section is kept
    assert "<!-- supermel-bench:native:begin -->" in text and "### Native core (issue 19)" in text and "**Arithmetic floor**" in text
    doc = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert doc["meta"]["suite"] == "native" and doc["meta"]["core_peak_flops"] > 0
    assert all(r["floor_s"] > 0 for r in doc["rows"])  # each row's floor, in results.json too
    assert any(e["workload"] == "one frame (800 samples, center=False)" for e in doc["acceptance"])


def _serve_module():
    spec = importlib.util.spec_from_file_location("supermel_serve_bench", ROOT / "benchmarks" / "serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_serve_routes_option():
    serve = _serve_module()
    env = serve._server_env(None, "0")
    assert env["SUPERMEL_NATIVE"] == "0" and serve._server_env(None, "native")["SUPERMEL_NATIVE"] == "1"
    probe = serve.route_probe("0")
    assert probe.startswith("torch route"), probe  # SUPERMEL_NATIVE=0: never the native core
    row = dict(clients=64, route="SUPERMEL_NATIVE=0: torch route", step="loop", interval=None, chunks=10, p50_ms=1.0, p99_ms=2.0, max_ms=3.0,
               server_cpu=0.5, cycle_share=0.1, steps_per_s=50, frames_per_step=2.0, max_step_frames=4, loadgen_cpu=0.2, others_cpu=0.0,
               lag_p99_ms=0.1, lost=0, reordered=0, exact=64, errors=[], load_before=(0.0,), load_after=(0.0,))  # fmt: skip
    tab = serve.table([row])
    assert tab.splitlines()[0].startswith("| clients | route | step |") and "| 64 | SUPERMEL_NATIVE=0: torch route | in loop" in tab
    assert "SUPERMEL_NATIVE=0: torch route" in serve.acceptance([row])
    with pytest.raises(SystemExit):
        serve.main(["--routes", "native,fast"])
