"""The live-serving benchmark script (benchmarks/serve.py): it runs end to end and rewrites only its own section.

A few clients for a second; nothing here asserts a timing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "serve.py"


def _module():
    spec = importlib.util.spec_from_file_location("supermel_serve_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_section_is_replaced_or_appended_and_nothing_else_changes(tmp_path):
    bench = _module()
    md = tmp_path / "B.md"
    md.write_text("# B\n\n## CPU\n\ncpu\n\n## Live serving (supermel serve)\n\nold\n\n## GPU\n\ngpu\n", encoding="utf-8")
    bench.write_section(str(md), "## Live serving (supermel serve)\n\nnew\n")
    assert md.read_text(encoding="utf-8") == "# B\n\n## CPU\n\ncpu\n\n## Live serving (supermel serve)\n\nnew\n\n## GPU\n\ngpu\n"
    md.write_text("# B\n\n## GPU\n\ngpu\n", encoding="utf-8")
    bench.write_section(str(md), "## Live serving (supermel serve)\n\nnew\n")
    bench.write_section(str(md), "## Live serving (supermel serve)\n\nnewer\n")
    assert md.read_text(encoding="utf-8") == "# B\n\n## GPU\n\ngpu\n\n## Live serving (supermel serve)\n\nnewer\n"


def test_a_short_run_loses_no_frame(tmp_path):
    out, md = tmp_path / "rows.json", tmp_path / "B.md"
    md.write_text("# B\n\n## CPU\n\ncpu\n", encoding="utf-8")
    cmd = [sys.executable, str(SCRIPT), "--clients", "3", "--seconds", "1", "--ramp", "0.2", "--rate", "48000", "--format", "int16",
           "--json", str(out), "--markdown-file", str(md)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text(encoding="utf-8"))
    assert row["clients"] == 3 and row["chunks"] == 3 * 50  # every chunk acknowledged by frames
    assert (row["lost"], row["reordered"], row["exact"], row["errors"]) == (0, 0, 3, [])
    assert row["server_cpu"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# B\n\n## CPU\n\ncpu\n\n## Live serving (supermel serve)\n") and "| 3 | in loop" in text
    assert "torch.set_num_threads(1)" in text and "threadpoolctl" in text
