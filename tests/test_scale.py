"""Scale-out: devices, processes (jax.distributed), and runs that resume after being killed.

Every run here is the baseline on the same years and seed, so each must reproduce the
uninterrupted single-process run exactly: the summary (but its provenance) and every variable
of results.nc, bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from helpers import interrupt_after_chunks

from leisim.cli import main

# 30 chunks of 1000 years: long enough to be killed part-way, the same kernel as the CLI tests.
CHUNKS = 30
RUN = ["simulate", "--years", str(CHUNKS * 1000), "--chunk-size", "1000", "--no-plots", "--no-compare-point-estimate"]
LAUNCH = [sys.executable, "-c", "from leisim.cli import main; main()"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def outputs(out: Path) -> tuple[dict, xr.Dataset]:
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("provenance")
    with xr.open_dataset(out / "results.nc", engine="h5netcdf") as ds:
        return summary, ds.load()


def assert_same_run(a: Path, b: Path) -> None:
    (summary_a, ds_a), (summary_b, ds_b) = outputs(a), outputs(b)
    assert summary_a == summary_b
    assert set(ds_a.data_vars) == set(ds_b.data_vars)
    for name in ds_a.data_vars:
        np.testing.assert_array_equal(ds_a[name].values, ds_b[name].values, err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "reference"
    result = run(*RUN, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".leisim-output.json", "results.nc", "summary.json"]  # no checkpoint
    return out


@pytest.mark.slow
def test_devices_option_limits_the_devices_and_not_the_results(reference, tmp_path):
    result = run(*RUN, "--devices", "1", "--out", str(tmp_path / "one"))
    assert result.exit_code == 0, result.output
    assert "x4" in json.loads((reference / "summary.json").read_text())["provenance"]["device"]
    assert_same_run(reference, tmp_path / "one")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_one_process_run(reference, tmp_path):
    # Two processes over loopback, two devices each: four devices in one mesh, as on two hosts.
    out = tmp_path / "two"
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen(LAUNCH + RUN + ["--out", str(out), "--distributed"],
                              env=env | {"JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in (1, 0)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "Wrote" in logs[1] and "Wrote" not in logs[0]  # only process 0 writes
    assert json.loads((out / "summary.json").read_text())["provenance"]["processes"] == 2
    assert_same_run(reference, out)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(reference, tmp_path):
    out = tmp_path / "killed"
    checkpoint = out / ".checkpoint"
    after = random.Random(7).randint(2, CHUNKS * 2 // 3)  # finished chunks before the kill (fixed seed)
    proc = subprocess.Popen(LAUNCH + RUN + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists() and len(list(checkpoint.glob("main-*.npz"))) >= after:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    chunks = len(list(checkpoint.glob("main-*.npz")))
    assert after <= chunks < CHUNKS
    assert not (out / "summary.json").exists()
    result = run("simulate", "--resume", str(out), "--devices", "1")  # resumed on another device count
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out)
    assert not checkpoint.exists()


@pytest.mark.slow
def test_interrupt_stops_cleanly_and_resumes(reference, tmp_path, monkeypatch):
    # Ctrl-C is a KeyboardInterrupt in the main thread: raise it while the 4th chunk is written.
    out = tmp_path / "interrupted"
    restore = interrupt_after_chunks(monkeypatch, 3)
    result = CliRunner().invoke(main, RUN + ["--out", str(out)])
    assert result.exit_code == 130
    assert "leisim simulate --resume" in result.output
    assert sorted(p.name for p in (out / ".checkpoint").iterdir()) == [
        "main-000000000000.npz", "main-000000000000.npz.seal", "main-000000001000.npz", "main-000000001000.npz.seal",
        "main-000000002000.npz", "main-000000002000.npz.seal", "manifest.json"]
    restore()
    result = run("simulate", "--resume", str(out))
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out)


def test_resume_refuses_a_changed_input_or_a_missing_checkpoint(tmp_path):
    result = CliRunner().invoke(main, ["simulate", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no checkpoint here" in result.output
    result = CliRunner().invoke(main, ["simulate", "--resume", str(tmp_path), "--years", "10"])
    assert result.exit_code == 2
    assert "leave out --years" in result.output
    checkpoint = tmp_path / "run" / ".checkpoint"
    checkpoint.mkdir(parents=True)
    manifest = {"leisim_checkpoint": 1, "fingerprint": "0" * 64,
                "arguments": {"scenario_ref": "baseline", "portfolio_dir": None, "years": 1000, "seed": 0,
                              "out_dir": str(tmp_path / "run"), "chunk_size": 1000, "plots": False,
                              "compare_point_estimate": False, "compare": [], "include_own": True}}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["simulate", "--resume", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "changed since the checkpoint" in result.output


@pytest.mark.slow
def test_killed_while_writing_leaves_the_previous_outputs_or_the_new_ones(reference, tmp_path):
    # A run replacing a previous one (--overwrite) is killed at a random moment after it starts
    # writing its outputs (the staging folder exists): the folder must then hold either the
    # previous outputs, byte for byte, or the new run's complete outputs, never a mixture.
    import shutil

    out = tmp_path / "previous"
    shutil.copytree(reference, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    delay = random.Random(11).uniform(0.0, 1.5)
    proc = subprocess.Popen(LAUNCH + RUN + ["--out", str(out), "--overwrite", "--seed", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob(".previous.*.partial")):
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = {p.name: p for p in out.iterdir() if p.name != ".checkpoint"}
    if set(after) == set(before) and all(after[n].read_bytes() == before[n] for n in before):
        return  # the previous outputs, untouched
    assert set(after) == {"summary.json", "results.nc", ".leisim-output.json"}  # the new run, complete
    assert json.loads(after["summary.json"].read_text())["seed"] == 1
    with xr.open_dataset(after["results.nc"], engine="h5netcdf") as ds:
        assert ds.sizes["year"] == CHUNKS * 1000


@pytest.mark.slow
def test_a_full_disk_stops_the_run_keeps_its_chunks_and_resumes(reference, tmp_path, monkeypatch):
    # The disk fills up (ENOSPC) while the 4th chunk is checkpointed, then again while results.nc
    # is written, and once more is too full for the outputs before writing them: each time exit 2
    # with one "Error:" line naming the file, how to resume, the finished chunks kept, nothing
    # else left; freed, `--resume` writes exactly the uninterrupted run.
    import errno

    from leisim import outputs
    from leisim.formats import checkpoint as store
    from leisim.simulator import results

    out = tmp_path / "full"
    put, calls = store.ChunkStore.put, []

    def full_after_three(self, stream, start, record):
        calls.append(start)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.chunk_path(stream, start)))
        put(self, stream, start, record)

    def refused_for_space(result, fragment):
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in result.output, result.output
        assert fragment in errors[0] and "free some space" in errors[0], errors[0]
        assert f"leisim simulate --resume {out}" in errors[0], errors[0]
        assert sorted(p.name for p in out.iterdir()) == [".checkpoint"]
        assert not [p for p in tmp_path.iterdir() if p.name != "full"]  # no staging folder, no lock file

    monkeypatch.setattr(store.ChunkStore, "put", full_after_three)
    refused_for_space(CliRunner().invoke(main, RUN + ["--out", str(out)]), "main-000000003000.npz")
    assert len(list((out / ".checkpoint").glob("main-*.npz"))) == 3
    monkeypatch.setattr(store.ChunkStore, "put", put)

    monkeypatch.setattr(outputs, "free_bytes", lambda path: 10_000_000)  # too little for the outputs
    refused_for_space(CliRunner().invoke(main, ["simulate", "--resume", str(out)]), "outputs need about")
    monkeypatch.undo()

    def write_half(path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF half a file")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(results, "write_netcdf", write_half)
    refused_for_space(CliRunner().invoke(main, ["simulate", "--resume", str(out)]), "results.nc")
    monkeypatch.undo()
    assert len(list((out / ".checkpoint").glob("main-*.npz"))) == CHUNKS  # every chunk was finished

    result = run("simulate", "--resume", str(out))
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out)


@pytest.mark.slow
def test_two_runs_started_on_one_folder_one_is_refused_the_other_unmixed(reference, tmp_path):
    # Run A is writing its checkpoint when run B (another seed, with --overwrite) starts on the same
    # folder: B is refused with exit 2 while A holds the folder's lock, and A finishes with exactly
    # the uninterrupted run's years (before the lock, B's years replaced 230,000 of A's 300,000).
    out = tmp_path / "shared"
    first = subprocess.Popen(LAUNCH + RUN + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None and not list(out.glob(".checkpoint/main-*.npz")):
        time.sleep(0.01)
    assert first.poll() is None, "run A finished before run B could start"
    # A is paused (SIGSTOP: it keeps its lock and its open files) while B starts and reaches the lock,
    # so that the two overlap however fast A runs (a warm A used to finish during B's start-up).
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(LAUNCH + RUN + ["--out", str(out), "--overwrite", "--seed", "2"], capture_output=True,
                                text=True, timeout=240)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    assert "Error:" in second.stderr and "Traceback" not in second.stderr
    assert f"pid {first.pid}" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0
    assert_same_run(reference, out)
