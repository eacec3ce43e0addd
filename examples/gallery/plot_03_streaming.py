"""
Streaming, chunk by chunk, with its latency
===========================================

A :class:`supermel.StreamingMelSpectrogram` takes the audio in chunks of any size (here 20 ms,
320 samples, as a microphone delivers it) and returns only the frames each chunk completes. The
concatenation equals the offline call to float32 rounding. Frame ``t`` (centred on sample
``200 t``) needs ``latency_samples`` = 400 samples (25 ms) beyond its centre, plus the wait for
the chunk that brings them.
"""

import matplotlib.pyplot as plt
import numpy as np

import supermel

y, sr = supermel.audio.example_audio()
y = y[: 3 * sr]  # 3 s are enough to see the pattern
params = dict(sr=sr, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)

stream = supermel.StreamingMelSpectrogram(**params)
chunk = 320  # 20 ms
parts, emitted_at = [], []  # emitted_at[t]: the sample count when frame t came out
for start in range(0, len(y), chunk):
    frames = stream.push(y[start : start + chunk])
    parts.append(frames)
    emitted_at += [min(start + chunk, len(y))] * frames.shape[-1]
tail = stream.flush()
parts.append(tail)
emitted_at += [len(y)] * tail.shape[-1]

streamed = np.concatenate(parts, axis=-1)
offline = supermel.melspectrogram(y=y, **params)
err = np.abs(streamed - offline).max() / offline.max()
print(
    f"{streamed.shape[-1]} frames streamed, {offline.shape[-1]} offline; largest difference {err:.1e} of the peak"
)
print(
    f"latency_samples = {stream.latency_samples} ({1e3 * stream.latency_samples / sr:.1f} ms)"
)
assert streamed.shape == offline.shape and err <= 5e-7

# %%
# When each frame comes out: its centre time (x) against the time its last sample arrived (y).
# The gap is the look-ahead (25 ms) plus up to one chunk (20 ms) of waiting; the last frames,
# which need librosa's right-edge padding, come from ``flush()``.

t_centre = 1e3 * np.arange(streamed.shape[-1]) * 200 / sr
t_out = 1e3 * np.asarray(emitted_at) / sr
delay = t_out - t_centre
fig, (ax0, ax1) = plt.subplots(
    2, 1, figsize=(9, 6.5), layout="constrained", height_ratios=(1, 1.2)
)
ax0.plot(t_centre, delay, ".", ms=3, label="frame emitted after its centre")
ax0.axhline(
    1e3 * stream.latency_samples / sr,
    color="C3",
    ls="--",
    label=f"look-ahead {1e3 * stream.latency_samples / sr:.1f} ms",
)
ax0.axhline(
    1e3 * (stream.latency_samples + chunk) / sr,
    color="C2",
    ls=":",
    label="look-ahead + one 20 ms chunk",
)
ax0.set(
    xlabel="frame centre (ms)",
    ylabel="delay (ms)",
    title="latency of each streamed frame (20 ms chunks)",
    ylim=(0, None),
)
n_tail = tail.shape[-1]
ax0.annotate(
    f"the last {n_tail} frames: flush()",
    xy=(t_centre[-1], delay[-1]),
    xytext=(t_centre[-1] - 900, 8),
    arrowprops=dict(arrowstyle="->"),
    fontsize="small",
)
ax0.set_ylim(0, 62)
ax0.legend(loc="upper left", fontsize="small", ncols=3)
img = ax1.imshow(
    supermel.power_to_db(streamed, ref=np.max),
    origin="lower",
    aspect="auto",
    cmap="magma",
    extent=(0, 1e3 * len(y) / sr, 0, 80),
)
ax1.set(
    xlabel="time (ms)",
    ylabel="mel band",
    title=f"the streamed frames (largest difference to offline: {err:.0e} of the peak)",
)
fig.colorbar(img, ax=ax1, format="%+2.0f dB")
plt.show()
