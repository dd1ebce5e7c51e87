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
import time
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
from geovr.train.cache import make_sources, merge_metric
from geovr.train.configs import AccelerateTrainerConfig
from geovr.data.counts import DataCounter
from geovr.train.data import batch_stream, batches_per_epoch
from geovr.recipe.dump import to_toml
from geovr.train.runlog import MetricsLog, atomic_write, environment
from geovr.train.schedule import cosine_with_warmup


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
    def _accelerator(self, context):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs

        AcceleratorState._reset_state()  # several runs in one process (tests, notebooks)
        kwargs = [DistributedDataParallelKwargs(find_unused_parameters=self.config.find_unused_parameters)]
        return Accelerator(mixed_precision=self.config.mixed_precision, cpu=str(context.device) == "cpu",
                           kwargs_handlers=kwargs)

    def fit(self, context) -> dict[str, float]:
        """Train ``context.backbone`` with ``context.objectives``; see the module docstring."""
        from tqdm.auto import tqdm

        cfg = self.config
        run_dir = str(context.output_dir or "runs/unnamed")
        check_before_training(cfg, context)
        start_ckpt = resume_path(cfg, run_dir)
        if start_ckpt is None and cfg.overwrite:
            import shutil

            shutil.rmtree(ckpt_io.checkpoint_root(run_dir), ignore_errors=True)
        if start_ckpt is None and ckpt_io.list_checkpoints(run_dir) and not cfg.overwrite:
            raise CheckpointError(f"{run_dir} already holds checkpoints of an earlier run; continue it with "
                                  f"`geovr run RECIPE --resume {run_dir}` (trainer.resume=true) or choose another "
                                  f"output_dir (or trainer.overwrite=true)")
        if cfg.accelerate_config:
            from geovr.train.launch import launched

            if not launched():
                import warnings

                warnings.warn(f"trainer.accelerate_config = {cfg.accelerate_config!r} is applied by the launcher; this "
                              f"process was not started by `accelerate launch` (use `geovr run RECIPE "
                              f"--accelerate-config FILE`), so it trains in a single process", stacklevel=2)
        acc = self._accelerator(context)
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
        model, optimizer = acc.prepare(module, optimizer)

        step, epoch, position = 0, 0, 0
        counter = DataCounter(context.datasets["train"], world)
        if start_ckpt is not None:
            step, epoch, position = self._restore(start_ckpt, backbone, context.objectives, optimizer, scheduler,
                                                  fingerprint=fingerprint, world=world, rank=rank)
            counter.load(self._data_counts, rank)
        teacher, metric = make_sources(context, mode=cfg.cache, cache_dir=cfg.resolved_cache_dir(), device=device)
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
            log = MetricsLog(run_dir, resume_step=step if start_ckpt is not None else None, tensorboard=cfg.tensorboard)
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
        try:
            while step < total:
                sums: dict[str, float] = {}
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
                    self._accumulate(sums, out, names)
                    samples += batch.batch_size
                if not sums:
                    break
                grad_norm = None
                if cfg.max_grad_norm > 0:
                    grad_norm = float(acc.clip_grad_norm_(trainable, cfg.max_grad_norm))
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
                t_last, samples = now, 0
                if main and (step % cfg.log_every == 0 or step == total):
                    log.log(metrics)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
                if cfg.save_every and step % cfg.save_every == 0:
                    self._save(acc, run_dir, step, backbone, context.objectives, optimizer, scheduler,
                               epoch=epoch, position=position, per_epoch=per_epoch, fingerprint=fingerprint,
                               data_counts=counter.state())
                    last_saved = step
                state.step, state.epoch, state.metrics = step, epoch, metrics
                self._call(callbacks, "on_step_end", state)
                if state.should_stop:
                    break
            if step != last_saved and step > 0:
                self._save(acc, run_dir, step, backbone, context.objectives, optimizer, scheduler,
                           epoch=epoch, position=position, per_epoch=per_epoch, fingerprint=fingerprint,
                           data_counts=counter.state())
        finally:
            bar.close()
            if log is not None:
                log.close()
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
    def _accumulate(sums: dict[str, float], out: dict, names: list[str]) -> None:
        """Add one micro-batch's numbers: ``loss``, ``lm_loss``, ``<name>/loss`` (the unweighted
        objective loss) and ``<name>/<metric>`` (an objective metric called ``loss`` is the same number)."""
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
              per_epoch, fingerprint, data_counts=None) -> None:
        from accelerate.utils import gather_object

        if position >= per_epoch:  # the next micro-batch starts a new epoch
            epoch, position = epoch + 1, 0
        rngs = gather_object([ckpt_io.rng_state()]) if acc.num_processes > 1 else [ckpt_io.rng_state()]
        counts = gather_object([data_counts]) if acc.num_processes > 1 else [data_counts]
        if acc.is_main_process:
            heads = {f"{i}.{k}": v.detach().cpu().contiguous().clone()
                     for i, o in enumerate(objectives) for k, v in o.state_dict().items()}
            ckpt_io.save_checkpoint(
                run_dir, step, model=ckpt_io.trainable_state(backbone), objectives=heads,
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=rngs,
                state={"epoch": epoch, "batch": position, "world_size": acc.num_processes,
                       "frozen_fingerprint": fingerprint, "batch_size": self.config.batch_size,
                       "grad_accum": self.config.grad_accum, "data_counts": counts},
                keep_last=self.config.keep_last)
        acc.wait_for_everyone()

    def _restore(self, path, backbone, objectives, optimizer, scheduler, *, fingerprint, world, rank):
        loaded = ckpt_io.load_checkpoint(path)
        st = loaded["state"]
        self._data_counts = st.get("data_counts")
        where = str(loaded["path"])
        if st.get("frozen_fingerprint") not in (None, fingerprint):
            raise CheckpointError(f"{where}: the frozen weights of the backbone differ from those this checkpoint was "
                                  f"trained with (another base model or initialisation seed?)")
        for key in ("world_size", "batch_size", "grad_accum"):
            now = {"world_size": world, "batch_size": self.config.batch_size, "grad_accum": self.config.grad_accum}[key]
            if st.get(key, now) != now:
                raise CheckpointError(f"{where}: saved with {key} = {st[key]}, this run has {now}; the data order "
                                      f"would differ, so the run cannot resume exactly")
        ckpt_io.load_trainable(backbone, loaded["model"], where=f"{where}/model.safetensors")
        for i, o in enumerate(objectives):
            sd = {k.split(".", 1)[1]: v for k, v in loaded["objectives"].items() if k.split(".", 1)[0] == str(i)}
            try:
                o.load_state_dict(sd, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{where}/objectives.safetensors: objective {i} does not match: {exc}") from exc
        rest = ckpt_io.load_training_state(loaded["path"])
        optimizer.load_state_dict(rest["optimizer"])
        scheduler.load_state_dict(rest["scheduler"])
        ckpt_io.set_rng_state(rest["rng"][rank])
        return int(st["step"]), int(st["epoch"]), int(st["batch"])


def build(config: AccelerateTrainerConfig, context) -> AccelerateTrainer:
    """Factory of the ``accelerate`` trainer component."""
    if isinstance(config, dict):
        config = AccelerateTrainerConfig(**config)
    return AccelerateTrainer(config, context)


__all__ = ["AccelerateTrainer", "TrainModule", "TrainState", "build", "check_before_training", "parameter_groups"]
