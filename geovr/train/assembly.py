"""What the trainer assembles before its loop: the student+objectives module, the optimizer's parameter
groups, log names, and the checks that must stop a run before its first step."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from torch import nn

from geovr.errors import GeovrError, RecipeError
from geovr.protocols import GeometryRequest
from geovr.rules import requires_problem, student_layers_problem, teacher_layers_problem
from geovr.train.configs import AccelerateTrainerConfig

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


class TrainModule(nn.Module):
    """Backbone + objectives as one module (what accelerate wraps for DDP/FSDP).

    ``forward(inputs, teacher, batch, plain=False)`` returns ``{"total": scalar, "lm": scalar | None,
    "objectives": [ObjectiveOutput | None, ...]}``. ``plain=True`` lays the sequence out without the
    inserted geometry tokens (camera tokens, scale token), as inference does; the objectives that read those
    tokens are skipped and their entry is ``None`` (``trainer.token_dropout``).
    """

    def __init__(self, backbone: nn.Module, objectives: list[nn.Module], *, lm_weight: float):
        super().__init__()
        self.backbone = backbone
        self.objectives = nn.ModuleList(objectives)
        self.lm_weight = float(lm_weight)
        self.request = GeometryRequest.union(o.student_needs for o in objectives)

    def forward(self, inputs: dict, teacher, batch, plain: bool = False) -> dict[str, Any]:
        student = self.backbone(inputs, geometry=self.request.without_tokens() if plain else self.request)
        total = None
        lm = student.lm_loss
        if lm is not None and self.lm_weight != 0:
            total = self.lm_weight * lm.float()
        outs: list[Any] = []
        obj: Any
        for obj in self.objectives:
            if plain and obj.student_needs.inserts_tokens:
                outs.append(None)
                continue
            o = obj(student, teacher, batch)
            outs.append(o)
            term = float(obj.weight) * o.loss.float()
            total = term if total is None else total + term
        if total is None:
            raise GeovrError("nothing to train: no objective and no language-model loss (lm_weight = 0 or no labels)")
        return {"total": total, "lm": lm, "objectives": outs}


def objective_names(objectives) -> list[str]:
    """Unique log names (``name``, ``name.2``, … for repeats)."""
    seen: dict[str, int] = {}
    out = []
    for o in objectives:
        base = str(getattr(o, "name", type(o).__name__))
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}.{seen[base]}")
    return out


def parameter_groups(backbone, objectives, *, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: backbone ``"base"`` (and any other non-``"new"`` group) at ``lr``; ``"new"`` geometry
    tokens and all objective parameters at ``head_lr``. Frozen parameters are left out; a parameter listed
    twice is kept once."""
    seen: set[int] = set()

    def keep(params):
        out = []
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    groups = backbone.parameter_groups()
    base = keep([p for k, ps in groups.items() if k != "new" for p in ps])
    new = keep(groups.get("new", []))
    heads = keep([p for o in objectives for p in o.parameters()])
    out = []
    for name, params, rate in (("base", base, lr), ("new", new, head_lr), ("heads", heads, head_lr)):
        if params:
            out.append({"params": params, "lr": rate, "weight_decay": weight_decay, "name": name})
    return out


def tracker_availability(config: AccelerateTrainerConfig) -> list[str]:
    """A problem for each tracker of ``trainer.log_with`` (or ``tensorboard = true``) whose package is not
    installed, as accelerate detects it (``accelerate.tracking.get_available_trackers``)."""
    from accelerate.tracking import get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    out = []
    for name in config.trackers():
        if name not in available:
            key = "trainer.tensorboard" if name == "tensorboard" and name not in config.log_with else "trainer.log_with"
            extra = "geovr[tensorboard]" if name == "tensorboard" else name.replace("_", "-")
            out.append(f"{key}: the {name!r} tracker's package is not installed (pip install '{extra}')")
    return out


def check_before_training(config: AccelerateTrainerConfig, context: BuildContext) -> None:
    """Problems that must stop a run before its first step, all at once (:class:`RecipeError`)."""
    problems = []
    if context.backbone is None:
        problems.append("backbone: no backbone was built")
    problems += _train_data_problems(context.datasets.get("train"))
    problems += objective_problems(context)
    problems += tracker_availability(config)
    if config.accelerate_config and not os.path.isfile(config.accelerate_config):
        problems.append(f"trainer.accelerate_config: file not found: {config.accelerate_config}")
    if problems:
        raise RecipeError(problems, source="before training")


def _train_data_problems(ds) -> list[str]:
    if ds is None:
        return ["data.train: no training dataset (add a [data.train] table)"]
    try:
        n = len(ds)
    except TypeError:
        return ["data.train: the dataset has no length (a map-style torch Dataset is required)"]
    return ["data.train: the training dataset is empty (check its path and filters)"] if n == 0 else []


def objective_problems(context: BuildContext) -> list[str]:
    """The built objectives against the built backbone and teachers, by the rules of :mod:`geovr.rules`:
    the Objective protocol's attributes, student layers within the backbone's hidden states, ``requires``
    ⊆ what the teachers provide, ``teacher_layers`` within the teacher's depth."""
    recipe = context.recipe
    teacher_name = recipe.teacher.component if recipe is not None and recipe.teacher is not None else None
    provided: set[str] = set()
    for t in (context.teacher, context.metric_teacher):
        provided |= set(getattr(t, "provides", ()) or ())
    depth = getattr(context.backbone, "num_layers", None)
    teacher_depth = getattr(context.teacher, "num_layers", None)
    problems = []
    for i, (o, name) in enumerate(zip(context.objectives, objective_names(context.objectives), strict=False)):
        where = f"objectives.{i}"
        problems += [
            f"{where} ({name}): missing attribute {attr!r} of the Objective protocol"
            for attr in ("weight", "student_needs", "requires")
            if not hasattr(o, attr)
        ]
        found = [
            (
                f"{where}.student_layers",
                depth is not None
                and student_layers_problem(getattr(o, "student_needs", GeometryRequest()).layers, depth),
            ),
            (
                where,
                requires_problem(
                    name,
                    getattr(o, "requires", ()),
                    provided,
                    teacher=teacher_name,
                    has_teacher=context.teacher is not None,
                ),
            ),
            (
                f"{where}.teacher_layers",
                teacher_depth is not None
                and teacher_layers_problem(
                    getattr(o, "teacher_layers", None) or (), teacher_depth, teacher=teacher_name
                ),
            ),
        ]
        problems += [f"{place}: {problem}" for place, problem in found if problem]
    return problems
