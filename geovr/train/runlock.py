"""One run per output directory: ``RUN_DIR/.geovr-run.lock``.

The lock file is created atomically (``O_CREAT | O_EXCL``) by the process that trains into the
directory and holds ``{"pid", "host", "started", "argv"}``. Another run finding it refuses to start
(or to delete anything with ``overwrite = true``) while that process is alive; a lock left by a dead
process on the same host is taken over with a warning. A lock from another host cannot be checked and
is respected (delete the file when that run is known to be gone). Torch-free.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from geovr.errors import GeovrError

LOCK_NAME = ".geovr-run.lock"


class RunLockedError(GeovrError):
    """The output directory is held by another live run."""


def lock_path(run_dir: str | os.PathLike) -> Path:
    """``RUN_DIR/.geovr-run.lock``."""
    return Path(run_dir) / LOCK_NAME


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_lock(run_dir: str | os.PathLike) -> dict | None:
    """The holder recorded in the lock file (``None`` without one; ``{}`` when unreadable)."""
    p = lock_path(run_dir)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    """``pid 123 on host h, started 2026-01-01 10:00:00 UTC``."""
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {when}"


def live_holder(run_dir: str | os.PathLike) -> dict | None:
    """The holder of ``run_dir``'s lock when it may still be running (a live pid on this host, or any
    pid on another host); ``None`` when the directory is free or the lock is stale."""
    holder = read_lock(run_dir)
    if holder is None:
        return None
    pid, host = holder.get("pid"), holder.get("host")
    if host == socket.gethostname() and isinstance(pid, int):
        return holder if pid != os.getpid() and _pid_alive(pid) else None
    return holder  # another host (or an unreadable lock): cannot tell, so respect it


def _refusal(run_dir, holder: dict) -> RunLockedError:
    return RunLockedError(
        f"{run_dir} is in use by another run ({describe(holder) if holder else 'unreadable lock'}; "
        f"lock file {lock_path(run_dir)}); wait for it to finish, choose another output_dir, or "
        f"delete the lock file if that run is known to be gone"
    )


def check_free(run_dir: str | os.PathLike) -> None:
    """Raise :class:`RunLockedError` when another live run holds ``run_dir`` (nothing is taken)."""
    holder = live_holder(run_dir)
    if holder is not None:
        raise _refusal(run_dir, holder)


class RunLock:
    """``with RunLock(run_dir):`` hold the lock of ``run_dir`` (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.held = False

    def acquire(self) -> RunLock:
        """Create the lock file or raise :class:`RunLockedError`; a stale lock is replaced with a warning."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.run_dir)
                if holder is None:
                    continue  # released in between: try again
                if live_holder(self.run_dir) is not None:
                    raise _refusal(self.run_dir, holder) from None
                warnings.warn(
                    f"{self.run_dir}: taking over the lock of a run that is no longer running ({describe(holder)})",
                    stacklevel=2,
                )
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise _refusal(self.run_dir, read_lock(self.run_dir) or {})

    def release(self) -> None:
        """Delete the lock file if this process still holds it."""
        if not self.held:
            return
        self.held = False
        holder = read_lock(self.run_dir)
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
