"""
ONNX export and check
=====================

:func:`supermel.export_onnx` writes the mel spectrogram as a real-valued ONNX graph (the DFT as
a matrix product: no complex type, no STFT operator), with dynamic batch and length, and checks
it with onnxruntime. Here the graph runs on clips of several lengths in one batch and is compared
with the torch module and with librosa.
"""

import os
import tempfile

import librosa
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

import supermel
from supermel.onnx import graph_problems, inference_session

y, sr = supermel.audio.example_audio()
params = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)
mel = supermel.MelSpectrogram(**params)

path = supermel.export_onnx(mel, os.path.join(tempfile.mkdtemp(), "mel.onnx"))
print(
    "exported",
    os.path.basename(path),
    f"{os.path.getsize(path) / 1e6:.1f} MB; problems:",
    graph_problems(path) or "none",
)

session = inference_session(path)
name = session.get_inputs()[0].name
errors = []
for seconds in (0.5, 1, 2, 4, 8):
    x = np.stack([y[: int(seconds * sr)], y[sr : sr + int(seconds * sr)]])  # a batch of 2
    out = session.run(None, {name: x})[0]
    ref = librosa.feature.melspectrogram(y=x, **params)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    errors.append((seconds, err, np.abs(out - mel(x)).max() / ref.max()))
    assert err <= 2e-5
for s, e, t in errors:
    print(
        f"{s:>4} s: relative error vs librosa {e:.1e}, largest difference to the torch module {t:.1e} of the peak"
    )

# %%
# The ONNX graph's output for 4 s of speech and its difference to librosa's.

x = y[: 4 * sr]
out = session.run(None, {name: x[None]})[0][0]
ref = librosa.feature.melspectrogram(y=x, **params)
fig, (ax0, ax1, ax2) = plt.subplots(
    1, 3, figsize=(11, 3.6), layout="constrained", width_ratios=(1.2, 1.2, 0.8)
)
img = ax0.imshow(
    supermel.power_to_db(out, ref=np.max), origin="lower", aspect="auto", cmap="magma"
)
ax0.set(title="onnxruntime (CPU)", xlabel="frame", ylabel="mel band")
fig.colorbar(img, ax=ax0, format="%+2.0f dB")
diff = np.maximum(np.abs(out - ref) / ref.max(), 1e-12)  # log scale; equal cells at 1e-12
img = ax1.imshow(diff, origin="lower", aspect="auto", cmap="viridis", norm=LogNorm(1e-12, 1e-6))
ax1.set(title="|onnx - librosa| / peak (log scale)", xlabel="frame")
fig.colorbar(img, ax=ax1)
ax2.semilogy([s for s, _, _ in errors], [e for _, e, _ in errors], "o-")
ax2.axhline(2e-5, color="k", ls="--", lw=1)
ax2.text(0.03, 2.4e-5, "tested bound 2e-5", transform=ax2.get_yaxis_transform(), fontsize="small")
ax2.set(
    xlabel="clip length (s)",
    ylabel="relative error vs librosa",
    title="dynamic length",
    ylim=(1e-8, 1e-4),
)
plt.show()
