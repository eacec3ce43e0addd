"""
A StreamPool of out-of-step streams
===================================

Live clients join and leave at any time and send chunks of any size. A
:class:`supermel.StreamPool` takes each stream's chunks whenever they come; every ``step()``
computes the complete frames of **all** streams in one batched computation. Each stream's frames
equal the offline call on that stream's audio (to float32 rounding).
"""

import matplotlib.pyplot as plt
import numpy as np

import supermel

y, sr = supermel.audio.example_audio()
params = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55, fmax=7600)
pool = supermel.StreamPool(**params)

# four clients: (joins at tick, chunk size in samples, seconds of audio, offset into the clip)
clients = [
    (0, 320, 2.0, 0),
    (7, 160, 1.5, 3 * sr),
    (15, 441, 1.8, 5 * sr),
    (30, 1000, 1.0, 8 * sr),
]
audio = [y[off : off + int(sec * sr)] for _, _, sec, off in clients]
ids, sent, frames = {}, [0] * 4, [[] for _ in clients]
per_step = []  # (tick, stream index, frames computed in that step)
tick = 0
while any(sent[i] < len(audio[i]) for i in range(4)) or ids:
    for i, (join, size, _, _) in enumerate(clients):
        if tick == join:
            ids[i] = pool.open()
        if i in ids and sent[i] < len(audio[i]):
            pool.push(ids[i], audio[i][sent[i] : sent[i] + size])
            sent[i] += size
    step = pool.step()  # one batched computation for every stream
    for i, sid in ids.items():
        if sid in step:
            f = step[sid]
            frames[i].append(f.frames)
            per_step.append((tick, i, f.frames.shape[-1]))
    for i in [i for i in ids if sent[i] >= len(audio[i])]:
        last = pool.close(ids.pop(i))  # the last frames, librosa's right-edge padding
        frames[i].append(last.frames)
        per_step.append((tick, i, last.frames.shape[-1]))
    tick += 1

for i in range(4):
    got = np.concatenate(frames[i], axis=-1)
    ref = supermel.melspectrogram(y=audio[i], **params)
    err = np.abs(got - ref).max() / ref.max()
    print(
        f"stream {i}: chunks of {clients[i][1]:>4} samples, {got.shape[-1]} frames, difference to offline {err:.1e} of the peak"
    )
    assert got.shape == ref.shape and err <= 5e-7

# %%
# What each step computed: the frames of every stream with complete frames, stacked (one bar
# per ``step()``, one batched computation). Streams join late, send chunks of different sizes
# and end at different times; the last bar of each stream is its ``close()``.

arr = np.array(per_step)
ticks = int(arr[:, 0].max()) + 1
counts = np.zeros((4, ticks))
for t, i, k in arr:
    counts[i, t] += k
fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
bottom = np.zeros(ticks)
for i in range(4):
    label = f"stream {i}: {clients[i][1]}-sample chunks, joins at step {clients[i][0]}"
    ax.bar(np.arange(ticks), counts[i], bottom=bottom, width=1.0, label=label)
    bottom += counts[i]
ax.set(
    xlabel="step",
    ylabel="frames computed",
    title="one batched step per tick serves every stream",
    xlim=(-1, ticks),
)
ax.legend(loc="upper right", fontsize="small")
plt.show()
