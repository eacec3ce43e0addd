"""The hosts' own tests against supermel's drop-ins (``hosts_harness.py`` explains the harness).

The suites and the harness's detection check took 6 min 50 s of wall time (2 min 26 s of CPU) on a
2-core machine shared with other jobs (librosa's two runs about 1.5 + 1.5 min of it, transformers'
1 min, openai-whisper's 30 s), and they download the hosts' sdists once, so the README's
``python -m pytest -q`` skips them; ``.ci/run`` runs them:
``SUPERMEL_HOSTS=1 python -m pytest -q tests/hosts``. When the package index cannot be reached,
or ffmpeg (openai-whisper's ``load_audio``) is missing, they skip with the reason unless ``CI`` is
set (conftest.skip_unless_ci). The harness's own logic is tested here on every run.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import numpy as np
import pytest

import hosts_harness as hh
from conftest import require_program, skip_unless_ci

RUN_SUITES = os.environ.get("SUPERMEL_HOSTS", "") not in ("", "0")
suites = pytest.mark.skipif(
    not RUN_SUITES,
    reason="the hosts' suites take ~7 min and download their sdists: SUPERMEL_HOSTS=1 python -m pytest tests/hosts (.ci/run does)",
)


def run_or_skip(name: str, **kw) -> "hh.Report":
    suite = hh.SUITES[name]
    for program, install in suite.programs:
        require_program(program, install=install, why=f"{suite.dist}'s tests call it")
    try:
        return hh.run_suite(name, **kw)
    except hh.Unavailable as exc:
        skip_unless_ci(f"{suite.dist}'s tests could not be obtained: {exc}")


@suites
@pytest.mark.parametrize("name", list(hh.SUITES))
def test_host_suite_has_no_unexplained_difference(name, capsys):
    rep = run_or_skip(name)
    with capsys.disabled():
        print(f"\n[tests/hosts] {rep.summary()}")
        for line in rep.known:
            print("  known:", line)
    assert rep.calls and sum(rep.calls.values()) > 0, "the supermel run never called supermel: the substitution did not happen"
    assert rep.same > 0
    assert not rep.differences, "\n".join(rep.differences)


@suites
def test_harness_detects_a_difference():
    """supermel's outputs scaled by 1.001 (SUPERMEL_HOSTS_BREAK=1): the comparison must fail."""
    rep = run_or_skip("librosa", extra_env={"SUPERMEL_HOSTS_BREAK": "1"}, select="test_mel_norm or test_melspectrogram_multi")
    assert rep.differences and all("relative error" in d or "supermel failed" in d or "original passed" in d for d in rep.differences), rep.differences


# --------------------------------------------------------------------------- the harness's logic, offline
def test_compare_flags_unexplained_differences_and_lists_known_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(hh, "KNOWN", {("librosa", "t.py::test_known*"): "a documented reason"})
    orig = {
        "t.py::test_same": {"outcome": "passed"},
        "t.py::test_new_failure": {"outcome": "passed"},
        "t.py::test_known[1]": {"outcome": "passed"},
        "t.py::test_needs_data": {"outcome": "failed", "message": "FileNotFoundError: tests/data/x.mat"},
        "t.py::test_xfail": {"outcome": "xfailed"},
    }
    ours = {
        "t.py::test_same": {"outcome": "passed"},
        "t.py::test_new_failure": {"outcome": "failed", "message": "AssertionError"},
        "t.py::test_known[1]": {"outcome": "failed", "message": "ParameterError"},
        "t.py::test_needs_data": {"outcome": "failed", "message": "FileNotFoundError"},
        "t.py::test_xfail": {"outcome": "xpassed"},
    }
    rep = hh.compare("librosa", "0", orig, ours, tmp_path, tmp_path, {"librosa.mel": 1})
    assert rep.same == 1
    assert [d.split(":")[2].strip() for d in rep.differences] == ["test_new_failure", "test_xfail"]
    assert len(rep.known) == 1 and "a documented reason" in rep.known[0]
    assert len(rep.not_runnable) == 1 and "x.mat" in rep.not_runnable[0]


def test_compare_arrays_tolerance_shapes_and_nan_places(tmp_path):
    def save(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    a = save("a.npz", **{"00_f": x})
    assert hh.compare_arrays("librosa", a, save("b.npz", **{"00_f": x * np.float32(1 + 1e-6)})) is None
    assert "relative error" in hh.compare_arrays("librosa", a, save("c.npz", **{"00_f": x * np.float32(1.001)}))
    assert "shape" in hh.compare_arrays("librosa", a, save("d.npz", **{"00_f": x[:3]}))
    assert "dtype" in hh.compare_arrays("librosa", a, save("e.npz", **{"00_f": x.astype(np.float64)}))
    assert "calls" in hh.compare_arrays("librosa", a, save("f.npz", **{"00_g": x}))
    y = x.copy()
    y[0, 0] = np.nan
    assert "relative error inf" in hh.compare_arrays("librosa", a, save("g.npz", **{"00_f": y}))
    assert hh.compare_arrays("librosa", save("h.npz", **{"00_f": y}), save("i.npz", **{"00_f": y})) is None


def test_sdist_tests_extracts_only_the_tests_folder(tmp_path, monkeypatch):
    """From a cached sdist: tests/ only (never the package, which would shadow the installed one)."""
    monkeypatch.setenv("SUPERMEL_HOSTS_CACHE", str(tmp_path))
    root = tmp_path / "fakehost-1.0"
    root.mkdir()
    with tarfile.open(root / "fakehost-1.0.tar.gz", "w:gz") as tar:
        for name, text in {"fakehost-1.0/fakehost/__init__.py": "x = 1\n", "fakehost-1.0/tests/test_a.py": "def test_a(): pass\n",
                           "fakehost-1.0/tests/data/readme.txt": "data\n", "fakehost-1.0/setup.py": "\n"}.items():  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    src = hh.sdist_tests("fakehost", "1.0")
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    assert files == ["tests/data/readme.txt", "tests/test_a.py"]
    assert hh.sdist_tests("fakehost", "1.0") == src  # cached: no second download


def test_unreachable_index_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERMEL_HOSTS_CACHE", str(tmp_path))

    def no_index(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-binary" in cmd and "nohost==9.9" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(hh.subprocess, "run", no_index)
    with pytest.raises(hh.Unavailable, match="package index unreachable"):
        hh.sdist_tests("nohost", "9.9")


@pytest.mark.parametrize("ci", [None, "1"])
def test_unavailable_host_skips_or_fails_under_ci(monkeypatch, ci):
    if ci:
        monkeypatch.setenv("CI", ci)
    else:
        monkeypatch.delenv("CI", raising=False)

    def unavailable(name, **kw):
        raise hh.Unavailable("pip download failed (package index unreachable?)")

    monkeypatch.setattr(hh, "run_suite", unavailable)
    monkeypatch.setattr(hh, "SUITES", {"librosa": hh.SUITES["librosa"]})
    with pytest.raises(pytest.fail.Exception if ci else pytest.skip.Exception, match="could not be obtained"):
        run_or_skip("librosa")


def test_known_differences_each_have_a_reason():
    for (host, pattern), reason in hh.KNOWN.items():
        assert host in hh.SUITES and "::" in pattern and len(reason) > 20, (host, pattern, reason)


def test_the_plugin_substitutes_supermel_for_each_host(tmp_path, monkeypatch):
    """The plugin's substitution (librosa's): the public entry points are rebound to supermel's functions."""
    code = (
        "import json, os, sys; sys.argv = ['x']\n"
        "import supermel_hosts_plugin as p\n"
        "p.pytest_configure(None)\n"
        "import librosa, supermel\n"
        "out = dict(\n"
        "  mel=librosa.feature.melspectrogram.__wrapped__ is supermel.melspectrogram,\n"
        "  mfcc=librosa.feature.mfcc.__wrapped__ is supermel.mfcc,\n"
        "  filters=librosa.filters.mel.__wrapped__ is supermel.mel_filters,\n"
        ")\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ, SUPERMEL_HOSTS_HOST="librosa", SUPERMEL_HOSTS_MODE="supermel", SUPERMEL_HOSTS_OUT=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(hh.HERE), str(hh.REPO / "src"), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    proc = subprocess.run([hh.sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"mel": True, "mfcc": True, "filters": True}


def test_ci_runs_the_host_suites_with_ffmpeg():
    """.ci/run installs ffmpeg (openai-whisper's load_audio) and runs tests/hosts with SUPERMEL_HOSTS=1 (and CI=1)."""
    text = (hh.REPO / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    assert "SUPERMEL_HOSTS=1 python -m pytest -q -p no:cacheprovider tests/hosts" in lines
    assert "command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)" in lines and "export CI=1" in lines
    assert 'apt-get update -qq && apt-get install -y -qq "${missing[@]}"' in lines  # the one apt step installs what is missing
