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
from typing import Any

import attrs
import torch

from geovr.errors import CheckpointError, GeovrError
from geovr.train import checkpoint as ckpt_io
from geovr.train.assembly import (
    TrainModule,
    check_before_training,
    objective_names,
    parameter_groups,
)
from geovr.train.teacher_cache import make_sources, merge_metric
from geovr.train.configs import AccelerateTrainerConfig
from geovr.data.counts import DataCounter
from geovr.train.data import batch_stream, batches_per_epoch
from geovr.recipe.dump import to_toml
from geovr.train.runlog import MetricsLog, atomic_write, environment
from geovr.train.schedule import cosine_with_warmup


#: Trainer options that change the learning-rate schedule or the data order (compared on resume).
SCHEDULE_KEYS = ("max_steps", "epochs", "lr", "head_lr", "warmup_ratio", "weight_decay", "batch_size", "grad_accum",
                 "shuffle")


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


def resume_path(config: AccelerateTrainerConfig, run_dir: str) -> Path | None:
    """The checkpoint to resume from (``None`` for a fresh run); :class:`CheckpointError` when asked but absent."""
    if config.resume is False or config.resume == "":
        return None
    where = run_dir if config.resume is True else str(config.resume)
    return ckpt_io.find_checkpoint(where)


class AccelerateTrainer:
    """Built by :func:`build`; :meth:`fit` trains and returns the final metrics."""

    def __init__(self, config: AccelerateTrainerConfig, context=None):
        self.config = config

    # -- setup -----------------------------------------------------------------------------------
    def _accelerator(self, context, run_dir: str):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.tracking import TensorBoardTracker
        from accelerate.utils import DistributedDataParallelKwargs

        AcceleratorState._reset_state()  # several runs in one process (tests, notebooks)
        kwargs = [DistributedDataParallelKwargs(find_unused_parameters=self.config.find_unused_parameters)]
        # tensorboard goes to RUN_DIR/tensorboard; every other tracker gets the recipe name as its project
        trackers = [TensorBoardTracker("tensorboard", run_dir) if name == "tensorboard" else name
                    for name in self.config.trackers()]
        return Accelerator(mixed_precision=self.config.mixed_precision, cpu=str(context.device) == "cpu",
                           kwargs_handlers=kwargs, log_with=trackers or None, project_dir=run_dir)

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

    def settings(self, context) -> dict[str, Any]:
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

    def fit(self, context) -> dict[str, float]:
        """Train ``context.backbone`` with ``context.objectives``; see the module docstring."""
        cfg = self.config
        run_dir = str(context.output_dir or "runs/unnamed")
        check_before_training(cfg, context)
        start_ckpt = resume_path(cfg, run_dir)
        if cfg.accelerate_config:
            from geovr.train.launch import launched

            if not launched():
                warnings.warn(f"trainer.accelerate_config = {cfg.accelerate_config!r} is applied by the launcher; this "
                              f"process was not started by `accelerate launch` (use `geovr run RECIPE "
                              f"--accelerate-config FILE`), so it trains in a single process", stacklevel=2)
        acc = self._accelerator(context, run_dir)
        lock = self._lock(acc, run_dir)
        try:
            if start_ckpt is None and cfg.overwrite and acc.is_main_process:
                import shutil

                shutil.rmtree(ckpt_io.checkpoint_root(run_dir), ignore_errors=True)
            acc.wait_for_everyone()
            if start_ckpt is None and ckpt_io.list_checkpoints(run_dir) and not cfg.overwrite:
                raise CheckpointError(f"{run_dir} already holds checkpoints of an earlier run; continue it with "
                                      f"`geovr run RECIPE --resume {run_dir}` (trainer.resume=true) or choose "
                                      f"another output_dir (or trainer.overwrite=true)")
            return self._fit(context, acc, run_dir, start_ckpt)
        finally:
            lock.release()

    def _fit(self, context, acc, run_dir: str, start_ckpt) -> dict[str, float]:
        from tqdm.auto import tqdm

        cfg = self.config
        device, world, rank = acc.device, acc.num_processes, acc.process_index
        self.config = cfg = cfg.for_world(world)   # global_batch_size → grad_accum for this world size
        torch.manual_seed(context.seed)

        backbone = context.backbone
        if cfg.gradient_checkpointing:
            enable = None
            for owner in (backbone, getattr(backbone, "model", None)):
                for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):
                    enable = enable or getattr(owner, name, None)
            if enable is None:
                raise GeovrError("trainer.gradient_checkpointing: the backbone does not support gradient checkpointing")
            enable()
        module = TrainModule(backbone, list(context.objectives), lm_weight=cfg.lm_weight).to(device)
        module.train()
        fingerprint = ckpt_io.frozen_fingerprint(backbone)
        settings = self.settings(context)
        self._fsdp = None
        if cfg.sharding == "fsdp":  # torch FSDP2 (geovr.train.sharding); the optimizer is built on the shards
            from geovr.train.sharding import FSDPSharding

            self._fsdp = FSDPSharding(module, acc)
        groups = parameter_groups(backbone, context.objectives, lr=cfg.lr, head_lr=cfg.head_lr,
                                  weight_decay=cfg.weight_decay)
        if not groups:
            raise GeovrError("nothing to train: the backbone and the objectives have no trainable parameters")
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                      weight_decay=cfg.weight_decay)
        n = len(context.datasets["train"])
        per_epoch = batches_per_epoch(n, cfg.batch_size, world)
        total = cfg.max_steps or max(1, cfg.epochs * per_epoch // cfg.grad_accum)
        scheduler = cosine_with_warmup(optimizer, round(cfg.warmup_ratio * total), total)
        if self._fsdp is None:
            model, optimizer = acc.prepare(module, optimizer)
        else:  # accelerate would wrap the sharded module in DDP on CPU
            model, optimizer = module, acc.prepare(optimizer)

        step, epoch, position, skipped = 0, 0, 0, 0
        counter = DataCounter(context.datasets["train"], world)
        if start_ckpt is not None:
            step, epoch, position, skipped = self._restore(
                start_ckpt, backbone, context.objectives, optimizer, scheduler, fingerprint=fingerprint,
                world=world, rank=rank, settings=settings)
            counter.load(self._data_counts, rank)
        elif cfg.init_from:   # a fresh run starting from an imported released model's tokens and heads
            from geovr.train.released import load_init

            load_init(cfg.init_from, backbone, context.objectives)
        teacher, metric = make_sources(context, mode=cfg.cache, cache_dir=cfg.resolved_cache_dir(), device=device,
                                       config=cfg)
        names = objective_names(context.objectives)

        main = acc.is_main_process
        log = None
        if main:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            if context.recipe is not None:
                atomic_write(Path(run_dir) / "recipe.toml", to_toml(context.recipe.raw))
            atomic_write(Path(run_dir) / "environment.json", json.dumps(environment(
                {"num_processes": world, "mixed_precision": cfg.mixed_precision, "device": str(device)}),
                indent=2, sort_keys=True, default=str))
            log = MetricsLog(run_dir, resume_step=step if start_ckpt is not None else None)
        if cfg.trackers():
            project = context.recipe.name if context.recipe is not None else Path(run_dir).name
            acc.init_trackers(project, config=tracker_config(cfg, settings))
        callbacks = list(context.extra.get("callbacks", []) or [])
        state = TrainState(step=step, max_steps=total, epoch=epoch, metrics={}, run_dir=run_dir, accelerator=acc,
                           model=model)
        self._call(callbacks, "on_train_start", state)

        stream = batch_stream(context.datasets["train"], batch_size=cfg.batch_size, seed=context.seed,
                              shuffle=cfg.shuffle, world=world, rank=rank, num_workers=cfg.num_workers,
                              epoch=epoch, batch=position,
                              max_epochs=None if cfg.max_steps else cfg.epochs)
        bar = tqdm(total=total, initial=step, desc="geovr train", unit="step", dynamic_ncols=True,
                   disable=not (main and cfg.progress))
        trainable = [p for g in optimizer.param_groups for p in g["params"]]
        last_saved, metrics = (step if start_ckpt is not None else -1), {}
        t_last, samples = time.perf_counter(), 0
        save_kw = {"per_epoch": per_epoch, "fingerprint": fingerprint, "settings": settings}
        try:
            while step < total:
                sums: dict[str, float] = {}
                bad: list[str] = []
                for micro in range(cfg.grad_accum):
                    try:
                        epoch, index, batch = next(stream)
                    except StopIteration:
                        break
                    position = index + 1
                    counter.update(batch)
                    batch = batch.to(device)
                    with torch.no_grad():
                        t_out = teacher.encode(batch) if teacher is not None else None
                        m_out = metric.encode(batch) if metric is not None else None
                    if t_out is None:
                        from geovr.protocols import TeacherOutput

                        t_out = TeacherOutput()
                    t_out = merge_metric(t_out, m_out)
                    inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                              for k, v in backbone.prepare(batch).items()}
                    sync = nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(model)
                    with sync:
                        out = model(inputs, t_out, batch)
                        acc.backward(out["total"] / cfg.grad_accum)
                    bad += [k for k in self._accumulate(sums, out, names) if k not in bad]
                    samples += batch.batch_size
                if not sums:
                    break
                grad_norm = None
                if not self._any_process(acc, bool(bad)) and cfg.max_grad_norm > 0:
                    grad_norm = float(acc.clip_grad_norm_(trainable, cfg.max_grad_norm))
                    if not math.isfinite(grad_norm):
                        bad = ["gradients"]
                if self._any_process(acc, bool(bad)):
                    what = describe_nonfinite(bad, sums)
                    if cfg.on_nonfinite == "stop":
                        raise NonFiniteLossError(
                            f"step {step + 1} (epoch {epoch}): {what}; the run stopped before this optimizer step "
                            f"(nothing of it was applied or saved). Lower trainer.lr / trainer.head_lr or the "
                            f"objective weights, or set trainer.on_nonfinite = \"skip_step\" to skip such steps")
                    optimizer.zero_grad(set_to_none=True)
                    with warnings.catch_warnings():  # the schedule advances with the step count
                        warnings.simplefilter("ignore", UserWarning)
                        scheduler.step()
                    step += 1
                    skipped += 1
                    metrics = {"step": step, "epoch": epoch, "skipped": True, "skipped_steps": skipped,
                               "nonfinite": what, "lr": optimizer.param_groups[0]["lr"]}
                    if main:
                        log.log(metrics)
                    if main and cfg.progress:
                        bar.write(f"geovr: warning: step {step}: {what}; optimizer step skipped ({skipped} so far)")
                else:
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    metrics = self._reduce(acc, {k: v / max(1, sums.get("_count", 1)) for k, v in sums.items()
                                                 if k != "_count"})
                    now = time.perf_counter()
                    metrics.update(step=step, epoch=epoch, lr=optimizer.param_groups[0]["lr"],
                                   samples_per_s=samples * world / max(now - t_last, 1e-9))
                    if len(optimizer.param_groups) > 1:
                        metrics["head_lr"] = optimizer.param_groups[-1]["lr"]
                    if grad_norm is not None:
                        metrics["grad_norm"] = grad_norm
                    metrics.update(counter.metrics(acc))
                    if cfg.on_nonfinite == "skip_step":
                        metrics["skipped_steps"] = skipped
                    t_last, samples = now, 0
                    if step % cfg.log_every == 0 or step == total:
                        if main:
                            log.log(metrics)
                        if cfg.trackers():
                            acc.log({k: v for k, v in metrics.items() if k != "step"}, step=step)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
                bar.update(1)
                if cfg.save_every and step % cfg.save_every == 0:
                    self._save(acc, run_dir, step, backbone, context.objectives, optimizer, scheduler,
                               epoch=epoch, position=position, skipped=skipped, data_counts=counter.state(),
                               **save_kw)
                    last_saved = step
                state.step, state.epoch, state.metrics = step, epoch, metrics
                self._call(callbacks, "on_step_end", state)
                if state.should_stop:
                    break
            if step != last_saved and step > 0:
                self._save(acc, run_dir, step, backbone, context.objectives, optimizer, scheduler,
                           epoch=epoch, position=position, skipped=skipped, data_counts=counter.state(),
                               **save_kw)
        finally:
            bar.close()
            if log is not None:
                log.close()
            if cfg.trackers():
                acc.end_training()
        self._call(callbacks, "on_train_end", state)
        acc.wait_for_everyone()
        result = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        result["steps"] = step
        return result

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
        objective loss) and ``<name>/<metric>`` (an objective metric called ``loss`` is the same number).
        Returns the non-finite ones: objective names, ``"lm_loss"``, ``"loss"`` (the weighted total)."""
        vals = {"loss": float(out["total"].detach())}
        if out["lm"] is not None:
            vals["lm_loss"] = float(out["lm"].detach())
        for name, o in zip(names, out["objectives"]):
            for k, v in o.metrics.items():
                vals[f"{name}/{k}"] = float(v)
            vals[f"{name}/loss"] = float(o.loss.detach())
        sums["_count"] = sums.get("_count", 0) + 1
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + v
        bad = [n for n in names if not math.isfinite(vals[f"{n}/loss"])]
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
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def _save(self, acc, run_dir, step, backbone, objectives, optimizer, scheduler, *, epoch, position,
              per_epoch, fingerprint, settings, skipped=0, data_counts=None) -> None:
        from accelerate.utils import gather_object

        if position >= per_epoch:  # the next micro-batch starts a new epoch
            epoch, position = epoch + 1, 0
        rngs = gather_object([ckpt_io.rng_state()]) if acc.num_processes > 1 else [ckpt_io.rng_state()]
        full = self._fsdp.full_state(optimizer) if getattr(self, "_fsdp", None) else None  # collective
        counts = gather_object([data_counts]) if acc.num_processes > 1 else [data_counts]
        if acc.is_main_process:
            heads = full[1] if full else {f"{i}.{k}": v.detach().cpu().contiguous().clone()
                                          for i, o in enumerate(objectives) for k, v in o.state_dict().items()}
            ckpt_io.save_checkpoint(
                run_dir, step, model=full[0] if full else ckpt_io.trainable_state(backbone), objectives=heads,
                optimizer=full[2] if full else optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=rngs,
                state={"epoch": epoch, "batch": position, "world_size": acc.num_processes,
                       "frozen_fingerprint": fingerprint, "batch_size": self.config.batch_size,
                       "grad_accum": self.config.grad_accum, "settings": settings, "skipped_steps": skipped,
                       "data_counts": counts},
                keep_last=self.config.keep_last)
        acc.wait_for_everyone()

    def _restore(self, path, backbone, objectives, optimizer, scheduler, *, fingerprint, world, rank, settings):
        loaded = ckpt_io.load_checkpoint(path)
        st = loaded["state"]
        self._data_counts = st.get("data_counts")
        where = str(loaded["path"])
        if st.get("frozen_fingerprint") not in (None, fingerprint):
            raise CheckpointError(f"{where}: the frozen weights of the backbone differ from those this checkpoint was "
                                  f"trained with (another base model or initialisation seed?)")
        if st.get("world_size", world) != world:
            raise CheckpointError(f"{where}: saved with {st['world_size']} processes, this run has {world}; the data "
                                  f"order would differ, so the run cannot resume exactly")
        diffs = settings_differences(st, settings)
        if diffs:
            listing = "\n".join(f"  - {d}" for d in diffs)
            if not self.config.resume_force:
                raise CheckpointError(f"{where}: this run's settings change the schedule or the data order of the "
                                      f"run being resumed:\n{listing}\nrestore them, or resume anyway with "
                                      f"--resume-force (trainer.resume_force=true)")
            warnings.warn(f"resuming {where} despite changed settings (--resume-force):\n{listing}", stacklevel=2)
        rest = ckpt_io.load_training_state(loaded["path"])
        if getattr(self, "_fsdp", None):
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


def build(config: AccelerateTrainerConfig, context) -> AccelerateTrainer:
    """Factory of the ``accelerate`` trainer component."""
    if isinstance(config, dict):
        config = AccelerateTrainerConfig(**config)
    return AccelerateTrainer(config, context)


__all__ = ["AccelerateTrainer", "NonFiniteLossError", "TrainModule", "TrainState", "build", "check_before_training", "parameter_groups"]
