"""
Wav2Lip's per-video-frame windows
=================================

Wav2Lip feeds its audio encoder, for video frame ``i``, the 16 mel columns starting at
``floor(80 i / fps)``: 200 ms of audio around the frame. :func:`supermel.wav2lip_mel_chunks`
cuts them from the ``wav2lip`` front end's output exactly as Wav2Lip's ``inference.py`` does (the
last window clamped to the end), and :class:`supermel.Wav2LipChunker` returns the same windows
live, as soon as their audio has arrived (look-ahead 212.5 ms).
"""

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np

import supermel

y, sr = supermel.audio.example_audio()
y = y[: 2 * sr]
fps = 25

fe = supermel.frontend("wav2lip")
mel = fe(y)  # (80, 1 + len(y) // 200), values in [-4, 4]
windows = supermel.wav2lip_mel_chunks(mel, fps=fps)  # (n_video_frames, 80, 16)
print(
    f"mel {mel.shape}, {windows.shape[0]} video frames at {fps} fps, windows {windows.shape[1:]}"
)

# the same windows, live: 20 ms audio chunks in, one window per video frame out
chunker = supermel.Wav2LipChunker(fps, frontend="wav2lip")
live = [w for start in range(0, len(y), 320) for w in chunker.push(y[start : start + 320])]
live += list(chunker.flush())
live = np.stack(live)
print(
    f"live: {live.shape[0]} windows, look-ahead {chunker.latency_ms} ms, "
    f"largest difference to offline {np.abs(live - windows).max():.1e}"
)
assert live.shape == windows.shape and np.abs(live - windows).max() <= 1.5e-4

# %%
# The mel spectrogram with the windows of video frames 0, 5, 10, ... drawn on it, and four of
# the windows as the model sees them.

fig = plt.figure(figsize=(9, 6.2), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=(1.3, 1))
ax = top.subplots()
ax.imshow(mel, origin="lower", aspect="auto", cmap="viridis", vmin=-4, vmax=4)
for i in range(0, windows.shape[0], 5):
    s = int(np.floor(80 * i / fps))
    ax.add_patch(
        patches.Rectangle(
            (s - 0.5, 1 + (i // 5) % 3 * 2), 16, 74, fill=False, ec="w", lw=1.2
        )
    )
    ax.text(s, 77, f"{i}", color="w", fontsize=8)
ax.set(
    xlabel="mel column (12.5 ms)",
    ylabel="mel band",
    title=f"wav2lip front end; white: the 16-column windows of video frames 0, 5, 10, ... ({fps} fps)",
)
axes = bottom.subplots(1, 4, sharey=True)
for ax, i in zip(axes, (0, 10, 20, windows.shape[0] - 1)):
    ax.imshow(windows[i], origin="lower", aspect="auto", cmap="viridis", vmin=-4, vmax=4)
    ax.set(
        title=f"frame {i}" + (" (clamped)" if i == windows.shape[0] - 1 else ""),
        xlabel="column",
    )
axes[0].set_ylabel("mel band")
plt.show()
