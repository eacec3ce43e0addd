"""benchmarks/gpu.sh finds its interpreter: ``python`` when it exists, else ``python3`` (a GPU image may
have only python3, the one with its CUDA torch), or ``$PYTHON``. Checked with ``--dry-run`` (nothing runs)
on a PATH holding only the programs named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
BASH = shutil.which("bash") or "/bin/bash"


def run_with(tmp_path: Path, names: dict, env_extra: dict = None) -> subprocess.CompletedProcess:
    """Run ``bash gpu.sh --dry-run --quick`` with PATH = a folder holding only ``names`` (name -> target)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, target in {"dirname": shutil.which("dirname"), **names}.items():
        (bindir / name).symlink_to(target)
    env = {"PATH": str(bindir), "HOME": str(tmp_path), **(env_extra or {})}
    return subprocess.run([BASH, str(SCRIPT), "--dry-run", "--quick"], capture_output=True, text=True, env=env, timeout=60)


def test_only_python3_on_path(tmp_path):
    proc = run_with(tmp_path, {"python3": sys.executable})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"python: {tmp_path / 'bin' / 'python3'} ({sys.version.split()[0]})"), proc.stdout
    assert "would run: python3 benchmarks/run.py --device cuda --quick" in proc.stdout


def test_python_preferred_when_both_exist(tmp_path):
    proc = run_with(tmp_path, {"python": sys.executable, "python3": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"python: {tmp_path / 'bin' / 'python'} ("), proc.stdout


def test_PYTHON_wins(tmp_path):
    proc = run_with(tmp_path, {"python": sys.executable}, {"PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"python: {sys.executable} ("), proc.stdout


def test_no_interpreter_is_a_clear_error(tmp_path):
    proc = run_with(tmp_path, {})
    assert proc.returncode == 1
    assert "neither python nor python3 is on PATH" in proc.stderr


def test_every_python_call_goes_through_the_chosen_interpreter():
    """The script's `python` is a function over $PY: no line runs a hard-coded interpreter path."""
    text = SCRIPT.read_text(encoding="utf-8")
    assert 'python() { command "$PY" "$@"; }' in text
    code = [line.split("#", 1)[0] for line in text.splitlines()]
    assert not any("python3 " in line and "command -v python3" not in line and "echo" not in line for line in code)
