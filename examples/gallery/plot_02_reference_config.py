"""
The reference configuration in numpy, torch and torch.compile
=============================================================

The configuration of the Supersonic GPU MelSpectrogram write-up: 16 kHz audio, a 50 ms window
(``n_fft=800``) every 12.5 ms (``hop_length=200``), 80 mels. The same call takes a numpy array
(numpy out), a tensor (tensor out, on the tensor's device), and the module form compiles with
``torch.compile(fullgraph=True)``: all three agree with librosa.
"""

import time

import librosa
import matplotlib.pyplot as plt
import numpy as np
import torch

import supermel

y, sr = supermel.audio.example_audio()
params = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80)
reference = librosa.feature.melspectrogram(y=y, **params)

# numpy in, numpy out
M_numpy = supermel.melspectrogram(y=y, **params)

# a tensor in, a tensor out; a batch (..., n_samples) is one call
yt = torch.from_numpy(y)
M_torch = supermel.melspectrogram(y=yt.repeat(2, 1), **params)[0]

# the module, compiled (real-valued end to end, so fullgraph=True holds)
mel = supermel.MelSpectrogram(**params)
device = "cuda" if torch.cuda.is_available() else "cpu"
mel = mel.to(device)
compiled = torch.compile(mel, fullgraph=True)
t0 = time.perf_counter()
M_compiled = compiled(yt.to(device)).cpu()
print(
    f"first compiled call (compilation included): {time.perf_counter() - t0:.1f} s on {device}"
)

results = {"numpy": M_numpy, "torch": M_torch.numpy(), "torch.compile": M_compiled.numpy()}
errors = {
    k: np.linalg.norm(v - reference) / np.linalg.norm(reference) for k, v in results.items()
}
for k, e in errors.items():
    print(f"{k:>14}: shape {results[k].shape}, relative error vs librosa {e:.1e}")
    assert e <= 2e-5

# %%
# Timings of one call on 12 s of audio (median of a few calls, this machine, whatever else it is
# doing: see the Benchmarks page for careful figures), and each route's error against librosa.


def median_ms(fn, n=7, warmup=10):
    for _ in range(warmup):  # the first calls of a process pay one-time costs
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


timings = {
    "librosa": median_ms(lambda: librosa.feature.melspectrogram(y=y, **params)),
    "numpy": median_ms(lambda: supermel.melspectrogram(y=y, **params)),
    "torch": median_ms(lambda: supermel.melspectrogram(y=yt, **params)),
    "torch.compile": median_ms(lambda: compiled(yt.to(device))),
}

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
names = list(timings)
ax0.barh(
    names, [timings[n] for n in names], color=["#999999", "#1f77b4", "#ff7f0e", "#2ca02c"]
)
ax0.invert_yaxis()
ax0.set(xlabel="ms per call (12 s of audio)", title="time (this build machine)")
ax1.bar(list(errors), list(errors.values()), color=["#1f77b4", "#ff7f0e", "#2ca02c"])
ax1.axhline(2e-5, color="k", ls="--", lw=1)
ax1.text(0.02, 2e-5, " tested bound 2e-5", va="bottom", transform=ax1.get_yaxis_transform())
ax1.set(
    yscale="log",
    ylim=(1e-9, 1e-4),
    ylabel="relative error vs librosa",
    title="error (float32)",
)
plt.show()
