"""
Model front ends side by side
=============================

A front end is a model's own input features as a module: ``supermel.frontend(name)``. Each is a
frozen configuration plus pre- and post-processing around the same core, tested against the
model's reference code. Here four of them on the same second of speech: OpenAI Whisper (log10,
clamped, scaled), BigVGAN (24 kHz, 100 bands, ln), Kaldi fbank (povey window, ``snip_edges``,
time-major ``(T, bins)``) and NVIDIA NeMo (per-feature normalised).
"""

import matplotlib.pyplot as plt
import numpy as np

import supermel

y16, sr = supermel.audio.example_audio()
y16 = y16[: 3 * sr]

panels = []
for name in ("whisper-80", "bigvgan-24k-100", "kaldi-fbank", "nemo-80"):
    fe = supermel.frontend(name)
    cfg = fe.config.as_dict()
    rate = int(cfg["sr"]) if "sr" in cfg else int(cfg.get("sample_frequency", 16000))
    y = y16 if rate == sr else supermel.audio.resample(y16, orig_sr=sr, target_sr=rate)
    features = np.asarray(fe(y))
    if fe.time_axis in (-2, 0):  # Kaldi fbank is time-major (T, bins): show it as (bins, T)
        features = features.T
    print(
        f"{name:>16}: {rate} Hz in, features {tuple(features.shape)} (bands, frames), "
        f"range [{features.min():.2f}, {features.max():.2f}]"
    )
    panels.append((name, rate, features))

# %%
# Each panel's colour scale is the front end's own (Whisper about [-1, 1.5], BigVGAN ln-magnitude,
# Kaldi ln-energy, NeMo normalised to zero mean and unit variance per band).
# BigVGAN's bands above 8 kHz are empty: the clip is 16 kHz speech, resampled to 24 kHz.

fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), layout="constrained")
for ax, (name, rate, features) in zip(axes.flat, panels):
    img = ax.imshow(
        features,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, 3.0, 0, features.shape[0]),
    )
    ax.set(
        title=f"{name} ({rate / 1000:g} kHz, {features.shape[0]} bands)",
        xlabel="time (s)",
        ylabel="band",
    )
    fig.colorbar(img, ax=ax)
plt.show()
