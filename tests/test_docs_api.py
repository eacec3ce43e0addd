"""Every public name has a page in the API reference (docs/api/*.rst).

The public names are the ``__all__`` of supermel and of its public subpackages (presets, serve,
integrations and its modules, onnx, audio, cli). The API pages list them in ``autosummary``
directives under a ``currentmodule``; a name re-exported at the top level (``supermel.Wav2Lip`` is
``supermel.presets.Wav2Lip``) may be documented once, under either name. The test reads the
reStructuredText sources, so it needs no Sphinx build (``.ci/run`` also builds the site, where a
listed name that does not import fails the build).
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Dict, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = os.path.join(ROOT, "docs", "api")

PUBLIC_MODULES = (
    "supermel",
    "supermel.presets",
    "supermel.serve",
    "supermel.integrations",
    "supermel.integrations.transformers",
    "supermel.integrations.faster_whisper",
    "supermel.integrations.ray",
    "supermel.integrations.datasets",
    "supermel.onnx",
    "supermel.audio",
    "supermel.cli",
)
#: integrations whose host library may be missing: checked from the source's __all__ instead
OPTIONAL = {
    "supermel.integrations.transformers": "transformers",
    "supermel.integrations.faster_whisper": "faster_whisper",
    "supermel.integrations.ray": "ray",
    "supermel.integrations.datasets": "datasets",
}


def documented() -> Set[str]:
    """Fully qualified names listed in the autosummary directives of docs/api/*.rst."""
    names: Set[str] = set()
    for fname in sorted(os.listdir(API)):
        if not fname.endswith(".rst"):
            continue
        module = None
        in_summary = False
        for line in open(os.path.join(API, fname), encoding="utf-8"):
            m = re.match(r"\.\. (?:current)?module:: (\S+)", line)
            if m:
                module, in_summary = m.group(1), False
                continue
            if line.startswith(".. autosummary::"):
                in_summary = True
                continue
            if in_summary:
                if line.strip().startswith(":") or not line.strip():
                    continue
                if not line.startswith("   "):
                    in_summary = False
                    continue
                names.add(f"{module}.{line.strip()}")
    return names


def _source_all(module: str) -> list:
    path = os.path.join(ROOT, "src", *module.split(".")) + ".py"
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^__all__[^=]*=\s*(\[.*?\])", text, re.S | re.M)
    return eval(m.group(1)) if m else []  # a literal list of strings


def public_names() -> Dict[str, object]:
    """``module.name`` -> the object (None where the host library of an integration is missing)."""
    out: Dict[str, object] = {}
    for module in PUBLIC_MODULES:
        host = OPTIONAL.get(module)
        if host is not None:
            try:
                importlib.import_module(host)
            except ImportError:
                out.update({f"{module}.{n}": None for n in _source_all(module)})
                continue
        mod = importlib.import_module(module)
        for name in mod.__all__:
            out[f"{module}.{name}"] = getattr(mod, name)
    return out


def test_api_index_lists_the_public_modules():
    text = "".join(open(os.path.join(API, f), encoding="utf-8").read() for f in os.listdir(API) if f.endswith(".rst"))
    for module in PUBLIC_MODULES:
        if module != "supermel":
            assert f"module:: {module}" in text or f"automodule:: {module}" in text, f"{module} has no section in docs/api/"


def missing_names(listed: Set[str]) -> list:
    """Public names with no entry in ``listed``, under their own name or their top-level alias."""
    top = importlib.import_module("supermel")
    top_objs = {f"supermel.{n}": getattr(top, n) for n in top.__all__}
    missing = []
    for qualname, obj in public_names().items():
        if qualname in listed:
            continue
        alias = obj is not None and not isinstance(obj, (str, int, float, frozenset)) and any(
            o is obj and t in listed for t, o in top_objs.items()
        )
        if not alias:
            missing.append(qualname)
    return missing


def test_every_public_name_has_a_page():
    missing = missing_names(documented())
    assert not missing, f"public names without a page in docs/api/*.rst (add them to an autosummary list): {missing}"


def test_listed_names_exist():
    """A name listed in the API pages that is not public any more is a stale page."""
    public = public_names()
    stale = sorted(n for n in documented() if n not in public)
    assert not stale, f"listed in docs/api/*.rst but not in any __all__: {stale}"


@pytest.mark.parametrize("qualname", ["supermel.melspectrogram", "supermel.presets.preemphasis", "supermel.onnx.graph_problems", "supermel.presets.Wav2Lip"])
def test_the_check_sees_a_missing_name(qualname):
    """Taking a name off the pages makes the check fail (for a re-exported name: both entries)."""
    name = qualname.rsplit(".", 1)[1]
    listed = {n for n in documented() if n.rsplit(".", 1)[1] != name}
    assert qualname in missing_names(listed)
