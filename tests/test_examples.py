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


@pytest.fixture
def restore_threads():
    """The thread settings of this process, restored after the test (the example changes them)."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    before_torch = torch.get_num_threads()
    before_pools = {p["internal_api"]: p["num_threads"] for p in threadpool_info()}
    yield
    torch.set_num_threads(before_torch)
    threadpool_limits(limits=before_pools)


def test_lipsync_realtime_runs_on_one_torch_and_blas_thread(capsys, restore_threads):
    """Default threads miss the 33 ms budget on a busy machine (issue 18, item 6): the example sets one itself."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    torch.set_num_threads(2)
    threadpool_limits(limits=2)
    assert _load("lipsync_realtime").main(["--streams", "8", "--seconds", "0.5"]) == 0
    assert torch.get_num_threads() == 1
    assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert "threads: torch 1;" in capsys.readouterr().out
    assert _load("lipsync_realtime").main(["--threads", "0", "--seconds", "0.5"]) == 0  # 0: left as they are
    assert torch.get_num_threads() == 1


def test_transformers_dropin(capsys):
    assert _load("transformers_dropin").main(["--repeat", "1"]) == 0
    assert "all twins agree with transformers" in capsys.readouterr().out
