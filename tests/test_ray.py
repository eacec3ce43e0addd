"""``supermel batch --engine ray`` and ``supermel.integrations.ray``, on a local Ray cluster.

Network rule: a Ray started in the machine's own network namespace binds every interface and
advertises the routable address. These tests therefore run only inside a network namespace that
has nothing but loopback (``unshare -n`` + ``ip link set lo up``, as root), where Ray binds
127.0.0.1. Collected anywhere else, this module holds a single test that re-runs the module in
such a namespace (``unshare -n sh -c 'ip link set lo up && python -m pytest tests/test_ray.py'``)
and passes only when every Ray test passed there: nothing is skipped, and no Ray process is ever
started outside the namespace.

Ray is started once per module: ``ray start --head --node-ip-address 127.0.0.1`` (a cluster the
``--address`` tests join), stopped at the end by killing exactly the processes it started. One
test lets the command line start its own local instance (no ``--address``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import require_program, skip_unless_ci

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


def loopback_only() -> bool:
    """Whether this process is in a network namespace whose only interface is an up loopback."""
    try:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    if {line.split(":")[0].strip() for line in lines} != {"lo"}:
        return False
    try:  # lo is up (a fresh namespace's lo is down: nothing binds 127.0.0.1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
    except OSError:
        return False
    return True


IN_NAMESPACE = loopback_only()
if IN_NAMESPACE:  # this process joins the test cluster (token auth, read when Ray is imported); subprocesses get ray_env()
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


# =========================================================================== outside: re-run inside
def test_ray_suite_passes_inside_a_loopback_only_network_namespace(capsys):
    """Run this module in a fresh loopback-only namespace; every Ray test must pass there."""
    if IN_NAMESPACE:
        return  # this is the inner run: the tests below are the suite
    require_program("unshare", "ip", install="apt-get install util-linux iproute2", why="the Ray tests run in a loopback-only network namespace")
    if os.geteuid() != 0:
        skip_unless_ci("unshare -n needs root (CAP_SYS_ADMIN): run the Ray tests as root, as .ci/run does")
    inner = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider -rfEs {HERE}"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=REPO, capture_output=True, text=True, timeout=1500)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    with capsys.disabled():  # show the inner summary in the outer run's output (CI log)
        print(f"\n[tests/test_ray.py inside `unshare -n`] {lines[-1] if lines else proc.stderr[-500:]}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    want = len(RAY_TESTS) + 1  # and this test, which passes at once in there
    assert re.search(rf"\b{want} passed\b", lines[-1]) and "skipped" not in lines[-1] and "failed" not in lines[-1], lines[-1]


# =========================================================================== helpers
def write_audio(path: Path, *, sr: int, seconds: float, channels: int = 1, fmt: str = None, subtype: str = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.3 * np.sin(2 * np.pi * (180 + 600 * t) * t)[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    sf.write(str(path), y.astype(np.float32), sr, format=fmt, subtype=subtype)


def files_under(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def outputs(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): np.load(p) for p in root.rglob("*.npy")}


def stamps(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*.npy")}


def manifest(out: Path) -> dict:
    return json.loads((out / "supermel_manifest.json").read_text())


def temporary_files(root: Path) -> list:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".supermel-probe-")]


def cli(*args, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supermel", "batch", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def ray_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> dict:
    """pid -> (parent pid, command line) of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out[int(d.name)] = (ppid, cmd)
    return out


def actor_pids() -> list:
    """PIDs of the batch engine's actors: Ray titles them ``ray::MapWorker(MapBatches(SupermelBatchWorker))``."""
    return [pid for pid, (_, cmd) in processes().items() if cmd.startswith("ray::") and "SupermelBatchWorker" in cmd]


# =========================================================================== fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Mixed rates, channels and formats (FLAC included), nested folders, a corrupt and an empty file."""
    src = tmp_path_factory.mktemp("corpus") / "in"
    specs = [
        ("a.wav", 22050, 1, None, "PCM_16"), ("b.flac", 16000, 1, None, None), ("spk1/c.FLAC", 44100, 2, None, None),
        ("spk1/deep/d.wav", 8000, 1, None, "FLOAT"), ("spk2/e.ogg", 16000, 1, "OGG", "VORBIS"), ("spk2/f.WAV", 48000, 2, None, "PCM_24"),
    ]
    for k in range(12):
        name, sr, ch, fmt, sub = specs[k % len(specs)]
        stem, ext = name.rsplit(".", 1)
        write_audio(src / (f"{stem}{k}.{ext}" if k >= len(specs) else name), sr=sr, seconds=0.4 + 0.05 * k, channels=ch, fmt=fmt, subtype=sub, seed=k)
    (src / "spk2" / "corrupt.flac").write_bytes(b"fLaC" + np.random.default_rng(1).bytes(3000))
    (src / "spk1" / "empty.wav").write_bytes(b"")
    (src / "spk1" / "notes.txt").write_text("not audio")
    return src


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``ray start --head`` on 127.0.0.1 with 2 CPUs; its processes are killed (by PID) at the end."""
    assert IN_NAMESPACE
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
           "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=ray_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_cluster(temp_dir: str) -> None:
    """Kill the processes of the cluster whose session lives in ``temp_dir`` (and their children)."""
    procs = processes()
    roots = {pid for pid, (_, cmd) in procs.items() if temp_dir in cmd and pid != os.getpid()}
    victims = set(roots)
    grew = True
    while grew:  # workers are children of the raylet
        more = {pid for pid, (ppid, _) in procs.items() if ppid in victims} - victims - {os.getpid()}
        victims |= more
        grew = bool(more)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in victims:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (3 if sig == signal.SIGTERM else 10)
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in victims):
            time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return "zombie" if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z" else "alive"
    except OSError:
        return "zombie"


@pytest.fixture(scope="module")
def local_reference(corpus, tmp_path_factory) -> Path:
    """The local engine's outputs (2 processes) for the corpus, default options."""
    out = tmp_path_factory.mktemp("local") / "out"
    proc = cli(corpus, out, "--workers", "2", "-q", env=ray_env())
    assert proc.returncode == 1, proc.stderr  # the corrupt and the empty file
    return out


def assert_same_as_local(out: Path, ref: Path) -> None:
    assert files_under(out) == files_under(ref)
    got, want = outputs(out), outputs(ref)
    assert set(got) == set(want) and len(want) == 12
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)  # bit-identical: the same code on one thread
    a, b = manifest(out), manifest(ref)
    assert a["files"] == b["files"]  # entries, reasons, details (with paths), shapes
    assert a["counts"] == b["counts"] == {"done": 12, "skipped": 0, "failed": 2, "not started": 0}
    assert a["parameters"] == b["parameters"] and a["inputs"] == b["inputs"]
    assert not temporary_files(out)


# =========================================================================== the command line
def test_ray_engine_writes_what_the_local_engine_writes(corpus, local_reference, tmp_path):
    """No --address: the command starts (and stops) a local Ray instance of its own."""
    out = tmp_path / "out"
    proc = cli(corpus, out, "--engine", "ray", env=ray_env(), cwd=tmp_path)  # not -q: a line per failed file
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "12 done, 0 skipped, 2 failed of 14 files" in proc.stdout
    assert f"failed   spk2/corrupt.flac: unreadable (cannot read audio file '{corpus / 'spk2' / 'corrupt.flac'}'" in proc.stdout
    assert f"failed   spk1/empty.wav: empty (audio file '{corpus / 'spk1' / 'empty.wav'}' is empty (0 bytes))" in proc.stdout
    assert_same_as_local(out, local_reference)
    engine = manifest(out)["engine"]
    assert engine["engine"] == "ray" and engine["address"] == "local" and engine["nodes"] == 1
    assert {"init_s", "first_result_s", "shutdown_s"} <= set(engine)


def test_address_joins_a_running_cluster(corpus, local_reference, cluster, tmp_path):
    out = tmp_path / "out"
    proc = cli(corpus, out, "--engine", "ray", "--address", cluster, "--workers", "2", "-q", env=ray_env(RAY_AUTH_MODE="token"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_same_as_local(out, local_reference)
    engine = manifest(out)["engine"]
    assert engine["address"] == cluster and engine["actors"] == 2


def test_sharded_outputs_on_ray_equal_the_local_ones(corpus, cluster, tmp_path):
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert cli(corpus, local, "--shard-size", "4", "-q", env=ray_env()).returncode == 1
    proc = cli(corpus, ray_out, "--shard-size", "4", "--engine", "ray", "--address", cluster, "-q", env=ray_env(RAY_AUTH_MODE="token"))
    assert proc.returncode == 1, proc.stderr
    assert files_under(local) == files_under(ray_out)
    for shard in (local / "shards").iterdir():
        with np.load(shard) as a, np.load(ray_out / "shards" / shard.name) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    assert json.loads((local / "supermel_shards.json").read_text())["files"] == json.loads((ray_out / "supermel_shards.json").read_text())["files"]


def test_authentication_failure_names_ray_auth_mode(corpus, cluster, tmp_path):
    env = ray_env(RAY_gcs_server_port_wait_time_s="2")  # Ray retries for 20 s by default
    proc = cli(corpus, tmp_path / "out", "--engine", "ray", "--address", cluster, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("supermel: error: ")]
    assert len(err) == 1 and f"cannot join the Ray cluster at '{cluster}': authentication failed" in err[0] and "set RAY_AUTH_MODE=token" in err[0], proc.stderr
    assert not (tmp_path / "out" / "supermel_manifest.json").exists()


def test_device_cuda_is_refused_at_once_on_a_cluster_without_gpus(corpus, cluster, tmp_path):
    proc = cli(corpus, tmp_path / "out", "--engine", "ray", "--address", cluster, "--device", "cuda", env=ray_env(RAY_AUTH_MODE="token"), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--device cuda: the Ray cluster has no GPUs (cluster_resources: 2 CPUs, 0 GPUs); use --device cpu" in proc.stderr
    assert not list((tmp_path / "out").rglob("*.npy"))


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory) -> Path:
    """Enough work (with the heavy options below) for a run to be caught half-way."""
    src = tmp_path_factory.mktemp("long") / "in"
    for k in range(48):
        write_audio(src / f"part{k % 3}" / f"u{k:02d}.flac", sr=16000, seconds=6.0, seed=100 + k)
    return src


HEAVY = ("--n-fft", "4096", "--hop-length", "16", "--n-mels", "256")


def wait_for(predicate, timeout: float = 240.0, proc=None):
    """Poll ``predicate`` until true (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError("the condition was not reached" + ("" if proc is None else f" (exit {proc.poll()}: {proc.stderr.read()[-2000:] if proc.stderr else ''})"))


def test_an_actor_killed_mid_run_still_yields_every_output(long_corpus, cluster, tmp_path):
    ref = tmp_path / "ref"
    assert cli(long_corpus, ref, *HEAVY, "--workers", "2", "-q", env=ray_env()).returncode == 0
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "supermel", "batch", str(long_corpus), str(out), *HEAVY, "--engine", "ray", "--address", cluster, "--workers", "2", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_env(RAY_AUTH_MODE="token"))
    try:
        wait_for(lambda: len(list(out.rglob("*.npy"))) >= 2, proc=proc)  # the actors are at work
        victims = wait_for(actor_pids, proc=proc)
        os.kill(victims[0], signal.SIGKILL)
        done_at_kill = len(list(out.rglob("*.npy")))
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert done_at_kill < 48, "the run ended before the kill: make the work heavier"
    assert not Path(f"/proc/{victims[0]}").exists() or _state(victims[0]) == "zombie"
    assert proc.returncode == 0, stdout + stderr  # Ray restarted the actor and retried its batch
    m = manifest(out)
    assert m["counts"] == {"done": 48, "skipped": 0, "failed": 0, "not started": 0} and len(m["files"]) == 48
    got, want = outputs(out), outputs(ref)
    assert set(got) == set(want)
    for name in want:  # complete and loadable, equal to the local run
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert not temporary_files(out)


def test_resume_after_an_interrupted_ray_run_recomputes_nothing_finished(long_corpus, cluster, tmp_path):
    out = tmp_path / "out"
    env = ray_env(RAY_AUTH_MODE="token")
    proc = subprocess.Popen([sys.executable, "-m", "supermel", "batch", str(long_corpus), str(out), *HEAVY, "--engine", "ray", "--address", cluster, "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: len(list(out.rglob("*.npy"))) >= 4, proc=proc)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    m = manifest(out)
    interrupted = [e for e in m["files"] if e["status"] == "not started"]
    assert interrupted and {e["reason"] for e in interrupted} == {"interrupted"}
    time.sleep(1.0)  # the job's actors are stopped with their driver; let the last write land
    before = stamps(out)
    assert 4 <= len(before) < 48
    proc2 = cli(long_corpus, out, *HEAVY, "--engine", "ray", "--address", cluster, "-q", env=env)
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    m2 = manifest(out)
    assert m2["counts"]["done"] + m2["counts"]["skipped"] == 48 and m2["counts"]["skipped"] >= len(before)
    after = stamps(out)
    assert len(after) == 48 and {k: after[k] for k in before} == before  # nothing finished was rewritten
    assert not temporary_files(out)


# =========================================================================== the library form
@pytest.fixture
def connected(cluster, monkeypatch):
    import ray

    ray.init(address=cluster, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


def test_featurizer_on_paths_and_on_decoded_arrays(corpus, connected):
    import ray
    import torch

    import supermel
    from supermel.integrations.ray import Featurizer

    paths = sorted(str(p) for p in corpus.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg") and p.stat().st_size > 0 and "corrupt" not in p.name)
    ds = ray.data.from_items([{"path": p} for p in paths]).map_batches(
        Featurizer, fn_constructor_kwargs={"preset": "whisper-80"}, compute=ray.data.ActorPoolStrategy(size=1), batch_size=4, num_cpus=1)
    rows = {r["path"]: r["mel"] for r in ds.take_all()}
    assert set(rows) == set(paths)
    fe = supermel.frontend("whisper-80")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the actor
    try:
        for p in paths:
            y, _ = supermel.audio.load(p, sr=16000)
            np.testing.assert_array_equal(rows[p], fe(y), err_msg=p)
    finally:
        torch.set_num_threads(threads)

    # decoded arrays with their rates (Ray's read_audio columns), core keywords, resampled to sr
    import librosa
    import soundfile as sf

    items = []
    for p in paths[:4]:
        data, rate = sf.read(p, dtype="float32", always_2d=True)
        items.append({"amplitude": data.T, "sample_rate": rate, "name": p})
    ds = ray.data.from_items(items).map_batches(
        Featurizer, fn_constructor_kwargs={"sr": 16000, "n_mels": 64, "hop_length": 160}, compute=ray.data.ActorPoolStrategy(size=1), batch_size=2)
    for row in ds.take_all():
        y, sr = librosa.load(row["name"], sr=16000)
        want = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=64, hop_length=160)
        assert np.linalg.norm(row["mel"] - want) / np.linalg.norm(want) <= 2e-5, row["name"]


def test_featurizer_reports_bad_rows(corpus, connected):
    import ray

    from supermel.integrations.ray import Featurizer

    good, bad = str(corpus / "b.flac"), str(corpus / "spk2" / "corrupt.flac")
    ds = ray.data.from_items([{"path": good}, {"path": bad}]).map_batches(
        Featurizer, fn_constructor_kwargs={"n_mels": 32, "errors": "keep"}, compute=ray.data.ActorPoolStrategy(size=1), batch_size=2)
    rows = {r["path"]: r for r in ds.take_all()}
    assert rows[good]["error"] == "" and rows[good]["mel"].shape[0] == 32
    assert rows[bad]["mel"] is None and f"cannot read audio {bad!r}" in rows[bad]["error"]
    with pytest.raises(Exception, match="row 1 of column 'path': cannot read audio"):
        ray.data.from_items([{"path": good}, {"path": bad}]).map_batches(
            Featurizer, fn_constructor_kwargs={"n_mels": 32}, compute=ray.data.ActorPoolStrategy(size=1), batch_size=2).take_all()


def test_featurizer_outside_ray_and_its_device_choice(corpus):
    from supermel.integrations.ray import Featurizer

    f = Featurizer(n_mels=40)
    assert f.device == "cpu"  # no GPU given by Ray
    out = f({"path": np.asarray([str(corpus / "a.wav")]), "id": np.asarray([7])})
    assert out["mel"].shape[:2] == (1, 40) and out["id"][0] == 7


def test_a_node_that_cannot_see_the_inputs_is_named(connected, tmp_path):
    from supermel import ParameterError
    from supermel.cli import _ray_engine

    with pytest.raises(ParameterError, match=r"inputs and outputs must be on a filesystem every Ray node shares, at the same paths: .*the input '/nowhere/corpus' does not exist there"):
        _ray_engine._check_nodes(connected, str(tmp_path), "/nowhere/corpus", None, str(tmp_path))
    assert _ray_engine._check_nodes(connected, str(tmp_path), str(tmp_path), None, str(tmp_path)) == 1


#: The tests that need Ray (all but the first).
RAY_TESTS = [n for n in list(globals()) if n.startswith("test_") and n != "test_ray_suite_passes_inside_a_loopback_only_network_namespace"]
if not IN_NAMESPACE:  # outside the namespace only the re-run above is collected: no Ray starts here
    for _name in RAY_TESTS:
        del globals()[_name]
