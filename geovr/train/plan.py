"""``geovr plan RECIPE``: parameters, memory per GPU and cache size of a recipe, before renting GPUs.

Every component describes its own size through the sizing interface (:mod:`geovr.sizing`): the backbone
config's ``build_meta()`` gives the student on the meta device (no weights, no download; built from the
``config.json`` the plugin ships or a local checkpoint's own) with its freeze / LoRA options applied exactly
as the real build does, its visual-token count and its activation bytes; each teacher config's
``build_meta()`` gives the teacher on the meta device and ``cache_layout()`` its output shapes. Objective
heads are built by their registered builders. The core knows no component by name.

Memory per GPU (bytes) under the recipe's precision: weights in the backbone ``dtype`` (heads float32);
gradients of the trainable parameters in their dtype; AdamW state = 2 × trainable in their dtype (torch's
AdamW keeps ``exp_avg``/``exp_avg_sq`` in the parameter dtype; no float32 master copy in this trainer).
Sharding over N GPUs: DDP replicates everything; ZeRO-2 shards gradients and optimizer state; FSDP (full
shard) also shards the student's weights. Frozen teachers are replicated in all three (they are not
trained); with ``trainer.cache = "only"`` they could stay off the GPU, which the plan reports separately.

Activations per sample: the student's own estimate (``BackboneMeta.activation_bytes``; the Qwen-VL and
LLaVA plugins count the bytes autograd keeps per token op by op for the HF decoder layer with
:func:`geovr.sizing.decoder_activation_bytes`: RMSNorm internals in float32, q/k norms of Qwen3, rotary
embedding, SDPA with a flash/efficient kernel: q, k, v, out, logsumexp; SiLU MLP; times layers and
sequence length, plus the final norm, the float32 log-softmax of the LM loss over the vocabulary and a
trainable merger / projector; with gradient checkpointing only each layer's input plus one layer). The
objective heads are measured: each head runs once on one frame at the recipe's real sizes (CPU, random weights) and its saved bytes are multiplied by the frame count. ``tests/test_plan.py`` checks
the estimate against the activation bytes measured on a full tiny forward (within 25 %).
"""

from __future__ import annotations

from types import SimpleNamespace

from geovr.errors import GeovrError
from geovr.sizing import SizingError, TeacherMeta, layout_of, require

GB = 1e9
GPU_SIZES = (24, 40, 80)
#: text tokens per sample assumed next to the visual tokens (chat template, question, options, answer)
TEXT_TOKENS = 128
ITEM = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


def _count(module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts, tied weights counted once."""
    seen, train, frozen = set(), 0, 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            train += p.numel()
        else:
            frozen += p.numel()
    return train, frozen


def build_student_meta(choice):
    """The student of ``choice`` sized on the meta device (:class:`geovr.sizing.BackboneMeta`)."""
    return require("backbone", choice.component, choice.config, "build_meta", "geovr plan", "backbone")()


def _teacher_meta(choice, role: str) -> TeacherMeta:
    """:class:`geovr.sizing.TeacherMeta` of a teacher choice (its config's ``build_meta()``)."""
    return require("teacher", choice.component, choice.config, "build_meta", "geovr plan", role)()


def head_activation_bytes(
    recipe,
    objectives,
    hidden: int,
    grid: tuple[int, int],
    S: int,
    H: int,
    W: int,
    teacher_shapes: dict,
    student_layers: dict,
) -> dict[str, float]:
    """Measured saved bytes of each objective (head + loss) on one frame at the real sizes, × ``S`` frames."""
    import torch

    from geovr.protocols import Batch, StudentOutput, TeacherOutput

    g = torch.Generator().manual_seed(0)
    h, w = grid
    out = {}
    for name, obj in objectives:
        layers = student_layers.get(name, ())
        student = StudentOutput(
            hidden={k: torch.randn(1, 1, h, w, hidden, generator=g) for k in layers},
            camera=torch.randn(1, 1, hidden, generator=g),
            scale=torch.randn(1, hidden, generator=g),
        )
        flat = {}
        for k, shape in teacher_shapes.items():
            one = (1, 1, *shape[1:]) if shape else (1,)
            flat[k] = torch.rand(one, generator=g) + 0.5
        teacher = TeacherOutput.from_tensors(flat)
        batch = Batch(frames=torch.rand(1, 1, 3, H, W, generator=g), sample_ids=["plan"], questions=[""], answers=[""])
        for t in (*student.hidden.values(), student.camera, student.scale):
            if t is not None:
                t.requires_grad_(True)
        skip = {p.untyped_storage().data_ptr() for p in obj.parameters()}
        out[name] = _saved_bytes(lambda o=obj, s=student, t=teacher, bt=batch: o(s, t, bt).loss, skip) * S
    return out


def _saved_bytes(fn, skip=frozenset()) -> float:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs, except the
    storages in ``skip`` (parameters: weights are not activations)."""
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            if st.data_ptr() not in skip:
                seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return float(sum(seen.values()))


def measured_activation_bytes(fn, modules=()) -> float:
    """Activation bytes of a real forward ``fn()``: the storages autograd saves for backward, without the
    parameters of ``modules`` (what :func:`plan` estimates per sample)."""
    skip = {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}
    skip |= {b.untyped_storage().data_ptr() for m in modules for b in m.buffers()}
    return _saved_bytes(fn, skip)


def fits(per_gpu: dict[str, float]) -> dict[str, list[int]]:
    """GPU sizes (GB) each strategy fits in, with 10 % left for the allocator and CUDA context."""
    return {k: [s for s in GPU_SIZES if v <= 0.9 * s * GB] for k, v in per_gpu.items()}


def plan(recipe, *, datasets=None, entries=None, gpus=None, tokens=None, measure_heads: bool = True) -> dict:
    """The plan of ``recipe`` as a JSON-able dict (see the module docstring and ``format_plan``)."""
    import torch

    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext
    from geovr.train.estimate import _feature_layers, estimate_cache, frame_shape

    trainer = recipe.trainer.config if recipe.trainer is not None else None
    student = build_student_meta(recipe.backbone)
    s_train, s_frozen = _count(student.module)
    D, L = int(student.hidden_size), int(student.num_layers)
    s_train += int(student.extra_trainable)
    dtype = recipe.backbone.config.dtype
    b = ITEM.get(dtype, 2)
    mixed = getattr(trainer, "mixed_precision", "no")
    b_act = 2 if mixed in ("bf16", "fp16") or b == 2 else 4

    teachers = {}
    t_stub = None
    for role, choice in (("teacher", recipe.teacher), ("metric_teacher", recipe.metric_teacher)):
        if choice is None:
            continue
        tm = _teacher_meta(choice, role)
        n = sum(_count(tm.module)) if tm.module is not None else 0
        teachers[role] = {"component": choice.component, "params": n, "bytes": n * ITEM.get(tm.weight_dtype, 4)}
        if role == "teacher":
            layers = tuple(getattr(choice.config, "layers", ()) or tm.layers or ())
            t_stub = SimpleNamespace(
                num_layers=tm.num_layers,
                layers=layers,
                feature_dim=tm.feature_dim,
                provides=choice.config.provides() if hasattr(choice.config, "provides") else (),
            )

    reg = get_registry()
    ctx = BuildContext(
        backbone=SimpleNamespace(hidden_size=D, num_layers=L), teacher=t_stub, device="cpu", recipe=recipe
    )
    objectives, h_train = [], 0
    for c in recipe.objectives:
        obj = reg.get("objective", c.component).build(c.config, ctx)
        objectives.append((getattr(obj, "name", c.component), obj))
        h_train += sum(p.numel() for p in obj.parameters() if p.requires_grad)

    S, H, W, source = frame_shape(recipe, datasets)
    vt = student.visual_tokens(S, H, W)
    n_vis = int(vt.count)
    n_geo = S + 1
    T = tokens if tokens is not None else n_vis + n_geo + TEXT_TOKENS
    ckpt = bool(getattr(trainer, "gradient_checkpointing", False))
    act_student = float(student.activation_bytes(T, n_vis, b_act, ckpt))
    heads = {}
    if measure_heads and objectives:
        tshapes = {}
        if recipe.teacher is not None:
            tshapes = dict(
                layout_of(
                    recipe.teacher.config, recipe.teacher.component, 1, H, W, _feature_layers(recipe), where="teacher"
                ).shapes
            )
        tshapes.setdefault("metric_depth", (1, *tshapes.get("depth", (1, H, W))[1:]))
        tshapes.setdefault("metric_scale", ())
        needed = {name: tuple(o.student_needs.layers) for name, o in objectives}
        with torch.random.fork_rng(devices=[]):
            heads = head_activation_bytes(
                recipe, objectives, D, tuple(vt.grid), S, int(vt.frame_size[0]), int(vt.frame_size[1]), tshapes, needed
            )
    act = act_student + sum(heads.values())
    batch = int(getattr(trainer, "batch_size", 1) or 1)

    world = gpus or 8
    head_bytes = h_train * 4
    weights = (s_train + s_frozen) * b + head_bytes
    trainable_bytes = s_train * b + head_bytes
    grads = trainable_bytes
    optim = 2 * trainable_bytes
    teacher_bytes = sum(t["bytes"] for t in teachers.values())
    acts = act * batch
    per_gpu = {
        "ddp": weights + grads + optim + acts + teacher_bytes,
        "zero2": weights + (grads + optim) / world + acts + teacher_bytes,
        "fsdp": weights / world + (grads + optim) / world + acts + teacher_bytes,
    }
    cache = None
    try:
        cache = estimate_cache(recipe, datasets=datasets, entries=entries)
    except SizingError:
        raise  # a component that cannot describe its size stops the plan (exit 2, named in the message)
    except GeovrError as exc:
        cache = {"error": str(exc)}
    params_frozen = s_frozen + sum(t["params"] for t in teachers.values())
    return {
        "recipe": recipe.name,
        "params_trainable": int(s_train + h_train),
        "params_frozen": int(params_frozen),
        "params": {
            "student_trainable": int(s_train),
            "student_frozen": int(s_frozen),
            "heads_trainable": int(h_train),
            **{f"{k}_frozen": int(v["params"]) for k, v in teachers.items()},
        },
        "precision": {
            "weights": dtype,
            "mixed_precision": mixed,
            "activation_bytes_per_value": b_act,
            "gradient_checkpointing": ckpt,
        },
        "bytes": {"weights": weights, "gradients": grads, "optimizer": optim, "teachers": teacher_bytes},
        "activations_per_sample": {
            "student": act_student,
            "heads": heads,
            "total": act,
            "tokens": T,
            "visual_tokens": n_vis,
            "frames": [S, H, W],
            "frame_source": source,
        },
        "batch_size": batch,
        "gpus": world,
        "per_gpu_bytes": per_gpu,
        "fits_gb": fits(per_gpu),
        "fits_gb_teacher_offloaded": fits({k: v - teacher_bytes for k, v in per_gpu.items()}),
        "cache": cache,
    }


def format_plan(p: dict) -> str:
    """Human-readable report of :func:`plan`."""
    from geovr.train.estimate import format_estimate, human_bytes

    def gb(x):
        return f"{x / GB:7.2f} GB"

    pr = p["params"]
    lines = [
        f"plan of {p['recipe']}",
        f"parameters      : trainable {p['params_trainable'] / 1e6:,.1f} M, frozen {p['params_frozen'] / 1e6:,.1f} M",
        "                  " + ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in pr.items()),
        f"precision       : weights {p['precision']['weights']}, mixed_precision {p['precision']['mixed_precision']}, "
        f"gradient checkpointing {p['precision']['gradient_checkpointing']}",
        f"weights         : {gb(p['bytes']['weights'])} (student + heads), teachers {gb(p['bytes']['teachers'])}",
        f"gradients       : {gb(p['bytes']['gradients'])}",
        f"optimizer state : {gb(p['bytes']['optimizer'])} (AdamW, 2 x trainable)",
    ]
    a = p["activations_per_sample"]
    heads = ", ".join(f"{k} {human_bytes(v)}" for k, v in a["heads"].items())
    lines.append(
        f"activations     : {gb(a['total'])} per sample ({a['tokens']} tokens, {a['visual_tokens']} visual, "
        f"{a['frames'][0]} frames of {a['frames'][1]}x{a['frames'][2]} [{a['frame_source']}]); student "
        f"{human_bytes(a['student'])}, heads: {heads or 'none'}"
    )
    lines.append(f"per GPU         : batch {p['batch_size']} per process, {p['gpus']} GPUs")
    for k, v in p["per_gpu_bytes"].items():
        f = p["fits_gb"][k]
        g = p["fits_gb_teacher_offloaded"][k]
        lines.append(
            f"  {k:<6}        : {gb(v)}  fits {', '.join(f'{s} GB' for s in f) or 'none of 24/40/80 GB'}"
            f'  (teachers off the GPU, cache = "only": {", ".join(f"{s} GB" for s in g) or "none"})'
        )
    c = p["cache"]
    if c and "error" not in c:
        lines.append("teacher cache:")
        lines += ["  " + x for x in format_estimate(c).splitlines()]
    elif c:
        lines.append(f"teacher cache   : {c['error']}")
    return "\n".join(lines)


__all__ = ["format_plan", "measured_activation_bytes", "plan"]
