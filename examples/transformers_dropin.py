#!/usr/bin/env python
"""Hugging Face feature extractors computed by supermel: same call, same numbers, less time.

Builds each ``transformers`` extractor and its supermel twin
(``supermel.integrations.transformers``), runs both on a batch made from the
bundled speech clip, and prints the largest difference and the time of each.

    python examples/transformers_dropin.py
    python examples/transformers_dropin.py --repeat 20

In your own code, either construct the twin (``WhisperFeatureExtractor.from_pretrained(...)``
from ``supermel.integrations.transformers``) or swap an existing one:
``processor.feature_extractor = accelerate(processor.feature_extractor)``.
Needs ``pip install "supermel[transformers]"``. Exit status 0 when every twin
agrees with its original within float32 rounding.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import List, Optional

import numpy as np

from supermel import audio


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="timed calls per extractor (default 5)")
    args = p.parse_args(argv)

    import transformers

    from supermel.integrations import transformers as twins

    y, sr = audio.example_audio()
    batch = [y, 0.5 * y[: len(y) // 2], y[len(y) // 3 :]]
    names = ["WhisperFeatureExtractor", "ASTFeatureExtractor", "SeamlessM4TFeatureExtractor"]
    if hasattr(twins, "ParakeetFeatureExtractor"):
        names.append("ParakeetFeatureExtractor")
    ok = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AST's 128 bins leave empty filters, in both
        for name in names:
            theirs = getattr(transformers, name)()
            ours = twins.accelerate(theirs)
            row = []
            for fe in (theirs, ours):
                out = fe(batch, sampling_rate=sr, return_tensors="np")
                t0 = time.perf_counter()
                for _ in range(args.repeat):
                    fe(batch, sampling_rate=sr, return_tensors="np")
                row.append(((time.perf_counter() - t0) / args.repeat * 1e3, out))
            (t_hf, a), (t_sm, b) = row
            key = fe.model_input_names[0]
            diff = float(np.abs(np.asarray(a[key], np.float64) - b[key]).max())
            scale = float(np.abs(np.asarray(a[key], np.float64)).max())
            same = diff <= 2e-3 * max(scale, 1.0)
            ok &= same and all(np.array_equal(a[k], b[k]) for k in a if k != key)
            print(f"{name:30s} transformers {t_hf:7.2f} ms   supermel {t_sm:7.2f} ms   ({t_hf / t_sm:4.1f}x)   "
                  f"max |diff| {diff:.1e} of {scale:.2f}")
    print("all twins agree with transformers" if ok else "A TWIN DISAGREES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
