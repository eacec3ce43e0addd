"""The ``supermel`` command line: run in-process through ``supermel.cli.main`` (plus two subprocess runs).

References come from librosa (``librosa.load`` + ``librosa.feature.melspectrogram``),
never from supermel itself.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import supermel
from supermel.audio import example_path
from supermel.cli import MANIFEST_NAME, main

import librosa  # noqa: E402  (a hard test dependency: a missing one must fail, not skip)
import soundfile as sf  # noqa: E402

TOL32 = 2e-5
TOL64 = 1e-6
HAS_PRESETS = importlib.util.find_spec("supermel.presets") is not None
needs_presets = pytest.mark.skipif(not HAS_PRESETS, reason="supermel.presets is not in this tree yet (it is written separately)")


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def librosa_mel(path, *, sr=None, db=False, float64=False, **kw) -> np.ndarray:
    y, file_sr = librosa.load(path, sr=sr)
    if float64:
        y = y.astype(np.float64)
    S = librosa.feature.melspectrogram(y=y, sr=file_sr, **kw)
    if db:
        S = librosa.power_to_db(S)
    return S


def write_tone(path: Path, *, sr: int = 22050, seconds: float = 1.3, subtype: str = "PCM_16", seed: int = 0) -> Path:
    """A chirp plus noise (no silent bins, so relative errors are meaningful)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, subtype=subtype)
    return path


def files_under(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def png_size(path: Path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "audio" / "tone.wav")


# --------------------------------------------------------------------------- basics
def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"supermel {supermel.__version__}"


def test_help_lists_commands_and_options(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("compute", "batch", "plot", "presets", "bench"):
        assert cmd in out
    assert main(["compute", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--example", "--n-fft", "--hop-length", "--win-length", "--n-mels", "--fmin", "--fmax", "--power",
                "--htk", "--norm", "--pad-mode", "--no-center", "--db", "--float64", "--device", "--plot", "--format"):
        assert opt in out, opt


def test_readme_command_in_a_subprocess(tmp_path):
    """The README's first command (after pip install): `supermel compute --example --plot example_mel.png`."""
    proc = subprocess.run(
        [sys.executable, "-m", "supermel", "compute", "--example", "--plot", "example_mel.png"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "example_mel.npy" in proc.stdout and "(128, 376)" in proc.stdout
    assert files_under(tmp_path) == {"example_mel.npy", "example_mel.png"}
    assert rel_err(np.load(tmp_path / "example_mel.npy"), librosa_mel(example_path())) <= TOL32
    width, height = png_size(tmp_path / "example_mel.png")
    assert width >= 600 and height >= 300


def test_error_in_a_subprocess_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "supermel", "compute", "--example", "--n-fft", "256", "--win-length", "512"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("supermel: error: ") and "win_length=512" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_under(tmp_path) == set()


# --------------------------------------------------------------------------- compute
def test_compute_example_matches_librosa(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compute", "--example"]) == 0
    line = capsys.readouterr().out.strip()
    assert "example_mel.npy" in line and "(128, 376)" in line and "float32" in line and "12.01 s" in line and " ms" in line
    out = np.load(tmp_path / "example_mel.npy")
    assert out.dtype == np.float32
    assert rel_err(out, librosa_mel(example_path())) <= TOL32


@pytest.mark.parametrize(
    "argv, load_sr, kw",
    [
        ([], None, {}),
        (["--n-fft", "512", "--hop-length", "128", "--n-mels", "40", "--fmin", "50", "--fmax", "4000", "--htk", "--norm", "none", "--power", "1"],
         None, dict(n_fft=512, hop_length=128, n_mels=40, fmin=50.0, fmax=4000.0, htk=True, norm=None, power=1.0)),
        (["--sr", "16000", "--n-fft", "1024", "--win-length", "800", "--hop-length", "160", "--no-center"],
         16000, dict(n_fft=1024, win_length=800, hop_length=160, center=False)),
        (["--pad-mode", "reflect", "--norm", "2", "--n-mels", "64"], None, dict(pad_mode="reflect", norm=2.0, n_mels=64)),
    ],
    ids=["defaults", "fft-mel-options", "resample-nocenter", "reflect-l2norm"],
)
def test_compute_options_match_librosa(wav, tmp_path, argv, load_sr, kw):
    out = tmp_path / "out.npy"
    assert main(["compute", str(wav), "-o", str(out), "-q", *argv]) == 0
    got = np.load(out)
    assert got.dtype == np.float32
    assert rel_err(got, librosa_mel(wav, sr=load_sr, **kw)) <= TOL32


def test_compute_db_and_float64(wav, tmp_path):
    assert main(["compute", str(wav), "-o", str(tmp_path / "db.npy"), "-q", "--db"]) == 0
    assert rel_err(np.load(tmp_path / "db.npy"), librosa_mel(wav, db=True)) <= TOL32
    assert main(["compute", str(wav), "-o", str(tmp_path / "f64.npy"), "-q", "--float64"]) == 0
    got = np.load(tmp_path / "f64.npy")
    assert got.dtype == np.float64
    assert rel_err(got, librosa_mel(wav, float64=True)) <= TOL64


def test_compute_several_files_default_names_and_npz(tmp_path, monkeypatch, capsys):
    a = write_tone(tmp_path / "in" / "a.wav", seed=1)
    b = write_tone(tmp_path / "in" / "b.wav", sr=16000, subtype="FLOAT", seed=2)
    # several inputs with -o: a directory
    assert main(["compute", str(a), str(b), "-o", str(tmp_path / "mels")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert files_under(tmp_path / "mels") == {"a.npy", "b.npy"}
    assert rel_err(np.load(tmp_path / "mels" / "b.npy"), librosa_mel(b)) <= TOL32
    # no -o: <stem>.npy in the current directory
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["compute", str(a), "--format", "npz", "--hop-length", "256"]) == 0
    assert files_under(work) == {"a.npz"}
    with np.load(work / "a.npz") as z:
        assert rel_err(z["mel"], librosa_mel(a, hop_length=256)) <= TOL32
        assert int(z["sr"]) == 22050 and int(z["hop_length"]) == 256 and not bool(z["db"])
        params = json.loads(str(z["params"]))
    assert params["n_fft"] == 2048 and params["hop_length"] == 256 and params["supermel_version"] == supermel.__version__


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_compute_on_cuda_matches_librosa(wav, tmp_path):
    assert main(["compute", str(wav), "-o", str(tmp_path / "g.npy"), "-q", "--device", "cuda", "--db"]) == 0
    assert rel_err(np.load(tmp_path / "g.npy"), librosa_mel(wav, db=True)) <= TOL32


# --------------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_no_partial_file(wav, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    old = out_dir / "old.npy"
    np.save(old, np.arange(3.0))
    real_save = np.save

    def save_then_fail(file, arr, *args, **kwargs):
        file.write(b"\x93NUMPY partial")  # some bytes reach the disk, then the disk is "full"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", save_then_fail)
    assert main(["compute", str(wav), "-o", str(out_dir / "new.npy")]) == 1
    assert main(["compute", str(wav), "-o", str(old)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(np, "save", real_save)
    assert files_under(out_dir) == {"old.npy"}  # no new.npy, no temporary files
    np.testing.assert_array_equal(np.load(old), np.arange(3.0))  # the old output survives


def test_nan_audio_is_an_error_and_writes_nothing(tmp_path, capsys):
    y = np.full(8000, 0.1, dtype=np.float32)
    y[100] = np.nan
    src = tmp_path / "nan.wav"
    sf.write(str(src), y, 16000, subtype="FLOAT")
    assert main(["compute", str(src), "-o", str(tmp_path / "nan.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("supermel: error: ") and "NaN" in err and "Traceback" not in err
    assert files_under(tmp_path) == {"nan.wav"}


# --------------------------------------------------------------------------- batch
@pytest.fixture
def tree(tmp_path: Path) -> tuple:
    src, out = tmp_path / "in", tmp_path / "out"
    write_tone(src / "good.wav", seed=3)
    write_tone(src / "sub" / "deeper" / "good2.wav", sr=16000, subtype="FLOAT", seed=4)
    write_tone(src / "done.wav", seed=5)
    (src / "sub" / "corrupt.wav").write_bytes(np.random.default_rng(6).bytes(3000))
    y = np.full(8000, 0.1, dtype=np.float32)
    y[::500] = np.nan
    sf.write(str(src / "nan.wav"), y, 16000, subtype="FLOAT")
    (src / "notes.txt").write_text("not audio, not matched by the glob")
    (out).mkdir()
    np.save(out / "done.npy", np.zeros((1, 1), dtype=np.float32))  # an existing output
    return src, out


def test_batch_reports_failures_and_writes_the_rest(tree, capsys):
    src, out = tree
    assert main(["batch", str(src), str(out), "--n-mels", "64"]) == 1  # not -q: a line per failed file
    report = capsys.readouterr().out
    assert "2 done, 1 skipped, 2 failed" in report
    lines = {ln.split(":")[0].split()[-1]: ln for ln in report.splitlines() if ln.startswith("  ")}
    assert set(lines) == {"sub/corrupt.wav", "nan.wav", "skipped"}
    assert "failed" in lines["sub/corrupt.wav"] and "unreadable" in lines["sub/corrupt.wav"]
    assert "failed" in lines["nan.wav"] and "NaN samples" in lines["nan.wav"]
    assert lines["skipped"] == "  1 skipped: output exists"  # skipped files: one line per reason
    # outputs mirror the tree; nothing for the bad files; no temporary files
    assert files_under(out) == {"good.npy", "sub/deeper/good2.npy", "done.npy", MANIFEST_NAME}
    assert rel_err(np.load(out / "good.npy"), librosa_mel(src / "good.wav", n_mels=64)) <= TOL32
    assert rel_err(np.load(out / "sub" / "deeper" / "good2.npy"), librosa_mel(src / "sub" / "deeper" / "good2.wav", n_mels=64)) <= TOL32
    np.testing.assert_array_equal(np.load(out / "done.npy"), np.zeros((1, 1)))  # not recomputed
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["supermel_version"] == supermel.__version__
    assert manifest["parameters"]["n_mels"] == 64 and manifest["parameters"]["n_fft"] == 2048
    assert manifest["parameters"]["sr"] is None  # each file keeps its own rate
    assert manifest["counts"] == {"done": 2, "skipped": 1, "failed": 2, "not started": 0}
    by_input = {e["input"]: e for e in manifest["files"]}
    assert set(by_input) == {"good.wav", "sub/deeper/good2.wav", "done.wav", "sub/corrupt.wav", "nan.wav"}
    assert by_input["good.wav"]["status"] == "done" and by_input["good.wav"]["output"] == "good.npy"
    assert by_input["good.wav"]["shape"] == [64, int(np.load(out / "good.npy").shape[1])]
    assert by_input["sub/deeper/good2.wav"]["sr"] == 16000
    assert (by_input["sub/corrupt.wav"]["status"], by_input["sub/corrupt.wav"]["reason"]) == ("failed", "unreadable")
    assert (by_input["nan.wav"]["status"], by_input["nan.wav"]["reason"]) == ("failed", "NaN samples")
    assert (by_input["done.wav"]["status"], by_input["done.wav"]["reason"]) == ("skipped", "output exists")


def test_batch_overwrite_workers_and_rerun(tree, capsys):
    src, out = tree
    (src / "sub" / "corrupt.wav").unlink()
    (src / "nan.wav").unlink()
    assert main(["batch", str(src), str(out), "--overwrite", "--workers", "2", "-q"]) == 0
    assert rel_err(np.load(out / "done.npy"), librosa_mel(src / "done.wav")) <= TOL32  # recomputed
    assert files_under(out) == {"good.npy", "sub/deeper/good2.npy", "done.npy", MANIFEST_NAME}
    capsys.readouterr()
    # a second run without --overwrite skips everything and succeeds
    assert main(["batch", str(src), str(out), "-q"]) == 0
    assert "0 done, 3 skipped, 0 failed" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert {e["status"] for e in manifest["files"]} == {"skipped"}


def test_batch_progress_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm is optional: a plain counter instead
    write_tone(tmp_path / "in" / "a.wav", seconds=0.3)
    write_tone(tmp_path / "in" / "b.wav", seconds=0.3)
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--format", "npz"]) == 0
    assert "supermel batch: 2/2 files" in capsys.readouterr().err
    assert files_under(tmp_path / "out") == {"a.npz", "b.npz", MANIFEST_NAME}


def test_batch_bad_parameters_fail_before_any_file(tree, capsys):
    src, out = tree
    assert main(["batch", str(src), str(out), "--n-fft", "256", "--win-length", "512"]) == 2
    assert "win_length=512" in capsys.readouterr().err
    assert files_under(out) == {"done.npy"}


# --------------------------------------------------------------------------- plot

def check_labels(fig, xlabel: str, hz: bool = True) -> None:
    ax, cax = fig.axes[0], fig.axes[1]
    assert ax.get_xlabel() == xlabel
    # the mel axis in Hz when the mel parameters are known, else bins (and the label says why)
    assert ax.get_ylabel() == ("Frequency (Hz, mel scale)" if hz else "Mel bin (frequencies unknown)")
    assert "dB" in cax.get_ylabel()


def test_plot_npy_and_audio(wav, tmp_path, saved_figures, capsys):
    mel = librosa.feature.melspectrogram(y=librosa.load(wav, sr=None)[0], sr=22050, hop_length=256)
    np.save(tmp_path / "m.npy", mel)
    assert main(["plot", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.png"), "--sr", "22050", "--hop-length", "256"]) == 0
    width, height = png_size(tmp_path / "m.png")
    assert width >= 600 and height >= 300 and (tmp_path / "m.png").stat().st_size > 10_000
    check_labels(saved_figures[-1], "Time (s)")
    t_max = saved_figures[-1].axes[0].get_xlim()[1]
    assert abs(t_max - mel.shape[1] * 256 / 22050) < 0.05  # the time axis spans the audio
    # an audio file is computed first; a bare .npy without --sr has a frame axis
    assert main(["plot", str(wav), "-o", str(tmp_path / "a.png"), "--n-mels", "64"]) == 0
    check_labels(saved_figures[-1], "Time (s)")
    assert main(["plot", str(tmp_path / "m.npy"), "-o", str(tmp_path / "f.png")]) == 0
    check_labels(saved_figures[-1], "Frame", hz=False)
    assert {"m.png", "a.png", "f.png"} <= files_under(tmp_path)
    for name in ("a.png", "f.png"):
        png_size(tmp_path / name)


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "m.npy", np.ones((8, 8), dtype=np.float32))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(tmp_path / "m.npy")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'supermel[cli]'" in err
    assert files_under(tmp_path) == {"m.npy"}


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "argv, message",
    [
        (["compute"], "no input"),
        (["compute", "{tmp}/missing.wav"], "does not exist"),
        (["compute", "{tmp}/bad.wav"], "cannot read audio file"),
        (["compute", "--example", "--hop-length", "0"], "--hop-length"),
        (["compute", "--example", "--pad-mode", "wrap"], "pad_mode='wrap'"),
        (["compute", "--example", "--norm", "bogus"], "--norm"),
        (["batch", "{tmp}/nowhere", "{tmp}/out"], "does not exist"),
        (["plot", "{tmp}/missing.npy"], "does not exist"),
    ],
)
def test_errors_exit_2_with_a_message(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav file")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err and "Traceback" not in err
    assert files_under(tmp_path) == {"bad.wav"}


def test_cuda_refused_cleanly_without_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["compute", "--example", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


# --------------------------------------------------------------------------- bench, presets
def test_bench_delegates_all_arguments(monkeypatch):
    calls = []
    fake = types.ModuleType("supermel.bench")
    fake.main = lambda argv: calls.append(list(argv)) or 3
    monkeypatch.setitem(sys.modules, "supermel.bench", fake)
    assert main(["bench", "--help", "--sizes", "1,2"]) == 3
    assert calls == [["--help", "--sizes", "1,2"]]


def test_missing_optional_submodules_give_a_friendly_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "supermel.bench", None)
    monkeypatch.setitem(sys.modules, "supermel.presets", None)
    assert main(["bench"]) == 2
    assert "supermel.bench" in capsys.readouterr().err
    assert main(["presets"]) == 2
    assert "supermel.presets" in capsys.readouterr().err
    assert main(["compute", "--example", "--preset", "whisper"]) == 2
    err = capsys.readouterr().err
    assert "supermel.presets" in err and "Traceback" not in err


@needs_presets
def test_presets_listing(capsys):
    listing = supermel.frontends()
    assert listing, "no presets registered"
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, description in listing.items():
        assert any(ln.split()[0] == name and description in ln for ln in out.splitlines()), name
    assert main(["presets", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == dict(listing)


@needs_presets
@pytest.mark.parametrize("name", ["whisper-80", "kaldi-fbank", "bigvgan_22khz_80band"])
def test_presets_json_config(capsys, name):
    from supermel.presets import preset_config

    assert main(["presets", "--json", name]) == 0
    expected = json.loads(json.dumps(preset_config(name).as_dict()))  # tuples become lists
    assert json.loads(capsys.readouterr().out) == expected


@needs_presets
def test_unknown_preset_or_override_exits_2(capsys):
    assert main(["compute", "--example", "--preset", "no-such-front-end"]) == 2
    err = capsys.readouterr().err
    assert "no-such-front-end" in err and "Traceback" not in err
    assert main(["compute", "--example", "--preset", "kaldi-fbank", "--n-mels", "40"]) == 2  # Kaldi calls it num_mel_bins
    assert "n_mels" in capsys.readouterr().err
    assert main(["compute", "--example", "--set", "pad_or_trim=true"]) == 2  # --set needs --preset
    assert "--preset" in capsys.readouterr().err


@needs_presets
def test_compute_preset_resamples_to_its_rate(tmp_path, capsys):
    """A 22.05 kHz file through the 16 kHz Wav2Lip front end: resampled as librosa.load(sr=16000) does."""
    wav = write_tone(tmp_path / "tone22k.wav", sr=22050, seconds=1.0)
    assert main(["compute", str(wav), "--preset", "wav2lip", "--n-mels", "64", "-o", str(tmp_path / "w.npz")]) == 0
    assert "16000 Hz" in capsys.readouterr().out
    y16, _ = librosa.load(wav, sr=16000)
    expected = supermel.frontend("wav2lip", n_mels=64)(y16)
    with np.load(tmp_path / "w.npz") as z:
        assert z["mel"].shape == expected.shape and z["mel"].shape[0] == 64
        assert rel_err(z["mel"], expected) <= TOL32
        assert int(z["sr"]) == 16000
        params = json.loads(str(z["params"]))
    assert params["preset"] == "wav2lip" and params["overrides"] == {"n_mels": 64}


@needs_presets
def test_batch_and_plot_with_a_time_major_preset(tmp_path, saved_figures, capsys):
    write_tone(tmp_path / "in" / "a.wav", sr=16000, seconds=0.8)
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "in"), str(out), "--preset", "kaldi-fbank", "--format", "npz", "-q"]) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["parameters"]["preset"] == "kaldi-fbank"
    assert manifest["parameters"]["config"]["num_mel_bins"] == 80
    assert manifest["files"][0]["shape"][1] == 80  # (T, bins)
    assert main(["plot", str(out / "a.npz"), "-o", str(tmp_path / "k.png")]) == 0
    fig = saved_figures[-1]
    assert fig.axes[0].get_xlabel() == "Time (s)" and fig.axes[0].get_ylabel() == "Frequency (Hz, mel scale)"
    assert fig.axes[0].get_ylim()[1] == pytest.approx(79.5)  # transposed to (bins, T)
    png_size(tmp_path / "k.png")
