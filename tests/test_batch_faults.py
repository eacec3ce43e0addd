"""Faults of ``supermel batch`` and ``supermel compute``, through the real ``supermel`` executable.

A full disk (ENOSPC, injected in a worker), a worker killed mid-run, the driver killed with
``kill -9``, Ctrl-C, failing inputs to ``compute``, bad lists, empty files and two inputs with one
output name. The faults are injected with the test hook ``SUPERMEL_TEST_FAULTS`` (see
:mod:`supermel.cli._worker`), or with real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

import librosa  # noqa: E402  (a hard test dependency)
import soundfile as sf  # noqa: E402

from supermel.cli import MANIFEST_NAME

TOL32 = 2e-5
_SCRIPT = Path(sys.executable).with_name("supermel")


def command() -> List[str]:
    """The installed ``supermel`` console script of this environment (``python -m supermel`` without one)."""
    return [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "supermel"]


def supermel(*args, cwd: Optional[Path] = None, faults: Optional[str] = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SUPERMEL_TEST_FAULTS", None)
    if faults:
        env["SUPERMEL_TEST_FAULTS"] = faults
    return subprocess.run([*command(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def start(*args, faults: Optional[str] = None) -> subprocess.Popen:
    """``supermel ARGS`` in its own session (so that every process it starts can be found by its session id)."""
    env = dict(os.environ)
    env.pop("SUPERMEL_TEST_FAULTS", None)
    if faults:
        env["SUPERMEL_TEST_FAULTS"] = faults
    return subprocess.Popen([*command(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def write_audio(path: Path, *, sr: int = 16000, seconds: float = 0.5, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr)
    return path


def librosa_mel(path: Path) -> np.ndarray:
    y, sr = librosa.load(str(path), sr=None)
    return librosa.feature.melspectrogram(y=y, sr=sr)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def by_input(out: Path) -> Dict[str, dict]:
    return {e["input"]: e for e in manifest(out)["files"]}


def outputs(out: Path) -> set:
    return {p.relative_to(out).as_posix() for p in out.rglob("*.np[yz]")}


def temporary_files(out: Path) -> list:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def assert_manifest_matches_disk(out: Path) -> None:
    """Every entry done (or skipped: output exists) has its output on disk, complete; no other output exists."""
    m = manifest(out)
    claimed = {e["output"] for e in m["files"] if e["status"] == "done" or e.get("reason") == "output exists"}
    assert outputs(out) == claimed, (outputs(out) ^ claimed)
    for name in claimed:
        np.load(out / name)  # complete, loadable
    assert not temporary_files(out)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    for k in range(8):
        write_audio(src / f"f{k}.wav", seed=k)
    return src


# --------------------------------------------------------------------------- empty files (issue 18, item 10)
def test_an_empty_file_gets_one_message_in_compute_and_batch(tmp_path):
    (tmp_path / "in").mkdir()
    empty = tmp_path / "in" / "empty.wav"
    empty.write_bytes(b"")
    proc = supermel("compute", empty, "-o", tmp_path / "x.npy")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"supermel: error: audio file {str(empty)!r} is empty (0 bytes)"
    proc = supermel("batch", tmp_path / "in", tmp_path / "out", "-q")
    assert proc.returncode == 1
    assert f"failed   empty.wav: empty (audio file {str(empty)!r} is empty (0 bytes))" in proc.stdout
    assert by_input(tmp_path / "out")["empty.wav"]["reason"] == "empty"


# --------------------------------------------------------------------------- lists (issue 18, item 8)
def test_a_csv_without_a_path_column_is_refused_before_any_output_folder(corpus, tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text(f"id,filename_x,speaker\n1,{corpus / 'f0.wav'},a\n2,{corpus / 'f1.wav'},b\n")
    proc = supermel("batch", lst, tmp_path / "out", "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert err.startswith("supermel: error: ") and len(proc.stderr.splitlines()) == 1, err
    assert "no audio path column in the header (id, filename_x, speaker)" in err
    for accepted in ("audio_filepath", "path", "audio", "file"):
        assert accepted in err
    assert not (tmp_path / "out").exists()
    # a header-less CSV of audio paths is still a list: path, then output
    plain = tmp_path / "plain.csv"
    plain.write_text(f"{corpus / 'f0.wav'},zero\n{corpus / 'f1.wav'}\n")
    proc = supermel("batch", plain, tmp_path / "out2", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs(tmp_path / "out2") == {"zero.npy", "in/f1.npy"}


# --------------------------------------------------------------------------- compute goes on (issue 18, item 5)
def test_compute_goes_on_past_a_failing_input_and_exits_non_zero(tmp_path):
    a = write_audio(tmp_path / "a.wav", seed=1)
    (tmp_path / "notes.txt").write_text("not audio")
    b = tmp_path / "b.flac"
    sf.write(str(b), sf.read(str(write_audio(tmp_path / "tmp.wav", seed=2)))[0], 16000, format="FLAC")
    (tmp_path / "empty.wav").write_bytes(b"")
    proc = supermel("compute", "a.wav", "notes.txt", "missing.wav", "b.flac", "empty.wav", "-o", "out/", "-q", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.splitlines()
    assert err[0].startswith("supermel: error: ") and "notes.txt" in err[0] and "cannot read audio" in err[0]
    assert err[1].startswith("supermel: error: ") and "'missing.wav' does not exist" in err[1]
    assert err[2] == "supermel: error: audio file 'empty.wav' is empty (0 bytes)"
    assert err[3] == "supermel compute: 2 done, 3 failed (notes.txt, missing.wav, empty.wav)"
    assert len(err) == 4 and "Traceback" not in proc.stderr
    assert outputs(tmp_path / "out") == {"a.npy", "b.npy"}
    assert rel_err(np.load(tmp_path / "out" / "b.npy"), librosa_mel(b)) <= TOL32
    assert rel_err(np.load(tmp_path / "out" / "a.npy"), librosa_mel(a)) <= TOL32
