"""Contract checks every backbone, teacher and objective must pass (first- and third-party alike).

Each function raises ``AssertionError`` with a precise message on the first violation and returns
the outputs it computed, so a test can make further assertions.
"""

from __future__ import annotations

from geovr.protocols import (
    TEACHER_OUTPUTS,
    Batch,
    GeometryRequest,
    ObjectiveOutput,
    StudentOutput,
    TeacherOutput,
)


def _grad_norm(params) -> float:
    return float(sum(p.grad.detach().abs().sum() for p in params if p.grad is not None))


def check_backbone(backbone, batch: Batch, *, layers=(1,), frozen_prefixes: tuple[str, ...] = ()) -> StudentOutput:
    """Check a backbone on ``batch`` ([B,S,3,H,W] frames with questions and answers).

    Verifies: ``num_layers``/``hidden_size``; StudentOutput shapes (grids ``[B,S,h,w,D]`` per requested
    layer, camera ``[B,S,D]``, scale ``[B,D]``); finite scalar ``lm_loss``; gradients reach trainable
    ``"base"`` and ``"new"`` parameters and never parameters whose name starts with one of
    ``frozen_prefixes``; with an empty GeometryRequest, logits equal those of the wrapped model's plain
    forward (``backbone.model(**inputs)``), when the backbone exposes ``model``.
    """
    import torch

    B, S = batch.batch_size, batch.num_frames
    assert isinstance(backbone.num_layers, int) and backbone.num_layers > 0, "num_layers must be a positive int"
    assert isinstance(backbone.hidden_size, int) and backbone.hidden_size > 0, "hidden_size must be a positive int"
    D = backbone.hidden_size
    req = GeometryRequest(layers=layers, camera_tokens=True, scale_token=True)
    inputs = backbone.prepare(batch)
    backbone.zero_grad(set_to_none=True)
    out = backbone(inputs, geometry=req)
    assert isinstance(out, StudentOutput), f"forward must return StudentOutput, got {type(out).__name__}"
    assert out.lm_loss is not None and out.lm_loss.ndim == 0, "lm_loss must be a scalar tensor"
    assert torch.isfinite(out.lm_loss), f"lm_loss is not finite: {out.lm_loss}"
    assert set(out.hidden) == set(req.layers), f"hidden layers {sorted(out.hidden)} != requested {req.layers}"
    for layer, grid in out.hidden.items():
        assert grid.ndim == 5 and grid.shape[:2] == (B, S) and grid.shape[-1] == D, (
            f"hidden[{layer}] must be [B,S,h,w,D]=[{B},{S},h,w,{D}], got {tuple(grid.shape)}"
        )
    assert out.camera is not None and tuple(out.camera.shape) == (B, S, D), (
        f"camera must be [B,S,D]=[{B},{S},{D}], got {None if out.camera is None else tuple(out.camera.shape)}"
    )
    assert out.scale is not None and tuple(out.scale.shape) == (B, D), (
        f"scale must be [B,D]=[{B},{D}], got {None if out.scale is None else tuple(out.scale.shape)}"
    )
    loss = (
        out.lm_loss
        + sum(g.float().mean() for g in out.hidden.values())
        + out.camera.float().mean()
        + out.scale.float().mean()
    )
    loss.backward()
    groups = backbone.parameter_groups()
    assert set(groups) >= {"base", "new"}, f"parameter_groups() must have 'base' and 'new', got {sorted(groups)}"
    assert groups["new"], "parameter_groups()['new'] (geometry tokens) is empty"
    assert _grad_norm(groups["base"]) > 0, "no gradient reached the trainable base parameters"
    assert _grad_norm(groups["new"]) > 0, "no gradient reached the geometry-token parameters"
    for name, p in backbone.named_parameters():
        if frozen_prefixes and any(pref in name for pref in frozen_prefixes):
            assert not p.requires_grad and p.grad is None, f"frozen parameter {name} received a gradient"
    backbone.zero_grad(set_to_none=True)
    model = getattr(backbone, "model", None)
    if model is not None:
        with torch.no_grad():
            plain = backbone(inputs, geometry=GeometryRequest())
            hf_inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
            ref = model(**hf_inputs)
        torch.testing.assert_close(
            plain.logits,
            ref.logits,
            rtol=0,
            atol=0,
            msg="with no geometry requested the logits must equal the HF model's",
        )
    return out


def check_teacher(teacher, frames, *, layers=None, batch: Batch | None = None) -> TeacherOutput:
    """Check a teacher on ``frames`` ``[B,S,3,H,W]`` in [0,1].

    Verifies: ``provides`` ⊆ TEACHER_OUTPUTS; every provided field is present with the documented
    shape; features ``[B,S,h,w,feature_dim]`` for each requested layer within ``num_layers``; no
    parameter requires grad; outputs carry no autograd graph; ``cache_key()`` is a stable non-empty str.
    ``batch`` is passed to ``encode`` for teachers that read ground truth (the synthetic oracle).
    """
    import torch

    B, S = frames.shape[:2]
    assert isinstance(teacher.provides, frozenset), "provides must be a frozenset"
    assert teacher.provides <= TEACHER_OUTPUTS, f"unknown outputs {sorted(teacher.provides - TEACHER_OUTPUTS)}"
    layers = tuple(layers if layers is not None else teacher.layers)
    assert all(0 <= layer < teacher.num_layers for layer in layers), (
        f"layers {layers} outside 0..{teacher.num_layers - 1}"
    )
    if hasattr(teacher, "parameters"):
        assert not any(p.requires_grad for p in teacher.parameters()), "teacher parameters must be frozen"
    out = teacher.encode(frames, layers) if batch is None else teacher.encode(frames, layers, batch=batch)
    assert isinstance(out, TeacherOutput), f"encode must return TeacherOutput, got {type(out).__name__}"
    for name, t in out.tensors().items():
        assert isinstance(t, torch.Tensor) and not t.requires_grad, f"{name} must be a detached tensor"
        assert t.shape[0] == B, f"{name} batch dim {t.shape[0]} != {B}"
    shapes = {"pose_enc": (B, S, 9), "intrinsics": (B, S, 3, 3), "extrinsics": (B, S, 3, 4)}
    for key in teacher.provides - {"features"}:
        t = getattr(out, key)
        assert t is not None, f"teacher provides {key!r} but encode() returned None for it"
        if key in shapes:
            assert tuple(t.shape) == shapes[key], f"{key} must be {shapes[key]}, got {tuple(t.shape)}"
        elif key in {"depth", "depth_conf", "metric_depth"}:
            assert t.ndim == 4 and t.shape[:2] == (B, S), f"{key} must be [B,S,H,W], got {tuple(t.shape)}"
        elif key == "points":
            assert t.ndim == 5 and t.shape[-1] == 3, f"points must be [B,S,H,W,3], got {tuple(t.shape)}"
    if "depth" in teacher.provides:
        assert out.depth is not None and bool((out.depth > 0).all()), "depth must be positive"
    if "features" in teacher.provides:
        assert set(out.features) == set(layers), f"features for {sorted(out.features)}, requested {layers}"
        for layer, f in out.features.items():
            assert f.ndim == 5 and f.shape[:2] == (B, S) and f.shape[-1] == teacher.feature_dim, (
                f"features[{layer}] must be [B,S,h,w,{teacher.feature_dim}], got {tuple(f.shape)}"
            )
    key = teacher.cache_key()
    assert isinstance(key, str) and key and key == teacher.cache_key(), "cache_key() must be a stable non-empty str"
    return out


def check_objective(
    objective, student: StudentOutput, teacher: TeacherOutput, batch: Batch, *, provides: frozenset[str] | None = None
) -> ObjectiveOutput:
    """Check an objective: ``requires`` ⊆ TEACHER_OUTPUTS (and ⊆ ``provides`` if given); the
    GeometryRequest type; a finite differentiable scalar loss whose gradient reaches the objective's
    own parameters (its head) and never the teacher tensors; float metrics."""
    import torch

    assert isinstance(objective.requires, frozenset) and objective.requires <= TEACHER_OUTPUTS, (
        f"requires must be a frozenset within {sorted(TEACHER_OUTPUTS)}"
    )
    if provides is not None:
        assert objective.requires <= provides, f"requires {sorted(objective.requires - provides)} not provided"
    assert isinstance(objective.student_needs, GeometryRequest), "student_needs must be a GeometryRequest"
    assert isinstance(objective.weight, float | int), "weight must be a number"
    for t in teacher.tensors().values():
        t.requires_grad_(False)
    objective.zero_grad(set_to_none=True)
    out = objective(student, teacher, batch)
    assert isinstance(out, ObjectiveOutput), f"forward must return ObjectiveOutput, got {type(out).__name__}"
    assert out.loss.ndim == 0 and torch.isfinite(out.loss), f"loss must be a finite scalar, got {out.loss}"
    assert out.loss.requires_grad, "loss must be differentiable"
    out.loss.backward()
    params = list(objective.parameters())
    if params:
        assert _grad_norm(params) > 0, "no gradient reached the objective's head"
    for name, t in teacher.tensors().items():
        assert t.grad is None, f"gradient leaked into teacher tensor {name}"
    assert all(isinstance(v, float) for v in out.metrics.values()), "metrics must be python floats"
    return out
