"""``geovr plan RECIPE``: parameters, memory per GPU and cache size of a recipe, before renting GPUs.

Models are built on the meta device (no weights, no download) from the model configs shipped with the
plugins (:data:`MODEL_CONFIGS`: the ``config.json`` values of the checkpoints the shipped recipes name,
written out by hand; a local checkpoint directory's own ``config.json`` is read when ``pretrained`` is one).
The student's freeze / LoRA options are applied exactly as the backbone does (the plugin's own
``apply_freeze`` / ``wrap_lora``); objective heads and teachers are built by their registered builders or
model classes.

Memory per GPU (bytes) under the recipe's precision: weights in the backbone ``dtype`` (heads float32);
gradients of the trainable parameters in their dtype; AdamW state = 2 × trainable in their dtype (torch's
AdamW keeps ``exp_avg``/``exp_avg_sq`` in the parameter dtype; no float32 master copy in this trainer).
Sharding over N GPUs: DDP replicates everything; ZeRO-2 shards gradients and optimizer state; FSDP (full
shard) also shards the student's weights. Frozen teachers are replicated in all three (they are not
trained); with ``trainer.cache = "only"`` they could stay off the GPU, which the plan reports separately.

Activations per sample (:func:`student_activation_bytes`): the bytes autograd keeps for backward in one
decoder layer per token, counted op by op for the HF Qwen decoder layer (RMSNorm internals in float32,
q/k norms of Qwen3, rotary embedding, SDPA with a flash/efficient kernel: q, k, v, out, logsumexp; SiLU
MLP), times layers and sequence length, plus the final norm, the float32 log-softmax of the LM loss over
the vocabulary and the trainable merger; with gradient checkpointing only each layer's input plus one
layer. The objective heads are measured: each head runs once on one frame at the recipe's real sizes
(CPU, random weights) and its saved bytes are multiplied by the frame count. ``tests/test_plan.py`` checks
the estimate against the activation bytes measured on a full tiny forward (within 25 %).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

from geovr.errors import GeovrError

GB = 1e9
GPU_SIZES = (24, 40, 80)
#: text tokens per sample assumed next to the visual tokens (chat template, question, options, answer)
TEXT_TOKENS = 128
#: shipped model configs: pretrained id (its last path part) → (package, resource)
MODEL_CONFIGS = {
    "Qwen3-VL-2B-Instruct": ("geovr_plugin_qwen_vl", "model_configs/Qwen3-VL-2B-Instruct.json"),
    "Qwen2.5-VL-3B-Instruct": ("geovr_plugin_qwen_vl", "model_configs/Qwen2.5-VL-3B-Instruct.json"),
    "Depth-Anything-V2-Metric-Indoor-Large-hf": ("geovr.objectives",
                                                 "model_configs/Depth-Anything-V2-Metric-Indoor-Large-hf.json"),
}
ITEM = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


def model_config_dict(pretrained: str) -> dict:
    """``config.json`` of ``pretrained``: a local directory's own, else the shipped copy (:data:`MODEL_CONFIGS`)."""
    local = Path(pretrained) / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    name = pretrained.rstrip("/").split("/")[-1]
    if name not in MODEL_CONFIGS:
        raise GeovrError(f"geovr plan: no shipped model config for pretrained = {pretrained!r} (shipped: "
                         f"{sorted(MODEL_CONFIGS)}); point pretrained at a local checkpoint directory with a config.json")
    package, resource = MODEL_CONFIGS[name]
    return json.loads(resources.files(package).joinpath(resource).read_text())


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
    """The student of ``choice`` (a Qwen-VL backbone) on the meta device: ``(hf_model, info)``."""
    import torch

    cfg = choice.config
    kind = choice.component
    if kind not in ("qwen3_vl", "qwen2_5_vl"):
        raise GeovrError(f"geovr plan: backbone {kind!r} has no meta-device planner (supported: qwen3_vl, qwen2_5_vl)")
    from geovr_plugin_qwen_vl.loading import TINY_ID, apply_freeze, model_class, wrap_lora

    if cfg.pretrained == TINY_ID:
        from geovr_plugin_qwen_vl.testing import tiny_model_config

        hf_config = tiny_model_config(kind)
    else:
        from transformers import AutoConfig

        data = model_config_dict(cfg.pretrained)
        hf_config = AutoConfig.for_model(**data)
    with torch.device("meta"):
        hf = model_class(kind)._from_config(hf_config)
    apply_freeze(hf, cfg.freeze)
    hf = wrap_lora(hf, cfg)
    return hf, hf_config


def _teacher_meta(choice):
    """``(module or None, num_layers, feature_dim, weight dtype name)`` of a teacher choice on the meta device."""
    import torch

    c = choice.config
    if choice.component == "vggt":
        from geovr_plugin_vggt.model.vggt import VGGT, load_config

        mc = load_config(c.model_config)
        with torch.device("meta"):
            m = VGGT.from_config(mc, enable_track=False, enable_point=c.points == "head")
        embed = int(mc["embed_dim"])
        return m, m.depth, (2 * embed if c.feature_half == "both" else embed), "float32"
    if choice.component == "hf_depth":
        from transformers import AutoConfig, AutoModelForDepthEstimation

        hc = AutoConfig.for_model(**model_config_dict(c.model))
        with torch.device("meta"):
            m = AutoModelForDepthEstimation.from_config(hc)
        return m, 0, 0, "float32"
    if choice.component == "oracle":
        return None, c.num_layers, c.feature_dim, "float32"
    raise GeovrError(f"geovr plan: teacher {choice.component!r} has no meta-device planner (supported: vggt, "
                     f"hf_depth, oracle)")


def decoder_layer_bytes_per_token(D: int, I: int, H: int, KV: int, hd: int, b: int, qk_norm: bool) -> float:
    """Bytes one HF Qwen decoder layer keeps for backward per token (see the module docstring)."""
    norm = 4 * D + b * D + 4                                   # float32 input/copy, normalised output, rsqrt
    attn = b * (5 * H * hd + 4 * KV * hd) + 4 * H              # q, rot(q), k, rot(k), sdpa q/k/v/out, o_proj in; lse
    qk = ((4 + b) * (H + KV) * hd + 4 * (H + KV)) if qk_norm else 0
    mlp = 4 * b * I                                            # gate, act(gate), up, act·up
    return 2 * norm + attn + qk + mlp


def visual_tokens(choice, S: int, H: int, W: int, hf_config) -> tuple[int, tuple[int, int]]:
    """Visual tokens of one sample (frames duplicated: one temporal group per frame) and the frame size."""
    from geovr_plugin_qwen_vl.backbone import target_frame_size

    vis = hf_config.vision_config
    factor = int(vis.patch_size) * int(vis.spatial_merge_size)
    h, w = target_frame_size(H, W, factor, choice.config, num_frames=S, kind=choice.component)
    return S * (h // factor) * (w // factor), (h // factor, w // factor)


def student_activation_bytes(hf_config, T: int, n_visual: int, b: int, checkpointing: bool, merger: bool) -> float:
    """Activation bytes of the student for a sequence of ``T`` tokens (``n_visual`` of them visual)."""
    tc = hf_config.text_config
    D, I, L = int(tc.hidden_size), int(tc.intermediate_size), int(tc.num_hidden_layers)
    H, KV = int(tc.num_attention_heads), int(tc.num_key_value_heads)
    hd = int(getattr(tc, "head_dim", None) or D // H)
    qk = hf_config.model_type == "qwen3_vl"
    layer = decoder_layer_bytes_per_token(D, I, H, KV, hd, b, qk) * T
    body = (L * T * b * D + layer) if checkpointing else L * layer
    final = (4 * D + b * D + 4) * T + b * D * T                # final norm + lm_head input
    logits = 4 * int(tc.vocab_size) * T                        # float32 log-softmax of the LM loss
    merge = 0.0
    if merger:
        vis = hf_config.vision_config
        dv = int(vis.hidden_size) * int(vis.spatial_merge_size) ** 2
        merge = n_visual * (2 * (4 + b) * dv + 3 * b * dv)
    return body + final + logits + merge


def head_activation_bytes(recipe, objectives, hidden: int, grid: tuple[int, int], S: int, H: int, W: int,
                          teacher_shapes: dict, student_layers: dict) -> dict[str, float]:
    """Measured saved bytes of each objective (head + loss) on one frame at the real sizes, × ``S`` frames."""
    import torch

    from geovr.protocols import Batch, StudentOutput, TeacherOutput

    g = torch.Generator().manual_seed(0)
    h, w = grid
    out = {}
    for name, obj in objectives:
        layers = student_layers.get(name, ())
        student = StudentOutput(hidden={k: torch.randn(1, 1, h, w, hidden, generator=g) for k in layers},
                                camera=torch.randn(1, 1, hidden, generator=g), scale=torch.randn(1, hidden, generator=g))
        flat = {}
        for k, shape in teacher_shapes.items():
            one = (1, 1, *shape[1:]) if shape else (1,)
            flat[k] = torch.rand(one, generator=g) + 0.5
        teacher = TeacherOutput.from_tensors(flat)
        batch = Batch(frames=torch.rand(1, 1, 3, H, W, generator=g), sample_ids=["plan"], questions=[""], answers=[""])
        for t in (*student.hidden.values(), student.camera, student.scale):
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
    from geovr.train.estimate import TEACHER_SHAPES, _feature_layers, estimate_cache, frame_shape

    trainer = recipe.trainer.config if recipe.trainer is not None else None
    hf, hf_config = build_student_meta(recipe.backbone)
    s_train, s_frozen = _count(hf)
    tc = hf_config.text_config
    D, L = int(tc.hidden_size), int(tc.num_hidden_layers)
    s_train += 3 * D   # geometry tokens: camera (2) + scale (1) embeddings
    dtype = recipe.backbone.config.dtype
    b = ITEM.get(dtype, 2)
    mixed = getattr(trainer, "mixed_precision", "no")
    b_act = 2 if mixed in ("bf16", "fp16") or b == 2 else 4

    teachers = {}
    t_stub = None
    for role, choice in (("teacher", recipe.teacher), ("metric_teacher", recipe.metric_teacher)):
        if choice is None:
            continue
        m, depth, fdim, tdtype = _teacher_meta(choice)
        n = _count(m)[0] + _count(m)[1] if m is not None else 0
        teachers[role] = {"component": choice.component, "params": n, "bytes": n * ITEM[tdtype]}
        if role == "teacher":
            layers = tuple(getattr(choice.config, "layers", ()) or ())
            t_stub = SimpleNamespace(num_layers=depth, layers=layers, feature_dim=fdim,
                                     provides=choice.config.provides() if hasattr(choice.config, "provides") else ())

    reg = get_registry()
    ctx = BuildContext(backbone=SimpleNamespace(hidden_size=D, num_layers=L), teacher=t_stub, device="cpu",
                       recipe=recipe)
    objectives, h_train = [], 0
    for c in recipe.objectives:
        obj = reg.get("objective", c.component).build(c.config, ctx)
        objectives.append((getattr(obj, "name", c.component), obj))
        h_train += sum(p.numel() for p in obj.parameters() if p.requires_grad)

    S, H, W, source = frame_shape(recipe, datasets)
    n_vis, grid = visual_tokens(recipe.backbone, S, H, W, hf_config)
    n_geo = S + 1
    T = tokens if tokens is not None else n_vis + n_geo + TEXT_TOKENS
    ckpt = bool(getattr(trainer, "gradient_checkpointing", False))
    merger = "merger" not in recipe.backbone.config.freeze and recipe.backbone.config.lora is None
    act_student = student_activation_bytes(hf_config, T, n_vis, b_act, ckpt, merger)
    heads = {}
    if measure_heads and objectives:
        tshapes = {}
        if recipe.teacher is not None and recipe.teacher.component in TEACHER_SHAPES:
            tshapes, _, _ = TEACHER_SHAPES[recipe.teacher.component](recipe.teacher.config, 1, H, W,
                                                                     _feature_layers(recipe))
        tshapes.setdefault("metric_depth", (1, *tshapes.get("depth", (1, H, W))[1:]))
        tshapes.setdefault("metric_scale", ())
        fh, fw = grid
        pix = visual_tokens(recipe.backbone, S, H, W, hf_config)[1]
        frame_px = (pix[0] * int(hf_config.vision_config.patch_size) * int(hf_config.vision_config.spatial_merge_size),
                    pix[1] * int(hf_config.vision_config.patch_size) * int(hf_config.vision_config.spatial_merge_size))
        layers = {name: tuple(getattr(o, "student_needs").layers) for name, o in objectives}
        with torch.random.fork_rng(devices=[]):
            heads = head_activation_bytes(recipe, objectives, D, (fh, fw), S, frame_px[0], frame_px[1], tshapes, layers)
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
    except GeovrError as exc:
        cache = {"error": str(exc)}
    params_frozen = s_frozen + sum(t["params"] for t in teachers.values())
    return {
        "recipe": recipe.name, "params_trainable": int(s_train + h_train), "params_frozen": int(params_frozen),
        "params": {"student_trainable": int(s_train), "student_frozen": int(s_frozen), "heads_trainable": int(h_train),
                   **{f"{k}_frozen": int(v["params"]) for k, v in teachers.items()}},
        "precision": {"weights": dtype, "mixed_precision": mixed, "activation_bytes_per_value": b_act,
                      "gradient_checkpointing": ckpt},
        "bytes": {"weights": weights, "gradients": grads, "optimizer": optim, "teachers": teacher_bytes},
        "activations_per_sample": {"student": act_student, "heads": heads, "total": act, "tokens": T,
                                   "visual_tokens": n_vis, "frames": [S, H, W], "frame_source": source},
        "batch_size": batch, "gpus": world, "per_gpu_bytes": per_gpu,
        "fits_gb": fits(per_gpu), "fits_gb_teacher_offloaded": fits({k: v - teacher_bytes for k, v in per_gpu.items()}),
        "cache": cache,
    }


def format_plan(p: dict) -> str:
    """Human-readable report of :func:`plan`."""
    from geovr.train.estimate import format_estimate, human_bytes

    def gb(x):
        return f"{x / GB:7.2f} GB"

    pr = p["params"]
    lines = [f"plan of {p['recipe']}",
             f"parameters      : trainable {p['params_trainable'] / 1e6:,.1f} M, frozen {p['params_frozen'] / 1e6:,.1f} M",
             "                  " + ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in pr.items()),
             f"precision       : weights {p['precision']['weights']}, mixed_precision {p['precision']['mixed_precision']}, "
             f"gradient checkpointing {p['precision']['gradient_checkpointing']}",
             f"weights         : {gb(p['bytes']['weights'])} (student + heads), teachers {gb(p['bytes']['teachers'])}",
             f"gradients       : {gb(p['bytes']['gradients'])}",
             f"optimizer state : {gb(p['bytes']['optimizer'])} (AdamW, 2 x trainable)"]
    a = p["activations_per_sample"]
    heads = ", ".join(f"{k} {human_bytes(v)}" for k, v in a["heads"].items())
    lines.append(f"activations     : {gb(a['total'])} per sample ({a['tokens']} tokens, {a['visual_tokens']} visual, "
                 f"{a['frames'][0]} frames of {a['frames'][1]}x{a['frames'][2]} [{a['frame_source']}]); student "
                 f"{human_bytes(a['student'])}, heads: {heads or 'none'}")
    lines.append(f"per GPU         : batch {p['batch_size']} per process, {p['gpus']} GPUs")
    for k, v in p["per_gpu_bytes"].items():
        f = p["fits_gb"][k]
        g = p["fits_gb_teacher_offloaded"][k]
        lines.append(f"  {k:<6}        : {gb(v)}  fits {', '.join(f'{s} GB' for s in f) or 'none of 24/40/80 GB'}"
                     f"  (teachers off the GPU, cache = \"only\": {', '.join(f'{s} GB' for s in g) or 'none'})")
    c = p["cache"]
    if c and "error" not in c:
        lines.append("teacher cache:")
        lines += ["  " + x for x in format_estimate(c).splitlines()]
    elif c:
        lines.append(f"teacher cache   : {c['error']}")
    return "\n".join(lines)


__all__ = ["MODEL_CONFIGS", "format_plan", "measured_activation_bytes", "model_config_dict", "plan",
           "student_activation_bytes"]
