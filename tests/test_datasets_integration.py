"""``supermel.integrations.datasets.add_features`` on small in-memory Hugging Face datasets.

No torchcodec is installed here (``datasets`` >= 4 needs it to decode its ``Audio`` feature): the
function decodes with soundfile and resamples with soxr. References: librosa (``librosa.load`` with
its default soxr_hq resampler + ``librosa.feature.melspectrogram``) and supermel's own front end on
the same decoded audio.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import datasets  # noqa: E402  (the 'datasets' extra is part of the test extra: a missing one must fail, not skip)
import librosa  # noqa: E402
import soundfile as sf  # noqa: E402

import supermel  # noqa: E402
from supermel import ParameterError  # noqa: E402
from supermel.integrations.datasets import add_features  # noqa: E402

TOL32 = 2e-5
RATES = (16000, 22050, 8000, 44100)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def clip(k: int, sr: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(k)
    t = np.arange(int(sr * (0.5 + 0.1 * k))) / sr
    y = 0.3 * np.sin(2 * np.pi * (150 + 700 * t) * t)[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    return y.astype(np.float32)


def encoded(k: int, sr: int, fmt: str, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, clip(k, sr, channels), sr, format=fmt)
    return buf.getvalue()


@pytest.fixture
def rows() -> list:
    """{bytes, path} rows: FLAC and WAV, four rates, one stereo."""
    return [{"bytes": encoded(k, sr, "FLAC" if k % 2 else "WAV", channels=2 if k == 3 else 1), "path": f"clip{k}.{'flac' if k % 2 else 'wav'}"} for k, sr in enumerate(RATES)]


def bytes_dataset(rows):
    return datasets.Dataset.from_dict({"audio": rows, "id": list(range(len(rows)))}).cast_column("audio", datasets.Audio(decode=False))


def librosa_ref(data: bytes, **kw) -> np.ndarray:
    sr = kw.pop("sr", None)
    y, file_sr = librosa.load(io.BytesIO(data), sr=sr)
    return librosa.feature.melspectrogram(y=y, sr=file_sr, **kw)


def test_core_features_from_an_audio_column_resampled_as_librosa(rows):
    ds = add_features(bytes_dataset(rows), sr=16000, n_fft=512, hop_length=160, n_mels=64)
    assert ds.column_names == ["audio", "id", "mel"]
    assert ds.features["mel"] == datasets.Array2D(shape=(None, 64), dtype="float32")
    for row, src in zip(ds, rows):
        got = np.asarray(row["mel"])  # stored time-major
        assert rel_err(got.T, librosa_ref(src["bytes"], sr=16000, n_fft=512, hop_length=160, n_mels=64)) <= TOL32, src["path"]


def test_each_row_keeps_its_own_rate_without_sr(rows):
    ds = add_features(bytes_dataset(rows), n_mels=40)
    for row, src in zip(ds, rows):
        assert rel_err(np.asarray(row["mel"]).T, librosa_ref(src["bytes"], n_mels=40)) <= TOL32, src["path"]


def test_a_preset_equals_the_front_end_on_the_same_audio(rows):
    ds = add_features(bytes_dataset(rows), preset="whisper-80", feature_column="logmel")
    fe = supermel.frontend("whisper-80")
    for row, src in zip(ds, rows):
        y, sr = sf.read(io.BytesIO(src["bytes"]), dtype="float32", always_2d=True)
        y = supermel.audio.resample(y.mean(axis=1).astype(np.float32), orig_sr=sr, target_sr=16000)
        np.testing.assert_array_equal(np.asarray(row["logmel"], dtype=np.float32), fe(y).T)


def test_time_major_presets_stay_time_major(rows):
    ds = add_features(bytes_dataset(rows[:1]), preset="kaldi-fbank")
    y, sr = sf.read(io.BytesIO(rows[0]["bytes"]), dtype="float32")
    want = supermel.frontend("kaldi-fbank")(y)  # (frames, 80) already
    np.testing.assert_array_equal(np.asarray(ds[0]["mel"], dtype=np.float32), want)


def test_an_audio_feature_column_needs_no_torchcodec(rows):
    ds = datasets.Dataset.from_dict({"audio": rows}).cast_column("audio", datasets.Audio())  # decode=True
    out = add_features(ds, n_mels=32)
    assert np.asarray(out[0]["mel"]).shape[1] == 32
    assert out.features["audio"] == datasets.Audio(decode=False)


def test_paths_and_decoded_arrays(rows, tmp_path):
    paths = []
    for src in rows:
        p = tmp_path / src["path"]
        p.write_bytes(src["bytes"])
        paths.append(str(p))
    by_path = add_features(datasets.Dataset.from_dict({"file": paths}), "file", sr=16000, n_mels=48)
    arrays = []
    for src in rows:
        y, sr = sf.read(io.BytesIO(src["bytes"]), dtype="float32")
        arrays.append({"array": y.mean(axis=1) if y.ndim == 2 else y, "sampling_rate": sr})
    by_array = add_features(datasets.Dataset.from_dict({"audio": arrays}), sr=16000, n_mels=48)
    for a, b, src in zip(by_path, by_array, rows):
        assert rel_err(np.asarray(a["mel"]).T, librosa_ref(src["bytes"], sr=16000, n_mels=48)) <= TOL32
        np.testing.assert_allclose(np.asarray(b["mel"]), np.asarray(a["mel"]), rtol=1e-6, atol=1e-9)  # float64 arrays in the table


def test_num_proc_after_torch_ran_in_the_parent(rows, tmp_path):
    """``num_proc=2`` with torch already running two threads here: no hang, the same features."""
    code = textwrap.dedent(
        f"""
        import io, pickle, sys, numpy as np, torch, datasets
        from supermel.integrations.datasets import add_features
        torch.set_num_threads(2)
        (torch.ones(300, 300) @ torch.ones(300, 300)).sum()  # the thread pool is up
        rows = pickle.load(open({str(tmp_path / "rows.pkl")!r}, "rb"))
        ds = datasets.Dataset.from_dict({{"audio": rows}}).cast_column("audio", datasets.Audio(decode=False))
        one = add_features(ds, preset="whisper-80")
        two = add_features(ds, preset="whisper-80", num_proc=2, batch_size=1)
        assert torch.get_num_threads() == 2, torch.get_num_threads()
        for a, b in zip(one, two):
            np.testing.assert_array_equal(np.asarray(a["mel"]), np.asarray(b["mel"]))
        print("same", len(two))
        """
    )
    import pickle

    (tmp_path / "rows.pkl").write_bytes(pickle.dumps(rows))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # a hang: end the whole group (the map's workers too), then fail
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("add_features(num_proc=2) hung after torch ran in the parent") from None
    assert proc.returncode == 0, stderr[-3000:]
    assert f"same {len(rows)}" in stdout


def test_errors_name_the_column_and_the_row(rows):
    ds = bytes_dataset(rows)
    with pytest.raises(ParameterError, match=r"audio_column='speech' is not a column of the dataset \(columns: \['audio', 'id'\]\)"):
        add_features(ds, "speech")
    with pytest.raises(ParameterError, match="feature_column='id' already exists"):
        add_features(ds, feature_column="id")
    with pytest.raises(ParameterError, match="pass \\['n_mels'\\] as overrides"):
        add_features(ds, preset="whisper-80", n_mels=64)
    bad = bytes_dataset([rows[0], {"bytes": b"RIFF0000WAVEjunk", "path": "broken.wav"}])
    with pytest.raises(ParameterError, match=r"column 'audio', row 1 of this batch: cannot read audio 'broken.wav'"):
        add_features(bad, n_mels=32)
