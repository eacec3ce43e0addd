"""The package's layout: no import cycles, old import paths warn for one release, families register."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import supermel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import import_cycles  # noqa: E402


def test_no_import_cycles():
    graph = import_cycles.module_graph(ROOT / "src" / "supermel")
    assert "supermel.presets.base" in graph and "supermel.cli" in graph  # the scan sees the package
    assert import_cycles.cycles(graph) == []


def test_the_cycle_check_can_fail(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")  # a lazy import still ties them
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    assert import_cycles.cycles(import_cycles.module_graph(pkg)) == [["pkg.a", "pkg.b"]]


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("supermel.kaldi", "extract_frames", "supermel.presets.kaldi"),
        ("supermel.streaming_presets", "StreamingFrontend", "supermel.presets.streaming"),
        ("supermel.streaming_presets", "Wav2LipChunker", "supermel.presets.wav2lip"),
    ],
)
def test_deprecated_module_paths_warn_and_work(old, name, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated and will be removed in 0\.3"):
        mod = importlib.import_module(old)
    assert getattr(mod, name) is getattr(importlib.import_module(new), name)


def test_public_names_come_from_the_family_modules():
    from supermel.presets import kaldi, kaldi_models, logmel, nemo, wav2lip, whisper

    assert supermel.Whisper is whisper.Whisper and supermel.Wav2LipChunker is wav2lip.Wav2LipChunker
    assert supermel.KaldiFbank is kaldi.KaldiFbank and supermel.LogMel is logmel.LogMel and supermel.Nemo is nemo.Nemo
    fams = {"wav2lip": wav2lip, "whisper-80": whisper, "hifigan-22k": logmel, "nemo-80": nemo, "kaldi-fbank": kaldi, "ast": kaldi_models}
    for name, module in fams.items():
        assert type(supermel.frontend(name)).__module__ == module.__name__, name


def test_importing_supermel_does_not_import_torch():
    code = "import sys, supermel; supermel.__version__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_deprecated_path_inside_the_package():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for mod in ("supermel.presets", "supermel.integrations.transformers", "supermel.onnx"):
            importlib.import_module(mod)
    for path in (ROOT / "src" / "supermel").rglob("*.py"):
        if path.name in ("kaldi.py", "streaming_presets.py") and path.parent.name == "supermel":
            continue
        text = path.read_text(encoding="utf-8")
        assert "from .kaldi import" not in text or path.parent.name == "presets", path
        assert "streaming_presets import" not in text, path
