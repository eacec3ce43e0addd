"""The package's layout: no import cycles, old import paths warn for one release, families register."""

from __future__ import annotations

import importlib
import re
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
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated since 0\.1\.0 and will be removed in 0\.2\.0") as record:
        mod = importlib.import_module(old)
    assert getattr(mod, name) is getattr(importlib.import_module(new), name)
    _check_versions(str(record[0].message))


def _version(text: str) -> tuple:
    return tuple(int(part) for part in text.split("."))


def _check_versions(message: str) -> None:
    """A deprecation names a version no later than the current one, and a removal after it."""
    current = _version(supermel.__version__)
    since = re.search(r"deprecated since (\d+\.\d+\.\d+)", message)
    removed = re.search(r"removed in (?:supermel )?(\d+\.\d+(?:\.\d+)?)", message)
    assert since and removed, message
    assert _version(since.group(1)) <= current < _version(removed.group(1)), (message, supermel.__version__)


def test_deprecation_versions_are_consistent_with_the_package_version():
    """Module docs, warnings and the README speak of the same versions, around supermel.__version__."""
    for path in (ROOT / "src" / "supermel" / "kaldi.py", ROOT / "src" / "supermel" / "streaming_presets.py"):
        text = path.read_text(encoding="utf-8")
        sentences = re.findall(r"deprecated since[^:]*", text.replace("\n", " "))
        assert sentences, path
        for sentence in sentences:
            _check_versions(sentence)
        assert "0.3" not in text, path
    dev = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")  # the site's page (was the README's)
    assert "(deprecated since 0.1.0) still import, with a `DeprecationWarning`; they go in 0.2.0." in dev
    assert supermel.__version__ == "0.1.0"  # when it changes, the deprecation messages move with it


def test_project_files_exist_and_agree_with_pyproject():
    """LICENSE (MIT, as pyproject.toml says), CHANGELOG.md and CITATION.cff, with the package's version."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = { text = "MIT" }' in pyproject
    lic = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert lic.startswith("MIT License") and "Permission is hereby granted, free of charge" in lic
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{supermel.__version__}]" in changelog
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert "cff-version: 1.2.0" in cff and f'version: "{supermel.__version__}"' in cff and "license: MIT" in cff


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
