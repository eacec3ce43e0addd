"""Kaldi fbank (``kaldi-fbank``, ``lhotse-fbank``, ``wenet-fbank``) against kaldi-native-fbank.

The reference, ``ref_knf`` (``OnlineFbank`` with dither 0), and its tolerance
``KALDI`` are in _helpers.py (test_kaldi_models.py's FunASR uses them too).
Options, other sample rates, short inputs, the mel bank itself, dither, and the
streaming form against the offline one (tolerances: _helpers.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import supermel
from _helpers import F32, KALDI, check_abs, clip, close, random_cuts, ref_knf, stream_all
from conftest import SEED, check_log

import kaldi_native_fbank as knf  # noqa: E402  (the reference; in the test extra)


# =========================================================================== kaldi-fbank, lhotse-fbank, wenet-fbank vs kaldi-native-fbank
@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_kaldi_fbank_vs_knf(snip_edges, signal, speech_at, noise16):
    x = speech_at(16000) if signal == "speech" else noise16
    fe = supermel.frontend("kaldi-fbank", snip_edges=snip_edges)
    out = fe(x)
    n = len(x)
    assert out.shape == ((1 + (n - 400) // 160) if snip_edges else (n + 80) // 160, 80) == (fe.num_frames(n), 80)
    check_log(out, ref_knf(x, snip_edges=snip_edges), what=f"snip_edges={snip_edges}", **KALDI)


def test_lhotse_sherpa_fbank_vs_knf(speech_at):
    # sherpa-onnx's configuration of knf (frontends.md 5.4): snip_edges False, high_freq -400, [-1, 1] input.
    x = speech_at(16000)
    out = supermel.frontend("lhotse-fbank")(x)
    assert out.shape == ((len(x) + 80) // 160, 80)
    check_log(out, ref_knf(x, snip_edges=False, high_freq=-400.0), what="lhotse-fbank", **KALDI)


def test_int16_scale_vs_knf(speech_at):
    x = speech_at(16000)[: 16000 * 4]
    check_log(supermel.frontend("wenet-fbank")(x), ref_knf(x * 32768.0), what="wenet-fbank", **KALDI)
    check_log(supermel.frontend("kaldi-fbank", int16_scale=True)(x), ref_knf(x * 32768.0), what="int16_scale", **KALDI)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (dict(window_type="hamming"), dict(window_type="hamming")),
        (dict(window_type="hanning", snip_edges=False), dict(window_type="hanning", snip_edges=False)),
        (dict(window_type="rectangular"), dict(window_type="rectangular")),
        (dict(window_type="blackman", blackman_coeff=0.4), dict(window_type="blackman", blackman_coeff=0.4)),
        (dict(remove_dc_offset=False, preemphasis_coefficient=0.0), dict(remove_dc_offset=False, preemph_coeff=0.0)),
        (dict(frame_length=20.0, frame_shift=12.5, snip_edges=False), dict(frame_length_ms=20.0, frame_shift_ms=12.5, snip_edges=False)),
        (dict(round_to_power_of_two=False), dict(round_to_power_of_two=False)),
        (dict(num_mel_bins=23, low_freq=64.0, high_freq=7000.0), dict(num_bins=23, low_freq=64.0, high_freq=7000.0)),
        (dict(use_power=False), dict(use_power=False)),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) if d else "-",
)
def test_kaldi_options_vs_knf(ours, theirs, speech_at):
    x = speech_at(16000)[: 16000 * 3]
    theirs = dict(theirs)
    ref = ref_knf(x, num_bins=theirs.pop("num_bins", 80), **theirs)
    power = 2 if ours.get("use_power", True) else 1
    check_log(supermel.frontend("kaldi-fbank", **ours)(x), ref, what=str(ours), **{**KALDI, "power": power})


@pytest.mark.parametrize(
    "opts",
    [
        dict(use_energy=True, energy_floor=0.0),  # raw energy: before pre-emphasis and window, first column
        dict(use_energy=True, energy_floor=0.0, raw_energy=False),  # after the window
        dict(use_energy=True, energy_floor=1.0, htk_compat=True),  # floored, last column
        dict(use_energy=True, energy_floor=0.0, snip_edges=False),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
@pytest.mark.parametrize("signal", ["speech", "silence-start"])
def test_kaldi_energy_vs_knf(opts, signal, speech_at):
    x = speech_at(16000)[: 16000 * 3].copy()
    if signal == "silence-start":
        x[:4000] = 0.0  # frames of digital silence: the energy floors (eps or energy_floor) decide
    out = supermel.frontend("kaldi-fbank", **opts)(x)
    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.mel_opts.num_bins = 80
    for k, v in opts.items():
        setattr(o.frame_opts if hasattr(o.frame_opts, k) else o, k, v)
    f = knf.OnlineFbank(o)
    f.accept_waveform(16000, x.tolist())
    f.input_finished()
    ref = np.array([f.get_frame(i) for i in range(f.num_frames_ready)], dtype=np.float64)
    assert out.shape == ref.shape == (supermel.frontend("kaldi-fbank", **opts).num_frames(len(x)), 81)
    e = -1 if opts.get("htk_compat") else 0
    # the log energy: a sum of squares in float32 on both sides, measured <= 1e-5
    check_abs(out[:, e], ref[:, e], 1e-4, f"{opts} energy")
    mel = np.delete(out, e, axis=1)
    check_log(mel, np.delete(ref, e, axis=1), what=f"{opts} mel", **KALDI)


# =========================================================================== rates, short inputs, the bank, dither
@pytest.mark.parametrize("sr", [8000, 22050, 44100])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_kaldi_other_rates_vs_knf(sr, snip_edges, speech_at):
    x = speech_at(sr)[: sr * 2]
    out = supermel.frontend("kaldi-fbank", sample_frequency=sr, snip_edges=snip_edges, num_mel_bins=40)(x)
    check_log(out, ref_knf(x, num_bins=40, sr=sr, snip_edges=snip_edges), what=f"{sr} Hz", **KALDI)


@pytest.mark.parametrize("n", [1, 79, 80, 239, 240, 399, 400, 401, 559, 560, 1000])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_kaldi_short_inputs_vs_knf(n, snip_edges):
    # Frame counts at the boundaries, and Kaldi's repeated edge reflection when the
    # signal is shorter than a frame (snip_edges=False).
    x = (0.1 * np.random.default_rng(SEED + n).standard_normal(n)).astype(np.float32)
    ref = ref_knf(x, num_bins=23, snip_edges=snip_edges)
    out = supermel.frontend("kaldi-fbank", num_mel_bins=23, snip_edges=snip_edges)(x)
    assert out.shape == ref.shape
    if ref.size:  # white noise: no near-silent cells; float32 bank rounding only (measured 1.1e-5)
        check_abs(out, ref, 1e-4, f"n={n}")


def test_kaldi_filters_vs_knf():
    # The bank itself: knf computes it in float32 (hence the 2e-5).
    for bins, low, high in [(80, 20.0, 0.0), (80, 20.0, -400.0), (23, 20.0, 0.0), (40, 100.0, 7000.0)]:
        mo = knf.MelBanksOptions()
        mo.num_bins, mo.low_freq, mo.high_freq = bins, low, high
        theirs = np.array(knf.MelBanks(mo, knf.FrameExtractionOptions(), 1.0).get_matrix())
        ours = supermel.kaldi_mel_filters(sr=16000, n_fft=512, n_mels=bins, low_freq=low, high_freq=high, dtype=np.float64)
        assert ours.shape == (bins, 257) and np.all(ours[:, -1] == 0.0)
        check_abs(ours[:, : theirs.shape[1]], theirs, 2e-5, f"bank {bins} {low}-{high}")


def test_kaldi_dither():
    # Digital silence: with dither 0 every cell is the log floor ln(float32 eps) (Kaldi's
    # floor); dither adds fresh Gaussian noise to every frame, lifting every cell above it.
    silence = np.zeros(16000, np.float32)
    a = supermel.frontend("kaldi-fbank")(silence)
    assert np.all(a == np.float32(np.log(np.finfo(np.float32).eps)))
    fe = supermel.frontend("kaldi-fbank", dither=1.0, int16_scale=True)
    b, c = fe(silence), fe(silence)
    assert np.all(b > a) and np.all(np.isfinite(b)) and not np.array_equal(b, c)


# =========================================================================== streaming
@pytest.mark.usefixtures("torch_kernels")
def test_kaldi_stream_memory_is_bounded(speech_at):
    fe = supermel.frontend("lhotse-fbank")
    stream = fe.streaming()
    y = speech_at(16000)
    for _ in range(3):  # 36 s
        for i in range(0, len(y), 1600):
            stream.push(y[i : i + 1600])
    held = max(g.buf.shape[-1] for g in stream._engine.groups)
    assert held <= 400 + 1600, held  # a frame length plus a chunk


@pytest.mark.usefixtures("torch_kernels")
@pytest.mark.parametrize("overrides", [dict(use_energy=True), dict(use_energy=True, snip_edges=False, raw_energy=False, htk_compat=True)])
def test_kaldi_energy_streams_equal_offline(overrides, speech_at):
    fe = supermel.frontend("kaldi-fbank", **overrides)
    y = clip(speech_at, 16000, 1.5)
    want = fe(y)
    assert want.shape[-1] == 81
    got = stream_all(fe.streaming(), y, random_cuts(len(y), np.random.default_rng(SEED + 5)), fe.time_axis)
    close(got, want, F32, f"kaldi-fbank {overrides}")
