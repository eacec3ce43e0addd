"""
supermel and librosa on speech
==============================

``supermel.melspectrogram`` takes librosa's keyword arguments and returns librosa's numbers. Here
both compute the mel spectrogram of the bundled speech clip in the reference configuration
(16 kHz, ``n_fft=800``, ``hop_length=200``, 80 mels, 55-7600 Hz), and the third panel maps
their difference, relative to the spectrogram's peak.
"""

import librosa
import matplotlib.pyplot as plt
import numpy as np

import supermel

y, sr = supermel.audio.example_audio()  # 12 s of speech, 16 kHz, float32
params = dict(sr=sr, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)

M = supermel.melspectrogram(y=y, **params)  # (80, 961) float32
R = librosa.feature.melspectrogram(y=y, **params)  # the reference

rel = np.linalg.norm(M - R) / np.linalg.norm(R)
peak = np.abs(M - R).max() / R.max()
print(
    f"shape {M.shape}, relative Frobenius error {rel:.1e}, largest difference {peak:.1e} of the peak"
)
assert rel <= 2e-5  # the tested float32 bound (docs: What "equal" means)

# %%
# The spectrograms in dB and their difference. The difference is float32 rounding, about 1e-7 of
# the peak at most: the third panel shows it on a log scale (bit-equal cells at the bottom of
# the scale), and it lives where the energy is.

from matplotlib.colors import LogNorm

kw = dict(sr=sr, hop_length=200, x_axis="time", y_axis="mel", fmin=55, fmax=7600)
fig, axes = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True, layout="constrained")
panels = ((M, "supermel.melspectrogram"), (R, "librosa.feature.melspectrogram"))
for ax, (S, title) in zip(axes, panels):
    img = librosa.display.specshow(supermel.power_to_db(S, ref=np.max), ax=ax, **kw)
    ax.set(title=title, xlabel=None)
    fig.colorbar(img, ax=ax, format="%+2.0f dB")
diff = np.abs(M - R) / R.max()
diff = np.maximum(diff, 1e-12)  # bit-equal cells: the bottom of the scale
img = librosa.display.specshow(
    diff, ax=axes[2], cmap="viridis", norm=LogNorm(1e-12, 1e-6), **kw
)
axes[2].set(title=f"|supermel - librosa| / peak (log scale; largest {peak:.1e})")
fig.colorbar(img, ax=axes[2], label="relative to the peak")
plt.show()
