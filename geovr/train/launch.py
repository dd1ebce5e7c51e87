"""Multi-process launching through an ``accelerate`` config file (DDP, FSDP, DeepSpeed ZeRO).

An accelerate config file describes processes, not a model, so it is applied by *launching*: the
``geovr`` command re-executes itself under ``accelerate launch --config_file FILE -m geovr ...``; every
launched process then builds the recipe and the trainer's ``Accelerator`` picks the distributed set-up up
from the environment the launcher prepared. ``GEOVR_LAUNCHED=1`` marks the children so they never
launch again. On CPU-only machines ``accelerate launch`` starts several processes only through MPI;
without it use ``torchrun --nproc_per_node N -m geovr run RECIPE`` (gloo), which the trainer supports the
same way. Torch-free.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

#: Environment variables that show this process was started by a launcher (accelerate, torchrun, ...).
LAUNCHER_ENV = ("GEOVR_LAUNCHED", "LOCAL_RANK", "WORLD_SIZE", "ACCELERATE_MIXED_PRECISION")


def launched(environ=None) -> bool:
    """True inside a process started by ``accelerate launch`` / ``torchrun`` (or by :func:`relaunch`)."""
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in LAUNCHER_ENV)


def launch_command(config_file: str, geovr_args: Sequence[str]) -> list[str]:
    """``python -m accelerate.commands.launch --config_file FILE -m geovr <geovr_args>``."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "-m",
        "geovr",
        *geovr_args,
    ]


def relaunch(config_file: str, geovr_args: Sequence[str]) -> int:
    """Run ``geovr <geovr_args>`` under ``accelerate launch`` with ``config_file``; returns its exit code.

    ``geovr run`` calls this when ``--accelerate-config`` (or ``trainer.accelerate_config``) is given and
    the process was not launched yet, e.g. ``geovr run r.toml --accelerate-config fsdp.yaml``.
    """
    from geovr.errors import UsageError

    if not os.path.isfile(config_file):
        raise UsageError(f"accelerate config file not found: {config_file}")
    env = {**os.environ, "GEOVR_LAUNCHED": "1"}
    return subprocess.call(launch_command(config_file, geovr_args), env=env)
