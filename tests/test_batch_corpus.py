"""``supermel batch`` on real corpora, local engine (no Ray): every audio format by default, lists of
inputs (text, CSV, NeMo and lhotse JSON lines), worker processes, resume, temporary files swept,
sharded outputs. References come from librosa (``librosa.load`` + ``librosa.feature.melspectrogram``).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import librosa  # noqa: E402  (a hard test dependency)
import soundfile as sf  # noqa: E402

from supermel.cli import MANIFEST_NAME, main
from supermel.cli import _corpus, _worker, batch

TOL32 = 2e-5


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def write_audio(path: Path, *, sr: int = 16000, seconds: float = 0.6, channels: int = 1, fmt: str = None, subtype: str = None, seed: int = 0) -> Path:
    """A chirp plus noise (no silent bins), in the format the suffix (or ``fmt``) says."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t)[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, format=fmt, subtype=subtype)
    return path


def librosa_mel(path: Path, **kw) -> np.ndarray:
    y, sr = librosa.load(str(path), sr=None)
    return librosa.feature.melspectrogram(y=y, sr=sr, **kw)


def files_under(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def stamps(root: Path, suffix: str = ".npy") -> dict:
    """(inode, mtime) of each output: a rewritten file (atomic replace) gets a new inode."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob(f"*{suffix}")}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Mixed formats, rates, channels, upper-case extensions, nested folders and other files."""
    src = tmp_path / "in"
    write_audio(src / "a.wav", sr=22050, seed=1)
    write_audio(src / "spk1" / "b.flac", sr=16000, seed=2)
    write_audio(src / "spk1" / "deep" / "c.FLAC", sr=44100, channels=2, seed=3)
    write_audio(src / "spk2" / "d.WAV", sr=8000, subtype="FLOAT", seed=4)
    write_audio(src / "spk2" / "e.ogg", sr=16000, fmt="OGG", subtype="VORBIS", seed=5)
    write_audio(src / "f.aiff", sr=16000, fmt="AIFF", seed=6)
    (src / "spk1" / "b.txt").write_text("a transcript: not audio")
    (src / "spk1" / "meta.json").write_text("{}")
    (src / "README").write_text("no extension")
    return src


AUDIO = {"a.wav", "spk1/b.flac", "spk1/deep/c.FLAC", "spk2/d.WAV", "spk2/e.ogg", "f.aiff"}


# --------------------------------------------------------------------------- what is an input
def test_default_input_is_every_audio_file_in_any_case(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(corpus), str(out), "--n-mels", "40", "-q"]) == 0
    report = capsys.readouterr().out
    assert f"6 audio files in {str(corpus)!r} (flac 2, wav 2, aiff 1, ogg 1); 3 other files ignored ((none) 1, json 1, txt 1)" in report
    want = {str(Path(n).with_suffix(".npy").as_posix()) for n in AUDIO}
    assert files_under(out) == want | {MANIFEST_NAME}
    for name in AUDIO:  # each file at its own rate, channels averaged, as librosa.load(sr=None)
        got = np.load(out / Path(name).with_suffix(".npy"))
        assert rel_err(got, librosa_mel(corpus / name, n_mels=40)) <= TOL32, name
    m = manifest(out)
    assert m["inputs"]["found"] == {"wav": 2, "flac": 2, "ogg": 1, "aiff": 1}
    assert m["inputs"]["ignored"] == {"txt": 1, "json": 1, "(none)": 1}
    assert m["counts"] == {"done": 6, "skipped": 0, "failed": 0, "not started": 0}
    by_input = {e["input"]: e for e in m["files"]}
    assert set(by_input) == AUDIO
    assert by_input["spk1/deep/c.FLAC"]["sr"] == 44100 and by_input["spk2/d.WAV"]["sr"] == 8000
    assert m["hours_done"] == pytest.approx(6 * 0.6 / 3600, rel=1e-3)


def test_audio_extensions_follow_soundfile():
    exts = _corpus.audio_extensions()
    assert {"wav", "flac", "ogg", "opus", "aiff", "au"} <= exts
    assert "mp3" in exts if "MP3" in sf.available_formats() else "mp3" not in exts
    assert not {"txt", "json", "npy", "mat", "raw"} & exts


def test_without_soundfile_only_wav_files_are_inputs(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)
    listing = _corpus.list_folder(corpus, tmp_path / "out", None)
    assert {p.relative_to(corpus).as_posix() for p in listing.inputs} == {"a.wav", "spk2/d.WAV"}
    assert listing.ignored["flac"] == 2


def test_glob_narrows_to_the_audio_files_it_matches(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(corpus), str(out), "--glob", "spk1/**/*", "-q"]) == 0
    assert files_under(out) == {"spk1/b.npy", "spk1/deep/c.npy", MANIFEST_NAME}
    assert "2 audio files in" in capsys.readouterr().out
    assert manifest(out)["inputs"]["ignored"] == {"txt": 1, "json": 1}
    # a pattern that matches only other files is explained
    assert main(["batch", str(corpus), str(tmp_path / "o2"), "--glob", "**/*.txt"]) == 2
    err = capsys.readouterr().err
    assert "no audio files in" in err and "match --glob '**/*.txt'" in err and "(1 other file: txt 1)" in err


def test_an_empty_and_a_corrupt_file_are_reported_with_their_paths(corpus, tmp_path, capsys):
    (corpus / "spk2" / "empty.flac").write_bytes(b"")
    (corpus / "spk1" / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    out = tmp_path / "out"
    assert main(["batch", str(corpus), str(out), "--workers", "2"]) == 1  # not -q: a line per failed file
    report = capsys.readouterr().out
    assert "6 done, 0 skipped, 2 failed of 8 files" in report
    assert "failed   spk2/empty.flac: empty (audio file " in report and "is empty (0 bytes)" in report
    assert "failed   spk1/corrupt.wav: unreadable (cannot read audio file " in report
    by_input = {e["input"]: e for e in manifest(out)["files"]}
    assert str(corpus / "spk1" / "corrupt.wav") in by_input["spk1/corrupt.wav"]["detail"]
    assert not (out / "spk2" / "empty.npy").exists()


# --------------------------------------------------------------------------- processes
def test_worker_processes_write_what_one_process_writes(corpus, tmp_path):
    assert main(["batch", str(corpus), str(tmp_path / "one"), "--preset", "whisper-80", "-q"]) == 0
    assert main(["batch", str(corpus), str(tmp_path / "two"), "--preset", "whisper-80", "--workers", "2", "-q"]) == 0
    for name in AUDIO:
        rel = Path(name).with_suffix(".npy")
        np.testing.assert_array_equal(np.load(tmp_path / "two" / rel), np.load(tmp_path / "one" / rel))
    engine = manifest(tmp_path / "two")["engine"]
    assert engine["engine"] == "local" and engine["workers"] == 2


def test_worker_processes_are_processes_with_one_torch_thread(tmp_path):
    assert batch._mp_context().get_start_method() in ("forkserver", "spawn")  # never fork: torch + fork hangs
    from supermel.cli import _pool

    pool = _pool.WorkerPool(batch._mp_context(), 1, {"device": "cpu"}, "npy", 0.0)
    try:
        assert pool.parameters()[0] == "ok"
        (info,) = pool.worker_info
    finally:
        pool.close()
    assert info["pid"] != os.getpid() and info["torch_threads"] == 1


def test_tasks_group_files_and_keep_shards_whole():
    files = [{"kind": "file", "i": i, "src": "", "out": ""} for i in range(100)]
    tasks = batch._tasks(files, 2)
    assert [u["i"] for t in tasks for u in t] == list(range(100)) and max(map(len, tasks)) <= 16 and len(tasks) >= 8
    shards = [{"kind": "shard", "out": "", "members": [[0, "", "k"]]}] * 3
    assert batch._tasks(shards, 2) == [[s] for s in shards]


def test_progress_shows_files_and_hours_of_audio_per_second(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain counter
    assert main(["batch", str(corpus), str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "supermel batch: 6/6 files (" in err and " files/s, " in err and " h of audio/s)" in err


# --------------------------------------------------------------------------- resume and temporary files
def test_resume_after_an_interruption_recomputes_nothing_finished(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real = _worker.Worker.run
    calls = {"n": 0}

    def interrupted_after_three(self, units, **kw):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, units, **kw)

    monkeypatch.setattr(_worker.Worker, "run", interrupted_after_three)
    assert main(["batch", str(corpus), str(out), "-q"]) == 130
    m = manifest(out)
    assert m["counts"] == {"done": 3, "skipped": 0, "failed": 0, "not started": 3}
    assert {e["reason"] for e in m["files"] if e["status"] == "not started"} == {"interrupted"}
    before = stamps(out)
    assert len(before) == 3
    monkeypatch.setattr(_worker.Worker, "run", real)
    capsys.readouterr()
    assert main(["batch", str(corpus), str(out), "-q", "--workers", "2"]) == 0
    assert "3 done, 3 skipped, 0 failed" in capsys.readouterr().out
    after = stamps(out)
    assert len(after) == 6 and {k: after[k] for k in before} == before  # untouched


def test_temporary_files_of_a_killed_run_are_swept_at_start_and_end(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    (out / "spk1").mkdir(parents=True)
    left = [out / ".a.npy.k3j_x9a2.tmp", out / "spk1" / ".b.npy.0a1b2c3d.tmp", out / ".supermel_manifest.json.abcdefgh.tmp"]
    for p in left:
        p.write_bytes(b"half")
    keep = [out / "notes.tmp", out / ".hidden.npy"]  # not ours: kept
    for p in keep:
        p.write_bytes(b"user's")
    real = _worker.Worker.run

    def leaves_a_temporary_file(self, units, **kw):  # as a worker killed while writing would
        rows = real(self, units, **kw)
        Path(units[0]["out"]).with_name(".x.npy.zz99zz99.tmp").write_bytes(b"half")
        return rows

    monkeypatch.setattr(_worker.Worker, "run", leaves_a_temporary_file)
    assert main(["batch", str(corpus), str(out), "-q"]) == 0
    assert "removed 3 temporary files left by an interrupted run" in capsys.readouterr().out
    assert not [p for p in out.rglob("*.tmp") if p.name != "notes.tmp"]
    assert all(p.exists() for p in keep)
    assert manifest(out)["engine"]["temporary_files_removed"] == 3 + 4  # 3 at the start, one per output folder at the end


# --------------------------------------------------------------------------- lists of inputs
def test_inputs_from_a_text_list_with_output_names(corpus, tmp_path):
    lst = corpus / "train.txt"
    lst.write_text("# utterances\na.wav\n\nspk1/b.flac\tutt-b\n" + str(corpus / "spk2" / "d.WAV") + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(lst), str(out), "-q"]) == 0
    assert files_under(out) == {"a.npy", "utt-b.npy", "spk2/d.npy", MANIFEST_NAME}
    assert rel_err(np.load(out / "utt-b.npy"), librosa_mel(corpus / "spk1" / "b.flac")) <= TOL32
    m = manifest(out)
    assert [e["input"] for e in m["files"]] == ["a.wav", "spk1/b.flac", str(corpus / "spk2" / "d.WAV")]
    assert m["inputs"]["source"] == "list"


def test_inputs_from_csv_nemo_and_lhotse_lists(corpus, tmp_path):
    (tmp_path / "lists").mkdir()
    csv_list = tmp_path / "lists" / "x.csv"
    csv_list.write_text(f"id,path,output\n1,{corpus / 'a.wav'},A\n2,{corpus / 'spk1' / 'b.flac'},\n")
    assert main(["batch", str(csv_list), str(tmp_path / "o_csv"), "-q"]) == 0
    # outside the list's folder: outputs mirror the files' common folder
    assert files_under(tmp_path / "o_csv") == {"A.npy", "spk1/b.npy", MANIFEST_NAME}

    nemo = tmp_path / "lists" / "nemo.jsonl"
    nemo.write_text("".join(json.dumps({"audio_filepath": str(corpus / n), "duration": 0.6, "text": "hi"}) + "\n" for n in ("spk1/b.flac", "spk2/e.ogg")))
    assert main(["batch", str(nemo), str(tmp_path / "o_nemo"), "-q"]) == 0
    assert files_under(tmp_path / "o_nemo") == {"spk1/b.npy", "spk2/e.npy", MANIFEST_NAME}

    lhotse = tmp_path / "lists" / "recordings.jsonl.gz"
    with gzip.open(lhotse, "wt") as fh:
        rec = {"id": "rec-c", "sources": [{"type": "file", "channels": [0, 1], "source": str(corpus / "spk1" / "deep" / "c.FLAC")}], "sampling_rate": 44100}
        fh.write(json.dumps(rec) + "\n")
    assert main(["batch", str(lhotse), str(tmp_path / "o_lhotse"), "--format", "npz", "-q"]) == 0
    assert files_under(tmp_path / "o_lhotse") == {"rec-c.npz", MANIFEST_NAME}
    with np.load(tmp_path / "o_lhotse" / "rec-c.npz") as z:
        assert rel_err(z["mel"], librosa_mel(corpus / "spk1" / "deep" / "c.FLAC")) <= TOL32


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("bad.jsonl", '{"path": "a.wav"}\n{"text": "no path"}\n', "bad.jsonl:2: no audio path (keys: text); name it 'audio_filepath' (NeMo), 'path' or 'audio'"),
        ("seg.jsonl", '{"audio_filepath": "a.wav", "offset": 1.5}\n', "seg.jsonl:1: segments (offset=1.5) are not supported"),
        ("esc.txt", "a.wav\t../../etc/x\n", "output name '../../etc/x' must be a relative path inside the output folder"),
        ("none.txt", "# nothing\n\n", "names no files"),
        ("broken.jsonl", "{not json\n", "broken.jsonl:1: not a JSON line"),
    ],
)
def test_a_bad_list_fails_before_any_file_naming_the_line(corpus, tmp_path, name, text, fragment, capsys):
    lst = corpus / name
    lst.write_text(text)
    assert main(["batch", str(lst), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert not (tmp_path / "out").exists()


def test_glob_with_a_list_and_a_plain_file_are_refused(corpus, tmp_path, capsys):
    lst = corpus / "l.txt"
    lst.write_text("a.wav\n")
    assert main(["batch", str(lst), str(tmp_path / "out"), "--glob", "*.wav"]) == 2
    assert "--glob narrows a folder listing" in capsys.readouterr().err
    assert main(["batch", str(corpus / "a.wav"), str(tmp_path / "out")]) == 2
    assert "is a file, not a folder: use `supermel compute` for single files, or give a list of files" in capsys.readouterr().err


def test_two_inputs_with_one_output_name_are_refused(corpus, tmp_path, capsys):
    write_audio(corpus / "a.flac", seed=9)  # a.wav and a.flac both make a.npy
    assert main(["batch", str(corpus), str(tmp_path / "out"), "-q"]) == 1
    by_input = {e["input"]: e for e in manifest(tmp_path / "out")["files"]}
    assert (by_input["a.wav"]["status"], by_input["a.wav"]["reason"]) == ("failed", "duplicate output")
    assert by_input["a.flac"]["status"] == "done"


# --------------------------------------------------------------------------- shards
def test_sharded_outputs_hold_what_single_files_hold(corpus, tmp_path, capsys):
    (corpus / "spk2" / "corrupt.flac").write_bytes(b"fLaC" + bytes(500))
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert main(["batch", str(corpus), str(single), "-q"]) == 1
    assert main(["batch", str(corpus), str(sharded), "--shard-size", "3", "--workers", "2", "-q"]) == 1
    assert files_under(sharded) == {"shards/shard-000000.npz", "shards/shard-000001.npz", "shards/shard-000002.npz", MANIFEST_NAME, _corpus.SHARD_INDEX_NAME}
    index = json.loads((sharded / _corpus.SHARD_INDEX_NAME).read_text())
    assert index["shard_size"] == 3 and set(index["files"]) == {str(Path(n).with_suffix("").as_posix()) for n in AUDIO}
    for key, where in index["files"].items():
        with np.load(sharded / where["shard"]) as z:
            np.testing.assert_array_equal(z[key], np.load(single / f"{key}.npy"))
            assert where["shape"] == list(z[key].shape)
    by_input = {e["input"]: e for e in manifest(sharded)["files"]}
    assert by_input["spk2/corrupt.flac"]["status"] == "failed" and by_input["spk2/corrupt.flac"]["output"].startswith("shards/")
    # a rerun skips every finished shard and redoes only the one holding the failed file
    before = stamps(sharded, ".npz")
    failed_shard = by_input["spk2/corrupt.flac"]["output"]
    capsys.readouterr()
    assert main(["batch", str(corpus), str(sharded), "--shard-size", "3", "-q"]) == 1
    after = stamps(sharded, ".npz")
    assert {k for k in before if after[k] != before[k]} == {failed_shard}
    assert "1 failed" in capsys.readouterr().out


def test_shards_are_npz(corpus, tmp_path, capsys):
    assert main(["batch", str(corpus), str(tmp_path / "out"), "--shard-size", "2", "--format", "npy"]) == 2
    assert "--shard-size writes .npz shards: drop --format npy" in capsys.readouterr().err


def test_ray_only_options_need_the_ray_engine(corpus, tmp_path, capsys):
    assert main(["batch", str(corpus), str(tmp_path / "out"), "--address", "auto"]) == 2
    assert "--address auto joins a Ray cluster: add --engine ray" in capsys.readouterr().err


def test_help_tells_the_default_inputs_engines_and_shared_filesystem(capsys):
    assert main(["batch", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in (
        "every audio file soundfile can read", "extensions in any case", "--glob narrows", "ignored",
        "--address auto", "RAY_AUTH_MODE=token", "shared filesystem", "checked on each node before starting",
        "--shard-size", "supermel_shards.json", "removed at the start and end", "audio_filepath",
    ):
        assert fragment in text, fragment


def test_fsync_flushes_every_output_and_an_empty_output_is_redone(corpus, tmp_path, monkeypatch, capsys):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    out = tmp_path / "out"
    assert main(["batch", str(corpus), str(out), "-q"]) == 0
    assert [Path(p).name for p in synced if p.endswith(".npy")] == []  # by default: no fsync per output
    synced.clear()
    assert main(["batch", str(corpus), str(out), "--overwrite", "--fsync", "-q"]) == 0
    assert sorted(Path(p).relative_to(out).as_posix() for p in synced if p.endswith(".npy")) == sorted(
        Path(n).with_suffix(".npy").as_posix() for n in AUDIO
    )
    # a power cut before the data reached the disk can leave an empty output: a rerun redoes it
    (out / "a.npy").write_bytes(b"")
    capsys.readouterr()
    assert main(["batch", str(corpus), str(out), "-q"]) == 0
    assert "1 done, 5 skipped, 0 failed" in capsys.readouterr().out
    assert np.load(out / "a.npy").shape[0] == 128


def test_with_worker_processes_the_driver_never_imports_torch(corpus, tmp_path):
    """The workers check the options (and compute); the driver lists, plans and writes the manifest."""
    import subprocess

    code = (
        "import sys; from supermel.cli import main; "
        f"rc = main(['batch', {str(corpus)!r}, {str(tmp_path / 'out')!r}, '--workers', '2', '-q']); "
        "print(rc, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split()[-2:] == ["0", "False"], proc.stdout + proc.stderr
    assert manifest(tmp_path / "out")["parameters"]["n_mels"] == 128


@pytest.mark.parametrize("workers", ["1", "2"])
def test_invalid_options_fail_before_any_file_with_any_number_of_workers(corpus, tmp_path, workers):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "supermel", "batch", str(corpus), str(tmp_path / "out"), "--workers", workers,
                           "--n-fft", "256", "--win-length", "512"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["supermel: error: win_length=512 must be <= n_fft=256; raise n_fft or shorten the window"], proc.stderr
    assert not (tmp_path / "out").exists()
