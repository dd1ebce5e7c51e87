"""The ``accelerate`` trainer: student + objectives against a frozen teacher, on HF accelerate.

Per optimizer step (``grad_accum`` micro-batches, gradients synchronised only on the last one)::

    batch ─▶ teacher (no_grad, eval; or the cache) ─▶ TeacherOutput (+ metric teacher's metric_depth)
    batch ─▶ backbone.prepare ─▶ TrainModule: backbone(inputs, geometry=∪ objective.student_needs)
           ─▶ total = lm_weight·L_lm + Σ weight_k·L_k ─▶ accelerator.backward(total / grad_accum)
    clip (max_grad_norm) ─▶ AdamW step (groups: base @ lr; new tokens + heads @ head_lr) ─▶ cosine LR

The run directory gets ``recipe.toml``, ``environment.json``, ``metrics.jsonl`` and checkpoints (see
:mod:`geovr.train.checkpoint`); ``resume`` continues bit-exactly on CPU.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from geovr.data.counts import DataCounter
from geovr.errors import CheckpointError, GeovrError
from geovr.protocols import TeacherOutput
from geovr.recipe.dump import to_toml
from geovr.train import checkpoint as ckpt_io
from geovr.train.assembly import (
    TrainModule,
    check_before_training,
    objective_names,
    parameter_groups,
)
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.data import batch_stream, batches_per_epoch
from geovr.train.runlog import MetricsLog, atomic_write, environment
from geovr.train.schedule import cosine_with_warmup
from geovr.train.teacher_cache import make_sources, merge_metric

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


#: Trainer options that change the learning-rate schedule or the data order (compared on resume).
SCHEDULE_KEYS = (
    "max_steps",
    "epochs",
    "lr",
    "head_lr",
    "warmup_ratio",
    "weight_decay",
    "batch_size",
    "grad_accum",
    "token_dropout",
    "shuffle",
)


class NonFiniteLossError(GeovrError):
    """A loss or the gradients became ``inf``/``nan`` (``trainer.on_nonfinite = "stop"``)."""


def describe_nonfinite(bad: list[str], sums: dict[str, float]) -> str:
    """``"non-finite loss in objective 'depth' (nan)"`` from the names :meth:`AccelerateTrainer._accumulate`
    flagged (``"gradients"`` for a non-finite gradient norm; empty on a process that saw none)."""
    if not bad:
        return "non-finite loss on another process"
    if bad == ["gradients"]:
        return "non-finite gradient norm (the losses were finite)"
    objectives = [b for b in bad if b not in ("loss", "lm_loss")]
    parts = [f"objective {o!r} ({sums.get(f'{o}/loss', float('nan'))})" for o in objectives]
    if "lm_loss" in bad:
        parts.append(f"the language-model loss ({sums.get('lm_loss')})")
    if not parts:
        parts.append("the weighted total (each term was finite; their sum overflowed)")
    return "non-finite loss in " + ", ".join(parts)


def tracker_config(config: AccelerateTrainerConfig, settings: dict) -> dict[str, Any]:
    """Hyper-parameters given to the trackers' ``store_init_configuration`` (scalars and strings only)."""
    out = {f"trainer.{k}": v for k, v in attrs.asdict(config).items() if isinstance(v, (bool, int, float, str))}
    out.update({k: v for k, v in settings.items() if isinstance(v, (bool, int, float, str))})
    return out


@attrs.define
class TrainState:
    """What callbacks see: ``step`` (optimizer steps done), ``max_steps``, ``epoch``, ``metrics`` of the
    last step, ``run_dir``, ``accelerator``, ``model`` (the wrapped :class:`TrainModule`)."""

    step: int
    max_steps: int
    epoch: int
    metrics: dict[str, float]
    run_dir: str
    accelerator: Any = None
    model: Any = None
    should_stop: bool = False


@attrs.define(eq=False)
class _Run:
    """What the step loop works on: set up by :meth:`AccelerateTrainer._setup`, advanced by the loop.

    ``step``: optimizer steps done; ``epoch`` / ``position``: where the data stream is (the next batch
    index within the epoch); ``skipped``: non-finite steps skipped; ``last_saved``: step of the last
    checkpoint (-1: none); ``samples`` / ``t_last``: for the throughput of the next logged step."""

    acc: Any
    run_dir: str
    backbone: Any
    objectives: list
    model: Any
    optimizer: Any
    scheduler: Any
    total: int
    per_epoch: int
    fingerprint: str
    settings: dict[str, Any]
    names: list[str]
    counter: DataCounter
    teacher: Any = None
    metric: Any = None
    log: MetricsLog | None = None
    stream: Any = None
    bar: Any = None
    trainable: list = attrs.field(factory=list)
    step: int = 0
    epoch: int = 0
    position: int = 0
    skipped: int = 0
    last_saved: int = -1
    metrics: dict[str, Any] = attrs.field(factory=dict)
    samples: int = 0
    t_last: float = 0.0


def _enable_gradient_checkpointing(backbone) -> None:
    """Turn on the backbone's (or its HF ``model``'s) activation / gradient checkpointing."""
    enable = None
    for owner in (backbone, getattr(backbone, "model", None)):
        for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):
            enable = enable or getattr(owner, name, None)
    if enable is None:
        raise GeovrError("trainer.gradient_checkpointing: the backbone does not support gradient checkpointing")
    enable()


def resume_path(config: AccelerateTrainerConfig, run_dir: str) -> Path | None:
    """The checkpoint to resume from (``None`` for a fresh run); :class:`CheckpointError` when asked but absent."""
    if config.resume is False or config.resume == "":
        return None
    where = run_dir if config.resume is True else str(config.resume)
    return ckpt_io.find_checkpoint(where)


class AccelerateTrainer:
    """Built by :func:`build`; :meth:`fit` trains and returns the final metrics."""

    def __init__(self, config: AccelerateTrainerConfig, context: BuildContext | None = None):
        self.config = config
        self._fsdp: Any = None  # the FSDP2 sharding of an ``sharding = "fsdp"`` run
        self._data_counts: Any = None  # the data counters of the checkpoint being resumed

    # -- setup -----------------------------------------------------------------------------------
    def _accelerator(self, context: BuildContext, run_dir: str):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.tracking import TensorBoardTracker
        from accelerate.utils import DistributedDataParallelKwargs

        AcceleratorState._reset_state()  # several runs in one process (tests, notebooks)
        kwargs = [DistributedDataParallelKwargs(find_unused_parameters=self.config.find_unused_parameters)]
        # tensorboard goes to RUN_DIR/tensorboard; every other tracker gets the recipe name as its project
        trackers = [
            TensorBoardTracker("tensorboard", run_dir) if name == "tensorboard" else name
            for name in self.config.trackers()
        ]
        return Accelerator(
            mixed_precision=self.config.mixed_precision,
            cpu=str(context.device) == "cpu",
            kwargs_handlers=kwargs,
            log_with=trackers or None,
            project_dir=run_dir,
        )

    def _lock(self, acc, run_dir: str):
        """Take ``run_dir``'s lock on the main process; every process raises when it is held elsewhere."""
        from geovr.train.runlock import RunLock, RunLockedError

        lock, refusal = RunLock(run_dir), None
        if acc.is_main_process:
            try:
                lock.acquire()
            except RunLockedError as exc:
                refusal = str(exc)
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            refusal = broadcast_object_list([refusal])[0]
        if refusal is not None:
            raise RunLockedError(refusal)
        return lock

    def settings(self, context: BuildContext) -> dict[str, Any]:
        """The settings that fix the learning-rate schedule and the data order, stored in every checkpoint
        and compared on resume: the trainer's schedule options, the seed and the ``data.train`` table."""
        cfg = self.config
        out: dict[str, Any] = {f"trainer.{k}": getattr(cfg, k) for k in SCHEDULE_KEYS}
        out["trainer.betas"] = list(cfg.betas)
        out["seed"] = context.seed
        recipe = getattr(context, "recipe", None)
        if recipe is not None:
            out["data.train"] = json.loads(json.dumps((recipe.raw.get("data") or {}).get("train"), default=str))
        return out

    def fit(self, context: BuildContext) -> dict[str, float]:
        """Train ``context.backbone`` with ``context.objectives``; see the module docstring.

        Checks → accelerator and run-directory lock → :meth:`_run` (set-up, restore, step loop, final save)."""
        cfg = self.config
        run_dir = str(context.output_dir or "runs/unnamed")
        check_before_training(cfg, context)
        start_ckpt = resume_path(cfg, run_dir)
        if cfg.accelerate_config:
            from geovr.train.launch import launched

            if not launched():
                warnings.warn(
                    f"trainer.accelerate_config = {cfg.accelerate_config!r} is applied by the launcher; this "
                    f"process was not started by `accelerate launch` (use `geovr run RECIPE "
                    f"--accelerate-config FILE`), so it trains in a single process",
                    stacklevel=2,
                )
        acc = self._accelerator(context, run_dir)
        lock = self._lock(acc, run_dir)
        try:
            self._claim_run_dir(acc, run_dir, fresh=start_ckpt is None)
            return self._run(context, acc, run_dir, start_ckpt)
        finally:
            lock.release()

    def _claim_run_dir(self, acc, run_dir: str, *, fresh: bool) -> None:
        """A fresh run removes old checkpoints with ``overwrite`` and refuses to mix with them otherwise."""
        if fresh and self.config.overwrite and acc.is_main_process:
            import shutil

            shutil.rmtree(ckpt_io.checkpoint_root(run_dir), ignore_errors=True)
        acc.wait_for_everyone()
        if fresh and ckpt_io.list_checkpoints(run_dir) and not self.config.overwrite:
            raise CheckpointError(
                f"{run_dir} already holds checkpoints of an earlier run; continue it with "
                f"`geovr run RECIPE --resume {run_dir}` (trainer.resume=true) or choose "
                f"another output_dir (or trainer.overwrite=true)"
            )

    def _run(self, context: BuildContext, acc, run_dir: str, start_ckpt) -> dict[str, float]:
        """Set up, restore, loop, save; returns the last step's numeric metrics and ``steps``."""
        self.config = self.config.for_world(acc.num_processes)  # global_batch_size → grad_accum for this world
        torch.manual_seed(context.seed)
        run = self._setup(context, acc, run_dir)
        self._start(run, context, start_ckpt)
        run.teacher, run.metric = make_sources(
            context,
            mode=self.config.cache,
            device=acc.device,
            cache_dir=self.config.resolved_cache_dir(),
            config=self.config,
        )
        self._open_logs(run, context, resumed=start_ckpt is not None)
        callbacks = list(context.callbacks)
        state = TrainState(
            step=run.step,
            max_steps=run.total,
            epoch=run.epoch,
            metrics={},
            run_dir=run_dir,
            accelerator=acc,
            model=run.model,
        )
        self._call(callbacks, "on_train_start", state)
        self._open_stream(run, context)
        try:
            self._loop(run, state, callbacks)
            if run.step != run.last_saved and run.step > 0:
                self._save(run)
        finally:
            self._close_logs(run)
        self._call(callbacks, "on_train_end", state)
        acc.wait_for_everyone()
        result = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float))}
        result["steps"] = run.step
        return result

    # -- set-up ----------------------------------------------------------------------------------
    def _setup(self, context: BuildContext, acc, run_dir: str) -> _Run:
        """The model (student + objectives), the optimizer and its schedule, the data sizes."""
        cfg, backbone = self.config, context.backbone
        if cfg.gradient_checkpointing:
            _enable_gradient_checkpointing(backbone)
        module = TrainModule(backbone, list(context.objectives), lm_weight=cfg.lm_weight).to(acc.device)
        module.train()
        fingerprint = ckpt_io.frozen_fingerprint(backbone)
        settings = self.settings(context)
        self._fsdp = None
        if cfg.sharding == "fsdp":  # torch FSDP2 (geovr.train.sharding); the optimizer is built on the shards
            from geovr.train.sharding import FSDPSharding

            self._fsdp = FSDPSharding(module, acc)
        groups = parameter_groups(
            backbone, context.objectives, lr=cfg.lr, head_lr=cfg.head_lr, weight_decay=cfg.weight_decay
        )
        if not groups:
            raise GeovrError("nothing to train: the backbone and the objectives have no trainable parameters")
        optimizer = torch.optim.AdamW(
            groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        per_epoch = batches_per_epoch(len(context.datasets["train"]), cfg.batch_size, acc.num_processes)
        total = cfg.max_steps or max(1, cfg.epochs * per_epoch // cfg.grad_accum)
        scheduler = cosine_with_warmup(optimizer, round(cfg.warmup_ratio * total), total)
        if self._fsdp is None:
            model, optimizer = acc.prepare(module, optimizer)
        else:  # accelerate would wrap the sharded module in DDP on CPU
            model, optimizer = module, acc.prepare(optimizer)
        return _Run(
            acc=acc,
            run_dir=run_dir,
            backbone=backbone,
            objectives=list(context.objectives),
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            total=total,
            per_epoch=per_epoch,
            fingerprint=fingerprint,
            settings=settings,
            names=objective_names(context.objectives),
            counter=DataCounter(context.datasets["train"], acc.num_processes),
        )

    def _start(self, run: _Run, context: BuildContext, start_ckpt) -> None:
        """Restore ``start_ckpt`` (a resumed run) or load ``trainer.init_from`` (a fresh run from a released model)."""
        if start_ckpt is not None:
            run.step, run.epoch, run.position, run.skipped = self._restore(
                start_ckpt,
                run.backbone,
                run.objectives,
                run.optimizer,
                run.scheduler,
                fingerprint=run.fingerprint,
                world=run.acc.num_processes,
                rank=run.acc.process_index,
                settings=run.settings,
            )
            run.counter.load(self._data_counts, run.acc.process_index)
            run.last_saved = run.step
        elif self.config.init_from:
            from geovr.train.released import load_init

            load_init(self.config.init_from, run.backbone, context.objectives)

    def _open_logs(self, run: _Run, context: BuildContext, *, resumed: bool) -> None:
        """``recipe.toml``, ``environment.json`` and ``metrics.jsonl`` (main process), then the trackers."""
        cfg, acc = self.config, run.acc
        if acc.is_main_process:
            Path(run.run_dir).mkdir(parents=True, exist_ok=True)
            if context.recipe is not None:
                atomic_write(Path(run.run_dir) / "recipe.toml", to_toml(context.recipe.raw))
            atomic_write(
                Path(run.run_dir) / "environment.json",
                json.dumps(
                    environment(
                        {
                            "num_processes": acc.num_processes,
                            "mixed_precision": cfg.mixed_precision,
                            "device": str(acc.device),
                        }
                    ),
                    indent=2,
                    sort_keys=True,
                    default=str,
                ),
            )
            run.log = MetricsLog(run.run_dir, resume_step=run.step if resumed else None)
        if cfg.trackers():
            project = context.recipe.name if context.recipe is not None else Path(run.run_dir).name
            acc.init_trackers(project, config=tracker_config(cfg, run.settings))

    def _open_stream(self, run: _Run, context: BuildContext) -> None:
        """The batch stream from the restored position and the progress bar."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, run.acc
        run.stream = batch_stream(
            context.datasets["train"],
            batch_size=cfg.batch_size,
            seed=context.seed,
            shuffle=cfg.shuffle,
            world=acc.num_processes,
            rank=acc.process_index,
            num_workers=cfg.num_workers,
            epoch=run.epoch,
            batch=run.position,
            max_epochs=None if cfg.max_steps else cfg.epochs,
        )
        run.bar = tqdm(
            total=run.total,
            initial=run.step,
            desc="geovr train",
            unit="step",
            dynamic_ncols=True,
            disable=not (acc.is_main_process and cfg.progress),
        )
        run.trainable = [p for g in run.optimizer.param_groups for p in g["params"]]
        run.t_last = time.perf_counter()

    def _close_logs(self, run: _Run) -> None:
        if run.bar is not None:
            run.bar.close()
        if run.log is not None:
            run.log.close()
        if self.config.trackers():
            run.acc.end_training()

    # -- the step loop ---------------------------------------------------------------------------
    def _loop(self, run: _Run, state: TrainState, callbacks: list) -> None:
        """One optimizer step per iteration until ``max_steps``, the end of the data or a callback's stop."""
        cfg = self.config
        while run.step < run.total:
            sums, bad = self._forward_backward(run)
            if not sums:  # the data ran out
                break
            self._optimizer_step(run, sums, bad)
            run.bar.update(1)
            if cfg.save_every and run.step % cfg.save_every == 0:
                self._save(run)
            state.step, state.epoch, state.metrics = run.step, run.epoch, run.metrics
            self._call(callbacks, "on_step_end", state)
            if state.should_stop:
                break

    def _forward_backward(self, run: _Run) -> tuple[dict[str, float], list[str]]:
        """``grad_accum`` micro-batches (gradients synchronised on the last): summed numbers, non-finite names."""
        cfg, acc = self.config, run.acc
        sums: dict[str, float] = {}
        bad: list[str] = []
        for micro in range(cfg.grad_accum):
            try:
                run.epoch, index, batch = next(run.stream)
            except StopIteration:
                break
            run.position = index + 1
            run.counter.update(batch)
            batch = batch.to(acc.device)
            teacher_out = self._teacher_outputs(run, batch)
            inputs = {
                k: (v.to(acc.device) if isinstance(v, torch.Tensor) else v)
                for k, v in run.backbone.prepare(batch).items()
            }
            plain = self._plain(run, micro)
            with nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(run.model):
                out = run.model(inputs, teacher_out, batch, plain=plain)
                acc.backward(out["total"] / cfg.grad_accum)
            bad += [k for k in self._accumulate(sums, out, run.names) if k not in bad]
            run.samples += batch.batch_size
        return sums, bad

    def _plain(self, run: _Run, micro: int) -> bool:
        """Whether this micro-batch leaves the geometry tokens out (``trainer.token_dropout``): a draw
        from the seed, the step and the micro-batch index, the same on every process and on resume (a
        no-op when no objective inserts tokens)."""
        p = self.config.token_dropout
        if p <= 0:
            return False
        return bool(np.random.default_rng([int(run.settings["seed"]), run.step, micro, 0x70D0]).random() < p)

    @staticmethod
    def _teacher_outputs(run: _Run, batch) -> TeacherOutput:
        """The teacher's (or the cache's) outputs for ``batch``, merged with the metric teacher's ``metric_depth``."""
        with torch.no_grad():
            t_out = run.teacher.encode(batch) if run.teacher is not None else None
            m_out = run.metric.encode(batch) if run.metric is not None else None
        return merge_metric(t_out if t_out is not None else TeacherOutput(), m_out)

    def _optimizer_step(self, run: _Run, sums: dict[str, float], bad: list[str]) -> None:
        """Clip, then apply the step, or skip / stop on a non-finite loss or gradient norm on any process."""
        cfg, acc = self.config, run.acc
        grad_norm = None
        if not self._any_process(acc, bool(bad)) and cfg.max_grad_norm > 0:
            grad_norm = float(acc.clip_grad_norm_(run.trainable, cfg.max_grad_norm))
            if not math.isfinite(grad_norm):
                bad = ["gradients"]
        if self._any_process(acc, bool(bad)):
            self._skip_step(run, describe_nonfinite(bad, sums))
            return
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.step += 1
        run.metrics = self._step_metrics(run, sums, grad_norm)
        if run.step % cfg.log_every == 0 or run.step == run.total:
            if run.log is not None:
                run.log.log(run.metrics)
            if cfg.trackers():
                acc.log({k: v for k, v in run.metrics.items() if k != "step"}, step=run.step)
        run.bar.set_postfix(loss=f"{run.metrics['loss']:.4f}", refresh=False)

    def _skip_step(self, run: _Run, what: str) -> None:
        """``on_nonfinite = "stop"``: raise; ``"skip_step"``: drop the gradients, advance the schedule, log."""
        cfg = self.config
        if cfg.on_nonfinite == "stop":
            raise NonFiniteLossError(
                f"step {run.step + 1} (epoch {run.epoch}): {what}; the run stopped before this optimizer step "
                f"(nothing of it was applied or saved). Lower trainer.lr / trainer.head_lr or the "
                f'objective weights, or set trainer.on_nonfinite = "skip_step" to skip such steps'
            )
        run.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # the schedule advances with the step count
            warnings.simplefilter("ignore", UserWarning)
            run.scheduler.step()
        run.step += 1
        run.skipped += 1
        run.metrics = {
            "step": run.step,
            "epoch": run.epoch,
            "skipped": True,
            "skipped_steps": run.skipped,
            "nonfinite": what,
            "lr": run.optimizer.param_groups[0]["lr"],
        }
        if run.log is not None:
            run.log.log(run.metrics)
        if run.acc.is_main_process and cfg.progress:
            run.bar.write(f"geovr: warning: step {run.step}: {what}; optimizer step skipped ({run.skipped} so far)")

    def _step_metrics(self, run: _Run, sums: dict[str, float], grad_norm: float | None) -> dict[str, Any]:
        """Means over micro-batches and processes, plus step, epoch, learning rates, throughput, data counts."""
        acc, groups = run.acc, run.optimizer.param_groups
        metrics: dict[str, Any] = self._reduce(
            acc, {k: v / max(1, sums.get(f"_n/{k}", 1)) for k, v in sums.items() if not k.startswith("_n/")}
        )
        now = time.perf_counter()
        metrics.update(
            step=run.step,
            epoch=run.epoch,
            lr=groups[0]["lr"],
            samples_per_s=run.samples * acc.num_processes / max(now - run.t_last, 1e-9),
        )
        if len(groups) > 1:
            metrics["head_lr"] = groups[-1]["lr"]
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        metrics.update(run.counter.metrics(acc))
        if self.config.on_nonfinite == "skip_step":
            metrics["skipped_steps"] = run.skipped
        run.t_last, run.samples = now, 0
        return metrics

    # -- pieces ----------------------------------------------------------------------------------
    @staticmethod
    def _call(callbacks, hook: str, state: TrainState) -> None:
        for cb in callbacks:
            fn = getattr(cb, hook, None)
            if callable(fn):
                fn(state)

    @staticmethod
    def _accumulate(sums: dict[str, float], out: dict, names: list[str]) -> list[str]:
        """Add one micro-batch's numbers: ``loss``, ``lm_loss``, ``<name>/loss`` (the unweighted
        objective loss) and ``<name>/<metric>`` (an objective metric called ``loss`` is the same number);
        ``_n/<key>`` counts the micro-batches of each (an objective skipped by ``token_dropout`` adds nothing).
        Returns the non-finite ones: objective names, ``"lm_loss"``, ``"loss"`` (the weighted total)."""
        vals = {"loss": float(out["total"].detach())}
        if out["lm"] is not None:
            vals["lm_loss"] = float(out["lm"].detach())
        ran = []
        for name, o in zip(names, out["objectives"], strict=True):
            if o is None:
                continue
            ran.append(name)
            for k, v in o.metrics.items():
                vals[f"{name}/{k}"] = float(v)
            vals[f"{name}/loss"] = float(o.loss.detach())
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + v
            sums[f"_n/{k}"] = sums.get(f"_n/{k}", 0) + 1
        bad = [n for n in ran if not math.isfinite(vals[f"{n}/loss"])]
        return bad + [k for k in ("lm_loss", "loss") if not math.isfinite(vals.get(k, 0.0))]

    @staticmethod
    def _any_process(acc, flag: bool) -> bool:
        """``flag`` or-ed over processes (every process must call this the same number of times)."""
        if acc.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=acc.device)
        return bool(acc.reduce(t, reduction="sum").item() > 0)

    @staticmethod
    def _reduce(acc, metrics: dict[str, float]) -> dict[str, float]:
        """Mean of each metric over processes (keys are identical on every process)."""
        if acc.num_processes == 1 or not metrics:
            return metrics
        keys = sorted(metrics)
        t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=acc.device)
        t = acc.reduce(t, reduction="mean")
        return {k: float(v) for k, v in zip(keys, t.tolist(), strict=False)}

    def _save(self, run: _Run) -> None:
        """Checkpoint the step just done (collective: every process calls it)."""
        from accelerate.utils import gather_object

        acc, cfg = run.acc, self.config
        epoch, position = run.epoch, run.position
        if position >= run.per_epoch:  # the next micro-batch starts a new epoch
            epoch, position = epoch + 1, 0
        rngs = gather_object([ckpt_io.rng_state()]) if acc.num_processes > 1 else [ckpt_io.rng_state()]
        full = self._fsdp.full_state(run.optimizer) if self._fsdp is not None else None  # collective
        data_counts = run.counter.state()
        counts = gather_object([data_counts]) if acc.num_processes > 1 else [data_counts]
        if acc.is_main_process:
            heads = (
                full[1]
                if full
                else {
                    f"{i}.{k}": v.detach().cpu().contiguous().clone()
                    for i, o in enumerate(run.objectives)
                    for k, v in o.state_dict().items()
                }
            )
            ckpt_io.save_checkpoint(
                run.run_dir,
                run.step,
                model=full[0] if full else ckpt_io.trainable_state(run.backbone),
                objectives=heads,
                optimizer=full[2] if full else run.optimizer.state_dict(),
                scheduler=run.scheduler.state_dict(),
                rng=rngs,
                state={
                    "epoch": epoch,
                    "batch": position,
                    "world_size": acc.num_processes,
                    "frozen_fingerprint": run.fingerprint,
                    "batch_size": cfg.batch_size,
                    "grad_accum": cfg.grad_accum,
                    "settings": run.settings,
                    "skipped_steps": run.skipped,
                    "data_counts": counts,
                },
                keep_last=cfg.keep_last,
            )
        acc.wait_for_everyone()
        run.last_saved = run.step

    def _restore(self, path, backbone, objectives, optimizer, scheduler, *, fingerprint, world, rank, settings):
        loaded = ckpt_io.load_checkpoint(path)
        st = loaded["state"]
        self._data_counts = st.get("data_counts")
        where = str(loaded["path"])
        if st.get("frozen_fingerprint") not in (None, fingerprint):
            raise CheckpointError(
                f"{where}: the frozen weights of the backbone differ from those this checkpoint was "
                f"trained with (another base model or initialisation seed?)"
            )
        if st.get("world_size", world) != world:
            raise CheckpointError(
                f"{where}: saved with {st['world_size']} processes, this run has {world}; the data "
                f"order would differ, so the run cannot resume exactly"
            )
        diffs = settings_differences(st, settings)
        if diffs:
            listing = "\n".join(f"  - {d}" for d in diffs)
            if not self.config.resume_force:
                raise CheckpointError(
                    f"{where}: this run's settings change the schedule or the data order of the "
                    f"run being resumed:\n{listing}\nrestore them, or resume anyway with "
                    f"--resume-force (trainer.resume_force=true)"
                )
            warnings.warn(f"resuming {where} despite changed settings (--resume-force):\n{listing}", stacklevel=2)
        rest = ckpt_io.load_training_state(loaded["path"])
        if self._fsdp is not None:
            self._fsdp.load_full_state(loaded["model"], loaded["objectives"], rest["optimizer"], optimizer)
            scheduler.load_state_dict(rest["scheduler"])
            if rank < len(rest["rng"]):
                ckpt_io.set_rng_state(rest["rng"][rank])
            return int(st["step"]), int(st["epoch"]), int(st["batch"]), int(st.get("skipped_steps", 0))
        ckpt_io.load_trainable(backbone, loaded["model"], where=f"{where}/model.safetensors")
        for i, o in enumerate(objectives):
            sd = {k.split(".", 1)[1]: v for k, v in loaded["objectives"].items() if k.split(".", 1)[0] == str(i)}
            try:
                o.load_state_dict(sd, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{where}/objectives.safetensors: objective {i} does not match: {exc}") from exc
        optimizer.load_state_dict(rest["optimizer"])
        scheduler.load_state_dict(rest["scheduler"])
        if rank < len(rest["rng"]):
            ckpt_io.set_rng_state(rest["rng"][rank])
        return int(st["step"]), int(st["epoch"]), int(st["batch"]), int(st.get("skipped_steps", 0))


def settings_differences(state: dict, settings: dict) -> list[str]:
    """``"trainer.lr: 0.001 in the checkpoint, 0.002 now"`` for each schedule/data setting that differs
    (checkpoints written before settings were recorded are compared on batch size and accumulation)."""
    saved = state.get("settings")
    if saved is None:
        saved = {f"trainer.{k}": state[k] for k in ("batch_size", "grad_accum") if k in state}
    out = []
    for key in sorted(set(saved) | set(settings)):
        if key not in saved or key not in settings:
            continue
        if saved[key] != settings[key]:
            out.append(f"{key}: {saved[key]!r} in the checkpoint, {settings[key]!r} now")
    return out


def build(config: AccelerateTrainerConfig, context: BuildContext) -> AccelerateTrainer:
    """Factory of the ``accelerate`` trainer component."""
    if isinstance(config, dict):
        config = AccelerateTrainerConfig(**config)
    return AccelerateTrainer(config, context)


__all__ = [
    "AccelerateTrainer",
    "NonFiniteLossError",
    "TrainModule",
    "TrainState",
    "build",
    "check_before_training",
    "parameter_groups",
]
