"""Released GeoVR model directories: read them, evaluate them, import them into a geovr run.

The released training code saves the whole model with ``save_pretrained``: the Qwen3-VL weights under
their transformers names plus the method's extra modules:

* ``model.camera_token.weight`` ``[2,D]`` and ``model.scale_token.weight`` ``[1,D]`` (token embeddings);
* ``camera_head.*`` (``LayerNorm → Linear(D,1536) → GELU → Linear → GELU``, ``fc_t``, ``fc_qvec``,
  ``fc_fov``), ``scale_head.*`` (``backbone``: ``LayerNorm → Linear(D,512) → GELU → Linear(512,1)``),
  ``dpt_head.*`` (the dense depth head), ``distill_head_list.<i>.*`` (``norm``, ``fc1``, ``fc2``);
* the frozen teachers when they were attributes of the model: ``geometry_encoder.*`` (VGGT / DA3) and
  ``metric_encoder.*`` (DA3 metric).

Inference uses none of them (the released evaluation runs with the camera and scale tokens off), so
``geovr eval --model DIR`` loads only the transformers model and reports the rest in one line.
``geovr import DIR RUN_DIR`` writes the tokens and heads under geovr's names (``RUN_DIR/released/``), the
plain transformers model (``RUN_DIR/base/``) and a recipe whose ``trainer.init_from`` loads the tokens and
heads at the start of training.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from geovr.errors import CheckpointError, UsageError

#: released token tensors → attribute of geovr's Qwen-VL backbone
TOKENS = {"model.camera_token.weight": "camera_tokens", "model.scale_token.weight": "scale_token"}
#: released head prefixes → the geovr objective (component name) whose head they initialise
HEADS = {
    "camera_head.": "camera_pose",
    "scale_head.": "metric_scale",
    "dpt_head.": "depth",
    "distill_head_list.": "feature_distill",
}
#: frozen teachers the released model may carry (never needed by geovr: its teachers load their own weights)
TEACHERS = ("geometry_encoder.", "metric_encoder.")
#: fields the released code adds to config.json
CONFIG_FIELDS = (
    "add_camera",
    "add_depth",
    "add_scale",
    "distill_geometry_feature",
    "geo_total_layers",
    "geo_patch_size",
    "geo_hiddden_size",
    "geo_indexes",
    "distill_visual_indexes",
    "geo_type",
    "depth_loss_type",
    "geo_avg_2d",
)
TOKENS_FILE = "geometry_tokens.safetensors"
HEADS_FILE = "heads.safetensors"
REPORT_FILE = "import.json"


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: unreadable shard index ({exc})") from exc
        return [model_dir / n for n in names]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{model_dir}: no *.safetensors weights (expected model.safetensors or shards)")
    return files


def tensor_names(model_dir: str | os.PathLike) -> dict[str, Path]:
    """``{tensor name: file}`` of a model directory, read from the safetensors headers (no tensor data)."""
    from safetensors import safe_open

    out: dict[str, Path] = {}
    for f in _weight_files(Path(model_dir)):
        try:
            with safe_open(str(f), framework="pt") as fh:
                out.update({k: f for k in fh.keys()})
        except Exception as exc:  # noqa: BLE001 - truncated or foreign file
            raise CheckpointError(f"{f}: unreadable safetensors file ({type(exc).__name__}: {exc})") from exc
    return out


def classify(names) -> dict[str, list[str]]:
    """Split tensor names into ``tokens``, ``heads``, ``teachers`` and ``base`` (the transformers model)."""
    groups: dict[str, list[str]] = {"tokens": [], "heads": [], "teachers": [], "base": []}
    for n in names:
        if n in TOKENS:
            groups["tokens"].append(n)
        elif n.startswith(tuple(HEADS)):
            groups["heads"].append(n)
        elif n.startswith(TEACHERS):
            groups["teachers"].append(n)
        else:
            groups["base"].append(n)
    return groups


def is_released(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` holds any of the released method's extra tensors."""
    try:
        g = classify(tensor_names(model_dir))
    except CheckpointError:
        return False
    return bool(g["tokens"] or g["heads"] or g["teachers"])


def unused_summary(model_dir: str | os.PathLike) -> str:
    """One line naming what inference ignores in a released model directory."""
    g = classify(tensor_names(model_dir))
    parts: Counter[str] = Counter()
    for n in g["tokens"] + g["heads"] + g["teachers"]:
        parts[n.split(".")[0] if not n.startswith("model.") else n.rsplit(".", 1)[0]] += 1
    listed = ", ".join(f"{k} ({v})" for k, v in sorted(parts.items()))
    return (
        f"released GeoVR model: {len(g['tokens']) + len(g['heads']) + len(g['teachers'])} tensors not used at "
        f"inference are ignored: {listed}"
    )


def read_extras(model_dir: str | os.PathLike) -> dict:
    """The token and head tensors of a released model directory ``{name: tensor}`` (teachers skipped)."""
    from safetensors import safe_open

    names = tensor_names(model_dir)
    g = classify(names)
    wanted = g["tokens"] + g["heads"]
    out = {}
    by_file: dict[Path, list[str]] = {}
    for n in wanted:
        by_file.setdefault(names[n], []).append(n)
    for f, keys in by_file.items():
        with safe_open(str(f), framework="pt") as fh:
            for k in keys:
                out[k] = fh.get_tensor(k)
    return out


def _sub(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _rename(src: dict, table: dict[str, str], where: str) -> dict:
    """Rename ``<old module>.<weight|bias>`` keys with ``table`` (old module → new module); every key must map."""
    out, unknown = {}, []
    for k, v in src.items():
        module, _, leaf = k.rpartition(".")
        if module not in table:
            unknown.append(k)
            continue
        out[f"{table[module]}.{leaf}"] = v
    if unknown:
        raise CheckpointError(f"{where}: tensors of an unknown layout: {sorted(unknown)[:6]}")
    return out


def map_heads(extras: dict) -> dict[str, dict]:
    """Released head tensors → ``{objective component: {objective state_dict key: tensor}}``.

    camera_head ``backbone.{0,1,3}, fc_t, fc_qvec, fc_fov.0`` → ``head.trunk.{0,1,3}, head.fc_T, head.fc_R,
    head.fc_FL``; scale_head ``backbone.{0,1,3}`` → ``head.mlp.{0,1,3}``; dpt_head → ``head.*`` (same names);
    distill_head_list ``<i>.{norm,fc1,fc2}`` → ``heads.<i>.mlp.{0,1,3}``.
    """
    out: dict[str, dict] = {}
    cam = _sub(extras, "camera_head.")
    if cam:
        out["camera_pose"] = _rename(
            cam,
            {
                "backbone.0": "head.trunk.0",
                "backbone.1": "head.trunk.1",
                "backbone.3": "head.trunk.3",
                "fc_t": "head.fc_T",
                "fc_qvec": "head.fc_R",
                "fc_fov.0": "head.fc_FL",
            },
            "camera_head",
        )
    scale = _sub(extras, "scale_head.")
    if scale:
        out["metric_scale"] = _rename(scale, {f"backbone.{i}": f"head.mlp.{i}" for i in (0, 1, 3)}, "scale_head")
    dense = _sub(extras, "dpt_head.")
    if dense:
        out["depth"] = {f"head.{k}": v for k, v in dense.items()}
    distill = _sub(extras, "distill_head_list.")
    if distill:
        idx = sorted({int(k.split(".", 1)[0]) for k in distill})
        table = {f"{i}.{a}": f"heads.{i}.mlp.{b}" for i in idx for a, b in (("norm", 0), ("fc1", 1), ("fc2", 3))}
        out["feature_distill"] = _rename(distill, table, "distill_head_list")
    return out


def _config(model_dir: Path) -> dict:
    cfg = model_dir / "config.json"
    if not cfg.is_file():
        raise UsageError(f"{model_dir}: not a model directory (no config.json)")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{cfg}: invalid JSON ({exc})") from exc


def write_base(model_dir: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True) -> Path:
    """Write the plain transformers model of a released directory to ``dest``: every non-weight file
    copied, ``config.json`` without the released fields, the weight files without the extra tensors
    (one shard in memory at a time; the shard index rewritten). Returns ``dest``."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dest = Path(model_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = _weight_files(src)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, dest / f.name)
    cfg = {k: v for k, v in _config(src).items() if k not in CONFIG_FIELDS}
    (dest / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    from tqdm.auto import tqdm

    weight_map = {}
    for f in tqdm(files, desc="geovr import: base model shards", unit="file", disable=not progress):
        with safe_open(str(f), framework="pt") as fh:
            keep = classify(fh.keys())["base"]
            tensors = {k: fh.get_tensor(k) for k in keep}
            meta = fh.metadata() or {"format": "pt"}
        if tensors:
            save_file(tensors, str(dest / f.name), metadata=meta)
            weight_map.update({k: f.name for k in tensors})
    if len(files) > 1 or (src / "model.safetensors.index.json").is_file():
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return dest


def import_released(
    model_dir: str | os.PathLike, run_dir: str | os.PathLike, *, recipe: str | os.PathLike, overwrite: bool = False
) -> dict:
    """Turn a released GeoVR model directory into a geovr run directory; returns the report (also in
    ``RUN_DIR/released/import.json``).

    Writes ``RUN_DIR/released/geometry_tokens.safetensors`` (``camera_tokens [2,D]``, ``scale_token [1,D]``),
    ``RUN_DIR/released/heads.safetensors`` (``<objective>.<state_dict key>``), ``RUN_DIR/base/`` (the plain
    transformers model, :func:`write_base`) and ``RUN_DIR/recipe.toml``: ``recipe`` with
    ``backbone.pretrained`` = ``RUN_DIR/base``, ``output_dir`` = ``run_dir`` and ``trainer.init_from`` =
    ``RUN_DIR/released``.
    """
    from safetensors.torch import save_file

    from geovr.recipe.dump import to_toml
    from geovr.recipe.load import load_raw

    src, run = Path(model_dir).resolve(), Path(run_dir).resolve()
    cfg = _config(src)
    names = tensor_names(src)
    g = classify(names)
    if not (g["tokens"] or g["heads"]):
        raise UsageError(
            f"{src}: no released GeoVR modules found (expected {', '.join(TOKENS)} or "
            f"{', '.join(HEADS)} tensors); a plain model needs no import: use it as backbone.pretrained"
        )
    out_dir = run / "released"
    if (run / "checkpoints").exists() and any((run / "checkpoints").iterdir()) and not overwrite:
        raise UsageError(f"{run} already holds training checkpoints; choose another RUN_DIR (or --overwrite)")
    if (out_dir / HEADS_FILE).exists() and not overwrite:
        raise UsageError(f"{out_dir} exists; pass --overwrite to replace it")
    extras = read_extras(src)
    heads = map_heads(extras)
    tokens = {TOKENS[k]: extras[k].contiguous() for k in g["tokens"]}
    raw = load_raw(recipe)
    raw.setdefault("backbone", {})["pretrained"] = str(run / "base")
    raw["output_dir"] = str(run)
    raw.setdefault("trainer", {})["init_from"] = str(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_base(src, run / "base")
    save_file(tokens, str(out_dir / TOKENS_FILE), metadata={"format": "pt", "source": str(src)})
    save_file(
        {f"{obj}.{k}": v.contiguous() for obj, sd in heads.items() for k, v in sd.items()},
        str(out_dir / HEADS_FILE),
        metadata={"format": "pt", "source": str(src)},
    )
    (run / "recipe.toml").write_text(to_toml(raw), encoding="utf-8")
    report = {
        "source": str(src),
        "run_dir": str(run),
        "recipe": str(run / "recipe.toml"),
        "model_type": cfg.get("model_type"),
        "hidden_size": int(next(iter(tokens.values())).shape[-1]) if tokens else None,
        "tokens": sorted(tokens),
        "heads": {k: len(v) for k, v in sorted(heads.items())},
        "ignored_teacher_tensors": len(g["teachers"]),
        "base_tensors": len(g["base"]),
        "released_config": {k: cfg[k] for k in CONFIG_FIELDS if k in cfg},
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    return report


def load_init(path: str | os.PathLike, backbone, objectives) -> list[str]:
    """Load the tokens and heads of an import directory (``RUN_DIR/released``) into ``backbone`` (its
    ``camera_tokens`` / ``scale_token`` embeddings) and ``objectives`` (matched by component name, strict
    names and shapes). Returns what was loaded; raises :class:`CheckpointError` naming any mismatch."""
    import torch
    from safetensors.torch import load_file

    d = Path(path)
    if not (d / HEADS_FILE).is_file():
        raise CheckpointError(f"trainer.init_from = {str(d)!r}: no {HEADS_FILE} (write it with `geovr import`)")
    loaded = []
    tokens = load_file(str(d / TOKENS_FILE)) if (d / TOKENS_FILE).is_file() else {}
    for attr, t in tokens.items():
        emb = getattr(backbone, attr, None)
        if emb is None or tuple(emb.weight.shape) != tuple(t.shape):
            raise CheckpointError(
                f"{d / TOKENS_FILE}: {attr} {tuple(t.shape)} does not fit the backbone "
                f"({None if emb is None else tuple(emb.weight.shape)})"
            )
        with torch.no_grad():
            emb.weight.copy_(t.to(emb.weight.device, emb.weight.dtype))
        loaded.append(attr)
    flat = load_file(str(d / HEADS_FILE))
    by_obj: dict[str, dict] = {}
    for k, v in flat.items():
        obj, _, rest = k.partition(".")
        by_obj.setdefault(obj, {})[rest] = v
    names = {getattr(o, "name", type(o).__name__): o for o in objectives}
    for obj, sd in by_obj.items():
        o = names.get(obj)
        if o is None:
            continue  # the recipe does not train this objective: its released head stays unused
        own = o.state_dict()
        missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
        shapes = [
            f"{k}: released {tuple(sd[k].shape)} vs recipe {tuple(own[k].shape)}"
            for k in sorted(set(own) & set(sd))
            if tuple(sd[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or shapes:
            raise CheckpointError(
                f"{d / HEADS_FILE}: the released {obj} head does not match the recipe's objective "
                f"(missing {missing[:4]}, unexpected {unexpected[:4]}, shapes {shapes[:4]}); set "
                f'its options to the released sizes (e.g. hidden_dim, channels, head = "dense")'
            )
        o.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
        loaded.append(obj)
    return loaded


IMPORT_EXAMPLES = """\
  geovr import ~/models/GeoVR-VGGT-Qwen3-VL-2B runs/geovr_vggt_2b
  geovr run runs/geovr_vggt_2b/recipe.toml              continue training from the released model
  geovr import ~/models/GeoVR-VGGT-Qwen3-VL-2B runs/mine --recipe my_recipe.toml --json
"""


def add_parser(subparsers) -> None:
    """Register ``geovr import MODEL_DIR RUN_DIR`` (torch-free until it runs)."""
    import argparse
    import textwrap

    p = subparsers.add_parser(
        "import",
        help="turn a released GeoVR model directory into a geovr run directory",
        description=textwrap.fill(
            "Read a released GeoVR model directory (Qwen3-VL weights with the method's camera/scale "
            "tokens, camera/scale/depth/distillation heads and possibly its teachers saved beside them). "
            "Write its tokens and heads under geovr's names to RUN_DIR/released/, the plain Qwen3-VL "
            "model to RUN_DIR/base/ and RUN_DIR/recipe.toml: RECIPE with backbone.pretrained = "
            "RUN_DIR/base and trainer.init_from = RUN_DIR/released, so "
            "`geovr run RUN_DIR/recipe.toml` trains on from the published model (teachers are never "
            "imported: the recipe's teachers load their own checkpoints). The recipe's objective options "
            "must give the released head sizes (the default recipe qwen_vggt does).",
            100,
        ),
        epilog=f"examples:\n{IMPORT_EXAMPLES}\nExit codes: 0 ok, 1 runtime failure, 2 usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="released model directory (config.json + *.safetensors)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory to create")
    p.add_argument(
        "--recipe",
        default="qwen_vggt",
        help="recipe file or shipped recipe name the run starts from (default: qwen_vggt)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier import in RUN_DIR")
    p.add_argument("--json", action="store_true", help="print the import report as JSON")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    """``geovr import MODEL_DIR RUN_DIR``."""
    import sys

    from geovr.recipe.load import find_shipped

    recipe = Path(args.recipe)
    if not recipe.is_file():
        shipped = find_shipped(args.recipe)
        if shipped is None:
            raise UsageError(f"--recipe {args.recipe!r}: neither a file nor a shipped recipe (geovr recipes list)")
        recipe = shipped
    report = import_released(args.model_dir, args.run_dir, recipe=recipe, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        heads = ", ".join(f"{k} ({v} tensors)" for k, v in report["heads"].items()) or "none"
        print(
            f"geovr: imported {report['source']} into {report['run_dir']}: tokens {', '.join(report['tokens']) or 'none'}; "
            f"heads {heads}; {report['ignored_teacher_tensors']} teacher tensors ignored",
            file=sys.stderr,
        )
        print(f"geovr: continue training with `geovr run {report['recipe']}`", file=sys.stderr)
    return 0


class quiet_unused_weights:
    """Context manager: transformers' report of checkpoint tensors the model does not use is silenced
    (``geovr eval --model`` prints one summary line instead)."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._level)
        return False
