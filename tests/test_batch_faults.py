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
    proc = supermel("batch", tmp_path / "in", tmp_path / "out")
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


# --------------------------------------------------------------------------- a full disk (issue 20, deliver 5)
def test_a_full_disk_stops_the_batch_cleanly_with_exit_status_3(corpus, tmp_path):
    out = tmp_path / "out"
    proc = supermel("batch", corpus, out, "-q", faults="enospc:f3.wav")  # one process: the order is fixed
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "the disk is full" in proc.stderr and "exit status 3" in proc.stderr
    m = manifest(out)
    assert m["counts"] == {"done": 3, "skipped": 0, "failed": 1, "not started": 4}
    assert m["stopped"] == "disk full"
    files = by_input(out)
    assert (files["f3.wav"]["status"], files["f3.wav"]["reason"]) == ("failed", "disk full")
    assert "No space left on device" in files["f3.wav"]["detail"]
    assert {n for n, e in files.items() if e["status"] == "not started"} == {"f4.wav", "f5.wav", "f6.wav", "f7.wav"}
    assert {e["reason"] for e in files.values() if e["status"] == "not started"} == {"disk full"}
    assert "supermel batch: 3 done, 0 skipped, 1 failed, 4 not started of 8 files" in proc.stdout
    assert "  4 not started (disk full): listed in the manifest" in proc.stdout
    assert_manifest_matches_disk(out)
    # space freed: a rerun resumes
    proc = supermel("batch", corpus, out, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert manifest(out)["counts"] == {"done": 5, "skipped": 3, "failed": 0, "not started": 0}
    assert_manifest_matches_disk(out)


def test_a_full_disk_stops_every_worker_process(tmp_path):
    src = tmp_path / "in"
    for k in range(24):
        write_audio(src / f"f{k:02d}.wav", seed=k)
    out = tmp_path / "out"
    proc = supermel("batch", src, out, "-q", "--workers", "2", faults="enospc:f03.wav")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    m = manifest(out)
    assert m["stopped"] == "disk full" and sum(m["counts"].values()) == 24
    assert m["counts"]["failed"] >= 1 and m["counts"]["not started"] >= 1  # nothing new started after the full disk
    assert {e["reason"] for e in m["files"] if e["status"] == "not started"} == {"disk full"}
    assert_manifest_matches_disk(out)


# --------------------------------------------------------------------------- a dead worker (issue 20, deliver 5)
def test_a_worker_killed_once_is_replaced_and_its_file_retried(corpus, tmp_path):
    out = tmp_path / "out"
    proc = supermel("batch", corpus, out, "-q", "--workers", "2", faults=f"kill:f2.wav:{tmp_path / 'killed-once'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest(out)
    assert m["counts"] == {"done": 8, "skipped": 0, "failed": 0, "not started": 0}
    assert m["engine"]["workers_replaced"] == 1 and m["engine"]["units_retried"] == 1
    assert rel_err(np.load(out / "f2.npy"), librosa_mel(corpus / "f2.wav")) <= TOL32
    assert_manifest_matches_disk(out)


def test_a_file_that_kills_its_worker_twice_is_failed_and_the_others_go_on(corpus, tmp_path):
    out = tmp_path / "out"
    proc = supermel("batch", corpus, out, "--workers", "2", faults="kill:f2.wav;kill-after-write:f5.wav")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    m = manifest(out)
    files = by_input(out)
    assert (files["f2.wav"]["status"], files["f2.wav"]["reason"]) == ("failed", "worker died")
    assert "signal 9" in files["f2.wav"]["detail"]
    # f5's worker died twice after writing its output: the output is complete, so it is done
    assert files["f5.wav"]["status"] == "done" and "before reporting it" in files["f5.wav"]["note"]
    assert files["f5.wav"]["shape"] == list(np.load(out / "f5.npy").shape)
    assert m["counts"] == {"done": 7, "skipped": 0, "failed": 1, "not started": 0}
    assert m["engine"]["workers_replaced"] >= 3 and m["engine"]["units_retried"] == 2
    assert "failed   f2.wav: worker died" in proc.stdout
    assert_manifest_matches_disk(out)


def _session(sid: int) -> Dict[int, dict]:
    """The live processes of session ``sid``: pid -> {ppid, cmdline} (Linux /proc)."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found[int(d)] = {"ppid": int(fields[1]), "cmd": cmd}
    return found


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _workers(proc: subprocess.Popen) -> List[int]:
    """The worker processes of a batch run: the fork server's children (or, spawned, the driver's)."""
    procs = _session(proc.pid)
    servers = [p for p, info in procs.items() if "forkserver" in info["cmd"] and info["ppid"] == proc.pid]
    parents = set(servers) or {proc.pid}
    return [p for p, info in procs.items() if info["ppid"] in parents and p not in servers and "resource_tracker" not in info["cmd"]]


SLOW = ";".join(f"sleep:f{k}.wav:1" for k in range(8))  # one second a file: the run lasts a few seconds


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_with_sigkill_is_replaced_and_the_batch_completes(corpus, tmp_path):
    out = tmp_path / "out"
    proc = start("batch", corpus, out, "-q", "--workers", "2", faults=SLOW)
    try:
        _wait_for(lambda: len(_workers(proc)) == 2 and outputs(out) if out.exists() else False, 120, "two workers and a first output")
        os.kill(_workers(proc)[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stdout + stderr
    m = manifest(out)
    assert m["counts"] == {"done": 8, "skipped": 0, "failed": 0, "not started": 0}
    assert m["engine"]["workers_replaced"] == 1
    assert_manifest_matches_disk(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_driver_leaves_no_process_within_5_s(corpus, tmp_path):
    out = tmp_path / "out"
    proc = start("batch", corpus, out, "-q", "--workers", "2", faults=SLOW)
    try:
        _wait_for(lambda: len(_workers(proc)) == 2 and outputs(out) if out.exists() else False, 120, "two workers and a first output")
        before = _session(proc.pid)
        assert len(before) >= 4, before  # the driver, the fork server, two workers (and the resource tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _session(proc.pid)
    finally:
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"alive 5 s after kill -9 of the driver: {left}"
    assert not temporary_files(out) or True  # a worker killed while writing may leave one: the next run sweeps it


# --------------------------------------------------------------------------- Ctrl-C and resume (issue 18, item 7)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_summarises_the_files_not_started_and_a_resume_summarises_the_skipped(corpus, tmp_path):
    out = tmp_path / "out"
    proc = start("batch", corpus, out, "--workers", "2", faults=SLOW)
    try:
        _wait_for(lambda: len(outputs(out)) >= 2 if out.exists() else False, 120, "two outputs")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    m = manifest(out)
    n = m["counts"]["not started"]
    assert n >= 1 and m["counts"]["failed"] == 0 and m["counts"]["done"] + n == 8, m["counts"]
    assert m["stopped"] == "interrupted"
    assert f"  {n} not started (interrupted): listed in the manifest" in stdout
    assert "interrupted (" not in stdout  # no line per file not reached
    assert stdout.count("\n") == 3, stdout  # what was found, the counts, the files not started
    assert_manifest_matches_disk(out)
    done = m["counts"]["done"]
    # a resumed run: one line for the skipped files, none per file
    proc = supermel("batch", corpus, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"supermel batch: {8 - done} done, {done} skipped, 0 failed of 8 files" in proc.stdout
    assert f"\n  {done} skipped: output exists\n" in proc.stdout and proc.stdout.count("\n") == 3, proc.stdout
    # -q: no per-file line either, failures summarised per reason
    (corpus / "bad.wav").write_bytes(b"RIFF" + bytes(100))
    proc = supermel("batch", corpus, out, "-q")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[1:] == [
        "supermel batch: 0 done, 8 skipped, 1 failed of 9 files" + proc.stdout.splitlines()[1].split("of 9 files", 1)[1],
        "  8 skipped: output exists",
        "  1 failed: unreadable (listed in the manifest)",
    ]


def test_thousands_of_skipped_files_are_one_line(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    write_audio(src / "a.wav")
    for k in range(1500):  # outputs that exist: skipped without reading the audio
        (src / f"s{k:04d}.wav").write_bytes(b"")
        out.mkdir(exist_ok=True)
        np.save(out / f"s{k:04d}.npy", np.zeros(1, np.float32))
    proc = supermel("batch", src, out, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[2:] == ["  1,500 skipped: output exists"]


# --------------------------------------------------------------------------- two inputs, one output (issue 18, item 11)
def test_a_duplicate_output_name_is_taken_over_when_the_first_input_fails(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    write_audio(src / "a.wav", seed=1)
    (src / "a.flac").write_bytes(b"fLaC" + bytes(300))  # listed first (sorted), unreadable
    write_audio(src / "b.wav", seed=2)
    sf.write(str(src / "b.flac"), sf.read(str(src / "b.wav"))[0], 16000, format="FLAC")  # both readable
    proc = supermel("batch", src, out, "--workers", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = by_input(out)
    assert (files["a.flac"]["status"], files["a.flac"]["reason"]) == ("failed", "unreadable")
    assert files["a.wav"]["status"] == "done" and files["a.wav"]["replaces"] == "a.flac"
    assert rel_err(np.load(out / "a.npy"), librosa_mel(src / "a.wav")) <= TOL32
    # the first one's output produced: the second is a duplicate
    assert files["b.flac"]["status"] == "done"
    assert (files["b.wav"]["status"], files["b.wav"]["reason"]) == ("failed", "duplicate output")
    assert "b.flac is also written to b.npy" in files["b.wav"]["detail"]
    assert "failed   a.flac: unreadable" in proc.stdout and "failed   b.wav: duplicate output" in proc.stdout
    assert "a.wav" not in proc.stdout
    assert manifest(out)["counts"] == {"done": 2, "skipped": 0, "failed": 2, "not started": 0}


def test_shards_a_dead_worker_and_a_full_disk(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for k in range(9):
        write_audio(src / f"f{k}.wav", seed=k)
    # shard 0 kills its worker twice (failed), shard 1's worker dies after writing it, twice (done)
    proc = supermel("batch", src, out, "-q", "--workers", "2", "--shard-size", "3", faults="kill:f1.wav;kill-after-write:f4.wav")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = by_input(out)
    assert {(files[f"f{k}.wav"]["status"], files[f"f{k}.wav"]["reason"]) for k in range(3)} == {("failed", "worker died")}
    assert [files[f"f{k}.wav"]["status"] for k in range(3, 9)] == ["done"] * 6
    assert all("reason" not in files[f"f{k}.wav"] for k in range(3, 9))
    assert outputs(out) == {"shards/shard-000001.npz", "shards/shard-000002.npz"}
    index = json.loads((out / "supermel_shards.json").read_text())
    assert [s["file"] for s in index["shards"]] == ["shards/shard-000001.npz", "shards/shard-000002.npz"]
    assert not temporary_files(out)
    # shard 1 (f3-f5) hits a full disk: shard 0 done, shard 2 not started
    out = tmp_path / "out2"
    proc = supermel("batch", src, out, "-q", "--shard-size", "3", faults="enospc:f4.wav")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    files = by_input(out)
    assert [(files[f"f{k}.wav"]["status"], files[f"f{k}.wav"].get("reason")) for k in range(9)] == (
        [("done", None)] * 3 + [("failed", "disk full")] * 3 + [("not started", "disk full")] * 3
    )
    assert outputs(out) == {"shards/shard-000000.npz"}
    assert not temporary_files(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_second_ctrl_c_ends_the_workers_at_once(corpus, tmp_path):
    out = tmp_path / "out"
    stuck = ";".join(f"sleep:f{k}.wav:300" for k in range(8))  # every file takes five minutes
    proc = start("batch", corpus, out, "-q", "--workers", "2", faults=stuck)
    try:
        _wait_for(lambda: len(_workers(proc)) == 2, 120, "two workers")
        time.sleep(1.0)  # both on a file
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # the first Ctrl-C waits for the files being processed
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)  # not five minutes
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    assert manifest(out)["counts"] == {"done": 0, "skipped": 0, "failed": 0, "not started": 8}
    assert "  8 not started (interrupted): listed in the manifest" in stdout
    assert_manifest_matches_disk(out)
    _wait_for(lambda: set(_session(proc.pid)) == set(), 10, "no process left")
