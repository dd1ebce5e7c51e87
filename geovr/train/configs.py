"""Recipe options of the ``accelerate`` trainer (torch-free).

The defaults are the reference fine-tuning hyper-parameters: LLM/merger learning rate 2e-5, new tokens
and objective heads 1e-4, cosine schedule with 3 % warm-up, gradient clipping at 1.0.
"""

from __future__ import annotations

import difflib
import os
from typing import Literal

import attrs

from geovr.finite import nonfinite_options
from geovr.recipe.preflight import missing_path


@attrs.define
class AccelerateTrainerConfig:
    """``[trainer] component = "accelerate"``.

    Optimisation: ``lr`` (backbone ``"base"`` parameters), ``head_lr`` (geometry tokens + objective
    heads), ``weight_decay``, ``betas``, ``eps``; ``warmup_ratio`` of a cosine schedule over all steps;
    ``grad_accum`` micro-batches per optimizer step, or ``global_batch_size`` (samples per optimizer step
    over all processes; 0 = off), which sets ``grad_accum = global_batch_size / (batch_size × processes)``
    at launch (an error when that does not divide); ``max_grad_norm`` clipping (0 = off);
    ``mixed_precision`` (``"no"``, ``"bf16"``, ``"fp16"``); ``gradient_checkpointing`` is passed to the
    backbone. Length: ``max_steps`` optimizer steps (0 = ``epochs`` passes over ``data.train``).
    Data: ``batch_size`` per process, ``num_workers``, ``shuffle`` (seeded, deterministic order).
    Loss: ``lm_weight``·L_lm + Σ weight_k·L_k. ``token_dropout`` (0 ≤ p < 1, default 0 = the method as
    released): the probability that a micro-batch is trained without the inserted geometry tokens (camera
    tokens, scale token), i.e. laid out as inference sees it; the objectives that read those tokens sit that
    micro-batch out (no loss, nothing logged for it). The draw depends only on the seed, the step and the
    micro-batch, so every process agrees and a resumed run repeats it. Logging: ``log_every`` steps into ``metrics.jsonl``,
    ``progress`` (tqdm bar), ``log_with``: accelerate trackers that receive the same metrics
    (``["tensorboard", "wandb", "mlflow", ...]``, any name accelerate knows; ``tensorboard`` writes to
    ``RUN_DIR/tensorboard``), ``tensorboard = true`` is short for adding ``"tensorboard"``.
    Non-finite losses: ``on_nonfinite = "stop"`` ends the run with an error naming the step and the
    objective; ``"skip_step"`` drops that optimizer step (counted as ``skipped_steps`` in metrics.jsonl).
    Checkpoints: ``save_every`` steps (0 = only at the end),
    ``keep_last`` newest kept (0 = all); ``resume`` = ``true`` (latest checkpoint of ``output_dir``) or a
    run/checkpoint directory (a run whose schedule or data settings differ from the checkpoint's is
    refused unless ``resume_force``); ``overwrite`` lets a fresh run replace the checkpoints already in
    ``output_dir`` (otherwise that is an error); ``init_from``: a directory written by ``geovr import``
    whose geometry tokens and heads initialise a fresh run (ignored when resuming). Teacher cache: ``cache`` = ``"auto"`` (read hits, compute and store misses),
    ``"off"``, ``"only"`` (a miss is an error); ``cache_dir`` (default ``$GEOVR_CACHE_DIR`` or
    ``~/.cache/geovr/teacher``); ``cache_outputs`` output groups stored (``pose``, ``depth``, ``scale``,
    ``features``; the others are computed online), ``cache_dtype`` their storage dtype (``float32``,
    ``bfloat16``, ``float16``, ``float8_e4m3fn``, ``float8_e5m2``); ``cache_max_bytes`` (0 = no limit): a
    ``cache = "auto"`` run whose projected cache size exceeds it stops before the first step (see
    ``geovr cache RECIPE --estimate``). ``sharding``: ``"ddp"`` (default; or what ``accelerate_config``
    sets up) or ``"fsdp"``: torch FSDP2 ``fully_shard`` of the student's blocks and the heads, with
    full-state checkpoints (:mod:`geovr.train.sharding`; needs several processes). ``accelerate_config``: an ``accelerate`` config file (DDP, FSDP,
    DeepSpeed) used when ``geovr run`` launches the processes.
    """

    lr: float = 2e-5
    head_lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = attrs.field(factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_ratio: float = 0.03
    max_steps: int = 0
    epochs: int = 1
    batch_size: int = 1
    grad_accum: int = 1
    global_batch_size: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    lm_weight: float = 1.0
    token_dropout: float = 0.0
    num_workers: int = 0
    shuffle: bool = True
    log_every: int = 1
    progress: bool = True
    tensorboard: bool = False
    log_with: list[str] = attrs.field(factory=list)
    on_nonfinite: Literal["stop", "skip_step"] = "stop"
    save_every: int = 0
    keep_last: int = 2
    resume: bool | str = False
    resume_force: bool = False
    init_from: str | None = None
    overwrite: bool = False
    cache: Literal["auto", "off", "only"] = "off"
    cache_dir: str | None = None
    cache_outputs: list[str] = attrs.field(factory=lambda: ["pose", "depth", "scale", "features"])
    cache_dtype: Literal["float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"] = "float32"
    cache_max_bytes: int = 0
    sharding: Literal["ddp", "fsdp"] = "ddp"
    accelerate_config: str | None = None
    find_unused_parameters: bool = True

    def preflight(self) -> list[str]:
        """An accelerate config file and an explicit resume directory must exist."""
        resume = self.resume if isinstance(self.resume, str) else None
        return (
            missing_path(self.accelerate_config, "accelerate_config", kind="file")
            + missing_path(resume, "resume", kind="dir")
            + missing_path(self.init_from, "init_from", kind="dir")
        )

    def _global_batch_problems(self) -> list[str]:
        """``global_batch_size`` (0 = use ``grad_accum``) excludes ``grad_accum`` and divides by ``batch_size``."""
        if self.global_batch_size < 0:
            return [f"global_batch_size must be >= 0 (0 = use grad_accum), got {self.global_batch_size}"]
        problems = []
        if self.global_batch_size and self.grad_accum != 1:
            problems.append(
                f"set either grad_accum ({self.grad_accum}) or global_batch_size "
                f"({self.global_batch_size}), not both: the accumulation follows from the global batch"
            )
        if self.global_batch_size and self.batch_size >= 1 and self.global_batch_size % self.batch_size:
            problems.append(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of batch_size ({self.batch_size})"
            )
        return problems

    def check(self) -> list[str]:
        """Cross-field rules (reported with the ``trainer.`` prefix by recipe validation)."""
        problems = nonfinite_options(self)
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "log_every": self.log_every}
        for key, v in positive.items():
            if v < 1:
                problems.append(f"{key} must be >= 1, got {v}")
        for key, v in {
            "max_steps": self.max_steps,
            "save_every": self.save_every,
            "keep_last": self.keep_last,
            "num_workers": self.num_workers,
        }.items():
            if v < 0:
                problems.append(f"{key} must be >= 0, got {v}")
        problems += self._global_batch_problems()
        if self.max_steps == 0 and self.epochs < 1:
            problems.append(f"epochs must be >= 1 when max_steps = 0, got {self.epochs}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr < 0 or self.head_lr < 0:
            problems.append(f"learning rates must be >= 0, got lr={self.lr}, head_lr={self.head_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.token_dropout < 1:
            problems.append(
                f"token_dropout must be in [0, 1) (0 = always insert the geometry tokens), got {self.token_dropout}"
            )
        if self.max_grad_norm < 0:
            problems.append(f"max_grad_norm must be >= 0 (0 = no clipping), got {self.max_grad_norm}")
        groups = ("pose", "depth", "scale", "features")
        bad = [o for o in self.cache_outputs if o not in groups]
        if bad:
            problems.append(f"cache_outputs: unknown output group(s) {bad}; choose from {list(groups)}")
        if self.cache_max_bytes < 0:
            problems.append(f"cache_max_bytes must be >= 0 (0 = no limit), got {self.cache_max_bytes}")
        if self.accelerate_config is not None and not os.path.isfile(self.accelerate_config):
            problems.append(f"accelerate_config: file not found: {self.accelerate_config}")
        problems += self._tracker_problems()
        return problems

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on ``world_size`` processes: ``grad_accum``, or with
        ``global_batch_size`` set, ``global_batch_size / (batch_size × world_size)``. Raises
        :class:`~geovr.errors.GeovrError` when the global batch is not a multiple of ``batch_size × world_size``."""
        if not self.global_batch_size:
            return self.grad_accum
        per_step = self.batch_size * world_size
        if self.global_batch_size % per_step:
            from geovr.errors import GeovrError

            raise GeovrError(
                f"trainer.global_batch_size = {self.global_batch_size} is not a multiple of batch_size "
                f"({self.batch_size}) × processes ({world_size}) = {per_step}; change batch_size or "
                f"the number of processes"
            )
        return self.global_batch_size // per_step

    def for_world(self, world_size: int) -> AccelerateTrainerConfig:
        """This config with ``grad_accum`` resolved for ``world_size`` processes (see :meth:`accumulation`)."""
        return attrs.evolve(self, grad_accum=self.accumulation(world_size), global_batch_size=0)

    def trackers(self) -> list[str]:
        """The accelerate tracker names metrics go to (``log_with`` plus ``tensorboard`` when set), no repeats."""
        names = list(self.log_with) + (["tensorboard"] if self.tensorboard else [])
        return list(dict.fromkeys(n.lower() for n in names))

    def _tracker_problems(self) -> list[str]:
        if not self.log_with:
            return []
        from accelerate.utils import LoggerType

        known = sorted(t.value for t in LoggerType if t.value != "all")
        out = []
        for name in self.log_with:
            if name.lower() not in known:
                close = difflib.get_close_matches(name.lower(), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                out.append(f"log_with: unknown tracker {name!r}{hint}; accelerate knows {', '.join(known)}")
        return out

    def resolved_cache_dir(self) -> str:
        """Where teacher outputs are cached (``cache_dir``, ``$GEOVR_CACHE_DIR``, or the user cache)."""
        if self.cache_dir:
            return os.path.expanduser(self.cache_dir)
        env = os.environ.get("GEOVR_CACHE_DIR")
        if env:
            return os.path.expanduser(env)
        return os.path.join(os.path.expanduser("~"), ".cache", "geovr", "teacher")
