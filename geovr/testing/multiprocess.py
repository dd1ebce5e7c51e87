"""Launch a script in several local processes the way ``torchrun`` / ``accelerate launch`` do (tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def launch(script_text: str, tmp_path, *args, world: int = 2, timeout: float = 180, name: str = "run.py"):
    """Run ``script_text`` in ``world`` processes with the environment torchrun / accelerate launch set up
    (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT for a gloo rendezvous), without the extra launcher
    process; raises AssertionError unless every process exits 0 and returns their ``(stdout, stderr)``."""
    script = tmp_path / name
    script.write_text(script_text)
    with socket.socket() as s:  # a free port for the gloo rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    outputs = [p.communicate(timeout=timeout) for p in procs]
    for p, (so, se) in zip(procs, outputs, strict=False):
        assert p.returncode == 0, so[-3000:] + se[-3000:]
    return outputs
