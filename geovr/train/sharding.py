"""``trainer.sharding = "fsdp"``: torch FSDP2 (``fully_shard``) of the train module, with full-state checkpoints.

Why not accelerate's FSDP plugin: with ``cpu=True`` accelerate 1.15 silently turns an FSDP plugin into
plain DDP (MULTI_CPU), so the FSDP code path could not be tested on CPU. torch's own ``fully_shard`` runs on
CPU with gloo as on GPUs with NCCL, so this module uses it directly on every device.

Wrapping (:class:`FSDPSharding`): every repeated block of the student (each child of an ``nn.ModuleList``
of two or more modules of one class with parameters, e.g. the decoder layers) becomes its own FSDP unit,
then the whole :class:`~geovr.train.assembly.TrainModule` (embeddings, heads, geometry tokens) the root
unit, all on a 1-D device mesh over the processes. Parameters become sharded ``DTensor``s, so the
optimizer is built after wrapping.

Checkpoints stay in the trainer's usual format (full tensors, :mod:`geovr.train.checkpoint`): the
trainable parameters and head weights are gathered with ``get_model_state_dict(full_state_dict=True)``
and the optimizer state with ``get_optimizer_state_dict`` (keyed by parameter name); resuming loads them
back with the ``set_*`` counterparts on every process. Gradient accumulation reduce-scatters on every
micro-batch (no ``no_sync``); results are unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from geovr.train.assembly import TrainModule


def _blocks(module: nn.Module) -> list[nn.Module]:
    """Repeated blocks: children of ModuleLists holding >= 2 modules of one class with parameters."""
    out = []
    for m in module.modules():
        if isinstance(m, nn.ModuleList) and len(m) >= 2:
            kinds = {type(c) for c in m}
            if len(kinds) == 1 and any(True for _ in m[0].parameters()):
                out += list(m)
    return out


class FSDPSharding:
    """Applies ``fully_shard`` to ``module`` (a TrainModule) on construction; see the module docstring."""

    def __init__(self, module: TrainModule, accelerator):
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError('trainer.sharding = "fsdp" needs several processes (torchrun / accelerate launch)')
        device = torch.device(accelerator.device)
        self.mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        self.module = module
        blocks = [b for b in _blocks(module.backbone) if not any(p.is_meta for p in b.parameters())]
        for b in blocks:
            fully_shard(b, mesh=self.mesh)
        fully_shard(module, mesh=self.mesh)
        self.units = len(blocks) + 1

    @staticmethod
    def _options(**kw):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, **kw)

    @staticmethod
    def _raw(optimizer):
        return getattr(optimizer, "optimizer", optimizer)

    def trainable_names(self) -> set[str]:
        return {n for n, p in self.module.named_parameters() if p.requires_grad}

    def full_state(self, optimizer) -> tuple[dict, dict, dict]:
        """Collective (every process calls it): ``(backbone trainable {name: tensor}, heads {"i.name": tensor},
        optimizer state keyed by parameter name)``, full tensors on CPU (complete on every process)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        sd = get_model_state_dict(self.module, options=self._options())
        train = self.trainable_names()
        backbone, heads = {}, {}
        for k, value in sd.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{k}: expected a tensor in the full model state dict, got {type(value).__name__}")
            v = value.detach().cpu().contiguous().clone()
            if k.startswith("backbone.") and k in train:
                backbone[k[len("backbone.") :]] = v
            elif k.startswith("objectives."):
                heads[k[len("objectives.") :]] = v
        optim = get_optimizer_state_dict(self.module, self._raw(optimizer), options=self._options())
        return backbone, heads, _to_cpu(optim)

    def load_full_state(self, backbone: dict, heads: dict, optim: dict, optimizer) -> None:
        """Collective: load a :meth:`full_state` (every process passes the same full tensors)."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        sd = {f"backbone.{k}": v for k, v in backbone.items()}
        sd.update({f"objectives.{k}": v for k, v in heads.items()})
        set_model_state_dict(self.module, sd, options=self._options(strict=False))
        # strict=False: a parameter no loss reached (no gradient yet) has no optimizer state to restore
        set_optimizer_state_dict(self.module, self._raw(optimizer), optim, options=self._options(strict=False))


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
