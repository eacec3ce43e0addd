"""Rough edges of the ``supermel`` command line that new users hit.

The command-line cases run the real executable (``python -m supermel``) in a
subprocess and check its exit status, its stderr (one line) and that an error
writes nothing. Mel-axis references come from librosa, never from supermel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import librosa  # noqa: E402  (a hard test dependency)
import soundfile as sf  # noqa: E402

from conftest import require_program
from supermel.audio import TruncatedAudioWarning, load
from supermel.cli import MANIFEST_NAME, main
from supermel.cli._figure import _mel_figure

HAS_PRESETS = importlib.util.find_spec("supermel.presets") is not None
REPO = Path(__file__).resolve().parents[1]


def supermel(*args, cwd: Path) -> subprocess.CompletedProcess:
    """Run the real command line (the installed package, as ``python -m supermel``)."""
    return subprocess.run(
        [sys.executable, "-m", "supermel", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def files_under(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, nothing on stdout, exactly one stderr line ``supermel: error: ...`` holding ``fragments``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("supermel: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_tone(path: Path, *, sr: int = 22050, seconds: float = 0.5, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, subtype="PCM_16")
    return path


def write_truncated(path: Path, *, frames: int = 48000, keep: int = 12000, sr: int = 16000) -> Path:
    """A mono 16-bit WAV whose header declares ``frames`` frames, cut to ``keep`` (a broken download)."""
    write_tone(path, sr=sr, seconds=frames / sr)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2 * (frames - keep)])
    return path


# --------------------------------------------------------------------------- 1. batch DIR DIR
def test_batch_output_folder_equal_to_input_is_explained(tmp_path):
    src = tmp_path / "in"
    for name in ("a.wav", "b.wav", "c.wav", "d.wav", "sub/e.wav"):
        write_tone(src / name)
    before = files_under(src)
    proc = supermel("batch", "in", "in", cwd=tmp_path)
    line = assert_one_line_error(
        proc, "the output folder 'in' is the input folder", "not read as inputs",
        "5 audio files excluded (a.wav, b.wav, c.wav, ... (2 more))", "give an output folder outside 'in'",
    )
    assert not line.startswith("supermel: error: no files in")  # the old, misleading message
    assert files_under(src) == before  # no outputs, no manifest


def test_batch_output_folder_inside_input_warns_and_goes_on(tmp_path):
    src = tmp_path / "in"
    write_tone(src / "a.wav")
    write_tone(src / "mels" / "old.wav")  # inside the output folder: not an input
    proc = supermel("batch", "in", "in/mels", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warning = [ln for ln in proc.stderr.splitlines() if ln.startswith("supermel: warning: ")]
    assert len(warning) == 1, proc.stderr
    assert "the output folder 'in/mels' is inside the input folder 'in'" in warning[0]
    assert "1 audio file excluded (mels/old.wav)" in warning[0]
    assert files_under(src / "mels") == {"old.wav", "a.npy", MANIFEST_NAME}
    # the output folder holding the inputs: all excluded, explained
    proc = supermel("batch", "in/mels", "in", cwd=tmp_path)
    assert_one_line_error(proc, "the output folder 'in' contains the input folder 'in/mels'", "(old.wav)")


# --------------------------------------------------------------------------- 2. what a path is
@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["compute", "adir"], ["'adir' is a directory, not an audio file", "supermel batch"]),
        (["compute", "a.wav", "adir", "-o", "mels"], ["'adir' is a directory, not an audio file"]),
        (["plot", "adir"], ["'adir' is a directory, not an audio or .npy/.npz file"]),
        (["batch", "a.wav", "mels"], ["input 'a.wav' is a file, not a folder: use `supermel compute` for single files"]),
        (["batch", "adir", "notes.txt"], ["output folder 'notes.txt' is a file"]),
    ],
    ids=["compute-dir", "compute-dir-among-files", "plot-dir", "batch-file-input", "batch-file-output"],
)
def test_directory_or_file_in_the_wrong_place_is_named(tmp_path, argv, fragments):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "adir" / "x.wav")
    (tmp_path / "notes.txt").write_text("notes")
    before = files_under(tmp_path)
    line = assert_one_line_error(supermel(*argv, cwd=tmp_path), *fragments)
    assert "does not exist" not in line
    assert files_under(tmp_path) == before


# --------------------------------------------------------------------------- 3. output paths checked first
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["compute", "a.wav", "-o", "notes.txt/out.npy"], "cannot write output 'notes.txt/out.npy': 'notes.txt' is a regular file, not a folder"),
        (["compute", "a.wav", "-o", "notes.txt/deeper/out.npy"], "'notes.txt' is a regular file, not a folder"),
        (["compute", "a.wav", "-o", "ok.npy", "--plot", "notes.txt/x.png"], "cannot write plot 'notes.txt/x.png': 'notes.txt' is a regular file, not a folder"),
        (["compute", "a.wav", "b.wav", "-o", "mels", "--plot", "notes.txt/plots"], "cannot write plot 'notes.txt/plots/a.png'"),
        (["plot", "a.wav", "-o", "notes.txt/a.png"], "cannot write plot 'notes.txt/a.png': 'notes.txt' is a regular file, not a folder"),
        (["batch", "in", "notes.txt/mels"], "cannot write to output folder 'notes.txt/mels': 'notes.txt' is a regular file, not a folder"),
    ],
    ids=["output", "output-deeper", "plot", "plots-folder", "plot-command", "batch"],
)
def test_output_under_a_regular_file_fails_first_and_writes_nothing(tmp_path, argv, fragment):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav", seed=1)
    write_tone(tmp_path / "in" / "c.wav")
    (tmp_path / "notes.txt").write_text("notes")
    before = files_under(tmp_path)
    line = assert_one_line_error(supermel(*argv, cwd=tmp_path), fragment)
    assert "Errno" not in line
    assert files_under(tmp_path) == before  # no ok.npy, no mels/, no probe or temporary files


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder that cannot take new files: read-only permissions, or /sys for root (who ignores them)."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if sys.platform != "linux" or not Path("/sys").is_dir():
        pytest.skip("running as root without /sys: no folder that refuses new files")
    return Path("/sys")  # sysfs refuses new files even to root


def test_unwritable_plot_path_fails_before_the_array_is_written(tmp_path):
    write_tone(tmp_path / "a.wav")
    work = tmp_path / "work"
    work.mkdir()
    bad = _unwritable_folder(tmp_path)
    try:
        proc = supermel("compute", tmp_path / "a.wav", "-o", "a.npy", "--plot", bad / "supermel_test_plot.png", cwd=work)
        assert_one_line_error(proc, f"cannot write plot '{bad / 'supermel_test_plot.png'}'", f"cannot create files in '{bad}'")
        assert files_under(work) == set()  # the .npy was not written either
        assert not (bad / "supermel_test_plot.png").exists()
    finally:
        if bad != Path("/sys"):
            bad.chmod(0o755)


# --------------------------------------------------------------------------- 4. one file name for several inputs
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["-o", "two.npy"], "-o 'two.npy' names one .npy file but there are 2 inputs: give a folder for several inputs (e.g. -o mels/)"),
        (["-o", "two.NPZ"], "-o 'two.NPZ' names one .NPZ file but there are 2 inputs"),
        (["-o", "mels", "--plot", "both.png"], "--plot 'both.png' names one .png file but there are 2 inputs: give a folder for several inputs (e.g. --plot plots/)"),
    ],
    ids=["npy", "npz", "png"],
)
def test_file_name_for_several_inputs_is_refused(tmp_path, argv, fragment):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav", seed=1)
    before = files_under(tmp_path)
    assert_one_line_error(supermel("compute", "a.wav", "b.wav", *argv, cwd=tmp_path), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]  # no folder named two.npy
    assert files_under(tmp_path) == before


def test_folder_named_like_a_file_is_fine_when_said_so(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav", seed=1)
    proc = supermel("compute", "a.wav", "b.wav", "-o", "two.npy/", "-q", cwd=tmp_path)  # a trailing slash: a folder
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path / "two.npy") == {"a.npy", "b.npy"}


# --------------------------------------------------------------------------- 5. usage errors: one line
@pytest.mark.parametrize(
    "argv, message, command",
    [
        (["compute", "--bogus"], "unrecognized arguments: --bogus", "supermel compute"),
        (["compute", "a.wav", "--n-fft", "x"], "argument --n-fft: 'x' is not an integer", "supermel compute"),
        (["compute", "a.wav", "--format", "wav"], "argument --format: invalid choice: 'wav'", "supermel compute"),
        (["batch", "in"], "the following arguments are required: OUT_DIR", "supermel batch"),
        (["plot", "-o"], "argument -o/--output: expected one argument", "supermel plot"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'", "supermel"),
        (["--bogus"], "unrecognized arguments: --bogus", "supermel"),
    ],
    ids=["unknown-option", "bad-int", "bad-choice", "missing-positional", "missing-value", "unknown-command", "unknown-top-option"],
)
def test_usage_errors_are_one_line_with_a_help_hint(tmp_path, argv, message, command):
    line = assert_one_line_error(supermel(*argv, cwd=tmp_path), message)
    assert line == f"supermel: error: {line[len('supermel: error: '):]}"
    assert line.endswith(f" (see `{command} --help`)"), line
    assert "usage:" not in line
    assert files_under(tmp_path) == set()


def test_help_still_prints_the_full_usage(tmp_path):
    proc = supermel("compute", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: supermel compute [-h]")
    assert "--n-mels M" in proc.stdout and "mel spectrogram options" in proc.stdout


# --------------------------------------------------------------------------- 6. truncated WAV
def test_truncated_wav_warns_with_the_shortfall(tmp_path):
    path = write_truncated(tmp_path / "x.wav")
    with pytest.warns(TruncatedAudioWarning, match=r"x\.wav: header declares 48000 frames but the file holds 12000; reading what is there"):
        y, sr = load(path)
    assert y.shape == (12000,) and sr == 16000
    np.testing.assert_allclose(y, librosa.load(path, sr=None)[0], atol=1e-6)
    # an intact file, and a streamed header with an unknown size (0xFFFFFFFF), read silently
    good = write_tone(tmp_path / "good.wav", sr=16000, seconds=1.0)
    streamed = bytearray(good.read_bytes())
    at = streamed.index(b"data") + 4
    streamed[at:at + 4] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(good)[0].shape == (16000,)
        assert load(tmp_path / "streamed.wav")[0].shape == (16000,)


def test_truncated_wav_warns_once_without_soundfile(tmp_path, monkeypatch):
    path = write_truncated(tmp_path / "x.wav")
    monkeypatch.setitem(sys.modules, "soundfile", None)  # the scipy fallback (which warns in bytes itself)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y, _ = load(path)
    assert y.shape == (12000,)
    assert [type(w.message) for w in caught] == [TruncatedAudioWarning], [str(w.message) for w in caught]


def test_truncated_wav_in_the_cli_is_a_one_line_warning(tmp_path):
    write_truncated(tmp_path / "x.wav")
    write_tone(tmp_path / "good.wav")
    proc = supermel("compute", "x.wav", "good.wav", "-o", "mels", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["supermel: warning: x.wav: header declares 48000 frames but the file holds 12000; reading what is there"]
    assert np.load(tmp_path / "mels" / "x.npy").shape == (128, 12000 // 512 + 1)
    # batch: printed too, and noted in the manifest
    proc = supermel("batch", ".", "out", "--glob", "*.wav", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "supermel: warning: x.wav: header declares 48000 frames but the file holds 12000" in proc.stderr
    entries = {e["input"]: e for e in json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["files"]}
    assert entries["x.wav"]["status"] == "done" and "header declares 48000 frames but the file holds 12000" in entries["x.wav"]["warning"]
    assert "warning" not in entries["good.wav"]


# --------------------------------------------------------------------------- 7. the plot's mel axis in Hz

def check_hz_axis(fig, *, n_mels: int, fmin: float, fmax: float, htk: bool, expect: tuple = ()) -> list:
    """The y ticks are Hz labels at the positions of those frequencies among librosa's mel band centres."""
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Frequency (Hz, mel scale)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) >= 3 and all(lab.isdigit() for lab in labels), labels
    centres = librosa.hz_to_mel(librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)[1:-1], htk=htk)
    step = centres[1] - centres[0]
    for pos, lab in zip(ax.get_yticks(), labels):
        expected = (librosa.hz_to_mel(float(lab), htk=htk) - centres[0]) / step  # fractional band index
        assert abs(pos - expected) < 1e-6, (lab, pos, expected)
        assert -0.5 <= pos <= n_mels - 0.5
    assert ax.get_ylim() == pytest.approx((-0.5, n_mels - 0.5))
    for hz in expect:
        assert hz in labels, (hz, labels)
    return labels


def test_plot_mel_axis_in_hz(tmp_path, saved_figures, capsys):
    wav = write_tone(tmp_path / "tone.wav", seconds=1.0)
    # audio, librosa's defaults at 22.05 kHz (the rate of the file)
    assert main(["plot", str(wav), "-o", str(tmp_path / "a.png")]) == 0
    check_hz_axis(saved_figures[-1], n_mels=128, fmin=0.0, fmax=11025.0, htk=False, expect=("512", "1024", "2048", "4096", "8192"))
    # audio with HTK, fmin/fmax and a resample
    assert main(["plot", str(wav), "-o", str(tmp_path / "b.png"), "--sr", "16000", "--n-mels", "40", "--fmin", "50", "--fmax", "7000", "--htk"]) == 0
    check_hz_axis(saved_figures[-1], n_mels=40, fmin=50.0, fmax=7000.0, htk=True, expect=("1024", "4096"))
    # an .npz carries its parameters; a bare .npy needs --sr (librosa's defaults otherwise)
    assert main(["compute", str(wav), "-o", str(tmp_path / "m.npz"), "-q", "--n-mels", "64", "--fmax", "8000"]) == 0
    assert main(["plot", str(tmp_path / "m.npz"), "-o", str(tmp_path / "c.png")]) == 0
    check_hz_axis(saved_figures[-1], n_mels=64, fmin=0.0, fmax=8000.0, htk=False)
    assert main(["compute", str(wav), "-o", str(tmp_path / "m.npy"), "-q"]) == 0
    assert main(["plot", str(tmp_path / "m.npy"), "-o", str(tmp_path / "d.png"), "--sr", "22050"]) == 0
    check_hz_axis(saved_figures[-1], n_mels=128, fmin=0.0, fmax=11025.0, htk=False)
    capsys.readouterr()
    # unknown rate: bin numbers, and the label and the summary line say so
    assert main(["plot", str(tmp_path / "m.npy"), "-o", str(tmp_path / "e.png")]) == 0
    assert saved_figures[-1].axes[0].get_ylabel() == "Mel bin (frequencies unknown)"
    assert "mel axis in bins: pass --sr for Hz" in capsys.readouterr().out
    assert {"a.png", "b.png", "c.png", "d.png", "e.png"} <= files_under(tmp_path)


def test_compute_plot_has_a_hz_axis(tmp_path, saved_figures):
    wav = write_tone(tmp_path / "tone.wav", sr=16000, seconds=1.0)
    assert main(["compute", str(wav), "-o", str(tmp_path / "t.npy"), "--plot", str(tmp_path / "t.png"), "-q", "--n-mels", "80"]) == 0
    check_hz_axis(saved_figures[-1], n_mels=80, fmin=0.0, fmax=8000.0, htk=False, expect=("1024", "4096"))


def test_mel_figure_falls_back_to_bins_when_rows_do_not_match():
    mel = np.abs(np.random.default_rng(0).standard_normal((30, 20))) + 0.1
    fig = _mel_figure(mel, sr=16000, hop_length=160, mel_config={"n_mels": 40, "fmin": 0.0, "fmax": None, "htk": False})
    assert fig.axes[0].get_ylabel() == "Mel bin (frequencies unknown)"  # 30 rows, 40 bands configured
    fig = _mel_figure(mel, sr=16000, hop_length=160, mel_config={"n_mels": 30, "fmin": 0.0, "fmax": None, "htk": False})
    check_hz_axis(fig, n_mels=30, fmin=0.0, fmax=8000.0, htk=False)
    # a narrow band: a few bins labelled with their centre frequencies
    fig = _mel_figure(mel, sr=16000, hop_length=160, mel_config={"n_mels": 30, "fmin": 1000.0, "fmax": 1300.0, "htk": False})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    centres = librosa.mel_frequencies(n_mels=32, fmin=1000.0, fmax=1300.0)[1:-1]
    assert labels == [f"{centres[int(p)]:.0f}" for p in fig.axes[0].get_yticks()]


@pytest.mark.skipif(not HAS_PRESETS, reason="supermel.presets is not in this tree")
def test_plot_of_a_kaldi_preset_uses_its_mel_parameters(tmp_path, saved_figures):
    write_tone(tmp_path / "in" / "a.wav", sr=16000, seconds=0.8)
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--preset", "kaldi-fbank", "--format", "npz", "-q"]) == 0
    assert main(["plot", str(tmp_path / "out" / "a.npz"), "-o", str(tmp_path / "k.png")]) == 0
    # Kaldi: HTK mel formula, low_freq 20, high_freq 0 = Nyquist, 80 bins
    check_hz_axis(saved_figures[-1], n_mels=80, fmin=20.0, fmax=8000.0, htk=True, expect=("1024", "4096"))
    assert main(["plot", str(tmp_path / "in" / "a.wav"), "--preset", "whisper-80", "-o", str(tmp_path / "w.png")]) == 0
    check_hz_axis(saved_figures[-1], n_mels=80, fmin=0.0, fmax=8000.0, htk=False)


# --------------------------------------------------------------------------- 8. .gitignore
def test_readme_plot_is_git_ignored():
    gitignore = REPO / ".gitignore"
    assert "example_mel.png" in gitignore.read_text().split()
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    require_program("git", install="apt-get install git", why="git check-ignore reads .gitignore")
    proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "example_mel.png"], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("ext, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_24")])
@pytest.mark.parametrize("channels", [1, 2])
def test_load_equals_soundfiles_float_read_bit_for_bit(tmp_path, ext, subtype, channels):
    """16-bit PCM is read as int16 and scaled by supermel (faster); every subtype must give
    soundfile's float32 samples exactly (and librosa.load's mono mean)."""
    sf = pytest.importorskip("soundfile")
    x = np.clip(np.random.default_rng(channels).standard_normal((3001, channels)) * 0.4, -1, 1)
    path = tmp_path / f"a.{ext}"
    sf.write(str(path), x, 16000, subtype=subtype)
    want, sr = sf.read(str(path), dtype="float32", always_2d=True)
    got, got_sr = load(path, mono=False)
    assert got_sr == sr and got.dtype == np.float32 and np.array_equal(got, want.T)
    mono, _ = load(path)
    assert np.array_equal(mono, want[:, 0] if channels == 1 else want.T.mean(axis=0, dtype=np.float32))
    if channels == 2:
        librosa = pytest.importorskip("librosa")
        assert np.array_equal(mono, librosa.load(str(path), sr=None)[0])
