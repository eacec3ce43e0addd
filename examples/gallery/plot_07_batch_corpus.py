"""
A corpus with ``supermel batch``
================================

``supermel batch IN OUT`` featurises every audio file under a folder (or listed in a manifest)
in worker processes, mirrors the tree, writes each output atomically, reports every failure and
records a manifest; a rerun resumes. Here a small corpus cut from the bundled clip, one of its
files broken on purpose, through the Whisper front end. The same command takes
``--engine ray --address auto`` on a Ray cluster (shown at the end where Ray is installed; the
Ray run itself is left to your cluster).
"""

import json
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import soundfile as sf

import supermel
from supermel.cli import main as supermel_cli

y, sr = supermel.audio.example_audio()
root = tempfile.mkdtemp(prefix="supermel-gallery-")
corpus, feats = os.path.join(root, "corpus"), os.path.join(root, "feats")
for i, (start, seconds) in enumerate([(0, 1.5), (2, 2.0), (4.5, 1.0), (6, 2.5), (9, 1.2)]):
    speaker = f"spk{i % 2}"
    os.makedirs(os.path.join(corpus, speaker), exist_ok=True)
    piece = y[int(start * sr) : int((start + seconds) * sr)]
    sf.write(os.path.join(corpus, speaker, f"utt{i}.flac"), piece, sr)
with open(os.path.join(corpus, "spk0", "broken.wav"), "wb") as f:
    f.write(b"RIFF not really a wave file")

status = supermel_cli(["batch", corpus, feats, "--preset", "whisper-80", "--workers", "1"])
print("exit status:", status, "(1: some files failed, reported by path)")

manifest = json.load(open(os.path.join(feats, "supermel_manifest.json")))
print("manifest keys:", sorted(manifest))
outputs = sorted(
    os.path.relpath(os.path.join(d, f), feats)
    for d, _, fs in os.walk(feats)
    for f in fs
    if f.endswith(".npy")
)
print("outputs:", outputs)
assert status == 1 and len(outputs) == 5

# a rerun skips the finished outputs
assert (
    supermel_cli(["batch", corpus, feats, "--preset", "whisper-80", "--workers", "1"]) == 1
)

# %%
# Each output is the front end's features of one file; here the five files, one after another.

mels = [np.load(os.path.join(feats, o)) for o in outputs]
fig, axes = plt.subplots(
    1,
    len(mels),
    figsize=(10, 3.4),
    layout="constrained",
    sharey=True,
    width_ratios=[m.shape[-1] for m in mels],
)
for ax, name, m in zip(axes, outputs, mels):
    img = ax.imshow(m, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1.5)
    ax.set(title=name.replace(".npy", ""), xlabel="frame")
axes[0].set_ylabel("mel band")
fig.colorbar(img, ax=axes, label="whisper-80 log-mel")
fig.suptitle(
    "supermel batch corpus/ feats/ --preset whisper-80: one output per file (broken.wav reported)"
)
plt.show()

# %%
# With Ray installed, the same job runs on a cluster whose nodes share the filesystem:
#
# .. code-block:: bash
#
#    supermel batch /shared/corpus /shared/feats --engine ray --address auto --preset whisper-80
#
# The outputs, manifest, failure reports and exit codes are those of the local engine.

try:
    import ray  # noqa: F401

    print(f"Ray {ray.__version__} is installed: `--engine ray` is available")
except ImportError:
    print("Ray is not installed here: pip install 'supermel[ray]' for --engine ray")
