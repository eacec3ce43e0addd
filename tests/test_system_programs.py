"""The rule for tests that need a system program (``conftest.require_program``).

Without the program a test is skipped with the reason and the install command (the README's
``python -m pytest -q`` passes on a machine with nothing but Python); with the environment
variable ``CI`` set it fails instead (``.ci/run`` exports ``CI=1`` and installs the programs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import in_ci, require_program

ROOT = Path(__file__).resolve().parents[1]


def nowhere(name: str):
    return None


def everywhere(name: str):
    return f"/usr/bin/{name}"


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_missing_program_skips_with_the_install_command_outside_ci(monkeypatch, value):
    if value:
        monkeypatch.setenv("CI", value)
    else:
        monkeypatch.delenv("CI", raising=False)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception) as info:
        require_program("chromium", install="apt-get install chromium", why="a browser test", which=nowhere)
    msg = str(info.value)
    assert "chromium not found" in msg and "`apt-get install chromium`" in msg and "a browser test" in msg


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_missing_program_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception) as info:
        require_program("unshare", "ip", install="apt-get install util-linux iproute2", why="namespaces", which=nowhere)
    msg = str(info.value)
    assert "unshare, ip not found" in msg and "apt-get install util-linux iproute2" in msg and "CI is set" in msg


@pytest.mark.parametrize("ci", [None, "1"])
def test_present_program_neither_skips_nor_fails(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert require_program("chromium", install="apt-get install chromium", why="a browser test", which=everywhere) is None


def test_only_the_missing_programs_are_named(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        require_program("git", "ip", install="apt-get install iproute2", why="x", which=lambda n: None if n == "ip" else "/usr/bin/git")
    assert str(info.value).startswith("ip not found")


def test_ci_script_sets_ci_where_pytest_runs():
    """.ci/run exports CI=1 before its first pytest, so the browser and Ray tests must run there."""
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    first_pytest = next(i for i, line in enumerate(lines) if "pytest" in line)
    assert any(line in ("export CI=1", "export CI=true") for line in lines[:first_pytest])


def test_every_browser_and_namespace_test_uses_the_rule():
    """No test asserts a program's presence itself: the system-program tests call require_program."""
    for name in ("test_serve_browser.py", "test_ray.py", "test_cli_edges.py"):
        text = (ROOT / "tests" / name).read_text(encoding="utf-8")
        assert "require_program(" in text, name
        assert "is missing: apt-get" not in text and "not found: install util-linux" not in text, name
