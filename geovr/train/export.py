"""Export a trained student as a plain transformers model directory.

``export(run_dir, dest)`` rebuilds the backbone from ``RUN_DIR/recipe.toml`` (seeded like the run), loads
the trainable parameters of the newest (or a given) checkpoint, checks the frozen weights match those
trained with, and calls ``backbone.save_pretrained(dest)``: LoRA merged, no geometry tokens, no heads,
loadable with ``from_pretrained`` and nothing from geovr. Beside the weights it writes a model card,
``README.md`` (:func:`model_card`): base model, teacher, objectives, training settings and final losses,
the evaluation results the run has (``RUN_DIR/eval/**/results.json``) and the full recipe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from geovr.errors import CheckpointError


def load_student(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None, device: str = "cpu"):
    """The trained backbone of a run: rebuilt from its recipe with the checkpoint's parameters loaded.

    Returns ``(backbone, recipe, checkpoint_dir)``. Raises :class:`CheckpointError` naming what is missing.
    """
    from geovr.recipe import load_recipe
    from geovr.train import checkpoint as ckpt_io
    from geovr.train.runner import build_seeded

    run = Path(run_dir)
    recipe_file = run / "recipe.toml"
    if not recipe_file.is_file():
        raise CheckpointError(f"{run}: not a geovr run directory (no recipe.toml)")
    found = ckpt_io.load_checkpoint(checkpoint if checkpoint is not None else run)
    recipe = load_recipe(recipe_file)
    ctx = build_seeded(recipe, device=device, stages=("backbone",))
    backbone = ctx.backbone
    where = str(found["path"])
    expected = found["state"].get("frozen_fingerprint")
    if expected is not None and expected != ckpt_io.frozen_fingerprint(backbone):
        raise CheckpointError(
            f"{where}: the rebuilt backbone's frozen weights differ from those the run trained "
            f"(its base model files changed?)"
        )
    ckpt_io.load_trainable(backbone, found["model"], where=f"{where}/model.safetensors")
    return backbone, recipe, found["path"]


def export(run_dir: str | os.PathLike, dest: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None) -> Path:
    """Write the student of ``run_dir`` to ``dest`` with ``backbone.save_pretrained``; returns ``dest``."""
    backbone, recipe, ckpt = load_student(run_dir, checkpoint=checkpoint)
    if hasattr(backbone, "eval"):
        backbone.eval()
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise CheckpointError(f"{dest}: export destination is a file, not a directory")
    dest.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(str(dest))
    weights = [getattr(c.config, "weight", None) for c in recipe.objectives]
    (dest / "README.md").write_text(model_card(run_dir, recipe.raw, ckpt, weights=weights), encoding="utf-8")
    return dest


def _value(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else f'"{v}"'


def _options(table: dict | None) -> str:
    items = [f"{k} = {_value(v)}" for k, v in (table or {}).items() if k not in ("component", "weight")]
    return ", ".join(items) or "defaults"


def evaluation_results(run_dir: str | os.PathLike) -> list[tuple[str, dict]]:
    """``(path relative to RUN_DIR, results.json document)`` of every evaluation the run holds, sorted."""
    run = Path(run_dir)
    out = []
    for path in sorted((run / "eval").glob("**/results.json")):
        try:
            out.append((str(path.relative_to(run)), json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return out


def model_card(
    run_dir: str | os.PathLike, raw: dict, checkpoint: str | os.PathLike, *, weights: list | None = None
) -> str:
    """The ``README.md`` written beside exported weights (Hugging Face model card layout: YAML header,
    then markdown): what the student was trained from and with, its final losses and evaluations.
    ``weights``: the validated loss weight of each objective (defaults included)."""
    from geovr import __version__
    from geovr.train.runlog import read_metrics

    run = Path(run_dir)
    bb = raw.get("backbone") or {}
    teacher = raw.get("teacher")
    trainer = raw.get("trainer") or {}
    base = bb.get("pretrained")
    lines = ["---", "library_name: transformers", "tags: [geovr, video-llm, 3d-geometry, spatial-reasoning]"]
    if isinstance(base, str) and "/" in base and not os.path.isabs(base):
        lines.append(f"base_model: {base}")
    lines += ["---", "", f"# {raw.get('name', run.name)}", ""]
    if raw.get("description"):
        lines += [str(raw["description"]), ""]
    lines += [
        f"Exported by geovr {__version__} from run `{run.name}`, checkpoint `{Path(checkpoint).name}`. "
        f"A plain transformers model (adapters merged, no geometry tokens or heads): load it with "
        f'`from_pretrained`, ask it about a video with `geovr ask THIS_DIR VIDEO "question"`, or '
        f"evaluate it with `geovr eval --model THIS_DIR`.",
        "",
        "## Base model",
        "",
        f"- backbone: `{bb.get('component', '?')}` from `{base}` ({_options(bb)})",
        "",
        "## Geometry teacher",
        "",
    ]
    if teacher:
        lines.append(f"- `{teacher.get('component')}` ({_options(teacher)})")
    else:
        lines.append("- none (language-model loss only)")
    if raw.get("metric_teacher"):
        lines.append(f"- metric depth: `{raw['metric_teacher'].get('component')}` ({_options(raw['metric_teacher'])})")
    lines += ["", "## Objectives", "", "| objective | weight | options |", "|---|---|---|"]
    for i, o in enumerate(raw.get("objectives") or []):
        weight = weights[i] if weights and i < len(weights) and weights[i] is not None else o.get("weight", "default")
        lines.append(f"| `{o.get('component')}` | {weight} | {_options(o)} |")
    lines += ["", "## Training", ""]
    train = (raw.get("data") or {}).get("train") or {}
    lines.append(f"- data: `{train.get('component', '?')}` ({_options(train)})")
    lines.append(f"- trainer: `{trainer.get('component', '?')}` ({_options(trainer)}); seed {raw.get('seed', 0)}")
    try:
        rows = [r for r in read_metrics(run) if not r.get("skipped")]
    except (OSError, ValueError):
        rows = []
    if rows:
        last = rows[-1]
        losses = ", ".join(
            f"{k} {last[k]:.4g}"
            for k in sorted(last)
            if (k == "loss" or k.endswith("loss")) and isinstance(last[k], (int, float))
        )
        lines.append(f"- final losses (step {last.get('step')}): {losses}")
    lines += ["", "## Evaluation", ""]
    results = evaluation_results(run)
    if not results:
        lines.append(
            "No evaluation results in the run directory (run `geovr eval RUN_DIR` before exporting to include them)."
        )
    for rel, doc in results:
        scores = doc.get("scores") or {}
        title = doc.get("evaluator", "?") + (f", {doc['protocol']} protocol" if doc.get("protocol") else "")
        lines += [f"### {title} (`{rel}`)", "", "| task | score |", "|---|---|"]
        for task, v in scores.items():
            lines.append(f"| {task} | {'n/a' if v is None else f'{v:.2f}' if isinstance(v, float) else v} |")
        lines.append("")
    lines += ["", "## Recipe", "", "The merged recipe of the run (`recipe.toml`):", "", "```toml"]
    recipe_file = run / "recipe.toml"
    lines += [recipe_file.read_text(encoding="utf-8").rstrip() if recipe_file.is_file() else "# (missing)", "```", ""]
    return "\n".join(lines)
