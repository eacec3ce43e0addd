"""The scripts in examples/ run and report success (each checks its own results against a reference)."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("args", [["--seconds", "2"], ["--fps", "30000/1001", "--streams", "3", "--seconds", "1.5"]])
def test_lipsync_realtime(args, capsys):
    assert _load("lipsync_realtime").main(args) == 0
    out = capsys.readouterr().out
    assert "equal to the offline windows: yes" in out and "look-ahead: 212.5 ms" in out


def test_transformers_dropin(capsys):
    assert _load("transformers_dropin").main(["--repeat", "1"]) == 0
    assert "all twins agree with transformers" in capsys.readouterr().out
