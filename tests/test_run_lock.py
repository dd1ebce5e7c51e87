"""One run per output directory: the lock file, stale locks, overwrite, and two real concurrent runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geovr.errors import UsageError
from geovr.testing import tiny
from geovr.train import checkpoint as ckpt_io
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runlock import RunLock, RunLockedError, lock_path, read_lock
from geovr.train.runner import check_output_dir
from geovr.train.trainer import build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path(run_dir).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": 0}))


def test_lock_names_the_holder_and_is_released(tmp_path):
    with RunLock(tmp_path / "r"):
        held = read_lock(tmp_path / "r")
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["started"] > 0
    assert not lock_path(tmp_path / "r").exists()


def test_a_live_holder_refuses_and_a_dead_one_is_taken_over(tmp_path, live_pid):
    write_lock(tmp_path / "live", live_pid)
    with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {live_pid} on host"):
        RunLock(tmp_path / "live").acquire()
    with pytest.raises(RunLockedError):
        check_output_dir(tmp_path / "live")
    write_lock(tmp_path / "other-host", 1, host="elsewhere.example")
    with pytest.raises(RunLockedError, match="host elsewhere.example"):
        RunLock(tmp_path / "other-host").acquire()
    pid = dead_pid()
    write_lock(tmp_path / "stale", pid)
    with pytest.warns(UserWarning, match=rf"taking over the lock of a run that is no longer running \(pid {pid}"):
        lock = RunLock(tmp_path / "stale").acquire()
    assert read_lock(tmp_path / "stale")["pid"] == os.getpid()
    lock.release()


def test_overwrite_never_deletes_a_directory_a_live_run_holds(tmp_path, live_pid):
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "r"), n=4)
    build(AccelerateTrainerConfig(batch_size=2, max_steps=2, progress=False), ctx).fit(ctx)
    assert ckpt_io.list_checkpoints(tmp_path / "r")
    write_lock(tmp_path / "r", live_pid)
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "r"), n=4)
    with pytest.raises(RunLockedError, match=str(live_pid)):
        build(AccelerateTrainerConfig(batch_size=2, max_steps=2, progress=False, overwrite=True), ctx).fit(ctx)
    assert ckpt_io.list_checkpoints(tmp_path / "r")  # untouched
    assert read_lock(tmp_path / "r")["pid"] == live_pid  # and the other run's lock is still there


def test_output_dir_that_is_a_file_or_not_writable_is_a_usage_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match=r"output_dir .*/f is a file"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(UsageError, match=r"output_dir .*/f/run is not writable"):
        check_output_dir(tmp_path / "f" / "run")
    with pytest.raises(UsageError, match="not writable"):
        check_output_dir("/sys/geovr-run")  # read-only even for root


@pytest.mark.slow
def test_two_runs_started_at_once_one_is_refused(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "geovr",
        "run",
        str(REPO / "recipes" / "tiny_synthetic.toml"),
        "trainer.max_steps=100000",
        "trainer.save_every=0",
        "trainer.progress=false",
        f'output_dir="{out}"',
    ]
    # the children must start with SIGINT at its default: a shell that runs the suite in the background
    # without job control starts it with SIGINT ignored, which children inherit and Python then keeps (no
    # KeyboardInterrupt ever). A Python-level handler here is reset to the default in the children at exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.time() + 240
        while all(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(0.2)
        done = [p for p in procs if p.poll() is not None]
        assert len(done) == 1, "exactly one run must be refused while the other trains"
        (loser,) = done
        (winner,) = [p for p in procs if p is not loser]
        err = loser.stderr.read()
        assert loser.returncode == 1, err
        assert f"is in use by another run (pid {winner.pid} on host {socket.gethostname()}" in err
        assert "Traceback" not in err
        while not lock_path(out).exists() and winner.poll() is None:
            time.sleep(0.2)
        assert read_lock(out)["pid"] == winner.pid
        winner.send_signal(signal.SIGINT)  # interrupted: the lock is released on the way out
        assert winner.wait(timeout=60) == 130
        assert not lock_path(out).exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_run_with_a_file_as_output_dir_fails_before_building(tmp_path, capsys):
    from geovr.cli.main import main

    (tmp_path / "out").write_text("not a directory")
    code = main(["run", str(REPO / "recipes" / "tiny_synthetic.toml"), f'output_dir="{tmp_path / "out"}"'])
    err = capsys.readouterr().err
    assert code == 2
    assert f"geovr: error: output_dir {tmp_path / 'out'} is a file, not a directory" in err
    assert "backbone qwen2_5_vl" not in err  # nothing was built
